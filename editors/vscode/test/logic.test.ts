// Unit tests of the extension's own logic (no VS Code needed): run by
// `npm run test:unit` through esbuild and `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyParams, describeError, describeResult, serverCommand, serverOptions, statusBarText } from '../src/logic';

test('empty settings are left out so the server applies its defaults', () => {
  assert.deepEqual(serverOptions({ serverPath: '/bin/graft', modelPath: '', engine: 'merge', preview: false, logFile: '  ' }), {
    engine: 'merge',
    preview: false,
  });
  assert.deepEqual(serverOptions({ modelPath: ' /m.gguf ', device: 'cpu', logLevel: 'debug' }), {
    modelPath: '/m.gguf',
    device: 'cpu',
    logLevel: 'debug',
  });
});

test('the server command defaults to graft lsp', () => {
  assert.deepEqual(serverCommand({}), { command: 'graft', args: ['lsp'] });
  assert.deepEqual(serverCommand({ serverPath: '/opt/graft' }), { command: '/opt/graft', args: ['lsp'] });
});

test('apply params carry the document version and refuse an empty snippet', () => {
  assert.deepEqual(applyParams('file:///a.rs', 7, 'fn a() {}'), {
    textDocument: { uri: 'file:///a.rs', version: 7 },
    update: 'fn a() {}',
  });
  assert.equal(applyParams('file:///a.rs', 7, ' \n'), null);
});

test('the status bar shows tok/s after a model apply and milliseconds after a merge', () => {
  assert.equal(statusBarText(null), '$(sparkle) graft');
  const model = { applied: true, edits: [{}], valid: true, stats: { total_ms: 900, tokens_per_second: 412.6, output_tokens: 300 } };
  assert.equal(statusBarText(model), '$(sparkle) graft 413 tok/s');
  const merge = { applied: true, edits: [], valid: true, stats: { total_ms: 2.4, tokens_per_second: 0, output_tokens: 0 } };
  assert.equal(statusBarText(merge), '$(sparkle) graft 2 ms');
  assert.equal(describeResult(model), 'graft: applied 1 edit(s) in 900 ms');
  assert.equal(describeResult({ ...merge, applied: false, reason: 'dry run' }), 'graft: not applied: dry run');
});

test('error codes become messages for people', () => {
  assert.match(describeError(-32801, 'x'), /document changed/);
  assert.equal(describeError(-32802, 'x'), 'graft: superseded by a newer apply');
  assert.equal(describeError(-32800, 'x'), 'graft: cancelled');
  assert.equal(describeError(-32803, 'boom'), 'graft: boom');
});
