//! graft-grammars: what graft knows about source languages. It starts with
//! the languages graft supports, recognised by file name, and their comment
//! syntax; tree-sitter grammars, item queries and elision-marker detection
//! join with the apply work. Depends on no other graft crate.

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

    pub fn comment_syntax(self) -> CommentSyntax {
        match self {
            Language::Python => CommentSyntax { line: "#", block: None },
            _ => CommentSyntax { line: "//", block: Some(("/*", "*/")) },
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
