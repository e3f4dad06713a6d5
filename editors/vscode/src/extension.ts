// The graft extension: starts `graft lsp` with vscode-languageclient, adds
// "Graft: Apply Edit from Clipboard" (also run by the server's
// refactor.rewrite code action) and "Graft: Show Status", and keeps a status
// bar item with the last apply's speed.
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ResponseError, ServerOptions } from 'vscode-languageclient/node';
import { applyParams, ApplyResult, describeError, describeResult, serverCommand, serverOptions, Settings, statusBarText } from './logic';

let client: LanguageClient | undefined;
let statusBar: vscode.StatusBarItem | undefined;

function settings(): Settings {
  const config = vscode.workspace.getConfiguration('graft');
  return {
    serverPath: config.get('serverPath'),
    modelPath: config.get('modelPath'),
    device: config.get('device'),
    engine: config.get('engine'),
    preview: config.get('preview'),
    logLevel: config.get('logLevel'),
    logFile: config.get('logFile'),
  };
}

async function applyFromClipboard(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!client || !editor) {
    vscode.window.showErrorMessage('graft: open a file first');
    return;
  }
  const update = await vscode.env.clipboard.readText();
  const params = applyParams(editor.document.uri.toString(), editor.document.version, update);
  if (!params) {
    vscode.window.showWarningMessage('graft: the clipboard is empty');
    return;
  }
  try {
    const result = await client.sendRequest<ApplyResult>('graft/apply', params);
    if (statusBar) statusBar.text = statusBarText(result);
    const message = describeResult(result);
    if (result.applied) vscode.window.setStatusBarMessage(message, 5000);
    else vscode.window.showWarningMessage(message);
  } catch (error) {
    const code = error instanceof ResponseError ? error.code : 0;
    vscode.window.showErrorMessage(describeError(code, String((error as Error).message ?? error)));
  }
}

async function showStatus(): Promise<void> {
  if (!client) return;
  const status = await client.sendRequest<Record<string, unknown>>('graft/status');
  const document = await vscode.workspace.openTextDocument({ language: 'json', content: JSON.stringify(status, null, 2) });
  await vscode.window.showTextDocument(document, { preview: true });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const current = settings();
  const server: ServerOptions = serverCommand(current);
  const clientOptions: LanguageClientOptions = {
    documentSelector: ['rust', 'python', 'typescript', 'typescriptreact', 'javascript', 'javascriptreact', 'go'].map(
      (language) => ({ language }),
    ),
    initializationOptions: serverOptions(current),
    synchronize: { configurationSection: 'graft' },
    middleware: {
      workspace: {
        // The server reads its own settings, not the extension's (serverPath).
        didChangeConfiguration: async (sections, next) => {
          await client?.sendNotification('workspace/didChangeConfiguration', { settings: serverOptions(settings()) });
          void sections;
          void next;
        },
      },
    },
  };
  client = new LanguageClient('graft', 'graft', server, clientOptions);
  statusBar = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusBar.text = statusBarText(null);
  statusBar.command = 'graft.showStatus';
  statusBar.show();
  context.subscriptions.push(
    statusBar,
    vscode.commands.registerCommand('graft.applyFromClipboard', applyFromClipboard),
    vscode.commands.registerCommand('graft.showStatus', showStatus),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
