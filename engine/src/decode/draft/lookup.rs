//! [`PromptLookup`]: drafts by finding the recent output in given token
//! sequences (e.g. the original file and the update of an apply request) and
//! in the output itself, and proposing what follows there.

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

/// n-gram lookup over sequences indexed once per request and over the
/// output so far, indexed as it grows (as transformers' prompt lookup and
/// llama.cpp's n-gram drafts do: text a generation repeats, such as a
/// block written twice or a loop, is drafted from its first writing). A
/// lookup hashes at most [`LENGTHS`]`.len()` output suffixes and compares a
/// bounded number of candidates ([`MAX_CANDIDATES`] × [`MAX_EXTENSION`]
/// tokens), so its cost does not grow with the prompt. The longest suffix
/// with a match wins; among its occurrences, the one agreeing furthest back
/// with the output, then the first (the given sequences before the output).
/// A draft copied from the output may run past the output's end: it then
/// goes on with its own beginning, so a loop of period p drafts as many
/// tokens as the width allows, not p.
#[derive(Debug, Clone)]
pub struct PromptLookup {
    /// The given sequences, then the output (the last source).
    index: NgramIndex,
    min_ngram: usize,
}

impl PromptLookup {
    /// Indexes `sources`; suffixes shorter than `min_ngram` (at least 1) are
    /// not looked up.
    pub fn new(sources: &[Vec<u32>], min_ngram: usize) -> Self {
        let mut all = sources.to_vec();
        all.push(Vec::new());
        Self { index: NgramIndex::new(all, &LENGTHS), min_ngram: min_ngram.max(1) }
    }

    fn output_source(&self) -> u32 {
        (self.index.source_count() - 1) as u32
    }

    /// Brings the index's copy of the output up to `output`: the new tokens
    /// are indexed; an output that does not extend the copy (a new
    /// generation) replaces it.
    fn follow(&mut self, output: &[u32]) {
        if !output.starts_with(self.index.source(self.output_source())) {
            self.index.clear_last();
        }
        let from = self.index.source(self.output_source()).len();
        self.index.extend_last(&output[from..]);
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

    /// Up to `max` tokens from `at`'s continuation; from the output, past
    /// its end the draft continues with itself.
    fn continuation(&self, at: Occurrence, max: usize) -> Vec<u32> {
        let source = self.index.source(at.source);
        let start = at.end as usize;
        if at.source != self.output_source() {
            return source[start..source.len().min(start.saturating_add(max))].to_vec();
        }
        let mut draft = Vec::with_capacity(max);
        for position in start..start.saturating_add(max) {
            let token = match source.get(position) {
                Some(&token) => token,
                None => draft[position - source.len()],
            };
            draft.push(token);
        }
        draft
    }
}

impl Drafter for PromptLookup {
    fn propose(&mut self, output: &[u32], max: usize) -> Vec<u32> {
        self.follow(output);
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
                return self.continuation(at, max);
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
    fn drafts_from_the_output_itself_past_its_end() {
        let mut lookup = PromptLookup::new(&[vec![50, 51]], 2);
        // "1 2 3" occurred before in the output: the draft repeats the loop.
        assert_eq!(lookup.propose(&[1, 2, 3, 4, 1, 2, 3], 6), vec![4, 1, 2, 3, 4, 1]);
        // The output grew by what was accepted: still one index, extended.
        assert_eq!(lookup.propose(&[1, 2, 3, 4, 1, 2, 3, 4, 1], 3), vec![2, 3, 4]);
    }

    #[test]
    fn given_sources_win_ties_with_the_output() {
        let mut lookup = PromptLookup::new(&[vec![1, 2, 3, 9]], 2);
        assert_eq!(lookup.propose(&[1, 2, 3, 7, 1, 2, 3], 2), vec![9]);
        // A longer match in the output wins.
        assert_eq!(lookup.propose(&[5, 1, 2, 3, 7, 5, 1, 2, 3], 2), vec![7, 5]);
    }

    #[test]
    fn a_new_generation_forgets_the_previous_output() {
        let mut lookup = PromptLookup::new(&[], 2);
        assert_eq!(lookup.propose(&[1, 2, 3, 1, 2], 1), vec![3]);
        assert!(lookup.propose(&[9, 1, 2], 4).is_empty(), "[1, 2] was only in the previous output");
    }

    #[test]
    fn matches_longer_than_every_indexed_length_still_use_the_longest() {
        let source: Vec<u32> = (0..40).collect();
        let mut lookup = PromptLookup::new(&[source], 2);
        let output: Vec<u32> = (0..30).collect();
        assert_eq!(lookup.propose(&output, 3), vec![30, 31, 32]);
    }
}
