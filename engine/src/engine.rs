//! [`Engine`]: a loaded model on a backend with its KV cache and tokenizer,
//! the object the CLI and (later) the server hold.

mod cache;

use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, Device, Logits};
use crate::decode::{self, AdaptiveWidth, Drafter, GenerateParams, Generation, Prefill, Speculation};
use crate::error::{Error, Result};
use crate::kv::{KvCache, KvShape, SeqKv};
use crate::model::config::ModelConfig;
use crate::model::{self, ModelFormat};
use crate::tokenizer::Tokenizer;
pub use cache::Warmed;

/// Default KV budget on the host: 1 GiB (about 23k tokens of SmolLM2-135M).
pub const DEFAULT_KV_BUDGET_BYTES: usize = 1 << 30;

/// Default prefix-cache budget of one namespace: 384 MiB (about 8.7k tokens
/// of SmolLM2-135M), so the headless namespace and one workspace fit in
/// the default KV budget with a quarter of it left for live sequences.
pub const DEFAULT_NAMESPACE_BUDGET_BYTES: usize = 384 << 20;

/// Options for [`Engine::load`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub kv_budget_bytes: usize,
    /// Where the model runs (a GPU's KV pool is sized from the same budget).
    pub device: Device,
    /// Prefix-cache budget of each namespace (inside `kv_budget_bytes`);
    /// [`Engine::set_namespace_budget`] changes one.
    pub namespace_budget_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            kv_budget_bytes: DEFAULT_KV_BUDGET_BYTES,
            device: Device::Cpu,
            namespace_budget_bytes: DEFAULT_NAMESPACE_BUDGET_BYTES,
        }
    }
}

/// A prompt whose KV entries are in the cache, ready to seed generations.
pub struct PrefilledPrompt {
    seq: SeqKv,
    prefill: Prefill,
}

impl PrefilledPrompt {
    pub fn prompt_tokens(&self) -> usize {
        self.prefill.prompt_tokens
    }

    /// Prompt tokens whose KV came from the prefix cache.
    pub fn cached_prompt_tokens(&self) -> usize {
        self.prefill.cached_tokens
    }
}

/// A model ready to run.
pub struct Engine {
    backend: Backend,
    /// Shared so callers can detokenize while the engine generates.
    tokenizer: Arc<Tokenizer>,
    kv: KvCache,
    format: ModelFormat,
}

impl Engine {
    /// Loads a GGUF file or a Hugging Face directory onto the backend of
    /// `options.device`.
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Self> {
        let loaded = model::load(path)?;
        let c = &loaded.config;
        let shape = KvShape { layers: c.num_layers, kv_heads: c.num_kv_heads, head_dim: c.head_dim };
        let backend = Backend::new(options.device, loaded.config, loaded.weights, options.kv_budget_bytes)?;
        let mut kv = backend.new_kv_cache(shape, options.kv_budget_bytes);
        kv.set_default_namespace_budget(options.namespace_budget_bytes);
        Ok(Self { backend, tokenizer: Arc::new(loaded.tokenizer), kv, format: loaded.format })
    }

    pub fn config(&self) -> &ModelConfig {
        self.backend.config()
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// Bytes of weights one single-token step reads.
    pub fn weight_bytes_per_token(&self) -> usize {
        self.backend.weights().bytes_per_token()
    }

    /// Logits for every position of `tokens`, from an empty context.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Logits> {
        let mut seq = self.kv.new_sequence();
        let rows: Vec<usize> = (0..tokens.len()).collect();
        let result = self.backend.forward(&mut self.kv, &mut seq, tokens, &rows);
        self.kv.release(&mut seq);
        result
    }

    /// Greedy generation from `prompt` token ids.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_token: impl FnMut(u32),
    ) -> Result<Generation> {
        self.check_capacity(prompt.len(), params)?;
        let mut seq = self.kv.new_sequence();
        let result = decode::generate_greedy(&self.backend, &mut self.kv, &mut seq, prompt, params, on_token);
        self.kv.release(&mut seq);
        result
    }

    /// Speculative greedy generation from `prompt` token ids: the same
    /// tokens as [`Engine::generate`], with drafts from `drafter` verified
    /// up to `max_width` at a time (the width adapts per step).
    pub fn generate_speculative(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        drafter: &mut dyn Drafter,
        max_width: usize,
        on_token: impl FnMut(u32),
    ) -> Result<Generation> {
        self.check_capacity(prompt.len(), params)?;
        let mut speculation = Speculation { drafter, width: AdaptiveWidth::new(max_width) };
        let mut seq = self.kv.new_sequence();
        let result = decode::generate_speculative(
            &self.backend,
            &mut self.kv,
            &mut seq,
            prompt,
            params,
            &mut speculation,
            on_token,
        );
        self.kv.release(&mut seq);
        result
    }

    /// Feeds `prompt` once so that several generations can start from it
    /// ([`Engine::generate_from`]); give it back with
    /// [`Engine::release_prompt`], or its KV blocks stay taken.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<PrefilledPrompt> {
        let mut seq = self.kv.new_sequence();
        match decode::prefill(&self.backend, &mut self.kv, &mut seq, prompt) {
            Ok(prefill) => Ok(PrefilledPrompt { seq, prefill }),
            Err(err) => {
                self.kv.release(&mut seq);
                Err(err)
            }
        }
    }

    /// [`Engine::generate_speculative`] from a prefilled prompt, which stays
    /// as it is (the generation writes into a copy-on-write fork). The
    /// stats report the prompt's original prefill time.
    pub fn generate_from(
        &mut self,
        prompt: &PrefilledPrompt,
        params: &GenerateParams,
        drafter: &mut dyn Drafter,
        max_width: usize,
        on_token: impl FnMut(u32),
    ) -> Result<Generation> {
        self.check_capacity(prompt.prefill.prompt_tokens, params)?;
        let mut speculation = Speculation { drafter, width: AdaptiveWidth::new(max_width) };
        let mut seq = self.kv.fork(&prompt.seq);
        let result = decode::decode_speculative(
            &self.backend,
            &mut self.kv,
            &mut seq,
            &prompt.prefill,
            params,
            &mut speculation,
            on_token,
        );
        self.kv.release(&mut seq);
        result
    }

    /// Returns a prefilled prompt's KV blocks to the pool.
    pub fn release_prompt(&mut self, mut prompt: PrefilledPrompt) {
        self.kv.release(&mut prompt.seq);
    }

    /// Verification feeds at most the prompt and every output token, so
    /// this bound holds for speculative decoding too.
    fn check_capacity(&self, prompt_tokens: usize, params: &GenerateParams) -> Result<()> {
        if prompt_tokens + params.max_tokens > self.kv.capacity_tokens() {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "{} prompt + {} output tokens exceed the KV cache's {} tokens; raise the KV budget",
                    prompt_tokens,
                    params.max_tokens,
                    self.kv.capacity_tokens()
                ),
            });
        }
        Ok(())
    }
}
