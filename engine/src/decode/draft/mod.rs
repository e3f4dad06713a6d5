//! Drafters: cheap guesses of the next output tokens, checked by the target
//! model in one forward pass (see [`super::spec`]). A wrong guess costs
//! width, never correctness, so drafters are heuristics with one narrow
//! contract, [`Drafter::propose`].
//!
//! - [`TextDraft`] follows a reference token sequence (the expected text,
//!   later the structural merge candidate) with an aligned cursor and
//!   re-aligns after a divergence.
//! - [`PromptLookup`] looks the recent output up in an n-gram index of given
//!   token sequences (e.g. original + update) and of the output so far,
//!   longest match first.
//! - [`CompositeDraft`] asks a `TextDraft` first and falls back to a
//!   `PromptLookup`.
//! - [`NoDraft`] proposes nothing (plain greedy decoding, one token a step).

mod lookup;
mod ngram;
mod text;

pub use lookup::{PromptLookup, DEFAULT_MIN_NGRAM};
pub use text::TextDraft;

/// Proposes tokens to follow the output so far.
pub trait Drafter {
    /// Up to `max` tokens guessed to follow `output` (every token generated
    /// so far, in order; each call sees the previous call's `output`
    /// extended). Fewer or none is fine; extra tokens are ignored.
    fn propose(&mut self, output: &[u32], max: usize) -> Vec<u32>;
}

/// Proposes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDraft;

impl Drafter for NoDraft {
    fn propose(&mut self, _output: &[u32], _max: usize) -> Vec<u32> {
        Vec::new()
    }
}

/// A [`TextDraft`] first; where it has nothing to propose, a
/// [`PromptLookup`].
#[derive(Debug, Clone)]
pub struct CompositeDraft {
    text: TextDraft,
    lookup: PromptLookup,
}

impl CompositeDraft {
    pub fn new(text: TextDraft, lookup: PromptLookup) -> Self {
        Self { text, lookup }
    }
}

impl Drafter for CompositeDraft {
    fn propose(&mut self, output: &[u32], max: usize) -> Vec<u32> {
        // The text drafter is always asked, so its cursor follows every token.
        let draft = self.text.propose(output, max);
        if draft.is_empty() {
            self.lookup.propose(output, max)
        } else {
            draft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_prefers_the_text_and_falls_back_to_lookup() {
        let text = TextDraft::new(vec![1, 2, 3, 4]);
        let lookup = PromptLookup::new(&[vec![7, 8, 9, 10, 11]], 1);
        let mut draft = CompositeDraft::new(text, lookup);
        assert_eq!(draft.propose(&[1], 2), vec![2, 3]);
        // 9 is nowhere in the reference: the text has nothing, lookup follows 9.
        assert_eq!(draft.propose(&[1, 9], 2), vec![10, 11]);
        assert!(NoDraft.propose(&[1, 2], 4).is_empty());
    }
}
