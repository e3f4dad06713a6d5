//! The tree-sitter tree of an open buffer, kept incrementally: every text
//! change becomes a tree-sitter [`InputEdit`] ([`input_edit`], the
//! conversion helix-core calls `generate_edits`) applied to the old tree, and
//! the next [`Syntax::reparse`] reuses the unchanged subtrees. Parses are
//! bounded by [`graft_grammars::PARSE_TIMEOUT`]; a parse that fails or times
//! out leaves no tree (the next change parses from scratch).

use std::time::Instant;

use graft_grammars::Language;
use tree_sitter::{InputEdit, LanguageError, ParseOptions, ParseState, Parser, Point, Tree};

/// The tree-sitter point (row, byte column; rows end at `\n` only) of byte
/// `offset` in `text`.
fn point(text: &str, offset: usize) -> Point {
    let before = &text.as_bytes()[..offset];
    let row = before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Point::new(row, offset - line_start)
}

/// The edit that replaces bytes `start..old_end` of `old_text` by
/// `new_text`, for [`Tree::edit`]. Offsets must be character boundaries of
/// `old_text` with `start <= old_end`.
pub fn input_edit(old_text: &str, start: usize, old_end: usize, new_text: &str) -> InputEdit {
    let start_position = point(old_text, start);
    let new_rows = new_text.bytes().filter(|&b| b == b'\n').count();
    let new_end_position = match new_text.rfind('\n') {
        Some(last) => Point::new(start_position.row + new_rows, new_text.len() - last - 1),
        None => Point::new(start_position.row, start_position.column + new_text.len()),
    };
    InputEdit {
        start_byte: start,
        old_end_byte: old_end,
        new_end_byte: start + new_text.len(),
        start_position,
        old_end_position: point(old_text, old_end),
        new_end_position,
    }
}

/// A buffer's parser and tree.
pub struct Syntax {
    parser: Parser,
    tree: Option<Tree>,
    /// Edits were applied to `tree` since it was parsed.
    stale: bool,
}

impl Syntax {
    /// A parser for `language` with `text` parsed; an error when the grammar
    /// cannot be loaded (a build problem, logged by the caller).
    pub fn new(language: Language, text: &str) -> Result<Self, LanguageError> {
        let mut parser = Parser::new();
        parser.set_language(&language.ts_language())?;
        let mut syntax = Syntax { parser, tree: None, stale: true };
        syntax.reparse(text);
        Ok(syntax)
    }

    /// Records a change of bytes `start..old_end` of `old_text` to `new_text`.
    pub fn edit(&mut self, old_text: &str, start: usize, old_end: usize, new_text: &str) {
        if let Some(tree) = &mut self.tree {
            tree.edit(&input_edit(old_text, start, old_end, new_text));
        }
        self.stale = true;
    }

    /// Forgets the tree (a whole-text replacement): the next parse starts
    /// from scratch.
    pub fn reset(&mut self) {
        self.tree = None;
        self.stale = true;
    }

    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Brings the tree up to date with `text`, reusing the edited tree.
    pub fn reparse(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let started = Instant::now();
        // Returning true from the progress callback cancels the parse.
        let mut progress = |_: &ParseState| started.elapsed() > graft_grammars::PARSE_TIMEOUT;
        let mut read = |offset: usize, _| bytes.get(offset..).unwrap_or_default();
        let options = ParseOptions::new().progress_callback(&mut progress);
        self.tree = self.parser.parse_with_options(&mut read, self.tree.as_ref(), Some(options));
        self.stale = false;
    }

    /// The current tree; `None` when the last parse failed or timed out.
    pub fn tree(&self) -> Option<&Tree> {
        self.tree.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_spanning_lines_converts_to_rows_and_byte_columns() {
        let old = "fn a() {\n    1\n}\n";
        // Replace "1\n}" (bytes 13..16) by "é\n  2\n".
        let edit = input_edit(old, 13, 16, "é\n  2\n");
        assert_eq!(edit.start_byte, 13);
        assert_eq!(edit.old_end_byte, 16);
        assert_eq!(edit.new_end_byte, 13 + "é\n  2\n".len());
        assert_eq!(edit.start_position, Point::new(1, 4));
        assert_eq!(edit.old_end_position, Point::new(2, 1));
        assert_eq!(edit.new_end_position, Point::new(3, 0));
        // An insertion within a line moves only the column.
        let insert = input_edit(old, 3, 3, "bc");
        assert_eq!(insert.new_end_position, Point::new(0, 5));
        assert_eq!(insert.old_end_position, Point::new(0, 3));
    }

    #[test]
    fn incremental_trees_equal_fresh_parses() {
        let mut text = String::from("fn main() {\n    let x = 1;\n}\n");
        let mut syntax = Syntax::new(Language::Rust, &text).expect("rust grammar");
        // (text to find, replacement): each replaces the first occurrence.
        let edits =
            [("x", "total"), ("fn main", "use std::fmt;\nfn main"), ("1;", "1;\n    total + 1;"), ("main", "run")];
        for (find, new) in edits {
            let start = text.find(find).expect("edit anchor");
            let end = start + find.len();
            syntax.edit(&text, start, end, new);
            text.replace_range(start..end, new);
            syntax.reparse(&text);
            let fresh = graft_grammars::parse(Language::Rust, &text).expect("parse");
            let tree = syntax.tree().expect("tree");
            assert_eq!(tree.root_node().to_sexp(), fresh.root_node().to_sexp(), "{text}");
            assert!(!tree.root_node().has_error(), "{text}");
        }
    }
}
