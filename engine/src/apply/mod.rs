//! The apply step's deterministic part: the structural merge of a lazy edit
//! snippet into a file ([`merge`]), with a report of how every piece of the
//! snippet was placed and of every ambiguity or failure.
//!
//! The snippet is split at elision markers (`graft_grammars::is_marker_line`)
//! into pieces; each piece is anchored in the original after the previous
//! one by its leading context lines (the longest run of its first lines that
//! occurs after the previous piece, unique if possible) and its trailing
//! context lines (the longest run of its last lines occurring after the
//! leading context, earliest on ties); the original span between them is
//! replaced by the piece, aligned line by line with `similar` so unchanged
//! lines keep the original's exact text. A piece that cannot be placed is
//! reported and the original is left unchanged there.

mod merge;
mod model;
mod pipeline;
mod prompt;
mod text;
mod validate;

use std::ops::Range;

use graft_grammars::Language;
use serde::Serialize;

pub use merge::merge;
pub use model::{plan_model_apply, warm_file, RegionPlan, RegionSource};
pub use pipeline::{
    apply, ApplyControl, ApplyMode, ApplyOutcome, ApplyProgress, ApplyReport, ApplyRequest, ApplyStats, RegionReport,
};
pub use prompt::stable_prefix;
pub use validate::{validate, Problem};

/// The merged file and how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeResult {
    /// The candidate file (the original's line endings and final newline kept).
    pub text: String,
    /// How each piece anchored, and every ambiguity or failure.
    pub report: MergeReport,
}

/// What the merge did with the snippet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    /// The language markers were detected for; `None`: unknown, line-based
    /// handling with every common comment syntax.
    #[serde(serialize_with = "language_name")]
    pub language: Option<Language>,
    /// How lines were compared when anchoring.
    pub matching: Matching,
    /// One entry per piece of the snippet, in snippet order.
    pub pieces: Vec<PieceReport>,
}

impl MergeReport {
    /// True when every piece was placed and none raised an issue: the
    /// candidate is the merge's unambiguous reading of the snippet.
    pub fn is_clean(&self) -> bool {
        self.pieces.iter().all(|p| p.issues.is_empty() && p.replaced.is_some())
    }
}

/// How snippet lines were compared with original lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// Byte-exact lines (line endings aside).
    Exact,
    /// Lines equal once leading and trailing whitespace is removed: the
    /// snippet's context lines drift in whitespace from the original's
    /// (trailing blanks, tabs against spaces).
    IgnoreWhitespace,
}

/// One piece of the snippet: contiguous lines between markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PieceReport {
    /// The piece's lines in the snippet, 0-based, end exclusive.
    pub update_lines: Range<usize>,
    /// How the piece was anchored.
    pub anchor: Anchor,
    /// The original lines the piece replaced (0-based, end exclusive; empty
    /// for a pure insertion); `None` when the piece was not placed.
    pub replaced: Option<Range<usize>>,
    /// The candidate's lines that replaced them; `None` when not placed.
    pub output: Option<Range<usize>>,
    /// Facts worth knowing that do not make the result doubtful.
    pub notes: Vec<Note>,
    /// Ambiguities and failures: the result may be wrong here.
    pub issues: Vec<Issue>,
}

/// How a piece found its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Its leading context lines occur once after the previous piece.
    UniqueContext,
    /// Its leading context lines occur several times after the previous
    /// piece; the first occurrence was taken (see [`Issue::NonUniqueLead`]).
    FirstOccurrence,
    /// It opens the file (no marker before it) and its first lines are new.
    FileStart,
    /// Its leading lines were not found; it was placed by its trailing
    /// context alone (see [`Issue::LeadNotFound`]).
    TrailingContext,
    /// Its first lines are not in the original; the rest anchored, and the
    /// first lines replace the original lines above that resemble them
    /// (without such lines, see [`Issue::LeadNotFound`]).
    ResemblingLead,
    /// The snippet has no marker at all: it is the whole new file.
    WholeFile,
    /// It could not be placed; the original is unchanged there.
    Unplaced,
}

/// Something the merge inferred that the snippet did not say outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Note {
    /// The piece is blank between two markers; ignored.
    Blank,
}

/// Why a piece's placement is doubtful or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Issue {
    /// Its longest leading-context run occurs `candidates` times after the
    /// previous piece; the first was taken.
    NonUniqueLead { candidates: usize },
    /// Its first line occurs nowhere after the previous piece; it was placed
    /// before its trailing context.
    LeadNotFound,
    /// Neither its leading nor its trailing lines occur after the previous
    /// piece: not placed.
    Unplaceable,
    /// Its trailing lines occur nowhere after its leading context: its new
    /// lines were inserted right after the leading context.
    TrailNotFound,
    /// The snippet has no opening marker but its first piece anchors this
    /// many lines into the file: the lines before it were kept (an opening
    /// marker is implied), though the snippet may mean them deleted.
    ImpliedOpeningMarker { line: usize },
    /// The snippet has no closing marker but its last piece ends this many
    /// lines before the end of the file: they were kept (a closing marker
    /// is implied), though the snippet may mean them deleted.
    ImpliedClosingMarker { lines_before_end: usize },
    /// This many of its lines differ from the original lines they were
    /// paired with only in whitespace, or were re-indented to the original's
    /// style: the snippet's whitespace was read as drift or as an edit, and
    /// either may be wrong.
    WhitespaceGuess { lines: usize },
    /// It deletes this many consecutive original lines between lines it
    /// shows: an edit, or an elision without a marker.
    UnshownDeletion { lines: usize },
    /// Lines it inserts already stand, in the same order, elsewhere in the
    /// original: the snippet may show them as context that did not anchor
    /// here, and the result may hold them twice.
    DuplicatesOriginal,
    /// It inserts a definition of a name that an item of the original,
    /// outside its region, defines (at 0-based `line`): the snippet may
    /// rewrite that item rather than add one.
    RedefinesItem { line: usize },
    /// It removes the original's definition at 0-based `line` of a name
    /// the result still uses: the snippet may have elided it rather than
    /// deleted it.
    RemovesUsedDefinition { line: usize },
    /// Two ends of its region in the original align about equally well
    /// with it; the better (or nearer) was taken.
    AmbiguousEnd,
    /// It ends with a change followed by little context, and the original
    /// right after its region holds a line of that change (one standing
    /// once from the region on), or opens with lines that each resemble an
    /// inserted one: its context may have been found too early, and the
    /// change may replace those lines rather than stand before them.
    ResemblesFollowing,
    /// Its trailing context was found only after `deleted` original lines
    /// that the piece does not show, which it therefore deletes.
    LargeDeletion { deleted: usize },
}

/// Serializes a language as its name (`null` when unknown).
fn language_name<S: serde::Serializer>(language: &Option<Language>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_some(&language.map(Language::name))
}
