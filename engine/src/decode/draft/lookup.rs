//! [`PromptLookup`]: drafts by finding the recent output in given token
//! sequences (e.g. the original file and the update of an apply request)
//! and proposing what follows there.

use super::ngram::{NgramIndex, Occurrence};
use super::Drafter;

/// Indexed n-gram lengths, ascending; lookups try the longest first.
const LENGTHS: [usize; 8] = [1, 2, 3, 4, 6, 8, 12, 16];

/// Default shortest output suffix looked up.
pub const DEFAULT_MIN_NGRAM: usize = 2;

/// At most this many occurrences of one n-gram are compared further back.
const MAX_CANDIDATES: usize = 8;

/// How far back past the n-gram candidates are compared to break ties.
const MAX_EXTENSION: usize = 64;

/// n-gram lookup over sequences indexed once per request. A lookup hashes
/// at most [`LENGTHS`]`.len()` output suffixes and compares a bounded number
/// of candidates ([`MAX_CANDIDATES`] × [`MAX_EXTENSION`] tokens), so its
/// cost does not grow with the prompt. The longest suffix with a match
/// wins; among its occurrences, the one agreeing furthest back with the
/// output, then the first.
#[derive(Debug, Clone)]
pub struct PromptLookup {
    index: NgramIndex,
    min_ngram: usize,
}

impl PromptLookup {
    /// Indexes `sources`; suffixes shorter than `min_ngram` (at least 1) are
    /// not looked up.
    pub fn new(sources: &[Vec<u32>], min_ngram: usize) -> Self {
        Self { index: NgramIndex::new(sources.to_vec(), &LENGTHS), min_ngram: min_ngram.max(1) }
    }

    /// Tokens before the n-gram at which `output` and the source agree.
    fn extension(&self, output: &[u32], n: usize, at: Occurrence) -> usize {
        let source = self.index.source(at.source);
        let (mut out, mut src) = (output.len() - n, at.end as usize - n);
        let mut extension = 0;
        while extension < MAX_EXTENSION && out > 0 && src > 0 && output[out - 1] == source[src - 1] {
            (out, src, extension) = (out - 1, src - 1, extension + 1);
        }
        extension
    }
}

impl Drafter for PromptLookup {
    fn propose(&mut self, output: &[u32], max: usize) -> Vec<u32> {
        for (table, &n) in self.index.lengths().iter().enumerate().rev() {
            if n < self.min_ngram || n > output.len() {
                continue;
            }
            let suffix = &output[output.len() - n..];
            let best = self
                .index
                .occurrences(table, suffix)
                .filter(|o| (o.end as usize) < self.index.source(o.source).len())
                .take(MAX_CANDIDATES)
                .map(|o| (self.extension(output, n, o), o))
                .reduce(|best, next| if next.0 > best.0 { next } else { best });
            if let Some((_, at)) = best {
                let source = self.index.source(at.source);
                let start = at.end as usize;
                return source[start..source.len().min(start.saturating_add(max))].to_vec();
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_the_continuation_of_the_longest_match() {
        // "2 3" continues with 4 in the first source; "1 2 3" with 5 in the second.
        let mut lookup = PromptLookup::new(&[vec![2, 3, 4, 4], vec![1, 2, 3, 5, 6]], 1);
        assert_eq!(lookup.propose(&[1, 2, 3], 3), vec![5, 6]);
        assert_eq!(lookup.propose(&[9, 2, 3], 3), vec![4, 4]);
        assert_eq!(lookup.propose(&[9, 2, 3], 1), vec![4]);
    }

    #[test]
    fn breaks_ties_by_agreement_further_back() {
        // Both sources hold the same 16-gram (the longest indexed length);
        // the output agrees with the one preceded by its own first token.
        let gram: Vec<u32> = (20..36).collect();
        let a = [vec![100], gram.clone(), vec![1]].concat();
        let b = [vec![200], gram.clone(), vec![2]].concat();
        let mut lookup = PromptLookup::new(&[a, b], 2);
        assert_eq!(lookup.propose(&[[200].as_slice(), &gram].concat(), 4), vec![2]);
        assert_eq!(lookup.propose(&[[100].as_slice(), &gram].concat(), 4), vec![1]);
        assert_eq!(lookup.propose(&gram, 4), vec![1], "no agreement further back: the first");
    }

    #[test]
    fn proposes_nothing_without_a_long_enough_match() {
        let mut lookup = PromptLookup::new(&[vec![1, 2, 3]], 2);
        assert!(lookup.propose(&[2], 4).is_empty(), "one token is below min_ngram");
        assert!(lookup.propose(&[4, 5], 4).is_empty());
        assert!(lookup.propose(&[2, 3], 4).is_empty(), "the match ends its source");
        assert_eq!(lookup.propose(&[1, 2], 4), vec![3]);
    }

    #[test]
    fn matches_longer_than_every_indexed_length_still_use_the_longest() {
        let source: Vec<u32> = (0..40).collect();
        let mut lookup = PromptLookup::new(&[source], 2);
        let output: Vec<u32> = (0..30).collect();
        assert_eq!(lookup.propose(&output, 3), vec![30, 31, 32]);
    }
}
