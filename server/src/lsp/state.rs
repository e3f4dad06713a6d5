//! The one owner of document state: tower-lsp runs handlers concurrently,
//! so every handler that touches documents sends an [`Event`] to this loop
//! instead, and changes apply strictly in the order the client sent them
//! (each handler sends before its first await, and tower-lsp starts
//! handlers in arrival order). A burst of queued changes is applied
//! before the trees are reparsed once.

use graft_grammars::Language;
use lsp_types::{TextDocumentContentChangeEvent, Url};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tree_sitter::Tree;

use super::document::Document;
use super::encoding::{LineIndex, PositionEncoding};
use super::log::Log;

pub enum Event {
    /// Set once by `initialize`, before any document arrives.
    Encoding(PositionEncoding),
    Open {
        uri: Url,
        language_id: String,
        version: i32,
        text: String,
    },
    Change {
        uri: Url,
        version: i32,
        changes: Vec<TextDocumentContentChangeEvent>,
    },
    Close {
        uri: Url,
    },
    /// The document as it is now (`None`: not open).
    Snapshot {
        uri: Url,
        reply: oneshot::Sender<Option<Snapshot>>,
    },
    /// Answer with the version at which the document, past version `after`,
    /// first equals `expected` (the check that follows `workspace/applyEdit`).
    AwaitText {
        uri: Url,
        after: i32,
        expected: String,
        reply: oneshot::Sender<i32>,
    },
    /// A summary of every open document.
    Documents {
        reply: oneshot::Sender<Vec<DocumentStatus>>,
    },
}

pub type Events = UnboundedSender<Event>;

/// A document's state at one version.
pub struct Snapshot {
    pub text: String,
    pub version: i32,
    pub language: Option<Language>,
    pub index: LineIndex,
    pub encoding: PositionEncoding,
    /// The up-to-date tree (`None`: no grammar, or the parse timed out).
    pub tree: Option<Tree>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentStatus {
    pub uri: Url,
    pub version: i32,
    pub language: Option<&'static str>,
    /// `None` without a tree; else whether it has ERROR/MISSING nodes.
    pub syntax_errors: Option<bool>,
}

struct Waiter {
    uri: Url,
    after: i32,
    expected: String,
    reply: oneshot::Sender<i32>,
}

struct State {
    encoding: PositionEncoding,
    documents: std::collections::HashMap<Url, Document>,
    waiters: Vec<Waiter>,
    log: Log,
}

/// Runs the loop until every sender is gone.
pub async fn run(mut events: UnboundedReceiver<Event>, log: Log) {
    let mut state =
        State { encoding: PositionEncoding::Utf16, documents: Default::default(), waiters: Vec::new(), log };
    while let Some(event) = events.recv().await {
        state.handle(event);
        while let Ok(event) = events.try_recv() {
            state.handle(event);
        }
        for document in state.documents.values_mut() {
            document.reparse();
        }
    }
}

impl State {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Encoding(encoding) => self.encoding = encoding,
            Event::Open { uri, language_id, version, text } => {
                let (document, problem) = Document::open(&uri, &language_id, version, text);
                if let Some(problem) = problem {
                    self.log.warn(problem);
                }
                self.log.debug(format!("{uri}: opened at version {version}"));
                self.documents.insert(uri, document);
            }
            Event::Change { uri, version, changes } => {
                let Some(document) = self.documents.get_mut(&uri) else {
                    self.log.warn(format!("{uri}: change for a document that is not open; ignored"));
                    return;
                };
                if version <= document.version {
                    self.log.warn(format!("{uri}: version {version} follows {}", document.version));
                }
                for change in changes {
                    document.apply_change(change, self.encoding);
                }
                document.version = version;
                let (text, version) = (&document.text, document.version);
                for waiter in std::mem::take(&mut self.waiters) {
                    if waiter.uri == uri && version > waiter.after && *text == waiter.expected {
                        let _ = waiter.reply.send(version);
                    } else if !waiter.reply.is_closed() {
                        self.waiters.push(waiter);
                    }
                }
            }
            Event::Close { uri } => {
                self.documents.remove(&uri);
                self.waiters.retain(|waiter| waiter.uri != uri);
            }
            Event::Snapshot { uri, reply } => {
                let snapshot = self.documents.get_mut(&uri).map(|document| {
                    document.reparse();
                    Snapshot {
                        text: document.text.clone(),
                        version: document.version,
                        language: document.language,
                        index: document.index().clone(),
                        encoding: self.encoding,
                        tree: document.syntax().and_then(|syntax| syntax.tree().cloned()),
                    }
                });
                let _ = reply.send(snapshot);
            }
            Event::AwaitText { uri, after, expected, reply } => {
                match self.documents.get(&uri) {
                    Some(document) if document.version > after && document.text == expected => {
                        let _ = reply.send(document.version);
                    }
                    Some(_) => self.waiters.push(Waiter { uri, after, expected, reply }),
                    // Closed: dropping `reply` tells the waiting apply.
                    None => {}
                }
            }
            Event::Documents { reply } => {
                let mut documents: Vec<DocumentStatus> = self
                    .documents
                    .iter_mut()
                    .map(|(uri, document)| {
                        document.reparse();
                        DocumentStatus {
                            uri: uri.clone(),
                            version: document.version,
                            language: document.language.map(Language::name),
                            syntax_errors: document
                                .syntax()
                                .and_then(|syntax| syntax.tree())
                                .map(|tree| tree.root_node().has_error()),
                        }
                    })
                    .collect();
                documents.sort_by(|a, b| a.uri.as_str().cmp(b.uri.as_str()));
                let _ = reply.send(documents);
            }
        }
    }
}
