//! Every case of `fixtures/apply/` (hand-written edits across Rust, Python,
//! TypeScript, TSX, JavaScript and Go) through the apply pipeline: the merge
//! engine on all of them, the model engine on two small ones. A case passes
//! when the result is exactly `expected.<ext>`, or when its `case.json` says
//! `expect_flagged` and the result is flagged.
//!
//! Cases the merge gets wrong are listed in [`KNOWN_MERGE_FAILURES`] with
//! the reason (none today), and the list is a ratchet: a listed case that
//! starts passing fails the test until it is removed from the list, and any
//! other case failing fails it too.

use std::fs;
use std::path::{Path, PathBuf};

use graft_engine::apply::{apply, ApplyControl, ApplyMode, ApplyOutcome, ApplyRequest};
use graft_engine::{Engine, EngineOptions};
use graft_grammars::Language;
use serde::Deserialize;

/// Cases the merge engine gets wrong today, each with what goes wrong
/// (each must at least be flagged). The expected files are what a careful
/// reader makes of the snippet.
const KNOWN_MERGE_FAILURES: [(&str, &str); 0] = [];

/// `case.json`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Meta {
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default)]
    expect_flagged: bool,
    #[serde(default, rename = "note")]
    _note: Option<String>,
}

/// One fixture case read from its directory.
struct Case {
    name: String,
    language: Option<Language>,
    original: String,
    update: String,
    expected: String,
    meta: Meta,
}

impl Case {
    fn request(&self, mode: ApplyMode) -> ApplyRequest<'_> {
        ApplyRequest {
            original: &self.original,
            update: &self.update,
            instruction: self.meta.instruction.as_deref(),
            language: self.language,
            mode,
            whole_file: false,
        }
    }

    fn passes(&self, outcome: &ApplyOutcome) -> bool {
        outcome.text == self.expected || (self.meta.expect_flagged && outcome.flagged())
    }
}

fn apply_dir() -> PathBuf {
    graft_tests::fixtures_dir().join("apply")
}

/// The file of `dir` named `<stem>.<ext>`.
fn stem_file(dir: &Path, stem: &str) -> PathBuf {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let found: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.file_stem().is_some_and(|s| s == stem)).collect();
    assert_eq!(found.len(), 1, "{}: expected one {stem}.<ext>, found {found:?}", dir.display());
    found[0].clone()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_case(dir: &Path) -> Case {
    let original = stem_file(dir, "original");
    let meta_path = dir.join("case.json");
    let meta = if meta_path.is_file() {
        serde_json::from_str(&read(&meta_path)).unwrap_or_else(|e| panic!("{}: {e}", meta_path.display()))
    } else {
        Meta::default()
    };
    Case {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        language: Language::from_path(&original),
        original: read(&original),
        update: read(&stem_file(dir, "update")),
        expected: read(&stem_file(dir, "expected")),
        meta,
    }
}

fn load_cases() -> Vec<Case> {
    let dir = apply_dir();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load_case(d)).collect()
}

fn case(name: &str) -> Case {
    load_case(&apply_dir().join(name))
}

#[test]
fn the_fixtures_cover_every_language_and_edge_case() {
    let cases = load_cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for language in Language::ALL {
        let count = cases.iter().filter(|c| c.language == Some(language)).count();
        assert!(count >= 2, "{} has {count} cases", language.name());
    }
    let crlf: Vec<&str> = cases.iter().filter(|c| c.original.contains("\r\n")).map(|c| c.name.as_str()).collect();
    assert!(crlf.len() >= 3, "CRLF cases: {crlf:?}");
    for case in cases.iter().filter(|c| c.original.contains("\r\n")) {
        let lone_lf = |text: &str| text.replace("\r\n", "").contains('\n');
        assert!(!lone_lf(&case.original) && !lone_lf(&case.expected), "{}: mixed line endings", case.name);
    }
    assert!(cases.iter().any(|c| c.original.lines().count() >= 3000), "no 3,000-line case");
    assert!(cases.iter().any(|c| c.language == Some(Language::Go) && c.original.contains("\n\t")), "no tabs");
    assert!(cases.iter().any(|c| c.expected.contains('日') || c.expected.contains('é')), "no non-ASCII text");
    assert!(cases.iter().filter(|c| c.meta.expect_flagged).count() >= 3, "too few unplaceable snippets");
    let large = case("rust-large-3000");
    assert_eq!(large.original.lines().count(), 3000, "run fixtures/apply/make_large.py");
}

#[test]
fn every_fixture_through_the_merge_engine() {
    let mut unexpected_failures = Vec::new();
    let mut fixed = Vec::new();
    for case in load_cases() {
        let outcome = apply(&case.request(ApplyMode::Merge), None, ApplyControl::default())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let known = KNOWN_MERGE_FAILURES.iter().find(|(name, _)| *name == case.name);
        match (case.passes(&outcome), known) {
            (true, Some(_)) => fixed.push(case.name),
            // A known failure must at least be flagged: no unflagged corruption.
            (false, Some(_)) if !outcome.flagged() => unexpected_failures.push(format!("{} (UNFLAGGED)", case.name)),
            (false, None) => {
                let flagged = if outcome.flagged() { "flagged" } else { "UNFLAGGED" };
                unexpected_failures.push(format!("{} ({flagged}):\n{}", case.name, outcome.text));
            }
            _ => {}
        }
    }
    assert!(unexpected_failures.is_empty(), "cases the merge gets wrong:\n{}", unexpected_failures.join("\n"));
    assert!(fixed.is_empty(), "now passing, remove from KNOWN_MERGE_FAILURES: {fixed:?}");
}

#[test]
fn every_known_failure_names_a_fixture() {
    let cases = load_cases();
    for (name, _) in KNOWN_MERGE_FAILURES {
        assert!(cases.iter().any(|c| c.name == name), "KNOWN_MERGE_FAILURES names no fixture `{name}`");
    }
}

#[test]
fn the_large_case_matches_its_generator() {
    // make_large.py writes 3,000 lines of `handle_NNNN` functions; spot-check
    // its shape so a hand edit of the committed output is noticed.
    let large = case("rust-large-3000");
    assert!(large.original.starts_with("//! Generated request handlers"));
    assert!(large.original.contains("pub fn handle_0310(input: &Request) -> Response {\n"));
    assert_eq!(large.expected.lines().count(), 3001);
    assert!(large.update.lines().count() < 30);
}

#[test]
fn model_mode_on_small_cases_is_exact_or_flagged() {
    let mut engine =
        Engine::load(&graft_tests::default_model(), &EngineOptions::default()).expect("default model loads");
    for name in ["rust-insert-start", "python-insert-end"] {
        let case = case(name);
        // The merge candidate is right here; model mode drafts from it.
        let merged = apply(&case.request(ApplyMode::Merge), None, ApplyControl::default()).expect("merges");
        assert_eq!(merged.text, case.expected, "{name}: the merge candidate");
        let outcome =
            apply(&case.request(ApplyMode::Model), Some(&mut engine), ApplyControl::default()).expect("model apply");
        assert!(outcome.stats.model_regions >= 1, "{name}: the model rewrote no region");
        assert!(outcome.text == case.expected || outcome.flagged(), "{name}: wrong and unflagged:\n{}", outcome.text);
        assert_eq!(outcome.text, case.expected, "{name}: model mode differs from the right merge candidate");
    }
}
