//! graft's own protocol on top of LSP: the `graft/apply` request (and the
//! `graft.applyEdit` command taking the same object), the `graft/status`
//! request, and the error codes the server answers with.

use graft_engine::apply::{ApplyReport, ApplyStats};
use lsp_types::{TextEdit, Url};
use serde::{Deserialize, Serialize};
use tower_lsp::jsonrpc::{Error, ErrorCode};

/// The custom request that applies a snippet to an open document.
pub const APPLY_METHOD: &str = "graft/apply";
/// The custom request for the server's state.
pub const STATUS_METHOD: &str = "graft/status";
/// The `workspace/executeCommand` command that takes [`ApplyParams`].
pub const APPLY_COMMAND: &str = "graft.applyEdit";
/// The editor-side command code actions run: the plugins read the clipboard
/// (VS Code) or a register (Neovim) and send `graft/apply`.
pub const CLIENT_APPLY_FROM_CLIPBOARD: &str = "graft.applyFromClipboard";

/// The document and version an apply is for.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct VersionedDocument {
    pub uri: Url,
    pub version: i32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyParams {
    pub text_document: VersionedDocument,
    /// The lazy edit snippet.
    pub update: String,
    pub instruction: Option<String>,
    /// merge, model or auto; absent: the configured engine.
    pub engine: Option<String>,
    /// Compute and return the edits without applying them.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply even when the result failed validation.
    #[serde(default)]
    pub force: bool,
    /// A progress token the client created (else the server creates one
    /// when the client supports `window/workDoneProgress`).
    pub work_done_token: Option<lsp_types::NumberOrString>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// The editor applied the edits and the following `didChange` showed
    /// exactly the result.
    pub applied: bool,
    /// Why `applied` is false (dry run, invalid result, editor refusal...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The document's version after the edit, when applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// Minimal edits from the request's version to the result, in the
    /// negotiated position encoding.
    pub edits: Vec<TextEdit>,
    /// The result passed validation (no new syntax errors, no leftover
    /// markers).
    pub valid: bool,
    pub report: ApplyReport,
    pub stats: ApplyStats,
}

/// JSON-RPC error codes beyond tower-lsp's own.
pub mod codes {
    /// LSP `ContentModified`: the document moved past the request's version.
    pub const CONTENT_MODIFIED: i64 = -32801;
    /// LSP `ServerCancelled`: a newer apply on the same document took over.
    pub const SERVER_CANCELLED: i64 = -32802;
    /// LSP `RequestFailed`: the request was valid but could not be served.
    pub const REQUEST_FAILED: i64 = -32803;
}

pub fn error(code: i64, message: impl Into<String>) -> Error {
    Error { code: ErrorCode::ServerError(code), message: message.into().into(), data: None }
}

pub fn invalid_params(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::InvalidParams, message: message.into().into(), data: None }
}
