//! One module per CLI subcommand.

pub mod bench;
pub mod generate;
pub mod models;
