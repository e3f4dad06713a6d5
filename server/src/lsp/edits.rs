//! Minimal text edits from a document's text to an apply's result: a line
//! diff (`similar`) whose changed hunks are trimmed to the bytes that differ,
//! so cursors, marks and folds outside the change survive in the editor.

use lsp_types::{Range, TextEdit};
use similar::{DiffOp, TextDiff};

use super::encoding::{LineIndex, PositionEncoding};

/// A replacement of bytes `start..end` of the old text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteEdit {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// The edits (in order, non-overlapping) that turn `old` into `new`.
pub fn byte_edits(old: &str, new: &str) -> Vec<ByteEdit> {
    let diff = TextDiff::from_lines(old, new);
    let old_lines = diff.old_slices();
    let new_lines = diff.new_slices();
    let offsets = |lines: &[&str]| {
        let mut offsets = Vec::with_capacity(lines.len() + 1);
        let mut at = 0;
        offsets.push(0);
        for line in lines {
            at += line.len();
            offsets.push(at);
        }
        offsets
    };
    let (old_at, new_at) = (offsets(old_lines), offsets(new_lines));
    let mut edits: Vec<ByteEdit> = Vec::new();
    for op in diff.ops() {
        if let DiffOp::Equal { .. } = op {
            continue;
        }
        let (old_range, new_range) = (op.old_range(), op.new_range());
        let (mut start, mut end) = (old_at[old_range.start], old_at[old_range.end]);
        let (mut new_start, mut new_end) = (new_at[new_range.start], new_at[new_range.end]);
        // Trim the bytes both sides share, on character boundaries and
        // never between the \r and \n of a CRLF (no position lies there).
        let mut prefix = common_prefix(&old[start..end], &new[new_start..new_end]);
        if prefix > 0 && old.as_bytes()[start + prefix - 1] == b'\r' {
            prefix -= 1;
        }
        start += prefix;
        new_start += prefix;
        let mut suffix = common_suffix(&old[start..end], &new[new_start..new_end]);
        if suffix > 0 && old.as_bytes()[end - suffix] == b'\n' && old.as_bytes()[..end - suffix].ends_with(b"\r") {
            suffix -= 1;
        }
        end -= suffix;
        new_end -= suffix;
        let text = new[new_start..new_end].to_string();
        match edits.last_mut() {
            Some(last) if last.end == start => {
                last.end = end;
                last.text.push_str(&text);
            }
            _ => edits.push(ByteEdit { start, end, text }),
        }
    }
    edits
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut len = 0;
    for (x, y) in a.chars().zip(b.chars()) {
        if x != y {
            break;
        }
        len += x.len_utf8();
    }
    len
}

fn common_suffix(a: &str, b: &str) -> usize {
    let mut len = 0;
    for (x, y) in a.chars().rev().zip(b.chars().rev()) {
        if x != y {
            break;
        }
        len += x.len_utf8();
    }
    len
}

/// [`byte_edits`] as LSP text edits over `old` (whose line index is
/// `index`) in `encoding`.
pub fn text_edits(old: &str, new: &str, index: &LineIndex, encoding: PositionEncoding) -> Vec<TextEdit> {
    byte_edits(old, new)
        .into_iter()
        .map(|edit| TextEdit {
            range: Range::new(index.position(old, edit.start, encoding), index.position(old, edit.end, encoding)),
            new_text: edit.text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(old: &str, edits: &[ByteEdit]) -> String {
        let mut text = old.to_string();
        for edit in edits.iter().rev() {
            text.replace_range(edit.start..edit.end, &edit.text);
        }
        text
    }

    #[test]
    fn a_changed_word_is_one_small_edit() {
        let old = "fn a() {\n    let x = 1;\n}\n";
        let new = "fn a() {\n    let y = 1;\n}\n";
        assert_eq!(byte_edits(old, new), vec![ByteEdit { start: 17, end: 18, text: "y".into() }]);
    }

    #[test]
    fn edits_replay_to_the_new_text() {
        let cases = [
            ("a\nb\nc\n", "a\nc\nd\n"),
            ("", "x\n"),
            ("x\n", ""),
            ("é😀\r\nline\r\n", "é😁\r\nline\r\nnew\r\n"),
            ("no newline", "no newline at all"),
            ("a\r\nb\r\n", "a\nb\r\n"),
            ("a\nb\n", "a\r\nb\n"),
            ("a\nb\n", "a\nb\n"),
        ];
        for (old, new) in cases {
            let edits = byte_edits(old, new);
            assert_eq!(replay(old, &edits), new, "{old:?} -> {new:?}: {edits:?}");
            assert!(edits.windows(2).all(|w| w[0].end < w[1].start), "{edits:?}");
        }
        assert!(byte_edits("same\n", "same\n").is_empty());
    }

    #[test]
    fn edits_never_split_a_crlf() {
        for (old, new) in [("a\r\nb\r\n", "a\nb\r\n"), ("x\r\n", "x\r\r\n"), ("a\r\n", "ab\r\n")] {
            for edit in byte_edits(old, new) {
                for at in [edit.start, edit.end] {
                    let splits = at > 0 && old.as_bytes()[at - 1] == b'\r' && old.as_bytes().get(at) == Some(&b'\n');
                    assert!(!splits, "{old:?} -> {new:?}: {edit:?}");
                }
            }
        }
    }

    #[test]
    fn text_edits_are_in_the_client_encoding() {
        let old = "😀 a\n";
        let new = "😀 b\n";
        let edits = text_edits(old, new, &LineIndex::new(old), PositionEncoding::Utf16);
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].range.start, lsp_types::Position::new(0, 3));
        assert_eq!(edits[0].range.end, lsp_types::Position::new(0, 4));
    }
}
