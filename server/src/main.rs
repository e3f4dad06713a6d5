//! The `graft` command line: `models` (fetch/list the default model),
//! `generate` (greedy generation) and `bench` (benchmarks). The LSP server
//! joins later; this crate is the only one that knows JSON and LSP.

mod cmd;
mod lsp;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "graft", version, about = "Apply AI code edits locally and fast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage cached models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Greedy generation from a prompt, optionally with speculative drafts
    /// (`--draft`); the generated text goes to stdout, a one-line stats
    /// summary (or `--stats-json`) to stderr.
    Generate(cmd::generate::GenerateArgs),
    /// Merge a lazy edit snippet into a file: the result on stdout (or
    /// written in place). Exit status 0: valid and not flagged; 2: the
    /// result is flagged (printed anyway, not written in place without
    /// `--force`; the reasons on stderr); 1: an error.
    Apply(cmd::apply::ApplyArgs),
    /// Run apply cases (a JSONL file or a fixtures directory): one line per
    /// case, a summary table, `N passed, N failed`; exit status 2 when any
    /// case fails.
    Fixtures(cmd::fixtures::FixturesArgs),
    /// Run the language server on stdin/stdout (`graft/apply`,
    /// `graft.applyEdit`, `graft/status`; see editors/ for the plugins).
    Lsp,
    /// Benchmarks (figures go to stdout).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download the default model (SmolLM2-135M-Instruct Q4_1 GGUF) into
    /// $GRAFT_HOME/models and verify its sha256. Does nothing if present.
    Fetch,
    /// List cached models.
    List,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prefill and decode speed against the memory-bandwidth floor.
    Generate(cmd::bench::BenchGenerateArgs),
    /// Speculative decoding on apply cases: steps, tokens per step and
    /// speed-up per drafter.
    Spec(cmd::bench::BenchSpecArgs),
    /// Time to first token through the prefix cache: cold, warm, after an
    /// edit.
    Cache(cmd::bench_cache::BenchCacheArgs),
    /// The CUDA backend's correctness checks against the CPU and its step
    /// latency against width, next to the floors (needs a GPU).
    #[cfg(feature = "cuda")]
    Gpu(cmd::bench_gpu::BenchGpuArgs),
}

/// The model to use: the given path, else the default model (fetched if
/// missing).
pub fn resolve_model(path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match path {
        Some(path) => Ok(path),
        None => cmd::models::ensure_default_model(),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("GRAFT_LOG"))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models { command: ModelsCommand::Fetch } => cmd::models::fetch().map(|_| ()),
        Command::Models { command: ModelsCommand::List } => cmd::models::list(),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Lsp => lsp::run(),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Fixtures(args) => cmd::fixtures::run(args),
        Command::Bench { command: BenchCommand::Generate(args) } => cmd::bench::generate(args),
        Command::Bench { command: BenchCommand::Spec(args) } => cmd::bench::spec(args),
        Command::Bench { command: BenchCommand::Cache(args) } => cmd::bench_cache::run(args),
        #[cfg(feature = "cuda")]
        Command::Bench { command: BenchCommand::Gpu(args) } => cmd::bench_gpu::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<cmd::apply::Unaccepted>() {
            Some(unaccepted) => {
                eprintln!("graft: {unaccepted}");
                ExitCode::from(cmd::apply::UNACCEPTED_EXIT)
            }
            None => {
                eprintln!("graft: error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
