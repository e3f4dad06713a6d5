//! Model apply scoped to regions: the merge's anchoring picks the parts of
//! the original the snippet touches ([`plan_regions`]: each piece's span,
//! grown to the small items it cuts into plus a margin, neighbours joined);
//! the model rewrites each region from a prompt of [`super::prompt`],
//! drafted from the merge candidate's text for the region (lossless
//! speculative decoding: the output is the model's greedy output), and the
//! new regions are spliced back. Output tokens scale with the edit, and the
//! file context is windowed when the whole file does not fit, so files of
//! any length work.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use graft_grammars::{is_marker_line, items, parse, Language};
use serde::Serialize;

use super::pipeline::{ms, ApplyControl, ApplyMode, ApplyProgress, ApplyRequest, ApplyStats, RegionReport};
use super::prompt::{self, RegionPrompt};
use super::text::{dominant_eol, split_lines, Line};
use super::validate::validate;
use super::MergeResult;
use crate::decode::draft::DEFAULT_MIN_NGRAM;
use crate::decode::{CompositeDraft, GenerateParams, PromptLookup, TextDraft};
use crate::error::{Error, Result};
use crate::kv::HEADLESS_NAMESPACE;
use crate::tokenizer::Tokenizer;
use crate::{Engine, Warmed};

/// Lines of context kept on each side of a piece's span.
const MARGIN: usize = 2;

/// Items up to this many lines that a span cuts into are taken whole.
const MAX_ENCLOSING_ITEM: usize = 60;

/// Output tokens allowed beyond the merge candidate's: a fraction of it
/// plus a constant.
const OUTPUT_SLACK_DIVISOR: usize = 4;
const OUTPUT_SLACK: usize = 64;

/// Tokens kept free in the context for the template's own tokens.
const CONTEXT_RESERVE: usize = 32;

/// Verification width cap of model apply's speculative decoding.
const MAX_WIDTH: usize = 64;

/// Where a region's new text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    /// The merge candidate, not checked by the model.
    Merge,
    /// The model's output, identical to the merge candidate.
    ModelAgrees,
    /// The model's output, which differs from the merge candidate (model
    /// mode).
    ModelDiffers,
    /// The merge candidate, kept although the model wrote something else
    /// (auto mode: see ARCHITECTURE.md for the figures behind this).
    MergeModelDiffers,
    /// The merge candidate: the region and its output do not fit the
    /// model's context.
    MergeTooLarge,
    /// The merge candidate: the model's output was cut short (out of tokens
    /// or context) before it closed the region.
    MergeModelCutShort,
}

/// What the model made of one region.
enum Written {
    Text(String),
    TooLarge,
    CutShort,
}

/// The parts of the original the snippet touches, with the merge
/// candidate's lines for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Region {
    /// Original lines.
    pub lines: Range<usize>,
    /// Candidate lines.
    pub output: Range<usize>,
    /// Indices of the snippet pieces it covers.
    pub pieces: Range<usize>,
    /// Some piece in it was placed with an issue, or not at all.
    pub doubtful: bool,
}

/// The text the model path produced.
pub(super) struct Rewrite {
    pub text: String,
    pub regions: Vec<RegionReport>,
}

/// The merge's own regions, one per piece, for merge mode's report.
pub(super) fn merge_regions(merged: &MergeResult) -> Vec<RegionReport> {
    let mut regions = Vec::new();
    let mut last_end = 0;
    for (index, piece) in merged.report.pieces.iter().enumerate() {
        let lines = match &piece.replaced {
            Some(replaced) => {
                last_end = replaced.end;
                replaced.clone()
            }
            None => last_end..last_end,
        };
        regions.push(RegionReport {
            lines,
            pieces: index..index + 1,
            source: RegionSource::Merge,
            doubtful: !piece.issues.is_empty() || piece.replaced.is_none(),
        });
    }
    regions
}

/// The regions of the original to rewrite: each piece's replaced lines
/// (an unplaced piece: the gap between its placed neighbours), grown to the
/// small items they cut into and by [`MARGIN`], overlapping ones joined.
pub(super) fn plan_regions(request: &ApplyRequest<'_>, merged: &MergeResult) -> Vec<Region> {
    let original_len = split_lines(request.original).len();
    let candidate_len = split_lines(&merged.text).len();
    if request.whole_file {
        let doubtful = !merged.report.is_clean();
        let pieces = 0..merged.report.pieces.len();
        return vec![Region { lines: 0..original_len, output: 0..candidate_len, pieces, doubtful }];
    }
    let pieces = &merged.report.pieces;
    // (original range, candidate range) of every placed piece, in order.
    let placed: Vec<(Range<usize>, Range<usize>)> =
        pieces.iter().filter_map(|p| Some((p.replaced.clone()?, p.output.clone()?))).collect();
    let item_spans = enclosing_candidates(request);

    let mut spans: Vec<(Range<usize>, Range<usize>, bool)> = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let doubtful = !piece.issues.is_empty() || piece.replaced.is_none();
        let span = match &piece.replaced {
            Some(replaced) => replaced.clone(),
            None => {
                // The gap between the placed neighbours.
                let start = pieces[..index].iter().rev().find_map(|p| p.replaced.as_ref()).map_or(0, |r| r.end);
                let end = pieces[index..].iter().find_map(|p| p.replaced.as_ref()).map_or(original_len, |r| r.start);
                start..end.max(start)
            }
        };
        let mut grown = span.clone();
        for item in &item_spans {
            let cuts_in = item.start < span.end.max(span.start + 1) && span.start < item.end;
            let contained = span.start <= item.start && item.end <= span.end;
            if cuts_in && !contained && item.len() <= MAX_ENCLOSING_ITEM {
                grown.start = grown.start.min(item.start);
                grown.end = grown.end.max(item.end);
            }
        }
        grown.start = grown.start.saturating_sub(MARGIN);
        grown.end = (grown.end + MARGIN).min(original_len);
        spans.push((snap(grown, &placed), index..index + 1, doubtful));
    }

    let mut regions: Vec<Region> = Vec::new();
    for (lines, piece_range, doubtful) in spans {
        match regions.last_mut() {
            Some(last) if lines.start <= last.lines.end => {
                last.lines.end = last.lines.end.max(lines.end);
                last.lines.start = last.lines.start.min(lines.start);
                last.pieces.end = piece_range.end;
                last.doubtful |= doubtful;
            }
            _ => regions.push(Region { lines, output: 0..0, pieces: piece_range, doubtful }),
        }
    }
    for region in &mut regions {
        region.output = map_line(region.lines.start, &placed)..map_line(region.lines.end, &placed);
        region.output.end = region.output.end.min(candidate_len).max(region.output.start);
    }
    regions
}

/// Line ranges of the original's items (empty for unknown languages or
/// files that do not parse in time).
fn enclosing_candidates(request: &ApplyRequest<'_>) -> Vec<Range<usize>> {
    let Some(language) = request.language else { return Vec::new() };
    let Ok(tree) = parse(language, request.original) else { return Vec::new() };
    items(language, &tree, request.original)
        .map(|list| list.into_iter().map(|i| i.line_range).collect())
        .unwrap_or_default()
}

/// Widens `range` so neither end falls strictly inside a placed piece's
/// original lines (those lines have no one-to-one candidate lines).
fn snap(mut range: Range<usize>, placed: &[(Range<usize>, Range<usize>)]) -> Range<usize> {
    for (replaced, _) in placed {
        if replaced.start < range.start && range.start < replaced.end {
            range.start = replaced.start;
        }
        if replaced.start < range.end && range.end < replaced.end {
            range.end = replaced.end;
        }
    }
    range
}

/// The candidate line where original line boundary `line` (not strictly
/// inside a placed piece) lands.
fn map_line(line: usize, placed: &[(Range<usize>, Range<usize>)]) -> usize {
    let mut shift: isize = 0;
    for (replaced, output) in placed {
        if replaced.end <= line && !(replaced.is_empty() && replaced.start == line && output.start >= line) {
            shift += output.len() as isize - replaced.len() as isize;
        }
    }
    (line as isize + shift).max(0) as usize
}

/// Text of `lines[range]` with `\n` endings.
fn joined(lines: &[Line<'_>], range: Range<usize>) -> String {
    let mut text = String::new();
    for line in lines.get(range).unwrap_or_default() {
        text.push_str(line.text);
        text.push('\n');
    }
    text
}

/// Runs the model over the regions `mode` gives it and assembles the file.
pub(super) fn rewrite(
    engine: &mut Engine,
    request: &ApplyRequest<'_>,
    merged: &MergeResult,
    mode: ApplyMode,
    mut control: ApplyControl<'_>,
    stats: &mut ApplyStats,
) -> Result<Rewrite> {
    let regions = plan_regions(request, merged);
    let original = split_lines(request.original);
    let candidate = split_lines(&merged.text);
    let update = split_lines(request.update);
    let eol = dominant_eol(&original);

    // Auto: a clean, valid merge needs no model at all.
    let merge_trusted =
        merged.report.is_clean() && validate(request.original, &merged.text, request.language).is_empty();
    let runs_model = |region: &Region| match mode {
        ApplyMode::Model => true,
        ApplyMode::Auto => region.doubtful || !merge_trusted,
        ApplyMode::Merge => false,
    };

    let tokenizer = engine.tokenizer().clone();
    let expected_tokens: usize = regions
        .iter()
        .filter(|r| runs_model(r))
        .map(|r| tokenizer.encode(&joined(&candidate, r.output.clone()), false).map_or(0, |t| t.len()))
        .sum();
    let started = Instant::now();
    let mut done_tokens = 0;

    let mut out = String::with_capacity(merged.text.len());
    let mut reports = Vec::with_capacity(regions.len());
    let mut cursor = 0;
    for region in &regions {
        for line in original.get(cursor..region.lines.start).unwrap_or_default() {
            push_line(&mut out, line.text, if line.eol.is_empty() { eol } else { line.eol });
        }
        cursor = region.lines.end;
        let candidate_lines = candidate.get(region.output.clone()).unwrap_or_default();
        let mut source = RegionSource::Merge;
        let mut doubtful = region.doubtful;
        let mut model_text = None;
        if runs_model(region) {
            control.check_cancelled()?;
            let candidate_text = joined(&candidate, region.output.clone());
            let written = rewrite_region(
                engine,
                &tokenizer,
                request,
                &original,
                &update,
                merged,
                region,
                &candidate_text,
                &mut control,
                stats,
                (expected_tokens, &mut done_tokens, started),
            )?;
            stats.model_regions += 1;
            match written {
                Written::Text(text) if text == candidate_text => {
                    source = RegionSource::ModelAgrees;
                    // Agreement confirms the merge only where the merge
                    // changed something: a model that merely copies the
                    // original agrees with an unplaced piece too.
                    doubtful &= text == joined(&original, region.lines.clone());
                }
                Written::Text(text) if mode == ApplyMode::Auto => {
                    source = RegionSource::MergeModelDiffers;
                    doubtful = true;
                    tracing::debug!(lines = ?region.lines, model = %text, "auto keeps the merge where the model differs");
                }
                Written::Text(text) => {
                    source = RegionSource::ModelDiffers;
                    doubtful = true;
                    model_text = Some(text);
                }
                Written::TooLarge => {
                    source = RegionSource::MergeTooLarge;
                    doubtful = true;
                }
                Written::CutShort => {
                    source = RegionSource::MergeModelCutShort;
                    doubtful = true;
                }
            }
        }
        match model_text {
            Some(text) => {
                for line in text.lines() {
                    push_line(&mut out, line, eol);
                }
            }
            None => {
                for line in candidate_lines {
                    push_line(&mut out, line.text, if line.eol.is_empty() { eol } else { line.eol });
                }
            }
        }
        reports.push(RegionReport { lines: region.lines.clone(), pieces: region.pieces.clone(), source, doubtful });
    }
    for line in original.get(cursor..).unwrap_or_default() {
        push_line(&mut out, line.text, if line.eol.is_empty() { eol } else { line.eol });
    }
    let final_newline = match original.last() {
        Some(line) => !line.eol.is_empty(),
        None => merged.text.ends_with('\n'),
    };
    if !final_newline && out.ends_with(eol) {
        out.truncate(out.len() - eol.len());
    }
    stats.model_ms = ms(started.elapsed());
    Ok(Rewrite { text: out, regions: reports })
}

fn push_line(out: &mut String, text: &str, eol: &str) {
    out.push_str(text);
    out.push_str(eol);
}

/// The model's new text for `region` (`\n` endings), or why there is none.
#[allow(clippy::too_many_arguments)]
fn rewrite_region(
    engine: &mut Engine,
    tokenizer: &Tokenizer,
    request: &ApplyRequest<'_>,
    original: &[Line<'_>],
    update: &[Line<'_>],
    merged: &MergeResult,
    region: &Region,
    candidate_text: &str,
    control: &mut ApplyControl<'_>,
    stats: &mut ApplyStats,
    (expected_tokens, done_tokens, started): (usize, &mut usize, Instant),
) -> Result<Written> {
    let Some(built) = build_region_prompt(
        tokenizer,
        engine.config().max_position,
        request,
        original,
        update,
        merged,
        region,
        candidate_text,
    )?
    else {
        return Ok(Written::TooLarge);
    };
    let RegionPromptBuilt { tokens, reference, max_output, region_text, edit, .. } = built;
    let prompt_ids = tokens.joined();

    let mut lookup_sources = vec![tokenizer.encode(&region_text, false)?];
    lookup_sources.push(tokenizer.encode(&edit, false)?);
    // Generation stops at the next step once the output holds the closing
    // tag (the flag is set from the token callback), or when the caller
    // cancels (checked in the same callback).
    let stop = Arc::new(AtomicBool::new(false));
    let mut params = GenerateParams::new(max_output, tokenizer.eos_ids().to_vec());
    params.cancel = Some(stop.clone());
    let user_cancel = control.cancel.clone();
    let mut decoded = String::new();
    let mut stream = tokenizer.decode_stream();

    let prefill_started = Instant::now();
    let namespace = control.namespace.unwrap_or(HEADLESS_NAMESPACE);
    // The drafter's n-gram indexes are built on a host thread while the
    // prefill runs (on a GPU the host mostly waits for it); any wait for
    // them past the prefill's end counts in the prefill's time.
    let (prefilled, mut drafter) = std::thread::scope(|scope| {
        let drafter = scope.spawn(|| {
            CompositeDraft::new(TextDraft::new(reference), PromptLookup::new(&lookup_sources, DEFAULT_MIN_NGRAM))
        });
        let prefilled = engine.prefill_in(namespace, &prompt_ids);
        (prefilled, drafter.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let prefilled = prefilled?;
    stats.cached_prompt_tokens += prefilled.cached_prompt_tokens();
    let prefill_time = prefill_started.elapsed();
    if stats.model_regions == 0 {
        stats.ttft_ms = ms(started.elapsed());
    }
    let base = *done_tokens;
    let mut progress_tokens = 0;
    let progress = &mut control.progress;
    let generation = engine.generate_from(&prefilled, &params, &mut drafter, MAX_WIDTH, |token| {
        progress_tokens += 1;
        if let Ok(Some(piece)) = stream.step(token) {
            decoded.push_str(&piece);
        }
        let cancelled = user_cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed));
        if cancelled || decoded.contains(prompt::OUTPUT_END) {
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(report) = progress.as_mut() {
            report(&ApplyProgress {
                output_tokens: base + progress_tokens,
                expected_tokens,
                elapsed: started.elapsed(),
            });
        }
    });
    engine.release_prompt(prefilled);
    let generation = generation?;
    *done_tokens += generation.tokens.len();

    let s = &generation.stats;
    stats.prompt_tokens += prompt_ids.len();
    stats.prefill_ms += ms(prefill_time);
    stats.output_tokens += s.output_tokens;
    stats.steps += s.steps;
    stats.drafted += s.drafted;
    stats.accepted += s.accepted;
    let decode_s = s.decode.as_secs_f64();
    stats.tokens_per_second = if decode_s > 0.0 { stats.output_tokens as f64 / decode_s } else { 0.0 };
    if control.cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)) {
        return Err(Error::Cancelled);
    }
    let text = tokenizer.decode(&generation.tokens)?;
    tracing::debug!(lines = ?region.lines, prompt_tokens = prompt_ids.len(), stop = ?generation.stop, output = %text, "model apply region");
    Ok(match prompt::parse_output(&text) {
        Some(region) => Written::Text(region.to_string()),
        None => Written::CutShort,
    })
}

/// A region's prompt, ready to run.
struct RegionPromptBuilt {
    tokens: prompt::PromptTokens,
    /// The draft: the merge candidate's output, closing tag and end of turn.
    reference: Vec<u32>,
    max_output: usize,
    region_text: String,
    edit: String,
    /// The context is a window of the file, not all of it.
    windowed: bool,
}

/// Builds the prompt of `region` within a context of `context_limit`
/// tokens (the whole file as context when it fits, else a window of whole
/// lines around the region); `None` when even the region, its edit and its
/// output do not fit.
#[allow(clippy::too_many_arguments)]
fn build_region_prompt(
    tokenizer: &Tokenizer,
    context_limit: usize,
    request: &ApplyRequest<'_>,
    original: &[Line<'_>],
    update: &[Line<'_>],
    merged: &MergeResult,
    region: &Region,
    candidate_text: &str,
) -> Result<Option<RegionPromptBuilt>> {
    let edit = region_edit(request.language, update, merged, region);
    let region_text = joined(original, region.lines.clone());
    let mut reference = tokenizer.encode(&prompt::expected_output(candidate_text), false)?;
    let end_of_turn = end_of_turn_id(tokenizer);
    reference.extend(end_of_turn);
    let max_output = reference.len() + reference.len() / OUTPUT_SLACK_DIVISOR + OUTPUT_SLACK;

    let spec = RegionPrompt {
        language: request.language.map(|l| l.name()),
        context: "",
        window: None,
        region_lines: region.lines.clone(),
        region: &region_text,
        edit: &edit,
        instruction: request.instruction,
    };
    let rest_tokens = prompt::render(tokenizer, &spec)?.len();
    let Some(context_budget) = context_limit.checked_sub(rest_tokens + max_output + CONTEXT_RESERVE) else {
        return Ok(None);
    };
    let whole = request.original.replace("\r\n", "\n");
    let total = original.len();
    let mut window: Option<Range<usize>> = None;
    let mut fraction = 1.0f64;
    let tokens = loop {
        let context = match &window {
            Some(lines) => joined(original, lines.clone()),
            None => whole.clone(),
        };
        let attempt =
            RegionPrompt { context: &context, window: window.clone().map(|lines| (lines, total)), ..spec.clone() };
        let tokens = prompt::render(tokenizer, &attempt)?;
        if tokens.len() + max_output + CONTEXT_RESERVE <= context_limit {
            break tokens;
        }
        // Shrink a window of whole lines around the region until it fits.
        if window.as_ref().is_some_and(|w| w.len() <= region.lines.len()) {
            return Ok(None);
        }
        fraction = (fraction * 0.85).min(context_budget as f64 / tokens.stable.len().max(1) as f64);
        let keep = ((total as f64 * fraction) as usize).max(region.lines.len());
        let extra = keep - region.lines.len();
        let end = (region.lines.end + extra / 2).min(total);
        let start = end.saturating_sub(keep).min(region.lines.start);
        window = Some(start..(start + keep).min(total));
    };
    Ok(Some(RegionPromptBuilt { tokens, reference, max_output, region_text, edit, windowed: window.is_some() }))
}

/// One region of a model-mode apply as planned, for checking that prompts
/// fit the context without running the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPlan {
    /// Original lines of the region.
    pub lines: Range<usize>,
    /// Prompt tokens and the output bound; `None` when the region does not
    /// fit the context at all.
    pub prompt_tokens: Option<usize>,
    pub max_output: usize,
    /// The file context was a window of these lines (not the whole file).
    pub window: bool,
}

/// The regions a model-mode apply of `request` would rewrite, with their
/// prompt sizes in a context of `context_limit` tokens.
pub fn plan_model_apply(
    tokenizer: &Tokenizer,
    context_limit: usize,
    request: &ApplyRequest<'_>,
) -> Result<Vec<RegionPlan>> {
    let merged = super::merge(request.original, request.update, request.language);
    let original = split_lines(request.original);
    let candidate = split_lines(&merged.text);
    let update = split_lines(request.update);
    let mut plans = Vec::new();
    for region in plan_regions(request, &merged) {
        let candidate_text = joined(&candidate, region.output.clone());
        let built = build_region_prompt(
            tokenizer,
            context_limit,
            request,
            &original,
            &update,
            &merged,
            &region,
            &candidate_text,
        )?;
        plans.push(match built {
            Some(built) => RegionPlan {
                lines: region.lines.clone(),
                prompt_tokens: Some(built.tokens.len()),
                max_output: built.max_output,
                window: built.windowed,
            },
            None => RegionPlan { lines: region.lines.clone(), prompt_tokens: None, max_output: 0, window: false },
        });
    }
    Ok(plans)
}

/// Puts the stable prefix of `original`'s region prompts into the prefix
/// cache of `namespace`, block by block, stopping early when `cancel` is
/// set. `None` when the file is too long to be the whole context (its
/// prompts then use windows around each region, which no warm-up predicts).
pub fn warm_file(
    engine: &mut Engine,
    original: &str,
    language: Option<Language>,
    namespace: &str,
    cancel: Option<&AtomicBool>,
) -> Result<Option<Warmed>> {
    let tokenizer = engine.tokenizer().clone();
    let tokens = prompt::stable_prefix(&tokenizer, language.map(Language::name), original)?;
    // Room for a region, its edit and output beside the file.
    let room = engine.config().max_position.saturating_sub(CONTEXT_RESERVE + WARM_MIN_ROOM);
    if tokens.len() > room {
        return Ok(None);
    }
    engine.warm(namespace, &tokens, cancel).map(Some)
}

/// Context tokens a region prompt needs beyond the file for a warm-up to
/// be worth it (a small region, its edit and its output).
const WARM_MIN_ROOM: usize = 512;

/// The snippet's pieces of `region`, with the markers between and around
/// them as the snippet wrote them.
fn region_edit(language: Option<Language>, update: &[Line<'_>], merged: &MergeResult, region: &Region) -> String {
    let pieces = &merged.report.pieces;
    let first = pieces.get(region.pieces.start).map_or(0, |p| p.update_lines.start);
    let last = pieces.get(region.pieces.end.saturating_sub(1)).map_or(update.len(), |p| p.update_lines.end);
    // Take the marker lines right around the pieces too.
    let start = first.saturating_sub(1);
    let end = (last + 1).min(update.len());
    let is_marker = |index: usize| update.get(index).is_some_and(|l| is_marker_line(language, l.text));
    let start = if first > 0 && is_marker(start) { start } else { first };
    let end = if end > last && is_marker(last) { end } else { last };
    joined(update, start..end)
}

/// The token that ends the assistant's turn in the chat template (the
/// first of the tokenizer's end ids that `<|im_end|>` encodes to, else its
/// first end id).
fn end_of_turn_id(tokenizer: &Tokenizer) -> Option<u32> {
    let eos = tokenizer.eos_ids();
    match tokenizer.encode("<|im_end|>", false) {
        Ok(ids) if ids.len() == 1 && eos.contains(&ids[0]) => Some(ids[0]),
        _ => eos.first().copied(),
    }
}
