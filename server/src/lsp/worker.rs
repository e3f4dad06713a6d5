//! The engine's own thread: it owns the loaded model (`Engine` is `&mut`
//! for an apply and CPU-heavy), takes jobs from a channel and runs them one
//! at a time. A job carries its cancel flag (checked by the engine at every
//! decoding step) and a channel for progress; the progress channel hears
//! [`Sample::Stopped`] once the engine has stopped working on the job.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use graft_engine::apply::{apply, warm_file, ApplyControl, ApplyMode, ApplyOutcome, ApplyProgress, ApplyRequest};
use graft_engine::backend::Device;
use graft_engine::{Engine, EngineOptions};
use graft_grammars::Language;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::server::lock;

/// What the engine thread tells an apply's progress reporter.
#[derive(Debug, Clone, Copy)]
pub enum Sample {
    /// After a decoding step.
    Step(ApplyProgress),
    /// The engine has stopped working on the job.
    Stopped { cancelled: bool },
}

/// One apply for the engine thread.
pub struct ApplyJob {
    pub original: String,
    pub update: String,
    pub instruction: Option<String>,
    pub language: Option<Language>,
    pub mode: ApplyMode,
    pub model_path: PathBuf,
    pub device: Device,
    pub cancel: Arc<AtomicBool>,
    pub progress: UnboundedSender<Sample>,
    pub reply: oneshot::Sender<graft_engine::Result<ApplyOutcome>>,
    /// The prefix-cache namespace (the document's workspace folder).
    pub namespace: String,
}

/// A warm-up of a document's prompt prefix, for the engine thread.
pub struct WarmJob {
    pub text: String,
    pub language: Option<Language>,
    pub namespace: String,
    pub model_path: PathBuf,
    pub device: Device,
    /// Set when the document changes again or an apply arrives.
    pub cancel: Arc<AtomicBool>,
}

enum Job {
    Apply(ApplyJob),
    Warm(WarmJob),
    /// Load (or keep) the model at this path on this device ahead of the
    /// first apply.
    Load(PathBuf, Device),
}

/// What the engine thread is doing, for `graft/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerState {
    /// The loaded model, if any.
    pub loaded_model: Option<PathBuf>,
    /// Why the last load failed.
    pub load_error: Option<String>,
    pub busy: bool,
    pub applies: usize,
    pub cancelled: usize,
    /// Warm-ups run to the end, and stopped early (by an edit or an apply).
    pub warmups: usize,
    pub warmups_cancelled: usize,
    /// The prefix cache's namespaces after the last load or apply.
    pub cache: Vec<CacheFigures>,
}

/// One prefix-cache namespace's figures (`graft_engine::kv::NamespaceStats`
/// for JSON).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheFigures {
    pub name: String,
    pub blocks: usize,
    pub bytes: usize,
    pub budget_bytes: usize,
    pub lookups: u64,
    pub lookup_tokens: u64,
    pub hit_tokens: u64,
    pub evictions: u64,
}

fn cache_figures(engine: &Engine) -> Vec<CacheFigures> {
    engine
        .cache_stats()
        .into_iter()
        .map(|s| CacheFigures {
            name: s.name,
            blocks: s.blocks,
            bytes: s.bytes,
            budget_bytes: s.budget_bytes,
            lookups: s.lookups,
            lookup_tokens: s.lookup_tokens,
            hit_tokens: s.hit_tokens,
            evictions: s.evictions,
        })
        .collect()
}

#[derive(Clone)]
pub struct Worker {
    jobs: Sender<Job>,
    state: Arc<Mutex<WorkerState>>,
    /// Cancel flags of the warm-ups queued or running: an apply sets them
    /// all, so a warm-up never delays an apply by more than one block.
    warmups: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Worker {
    /// Starts the engine thread; it ends when the `Worker` is dropped.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, rx) = channel::<Job>();
        let state = Arc::new(Mutex::new(WorkerState::default()));
        let shared = state.clone();
        std::thread::Builder::new().name("graft-engine".into()).spawn(move || {
            let mut engine: Option<Loaded> = None;
            for job in rx {
                match job {
                    Job::Load(path, device) => {
                        // A failed load is recorded in the state; the next
                        // apply tries again and reports the error.
                        let _ = load(&mut engine, &path, device, &shared);
                    }
                    Job::Apply(job) => run(&mut engine, job, &shared),
                    Job::Warm(job) => warm(&mut engine, job, &shared),
                }
            }
        })?;
        Ok(Worker { jobs, state, warmups: Arc::new(Mutex::new(Vec::new())) })
    }

    pub fn state(&self) -> WorkerState {
        lock(&self.state).clone()
    }

    pub fn load(&self, path: PathBuf, device: Device) {
        // The thread lives as long as `self`, so the send cannot fail.
        let _ = self.jobs.send(Job::Load(path, device));
    }

    pub fn apply(&self, job: ApplyJob) {
        for flag in lock(&self.warmups).drain(..) {
            flag.store(true, Ordering::Relaxed);
        }
        let _ = self.jobs.send(Job::Apply(job));
    }

    /// Queues a warm-up behind whatever the engine is doing.
    pub fn warm(&self, job: WarmJob) {
        let mut warmups = lock(&self.warmups);
        warmups.retain(|flag| !flag.load(Ordering::Relaxed));
        warmups.push(job.cancel.clone());
        drop(warmups);
        let _ = self.jobs.send(Job::Warm(job));
    }
}

/// The engine the thread holds, with what it was loaded from.
struct Loaded {
    path: PathBuf,
    device: Device,
    engine: Engine,
}

fn load<'a>(
    engine: &'a mut Option<Loaded>,
    path: &Path,
    device: Device,
    state: &Mutex<WorkerState>,
) -> graft_engine::Result<&'a mut Engine> {
    if engine.as_ref().is_none_or(|loaded| loaded.path != path || loaded.device != device) {
        *engine = None;
        lock(state).loaded_model = None;
        match Engine::load(path, &EngineOptions { device, ..EngineOptions::default() }) {
            Ok(loaded) => {
                *engine = Some(Loaded { path: path.to_path_buf(), device, engine: loaded });
                let mut state = lock(state);
                state.loaded_model = Some(path.to_path_buf());
                state.load_error = None;
                state.cache = engine.as_ref().map(|loaded| cache_figures(&loaded.engine)).unwrap_or_default();
            }
            Err(err) => {
                lock(state).load_error = Some(err.to_string());
                return Err(err);
            }
        }
    }
    engine
        .as_mut()
        .map(|loaded| &mut loaded.engine)
        .ok_or_else(|| graft_engine::Error::InvalidRequest { reason: format!("{}: no model loaded", path.display()) })
}

/// Runs a warm-up unless it was cancelled while queued; it needs the model
/// the configuration names (loaded here if it is not yet).
fn warm(engine: &mut Option<Loaded>, job: WarmJob, state: &Mutex<WorkerState>) {
    if job.cancel.load(Ordering::Relaxed) {
        lock(state).warmups_cancelled += 1;
        return;
    }
    let Ok(loaded) = load(engine, &job.model_path, job.device, state) else { return };
    let result = warm_file(loaded, &job.text, job.language, &job.namespace, Some(&job.cancel));
    let mut state = lock(state);
    match result {
        Ok(Some(warmed)) if warmed.cancelled => state.warmups_cancelled += 1,
        Ok(Some(_)) => state.warmups += 1,
        // Too long to be one context, or the model failed: nothing cached.
        Ok(None) | Err(_) => {}
    }
    state.cache = cache_figures(loaded);
}

fn run(engine: &mut Option<Loaded>, job: ApplyJob, state: &Mutex<WorkerState>) {
    lock(state).busy = true;
    let ApplyJob {
        original,
        update,
        instruction,
        language,
        mode,
        model_path,
        device,
        cancel,
        progress,
        reply,
        namespace,
    } = job;
    let request = ApplyRequest {
        original: &original,
        update: &update,
        instruction: instruction.as_deref(),
        language,
        mode,
        whole_file: false,
    };
    let mut report = |p: &ApplyProgress| {
        // The receiver may be gone (no progress token); the apply goes on.
        let _ = progress.send(Sample::Step(*p));
    };
    let result = load(engine, &model_path, device, state).and_then(|engine| {
        apply(
            &request,
            Some(engine),
            ApplyControl { cancel: Some(cancel), progress: Some(&mut report), namespace: Some(&namespace) },
        )
    });
    {
        let mut state = lock(state);
        if let Some(loaded) = engine {
            state.cache = cache_figures(&loaded.engine);
        }
        state.busy = false;
        state.applies += 1;
        if let Err(graft_engine::Error::Cancelled) = result {
            state.cancelled += 1;
        }
    }
    let cancelled = matches!(result, Err(graft_engine::Error::Cancelled));
    let _ = progress.send(Sample::Stopped { cancelled });
    // The request may have been dropped (cancelled); nobody to answer.
    let _ = reply.send(result);
}
