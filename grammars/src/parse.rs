//! Tree-sitter parsing bounded in time: the parser's progress callback
//! cancels a parse that runs past its deadline, and the caller gets
//! [`GrammarError::Timeout`] instead of a tree.

use std::time::{Duration, Instant};

use tree_sitter::{ParseOptions, ParseState, Parser, Tree};

use crate::{GrammarError, Language};

/// The default bound on one parse. Tree-sitter parses megabytes per second,
/// so only pathological input comes near it.
pub const PARSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Parses `source` as `language` within [`PARSE_TIMEOUT`].
pub fn parse(language: Language, source: &str) -> Result<Tree, GrammarError> {
    parse_with_timeout(language, source, PARSE_TIMEOUT)
}

/// Parses `source` as `language`, cancelling the parse when it runs longer
/// than `timeout`. Syntax errors are not failures: they are ERROR/MISSING
/// nodes in the returned tree.
pub fn parse_with_timeout(language: Language, source: &str, timeout: Duration) -> Result<Tree, GrammarError> {
    let mut parser = Parser::new();
    parser
        .set_language(&language.ts_language())
        .map_err(|e| GrammarError::Grammar { language, message: e.to_string() })?;
    let bytes = source.as_bytes();
    let start = Instant::now();
    let mut timed_out = false;
    // Returning true from the progress callback cancels the parse.
    let mut progress = |_: &ParseState| {
        timed_out = start.elapsed() > timeout;
        timed_out
    };
    let mut read = |offset: usize, _| bytes.get(offset..).unwrap_or_default();
    let tree = parser.parse_with_options(&mut read, None, Some(ParseOptions::new().progress_callback(&mut progress)));
    match tree {
        Some(tree) => Ok(tree),
        None if timed_out => Err(GrammarError::Timeout { language, bytes: bytes.len(), timeout }),
        None => Err(GrammarError::ParseFailed { language, bytes: bytes.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grammar_loads_and_parses_valid_source_without_errors() {
        let sources = [
            (Language::Rust, "fn main() {}\n"),
            (Language::Python, "def f():\n    return 1\n"),
            (Language::TypeScript, "const x: number = 1;\n"),
            (Language::Tsx, "const e = <div>{x}</div>;\n"),
            (Language::JavaScript, "function f() { return 1; }\n"),
            (Language::Go, "package main\n\nfunc main() {}\n"),
        ];
        for (language, source) in sources {
            let tree = parse(language, source).unwrap_or_else(|e| panic!("{e}"));
            assert!(!tree.root_node().has_error(), "{}: {}", language.name(), tree.root_node().to_sexp());
        }
    }

    #[test]
    fn syntax_errors_are_nodes_not_failures() {
        let tree = parse(Language::Rust, "fn main( {").expect("a tree with ERROR nodes");
        assert!(tree.root_node().has_error());
    }

    #[test]
    fn a_parse_past_its_deadline_is_a_timeout_error() {
        // Large enough that the parser reports progress after the deadline.
        let source = "fn f() { let x = (1 + 2) * 3; }\n".repeat(20_000);
        let err = parse_with_timeout(Language::Rust, &source, Duration::ZERO).expect_err("must time out");
        assert!(matches!(err, GrammarError::Timeout { language: Language::Rust, .. }), "{err}");
        assert!(err.to_string().contains("rust"), "{err}");
    }
}
