//! [`apply`]: the whole apply step for one file and one snippet, in any
//! [`ApplyMode`], returning the file, whether it is valid, a report of how
//! every part was made and the figures of the run.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graft_grammars::Language;
use serde::{Deserialize, Serialize};

use super::model::{self, RegionSource};
use super::validate::{validate, Problem};
use super::{merge, MergeReport};
use crate::error::{Error, Result};
use crate::Engine;

/// How the apply step produces the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyMode {
    /// The deterministic structural merge alone; no model.
    Merge,
    /// Every region the snippet touches is rewritten by the model, drafted
    /// from the merge candidate.
    Model,
    /// The merge where it is unambiguous and valid; the model for the
    /// regions where it is not (see ARCHITECTURE.md for the figures).
    Auto,
}

impl ApplyMode {
    pub const ALL: [ApplyMode; 3] = [ApplyMode::Merge, ApplyMode::Model, ApplyMode::Auto];

    pub fn name(self) -> &'static str {
        match self {
            ApplyMode::Merge => "merge",
            ApplyMode::Model => "model",
            ApplyMode::Auto => "auto",
        }
    }

    /// Whether this mode may need a loaded model.
    pub fn uses_model(self) -> bool {
        self != ApplyMode::Merge
    }
}

impl fmt::Display for ApplyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ApplyMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| Error::InvalidRequest {
            reason: format!("unknown apply engine `{s}` (expected merge, model or auto)"),
        })
    }
}

/// One apply: a file, a snippet and how to merge them.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    /// The file as it is now.
    pub original: &'a str,
    /// The lazy edit snippet.
    pub update: &'a str,
    /// What the edit is for, when the agent said (given to the model).
    pub instruction: Option<&'a str>,
    /// The file's language; `None`: line-based handling, said in the report.
    pub language: Option<Language>,
    pub mode: ApplyMode,
    /// Model mode rewrites the whole file as one region instead of the
    /// regions the snippet touches (small files only; the context bounds it).
    pub whole_file: bool,
}

/// How far a model rewrite has come, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApplyProgress {
    /// Output tokens generated so far, over all regions.
    pub output_tokens: usize,
    /// Output tokens expected in all (the merge candidate's regions).
    pub expected_tokens: usize,
    pub elapsed: Duration,
}

/// Cancellation and progress for one apply; both optional.
#[derive(Default)]
pub struct ApplyControl<'a> {
    /// Set to stop at the next decoding step; the apply then fails with
    /// [`Error::Cancelled`] and nothing is returned.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called after every decoding step of the model.
    pub progress: Option<&'a mut dyn FnMut(&ApplyProgress)>,
    /// The prefix-cache namespace of the file (its workspace folder);
    /// `None`: [`crate::kv::HEADLESS_NAMESPACE`].
    pub namespace: Option<&'a str>,
}

impl ApplyControl<'_> {
    pub(super) fn check_cancelled(&self) -> Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}

/// The result of an apply: always a text; `valid` and the report say how
/// far to trust it.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyOutcome {
    /// The updated file.
    pub text: String,
    /// No validation problem was found (see `report.problems`).
    pub valid: bool,
    pub report: ApplyReport,
    pub stats: ApplyStats,
}

impl ApplyOutcome {
    /// True when the result should not be taken without a look: it failed
    /// validation, or some part of it was an ambiguous or failed reading.
    pub fn flagged(&self) -> bool {
        !self.valid || self.report.regions.iter().any(|r| r.doubtful)
    }
}

/// How an apply's result was made.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub mode: ApplyMode,
    /// The language name, or `None` when the file's language is unknown
    /// and the merge worked line by line.
    pub language: Option<&'static str>,
    /// What the structural merge made of the snippet (always run: it
    /// anchors the regions and drafts the model's output).
    pub merge: MergeReport,
    /// The parts of the original that were rewritten, each with where its
    /// new text came from.
    pub regions: Vec<RegionReport>,
    /// Why the result is not valid; empty when it is.
    pub problems: Vec<Problem>,
}

/// One rewritten part of the original.
#[derive(Debug, Clone, Serialize)]
pub struct RegionReport {
    /// The original lines rewritten, 0-based, end exclusive.
    pub lines: std::ops::Range<usize>,
    /// The snippet pieces (indices into `merge.pieces`) it covers.
    pub pieces: std::ops::Range<usize>,
    pub source: RegionSource,
    /// The merge's reading of the pieces here was ambiguous or failed and
    /// nothing confirmed the text taken.
    pub doubtful: bool,
}

/// Figures of one apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyStats {
    pub total_ms: f64,
    pub merge_ms: f64,
    pub validate_ms: f64,
    /// Time in the model (prefill and decoding of every region).
    pub model_ms: f64,
    /// Regions the model wrote or checked.
    pub model_regions: usize,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_prompt_tokens: usize,
    pub prefill_ms: f64,
    /// Time to the first output token of the first region.
    pub ttft_ms: f64,
    pub output_tokens: usize,
    pub steps: usize,
    pub drafted: usize,
    pub accepted: usize,
    /// Output tokens per second of decoding.
    pub tokens_per_second: f64,
}

/// Applies `request`: the structural merge, then (mode model or auto) the
/// model on regions, then validation. `engine` is needed by the model and
/// auto modes; auto without one keeps the merge and says so in the report.
pub fn apply(
    request: &ApplyRequest<'_>,
    engine: Option<&mut Engine>,
    control: ApplyControl<'_>,
) -> Result<ApplyOutcome> {
    let started = Instant::now();
    control.check_cancelled()?;
    let merged = merge(request.original, request.update, request.language);
    let merge_ms = ms(started.elapsed());
    let mut stats = ApplyStats { merge_ms, ..Default::default() };

    let (text, regions) = match (request.mode, engine) {
        (ApplyMode::Merge, _) | (ApplyMode::Auto, None) => (merged.text.clone(), model::merge_regions(&merged)),
        (ApplyMode::Model, None) => {
            return Err(Error::InvalidRequest { reason: "apply engine `model` needs a loaded model".into() })
        }
        (mode, Some(engine)) => {
            let rewrite = model::rewrite(engine, request, &merged, mode, control, &mut stats)?;
            (rewrite.text, rewrite.regions)
        }
    };

    let validating = Instant::now();
    let problems = validate(request.original, &text, request.language);
    stats.validate_ms = ms(validating.elapsed());
    stats.total_ms = ms(started.elapsed());
    Ok(ApplyOutcome {
        text,
        valid: problems.is_empty(),
        report: ApplyReport {
            mode: request.mode,
            language: request.language.map(Language::name),
            merge: merged.report,
            regions,
            problems,
        },
        stats,
    })
}

pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
