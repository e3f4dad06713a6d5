//! Backends run the forward pass. Each backend has the same contract: append
//! a batch of new tokens to a sequence's KV entries and return the logits of
//! the rows asked for (verification of drafts needs exactly this). Dispatch
//! is a closed enum; the CPU backend implements every op, so CPU-only builds
//! compile and test everything. The CUDA backend ([`cuda`], cargo feature
//! `cuda`) runs the same contract on a GPU.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::error::{Error, Result};
use crate::kv::{KvCache, KvShape, SeqKv};
use crate::model::config::ModelConfig;
use crate::model::weights::ModelWeights;

pub use cpu::CpuBackend;
#[cfg(feature = "cuda")]
pub use cuda::CudaBackend;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA device by ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Checks a forward request against the model: shared by every backend so
/// they reject the same inputs with the same errors.
pub(crate) fn check_forward(c: &ModelConfig, seq: &SeqKv, tokens: &[u32], logits_for: &[usize]) -> Result<()> {
    let t_len = tokens.len();
    let start = seq.len();
    if t_len == 0 {
        return Err(Error::InvalidRequest { reason: "forward pass over zero tokens".into() });
    }
    if start + t_len > c.max_position {
        return Err(Error::InvalidRequest {
            reason: format!(
                "positions up to {} exceed the model's context of {} tokens",
                start + t_len,
                c.max_position
            ),
        });
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
        return Err(Error::InvalidRequest {
            reason: format!("token id {bad} is outside the vocabulary ({})", c.vocab_size),
        });
    }
    if let Some(&bad) = logits_for.iter().find(|&&i| i >= t_len) {
        return Err(Error::InvalidRequest { reason: format!("logits asked for row {bad} of a {t_len}-token batch") });
    }
    Ok(())
}

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

/// The available backends. One lives per engine, so the variants' sizes
/// do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    Cpu(CpuBackend),
    #[cfg(feature = "cuda")]
    Cuda(CudaBackend),
}

impl Backend {
    /// The backend for `device` (its KV pool sized from `kv_budget_bytes`).
    /// A device this build or machine cannot use is [`Error::Device`].
    pub fn new(device: Device, config: ModelConfig, weights: ModelWeights, kv_budget_bytes: usize) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Backend::Cpu(CpuBackend::new(config, weights))),
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => Ok(Backend::Cuda(CudaBackend::new(ordinal, config, weights, kv_budget_bytes)?)),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => {
                let _ = kv_budget_bytes;
                Err(Error::Device {
                    device: device.to_string(),
                    reason: "this build of graft has no CUDA support (build with --features cuda)".into(),
                })
            }
        }
    }

    /// The KV cache that goes with this backend: host storage from the
    /// budget on the CPU, block metadata over the device pool on a GPU.
    pub fn new_kv_cache(&self, shape: KvShape, budget_bytes: usize) -> KvCache {
        match self {
            Backend::Cpu(_) => KvCache::with_budget(shape, budget_bytes),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.model().kv_cache(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu(_) => "cpu",
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => "cuda",
        }
    }

    /// The backend with its device, e.g. "cuda (NVIDIA H200, sm_90a)".
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu(_) => "cpu".into(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => format!("cuda ({}, {})", b.model().gpu().name(), b.model().gpu().arch()),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        match self {
            Backend::Cpu(b) => b.config(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.config(),
        }
    }

    pub fn weights(&self) -> &ModelWeights {
        match self {
            Backend::Cpu(b) => b.weights(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.weights(),
        }
    }

    /// The most rows a step of `rows` rows can hold at the same cost: a GPU
    /// runs a step at its width bucket (rows past `rows` masked), so more
    /// draft tokens up to the bucket cost no more device time; on the CPU
    /// every row costs its own work.
    pub fn step_capacity(&self, rows: usize) -> usize {
        match self {
            Backend::Cpu(_) => rows,
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => graft_kernels::geometry::bucket_for(rows).unwrap_or(rows),
        }
    }

    /// Appends `tokens` at positions `seq.len()..` and returns the logits of
    /// the rows `logits_for` (indices into `tokens`).
    pub fn forward(&self, kv: &mut KvCache, seq: &mut SeqKv, tokens: &[u32], logits_for: &[usize]) -> Result<Logits> {
        match self {
            Backend::Cpu(b) => b.forward(kv, seq, tokens, logits_for),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.model().forward(kv, seq, tokens, logits_for),
        }
    }

    /// [`Backend::forward`] for greedy decoding: the greedy token (argmax,
    /// lowest id on ties) of each row of `logits_for`. A GPU computes the
    /// argmax on the device and sends back only the ids.
    pub fn forward_greedy(
        &self,
        kv: &mut KvCache,
        seq: &mut SeqKv,
        tokens: &[u32],
        logits_for: &[usize],
    ) -> Result<Vec<u32>> {
        match self {
            Backend::Cpu(b) => {
                let logits = b.forward(kv, seq, tokens, logits_for)?;
                Ok((0..logits_for.len()).map(|row| logits.argmax(row)).collect())
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.model().forward_greedy(kv, seq, tokens, logits_for),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_print_as_the_cli_names_them() {
        assert_eq!(Device::Cpu.to_string(), "cpu");
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_gpu_in_a_build_without_cuda_is_a_device_error() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/tiny-llama");
        let loaded = crate::model::load(&dir).expect("the tiny model loads");
        let err = Backend::new(Device::Cuda(0), loaded.config, loaded.weights, 1 << 20).err().expect("no CUDA here");
        assert!(matches!(&err, Error::Device { device, .. } if device == "cuda:0"), "{err}");
    }
}
