//! The tower-lsp front: [`Server`] implements `LanguageServer`, forwards
//! document notifications to the state loop ([`super::state`]), keeps the
//! configuration and client capabilities, and serves code actions, the
//! `graft.applyEdit` command and `graft/status`. Applies are in
//! [`super::apply`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lsp_types::*;
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::oneshot;
use tower_lsp::jsonrpc::Result;
use tower_lsp::{Client, LanguageServer, LspService};

use graft_engine::kv::HEADLESS_NAMESPACE;

use super::config::Config;
use super::encoding::PositionEncoding;
use super::log::Log;
use super::protocol::{self, ApplyParams, APPLY_COMMAND, APPLY_METHOD, CLIENT_APPLY_FROM_CLIPBOARD, STATUS_METHOD};
use super::state::{self, Event, Events, Snapshot};
use super::worker::{WarmJob, Worker};

/// What the client said it supports, as far as graft cares.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFlags {
    pub work_done_progress: bool,
    pub document_changes: bool,
    pub change_annotations: bool,
    pub code_action_resolve: bool,
}

/// An apply in flight on a document.
pub struct Running {
    pub id: u64,
    pub cancel: Arc<AtomicBool>,
    pub superseded: Arc<AtomicBool>,
}

/// The last apply's figures, for `graft/status` and the status bar.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastApply {
    pub uri: Url,
    pub engine: &'static str,
    pub applied: bool,
    pub valid: bool,
    pub tokens_per_second: f64,
    pub stats: graft_engine::apply::ApplyStats,
}

pub struct Server {
    pub client: Client,
    pub events: Events,
    pub log: Log,
    pub worker: Worker,
    pub config: Mutex<Config>,
    pub encoding: Mutex<PositionEncoding>,
    pub flags: Mutex<ClientFlags>,
    pub running: Mutex<HashMap<Url, Running>>,
    /// Cancel flags of applies by progress token (`window/workDoneProgress/cancel`).
    pub progress_cancels: Mutex<HashMap<NumberOrString, Arc<AtomicBool>>>,
    pub last_apply: Mutex<Option<LastApply>>,
    pub next_id: AtomicU64,
    /// A configuration error from `initialize`, shown once initialized.
    startup_problem: Mutex<Option<String>>,
    /// The workspace folders (URIs, `/`-terminated): each is a prefix-cache
    /// namespace.
    folders: Mutex<Vec<String>>,
    /// The pending or running warm-up of each document, cancelled when the
    /// document changes again.
    warmups: Mutex<HashMap<Url, Arc<AtomicBool>>>,
}

/// Quiet time after an edit before the document's prompt prefix is warmed.
const WARM_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The service with graft's custom methods, and its client socket.
pub fn service() -> std::io::Result<(LspService<Server>, tower_lsp::ClientSocket)> {
    let worker = Worker::start()?;
    let (service, socket) = LspService::build(move |client| {
        let (events, rx) = unbounded_channel();
        let log = Log::new(client.clone());
        tokio::spawn(state::run(rx, log.clone()));
        Server {
            client,
            events,
            log,
            worker,
            config: Mutex::new(Config::default()),
            encoding: Mutex::new(PositionEncoding::Utf16),
            flags: Mutex::new(ClientFlags::default()),
            running: Mutex::new(HashMap::new()),
            progress_cancels: Mutex::new(HashMap::new()),
            last_apply: Mutex::new(None),
            next_id: AtomicU64::new(1),
            startup_problem: Mutex::new(None),
            folders: Mutex::new(Vec::new()),
            warmups: Mutex::new(HashMap::new()),
        }
    })
    .custom_method(APPLY_METHOD, Server::apply)
    .custom_method(STATUS_METHOD, Server::status)
    .custom_method("window/workDoneProgress/cancel", Server::progress_cancel)
    .finish();
    Ok((service, socket))
}

impl Server {
    fn send(&self, event: Event) {
        // The state loop lives as long as the server.
        let _ = self.events.send(event);
    }

    /// The document now, or `None` when it is not open.
    pub async fn snapshot(&self, uri: &Url) -> Option<Snapshot> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Snapshot { uri: uri.clone(), reply });
        rx.await.ok().flatten()
    }

    /// Resolves with the version at which `uri`, past `after`, equals
    /// `expected`; dropped when the document closes.
    pub fn await_text(&self, uri: &Url, after: i32, expected: String) -> oneshot::Receiver<i32> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::AwaitText { uri: uri.clone(), after, expected, reply });
        rx
    }

    /// The prefix-cache namespace of a document: its innermost workspace
    /// folder, else [`HEADLESS_NAMESPACE`].
    pub fn namespace_for(&self, uri: &Url) -> String {
        lock(&self.folders)
            .iter()
            .filter(|folder| uri.as_str().starts_with(folder.as_str()))
            .max_by_key(|folder| folder.len())
            .cloned()
            .unwrap_or_else(|| HEADLESS_NAMESPACE.to_string())
    }

    /// Warms the document's prompt prefix once it has been quiet for
    /// [`WARM_DEBOUNCE`] at `version`, when the engine uses the model; a
    /// newer change cancels it (queued or running), and so does an apply.
    fn schedule_warm(&self, uri: Url, version: i32) {
        let config = lock(&self.config).clone();
        let cancel = Arc::new(AtomicBool::new(false));
        if let Some(previous) = lock(&self.warmups).insert(uri.clone(), cancel.clone()) {
            previous.store(true, Ordering::Relaxed);
        }
        if !config.engine.uses_model() {
            return;
        }
        let (worker, events, namespace) = (self.worker.clone(), self.events.clone(), self.namespace_for(&uri));
        tokio::spawn(async move {
            tokio::time::sleep(WARM_DEBOUNCE).await;
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let (reply, rx) = oneshot::channel();
            let _ = events.send(Event::Snapshot { uri, reply });
            let Ok(Some(snapshot)) = rx.await else { return };
            if snapshot.version != version {
                return;
            }
            worker.warm(WarmJob {
                text: snapshot.text,
                language: snapshot.language,
                namespace,
                model_path: config.model_path,
                device: config.device,
                cancel,
            });
        });
    }

    /// Applies a configuration: log level and file, and the model loaded
    /// ahead of the first apply when the engine needs one.
    fn configure(&self, config: Config) {
        if let Err(err) = self.log.configure(config.log_level, &config.log_file) {
            self.log.warn(format!("{}: cannot open the log file: {err}", config.log_file.display()));
        }
        if config.engine.uses_model() {
            self.worker.load(config.model_path.clone(), config.device);
        }
        self.log.info(format!(
            "configuration: engine {}, device {}, model {}, preview {}, log level {}",
            config.engine,
            config.device,
            config.model_path.display(),
            config.preview,
            config.log_level
        ));
        *lock(&self.config) = config;
    }

    /// `window/workDoneProgress/cancel` (the cancel button of a progress
    /// notification; tower-lsp has no handler for it).
    async fn progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        if let Some(cancel) = lock(&self.progress_cancels).get(&params.token) {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    async fn status(&self) -> Result<Value> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Documents { reply });
        let documents = rx.await.unwrap_or_default();
        let config = lock(&self.config).clone();
        let worker = self.worker.state();
        let last_apply = lock(&self.last_apply).clone();
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "positionEncoding": lock(&self.encoding).name(),
            "engine": config.engine.name(),
            "device": config.device.to_string(),
            "preview": config.preview,
            "model": {
                "path": config.model_path,
                "loaded": worker.loaded_model.as_ref() == Some(&config.model_path),
                "loadError": worker.load_error,
            },
            // Null until a model is loaded.
            "cache": worker.loaded_model.as_ref().map(|_| &worker.cache),
            "worker": {
                "busy": worker.busy,
                "applies": worker.applies,
                "cancelled": worker.cancelled,
                "warmups": worker.warmups,
                "warmupsCancelled": worker.warmups_cancelled,
            },
            "lastApply": last_apply,
            "documents": documents,
            "logFile": self.log.file(),
        }))
    }
}

fn client_flags(capabilities: &ClientCapabilities) -> ClientFlags {
    let workspace_edit = capabilities.workspace.as_ref().and_then(|w| w.workspace_edit.as_ref());
    let code_action = capabilities.text_document.as_ref().and_then(|t| t.code_action.as_ref());
    ClientFlags {
        work_done_progress: capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false),
        document_changes: workspace_edit.and_then(|w| w.document_changes).unwrap_or(false),
        change_annotations: workspace_edit.is_some_and(|w| w.change_annotation_support.is_some()),
        code_action_resolve: code_action
            .and_then(|c| c.resolve_support.as_ref())
            .is_some_and(|r| r.properties.iter().any(|p| p == "command")),
    }
}

/// The code action that runs the editor's apply-from-clipboard command.
fn clipboard_action(uri: &Url, resolved: bool) -> CodeAction {
    let data = json!({ "uri": uri });
    CodeAction {
        title: "Apply edit from clipboard (graft)".into(),
        kind: Some(CodeActionKind::REFACTOR_REWRITE),
        command: resolved.then(|| Command {
            title: "Apply edit from clipboard".into(),
            command: CLIENT_APPLY_FROM_CLIPBOARD.into(),
            arguments: Some(vec![data.clone()]),
        }),
        data: Some(data),
        ..Default::default()
    }
}

#[tower_lsp::async_trait]
impl LanguageServer for Server {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let mut folders: Vec<String> =
            params.workspace_folders.iter().flatten().map(|folder| folder.uri.to_string()).collect();
        #[allow(deprecated)] // rootUri: clients that send no workspace folders
        folders.extend(params.root_uri.iter().map(Url::to_string));
        for folder in &mut folders {
            if !folder.ends_with('/') {
                folder.push('/');
            }
        }
        *lock(&self.folders) = folders;
        let offered = params.capabilities.general.as_ref().and_then(|g| g.position_encodings.as_deref());
        let encoding = PositionEncoding::negotiate(offered);
        *lock(&self.encoding) = encoding;
        self.send(Event::Encoding(encoding));
        let flags = client_flags(&params.capabilities);
        *lock(&self.flags) = flags;
        match Config::from_value(params.initialization_options.as_ref()) {
            Ok(config) => self.configure(config),
            Err(err) => {
                *lock(&self.startup_problem) = Some(err.to_string());
                self.configure(Config::default());
            }
        }
        let code_action = CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::REFACTOR_REWRITE]),
            resolve_provider: Some(flags.code_action_resolve),
            ..Default::default()
        };
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(encoding.kind()),
                text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
                    open_close: Some(true),
                    change: Some(TextDocumentSyncKind::INCREMENTAL),
                    ..Default::default()
                })),
                code_action_provider: Some(CodeActionProviderCapability::Options(code_action)),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: vec![APPLY_COMMAND.into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            server_info: Some(ServerInfo { name: "graft".into(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let problem = lock(&self.startup_problem).take();
        if let Some(problem) = problem {
            self.log.error(format!("{problem}; using the defaults"));
            self.client.show_message(MessageType::ERROR, format!("{problem}; using the defaults")).await;
        }
        self.log.info(format!("graft {} ready", env!("CARGO_PKG_VERSION")));
    }

    async fn shutdown(&self) -> Result<()> {
        for running in lock(&self.running).values() {
            running.cancel.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let document = params.text_document;
        self.schedule_warm(document.uri.clone(), document.version);
        self.send(Event::Open {
            uri: document.uri,
            language_id: document.language_id,
            version: document.version,
            text: document.text,
        });
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let document = params.text_document;
        self.schedule_warm(document.uri.clone(), document.version);
        self.send(Event::Change { uri: document.uri, version: document.version, changes: params.content_changes });
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        if let Some(warmup) = lock(&self.warmups).remove(&params.text_document.uri) {
            warmup.store(true, Ordering::Relaxed);
        }
        self.send(Event::Close { uri: params.text_document.uri });
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        match Config::from_value(Some(&params.settings)) {
            Ok(config) => self.configure(config),
            Err(err) => {
                self.log.error(format!("{err}; the previous settings stay in force"));
                self.client
                    .show_message(MessageType::ERROR, format!("{err}; the previous settings stay in force"))
                    .await;
            }
        }
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let only = params.context.only.unwrap_or_default();
        let wanted = only.is_empty()
            || only.iter().any(|kind| CodeActionKind::REFACTOR_REWRITE.as_str().starts_with(kind.as_str()));
        if !wanted {
            return Ok(None);
        }
        let resolved = !lock(&self.flags).code_action_resolve;
        Ok(Some(vec![CodeActionOrCommand::CodeAction(clipboard_action(&params.text_document.uri, resolved))]))
    }

    async fn code_action_resolve(&self, action: CodeAction) -> Result<CodeAction> {
        let uri = action
            .data
            .as_ref()
            .and_then(|data| data.get("uri"))
            .and_then(|uri| serde_json::from_value::<Url>(uri.clone()).ok())
            .ok_or_else(|| protocol::invalid_params("codeAction/resolve: the action's data has no document uri"))?;
        Ok(clipboard_action(&uri, true))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        if params.command != APPLY_COMMAND {
            return Err(protocol::invalid_params(format!(
                "unknown command `{}` (graft has {APPLY_COMMAND})",
                params.command
            )));
        }
        let [argument] = <[Value; 1]>::try_from(params.arguments).map_err(|arguments| {
            protocol::invalid_params(format!("{APPLY_COMMAND}: expected one argument, got {}", arguments.len()))
        })?;
        let apply: ApplyParams = serde_json::from_value(argument)
            .map_err(|err| protocol::invalid_params(format!("{APPLY_COMMAND}: {err}")))?;
        let result = self.apply(apply).await?;
        serde_json::to_value(result)
            .map(Some)
            .map_err(|err| protocol::error(protocol::codes::REQUEST_FAILED, err.to_string()))
    }
}
