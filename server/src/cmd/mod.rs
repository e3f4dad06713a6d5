//! One module per CLI subcommand.

pub mod apply;
pub mod bench;
pub mod bench_cache;
#[cfg(feature = "cuda")]
pub mod bench_gpu;
pub mod device;
pub mod fixtures;
pub mod generate;
pub mod models;
