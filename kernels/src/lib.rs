//! graft-kernels: graft's CUDA kernels. Knows nothing about models.
//!
//! - `src/cu/*.cu`: the CUDA C sources, one module per op family (embedding
//!   gather, RMSNorm, QKV post-processing with q/k norms, RoPE and KV append,
//!   paged attention on the tensor cores with its split merge, tensor-core
//!   products (skinny for narrow steps, wide with shared-memory tiles for
//!   16-512 rows, K split among a thread-block cluster where the grid is
//!   small, the same bits every way) with fused epilogues (residual add,
//!   SwiGLU, bias + RoPE + KV append), argmax, seeded fill), embedded with
//!   `include_str!`.
//! - [`cache`]: run-time compilation by NVRTC for the device's architecture
//!   (sm_90a on Hopper), PTX cached on disk keyed by (source hash, arch,
//!   options).
//! - [`gpu::Gpu`]: a device, its stream and kernels; [`gpu::Buf`] device
//!   buffers; launch wrappers that check shapes before launching; CUDA
//!   graph capture ([`gpu::Graph`]) and event timing.
//! - [`geometry`]: step width buckets and launch geometry, pure and tested
//!   without a GPU.
//!
//! The CUDA libraries are loaded at run time (cudarc's dynamic loading), so
//! the crate builds, and its CPU-side tests run, on machines without CUDA;
//! [`gpu::Gpu::new`] then returns [`KernelError::Unavailable`].

pub mod cache;
pub mod error;
pub mod geometry;
pub mod gpu;

pub use error::{KernelError, Result};
pub use gpu::{AttentionShape, Buf, Gpu, Graph, ProductInput, ProductKernels, Ptr, STEP_WORDS};

/// Tokens per KV block; the engine's paged cache uses the same (the
/// kernels locate position p at block `table[p / 16]`, slot `p % 16`).
pub const BLOCK_TOKENS: usize = 16;
