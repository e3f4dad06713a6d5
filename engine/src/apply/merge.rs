//! [`merge`]: split the snippet at markers, anchor each piece in the
//! original after the previous one, splice the pieces in, and report.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use graft_grammars::{is_marker_line, items, parse, CommentSyntax, Item, Language};
use similar::{capture_diff_slices, Algorithm, DiffOp};

use super::text::{dominant_eol, key, line_weight, split_lines, Keys, Line};
use super::{Anchor, Issue, Matching, MergeReport, MergeResult, Note, PieceReport};

/// A first piece without an opening marker that anchors at least this many
/// lines into the file implies the marker (and likewise at the end);
/// closer, the lines before it are taken as deleted.
const EDGE_SLACK: usize = 8;

/// A piece that deletes this many consecutive original lines it does not
/// show (its context lines around them) is flagged: the snippet may mean
/// them deleted, or may have elided them without a marker.
const UNSHOWN_DELETION: usize = 5;

/// [`line_weight`] of lines (blank, punctuation) that a diff pairs
/// anywhere: they do not end a run of deleted lines.
const TRIVIAL_WEIGHT: u32 = 2;

/// Informative inserted lines in a row that, found in a row in the
/// original too, make an insertion a likely duplicate.
const DUPLICATE_RUN: usize = 3;

/// A snippet without markers is read as the whole new file when it has
/// at least one line for every this many of the original's.
const WHOLE_FILE_SHARE: usize = 2;

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
    issues: Vec<Issue>,
}

/// Merges the lazy edit snippet `update` into `original`. `language` selects
/// the marker syntax (`None`: every common comment syntax). Never panics;
/// whatever could not be read cleanly is in the report.
///
/// When the snippet's lines indented only at other depths make it unclear
/// whether they drifted or were re-indented by the edit
/// ([`choose_matching`]), the snippet is merged both ways and the reading
/// with fewer issues is kept (the re-indenting one on ties).
pub fn merge(original: &str, update: &str, language: Option<Language>) -> MergeResult {
    let original_lines = split_lines(original);
    let update_lines = split_lines(update);
    let markers: Vec<bool> = update_lines.iter().map(|l| is_marker_line(language, l.text)).collect();
    let original_items = language
        .and_then(|language| {
            let tree = parse(language, original).ok()?;
            items(language, &tree, original).ok()
        })
        .unwrap_or_default();
    let inputs = Inputs {
        original,
        update,
        language,
        original_lines: &original_lines,
        update_lines: &update_lines,
        markers: &markers,
        original_items: &original_items,
    };
    let (strict, lenient) = choose_matching(&original_lines, &update_lines, &markers);
    let result = merge_with(&inputs, strict);
    if lenient == strict {
        return result;
    }
    let other = merge_with(&inputs, lenient);
    let (mut chosen, other) =
        if issue_count(&other.report) < issue_count(&result.report) { (other, result) } else { (result, other) };
    flag_differences(&mut chosen, &other);
    chosen
}

/// Flags ([`Issue::WhitespaceGuess`]) the pieces whose output differs
/// between the reading kept and the other one: which is right is a guess.
fn flag_differences(chosen: &mut MergeResult, other: &MergeResult) {
    let chosen_lines: Vec<&str> = chosen.text.lines().collect();
    let other_lines: Vec<&str> = other.text.lines().collect();
    fn output<'l, 't>(lines: &'l [&'t str], report: &MergeReport, index: usize) -> &'l [&'t str] {
        let range = report.pieces.get(index).and_then(|p| p.output.clone()).unwrap_or_default();
        lines.get(range).unwrap_or_default()
    }
    let mut flags = Vec::new();
    for index in 0..chosen.report.pieces.len() {
        let (mine, theirs) = (output(&chosen_lines, &chosen.report, index), output(&other_lines, &other.report, index));
        if mine != theirs {
            let differing = mine.iter().filter(|line| !theirs.contains(line)).count();
            flags.push((index, differing.max(1)));
        }
    }
    if flags.is_empty() && chosen.text != other.text {
        flags.push((0, 1));
    }
    for (index, lines) in flags {
        if let Some(piece) = chosen.report.pieces.get_mut(index) {
            if !piece.issues.iter().any(|i| matches!(i, Issue::WhitespaceGuess { .. })) {
                piece.issues.push(Issue::WhitespaceGuess { lines });
            }
        }
    }
}

/// The issues of all pieces of a report.
fn issue_count(report: &MergeReport) -> usize {
    report.pieces.iter().map(|p| p.issues.len()).sum()
}

/// What [`merge_with`] reads, split and parsed once.
struct Inputs<'i, 'a> {
    original: &'a str,
    update: &'a str,
    language: Option<Language>,
    original_lines: &'i [Line<'a>],
    update_lines: &'i [Line<'a>],
    markers: &'i [bool],
    original_items: &'i [Item],
}

/// [`merge`] with lines compared under `matching`.
fn merge_with(inputs: &Inputs<'_, '_>, matching: Matching) -> MergeResult {
    let Inputs { original, update, language, original_lines, update_lines, markers, original_items } = *inputs;
    let eol = dominant_eol(original_lines);
    let pieces = split_pieces(markers);
    let keys = Keys::new(matching, original_lines, update_lines);
    let len = original_lines.len();

    let mut out: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(len + update_lines.len());
    let mut cursor = 0;
    // (piece report index, region start, removed definitions) to check
    // against the finished text.
    let mut removed_definitions = Vec::new();
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
        let piece_lines = update_lines.get(piece.lines.clone()).unwrap_or_default();
        let texts = Texts { original: original_lines, piece: piece_lines };
        let mut placement = place(&keys.original, &keys, &texts, ids, cursor, opens_file, ends_file);
        if opens_file && ends_file && ids.len() * WHOLE_FILE_SHARE >= len {
            // No marker at all and about the file's size: the snippet is the
            // whole new file. Where its ends anchor inside the file, it may
            // still be a fragment: those issues stay.
            let issues = placement.map(|p| p.issues).unwrap_or_default();
            placement = Some(Placement { region: 0..len, anchor: Anchor::WholeFile, issues });
        }
        match placement {
            Some(placement) => {
                let mut region = placement.region.clone();
                let mut issues = placement.issues;
                if let Some(end) = redefined_next(original_items, original_lines, piece_lines, region.clone()) {
                    // The piece rewrites the item right after its region.
                    region.end = end;
                    issues.push(Issue::AmbiguousEnd);
                }
                let implied = issues.iter().position(|i| matches!(i, Issue::ImpliedClosingMarker { .. }));
                if let Some(at) = implied.filter(|_| ends_file && region.end < len) {
                    let kept: Vec<&str> = out
                        .iter()
                        .map(|(l, _)| l.as_ref())
                        .chain(original_lines.get(cursor..region.start).unwrap_or_default().iter().map(|l| l.text))
                        .chain(piece_lines.iter().map(|l| l.text))
                        .collect();
                    let syntax = language.map(Language::comment_syntax);
                    if orphaned_tail(original_items, original_lines, region.end, &kept, syntax) {
                        if let Some(issue) = issues.get_mut(at) {
                            *issue = Issue::UnshownDeletion { lines: len - region.end };
                        }
                        region.end = len;
                    }
                }
                out.extend(
                    original_lines
                        .get(cursor..region.start)
                        .unwrap_or_default()
                        .iter()
                        .map(|l| (Cow::Borrowed(l.text), l.eol)),
                );
                let old = keys.original.get(region.clone()).unwrap_or_default();
                let new_lines = update_lines.get(piece.lines.clone()).unwrap_or_default();
                let output_start = out.len();
                let spliced = splice(
                    &mut out,
                    &keys,
                    matching,
                    old,
                    ids,
                    &Texts { original: original_lines.get(region.clone()).unwrap_or_default(), piece: new_lines },
                    eol,
                );
                cursor = region.end;
                if spliced.guessed > 0 {
                    issues.push(Issue::WhitespaceGuess { lines: spliced.guessed });
                }
                if spliced.duplicated {
                    issues.push(Issue::DuplicatesOriginal);
                }
                removed_definitions.push((reports.len(), region.start, spliced.removed));
                if let Some(item) = spliced.defined.iter().find_map(|name| {
                    original_items.iter().find(|i| {
                        i.name == *name && (i.line_range.end <= region.start || i.line_range.start >= region.end)
                    })
                }) {
                    issues.push(Issue::RedefinesItem { line: item.line_range.start });
                }
                if piece.marker_after
                    && !issues.iter().any(|i| matches!(i, Issue::TrailNotFound))
                    && resembles_following(original_lines, region.clone(), &spliced.tail)
                {
                    issues.push(Issue::ResemblesFollowing);
                }
                if spliced.longest_deletion >= UNSHOWN_DELETION {
                    issues.push(Issue::UnshownDeletion { lines: spliced.longest_deletion });
                }
                reports.push(PieceReport {
                    update_lines: piece.lines.clone(),
                    anchor: placement.anchor,
                    replaced: Some(region),
                    output: Some(output_start..out.len()),
                    notes: Vec::new(),
                    issues,
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
    out.extend(original_lines.get(cursor..).unwrap_or_default().iter().map(|l| (Cow::Borrowed(l.text), l.eol)));

    let final_newline = match original_lines.last() {
        Some(line) => !line.eol.is_empty(),
        None => update.ends_with('\n'),
    };
    let mut text = String::with_capacity(original.len() + update.len());
    let count = out.len();
    for (i, (line, line_eol)) in out.into_iter().enumerate() {
        text.push_str(&line);
        if i + 1 < count {
            text.push_str(if line_eol.is_empty() { eol } else { line_eol });
        } else if final_newline {
            text.push_str(eol);
        }
    }
    for (index, start, removed) in removed_definitions {
        if let Some(&(line, _)) = removed.iter().find(|(_, name)| mentions(&text, name)) {
            if let Some(report) = reports.get_mut(index) {
                report.issues.push(Issue::RemovesUsedDefinition { line: start + line });
            }
        }
    }
    MergeResult { text, report: MergeReport { language, matching, pieces: reports } }
}

/// The end of the original item that follows `region` (blank lines
/// between) when the piece defines its name ([`defined_name`]) and the
/// region does not: the piece rewrites that item rather than adds another.
fn redefined_next(items: &[Item], original: &[Line<'_>], piece: &[Line<'_>], region: Range<usize>) -> Option<usize> {
    let next =
        (region.end..original.len()).find(|&l| original.get(l).is_some_and(|line| !line.text.trim().is_empty()))?;
    let item = items.iter().find(|i| i.line_range.start == next)?;
    let defines = |lines: &[Line<'_>]| lines.iter().any(|l| defined_name(l.text) == Some(item.name.as_str()));
    (defines(piece) && !defines(original.get(region)?)).then_some(item.line_range.end)
}

/// Whether the original lines from `end` on are only blank lines, comments
/// and items whose names the original uses before `end` but the result's
/// lines before them (`kept`) no longer do: the edit removed their last
/// uses, and a snippet without a closing marker there removes them too.
/// Comments are read in the file's `syntax` (a block comment's ` * `
/// continuation lines included).
fn orphaned_tail(
    items: &[Item],
    original: &[Line<'_>],
    end: usize,
    kept: &[&str],
    syntax: Option<CommentSyntax>,
) -> bool {
    let tail: Vec<&Item> = items.iter().filter(|i| i.line_range.start >= end).collect();
    let covered = |line: usize| tail.iter().any(|i| i.line_range.contains(&line));
    let comment = |text: &str| {
        let text = text.trim_start();
        syntax.is_some_and(|s| {
            text.starts_with(s.line) || s.block.is_some_and(|(open, _)| text.starts_with(open) || text.starts_with('*'))
        })
    };
    let before = original.get(..end).unwrap_or_default();
    !tail.is_empty()
        && original
            .iter()
            .enumerate()
            .skip(end)
            .all(|(at, line)| line.text.trim().is_empty() || comment(line.text) || covered(at))
        && tail.iter().all(|item| {
            before.iter().any(|l| mentions(l.text, &item.name)) && !kept.iter().any(|l| mentions(l, &item.name))
        })
}

/// Appends the piece (`lines.piece`, ids `new`) in place of the original
/// region (`lines.original`, ids `old`): lines the alignment pairs keep the
/// original's text and ending; the others are the snippet's, ended by `eol`.
/// Under whitespace-insensitive matching the snippet's own lines are
/// re-indented the way its paired lines show the original indents
/// ([`Reindent`]).
fn splice<'a>(
    out: &mut Vec<(Cow<'a, str>, &'a str)>,
    keys: &Keys,
    matching: Matching,
    old: &[u32],
    new: &[u32],
    lines: &Texts<'_, 'a>,
    eol: &'a str,
) -> Spliced<'a> {
    let (old_lines, new_lines) = (lines.original, lines.piece);
    let ops = capture_diff_slices(Algorithm::Myers, old, new);
    let tail = changed_tail_lines(&ops, old_lines);
    let mut reindent = Reindent::default();
    if matching == Matching::IgnoreWhitespace {
        for op in &ops {
            if let DiffOp::Equal { old_index, new_index, len } = *op {
                for i in 0..len {
                    if let (Some(o), Some(n)) = (old_lines.get(old_index + i), new_lines.get(new_index + i)) {
                        // A whitespace-only line has no indent to learn from.
                        if !n.text.trim().is_empty() {
                            reindent.learn(indent(n.text), indent(o.text));
                        }
                    }
                }
            }
        }
    }
    let mut guessed = 0;
    let mut longest_deletion = 0;
    let mut duplicated = false;
    let mut defined = Vec::new();
    let mut removed = Vec::new();
    // Deleted original lines in a row, counting through matched lines of
    // mere punctuation or blanks (which a diff pairs anywhere).
    let mut deletion_run = 0;
    for op in ops {
        let trivial_match = match op {
            DiffOp::Equal { old_index, len, .. } => old_lines
                .get(old_index..old_index + len)
                .unwrap_or_default()
                .iter()
                .all(|l| line_weight(l.text) <= TRIVIAL_WEIGHT),
            DiffOp::Delete { .. } => true,
            _ => false,
        };
        if !trivial_match {
            deletion_run = 0;
        }
        match op {
            DiffOp::Equal { old_index, new_index, len } => {
                for i in 0..len {
                    let (Some(o), Some(n)) = (old_lines.get(old_index + i), new_lines.get(new_index + i)) else {
                        continue;
                    };
                    if o.text != n.text {
                        guessed += 1;
                    }
                    if n.text.trim().is_empty() {
                        // A blank line's whitespace is never an edit.
                        out.push((Cow::Borrowed(o.text), o.eol));
                    } else if reindent.is_reindent(indent(n.text), indent(o.text)) {
                        out.push((Cow::Borrowed(n.text), eol));
                    } else if let Some(lead) = reindent.moved(indent(n.text), indent(o.text)) {
                        out.push((Cow::Owned(format!("{lead}{}", &o.text[indent(o.text).len()..])), eol));
                    } else {
                        out.push((Cow::Borrowed(o.text), o.eol));
                    }
                }
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } if old_len == new_len => {
                // Pairs that differ only in the indent character (tabs for
                // spaces) are the snippet's drift: keep the original. Pairs
                // that differ only in whitespace otherwise are a guess.
                removed.extend(definitions(old_lines, old_index..old_index + old_len));
                for i in 0..new_len {
                    let (Some(o), Some(n)) = (old_lines.get(old_index + i), new_lines.get(new_index + i)) else {
                        continue;
                    };
                    if o.text.trim() == n.text.trim() {
                        guessed += 1;
                        if indent_class_differs(indent(n.text), indent(o.text)) {
                            out.push((Cow::Borrowed(o.text), o.eol));
                            continue;
                        }
                    }
                    defined.extend(defined_name(n.text).or_else(|| assigned_name(n.text)));
                    let text = reindent.apply(n.text);
                    guessed += usize::from(text != n.text);
                    out.push((text, eol));
                }
            }
            DiffOp::Insert { new_index, new_len, .. } | DiffOp::Replace { new_index, new_len, .. } => {
                if let DiffOp::Replace { old_index, old_len, .. } = op {
                    removed.extend(definitions(old_lines, old_index..old_index + old_len));
                }
                let inserted = new.get(new_index..new_index + new_len).unwrap_or_default();
                duplicated |= repeats_original(keys, inserted);
                for line in new_lines.get(new_index..new_index + new_len).unwrap_or_default() {
                    defined.extend(defined_name(line.text).or_else(|| assigned_name(line.text)));
                    let text = reindent.apply(line.text);
                    guessed += usize::from(text != line.text);
                    out.push((text, eol));
                }
            }
            DiffOp::Delete { old_index, old_len, .. } => {
                removed.extend(definitions(old_lines, old_index..old_index + old_len));
                deletion_run += old_len;
                longest_deletion = longest_deletion.max(deletion_run);
            }
        }
    }
    removed.retain(|(_, name)| !defined.contains(name));
    let tail = tail
        .into_iter()
        .filter_map(|(index, loose)| new_lines.get(index).map(|line| (line.text, loose)))
        .filter(|(text, _)| line_weight(text) > TRIVIAL_WEIGHT)
        .collect();
    Spliced { guessed, longest_deletion, duplicated, defined, removed, tail }
}

/// The snippet lines (indices into the piece, and whether they were
/// inserted without replacing any original line) of the last change of a
/// splice's diff `ops` (`old`: the region's lines), when at most
/// [`TAIL_CONTEXT`] unchanged lines follow it, [`TAIL_INFORMATIVE`] of them
/// informative: the piece ends with a change and little context after it.
fn changed_tail_lines(ops: &[DiffOp], old: &[Line<'_>]) -> Vec<(usize, bool)> {
    let mut after = 0;
    let mut informative = 0;
    for op in ops.iter().rev() {
        let (new_index, new_len, inserted) = match *op {
            DiffOp::Equal { old_index, len, .. } => {
                after += len;
                let context = old.get(old_index..old_index + len).unwrap_or_default();
                informative += context.iter().filter(|l| line_weight(l.text) > TRIVIAL_WEIGHT).count();
                if after > TAIL_CONTEXT || informative > TAIL_INFORMATIVE {
                    return Vec::new();
                }
                continue;
            }
            DiffOp::Insert { new_index, new_len, .. } => (new_index, new_len, true),
            DiffOp::Replace { new_index, new_len, .. } => (new_index, new_len, false),
            DiffOp::Delete { .. } => return Vec::new(),
        };
        return (new_index..new_index + new_len).map(|i| (i, inserted)).collect();
    }
    Vec::new()
}

/// Unchanged lines at most that may follow a piece's last change for it to
/// count as the piece's changed end ([`changed_tail_lines`]).
const TAIL_CONTEXT: usize = 3;

/// Informative lines at most among those ([`TAIL_CONTEXT`]).
const TAIL_INFORMATIVE: usize = 1;

/// Original lines after a piece's region searched for lines like its
/// changed end ([`Issue::ResemblesFollowing`]).
const FOLLOWING_WINDOW: usize = 16;

/// Inserted lines of a piece's changed end that, each resembled by one of
/// the first this many non-blank original lines after its region (and
/// resembling every one of them), read as a rewrite of those lines.
const FOLLOWING_RESEMBLING: usize = 3;

/// Whether the changed end of a piece (`tail`: its informative lines,
/// and whether each was inserted without replacing) reads as a rewrite of
/// original lines right after its `region`: one of its lines stands, once
/// from the region's start on, within [`FOLLOWING_WINDOW`] lines after the
/// region, or the first [`FOLLOWING_RESEMBLING`] non-blank lines after the
/// region each resemble ([`resembles`]) an inserted one. The piece's context
/// after the change may then have been found too early, and the change may
/// replace those lines rather than stand before them.
fn resembles_following(original: &[Line<'_>], region: Range<usize>, tail: &[(&str, bool)]) -> bool {
    let rest = original.get(region.start..).unwrap_or_default();
    let unique = |text: &str| rest.iter().filter(|l| l.text.trim() == text.trim()).count() == 1;
    let following = original.get(region.end..).unwrap_or_default();
    let exact = tail.iter().any(|&(new, _)| {
        following.iter().take(FOLLOWING_WINDOW).any(|old| old.text.trim() == new.trim()) && unique(new)
    });
    let inserted: Vec<&str> = tail.iter().filter(|&&(_, inserted)| inserted).map(|&(new, _)| new).collect();
    let mut next = following.iter().filter(|l| !l.text.trim().is_empty()).take(FOLLOWING_RESEMBLING);
    let loose = inserted.len() >= FOLLOWING_RESEMBLING
        && following.iter().filter(|l| !l.text.trim().is_empty()).count() >= FOLLOWING_RESEMBLING
        && next.all(|old| inserted.iter().any(|new| resembles(old.text, new)));
    exact || loose
}

/// The names the lines `range` of `lines` define ([`defined_name`], or a
/// top-level `NAME = ...`), with their indices.
fn definitions<'a>(lines: &[Line<'a>], range: Range<usize>) -> Vec<(usize, &'a str)> {
    let mut found = Vec::new();
    for index in range {
        let Some(line) = lines.get(index) else { continue };
        if let Some(name) = defined_name(line.text).or_else(|| assigned_name(line.text)) {
            found.push((index, name));
        }
    }
    found
}

/// `NAME` of an unindented `NAME = ...` (optionally after `const`, `let`,
/// `var`, `export`, `pub`, `static`).
fn assigned_name(line: &str) -> Option<&str> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let mut rest = line;
    for prefix in ["export ", "pub ", "static ", "const ", "let ", "var "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    let (name, after) = rest.split_at(end);
    let after = after.trim_start();
    let assigns = (after.starts_with('=') && !after.starts_with("==")) || after.starts_with(":=");
    (assigns && !name.is_empty() && name.chars().any(|c| c.is_alphabetic())).then_some(name)
}

/// Whether `text` contains `name` as a whole word.
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(word) && !text[at + name.len()..].chars().next().is_some_and(word)
    })
}

/// The name a line defines, when it opens a definition (`fn x`, `def x`,
/// `func (r T) x`, `function x`, `class X`, `struct X`...).
fn defined_name(line: &str) -> Option<&str> {
    const KEYWORDS: [&str; 11] =
        ["fn", "def", "func", "function", "class", "struct", "enum", "trait", "interface", "type", "impl"];
    let mut words = line.trim_start().split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '(' || c == ')'));
    while let Some(word) = words.next() {
        if KEYWORDS.contains(&word) {
            let mut name = words.next()?;
            if name.starts_with('(') {
                // A Go receiver: the name follows it.
                name = words.find(|w| !w.is_empty() && !w.contains(')') && !w.contains('('))?;
            }
            let name = name.split('(').next()?;
            return (!name.is_empty()).then_some(name);
        }
        if !matches!(word, "pub" | "export" | "async" | "default" | "abstract" | "static" | "const" | "unsafe" | "")
            && !word.starts_with("pub(")
        {
            return None;
        }
    }
    None
}

/// Whether `inserted` (snippet line ids the alignment did not pair) holds
/// [`DUPLICATE_RUN`] informative lines in a row that the original already
/// has in a row: the snippet may show existing code as context that was
/// anchored elsewhere, and inserting it duplicates it.
fn repeats_original(keys: &Keys, inserted: &[u32]) -> bool {
    inserted.windows(DUPLICATE_RUN).any(|run| {
        run.iter().all(|&id| keys.weight(id) > TRIVIAL_WEIGHT)
            && keys.occurrences(run[0], 0).iter().any(|&at| keys.original.get(at..at + run.len()) == Some(run))
    })
}

/// What [`splice`] had to decide.
struct Spliced<'a> {
    /// Lines whose whitespace was read as drift or as an edit.
    guessed: usize,
    /// The longest run of original lines deleted without a replacement.
    longest_deletion: usize,
    /// Some inserted lines repeat the original elsewhere ([`repeats_original`]).
    duplicated: bool,
    /// Names that inserted lines define ([`defined_name`]).
    defined: Vec<&'a str>,
    /// Definitions (line in the region, name) it removed without defining
    /// the name again.
    removed: Vec<(usize, &'a str)>,
    /// Informative lines of the piece's changed end ([`changed_tail_lines`]),
    /// with whether they were inserted without replacing.
    tail: Vec<(&'a str, bool)>,
}

/// Whether two non-empty indents use different characters (tabs against
/// spaces).
fn indent_class_differs(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a.contains('\t') != b.contains('\t') || a.contains(' ') != b.contains(' '))
}

/// The leading whitespace of a line.
fn indent(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// How the snippet's indents map to the original's, learned from the
/// lines they share: indent pairs, and a tab width when the snippet
/// indents with tabs where the original uses spaces (or the reverse). Each
/// is the one most shared lines show, so that the few lines the edit
/// re-indented do not set it.
#[derive(Default)]
struct Reindent<'a> {
    /// (snippet indent, original indent, shared lines showing it), in the
    /// order first seen.
    pairs: Vec<(&'a str, &'a str, usize)>,
    /// Votes (spaces per tab, lines) for the snippet's tabs standing for
    /// the original's spaces.
    tab_as_spaces: Vec<(usize, usize)>,
    /// Votes (spaces per tab, lines) for the snippet's spaces standing for
    /// the original's tabs.
    spaces_as_tab: Vec<(usize, usize)>,
    /// Depth differences (original minus snippet, in indent characters) of
    /// the shared lines indented with one and the same character.
    shifts: Vec<isize>,
}

/// Adds a vote for `width` to `votes`.
fn vote(votes: &mut Vec<(usize, usize)>, width: usize) {
    match votes.iter_mut().find(|(w, _)| *w == width) {
        Some((_, count)) => *count += 1,
        None => votes.push((width, 1)),
    }
}

/// The width with the most votes (the narrowest on ties); when `clear`,
/// only with at least [`WIDTH_MAJORITY`] times the votes of all the others
/// together.
fn top_width(votes: &[(usize, usize)], clear: bool) -> Option<usize> {
    let total: usize = votes.iter().map(|&(_, count)| count).sum();
    let &(width, count) = votes.iter().max_by_key(|&&(w, count)| (count, usize::MAX - w))?;
    (!clear || count >= WIDTH_MAJORITY * (total - count)).then_some(width)
}

/// How many times the votes of all other tab widths together the chosen
/// tab width needs.
const WIDTH_MAJORITY: usize = 2;

impl<'a> Reindent<'a> {
    fn learn(&mut self, snippet: &'a str, original: &'a str) {
        let tabs = |s: &str| s.chars().all(|c| c == '\t');
        let spaces = |s: &str| s.chars().all(|c| c == ' ');
        if (tabs(snippet) && tabs(original)) || (spaces(snippet) && spaces(original)) {
            self.shifts.push(original.len() as isize - snippet.len() as isize);
        }
        if snippet == original || snippet.is_empty() {
            return;
        }
        // Only a change of indent character is drift; a change of depth in
        // the same character may be the edit itself.
        if tabs(snippet) != tabs(original) || spaces(snippet) != spaces(original) {
            match self.pairs.iter_mut().find(|(s, o, _)| *s == snippet && *o == original) {
                Some((_, _, count)) => *count += 1,
                None => self.pairs.push((snippet, original, 1)),
            }
        }
        if tabs(snippet) && spaces(original) && original.len().is_multiple_of(snippet.len()) {
            vote(&mut self.tab_as_spaces, original.len() / snippet.len());
        }
        if spaces(snippet) && tabs(original) && !original.is_empty() && snippet.len().is_multiple_of(original.len()) {
            vote(&mut self.spaces_as_tab, snippet.len() / original.len());
        }
    }

    /// The original indent the shared lines most often show for the
    /// snippet indent `lead` (the first seen on ties).
    fn mapped(&self, lead: &str) -> Option<&'a str> {
        let mut best: Option<(&'a str, usize)> = None;
        for &(snippet, original, count) in &self.pairs {
            if snippet == lead && best.is_none_or(|(_, top)| count > top) {
                best = Some((original, count));
            }
        }
        best.map(|(original, _)| original)
    }

    /// The snippet indent `lead` in the original's indent character, by the
    /// tab width most shared lines show, when `lead` is all tabs or all
    /// spaces (and, when `clear`, the width clearly dominates: [`top_width`]).
    fn converted(&self, lead: &str, clear: bool) -> Option<String> {
        if lead.is_empty() {
            return None;
        }
        if lead.chars().all(|c| c == '\t') {
            return top_width(&self.tab_as_spaces, clear).map(|width| " ".repeat(lead.len() * width));
        }
        let width = top_width(&self.spaces_as_tab, clear).filter(|&w| lead.chars().all(|c| c == ' ') && w > 0)?;
        lead.len().is_multiple_of(width).then(|| "\t".repeat(lead.len() / width))
    }

    /// The indent a shared line whose indent character drifted (`snippet`
    /// against `original`, each of one character) takes when the snippet's
    /// indent, converted at a clearly learned tab width ([`Self::converted`]),
    /// is another depth: the edit re-indented it.
    fn moved(&self, snippet: &str, original: &str) -> Option<String> {
        let pure = |s: &str| s.chars().all(|c| c == '\t') || s.chars().all(|c| c == ' ');
        if !indent_class_differs(snippet, original) || !pure(snippet) || !pure(original) {
            return None;
        }
        self.converted(snippet, true).filter(|lead| lead != original)
    }

    /// The depth change every shared line shows, when they all show the
    /// same non-zero one (the snippet is shifted as a whole).
    fn uniform_shift(&self) -> Option<isize> {
        let first = *self.shifts.first()?;
        (first != 0 && self.shifts.iter().all(|&s| s == first)).then_some(first)
    }

    /// Whether a shared line whose indent went from `original` to `snippet`
    /// was re-indented by the edit: a change of depth in the same indent
    /// character, while the snippet as a whole is not shifted.
    fn is_reindent(&self, snippet: &str, original: &str) -> bool {
        let same_class = |a: &str, b: &str| {
            (a.chars().all(|c| c == ' ') && b.chars().all(|c| c == ' '))
                || (a.chars().all(|c| c == '\t') && b.chars().all(|c| c == '\t'))
        };
        snippet != original && same_class(snippet, original) && self.uniform_shift().is_none()
    }

    fn apply(&self, line: &'a str) -> Cow<'a, str> {
        let lead = indent(line);
        let body = &line[lead.len()..];
        if let Some(shift) = self.uniform_shift() {
            let unit = if lead.starts_with('\t') { "\t" } else { " " };
            if lead.chars().all(|c| c.to_string() == unit) && !body.is_empty() {
                let depth = (lead.len() as isize + shift).max(0) as usize;
                return Cow::Owned(format!("{}{body}", unit.repeat(depth)));
            }
        }
        // A clear tab width first: an indent pair at odds with it comes
        // from a line the edit re-indented.
        if let Some(converted) = self.converted(lead, true) {
            return Cow::Owned(format!("{converted}{body}"));
        }
        if let Some(mapped) = self.mapped(lead) {
            return Cow::Owned(format!("{mapped}{body}"));
        }
        if let Some(converted) = self.converted(lead, false) {
            return Cow::Owned(format!("{converted}{body}"));
        }
        Cow::Borrowed(line)
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
/// match the original only modulo whitespace as drift does: trailing
/// whitespace, the indent character, or one depth shift of the whole
/// snippet. Lines only indented deeper or shallower in the same character,
/// while other lines show other shifts, were likely re-indented by the
/// edit: the first matching does not count them as drift, the second
/// (lenient) one does.
fn choose_matching(original: &[Line<'_>], update: &[Line<'_>], markers: &[bool]) -> (Matching, Matching) {
    let exact: HashSet<&str> = original.iter().map(|l| l.text).collect();
    let mut loose: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in original {
        loose.entry(key(Matching::IgnoreWhitespace, line.text)).or_default().push(line.text);
    }
    let mut total = 0;
    let mut drifted = 0;
    let mut shifted = 0;
    // Depth shifts of the informative lines found (exact ones: zero).
    let mut shifts = HashSet::new();
    for (line, _) in update.iter().zip(markers).filter(|(l, &m)| !m && !l.text.trim().is_empty()) {
        total += 1;
        let informative = line_weight(line.text) > TRIVIAL_WEIGHT;
        if exact.contains(line.text) {
            if informative {
                shifts.insert(0);
            }
            continue;
        }
        let Some(found) = loose.get(key(Matching::IgnoreWhitespace, line.text)) else { continue };
        // Drift when any original line like it differs otherwise than in
        // depth (a tab for spaces, trailing whitespace).
        let shifts_only: Option<Vec<isize>> = found.iter().map(|o| depth_shift(line.text, o)).collect();
        match shifts_only.and_then(|s| s.first().copied()) {
            Some(shift) => {
                shifted += 1;
                if informative {
                    shifts.insert(shift);
                }
            }
            None => drifted += 1,
        }
    }
    let verdict = |drifted: usize| {
        if drifted > 0 && drifted * DRIFT_RATIO >= total {
            Matching::IgnoreWhitespace
        } else {
            Matching::Exact
        }
    };
    let uniform = shifts.len() == 1 && !shifts.contains(&0);
    (verdict(if uniform { drifted + shifted } else { drifted }), verdict(drifted + shifted))
}

/// The depth difference (original minus snippet, in indent characters)
/// between two lines equal but for the depth of an indent of one and the
/// same character; `None` when they differ otherwise in whitespace.
fn depth_shift(snippet: &str, original: &str) -> Option<isize> {
    let (a, b) = (indent(snippet), indent(original));
    let one_character =
        (a.chars().chain(b.chars()).all(|c| c == ' ')) || (a.chars().chain(b.chars()).all(|c| c == '\t'));
    (one_character && snippet[a.len()..] == original[b.len()..]).then(|| b.len() as isize - a.len() as isize)
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

/// The chosen end of a piece's region, with its alignment score.
struct EndChoice {
    /// End (exclusive) of the original region.
    end: usize,
    /// Weighted matched lines minus [`DELETION_COST`] per original line
    /// the piece deletes.
    score: i64,
    /// The best score of another end, if any was scored.
    runner_up: Option<i64>,
    /// Original lines the piece deletes with this end.
    deleted: usize,
    /// Some other end came before this one.
    earlier: bool,
}

/// Cost of deleting an original line the piece does not show, in the
/// units of [`super::text::line_weight`].
const DELETION_COST: i64 = 2;

/// Scores of two ends this close make the end ambiguous.
const AMBIGUOUS_END_MARGIN: i64 = 0;

/// Candidate ends scored exactly at most (the nearest ones, then those
/// with the longest trailing runs).
const MAX_SCORED_ENDS: usize = 12;

/// Where the rest of a piece (`rest`, after its leading context) ends in
/// the original, its region starting at `from`: among the original lines
/// equal to the piece's last line, the end whose region aligns best with
/// `rest` (most weighted matched lines, fewest unshown lines deleted),
/// nearest on ties.
fn choose_end(keys: &Keys, rest: &[u32], from: usize) -> Option<EndChoice> {
    let last = *rest.last()?;
    let occurrences = keys.occurrences(last, from);
    if occurrences.is_empty() {
        return None;
    }
    let total_weight: i64 = rest.iter().map(|&id| i64::from(keys.weight(id))).sum();
    // The nearest ends, and the ones with the longest trailing runs.
    let mut by_run: Vec<(usize, usize)> =
        occurrences.iter().map(|&j| (run_backward(&keys.original, j, from, rest, rest.len()), j)).collect();
    by_run.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut candidates: Vec<usize> = occurrences.iter().copied().take(MAX_SCORED_ENDS / 2).collect();
    candidates.extend(by_run.iter().map(|&(_, j)| j).take(MAX_SCORED_ENDS / 2));
    candidates.sort_unstable();
    candidates.dedup();

    let mut best: Option<EndChoice> = None;
    let mut runner_up: Option<i64> = None;
    for (index, &j) in candidates.iter().enumerate() {
        let region = keys.original.get(from..=j).unwrap_or_default();
        let unmatched_floor = region.len().saturating_sub(rest.len()) as i64;
        let bound = total_weight - DELETION_COST * unmatched_floor;
        if best.as_ref().is_some_and(|b| bound < b.score) && runner_up.is_some_and(|r| bound < r) {
            continue;
        }
        let (matched_weight, matched_lines) = alignment(keys, region, rest);
        let deleted = region.len() - matched_lines;
        let score = matched_weight - DELETION_COST * deleted as i64;
        match &mut best {
            Some(b) if score <= b.score => runner_up = Some(runner_up.map_or(score, |r| r.max(score))),
            _ => {
                if let Some(b) = &best {
                    runner_up = Some(runner_up.map_or(b.score, |r| r.max(b.score)));
                }
                best = Some(EndChoice { end: j + 1, score, runner_up: None, deleted, earlier: index > 0 });
            }
        }
    }
    let best = best?;
    // The piece's last lines stand next to a marker: they are context. An
    // earlier end where more of them run unbroken, with an informative
    // line among them, is the place they were taken from (flagged: the
    // alignment preferred the other end).
    let run_at = |j: usize| run_backward(&keys.original, j, from, rest, rest.len());
    let best_run = run_at(best.end - 1);
    let earlier = candidates
        .iter()
        .filter(|&&j| j + 1 < best.end)
        .map(|&j| (run_at(j), j))
        .filter(|&(run, j)| {
            run > best_run
                && keys
                    .original
                    .get(j + 1 - run..=j)
                    .unwrap_or_default()
                    .iter()
                    .any(|&id| keys.weight(id) > TRIVIAL_WEIGHT)
        })
        .max_by_key(|&(run, j)| (run, usize::MAX - j));
    if let Some((_, j)) = earlier {
        let region = keys.original.get(from..=j).unwrap_or_default();
        let (matched_weight, matched_lines) = alignment(keys, region, rest);
        let deleted = region.len() - matched_lines;
        let score = matched_weight - DELETION_COST * deleted as i64;
        let earlier = candidates.first().is_some_and(|&first| first < j);
        return Some(EndChoice { end: j + 1, score, runner_up: Some(best.score), deleted, earlier });
    }
    Some(EndChoice { runner_up, ..best })
}

/// Weighted and plain counts of the lines a diff pairs between `region`
/// and `piece`.
fn alignment(keys: &Keys, region: &[u32], piece: &[u32]) -> (i64, usize) {
    let mut weight = 0;
    let mut lines = 0;
    for op in capture_diff_slices(Algorithm::Myers, region, piece) {
        if let DiffOp::Equal { old_index, len, .. } = op {
            lines += len;
            weight += region
                .get(old_index..old_index + len)
                .unwrap_or_default()
                .iter()
                .map(|&id| i64::from(keys.weight(id)))
                .sum::<i64>();
        }
    }
    (weight, lines)
}

/// The texts behind the ids [`place`] and [`splice`] work on.
struct Texts<'t, 'a> {
    original: &'t [Line<'a>],
    piece: &'t [Line<'a>],
}

/// Whether a snippet line reads as an edited version of an original line:
/// both informative, and most of their characters shared.
fn resembles(old: &str, new: &str) -> bool {
    let (old, new) = (old.trim(), new.trim());
    line_weight(old) > TRIVIAL_WEIGHT
        && line_weight(new) > TRIVIAL_WEIGHT
        && similar::TextDiff::from_chars(old, new).ratio() >= RESEMBLANCE
}

/// [`resembles`]' threshold on the share of characters in common.
const RESEMBLANCE: f32 = 0.6;

/// How many original lines from `at` the changed last lines of a piece
/// (`tail`) replace: the original lines, in order, each equal to or
/// resembling ([`resembles`]) a later tail line, or split into later tail
/// lines ([`splits`]), up to the last informative one. Unless every tail
/// line pairs with the original line at its place, the reading is a guess:
/// [`Issue::TrailNotFound`].
fn changed_tail(original: &[Line<'_>], tail: &[Line<'_>], at: usize, issues: &mut Vec<Issue>) -> usize {
    let mut next = 0;
    let mut paired = 0;
    let mut informative = (0, 0);
    for old in original.get(at..).unwrap_or_default() {
        let rest = tail.get(next..).unwrap_or_default();
        let found = rest
            .iter()
            .position(|new| (old.text.trim() == new.text.trim()) || resembles(old.text, new.text))
            .map(|offset| offset + 1)
            .or_else(|| {
                // Or a block of tail lines it was split into.
                (0..rest.len()).find_map(|j| {
                    let block = rest.get(j..)?;
                    (2..=block.len()).find(|&k| block.get(..k).is_some_and(|b| splits(old.text, b))).map(|k| j + k)
                })
            });
        let Some(taken) = found else { break };
        next += taken;
        paired += 1;
        if line_weight(old.text) > TRIVIAL_WEIGHT {
            informative = (paired, next);
        }
    }
    let (paired, consumed) = informative;
    if paired != consumed || consumed < tail.len() {
        issues.push(Issue::TrailNotFound);
    }
    paired
}

/// Places a piece whose first `shift` lines did not anchor it: the rest is
/// placed, then as many of the first lines as equal or resemble the original
/// lines above it replace them ([`Anchor::ResemblingLead`];
/// [`Issue::LeadNotFound`] when some do not).
fn resembling_lead(
    original: &[u32],
    keys: &Keys,
    texts: &Texts<'_, '_>,
    piece: &[u32],
    from: usize,
    ends_file: bool,
    shift: usize,
) -> Option<Placement> {
    let n = piece.len();
    let rest = piece.get(shift..).unwrap_or_default();
    let rest_texts = Texts { original: texts.original, piece: texts.piece.get(shift..).unwrap_or_default() };
    let inner = place(original, keys, &rest_texts, rest, from, false, ends_file)?;
    if inner.anchor == Anchor::TrailingContext {
        let (end, matched, _) = trailing_anchor(keys, piece, from, n)?;
        return Some(Placement {
            region: end - matched..end,
            anchor: Anchor::TrailingContext,
            issues: vec![Issue::LeadNotFound],
        });
    }
    let mut paired = 0;
    while paired < shift {
        let line = inner.region.start.checked_sub(paired + 1).filter(|&l| l >= from);
        let pairs = line.zip(texts.piece.get(shift - 1 - paired)).is_some_and(|(l, new)| {
            texts.original.get(l).is_some_and(|old| old.text.trim() == new.text.trim() || resembles(old.text, new.text))
        });
        if !pairs {
            break;
        }
        paired += 1;
    }
    let mut issues = inner.issues;
    if paired < shift {
        issues.push(Issue::LeadNotFound);
    }
    let start = inner.region.start - paired;
    // Realign the whole piece over its region (the end may move).
    let end = match choose_end(keys, piece, start) {
        Some(choice) if choice.end >= inner.region.end => choice.end,
        _ => inner.region.end,
    };
    Some(Placement { region: start..end, anchor: Anchor::ResemblingLead, issues })
}

/// Lead candidates of a piece scored at most, first ones first.
const MAX_SCORED_LEADS: usize = 8;

/// Original lines (`region`, texts from `old_texts`) that aligning `piece`
/// (texts `new_texts`) over them deletes without replacing them by a line
/// that resembles them.
fn unshown_deletions(region: &[u32], piece: &[u32], old_texts: &[Line<'_>], new_texts: &[Line<'_>]) -> usize {
    let mut deleted = 0;
    for op in capture_diff_slices(Algorithm::Myers, region, piece) {
        match op {
            DiffOp::Delete { old_len, .. } => deleted += old_len,
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                let new = new_texts.get(new_index..new_index + new_len).unwrap_or_default();
                deleted += old_texts
                    .get(old_index..old_index + old_len)
                    .unwrap_or_default()
                    .iter()
                    .filter(|old| !new.iter().any(|new| resembles(old.text, new.text)))
                    .count();
            }
            DiffOp::Equal { .. } | DiffOp::Insert { .. } => {}
        }
    }
    deleted
}

/// Places a piece of one line found nowhere in the original (from `from`):
/// it replaces the original line it resembles ([`resembles`]), the most
/// similar one when several do ([`Issue::NonUniqueLead`]). Unless the edit
/// only adds to that line ([`keeps_all`]), that is a guess
/// ([`Issue::LeadNotFound`]).
fn lone_changed_line(texts: &Texts<'_, '_>, from: usize) -> Option<Placement> {
    let new = texts.piece.first()?.text.trim();
    let mut best: Option<(f32, usize)> = None;
    let mut candidates = 0;
    for (at, old) in texts.original.iter().enumerate().skip(from) {
        let old = old.text.trim();
        // Lines too different in length cannot share enough characters.
        let (a, b) = (old.chars().count(), new.chars().count());
        let (short, long) = (a.min(b) as f32, a.max(b) as f32);
        if 2.0 * short < RESEMBLANCE * (short + long) || !resembles(old, new) {
            continue;
        }
        candidates += 1;
        let ratio = similar::TextDiff::from_chars(old, new).ratio();
        if best.is_none_or(|(top, _)| ratio > top) {
            best = Some((ratio, at));
        }
    }
    let (_, at) = best?;
    let issues = if candidates > 1 {
        vec![Issue::NonUniqueLead { candidates }]
    } else if !texts.original.get(at).is_some_and(|old| keeps_all(old.text.trim(), new)) {
        // Without context, a line that drops or changes characters may as
        // well be a new line like an existing one.
        vec![Issue::LeadNotFound]
    } else {
        Vec::new()
    };
    Some(Placement { region: at..at + 1, anchor: Anchor::ResemblingLead, issues })
}

/// Whether `new` holds every character of `old`, in order: an edit that
/// only adds.
fn keeps_all(old: &str, new: &str) -> bool {
    let mut rest = new.chars();
    old.chars().all(|c| rest.any(|n| n == c))
}

/// Whether the lines `block` read as the line `old` split over several:
/// the block's first line opens it, its last line closes it, and every
/// word between them stands in the lines between (`<dd>{email}</dd>` into
/// `<dd>`, `<a href={email}>{email}</a>`, `</dd>`).
fn splits(old: &str, block: &[Line<'_>]) -> bool {
    let (Some(open), Some(close)) = (block.first(), block.last()) else { return false };
    let (old, open, close) = (old.trim(), open.text.trim(), close.text.trim());
    if block.len() < 2 || open.is_empty() || close.is_empty() || open.len() + close.len() >= old.len() {
        return false;
    }
    let Some(middle) = old.strip_prefix(open).and_then(|m| m.strip_suffix(close)) else { return false };
    let inner: Vec<&str> = block.get(1..block.len() - 1).unwrap_or_default().iter().map(|l| l.text).collect();
    let mut words = middle.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).peekable();
    words.peek().is_some() && words.all(|word| inner.iter().any(|line| mentions(line, word)))
}

/// Where `piece` (ids) goes in `original`, searching from line `from`.
fn place(
    original: &[u32],
    keys: &Keys,
    texts: &Texts<'_, '_>,
    piece: &[u32],
    from: usize,
    opens_file: bool,
    ends_file: bool,
) -> Option<Placement> {
    let len = original.len();
    let n = piece.len();
    let first = *piece.first()?;
    let mut issues = Vec::new();

    let mut best_len = 0;
    let mut best: Vec<usize> = Vec::new();
    // Informative lines (not blank, not mere punctuation) of each
    // candidate's run: a lead that is unique only by such trivial lines is
    // as ambiguous as a repeated one.
    let informative = |i: usize, m: usize| {
        original.get(i..i + m).unwrap_or_default().iter().filter(|&&id| keys.weight(id) > TRIVIAL_WEIGHT).count()
    };
    let mut runs = Vec::new();
    for &i in keys.occurrences(first, from) {
        let m = run_forward(original, i, piece);
        runs.push((i, m));
        if m > best_len {
            best_len = m;
            best.clear();
        }
        if m == best_len {
            best.push(i);
        }
    }
    let rivals = best.first().map_or(0, |&b| {
        let needed = informative(b, best_len);
        runs.iter().filter(|&&(i, m)| i != b && needed > 0 && informative(i, m) >= needed).count()
    });

    if best.len() > 1 && best.first().is_some_and(|&b| informative(b, best_len) == 0) {
        // A lead of blank or punctuation lines only, found at several
        // places, says nothing: anchor at the first informative line found
        // instead, the lines before it replacing those they equal or
        // resemble.
        let shift = (best_len.max(1)..n).find(|&k| {
            piece.get(k).is_some_and(|&id| keys.weight(id) > TRIVIAL_WEIGHT && !keys.occurrences(id, from).is_empty())
        });
        // Taken only when every line before it pairs.
        let placement = shift.and_then(|k| resembling_lead(original, keys, texts, piece, from, ends_file, k));
        if let Some(placement) = placement.filter(|p| !p.issues.contains(&Issue::LeadNotFound)) {
            return Some(placement);
        }
    }
    // Among leads found at several places, the one whose whole piece
    // aligns with the original after it deleting the fewest original lines
    // it does not show ([`unshown_deletions`]), then scoring best (first on
    // ties).
    let mut chosen = best.first().map(|&b| (b, best_len));
    if let Some(&b) = best.first().filter(|_| (best.len() > 1 || rivals > 0) && best_len < n) {
        let needed = informative(b, best_len);
        let mut top: Option<((usize, i64), usize, usize)> = None;
        let candidates = runs.iter().filter(|&&(i, m)| m == best_len || (needed > 0 && informative(i, m) >= needed));
        for &(i, m) in candidates.take(MAX_SCORED_LEADS) {
            let Some(choice) = choose_end(keys, piece, i) else { continue };
            let region = original.get(i..choice.end).unwrap_or_default();
            let rank = (
                unshown_deletions(region, piece, texts.original.get(i..).unwrap_or_default(), texts.piece),
                -choice.score,
            );
            if top.is_none_or(|(best_rank, _, _)| rank < best_rank) {
                top = Some((rank, i, m));
            }
        }
        chosen = top.map(|(_, i, m)| (i, m)).or(chosen);
    }
    // A piece that ends the file, leads with blank or punctuation lines only
    // and has no other informative line in the original goes at the end of
    // the file where its lead runs to it.
    let all_new = || piece.iter().all(|&id| keys.weight(id) <= TRIVIAL_WEIGHT || keys.occurrences(id, from).is_empty());
    if ends_file && chosen.is_some_and(|(i, m)| informative(i, m) == 0 && i + m < len) && all_new() {
        let at_end = runs.iter().filter(|&&(i, m)| m > 0 && i + m == len).max_by_key(|&&(i, m)| (m, usize::MAX - i));
        chosen = at_end.copied().or(chosen);
    }
    let (mut start, lead, anchor) = match chosen {
        Some((s, best_len)) => {
            let anchor = if best.len() == 1 && rivals == 0 {
                Anchor::UniqueContext
            } else if best.len() == 1 {
                issues.push(Issue::NonUniqueLead { candidates: rivals + 1 });
                Anchor::UniqueContext
            } else {
                issues.push(Issue::NonUniqueLead { candidates: best.len() });
                Anchor::FirstOccurrence
            };
            (s, best_len, anchor)
        }
        None if opens_file => (0, 0, Anchor::FileStart),
        None if n > 1 => {
            // The first lines are new or changed: anchor the rest.
            let shift = (1..n).find(|&k| piece.get(k).is_some_and(|&id| !keys.occurrences(id, from).is_empty()))?;
            return resembling_lead(original, keys, texts, piece, from, ends_file, shift);
        }
        None if n == 1 && !ends_file && keys.occurrences(first, from).is_empty() => {
            return lone_changed_line(texts, from);
        }
        None => {
            let (end, matched, _) = trailing_anchor(keys, piece, from, n)?;
            issues.push(Issue::LeadNotFound);
            return Some(Placement { region: end - matched..end, anchor: Anchor::TrailingContext, issues });
        }
    };
    if opens_file && anchor != Anchor::FileStart {
        if start < EDGE_SLACK {
            start = 0;
        } else {
            issues.push(Issue::ImpliedOpeningMarker { line: start });
        }
    }

    let lead_start = chosen.map_or(0, |(s, _)| s);
    let lead_end = lead_start + lead;
    let mut end = if lead >= n {
        lead_end
    } else {
        // The whole piece is aligned from where its lead starts: the end may
        // fall inside what the longest leading run took (the piece's last
        // lines can repeat its first ones). Without the piece's last line in
        // the original (and with a marker after the piece), the piece up to
        // its last informative line that is; its changed tail follows.
        let anchored = choose_end(keys, piece, lead_start).map(|choice| (n, choice)).or_else(|| {
            (lead..n).rev().filter(|_| !ends_file).find_map(|q| {
                let id = *piece.get(q)?;
                if keys.weight(id) <= TRIVIAL_WEIGHT || keys.occurrences(id, lead_end).is_empty() {
                    return None;
                }
                choose_end(keys, piece.get(..=q)?, lead_start).map(|choice| (q + 1, choice))
            })
        });
        match anchored {
            Some((matched, choice)) => {
                if choice.runner_up.is_some_and(|other| other + AMBIGUOUS_END_MARGIN >= choice.score) {
                    issues.push(Issue::AmbiguousEnd);
                }
                if choice.deleted > LARGE_DELETION && choice.earlier {
                    issues.push(Issue::LargeDeletion { deleted: choice.deleted });
                }
                if matched < n {
                    let tail = texts.piece.get(matched..).unwrap_or_default();
                    choice.end + changed_tail(texts.original, tail, choice.end, &mut issues)
                } else {
                    choice.end
                }
            }
            None if ends_file => len,
            None => {
                // The last lines are new or changed: they replace the
                // original lines after the lead that resemble them. When
                // none does, they are inserted before the blank lines that
                // end the lead (the snippet's own blank lines go with them).
                let tail = texts.piece.get(lead..).unwrap_or_default();
                let paired = changed_tail(texts.original, tail, lead_end, &mut issues);
                let blanks = if paired == 0 {
                    texts
                        .piece
                        .get(..lead)
                        .unwrap_or_default()
                        .iter()
                        .rev()
                        .take_while(|l| l.text.trim().is_empty())
                        .count()
                } else {
                    0
                };
                lead_end + paired - blanks.min(lead.saturating_sub(1))
            }
        }
    };
    if ends_file {
        if len - end.min(len) < EDGE_SLACK {
            end = len;
        } else {
            issues.push(Issue::ImpliedClosingMarker { lines_before_end: len - end });
        }
    }
    Some(Placement { region: start..end.max(start), anchor, issues })
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

    #[test]
    fn changed_line_before_a_marker_replaces_the_line_it_resembles() {
        let original = "fn main() {\n    let total = compute(first, second);\n    report(total);\n}\n";
        let r = apply(original, &format!("fn main() {{\n    let total = compute(first, second, third);\n{M}\n"));
        assert_eq!(r.text, "fn main() {\n    let total = compute(first, second, third);\n    report(total);\n}\n");
        assert!(r.report.is_clean(), "{:?}", r.report);
    }

    #[test]
    fn lone_changed_line_between_markers_replaces_the_line_it_resembles() {
        let original = "fn main() {\n    let limit = config.limit(10);\n    run(limit);\n}\n";
        let r = apply(original, &format!("{M}\n    let limit = config.limit(10).max(1);\n{M}\n"));
        assert_eq!(r.text, original.replace("(10)", "(10).max(1)"));
        assert!(r.report.is_clean(), "{:?}", r.report);
        // A line that changes characters may be a new line like it: flagged.
        let r = apply(original, &format!("{M}\n    let limit = config.limit(20);\n{M}\n"));
        assert_eq!(r.text, original.replace("(10)", "(20)"));
        assert!(!r.report.is_clean());
    }

    #[test]
    fn new_lines_before_a_marker_go_before_the_blank_lines_ending_the_context() {
        let original = "fn a() {\n    one();\n}\n\nfn b() {\n}\n";
        let r = apply(original, &format!("{M}\n    one();\n}}\n\npub const LIMIT: usize = 3;\n{M}\n"));
        assert_eq!(r.text, "fn a() {\n    one();\n}\n\npub const LIMIT: usize = 3;\n\nfn b() {\n}\n");
    }
    #[test]
    fn blank_lines_keep_the_original_whitespace_under_drift() {
        let original = "fn main() {\n\tlet a = first();\n\n\tlet b = second();\n\tdone(a, b);\n}\n";
        let update = format!("{M}\n    let a = first();\n  \n    let b = second();\n    done(a, b, 1);\n}}\n");
        let r = apply(original, &update);
        assert_eq!(r.text, original.replace("done(a, b)", "done(a, b, 1)"));
    }

    #[test]
    fn a_line_re_indented_under_drift_takes_the_converted_depth() {
        let original = "fn main() {\n\tif ready() {\n\t\tgo_on();\n\t}\n\t\tmisplaced_call();\n\tfinish_now();\n}\n";
        let update =
            format!("{M}\n    if ready() {{\n        go_on();\n    }}\n    misplaced_call();\n    finish_now();\n}}\n");
        let r = apply(original, &update);
        assert_eq!(r.text, original.replace("\t\tmisplaced", "\tmisplaced"));
        assert!(!r.report.is_clean());
    }

    #[test]
    fn lines_re_indented_by_the_edit_are_not_drift() {
        let original = "fn pick(a: bool) -> u32 {\n    if a {\n        return 1;\n    } else {\n        match a {\n            _ => 2,\n        }\n    }\n}\n\nfn other() -> u32 {\n    3\n}\n";
        let update = format!(
            "fn pick(a: bool) -> u32 {{\n    if a {{\n        return 1;\n    }}\n    match a {{\n        _ => 2,\n    }}\n}}\n{M}\n"
        );
        let r = apply(original, &update);
        assert_eq!(
            r.text,
            "fn pick(a: bool) -> u32 {\n    if a {\n        return 1;\n    }\n    match a {\n        _ => 2,\n    }\n}\n\nfn other() -> u32 {\n    3\n}\n"
        );
        assert_eq!(r.report.matching, Matching::Exact);
    }

    #[test]
    fn a_piece_defining_the_next_item_rewrites_it() {
        let original = "fn a() {\n    done();\n}\n\nfn b(x: u32) {\n    start(x);\n    finish(x);\n}\n\nfn c() {}\n";
        let r = apply(original, &format!("{M}\n    done();\n}}\n\nfn b(x: u64) {{\n    done();\n}}\n{M}\n"));
        assert_eq!(r.text, "fn a() {\n    done();\n}\n\nfn b(x: u64) {\n    done();\n}\n\nfn c() {}\n");
        assert!(!r.report.is_clean());
    }

    #[test]
    fn items_left_unused_after_a_snippet_without_closing_marker_are_deleted() {
        let helper = "fn helper() {\n    one();\n    two();\n    three();\n    four();\n    five();\n    six();\n    seven();\n}\n";
        let original = format!("use std::fmt;\n\nfn main() {{\n    helper();\n}}\n\n{helper}");
        let r = apply(&original, &format!("{M}\nfn main() {{\n    one();\n}}\n"));
        assert_eq!(r.text, "use std::fmt;\n\nfn main() {\n    one();\n}\n");
        assert!(!r.report.is_clean());
        // Still used, or never used before: kept (a closing marker implied).
        let r = apply(&original, &format!("{M}\nfn main() {{\n    helper();\n    one();\n}}\n"));
        assert_eq!(r.text, original.replace("    helper();\n}", "    helper();\n    one();\n}"));
        let tests = helper.replace("fn helper", "fn check");
        let original = format!("use std::fmt;\n\nfn main() {{\n    helper();\n}}\n\n{tests}");
        let r = apply(&original, &format!("{M}\nfn main() {{\n    one();\n}}\n"));
        assert_eq!(r.text, original.replace("    helper();\n}", "    one();\n}"));
        assert!(!r.report.is_clean());
    }

    #[test]
    fn a_changed_end_like_the_lines_after_its_region_is_flagged() {
        let original = "/// Heading line.\n///\n/// The old wording of one sentence.\n/// The old wording of two sentences.\n/// The old wording of three sentences.\n///\n/// Note.\npub struct S;\n";
        let update = format!(
            "{M}\n/// Heading line.\n///\n/// The new wording of one sentence.\n/// The new wording of two sentences.\n/// The new wording of three sentences.\n///\n{M}\n"
        );
        let r = apply(original, &update);
        assert!(!r.report.is_clean(), "{}", r.text);
        // A new line that stands, once, right after the region: flagged too.
        let original = "fn a() {\n    one();\n}\n\nfn b() {\n    two();\n}\n\nfn c() {\n    three_calls();\n}\n";
        let r = apply(original, &format!("{M}\n    one();\n    three_calls();\n}}\n{M}\n"));
        assert!(r.report.pieces.iter().any(|p| p.issues.contains(&Issue::ResemblesFollowing)), "{:?}", r.report);
    }

    #[test]
    fn trailing_context_found_unbroken_earlier_wins_over_a_better_alignment() {
        let original = "fn run() {\n    if quick {\n        return fast(x);\n    }\n    let errors = vec![];\n    attempt {\n        return slow(\n            first_value,\n        );\n    }\n    attempt {\n        other();\n    }\n}\n";
        let update = format!(
            "{M}\n    if quick {{\n        return slow(\n            first_value,\n        );\n    }}\n    let errors = vec![];\n    attempt {{\n{M}\n"
        );
        let r = apply(original, &update);
        assert_eq!(r.text, original.replace("return fast(x);", "return slow(\n            first_value,\n        );"));
        assert!(!r.report.is_clean());
    }
}
