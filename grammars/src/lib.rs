//! graft-grammars: what graft knows about source languages, for the apply
//! step's structural merge and validation.
//!
//! - [`Language`]: the languages graft handles structurally (Rust, Python,
//!   TypeScript, TSX, JavaScript, Go), recognised by file name or data-set
//!   name, with their [`CommentSyntax`]. A file of any other language has no
//!   `Language` and is handled line by line by the callers.
//! - [`parse`] / [`parse_with_timeout`]: a tree-sitter parse bounded in time
//!   ([`PARSE_TIMEOUT`]); a timeout or failure is a [`GrammarError`] naming
//!   the language, never a panic.
//! - [`items`]: the named items of a parsed file (functions, methods, types,
//!   impls, modules...) as [`Item`]s with kind, name, byte and line ranges
//!   and the enclosing item, found by the queries in
//!   `grammars/queries/<lang>/items.scm` (data files, compiled by a test).
//! - [`is_marker_line`]: whether a line is an elision marker
//!   (`// ... existing code ...` and the other forms agents write); the rule
//!   is documented in `marker.rs`.
//! - [`syntax_problems`]: the ERROR and MISSING nodes of a tree, which
//!   validation of apply results compares with the original's.
//!
//! Depends on no other graft crate.

mod error;
mod items;
mod marker;
mod parse;
mod syntax;

pub use error::GrammarError;
pub use items::{items, Item};
pub use marker::is_marker_line;
pub use parse::{parse, parse_with_timeout, PARSE_TIMEOUT};
pub use syntax::{syntax_problems, SyntaxProblem};

use std::path::Path;

/// A source language graft handles structurally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    TypeScript,
    Tsx,
    JavaScript,
    Go,
}

/// How a language writes comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommentSyntax {
    /// Line comment opener (`//`, `#`).
    pub line: &'static str,
    /// Block comment delimiters, when the language has them.
    pub block: Option<(&'static str, &'static str)>,
}

impl Language {
    pub const ALL: [Language; 6] =
        [Language::Rust, Language::Python, Language::TypeScript, Language::Tsx, Language::JavaScript, Language::Go];

    /// The language of a file, by extension; `None` for others (handled
    /// line by line).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?;
        Some(match ext {
            "rs" => Language::Rust,
            "py" | "pyi" => Language::Python,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "go" => Language::Go,
            _ => return None,
        })
    }

    /// The name used in requests and data sets (`lang` field of the apply
    /// cases): rust, python, typescript, tsx, javascript, go.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::JavaScript => "javascript",
            Language::Go => "go",
        }
    }

    /// Inverse of [`Language::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// How the language writes comments.
    pub fn comment_syntax(self) -> CommentSyntax {
        match self {
            Language::Python => CommentSyntax { line: "#", block: None },
            _ => CommentSyntax { line: "//", block: Some(("/*", "*/")) },
        }
    }

    /// The tree-sitter grammar of the language.
    pub fn ts_language(self) -> tree_sitter::Language {
        match self {
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::Go => tree_sitter_go::LANGUAGE.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_by_extension_and_name_round_trip() {
        assert_eq!(Language::from_path(Path::new("src/lib.rs")), Some(Language::Rust));
        assert_eq!(Language::from_path(Path::new("app/page.tsx")), Some(Language::Tsx));
        assert_eq!(Language::from_path(Path::new("index.mjs")), Some(Language::JavaScript));
        assert_eq!(Language::from_path(Path::new("README.md")), None);
        assert_eq!(Language::from_path(Path::new("Makefile")), None);
        for language in Language::ALL {
            assert_eq!(Language::from_name(language.name()), Some(language));
        }
    }

    #[test]
    fn python_has_hash_comments_and_no_block_comments() {
        assert_eq!(Language::Python.comment_syntax(), CommentSyntax { line: "#", block: None });
        assert_eq!(Language::Go.comment_syntax().block, Some(("/*", "*/")));
    }
}
