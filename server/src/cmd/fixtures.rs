//! `graft fixtures PATH`: runs every apply case of a JSONL file (the
//! `dev.jsonl` format: id, original, update, instruction, expected, lang,
//! path) or of a fixtures directory (one directory per case with
//! `original.<ext>`, `update.<ext>`, `expected.<ext>` and an optional
//! `case.json` `{"instruction", "expect_flagged", "note"}`), headless. Prints
//! one line per case, a summary table and `N passed, N failed`; the exit
//! status is 2 when any case fails. A case passes when the result is
//! exactly the expected text, or when it expects a flagged result and gets
//! one. The model is loaded once, when the first case needs it.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use graft_engine::apply::{ApplyControl, ApplyMode, ApplyOutcome, ApplyRequest};
use graft_grammars::Language;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::apply::{read_text, run_apply, LazyEngine, Unaccepted};
use super::device::{parse_device, DeviceArg};
use super::quantile;

#[derive(Args)]
pub struct FixturesArgs {
    /// A JSONL file of cases (dev.jsonl format) or a fixtures directory.
    path: PathBuf,
    /// `merge`, `model` or `auto` (the model loaded only for cases whose
    /// merge is flagged), as for `graft apply`.
    #[arg(long, default_value = "auto", value_name = "auto|merge|model")]
    engine: ApplyMode,
    /// A GGUF file or a Hugging Face model directory (default: the default
    /// model, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the model runs: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
    /// Run only the cases whose id contains SUBSTR.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,
    /// Run at most N cases (after `--filter`).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Write one JSON object per case to FILE (id, verdict, pass, valid,
    /// flagged, ms, text, report, stats).
    #[arg(long, value_name = "FILE")]
    json_lines: Option<PathBuf>,
}

/// One apply case, from either source.
struct Case {
    id: String,
    original: String,
    update: String,
    expected: String,
    instruction: Option<String>,
    language: Option<Language>,
    /// The snippet cannot be placed with confidence: a flagged result passes.
    expect_flagged: bool,
}

/// A line of a JSONL file.
#[derive(Deserialize)]
struct JsonCase {
    #[serde(default)]
    id: Option<String>,
    original: String,
    update: String,
    expected: String,
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    expect_flagged: bool,
}

/// `case.json` of a fixtures directory case.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseMeta {
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default)]
    expect_flagged: bool,
    /// Why the case exists; for readers only.
    #[serde(default, rename = "note")]
    _note: Option<String>,
}

/// How a result compares with the expected text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Exact,
    /// Equal once trailing whitespace of every line (and blank lines at
    /// the end) is ignored.
    WsExact,
    Wrong,
}

impl Verdict {
    fn of(result: &str, expected: &str) -> Self {
        if result == expected {
            Verdict::Exact
        } else if trim_trailing_whitespace(result) == trim_trailing_whitespace(expected) {
            Verdict::WsExact
        } else {
            Verdict::Wrong
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verdict::Exact => "exact",
            Verdict::WsExact => "ws-exact",
            Verdict::Wrong => "wrong",
        }
    }
}

fn trim_trailing_whitespace(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// What one case gave.
struct Run {
    verdict: Verdict,
    valid: bool,
    flagged: bool,
    expect_flagged: bool,
    ms: f64,
}

impl Run {
    fn passed(&self) -> bool {
        self.verdict == Verdict::Exact || (self.expect_flagged && self.flagged)
    }
}

/// Loads the cases of `path`: a JSONL file or a fixtures directory.
fn load_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let meta = fs::metadata(path).with_context(|| format!("{}: cannot read the fixtures", path.display()))?;
    if meta.is_dir() {
        load_dir(path)
    } else {
        load_jsonl(path)
    }
}

fn load_jsonl(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text = read_text(path, "fixtures file")?;
    let mut cases = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let case: JsonCase = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not an apply case", path.display(), number + 1))?;
        let language = case
            .path
            .as_deref()
            .and_then(|p| Language::from_path(Path::new(p)))
            .or_else(|| case.lang.as_deref().and_then(Language::from_name));
        cases.push(Case {
            id: case.id.unwrap_or_else(|| format!("{}:{}", path.display(), number + 1)),
            original: case.original,
            update: case.update,
            expected: case.expected,
            instruction: case.instruction,
            language,
            expect_flagged: case.expect_flagged,
        });
    }
    Ok(cases)
}

fn load_dir(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut case_dirs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the fixtures", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    case_dirs.sort();
    case_dirs.iter().map(|case_dir| load_case_dir(case_dir)).collect()
}

/// The file of `case_dir` whose stem is `stem` (`original`, `update`,
/// `expected`); exactly one must exist.
fn case_file(case_dir: &Path, stem: &str) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(case_dir)
        .with_context(|| format!("{}: cannot list the case", case_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_stem().is_some_and(|s| s == stem))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("{}: no {stem}.<ext> file", case_dir.display()),
        _ => bail!("{}: several {stem}.<ext> files", case_dir.display()),
    }
}

fn load_case_dir(case_dir: &Path) -> anyhow::Result<Case> {
    let original_path = case_file(case_dir, "original")?;
    let meta_path = case_dir.join("case.json");
    let meta: CaseMeta = if meta_path.is_file() {
        let text = read_text(&meta_path, "case description")?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a case description", meta_path.display()))?
    } else {
        CaseMeta { instruction: None, expect_flagged: false, _note: None }
    };
    Ok(Case {
        id: case_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        original: read_text(&original_path, "original file")?,
        update: read_text(&case_file(case_dir, "update")?, "snippet")?,
        expected: read_text(&case_file(case_dir, "expected")?, "expected file")?,
        instruction: meta.instruction,
        language: Language::from_path(&original_path),
        expect_flagged: meta.expect_flagged,
    })
}

/// The JSON line of one case for `--json-lines`.
fn case_json(case: &Case, run: &Run, outcome: &ApplyOutcome) -> serde_json::Value {
    serde_json::json!({
        "id": case.id,
        "verdict": run.verdict.name(),
        "pass": run.passed(),
        "valid": run.valid,
        "flagged": run.flagged,
        "expect_flagged": run.expect_flagged,
        "ms": run.ms,
        "text": outcome.text,
        "report": outcome.report,
        "stats": outcome.stats,
    })
}

pub fn run(args: FixturesArgs) -> anyhow::Result<()> {
    let mut cases = load_cases(&args.path)?;
    if let Some(filter) = &args.filter {
        cases.retain(|c| c.id.contains(filter.as_str()));
    }
    if let Some(limit) = args.limit {
        cases.truncate(limit);
    }
    if cases.is_empty() {
        bail!("{}: no cases to run", args.path.display());
    }
    let mut json_lines = match &args.json_lines {
        Some(path) => Some(std::io::BufWriter::new(
            fs::File::create(path).with_context(|| format!("{}: cannot create it", path.display()))?,
        )),
        None => None,
    };

    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(cases.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} cases, {elapsed} ({eta} left) {msg}")
                .context("progress bar template")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut engine = LazyEngine::new(args.model, args.device);
    let mut runs = Vec::with_capacity(cases.len());
    let id_width = cases.iter().map(|c| c.id.len()).max().unwrap_or(0).min(60);
    for case in &cases {
        bar.set_message(case.id.clone());
        let request = ApplyRequest {
            original: &case.original,
            update: &case.update,
            instruction: case.instruction.as_deref(),
            language: case.language,
            mode: args.engine,
            whole_file: false,
        };
        let load_before = engine.load_ms.unwrap_or(0.0);
        let started = Instant::now();
        let outcome =
            run_apply(&request, &mut engine, ApplyControl::default()).with_context(|| format!("case {}", case.id))?;
        // The model's one-time load is not the case's latency.
        let ms = started.elapsed().as_secs_f64() * 1e3 - (engine.load_ms.unwrap_or(0.0) - load_before);
        let run = Run {
            verdict: Verdict::of(&outcome.text, &case.expected),
            valid: outcome.valid,
            flagged: outcome.flagged(),
            expect_flagged: case.expect_flagged,
            ms,
        };
        let line = format!(
            "{:<4} {:<id_width$}  {:<8} {:<7} {:<9} {:>9.1} ms",
            if run.passed() { "ok" } else { "FAIL" },
            case.id,
            run.verdict.name(),
            if run.valid { "valid" } else { "invalid" },
            if run.flagged { "flagged" } else { "unflagged" },
            run.ms,
        );
        bar.suspend(|| println!("{line}"));
        if let Some(out) = json_lines.as_mut() {
            serde_json::to_writer(&mut *out, &case_json(case, &run, &outcome))?;
            writeln!(out)?;
        }
        runs.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let (Some(out), Some(path)) = (json_lines.as_mut(), &args.json_lines) {
        out.flush().with_context(|| format!("{}: writing it", path.display()))?;
    }

    let count = |f: &dyn Fn(&Run) -> bool| runs.iter().filter(|r| f(r)).count();
    let total = runs.len();
    let percent = |n: usize| 100.0 * n as f64 / total as f64;
    let latencies: Vec<f64> = runs.iter().map(|r| r.ms).collect();
    let rows = [
        ("exact match", count(&|r| r.verdict == Verdict::Exact)),
        ("exact ignoring trailing whitespace", count(&|r| r.verdict != Verdict::Wrong)),
        ("valid", count(&|r| r.valid)),
        ("flagged", count(&|r| r.flagged)),
        ("expected flagged, flagged", count(&|r| r.expect_flagged && r.flagged)),
        ("unflagged wrong", count(&|r| r.verdict == Verdict::Wrong && !r.flagged)),
    ];
    println!();
    println!("engine {}: {} cases from {}", args.engine, total, args.path.display());
    for (name, n) in rows {
        println!("  {name:<36} {n:>6}  {:>5.1}%", percent(n));
    }
    println!("  {:<36} {:>9.1} ms", "median latency", quantile(&latencies, 0.5));
    println!("  {:<36} {:>9.1} ms", "p90 latency", quantile(&latencies, 0.9));
    if let Some(load_ms) = engine.load_ms {
        println!("  {:<36} {:>9.1} ms (once, not in the latencies)", "model load", load_ms);
    }
    let passed = count(&|r| r.passed());
    let failed = total - passed;
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(Unaccepted(format!("{failed} of {total} cases failed")).into());
    }
    Ok(())
}
