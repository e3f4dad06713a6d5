//! Backends run the forward pass. Each backend has the same contract: append
//! a batch of new tokens to a sequence's KV entries and return the logits of
//! the rows asked for (verification of drafts needs exactly this). Dispatch
//! is a closed enum; the CPU backend implements every op, so CPU-only builds
//! compile and test everything.

pub mod cpu;

use crate::error::Result;
use crate::kv::{KvCache, SeqKv};
use crate::model::config::ModelConfig;
use crate::model::weights::ModelWeights;

pub use cpu::CpuBackend;

/// Logits of the requested rows, (rows, vocab) row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    pub vocab: usize,
    pub values: Vec<f32>,
}

impl Logits {
    pub fn rows(&self) -> usize {
        self.values.len() / self.vocab
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.values[index * self.vocab..(index + 1) * self.vocab]
    }

    /// The greedy token of a row: the highest logit, the lowest id on ties
    /// (as torch.argmax).
    pub fn argmax(&self, index: usize) -> u32 {
        let row = self.row(index);
        let mut best = 0usize;
        for (i, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = i;
            }
        }
        best as u32
    }
}

/// The available backends.
pub enum Backend {
    Cpu(CpuBackend),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu(_) => "cpu",
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            Backend::Cpu(b) => b.config(),
        }
    }

    pub fn weights(&self) -> &ModelWeights {
        match self {
            Backend::Cpu(b) => b.weights(),
        }
    }

    /// Appends `tokens` at positions `seq.len()..` and returns the logits of
    /// the rows `logits_for` (indices into `tokens`).
    pub fn forward(&self, kv: &mut KvCache, seq: &mut SeqKv, tokens: &[u32], logits_for: &[usize]) -> Result<Logits> {
        match self {
            Backend::Cpu(b) => b.forward(kv, seq, tokens, logits_for),
        }
    }
}
