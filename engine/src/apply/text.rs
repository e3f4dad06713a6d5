//! Lines of a text with their line endings, and interned line keys for
//! comparing snippet lines with original lines.

use std::collections::HashMap;

use super::Matching;

/// One line of a text: its content and the ending that followed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Line<'a> {
    /// The content, without `\r` or `\n`.
    pub text: &'a str,
    /// `"\r\n"`, `"\n"`, or `""` for a last line without a newline.
    pub eol: &'a str,
}

/// The lines of `text`; a final newline does not start an empty line.
pub(super) fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, eol, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i..=i], &rest[i + 1..]),
            None => (rest, "", ""),
        };
        let (line, eol) = match line.strip_suffix('\r') {
            Some(stripped) if !eol.is_empty() => (stripped, "\r\n"),
            _ => (line, eol),
        };
        lines.push(Line { text: line, eol });
        rest = next;
    }
    lines
}

/// The ending most lines of `lines` use (`"\n"` on a tie or no lines).
pub(super) fn dominant_eol(lines: &[Line<'_>]) -> &'static str {
    let crlf = lines.iter().filter(|l| l.eol == "\r\n").count();
    let lf = lines.iter().filter(|l| l.eol == "\n").count();
    if crlf > lf {
        "\r\n"
    } else {
        "\n"
    }
}

/// The comparison key of a line under a matching mode.
pub(super) fn key(matching: Matching, text: &str) -> &str {
    match matching {
        Matching::Exact => text,
        Matching::IgnoreWhitespace => text.trim(),
    }
}

/// Original and snippet lines as dense ids (equal ids: equal keys) and, for
/// each id, where it occurs in the original.
pub(super) struct Keys {
    /// Id of each original line.
    pub original: Vec<u32>,
    /// Id of each snippet line.
    pub update: Vec<u32>,
    /// Ascending original line numbers of each id.
    pub positions: Vec<Vec<usize>>,
    /// How much a match of each id is worth when scoring alignments
    /// ([`line_weight`]).
    pub weights: Vec<u32>,
}

/// What matching a line says about a placement: a blank line little, a
/// line of punctuation (`}`, `)`, `]);`) or a short keyword somewhat, a line
/// with a name or text a lot.
pub(super) fn line_weight(text: &str) -> u32 {
    let trimmed = text.trim();
    let words = trimmed.chars().filter(|c| c.is_alphanumeric()).count();
    if trimmed.is_empty() {
        1
    } else if words < 4 {
        2
    } else {
        6
    }
}

impl Keys {
    /// Interns both texts' lines under `matching`.
    pub fn new<'a>(matching: Matching, original: &[Line<'a>], update: &[Line<'a>]) -> Self {
        let mut ids: HashMap<&'a str, u32> = HashMap::new();
        let mut weights = Vec::new();
        let mut intern = |text: &'a str| -> u32 {
            let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            *ids.entry(key(matching, text)).or_insert_with(|| {
                weights.push(line_weight(text));
                next
            })
        };
        let original_ids: Vec<u32> = original.iter().map(|l| intern(l.text)).collect();
        let update_ids: Vec<u32> = update.iter().map(|l| intern(l.text)).collect();
        let mut positions = vec![Vec::new(); ids.len()];
        for (line, &id) in original_ids.iter().enumerate() {
            if let Some(list) = positions.get_mut(id as usize) {
                list.push(line);
            }
        }
        Keys { original: original_ids, update: update_ids, positions, weights }
    }

    /// The weight of a match of `id`.
    pub fn weight(&self, id: u32) -> u32 {
        self.weights.get(id as usize).copied().unwrap_or(1)
    }

    /// Original lines at or after `from` whose id is `id`.
    pub fn occurrences(&self, id: u32, from: usize) -> &[usize] {
        match self.positions.get(id as usize) {
            Some(list) => {
                let start = list.partition_point(|&p| p < from);
                &list[start..]
            }
            None => &[],
        }
    }
}
