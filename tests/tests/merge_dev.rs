//! The structural merge on every case of the shared apply data
//! (`dev.jsonl`, `dev-hard.jsonl`, read in place): exact-match counts per
//! set and per perturbation, floors on them, and no unflagged corruption (a
//! wrong result that the merge-mode apply neither flags nor fails to
//! validate).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use graft_engine::apply::{apply, merge, ApplyControl, ApplyMode, ApplyRequest};
use graft_grammars::Language;
use serde::Deserialize;

/// The fields of a case this test reads.
#[derive(Deserialize)]
struct Case {
    id: String,
    lang: String,
    original: String,
    update: String,
    expected: String,
    #[serde(default)]
    perturbation: Option<String>,
}

/// Outcome counts of one data set.
#[derive(Default)]
struct Tally {
    cases: usize,
    exact: usize,
    /// Results the merge-mode apply flags (or fails), right or wrong.
    flagged: usize,
    unflagged_wrong: Vec<String>,
    per_kind: BTreeMap<String, (usize, usize)>,
    slowest: (Duration, usize),
}

fn run(path: &Path) -> Tally {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tally = Tally::default();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let case: Case =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), number + 1));
        let language = Language::from_name(&case.lang);
        let started = Instant::now();
        let result = merge(&case.original, &case.update, language);
        let took = started.elapsed();
        if took > tally.slowest.0 {
            tally.slowest = (took, case.original.lines().count());
        }
        let ok = result.text == case.expected;
        tally.cases += 1;
        tally.exact += usize::from(ok);
        let kind = tally.per_kind.entry(case.perturbation.unwrap_or_else(|| "all".into())).or_default();
        kind.0 += usize::from(ok);
        kind.1 += 1;
        let request = ApplyRequest {
            original: &case.original,
            update: &case.update,
            instruction: None,
            language,
            mode: ApplyMode::Merge,
            whole_file: false,
        };
        let flagged = apply(&request, None, ApplyControl::default()).map_or(true, |o| o.flagged());
        tally.flagged += usize::from(flagged);
        if !ok && !flagged {
            tally.unflagged_wrong.push(case.id);
        }
    }
    println!(
        "{}: {}/{} exact ({:.1}%), flagged {}, unflagged corruptions {}, slowest {:?} ({} lines)",
        path.display(),
        tally.exact,
        tally.cases,
        100.0 * tally.exact as f64 / tally.cases.max(1) as f64,
        tally.flagged,
        tally.unflagged_wrong.len(),
        tally.slowest.0,
        tally.slowest.1
    );
    for (kind, (exact, cases)) in &tally.per_kind {
        println!("  {kind}: {exact}/{cases}");
    }
    for id in &tally.unflagged_wrong {
        println!("  unflagged: {id}");
    }
    tally
}

#[test]
fn merge_on_dev_and_dev_hard() {
    let dev = graft_tests::dev_jsonl();
    let hard = dev.with_file_name("dev-hard.jsonl");
    assert!(hard.is_file(), "{} is missing", hard.display());
    let dev_tally = run(&dev);
    let hard_tally = run(&hard);
    assert_eq!(dev_tally.cases, 300);
    assert_eq!(hard_tally.cases, 152);
    assert!(dev_tally.exact >= DEV_FLOOR, "dev.jsonl: {} exact, floor {DEV_FLOOR}", dev_tally.exact);
    assert!(hard_tally.exact >= HARD_FLOOR, "dev-hard.jsonl: {} exact, floor {HARD_FLOOR}", hard_tally.exact);
    assert!(dev_tally.unflagged_wrong.is_empty(), "dev.jsonl: unflagged corruptions {:?}", dev_tally.unflagged_wrong);
    assert!(
        hard_tally.unflagged_wrong.is_empty(),
        "dev-hard.jsonl: unflagged corruptions {:?}",
        hard_tally.unflagged_wrong
    );
}

/// Exact matches reached on dev.jsonl, rounded down a little.
const DEV_FLOOR: usize = 299;
/// Exact matches reached on dev-hard.jsonl, rounded down a little.
const HARD_FLOOR: usize = 152;
