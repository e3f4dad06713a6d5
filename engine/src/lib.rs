//! graft-engine: models, tokenizer, backends, paged KV cache and decoding.
//! Knows nothing about LSP or JSON-RPC; speaks plain Rust types.
//!
//! - [`model`] reads GGUF files and Hugging Face directories into a
//!   [`model::config::ModelConfig`] and [`model::weights::ModelWeights`]
//!   (llama, qwen2, qwen3), dequantizing to f32.
//! - [`tokenizer::Tokenizer`] wraps the `tokenizers` crate, built from
//!   tokenizer.json or from GGUF metadata, with chat templates.
//! - [`kv::KvCache`] is the paged KV cache: a pool of fixed-size token
//!   blocks with refcounts, and per-sequence block tables; [`kv::prefix`]
//!   keeps full blocks in per-namespace prefix caches, found again by
//!   content ([`Engine::prefill_in`], [`Engine::warm`]).
//! - [`backend::Backend`] runs the forward pass of a batch of new tokens of
//!   a sequence and returns the logits asked for; the CPU backend is the
//!   reference (compact GGUF blocks with fused kernels, exact values).
//! - [`decode`] is plain greedy generation (the reference) and lossless
//!   speculative decoding: drafters ([`decode::draft`]) propose tokens, one
//!   batched forward verifies them, rejected KV is truncated, and an
//!   adaptive width picks how many to draft. [`Engine`] ties a loaded model,
//!   a backend and a KV cache together.
//! - [`apply`] merges lazy edit snippets into files; so far the
//!   deterministic structural merge (line anchors) with its report.

pub mod apply;
pub mod backend;
pub mod decode;
mod engine;
pub mod error;
pub mod home;
pub mod kv;
pub mod model;
pub mod tokenizer;

pub use engine::{
    Engine, EngineOptions, PrefilledPrompt, Warmed, DEFAULT_KV_BUDGET_BYTES, DEFAULT_NAMESPACE_BUDGET_BYTES,
};
pub use error::{Error, Result};
