//! The server's log: each line goes to the log file (under `$GRAFT_HOME`
//! or the configured path) and, at or above the configured level, to the
//! client as `window/logMessage`, in the order it was written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use lsp_types::MessageType;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tower_lsp::Client;

use super::config::LogLevel;

#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    level: Mutex<LogLevel>,
    file: Mutex<Option<(PathBuf, File)>>,
    to_client: UnboundedSender<(MessageType, String)>,
}

impl Log {
    /// A log that forwards to `client` through one task (so messages keep
    /// their order); no file until [`Log::configure`].
    pub fn new(client: Client) -> Self {
        let (to_client, mut rx) = unbounded_channel::<(MessageType, String)>();
        tokio::spawn(async move {
            while let Some((typ, message)) = rx.recv().await {
                client.log_message(typ, message).await;
            }
        });
        Log { inner: Arc::new(Inner { level: Mutex::new(LogLevel::Info), file: Mutex::new(None), to_client }) }
    }

    /// Sets the level and (re)opens the log file at `path` for appending.
    pub fn configure(&self, level: LogLevel, path: &Path) -> std::io::Result<()> {
        *self.inner.level.lock().unwrap_or_else(PoisonError::into_inner) = level;
        let mut file = self.inner.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.as_ref().is_some_and(|(open, _)| open == path) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        *file = Some((path.to_path_buf(), OpenOptions::new().create(true).append(true).open(path)?));
        Ok(())
    }

    pub fn file(&self) -> Option<PathBuf> {
        self.inner.file.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(path, _)| path.clone())
    }

    pub fn error(&self, message: impl Into<String>) {
        self.write(LogLevel::Error, message.into());
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.write(LogLevel::Warn, message.into());
    }

    pub fn info(&self, message: impl Into<String>) {
        self.write(LogLevel::Info, message.into());
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.write(LogLevel::Debug, message.into());
    }

    fn write(&self, level: LogLevel, message: String) {
        if level > *self.inner.level.lock().unwrap_or_else(PoisonError::into_inner) {
            return;
        }
        if let Some((_, file)) = self.inner.file.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            // A failing log file must not take the server down; the client
            // still gets the message.
            let _ = writeln!(file, "{seconds:.3} {level:5} {message}");
        }
        let typ = match level {
            LogLevel::Error => MessageType::ERROR,
            LogLevel::Warn => MessageType::WARNING,
            LogLevel::Info => MessageType::INFO,
            LogLevel::Debug => MessageType::LOG,
        };
        // The forwarding task ends only with the server.
        let _ = self.inner.to_client.send((typ, message));
    }
}
