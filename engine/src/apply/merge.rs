//! [`merge`]: split the snippet at markers, anchor each piece in the
//! original after the previous one, splice the pieces in, and report.

use std::collections::HashSet;
use std::ops::Range;

use graft_grammars::{is_marker_line, Language};
use similar::{capture_diff_slices, Algorithm, DiffOp};

use super::text::{dominant_eol, key, split_lines, Keys, Line};
use super::{Anchor, Issue, Matching, MergeReport, MergeResult, Note, PieceReport};

/// A first piece without an opening marker that anchors at least this many
/// lines into the file implies the marker (and likewise at the end);
/// closer, the lines before it are taken as deleted.
const EDGE_SLACK: usize = 8;

/// Whitespace-insensitive matching is used when at least one in this many
/// non-blank snippet lines matches the original only modulo whitespace.
const DRIFT_RATIO: usize = 5;

/// Unshown original lines deleted between a piece's contexts beyond which,
/// when an earlier trailing candidate existed, the placement is flagged.
const LARGE_DELETION: usize = 20;

/// A piece of the snippet: contiguous non-marker lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    /// Its lines in the snippet.
    lines: Range<usize>,
    /// A marker precedes it.
    marker_before: bool,
    /// A marker follows it.
    marker_after: bool,
}

/// Where a piece goes in the original.
struct Placement {
    /// The original lines it replaces.
    region: Range<usize>,
    anchor: Anchor,
    notes: Vec<Note>,
    issues: Vec<Issue>,
}

/// Merges the lazy edit snippet `update` into `original`. `language` selects
/// the marker syntax (`None`: every common comment syntax). Never panics;
/// whatever could not be read cleanly is in the report.
pub fn merge(original: &str, update: &str, language: Option<Language>) -> MergeResult {
    let original_lines = split_lines(original);
    let update_lines = split_lines(update);
    let eol = dominant_eol(&original_lines);
    let markers: Vec<bool> = update_lines.iter().map(|l| is_marker_line(language, l.text)).collect();
    let pieces = split_pieces(&markers);
    let matching = choose_matching(&original_lines, &update_lines, &markers);
    let keys = Keys::new(matching, &original_lines, &update_lines);
    let len = original_lines.len();

    let mut out: Vec<(&str, &str)> = Vec::with_capacity(len + update_lines.len());
    let mut cursor = 0;
    let mut reports = Vec::with_capacity(pieces.len());
    let last_index = pieces.len().saturating_sub(1);
    for (index, piece) in pieces.iter().enumerate() {
        let ids = keys.update.get(piece.lines.clone()).unwrap_or_default();
        let blank = update_lines.get(piece.lines.clone()).unwrap_or_default().iter().all(|l| l.text.trim().is_empty());
        if blank && piece.marker_before && piece.marker_after {
            reports.push(PieceReport {
                update_lines: piece.lines.clone(),
                anchor: Anchor::Unplaced,
                replaced: Some(cursor..cursor),
                output: Some(out.len()..out.len()),
                notes: vec![Note::Blank],
                issues: Vec::new(),
            });
            continue;
        }
        let opens_file = index == 0 && !piece.marker_before;
        let ends_file = index == last_index && !piece.marker_after;
        match place(&keys.original, &keys, ids, cursor, opens_file, ends_file) {
            Some(placement) => {
                let region = placement.region.clone();
                out.extend(
                    original_lines.get(cursor..region.start).unwrap_or_default().iter().map(|l| (l.text, l.eol)),
                );
                let old = keys.original.get(region.clone()).unwrap_or_default();
                let new_lines = update_lines.get(piece.lines.clone()).unwrap_or_default();
                let output_start = out.len();
                splice(&mut out, old, ids, original_lines.get(region.clone()).unwrap_or_default(), new_lines, eol);
                cursor = region.end;
                reports.push(PieceReport {
                    update_lines: piece.lines.clone(),
                    anchor: placement.anchor,
                    replaced: Some(region),
                    output: Some(output_start..out.len()),
                    notes: placement.notes,
                    issues: placement.issues,
                });
            }
            None => reports.push(PieceReport {
                update_lines: piece.lines.clone(),
                anchor: Anchor::Unplaced,
                replaced: None,
                output: None,
                notes: Vec::new(),
                issues: vec![Issue::Unplaceable],
            }),
        }
    }
    out.extend(original_lines.get(cursor..).unwrap_or_default().iter().map(|l| (l.text, l.eol)));

    let final_newline = match original_lines.last() {
        Some(line) => !line.eol.is_empty(),
        None => update.ends_with('\n'),
    };
    let mut text = String::with_capacity(original.len() + update.len());
    let count = out.len();
    for (i, (line, line_eol)) in out.into_iter().enumerate() {
        text.push_str(line);
        if i + 1 < count {
            text.push_str(if line_eol.is_empty() { eol } else { line_eol });
        } else if final_newline {
            text.push_str(eol);
        }
    }
    MergeResult { text, report: MergeReport { language, matching, pieces: reports } }
}

/// Appends the piece (`new_lines`, ids `new`) in place of the original
/// region (`old_lines`, ids `old`): lines the alignment pairs keep the
/// original's text and ending; the others are the snippet's, ended by `eol`.
fn splice<'a>(
    out: &mut Vec<(&'a str, &'a str)>,
    old: &[u32],
    new: &[u32],
    old_lines: &[Line<'a>],
    new_lines: &[Line<'a>],
    eol: &'a str,
) {
    for op in capture_diff_slices(Algorithm::Myers, old, new) {
        match op {
            DiffOp::Equal { old_index, len, .. } => {
                let lines = old_lines.get(old_index..old_index + len).unwrap_or_default();
                out.extend(lines.iter().map(|l| (l.text, l.eol)));
            }
            DiffOp::Insert { new_index, new_len, .. } | DiffOp::Replace { new_index, new_len, .. } => {
                let lines = new_lines.get(new_index..new_index + new_len).unwrap_or_default();
                out.extend(lines.iter().map(|l| (l.text, eol)));
            }
            DiffOp::Delete { .. } => {}
        }
    }
}

/// The pieces between marker lines, with whether a marker precedes and
/// follows each.
fn split_pieces(markers: &[bool]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut marker_before = false;
    for (i, &is_marker) in markers.iter().enumerate() {
        if is_marker {
            if i > start {
                pieces.push(Piece { lines: start..i, marker_before, marker_after: true });
            }
            marker_before = true;
            start = i + 1;
        }
    }
    if markers.len() > start {
        pieces.push(Piece { lines: start..markers.len(), marker_before, marker_after: false });
    }
    pieces
}

/// Exact matching, unless a fair share of the snippet's non-blank lines
/// match the original only modulo whitespace.
fn choose_matching(original: &[Line<'_>], update: &[Line<'_>], markers: &[bool]) -> Matching {
    let exact: HashSet<&str> = original.iter().map(|l| l.text).collect();
    let loose: HashSet<&str> = original.iter().map(|l| key(Matching::IgnoreWhitespace, l.text)).collect();
    let mut total = 0;
    let mut drifted = 0;
    for (line, _) in update.iter().zip(markers).filter(|(l, &m)| !m && !l.text.trim().is_empty()) {
        total += 1;
        if !exact.contains(line.text) && loose.contains(key(Matching::IgnoreWhitespace, line.text)) {
            drifted += 1;
        }
    }
    if drifted > 0 && drifted * DRIFT_RATIO >= total {
        Matching::IgnoreWhitespace
    } else {
        Matching::Exact
    }
}

/// Lines from `i` in `original` equal to the start of `piece`.
fn run_forward(original: &[u32], i: usize, piece: &[u32]) -> usize {
    original.get(i..).unwrap_or_default().iter().zip(piece).take_while(|(a, b)| a == b).count()
}

/// Lines ending at `j` (inclusive) in `original`, not before `floor`, equal
/// to the end of `piece`, at most `max`.
fn run_backward(original: &[u32], j: usize, floor: usize, piece: &[u32], max: usize) -> usize {
    let Some(window) = original.get(floor..=j) else { return 0 };
    window.iter().rev().zip(piece.iter().rev()).take(max).take_while(|(a, b)| a == b).count()
}

/// The best trailing anchor of `piece` at or after `from`: (end of the
/// region, matched lines, earlier candidates existed).
fn trailing_anchor(keys: &Keys, piece: &[u32], from: usize, max: usize) -> Option<(usize, usize, bool)> {
    let last = *piece.last()?;
    let mut best: Option<(usize, usize, bool)> = None;
    let mut seen = false;
    for &j in keys.occurrences(last, from) {
        let k = run_backward(&keys.original, j, from, piece, max);
        if k > best.map_or(0, |b| b.1) {
            best = Some((j + 1, k, seen));
        }
        seen |= k > 0;
    }
    best
}

/// Where `piece` (ids) goes in `original`, searching from line `from`.
fn place(
    original: &[u32],
    keys: &Keys,
    piece: &[u32],
    from: usize,
    opens_file: bool,
    ends_file: bool,
) -> Option<Placement> {
    let len = original.len();
    let n = piece.len();
    let first = *piece.first()?;
    let mut notes = Vec::new();
    let mut issues = Vec::new();

    let mut best_len = 0;
    let mut best: Vec<usize> = Vec::new();
    for &i in keys.occurrences(first, from) {
        let m = run_forward(original, i, piece);
        if m > best_len {
            best_len = m;
            best.clear();
        }
        if m == best_len {
            best.push(i);
        }
    }

    let (mut start, lead, anchor) = match best.first() {
        Some(&s) => {
            let anchor = if best.len() == 1 {
                Anchor::UniqueContext
            } else {
                issues.push(Issue::NonUniqueLead { candidates: best.len() });
                Anchor::FirstOccurrence
            };
            (s, best_len, anchor)
        }
        None if opens_file => (0, 0, Anchor::FileStart),
        None => {
            let (end, matched, _) = trailing_anchor(keys, piece, from, n)?;
            issues.push(Issue::LeadNotFound);
            return Some(Placement { region: end - matched..end, anchor: Anchor::TrailingContext, notes, issues });
        }
    };
    if opens_file && anchor != Anchor::FileStart {
        if start < EDGE_SLACK {
            start = 0;
        } else {
            notes.push(Note::ImpliedOpeningMarker { line: start });
        }
    }

    let lead_end = best.first().copied().unwrap_or(0) + lead;
    let mut end = if lead >= n {
        lead_end
    } else {
        let rest = piece.get(lead..).unwrap_or_default();
        match trailing_anchor(keys, rest, lead_end, rest.len()) {
            Some((end, matched, earlier)) => {
                let unshown = (end - matched).saturating_sub(lead_end);
                if earlier && unshown > LARGE_DELETION + 2 * (rest.len() - matched) {
                    issues.push(Issue::LargeDeletion { deleted: unshown });
                }
                end
            }
            None if ends_file => len,
            None => {
                issues.push(Issue::TrailNotFound);
                lead_end
            }
        }
    };
    if ends_file {
        if len - end.min(len) < EDGE_SLACK {
            end = len;
        } else {
            notes.push(Note::ImpliedClosingMarker { lines_before_end: len - end });
        }
    }
    Some(Placement { region: start..end.max(start), anchor, notes, issues })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "// ... existing code ...";

    fn apply(original: &str, update: &str) -> MergeResult {
        merge(original, update, Some(Language::Rust))
    }

    #[test]
    fn no_markers_is_the_whole_file() {
        let r = apply("fn a() {}\nfn b() {}\n", "fn a() {}\nfn c() {}\n");
        assert_eq!(r.text, "fn a() {}\nfn c() {}\n");
        assert!(r.report.is_clean());
    }

    #[test]
    fn insert_at_start_and_end() {
        let original = "fn a() {}\nfn b() {}\nfn c() {}\n";
        assert_eq!(apply(original, &format!("use x;\nfn a() {{}}\n{M}\n")).text, format!("use x;\n{original}"));
        assert_eq!(
            apply(original, &format!("{M}\nfn c() {{}}\nfn d() {{}}\n")).text,
            format!("{original}fn d() {{}}\n")
        );
    }

    #[test]
    fn deletion_and_several_hunks_keep_crlf() {
        let original = "fn a() {\r\n  one();\r\n  two();\r\n}\r\nfn b() {\r\n  three();\r\n}\r\n";
        let update = format!("fn a() {{\n  two();\n}}\n{M}\nfn b() {{\n  four();\n}}\n");
        let r = apply(original, &update);
        assert_eq!(r.text, "fn a() {\r\n  two();\r\n}\r\nfn b() {\r\n  four();\r\n}\r\n");
        assert!(r.report.is_clean(), "{:?}", r.report);
        assert_eq!(r.report.pieces.len(), 2);
    }

    #[test]
    fn non_unique_anchor_is_reported() {
        let original = "fn a() {\n  x();\n}\nfn b() {\n  x();\n}\n";
        let r = apply(original, &format!("{M}\n  x();\n  y();\n{M}\n"));
        assert!(r
            .report
            .pieces
            .iter()
            .any(|p| matches!(p.issues.first(), Some(Issue::NonUniqueLead { candidates: 2 }))));
    }

    #[test]
    fn unplaceable_piece_leaves_the_original() {
        let original = "fn a() {}\n";
        let r = apply(original, &format!("{M}\nfn zz() {{}}\n{M}\n"));
        assert_eq!(r.text, original);
        assert!(!r.report.is_clean());
    }
}
