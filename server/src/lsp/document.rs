//! One open buffer as the server knows it: text, version, line index,
//! language and incremental tree, changed only through
//! [`Document::apply_change`] in the order the client sent the changes.

use std::path::Path;

use graft_grammars::Language;
use lsp_types::{TextDocumentContentChangeEvent, Url};

use super::encoding::{LineIndex, PositionEncoding};
use super::syntax::Syntax;

pub struct Document {
    pub text: String,
    pub version: i32,
    pub language: Option<Language>,
    index: LineIndex,
    syntax: Option<Syntax>,
}

impl Document {
    /// A document for `uri`; its language comes from the path, else from the
    /// client's language id. A grammar that fails to load leaves the
    /// document without a tree and is reported to the caller.
    pub fn open(uri: &Url, language_id: &str, version: i32, text: String) -> (Self, Option<String>) {
        let language = Language::from_path(Path::new(uri.path())).or_else(|| language_from_id(language_id));
        let (syntax, problem) = match language.map(|language| Syntax::new(language, &text)) {
            Some(Ok(syntax)) => (Some(syntax), None),
            Some(Err(err)) => (None, Some(format!("{uri}: no syntax tree: {err}"))),
            None => (None, None),
        };
        (Document { index: LineIndex::new(&text), text, version, language, syntax }, problem)
    }

    /// Applies one content change (ranged, or the whole text when it has no
    /// range). The tree is edited; [`Document::reparse`] brings it up to date.
    pub fn apply_change(&mut self, change: TextDocumentContentChangeEvent, encoding: PositionEncoding) {
        match change.range {
            Some(range) => {
                let a = self.index.offset(&self.text, range.start, encoding);
                let b = self.index.offset(&self.text, range.end, encoding);
                let (start, end) = (a.min(b), a.max(b));
                if let Some(syntax) = &mut self.syntax {
                    syntax.edit(&self.text, start, end, &change.text);
                }
                self.text.replace_range(start..end, &change.text);
            }
            None => {
                if let Some(syntax) = &mut self.syntax {
                    syntax.reset();
                }
                self.text = change.text;
            }
        }
        self.index = LineIndex::new(&self.text);
    }

    /// Reparses when changes arrived since the last parse (called once per
    /// burst of changes, not per change).
    pub fn reparse(&mut self) {
        if let Some(syntax) = &mut self.syntax {
            if syntax.is_stale() {
                syntax.reparse(&self.text);
            }
        }
    }

    pub fn index(&self) -> &LineIndex {
        &self.index
    }

    pub fn syntax(&self) -> Option<&Syntax> {
        self.syntax.as_ref()
    }
}

/// The language for an LSP language id (the fallback when the path has no
/// known extension).
fn language_from_id(id: &str) -> Option<Language> {
    Some(match id {
        "rust" => Language::Rust,
        "python" => Language::Python,
        "typescript" => Language::TypeScript,
        "typescriptreact" => Language::Tsx,
        "javascript" | "javascriptreact" => Language::JavaScript,
        "go" => Language::Go,
        _ => return None,
    })
}
