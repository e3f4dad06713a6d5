// `graft lsp` driven by vscode-jsonrpc (the protocol library under VS Code's
// client), emulating VS Code's handling of versioned workspace edits: an
// edit for another version is refused, else applied and followed by
// didChange. Needs GRAFT_BIN (the release binary); run by scripts/test.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node.js';

const bin = process.env.GRAFT_BIN;
assert.ok(bin, 'GRAFT_BIN must name the graft binary');

const ORIGINAL = 'fn main() {\n    let x = 1;\n}\n\nfn other() -> u32 {\n    2\n}\n';
const SNIPPET = '// ... existing code ...\nfn other() -> u32 {\n    3\n}\n';
const EXPECTED = 'fn main() {\n    let x = 1;\n}\n\nfn other() -> u32 {\n    3\n}\n';
const URI = 'file:///work/main.rs';

// Offset of an LSP position (UTF-16, which JS strings count in natively).
function offsetAt(text, position) {
  let line = 0;
  let start = 0;
  while (line < position.line) {
    const next = text.indexOf('\n', start);
    if (next < 0) return text.length;
    start = next + 1;
    line += 1;
  }
  const end = text.indexOf('\n', start);
  const lineEnd = end < 0 ? text.length : end;
  return Math.min(start + position.character, lineEnd);
}

async function startServer(options) {
  const child = spawn(bin, ['lsp'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const doc = { text: ORIGINAL, version: 1 };
  const editRequests = [];
  connection.onRequest('workspace/applyEdit', async (params) => {
    editRequests.push(params);
    const change = params.edit.documentChanges[0];
    if (change.textDocument.version !== doc.version) {
      return { applied: false, failureReason: 'the document changed' };
    }
    const edits = [...change.edits].sort((a, b) => offsetAt(doc.text, b.range.start) - offsetAt(doc.text, a.range.start));
    const contentChanges = [];
    for (const edit of edits) {
      const start = offsetAt(doc.text, edit.range.start);
      const end = offsetAt(doc.text, edit.range.end);
      doc.text = doc.text.slice(0, start) + edit.newText + doc.text.slice(end);
      contentChanges.push({ range: edit.range, text: edit.newText });
    }
    doc.version += 1;
    await connection.sendNotification('textDocument/didChange', { textDocument: { uri: URI, version: doc.version }, contentChanges });
    return { applied: true };
  });
  connection.onRequest('window/workDoneProgress/create', () => null);
  connection.onNotification('window/logMessage', () => {});
  connection.listen();
  const capabilities = {
    workspace: { applyEdit: true, workspaceEdit: { documentChanges: true, changeAnnotationSupport: { groupsOnLabel: true } } },
    window: { workDoneProgress: true },
    general: { positionEncodings: ['utf-16'] },
  };
  const logFile = join(mkdtempSync(join(tmpdir(), 'graft-node-')), 'lsp.log');
  const init = await connection.sendRequest('initialize', {
    processId: process.pid,
    rootUri: null,
    capabilities,
    initializationOptions: { engine: 'merge', logFile, ...options },
  });
  await connection.sendNotification('initialized', {});
  await connection.sendNotification('textDocument/didOpen', {
    textDocument: { uri: URI, languageId: 'rust', version: 1, text: ORIGINAL },
  });
  const stop = async () => {
    await connection.sendRequest('shutdown');
    await connection.sendNotification('exit');
    connection.dispose();
    child.kill();
  };
  return { connection, doc, editRequests, init, stop };
}

test('an apply lands as a versioned edit and the document equals the expected text', async () => {
  const { connection, doc, editRequests, init, stop } = await startServer({});
  assert.equal(init.capabilities.positionEncoding, 'utf-16');
  const result = await connection.sendRequest('graft/apply', { textDocument: { uri: URI, version: 1 }, update: SNIPPET });
  assert.equal(result.applied, true, JSON.stringify(result));
  assert.equal(result.version, 2);
  assert.equal(doc.text, EXPECTED);
  assert.equal(editRequests[0].edit.documentChanges[0].textDocument.version, 1);
  assert.deepEqual(editRequests[0].edit.documentChanges[0].edits, [
    { range: { start: { line: 5, character: 4 }, end: { line: 5, character: 5 } }, newText: '3' },
  ]);
  const status = await connection.sendRequest('graft/status');
  assert.equal(status.lastApply.applied, true);
  await stop();
});

test('a stale version is refused with ContentModified and nothing is sent', async () => {
  const { connection, doc, editRequests, stop } = await startServer({});
  doc.text = '// typed\n' + doc.text;
  doc.version = 2;
  await connection.sendNotification('textDocument/didChange', {
    textDocument: { uri: URI, version: 2 },
    contentChanges: [{ range: { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } }, text: '// typed\n' }],
  });
  await assert.rejects(
    connection.sendRequest('graft/apply', { textDocument: { uri: URI, version: 1 }, update: SNIPPET }),
    (error) => error.code === -32801 && /version 1 is not current/.test(error.message),
  );
  assert.equal(editRequests.length, 0);
  assert.equal(doc.text, '// typed\n' + ORIGINAL);
  await stop();
});

test('preview sends change annotations that need confirmation', async () => {
  const { connection, doc, editRequests, stop } = await startServer({ preview: true });
  const result = await connection.sendRequest('workspace/executeCommand', {
    command: 'graft.applyEdit',
    arguments: [{ textDocument: { uri: URI, version: 1 }, update: SNIPPET }],
  });
  assert.equal(result.applied, true, JSON.stringify(result));
  const edit = editRequests[0].edit;
  assert.equal(edit.changeAnnotations.graft.needsConfirmation, true);
  assert.equal(edit.documentChanges[0].edits[0].annotationId, 'graft');
  assert.equal(doc.text, EXPECTED);
  await stop();
});
