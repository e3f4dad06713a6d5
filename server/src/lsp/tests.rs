//! In-memory protocol tests: the real service behind tower-lsp's own
//! transport over an in-process pipe, driven by a small client that frames
//! JSON-RPC, answers the server's requests (a VS Code-like versioned
//! `workspace/applyEdit`) and keeps its own copy of each document. Client
//! positions are computed here independently of [`super::encoding`].

use std::collections::HashMap;

use lsp_types::{Position, Url};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

use super::server::service;
use super::state::{Event, Events};

/// A seeded SplitMix64: reproducible random edit sequences without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Units of `c` in the client's encoding.
fn units(c: char, utf8: bool) -> u32 {
    if utf8 {
        c.len_utf8() as u32
    } else {
        c.len_utf16() as u32
    }
}

/// The client's position of byte `offset` (a character boundary, not
/// inside a CRLF).
fn client_position(text: &str, offset: usize, utf8: bool) -> Position {
    let (mut line, mut character) = (0, 0);
    let mut chars = text[..offset].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => {
                line += 1;
                character = 0;
            }
            c => character += units(c, utf8),
        }
    }
    Position::new(line, character)
}

/// The client's byte offset of `position` (one that exists in the text).
fn client_offset(text: &str, position: Position, utf8: bool) -> usize {
    let mut at = Position::new(0, 0);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if at == position {
            return i;
        }
        match c {
            '\r' | '\n' => {
                if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                    chars.next();
                }
                at = Position::new(at.line + 1, 0);
            }
            c => at.character += units(c, utf8),
        }
    }
    text.len()
}

/// What the test client does with `workspace/applyEdit`.
#[derive(Clone, Copy, PartialEq)]
enum EditHandling {
    /// VS Code: refuse a stale version, else apply, send didChange, answer.
    Apply,
    /// Neovim 0.11 with a stale edit: skip it but answer applied.
    SkipButAnswerApplied,
}

struct Client {
    writer: WriteHalf<DuplexStream>,
    reader: BufReader<ReadHalf<DuplexStream>>,
    next_id: i64,
    utf8: bool,
    documents: HashMap<Url, (String, i32)>,
    notifications: Vec<Value>,
    /// Responses that arrived while another was awaited.
    responses: HashMap<i64, Value>,
    apply_edit_requests: Vec<Value>,
    edit_handling: EditHandling,
    /// The server's state loop, to compare its text with the client's.
    events: Events,
}

impl Client {
    /// Starts a server and initializes it with `capabilities` and `options`.
    async fn start(capabilities: Value, options: Value) -> (Client, Value) {
        let (service, socket) = service().expect("service");
        let events = service.inner().events.clone();
        let (client_end, server_end) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_end);
        tokio::spawn(tower_lsp::Server::new(server_read, server_write, socket).concurrency_level(64).serve(service));
        let (read, writer) = tokio::io::split(client_end);
        let utf8 = capabilities["general"]["positionEncodings"].as_array().is_some_and(|e| e.contains(&json!("utf-8")));
        let mut client = Client {
            writer,
            reader: BufReader::new(read),
            next_id: 1,
            utf8,
            documents: HashMap::new(),
            notifications: Vec::new(),
            responses: HashMap::new(),
            apply_edit_requests: Vec::new(),
            edit_handling: EditHandling::Apply,
            events,
        };
        let init = client
            .request("initialize", json!({"processId": null, "rootUri": null, "capabilities": capabilities, "initializationOptions": options}))
            .await;
        client.notify("initialized", json!({})).await;
        (client, init)
    }

    /// The capabilities of a VS Code-like client.
    fn vscode_capabilities() -> Value {
        json!({
            "workspace": {"applyEdit": true, "workspaceEdit": {"documentChanges": true, "changeAnnotationSupport": {"groupsOnLabel": true}}},
            "window": {"workDoneProgress": true},
            "textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit", "command"]}, "dataSupport": true}},
            "general": {"positionEncodings": ["utf-16"]}
        })
    }

    async fn write(&mut self, message: Value) {
        let body = serde_json::to_vec(&message).expect("json");
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        self.writer.write_all(header.as_bytes()).await.expect("write header");
        self.writer.write_all(&body).await.expect("write body");
    }

    async fn read(&mut self) -> Value {
        let mut length = None;
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).await.expect("read header") > 0, "server closed the pipe");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.strip_prefix("Content-Length: ") {
                length = Some(value.parse::<usize>().expect("length"));
            }
        }
        let mut body = vec![0; length.expect("Content-Length header")];
        self.reader.read_exact(&mut body).await.expect("read body");
        serde_json::from_slice(&body).expect("json body")
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.write(json!({"jsonrpc": "2.0", "method": method, "params": params})).await;
    }

    /// Sends a request (without params when `params` is null).
    async fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            request["params"] = params;
        }
        self.write(request).await;
        id
    }

    /// Sends a request and serves the server until its response arrives.
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params).await;
        self.response(id).await
    }

    async fn response(&mut self, id: i64) -> Value {
        if let Some(response) = self.responses.remove(&id) {
            return response;
        }
        loop {
            let message = self.read().await;
            if message.get("method").is_none() {
                match message["id"].as_i64() {
                    Some(got) if got == id => return message,
                    Some(got) => {
                        self.responses.insert(got, message);
                    }
                    None => panic!("a response without an id: {message}"),
                }
                continue;
            }
            self.handle(message).await;
        }
    }

    /// Serves the server until a notification satisfies `wanted`.
    async fn notification(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.notifications.iter().find(|n| wanted(n)) {
            return found.clone();
        }
        loop {
            let message = self.read().await;
            let is_wanted = message.get("id").is_none() && wanted(&message);
            self.handle(message.clone()).await;
            if is_wanted {
                return message;
            }
        }
    }

    async fn handle(&mut self, message: Value) {
        let Some(method) = message["method"].as_str().map(String::from) else { return };
        let Some(id) = message.get("id").cloned() else {
            self.notifications.push(message);
            return;
        };
        let result = match method.as_str() {
            "workspace/applyEdit" => {
                self.apply_edit_requests.push(message.clone());
                self.apply_edit(&message["params"]["edit"]).await
            }
            _ => Value::Null,
        };
        self.write(json!({"jsonrpc": "2.0", "id": id, "result": result})).await;
    }

    /// VS Code's handling of a versioned workspace edit.
    async fn apply_edit(&mut self, edit: &Value) -> Value {
        let change = &edit["documentChanges"][0];
        let uri: Url = serde_json::from_value(change["textDocument"]["uri"].clone()).expect("uri");
        let (text, version) = self.documents.get(&uri).cloned().expect("edit for an open document");
        if change["textDocument"]["version"] != json!(version) {
            return json!({"applied": false, "failureReason": "document version changed"});
        }
        if self.edit_handling == EditHandling::SkipButAnswerApplied {
            return json!({"applied": true});
        }
        let mut edits: Vec<(usize, usize, String)> = change["edits"]
            .as_array()
            .expect("edits")
            .iter()
            .map(|e| {
                let range: lsp_types::Range = serde_json::from_value(e["range"].clone()).expect("range");
                let start = client_offset(&text, range.start, self.utf8);
                let end = client_offset(&text, range.end, self.utf8);
                (start, end, e["newText"].as_str().expect("newText").to_string())
            })
            .collect();
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut new_text = text.clone();
        let mut changes = Vec::new();
        for (start, end, insert) in edits {
            // Later edits first: earlier positions stay valid.
            let range = json!({"start": client_position(&new_text, start, self.utf8), "end": client_position(&new_text, end, self.utf8)});
            changes.push(json!({"range": range, "text": insert}));
            new_text.replace_range(start..end, &insert);
        }
        self.documents.insert(uri.clone(), (new_text, version + 1));
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version + 1}, "contentChanges": changes}),
        )
        .await;
        json!({"applied": true})
    }

    async fn open(&mut self, uri: &Url, text: &str) {
        self.documents.insert(uri.clone(), (text.to_string(), 1));
        let params = json!({"textDocument": {"uri": uri, "languageId": "rust", "version": 1, "text": text}});
        self.notify("textDocument/didOpen", params).await;
    }

    /// Replaces bytes `start..end` of the client's copy and tells the server.
    async fn edit(&mut self, uri: &Url, start: usize, end: usize, insert: &str) {
        let (text, version) = self.documents.get(uri).cloned().expect("open document");
        let range =
            json!({"start": client_position(&text, start, self.utf8), "end": client_position(&text, end, self.utf8)});
        let mut new_text = text;
        new_text.replace_range(start..end, insert);
        self.documents.insert(uri.clone(), (new_text, version + 1));
        let params = json!({"textDocument": {"uri": uri, "version": version + 1}, "contentChanges": [{"range": range, "text": insert}]});
        self.notify("textDocument/didChange", params).await;
    }

    fn text(&self, uri: &Url) -> &str {
        &self.documents[uri].0
    }

    fn version(&self, uri: &Url) -> i32 {
        self.documents[uri].1
    }

    /// The server's copy of `uri`, once every notification sent so far has
    /// reached the state loop (a `graft/status` round trip goes through it).
    async fn server_snapshot(&mut self, uri: &Url) -> super::state::Snapshot {
        let status = self.request("graft/status", Value::Null).await;
        assert!(status.get("result").is_some(), "{status}");
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.events.send(Event::Snapshot { uri: uri.clone(), reply }).expect("state loop");
        rx.await.expect("reply").expect("open on the server")
    }

    async fn apply(&mut self, uri: &Url, update: &str, extra: Value) -> Value {
        let mut params = json!({"textDocument": {"uri": uri, "version": self.version(uri)}, "update": update});
        if let (Some(params), Value::Object(extra)) = (params.as_object_mut(), extra) {
            params.extend(extra);
        }
        self.request("graft/apply", params).await
    }
}

fn uri(name: &str) -> Url {
    Url::parse(&format!("file:///work/{name}")).expect("uri")
}

const ORIGINAL: &str = "fn main() {\n    let x = 1;\n    println!(\"{x}\");\n}\n\nfn other() -> u32 {\n    2\n}\n";
const SNIPPET: &str = "// ... existing code ...\nfn other() -> u32 {\n    3\n}\n";
const EXPECTED: &str = "fn main() {\n    let x = 1;\n    println!(\"{x}\");\n}\n\nfn other() -> u32 {\n    3\n}\n";

fn merge_options() -> Value {
    json!({"engine": "merge", "logFile": std::env::temp_dir().join("graft-lsp-test.log")})
}

/// Random character boundaries of `text`, never inside a CRLF.
fn boundary(text: &str, rng: &mut Rng) -> usize {
    let boundaries: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .filter(|&i| !(i > 0 && text.as_bytes()[i - 1] == b'\r' && text.as_bytes().get(i) == Some(&b'\n')))
        .collect();
    boundaries[rng.below(boundaries.len())]
}

async fn random_edits(capabilities: Value, seed: u64) {
    let (mut client, _) = Client::start(capabilities, merge_options()).await;
    let doc = uri("random.rs");
    client.open(&doc, "fn main() {\r\n    let s = \"é😀\";\n}\n").await;
    let pieces = ["a", "é", "😀", "\n", "\r\n", "\r", "fn x() {}", " ", "}", "{", "𝄞z", ""];
    let mut rng = Rng(seed);
    for step in 0..300 {
        let text = client.text(&doc).to_string();
        let a = boundary(&text, &mut rng);
        let b = boundary(&text, &mut rng);
        let insert: String = (0..rng.below(3)).map(|_| pieces[rng.below(pieces.len())]).collect();
        client.edit(&doc, a.min(b), a.max(b), &insert).await;
        let server = client.server_snapshot(&doc).await;
        assert_eq!(server.text, client.text(&doc), "seed {seed}, step {step}");
        assert_eq!(server.version, client.version(&doc));
        let fresh = graft_grammars::parse(graft_grammars::Language::Rust, &server.text).expect("parse");
        let tree = server.tree.expect("incremental tree");
        assert_eq!(tree.root_node().to_sexp(), fresh.root_node().to_sexp(), "seed {seed}, step {step}");
    }
}

#[tokio::test]
async fn random_incremental_edits_keep_the_server_text_equal_to_the_client_text_utf16() {
    random_edits(Client::vscode_capabilities(), 7).await;
}

#[tokio::test]
async fn random_incremental_edits_keep_the_server_text_equal_to_the_client_text_utf8() {
    random_edits(json!({"general": {"positionEncodings": ["utf-16", "utf-8"]}}), 11).await;
}

#[tokio::test]
async fn the_encoding_is_negotiated_and_edits_count_in_it() {
    for (offered, expected) in [(json!(["utf-8", "utf-16"]), "utf-8"), (json!(["utf-32"]), "utf-16")] {
        let mut capabilities = Client::vscode_capabilities();
        capabilities["general"]["positionEncodings"] = offered;
        let (mut client, init) = Client::start(capabilities, merge_options()).await;
        assert_eq!(init["result"]["capabilities"]["positionEncoding"], json!(expected));
        let doc = uri("astral.rs");
        client.open(&doc, "fn f() {\n    \"😀\"; 1\n}\n").await;
        let reply = client.apply(&doc, "fn f() {\n    \"😀\"; 2\n}\n", json!({"dryRun": true})).await;
        let edit = &reply["result"]["edits"][0];
        let column = if expected == "utf-8" { 12 } else { 10 };
        assert_eq!(edit["range"]["start"], json!({"line": 1, "character": column}), "{reply}");
        assert_eq!(edit["newText"], json!("2"));
        assert_eq!(reply["result"]["applied"], json!(false));
        assert_eq!(reply["result"]["reason"], json!("dry run"));
    }
}

#[tokio::test]
async fn an_apply_sends_minimal_versioned_edits_and_confirms_the_change() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let reply = client.apply(&doc, SNIPPET, json!({})).await;
    let result = &reply["result"];
    assert_eq!(result["applied"], json!(true), "{reply}");
    assert_eq!(result["version"], json!(2));
    assert_eq!(result["valid"], json!(true));
    assert_eq!(result["report"]["mode"], json!("merge"));
    assert_eq!(client.text(&doc), EXPECTED);
    assert_eq!(client.server_snapshot(&doc).await.text, EXPECTED);
    let sent = &client.apply_edit_requests[0]["params"]["edit"]["documentChanges"][0];
    assert_eq!(sent["textDocument"]["version"], json!(1));
    assert_eq!(
        sent["edits"],
        json!([{"range": {"start": {"line": 6, "character": 4}, "end": {"line": 6, "character": 5}}, "newText": "3"}])
    );
    assert!(client.apply_edit_requests[0]["params"]["edit"].get("changeAnnotations").is_none());
    // The status shows the last apply.
    let status = client.request("graft/status", Value::Null).await;
    assert_eq!(status["result"]["lastApply"]["applied"], json!(true), "{status}");
    assert_eq!(status["result"]["engine"], json!("merge"));
    assert_eq!(status["result"]["documents"][0]["version"], json!(2));
    assert_eq!(status["result"]["documents"][0]["syntaxErrors"], json!(false));
}

#[tokio::test]
async fn the_apply_command_takes_the_same_arguments() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let arguments = json!([{"textDocument": {"uri": doc, "version": 1}, "update": SNIPPET}]);
    let reply =
        client.request("workspace/executeCommand", json!({"command": "graft.applyEdit", "arguments": arguments})).await;
    assert_eq!(reply["result"]["applied"], json!(true), "{reply}");
    assert_eq!(client.text(&doc), EXPECTED);
}

#[tokio::test]
async fn a_stale_version_is_refused_with_content_modified() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    client.edit(&doc, 0, 0, "// typed\n").await;
    let params = json!({"textDocument": {"uri": doc, "version": 1}, "update": SNIPPET});
    let reply = client.request("graft/apply", params).await;
    assert_eq!(reply["error"]["code"], json!(-32801), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap_or_default().contains("version 1 is not current"), "{reply}");
    assert!(client.apply_edit_requests.is_empty());
    assert_eq!(client.text(&doc), format!("// typed\n{ORIGINAL}"));
}

#[tokio::test]
async fn an_edit_the_editor_refuses_is_reported_not_applied() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    // The client's copy moves on without telling the server: the edit's
    // version is stale when it arrives, as after a keystroke in flight.
    client.documents.insert(doc.clone(), (ORIGINAL.to_string(), 5));
    let params = json!({"textDocument": {"uri": doc, "version": 1}, "update": SNIPPET});
    let reply = client.request("graft/apply", params).await;
    assert_eq!(reply["result"]["applied"], json!(false), "{reply}");
    assert!(reply["result"]["reason"].as_str().unwrap_or_default().contains("document version changed"), "{reply}");
}

#[tokio::test(start_paused = true)]
async fn an_editor_that_skips_the_edit_but_answers_applied_is_caught() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    client.edit_handling = EditHandling::SkipButAnswerApplied;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let reply = client.apply(&doc, SNIPPET, json!({})).await;
    assert_eq!(reply["result"]["applied"], json!(false), "{reply}");
    assert!(
        reply["result"]["reason"].as_str().unwrap_or_default().contains("no change to the result followed"),
        "{reply}"
    );
    assert_eq!(client.text(&doc), ORIGINAL);
}

#[tokio::test]
async fn an_invalid_result_is_applied_only_when_forced() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let broken = "// ... existing code ...\nfn other() -> u32 {\n    let = ;\n}\n";
    let reply = client.apply(&doc, broken, json!({})).await;
    assert_eq!(reply["result"]["valid"], json!(false), "{reply}");
    assert_eq!(reply["result"]["applied"], json!(false));
    assert!(reply["result"]["reason"].as_str().unwrap_or_default().contains("failed validation"), "{reply}");
    assert!(client.apply_edit_requests.is_empty());
    assert_eq!(client.text(&doc), ORIGINAL);
    let forced = client.apply(&doc, broken, json!({"force": true})).await;
    assert_eq!(forced["result"]["applied"], json!(true), "{forced}");
    assert!(client.text(&doc).contains("let = ;"));
}

#[tokio::test]
async fn preview_sends_annotations_that_need_confirmation() {
    let mut options = merge_options();
    options["preview"] = json!(true);
    let (mut client, _) = Client::start(Client::vscode_capabilities(), options).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let reply = client.apply(&doc, SNIPPET, json!({})).await;
    assert_eq!(reply["result"]["applied"], json!(true), "{reply}");
    let edit = &client.apply_edit_requests[0]["params"]["edit"];
    assert_eq!(edit["changeAnnotations"]["graft"]["needsConfirmation"], json!(true), "{edit}");
    assert_eq!(edit["documentChanges"][0]["edits"][0]["annotationId"], json!("graft"));
    // Without client support there is no annotation, whatever the config.
    let mut capabilities = Client::vscode_capabilities();
    capabilities["workspace"]["workspaceEdit"] = json!({"documentChanges": true});
    let mut options = merge_options();
    options["preview"] = json!(true);
    let (mut plain, _) = Client::start(capabilities, options).await;
    plain.open(&doc, ORIGINAL).await;
    assert_eq!(plain.apply(&doc, SNIPPET, json!({})).await["result"]["applied"], json!(true));
    assert!(plain.apply_edit_requests[0]["params"]["edit"].get("changeAnnotations").is_none());
}

#[tokio::test]
async fn malformed_params_get_an_error_and_the_server_lives_on() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let cases = [
        ("graft/apply", json!({})),
        ("graft/apply", json!({"textDocument": {"uri": 3, "version": 1}, "update": ""})),
        ("graft/apply", json!({"textDocument": {"uri": doc, "version": 1}, "update": "x", "dryrun": true})),
        ("graft/apply", json!({"textDocument": {"uri": doc, "version": 1}, "update": "x", "engine": "fast"})),
        ("graft/apply", json!({"textDocument": {"uri": uri("closed.rs"), "version": 1}, "update": "x"})),
        ("workspace/executeCommand", json!({"command": "graft.applyEdit", "arguments": []})),
        ("workspace/executeCommand", json!({"command": "graft.nope", "arguments": []})),
        ("codeAction/resolve", json!({"title": "x", "data": {}})),
    ];
    for (method, params) in cases {
        let reply = client.request(method, params.clone()).await;
        assert_eq!(reply["error"]["code"], json!(-32602), "{method} {params}: {reply}");
        assert!(!reply["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
    // A change with positions past the end clamps instead of failing.
    let params = json!({"textDocument": {"uri": doc, "version": 2}, "contentChanges": [{"range": {"start": {"line": 99, "character": 0}, "end": {"line": 120, "character": 4}}, "text": "// end\n"}]});
    client.notify("textDocument/didChange", params).await;
    client.documents.insert(doc.clone(), (format!("{ORIGINAL}// end\n"), 2));
    assert_eq!(client.server_snapshot(&doc).await.text, client.text(&doc));
    let reply = client.apply(&doc, SNIPPET, json!({})).await;
    assert_eq!(reply["result"]["applied"], json!(true), "{reply}");
}

#[tokio::test]
async fn code_actions_run_the_clipboard_command_resolved_lazily_when_supported() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}});
    let params = json!({"textDocument": {"uri": doc}, "range": range, "context": {"diagnostics": []}});
    let reply = client.request("textDocument/codeAction", params.clone()).await;
    let action = reply["result"][0].clone();
    assert_eq!(action["kind"], json!("refactor.rewrite"), "{reply}");
    assert!(action.get("command").is_none(), "{action}");
    let resolved = client.request("codeAction/resolve", action).await;
    assert_eq!(resolved["result"]["command"]["command"], json!("graft.applyFromClipboard"), "{resolved}");
    assert_eq!(resolved["result"]["command"]["arguments"][0]["uri"], json!(doc));

    let (mut plain, _) = Client::start(json!({}), merge_options()).await;
    plain.open(&doc, ORIGINAL).await;
    let reply = plain.request("textDocument/codeAction", params).await;
    assert_eq!(reply["result"][0]["command"]["command"], json!("graft.applyFromClipboard"), "{reply}");
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_with_a_message_and_the_old_one_stays() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), merge_options()).await;
    client.notify("workspace/didChangeConfiguration", json!({"settings": {"graft": {"engine": "fast"}}})).await;
    let shown = client.notification(|n| n["method"] == json!("window/showMessage")).await;
    let message = shown["params"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`engine`: `fast` is not merge, model or auto"), "{message}");
    let status = client.request("graft/status", Value::Null).await;
    assert_eq!(status["result"]["engine"], json!("merge"), "{status}");
    client
        .notify("workspace/didChangeConfiguration", json!({"settings": {"graft": {"engine": "auto", "preview": true}}}))
        .await;
    let status = client.request("graft/status", Value::Null).await;
    assert_eq!(status["result"]["engine"], json!("auto"), "{status}");
    assert_eq!(status["result"]["preview"], json!(true));
    // A bad initializationOptions is shown once initialized; defaults apply.
    let (mut bad, _) = Client::start(json!({}), json!({"device": "tpu"})).await;
    let shown = bad.notification(|n| n["method"] == json!("window/showMessage")).await;
    assert!(
        shown["params"]["message"].as_str().unwrap_or_default().contains("`device`: `tpu` is not cpu, cuda or cuda:N"),
        "{shown}"
    );
}

/// A file whose `big` function the model must rewrite whole: long enough
/// that an apply is still generating when the test reacts to its progress.
fn big_file() -> String {
    let mut text = String::from("fn big(v: &mut Vec<u64>) {\n");
    for i in 0..40 {
        text.push_str(&format!("    v.push({i} * {i} + {});\n", i % 7));
    }
    text.push_str("}\n\nfn small() -> u32 {\n    2\n}\n");
    text
}

const BIG_SNIPPET: &str = "fn big(v: &mut Vec<u64>) {\n    v.clear();\n    // ... existing code ...\n}\n";

fn model_options() -> Value {
    let model = graft_engine::home::default_model_path();
    assert!(model.is_file(), "{} is missing: run `graft models fetch` first", model.display());
    json!({"engine": "model", "modelPath": model, "logFile": std::env::temp_dir().join("graft-lsp-test.log")})
}

fn is_progress(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |n: &Value| n["method"] == json!("$/progress") && n["params"]["value"]["kind"] == json!(kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_model_applies_a_snippet_with_progress() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), model_options()).await;
    let doc = uri("main.rs");
    client.open(&doc, ORIGINAL).await;
    // Forced: the 135M model may cut a region short, which validation
    // flags; this test is about the model path through the protocol.
    let reply = client.apply(&doc, SNIPPET, json!({"force": true})).await;
    let result = &reply["result"];
    assert_eq!(result["applied"], json!(true), "{reply}");
    assert_eq!(result["report"]["mode"], json!("model"));
    assert!(result["stats"]["model_regions"].as_u64().unwrap_or(0) >= 1, "{reply}");
    assert!(result["stats"]["output_tokens"].as_u64().unwrap_or(0) > 0, "{reply}");
    assert_ne!(client.text(&doc), ORIGINAL, "{reply}");
    assert_eq!(client.server_snapshot(&doc).await.text, client.text(&doc));
    let begin = client.notification(is_progress("begin")).await;
    assert!(begin["params"]["value"]["title"].as_str().unwrap_or_default().contains("model"), "{begin}");
    let report = client.notification(is_progress("report")).await;
    assert!(report["params"]["value"]["percentage"].is_u64(), "{report}");
    let end = client.notification(is_progress("end")).await;
    assert_eq!(end["params"]["value"]["message"], json!("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_apply_stops_the_engine_and_leaves_the_document_untouched() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), model_options()).await;
    let doc = uri("big.rs");
    let original = big_file();
    client.open(&doc, &original).await;
    let params = json!({"textDocument": {"uri": doc, "version": 1}, "update": BIG_SNIPPET});
    let id = client.send_request("graft/apply", params).await;
    let report = client.notification(is_progress("report")).await;
    assert!(report["params"]["value"]["message"].as_str().unwrap_or_default().contains("tok/s"), "{report}");
    client.notify("$/cancelRequest", json!({"id": id})).await;
    let reply = client.response(id).await;
    assert_eq!(reply["error"]["code"], json!(-32800), "{reply}");
    let end = client.notification(is_progress("end")).await;
    assert_eq!(end["params"]["value"]["message"], json!("cancelled"), "{end}");
    let status = client.request("graft/status", Value::Null).await;
    assert_eq!(status["result"]["worker"]["cancelled"], json!(1), "{status}");
    assert_eq!(status["result"]["worker"]["busy"], json!(false), "{status}");
    assert!(status["result"]["model"]["loaded"].as_bool().unwrap_or(false), "{status}");
    assert!(status["result"]["cache"].is_array(), "{status}");
    assert!(client.apply_edit_requests.is_empty());
    assert_eq!(client.text(&doc), original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_apply_supersedes_a_running_one_on_the_same_document() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), model_options()).await;
    let doc = uri("big.rs");
    client.open(&doc, &big_file()).await;
    let params = json!({"textDocument": {"uri": doc, "version": 1}, "update": BIG_SNIPPET});
    let first = client.send_request("graft/apply", params).await;
    client.notification(is_progress("report")).await;
    let small = "// ... existing code ...\nfn small() -> u32 {\n    3\n}\n";
    let params = json!({"textDocument": {"uri": doc, "version": 1}, "update": small, "engine": "merge"});
    let second = client.send_request("graft/apply", params).await;
    let superseded = client.response(first).await;
    assert_eq!(superseded["error"]["code"], json!(-32802), "{superseded}");
    let applied = client.response(second).await;
    assert_eq!(applied["result"]["applied"], json!(true), "{applied}");
    assert!(client.text(&doc).ends_with("fn small() -> u32 {\n    3\n}\n"));
    assert!(client.text(&doc).contains("v.push(39 * 39 + 4);"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_on_a_warmed_buffer_reads_the_file_prefix_from_the_cache() {
    let (mut client, _) = Client::start(Client::vscode_capabilities(), model_options()).await;
    let doc = uri("warm.rs");
    client.open(&doc, ORIGINAL).await;
    // The warm-up runs once the buffer has been quiet for the debounce.
    let mut warmed = false;
    for _ in 0..600 {
        let status = client.request("graft/status", Value::Null).await;
        if status["result"]["worker"]["warmups"].as_u64().unwrap_or(0) >= 1 {
            warmed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(warmed, "no warm-up finished within two minutes");
    let reply = client.apply(&doc, SNIPPET, json!({"force": true})).await;
    let stats = &reply["result"]["stats"];
    let cached = stats["cached_prompt_tokens"].as_u64().unwrap_or(0) as usize;
    // Every full block of the file's stable prefix (header and file) came
    // from the cache.
    let gguf = graft_engine::model::gguf::GgufFile::open(&graft_engine::home::default_model_path()).expect("gguf");
    let tokenizer = graft_engine::tokenizer::Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let prefix = graft_engine::apply::stable_prefix(&tokenizer, Some("rust"), ORIGINAL).expect("prefix");
    let full_blocks = prefix.len() / graft_engine::kv::BLOCK_TOKENS * graft_engine::kv::BLOCK_TOKENS;
    assert!(full_blocks > 0 && cached >= full_blocks, "cached {cached} of a {}-token prefix: {reply}", prefix.len());
}
