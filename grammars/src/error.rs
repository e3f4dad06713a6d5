//! The crate's error type: every variant names the language it concerns.

use std::time::Duration;

use crate::Language;

/// A failure to parse or query a file of some language.
#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    /// The tree-sitter library refused the grammar (ABI version mismatch).
    #[error("tree-sitter cannot load the {} grammar: {message}", language.name())]
    Grammar { language: Language, message: String },
    /// Parsing took longer than the allowed time and was cancelled.
    #[error("parsing {} source of {bytes} bytes exceeded {timeout:?}", language.name())]
    Timeout { language: Language, bytes: usize, timeout: Duration },
    /// Tree-sitter returned no tree for another reason.
    #[error("tree-sitter failed to parse {} source of {bytes} bytes", language.name())]
    ParseFailed { language: Language, bytes: usize },
    /// A query file under `grammars/queries/` does not compile against its
    /// grammar (a bug in the query; a test compiles them all).
    #[error("query {query} for {} does not compile: {message}", language.name())]
    Query { language: Language, query: &'static str, message: String },
}
