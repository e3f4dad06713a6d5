//! `graft/apply` (and `graft.applyEdit`): check the version, run the engine
//! (merge on a blocking thread, model and auto on the engine thread with
//! progress), refuse invalid results unless forced, send the minimal edits
//! as a versioned `workspace/applyEdit`, and confirm through the following
//! `didChange` that the document became the result. A newer apply on the
//! same document supersedes a running one; dropping the request (a
//! `$/cancelRequest`) stops the engine through [`RunningGuard`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use graft_engine::apply::{apply, ApplyControl, ApplyMode, ApplyOutcome, ApplyRequest};
use lsp_types::request::ApplyWorkspaceEdit;
use lsp_types::*;
use tokio::sync::{mpsc::unbounded_channel, oneshot};
use tower_lsp::jsonrpc::{Error, Result};

use super::edits::text_edits;
use super::progress::Reporter;
use super::protocol::{codes, error, invalid_params, ApplyParams, ApplyResult};
use super::server::{lock, LastApply, Running, Server};
use super::worker::ApplyJob;

/// How long after the editor answered `applied` the server waits for the
/// `didChange` that shows the edit (Neovim answers `applied` even when it
/// skipped a stale edit; only the change proves it landed).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// The annotation id of edits sent for preview.
const PREVIEW_ANNOTATION: &str = "graft";

/// Registers an apply as the one running on its document (superseding the
/// previous one) and, when dropped for any reason (finished, failed, or
/// the request dropped by `$/cancelRequest`), stops its engine work.
struct RunningGuard<'a> {
    server: &'a Server,
    uri: Url,
    id: u64,
    cancel: Arc<AtomicBool>,
    superseded: Arc<AtomicBool>,
    token: Option<NumberOrString>,
}

impl<'a> RunningGuard<'a> {
    fn start(server: &'a Server, uri: &Url, id: u64) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let superseded = Arc::new(AtomicBool::new(false));
        let running = Running { id, cancel: cancel.clone(), superseded: superseded.clone() };
        if let Some(previous) = lock(&server.running).insert(uri.clone(), running) {
            previous.superseded.store(true, Ordering::Relaxed);
            previous.cancel.store(true, Ordering::Relaxed);
            server.log.info(format!("{uri}: apply {} superseded by apply {id}", previous.id));
        }
        RunningGuard { server, uri: uri.clone(), id, cancel, superseded, token: None }
    }

    fn watch_progress_token(&mut self, token: &NumberOrString) {
        lock(&self.server.progress_cancels).insert(token.clone(), self.cancel.clone());
        self.token = Some(token.clone());
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        let mut running = lock(&self.server.running);
        if running.get(&self.uri).is_some_and(|r| r.id == self.id) {
            running.remove(&self.uri);
        }
        if let Some(token) = &self.token {
            lock(&self.server.progress_cancels).remove(token);
        }
    }
}

impl Server {
    pub async fn apply(&self, params: ApplyParams) -> Result<ApplyResult> {
        let uri = params.text_document.uri.clone();
        let config = lock(&self.config).clone();
        let mode = match params.engine.as_deref() {
            Some(name) => ApplyMode::from_str(name).map_err(|err| invalid_params(format!("{uri}: {err}")))?,
            None => config.engine,
        };
        let snapshot =
            self.snapshot(&uri).await.ok_or_else(|| invalid_params(format!("{uri}: the document is not open")))?;
        if snapshot.version != params.text_document.version {
            return Err(error(
                codes::CONTENT_MODIFIED,
                format!(
                    "{uri}: version {} is not current (the document is at version {}); nothing applied",
                    params.text_document.version, snapshot.version
                ),
            ));
        }
        if snapshot.tree.as_ref().is_some_and(|tree| tree.root_node().has_error()) {
            self.log.info(format!("{uri}: the document has syntax errors before the apply"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut guard = RunningGuard::start(self, &uri, id);
        self.log.debug(format!("{uri}: apply {id} with engine {mode} at version {}", snapshot.version));

        let outcome = if mode.uses_model() {
            let (samples, rx) = unbounded_channel();
            let flags = *lock(&self.flags);
            let title = format!("graft: applying ({mode})");
            let token = params.work_done_token.clone();
            if let Some(reporter) = Reporter::start(&self.client, token, flags.work_done_progress, id, &title).await {
                guard.watch_progress_token(reporter.token());
                tokio::spawn(reporter.forward(rx));
            }
            let (reply, result) = oneshot::channel();
            self.worker.apply(ApplyJob {
                original: snapshot.text.clone(),
                update: params.update.clone(),
                instruction: params.instruction.clone(),
                language: snapshot.language,
                mode,
                model_path: config.model_path.clone(),
                device: config.device,
                cancel: guard.cancel.clone(),
                progress: samples,
                reply,
                namespace: self.namespace_for(&uri),
            });
            result.await.unwrap_or(Err(graft_engine::Error::Cancelled))
        } else {
            let (original, update, instruction, language, cancel) = (
                snapshot.text.clone(),
                params.update.clone(),
                params.instruction.clone(),
                snapshot.language,
                guard.cancel.clone(),
            );
            let request = move || {
                let request = ApplyRequest {
                    original: &original,
                    update: &update,
                    instruction: instruction.as_deref(),
                    language,
                    mode,
                    whole_file: false,
                };
                apply(&request, None, ApplyControl { cancel: Some(cancel), progress: None, namespace: None })
            };
            tokio::task::spawn_blocking(request)
                .await
                .map_err(|err| error(codes::REQUEST_FAILED, format!("{uri}: the apply task failed: {err}")))?
        };
        // A superseded apply never sends its edits, even when it finished.
        let outcome = match outcome {
            _ if guard.superseded.load(Ordering::Relaxed) => {
                return Err(error(
                    codes::SERVER_CANCELLED,
                    format!("{uri}: superseded by a newer apply; nothing applied"),
                ))
            }
            Ok(outcome) => outcome,
            Err(graft_engine::Error::Cancelled) => return Err(Error::request_cancelled()),
            Err(err) => return Err(error(codes::REQUEST_FAILED, format!("{uri}: {err}"))),
        };

        let edits = text_edits(&snapshot.text, &outcome.text, &snapshot.index, snapshot.encoding);
        let (applied, reason, version) = if params.dry_run {
            (false, Some("dry run".to_string()), None)
        } else if !outcome.valid && !params.force {
            let problems = serde_json::to_string(&outcome.report.problems).unwrap_or_default();
            (false, Some(format!("the result failed validation ({problems}); not applied (force to apply)")), None)
        } else if edits.is_empty() {
            (true, None, Some(snapshot.version))
        } else {
            match self.send_edits(&uri, snapshot.version, &outcome, &edits, &config).await {
                Ok(version) => (true, None, Some(version)),
                Err(reason) => (false, Some(reason), None),
            }
        };
        self.record(&uri, mode, applied, &outcome);
        match &reason {
            Some(reason) => self.log.info(format!("{uri}: apply {id}: not applied: {reason}")),
            None => self.log.info(format!(
                "{uri}: apply {id} applied ({} edits, {:.1} ms, {:.1} tok/s)",
                edits.len(),
                outcome.stats.total_ms,
                outcome.stats.tokens_per_second
            )),
        }
        drop(guard);
        Ok(ApplyResult {
            applied,
            reason,
            version,
            edits,
            valid: outcome.valid,
            report: outcome.report,
            stats: outcome.stats,
        })
    }

    /// Sends the edits for `version` and waits for the editor to answer and
    /// the document to show the result; the new version, or why not.
    async fn send_edits(
        &self,
        uri: &Url,
        version: i32,
        outcome: &ApplyOutcome,
        edits: &[TextEdit],
        config: &super::config::Config,
    ) -> std::result::Result<i32, String> {
        let flags = *lock(&self.flags);
        let preview = config.preview && flags.change_annotations;
        let annotated = |edit: &TextEdit| match preview {
            true => {
                OneOf::Right(AnnotatedTextEdit { text_edit: edit.clone(), annotation_id: PREVIEW_ANNOTATION.into() })
            }
            false => OneOf::Left(edit.clone()),
        };
        let edit = if flags.document_changes {
            let document_edit = TextDocumentEdit {
                text_document: OptionalVersionedTextDocumentIdentifier { uri: uri.clone(), version: Some(version) },
                edits: edits.iter().map(annotated).collect(),
            };
            let annotations = preview.then(|| {
                let annotation = ChangeAnnotation {
                    label: "graft: apply edit".into(),
                    needs_confirmation: Some(true),
                    description: Some(format!("{} edits from the snippet ({})", edits.len(), outcome.report.mode)),
                };
                HashMap::from([(PREVIEW_ANNOTATION.to_string(), annotation)])
            });
            WorkspaceEdit {
                document_changes: Some(DocumentChanges::Edits(vec![document_edit])),
                change_annotations: annotations,
                ..Default::default()
            }
        } else {
            // No versioned edits in this client: the check of the following
            // change is the only guard.
            WorkspaceEdit { changes: Some(HashMap::from([(uri.clone(), edits.to_vec())])), ..Default::default() }
        };
        // Registered before sending: the change may arrive before the answer.
        let confirmed = self.await_text(uri, version, outcome.text.clone());
        let params = ApplyWorkspaceEditParams { label: Some("graft: apply edit".into()), edit };
        let response = self
            .client
            .send_request::<ApplyWorkspaceEdit>(params)
            .await
            .map_err(|err| format!("workspace/applyEdit failed: {}", err.message))?;
        if !response.applied {
            let why = response.failure_reason.unwrap_or_else(|| "no reason given".into());
            return Err(format!("the editor did not apply the edit: {why}"));
        }
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await {
            Ok(Ok(version)) => Ok(version),
            Ok(Err(_)) => Err("the document was closed before the edit showed".into()),
            Err(_) => Err(format!(
                "the editor answered applied, but no change to the result followed within {} s \
                 (a stale edit the editor skipped, or the document changed meanwhile)",
                CONFIRM_TIMEOUT.as_secs()
            )),
        }
    }

    fn record(&self, uri: &Url, mode: ApplyMode, applied: bool, outcome: &ApplyOutcome) {
        *lock(&self.last_apply) = Some(LastApply {
            uri: uri.clone(),
            engine: mode.name(),
            applied,
            valid: outcome.valid,
            tokens_per_second: outcome.stats.tokens_per_second,
            stats: outcome.stats.clone(),
        });
    }
}
