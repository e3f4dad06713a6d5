//! `graft apply FILE --update SNIPPET`: merges a lazy edit snippet into a
//! file and prints the result (or writes it in place, atomically), with
//! `--json` one object `{text, valid, report, stats}`. Also the pieces that
//! `graft fixtures` shares: reading input files as text with errors naming
//! them ([`read_text`]), the model loaded only when a case needs it
//! ([`LazyEngine`]), the lazy `auto` policy ([`run_apply`]) and the
//! "finished, but do not accept the result" exit ([`Unaccepted`]).
//!
//! `auto` runs the deterministic merge first and loads the model only when
//! the merge's result is flagged (an ambiguous or failed reading, or a
//! validation problem); then the engine's `auto` mode decides per region.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use graft_engine::apply::{apply, ApplyControl, ApplyMode, ApplyOutcome, ApplyRequest};
use graft_engine::Engine;
use graft_grammars::Language;

use super::device::{load_engine, parse_device, DeviceArg};

#[derive(Args)]
pub struct ApplyArgs {
    /// The file to edit (its language is taken from its extension; other
    /// files are merged line by line).
    file: PathBuf,
    /// The lazy edit snippet: a file, or `-` to read it from stdin.
    #[arg(long, value_name = "SNIPPET_FILE|-")]
    update: PathBuf,
    /// What the edit is for (given to the model).
    #[arg(long)]
    instruction: Option<String>,
    /// `merge`: the deterministic structural merge alone. `model`: every
    /// region the snippet touches rewritten by the model, drafted from the
    /// merge. `auto`: the merge, and the model loaded and run only when the
    /// merge's result is flagged (ambiguous, unplaced or invalid).
    #[arg(long, default_value = "auto", value_name = "auto|merge|model")]
    engine: ApplyMode,
    /// A GGUF file or a Hugging Face model directory (default: the default
    /// model, fetched on first use). Loaded only when the engine needs it.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the model runs: auto (the GPU when this build has CUDA and one
    /// works), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
    /// Write the result to FILE (atomically, keeping its permissions)
    /// instead of stdout. A flagged result is not written unless `--force`.
    #[arg(long)]
    in_place: bool,
    /// With `--in-place`: write the result even when it is flagged.
    #[arg(long, requires = "in_place")]
    force: bool,
    /// Print one JSON object `{text, valid, report, stats}` on stdout.
    #[arg(long)]
    json: bool,
    /// Model mode rewrites the whole file as one region (small files only).
    #[arg(long)]
    whole_file: bool,
}

/// A command that ran to the end but whose result must not be accepted as
/// is (a flagged apply, failing fixture cases): exit status 2, with the
/// message on stderr. Errors proper exit with 1.
#[derive(Debug)]
pub struct Unaccepted(pub String);

impl fmt::Display for Unaccepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unaccepted {}

/// Exit status of a command that ended with [`Unaccepted`].
pub const UNACCEPTED_EXIT: u8 = 2;

/// Bad input named by its path (`<stdin>` for `-`).
#[derive(Debug)]
pub enum InputError {
    Read { what: &'static str, path: String, source: io::Error },
    NotUtf8 { what: &'static str, path: String, line: usize },
    EmptySnippet { path: String },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read { what, path, source } => write!(f, "{path}: cannot read the {what}: {source}"),
            InputError::NotUtf8 { what, path, line } => {
                write!(f, "{path}: the {what} is not UTF-8 text (invalid bytes on line {line})")
            }
            InputError::EmptySnippet { path } => write!(f, "{path}: the snippet is empty"),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads `path` (`-`: stdin) as UTF-8 text; `what` names its role in
/// errors ("file", "snippet", "expected file").
pub fn read_text(path: &Path, what: &'static str) -> Result<String, InputError> {
    let (name, bytes) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        let read = io::stdin().lock().read_to_end(&mut bytes);
        ("<stdin>".to_string(), read.map(|_| bytes))
    } else {
        (path.display().to_string(), fs::read(path))
    };
    let bytes = bytes.map_err(|source| InputError::Read { what, path: name.clone(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        InputError::NotUtf8 { what, path: name, line }
    })
}

/// Reads a snippet (`-`: stdin), which must hold more than whitespace.
pub fn read_snippet(path: &Path) -> Result<String, InputError> {
    let text = read_text(path, "snippet")?;
    if text.trim().is_empty() {
        let path = if path == Path::new("-") { "<stdin>".to_string() } else { path.display().to_string() };
        return Err(InputError::EmptySnippet { path });
    }
    Ok(text)
}

/// The model, loaded on first use and kept for every later apply.
pub struct LazyEngine {
    model: Option<PathBuf>,
    device: DeviceArg,
    engine: Option<Engine>,
    /// Time spent loading (and fetching) the model, once loaded.
    pub load_ms: Option<f64>,
}

impl LazyEngine {
    /// `model`: the `--model` argument (`None`: the default model), loaded
    /// on `device`.
    pub fn new(model: Option<PathBuf>, device: DeviceArg) -> Self {
        LazyEngine { model, device, engine: None, load_ms: None }
    }

    /// The engine, loading it on the first call.
    pub fn get(&mut self) -> anyhow::Result<&mut Engine> {
        if self.engine.is_none() {
            let started = Instant::now();
            let path = crate::resolve_model(self.model.clone())?;
            let engine = load_engine(&path, self.device)?;
            self.load_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            self.engine = Some(engine);
        }
        self.engine.as_mut().context("the model was not loaded")
    }
}

/// Applies `request` in its mode: `merge` without the model, `model` with
/// it, `auto` with it only when the merge alone gives a flagged result.
pub fn run_apply(
    request: &ApplyRequest<'_>,
    engine: &mut LazyEngine,
    control: ApplyControl<'_>,
) -> anyhow::Result<ApplyOutcome> {
    let outcome = match request.mode {
        ApplyMode::Merge => apply(request, None, control)?,
        ApplyMode::Model => apply(request, Some(engine.get()?), control)?,
        ApplyMode::Auto => {
            // Auto without an engine is the merge alone, reported as auto.
            let merged = apply(request, None, ApplyControl::default())?;
            if !merged.flagged() {
                return Ok(merged);
            }
            apply(request, Some(engine.get()?), control)?
        }
    };
    Ok(outcome)
}

/// Why an outcome is flagged, one line each: validation problems and the
/// snippet pieces the merge placed with an issue (report lines are
/// 0-based, as in `--json`).
pub fn flag_reasons(outcome: &ApplyOutcome) -> Vec<String> {
    let mut reasons: Vec<String> =
        outcome.report.problems.iter().map(|p| format!("problem: {}", describe(p))).collect();
    let pieces = &outcome.report.merge.pieces;
    for region in outcome.report.regions.iter().filter(|r| r.doubtful) {
        let issues: Vec<String> = pieces
            .get(region.pieces.clone())
            .unwrap_or_default()
            .iter()
            .flat_map(|piece| {
                let at = format!("snippet lines {}..{}", piece.update_lines.start, piece.update_lines.end);
                let anchor = describe(&piece.anchor);
                let issues: Vec<String> = piece.issues.iter().map(|i| format!("{at}: {}", describe(i))).collect();
                if issues.is_empty() {
                    vec![format!("{at}: anchor {anchor}")]
                } else {
                    issues
                }
            })
            .collect();
        let source = describe(&region.source);
        reasons.push(format!(
            "doubtful region at original lines {}..{} ({source}): {}",
            region.lines.start,
            region.lines.end,
            issues.join("; ")
        ));
    }
    reasons
}

/// A report value in one line: `kind {field: value, ...}` for tagged
/// enums, the bare name for unit variants.
fn describe<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Object(fields)) => {
            let kind = fields.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
            let rest: Vec<String> =
                fields.iter().filter(|(k, _)| *k != "kind").map(|(k, v)| format!("{k}: {v}")).collect();
            if rest.is_empty() {
                kind.to_string()
            } else {
                format!("{kind} {{{}}}", rest.join(", "))
            }
        }
        Ok(other) => other.to_string(),
        Err(e) => format!("<unprintable: {e}>"),
    }
}

/// Writes `text` over `path` atomically: a temporary file in the same
/// directory with the original's permissions, renamed over it. `path` is
/// left untouched when anything fails. Symlinks are followed, so the file
/// they point to is replaced and the link kept.
fn write_in_place(path: &Path, text: &str) -> anyhow::Result<()> {
    let target = fs::canonicalize(path).with_context(|| format!("{}: resolving the path", path.display()))?;
    let dir = target.parent().with_context(|| format!("{}: no parent directory", target.display()))?;
    let permissions =
        fs::metadata(&target).with_context(|| format!("{}: reading its permissions", target.display()))?.permissions();
    let mut temp = tempfile::Builder::new()
        .prefix(".graft-apply-")
        .tempfile_in(dir)
        .with_context(|| format!("{}: creating a temporary file", dir.display()))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("{}: writing the temporary file", temp.path().display()))?;
    fs::set_permissions(temp.path(), permissions)
        .with_context(|| format!("{}: setting permissions", temp.path().display()))?;
    temp.persist(&target).map_err(|e| e.error).with_context(|| format!("{}: replacing the file", target.display()))?;
    Ok(())
}

pub fn run(args: ApplyArgs) -> anyhow::Result<()> {
    let original = read_text(&args.file, "file")?;
    let update = read_snippet(&args.update)?;
    let request = ApplyRequest {
        original: &original,
        update: &update,
        instruction: args.instruction.as_deref(),
        language: Language::from_path(&args.file),
        mode: args.engine,
        whole_file: args.whole_file,
    };
    let mut engine = LazyEngine::new(args.model, args.device);
    let outcome = run_apply(&request, &mut engine, ApplyControl::default())
        .with_context(|| format!("applying {} to {}", args.update.display(), args.file.display()))?;
    let flagged = outcome.flagged();

    let mut stdout = io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &outcome).context("writing JSON to stdout")?;
        writeln!(stdout)?;
    } else if !args.in_place {
        stdout.write_all(outcome.text.as_bytes()).context("writing to stdout")?;
    }
    stdout.flush()?;

    let written = args.in_place && (!flagged || args.force);
    if written {
        write_in_place(&args.file, &outcome.text)?;
    }
    if !flagged {
        if written {
            eprintln!("graft: wrote {} ({:.1} ms)", args.file.display(), outcome.stats.total_ms);
        }
        return Ok(());
    }
    let mut message = format!("{}: the result is flagged", args.file.display());
    match (args.in_place, written) {
        (true, true) => message.push_str(" (written anyway: --force)"),
        (true, false) => message.push_str(" and was NOT written (use --force to write it)"),
        _ => {}
    }
    for reason in flag_reasons(&outcome) {
        message.push_str("\n  ");
        message.push_str(&reason);
    }
    Err(Unaccepted(message).into())
}
