// The extension's own logic, free of the VS Code API so it runs under
// `node --test`: settings -> the server's initializationOptions, the
// graft/apply parameters, and the texts shown in the status bar and for
// replies.

/** The `graft.*` settings as VS Code returns them. */
export interface Settings {
  serverPath?: string;
  modelPath?: string;
  device?: string;
  engine?: string;
  preview?: boolean;
  logLevel?: string;
  logFile?: string;
}

/** What the server reads (initializationOptions and didChangeConfiguration). */
export interface ServerOptions {
  modelPath?: string;
  device?: string;
  engine?: string;
  preview?: boolean;
  logLevel?: string;
  logFile?: string;
}

/** The server's settings from the extension's: empty strings mean "default" and are left out. */
export function serverOptions(settings: Settings): ServerOptions {
  const options: ServerOptions = {};
  const text = (value: string | undefined) => (value && value.trim() !== '' ? value.trim() : undefined);
  const modelPath = text(settings.modelPath);
  if (modelPath) options.modelPath = modelPath;
  const device = text(settings.device);
  if (device) options.device = device;
  const engine = text(settings.engine);
  if (engine) options.engine = engine;
  if (typeof settings.preview === 'boolean') options.preview = settings.preview;
  const logLevel = text(settings.logLevel);
  if (logLevel) options.logLevel = logLevel;
  const logFile = text(settings.logFile);
  if (logFile) options.logFile = logFile;
  return options;
}

/** The command that starts the server. */
export function serverCommand(settings: Settings): { command: string; args: string[] } {
  const path = settings.serverPath && settings.serverPath.trim() !== '' ? settings.serverPath.trim() : 'graft';
  return { command: path, args: ['lsp'] };
}

export interface ApplyParams {
  textDocument: { uri: string; version: number };
  update: string;
  instruction?: string;
  engine?: string;
  dryRun?: boolean;
  force?: boolean;
}

/** graft/apply parameters for a document at `version`; null when the snippet is empty. */
export function applyParams(uri: string, version: number, update: string): ApplyParams | null {
  if (update.trim() === '') return null;
  return { textDocument: { uri, version }, update };
}

export interface ApplyStats {
  total_ms: number;
  tokens_per_second: number;
  output_tokens: number;
}

export interface ApplyResult {
  applied: boolean;
  reason?: string;
  edits: unknown[];
  valid: boolean;
  stats: ApplyStats;
}

/** The status bar text after an apply: tok/s when the model ran, else the time. */
export function statusBarText(result: ApplyResult | null): string {
  if (!result) return '$(sparkle) graft';
  const stats = result.stats;
  if (stats.output_tokens > 0) return `$(sparkle) graft ${stats.tokens_per_second.toFixed(0)} tok/s`;
  return `$(sparkle) graft ${stats.total_ms.toFixed(0)} ms`;
}

/** A one-line message for an apply's reply. */
export function describeResult(result: ApplyResult): string {
  if (result.applied) {
    return `graft: applied ${result.edits.length} edit(s) in ${result.stats.total_ms.toFixed(0)} ms`;
  }
  return `graft: not applied: ${result.reason ?? 'unknown reason'}`;
}

/** JSON-RPC error codes graft answers with, as messages for people. */
export function describeError(code: number, message: string): string {
  switch (code) {
    case -32801:
      return `graft: the document changed since the request; nothing applied (${message})`;
    case -32802:
      return 'graft: superseded by a newer apply';
    case -32800:
      return 'graft: cancelled';
    default:
      return `graft: ${message}`;
  }
}
