//! [`TextDraft`]: drafts from a reference token sequence the output is
//! expected to follow closely (the expected file, later the structural merge
//! candidate).

use super::ngram::NgramIndex;
use super::Drafter;

/// n-gram lengths used to re-align after a divergence, ascending.
const ALIGN_LENGTHS: [usize; 10] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32];

/// Shortest output suffix trusted for re-alignment: a single token (a
/// newline, a brace) occurs everywhere and would point at noise.
const MIN_ALIGN: usize = 2;

/// Follows a reference with a cursor: while the output agrees with the
/// reference at the cursor, the cursor advances and the draft is the
/// reference from there. When the output diverges, the cursor re-aligns to
/// where the recent output continues in the reference: the longest output
/// suffix (over [`ALIGN_LENGTHS`]) found in the reference, nearest the
/// cursor (first at or after it, else last before it). Until a suffix of at
/// least [`MIN_ALIGN`] tokens matches, it proposes nothing.
#[derive(Debug, Clone)]
pub struct TextDraft {
    index: NgramIndex,
    /// Reference position of the next expected output token.
    cursor: usize,
    /// Whether the output so far ends in agreement with the cursor.
    aligned: bool,
    /// Output tokens already compared with the reference.
    seen: usize,
}

impl TextDraft {
    pub fn new(reference: Vec<u32>) -> Self {
        Self { index: NgramIndex::new(vec![reference], &ALIGN_LENGTHS), cursor: 0, aligned: true, seen: 0 }
    }

    fn reference(&self) -> &[u32] {
        self.index.source(0)
    }

    /// Moves the cursor after the longest suffix of `output` found in the
    /// reference; false if none of at least [`MIN_ALIGN`] tokens is.
    fn realign(&mut self, output: &[u32]) -> bool {
        for (table, &n) in ALIGN_LENGTHS.iter().enumerate().rev() {
            if n < MIN_ALIGN || n > output.len() {
                continue;
            }
            if let Some(found) = self.index.nearest(table, &output[output.len() - n..], self.cursor) {
                self.cursor = found.end as usize;
                return true;
            }
        }
        false
    }
}

impl Drafter for TextDraft {
    fn propose(&mut self, output: &[u32], max: usize) -> Vec<u32> {
        // A shorter output than last time is a new generation: start over.
        if output.len() < self.seen {
            (self.cursor, self.aligned, self.seen) = (0, true, 0);
        }
        if self.aligned {
            for &token in &output[self.seen..] {
                if self.reference().get(self.cursor) == Some(&token) {
                    self.cursor += 1;
                } else {
                    self.aligned = false;
                    break;
                }
            }
        }
        self.seen = output.len();
        if !self.aligned {
            self.aligned = self.realign(output);
        }
        if !self.aligned {
            return Vec::new();
        }
        let reference = self.reference();
        let end = reference.len().min(self.cursor.saturating_add(max));
        reference[self.cursor.min(end)..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_reference_while_the_output_agrees() {
        let mut draft = TextDraft::new(vec![10, 11, 12, 13, 14, 15]);
        assert_eq!(draft.propose(&[10], 3), vec![11, 12, 13]);
        assert_eq!(draft.propose(&[10, 11, 12], 100), vec![13, 14, 15]);
        assert_eq!(draft.propose(&[10, 11, 12, 13, 14, 15], 4), Vec::<u32>::new());
    }

    #[test]
    fn realigns_after_an_insertion() {
        // The output inserts 99 after 11, then resumes the reference.
        let mut draft = TextDraft::new(vec![10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(draft.propose(&[10, 11], 2), vec![12, 13]);
        assert!(draft.propose(&[10, 11, 99], 2).is_empty(), "99 is nowhere in the reference");
        assert!(draft.propose(&[10, 11, 99, 12], 2).is_empty(), "one token is too short to trust");
        assert_eq!(draft.propose(&[10, 11, 99, 12, 13], 2), vec![14, 15]);
        assert_eq!(draft.propose(&[10, 11, 99, 12, 13, 14, 15], 5), vec![16]);
    }

    #[test]
    fn realigns_after_a_deletion_with_the_longest_suffix() {
        // Reference: a b c | x y | a b d e; output skips to "b d".
        let mut draft = TextDraft::new(vec![1, 2, 3, 7, 8, 1, 2, 4, 5]);
        assert_eq!(draft.propose(&[1, 2], 1), vec![3]);
        // "1 2 4": the 3-gram occurs only at the end, the 2-gram "1 2" twice.
        assert_eq!(draft.propose(&[1, 2, 4], 3), vec![5]);
    }

    #[test]
    fn prefers_the_nearest_match_after_the_cursor() {
        // "5 6" occurs at 0..2, 4..6 and 8..10; the cursor stands at 3.
        let mut draft = TextDraft::new(vec![5, 6, 1, 2, 5, 6, 3, 0, 5, 6, 4]);
        assert_eq!(draft.propose(&[5, 6, 1], 1), vec![2]);
        assert_eq!(draft.propose(&[5, 6, 1, 9, 5, 6], 1), vec![3]);
        // A match before the cursor is taken when none follows it.
        assert_eq!(draft.propose(&[5, 6, 1, 9, 5, 6, 3, 0, 5, 6, 4, 1, 2], 2), vec![5, 6]);
    }
}
