//! `graft lsp`: the language server on stdio (tower-lsp). Editors send
//! `graft/apply` (or the `graft.applyEdit` command) with a document version
//! and a lazy edit snippet; the server merges it (engine merge, model or
//! auto), and sends back a minimal, versioned `workspace/applyEdit`.
//!
//! - [`server`]: the `LanguageServer` impl and the service with graft's
//!   custom methods; configuration ([`config`]), logging ([`log`]).
//! - [`state`]: the loop that owns every open [`document`] (text, version,
//!   [`encoding`]-aware line index, incremental tree-sitter [`syntax`]);
//!   all document events go through it, in order.
//! - [`apply`]: version checks, the engine call on the [`worker`] thread
//!   with [`progress`] and cancellation, minimal [`edits`], the versioned
//!   `workspace/applyEdit` and its confirmation.
//! - [`protocol`]: graft's request and result types and error codes.

mod apply;
mod config;
mod document;
mod edits;
mod encoding;
mod log;
mod progress;
mod protocol;
mod server;
mod state;
mod syntax;
#[cfg(test)]
mod tests;
mod worker;

use anyhow::Context;

/// How many requests tower-lsp serves at once. Applies wait on the engine
/// and the editor; the default of 4 could leave no room for the
/// `didChange` an apply waits for.
const CONCURRENCY: usize = 64;

/// Serves LSP on stdin/stdout until the client exits.
pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the LSP runtime")?;
    runtime.block_on(async {
        let (service, socket) = server::service().context("starting the engine thread")?;
        tower_lsp::Server::new(tokio::io::stdin(), tokio::io::stdout(), socket)
            .concurrency_level(CONCURRENCY)
            .serve(service)
            .await;
        Ok(())
    })
}
