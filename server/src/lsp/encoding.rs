//! LSP positions <-> byte offsets: the negotiated [`PositionEncoding`]
//! (utf-8 when the client offers it, else utf-16) and a [`LineIndex`] of line
//! starts. Lines end at `\n`, `\r\n` or `\r` as the protocol says; a
//! character past the end of its line means the line's end (before its
//! terminator), a line past the last means the end of the text, and a
//! position inside a character (half a surrogate pair, the middle of a
//! UTF-8 sequence) rounds down to the character's start. Conversions never
//! panic on client input.

use lsp_types::{Position, PositionEncodingKind};

/// The unit the client counts `Position::character` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEncoding {
    Utf8,
    Utf16,
}

impl PositionEncoding {
    /// utf-8 when the client offers it (no conversion needed), else utf-16
    /// (the protocol's mandatory default).
    pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> Self {
        match offered {
            Some(kinds) if kinds.contains(&PositionEncodingKind::UTF8) => PositionEncoding::Utf8,
            _ => PositionEncoding::Utf16,
        }
    }

    pub fn kind(self) -> PositionEncodingKind {
        match self {
            PositionEncoding::Utf8 => PositionEncodingKind::UTF8,
            PositionEncoding::Utf16 => PositionEncodingKind::UTF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PositionEncoding::Utf8 => "utf-8",
            PositionEncoding::Utf16 => "utf-16",
        }
    }

    fn units(self, c: char) -> usize {
        match self {
            PositionEncoding::Utf8 => c.len_utf8(),
            PositionEncoding::Utf16 => c.len_utf16(),
        }
    }
}

/// Byte offsets where each line of a text starts; always at least one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => starts.push(i + 1),
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    starts.push(i + 2);
                    i += 1;
                }
                b'\r' => starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        LineIndex { starts }
    }

    /// The byte range of line `line`'s content, terminator excluded.
    fn line_content(&self, text: &str, line: usize) -> (usize, usize) {
        let start = self.starts[line];
        let end = self.starts.get(line + 1).copied().unwrap_or(text.len());
        let content = &text.as_bytes()[start..end];
        let terminator = if content.ends_with(b"\r\n") {
            2
        } else if content.ends_with(b"\n") || content.ends_with(b"\r") {
            1
        } else {
            0
        };
        (start, end - terminator)
    }

    /// The byte offset of `position` in `text` (clamped as the module says).
    pub fn offset(&self, text: &str, position: Position, encoding: PositionEncoding) -> usize {
        let line = position.line as usize;
        if line >= self.starts.len() {
            return text.len();
        }
        let (start, end) = self.line_content(text, line);
        let wanted = position.character as usize;
        let mut units = 0;
        for (i, c) in text[start..end].char_indices() {
            let next = units + encoding.units(c);
            if next > wanted {
                return start + i;
            }
            units = next;
        }
        end
    }

    /// The position of byte `offset` (clamped to the text, rounded down to a
    /// character boundary).
    pub fn position(&self, text: &str, offset: usize, encoding: PositionEncoding) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let start = self.starts[line];
        let character: usize = match encoding {
            PositionEncoding::Utf8 => offset - start,
            PositionEncoding::Utf16 => text[start..offset].chars().map(char::len_utf16).sum(),
        };
        Position::new(line as u32, character as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(text: &str, line: u32, character: u32, encoding: PositionEncoding) -> usize {
        LineIndex::new(text).offset(text, Position::new(line, character), encoding)
    }

    #[test]
    fn utf8_is_chosen_only_when_offered() {
        assert_eq!(PositionEncoding::negotiate(None), PositionEncoding::Utf16);
        let offered = [PositionEncodingKind::UTF16, PositionEncodingKind::UTF8];
        assert_eq!(PositionEncoding::negotiate(Some(&offered)), PositionEncoding::Utf8);
        assert_eq!(PositionEncoding::negotiate(Some(&[PositionEncodingKind::UTF32])), PositionEncoding::Utf16);
    }

    #[test]
    fn astral_characters_count_two_utf16_units_and_four_bytes() {
        let text = "a😀b\n";
        assert_eq!(offset(text, 0, 1, PositionEncoding::Utf16), 1);
        assert_eq!(offset(text, 0, 3, PositionEncoding::Utf16), 5);
        assert_eq!(offset(text, 0, 5, PositionEncoding::Utf8), 5);
        // Half a surrogate pair / the middle of a UTF-8 sequence round down.
        assert_eq!(offset(text, 0, 2, PositionEncoding::Utf16), 1);
        assert_eq!(offset(text, 0, 3, PositionEncoding::Utf8), 1);
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, 5, PositionEncoding::Utf16), Position::new(0, 3));
        assert_eq!(index.position(text, 5, PositionEncoding::Utf8), Position::new(0, 5));
        assert_eq!(index.position(text, 3, PositionEncoding::Utf8), Position::new(0, 1));
    }

    #[test]
    fn crlf_and_lone_cr_end_lines_and_positions_past_the_end_clamp() {
        let text = "ab\r\ncd\re\n";
        assert_eq!(offset(text, 1, 0, PositionEncoding::Utf16), 4);
        assert_eq!(offset(text, 2, 0, PositionEncoding::Utf16), 7);
        // Past the end of line 0: before its \r\n, never between \r and \n.
        assert_eq!(offset(text, 0, 99, PositionEncoding::Utf16), 2);
        assert_eq!(offset(text, 1, 99, PositionEncoding::Utf8), 6);
        // The empty line after the final newline, then lines past the end.
        assert_eq!(offset(text, 3, 0, PositionEncoding::Utf16), text.len());
        assert_eq!(offset(text, 40, 3, PositionEncoding::Utf16), text.len());
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, 4, PositionEncoding::Utf16), Position::new(1, 0));
        assert_eq!(index.position(text, text.len() + 10, PositionEncoding::Utf16), Position::new(3, 0));
    }

    #[test]
    fn offsets_and_positions_round_trip_on_every_boundary() {
        let text = "fn é() {\r\n    \"😀\";\n}\rx";
        let index = LineIndex::new(text);
        for encoding in [PositionEncoding::Utf8, PositionEncoding::Utf16] {
            for (offset, _) in text.char_indices() {
                let position = index.position(text, offset, encoding);
                // Offsets inside a CRLF pair are not positions of their own.
                if text.as_bytes().get(offset) == Some(&b'\n') && offset > 0 && text.as_bytes()[offset - 1] == b'\r' {
                    continue;
                }
                assert_eq!(index.offset(text, position, encoding), offset, "{encoding:?} {offset}");
            }
        }
    }
}
