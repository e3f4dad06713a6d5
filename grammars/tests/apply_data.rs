//! The grammars on the real edits of `shared/data/apply/` (dev.jsonl,
//! dev-hard.jsonl), read in place. Marker detection: every comment line of
//! an update that is not a line of its expected file must be a marker
//! (recall), and no line of an original or expected file may be one (false
//! positives). Parsing: every original parses within the time bound and
//! yields items. The data is found at `$GRAFT_SHARED/data/apply/` or
//! `<workspace>/../shared/data/apply/`; the test fails when it is missing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use graft_grammars::{is_marker_line, items, parse_with_timeout, Language};

const FILES: [&str; 2] = ["dev.jsonl", "dev-hard.jsonl"];

fn apply_data_dir() -> PathBuf {
    let shared = std::env::var_os("GRAFT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("data/apply")
}

/// A line written as a comment in any of the supported syntaxes.
fn looks_like_comment(line: &str) -> bool {
    ["//", "#", "/*", "{/*"].iter().any(|opener| line.starts_with(opener))
}

fn field<'a>(case: &'a serde_json::Value, name: &str, at: &str) -> &'a str {
    case[name].as_str().unwrap_or_else(|| panic!("{at}: field `{name}` missing or not a string"))
}

/// Every case of the data sets as (location, parsed JSON object).
fn cases() -> Vec<(String, serde_json::Value)> {
    let dir = apply_data_dir();
    let mut cases = Vec::new();
    for file in FILES {
        let path = dir.join(file);
        let data = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {} (set GRAFT_SHARED?): {e}", path.display()));
        for (number, line) in data.lines().enumerate() {
            let at = format!("{}:{}", path.display(), number + 1);
            let case = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: not a JSON object: {e}"));
            cases.push((at, case));
        }
    }
    cases
}

#[test]
fn every_original_parses_and_has_items() {
    let cases = cases();
    let mut without_items = Vec::new();
    for (at, case) in &cases {
        let Some(language) = Language::from_name(field(case, "lang", at)) else { continue };
        let original = field(case, "original", at);
        // A generous bound: this checks that every file parses, not how fast
        // (a loaded CI machine can be many times slower than PARSE_TIMEOUT).
        let tree =
            parse_with_timeout(language, original, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{at}: {e}"));
        let found = items(language, &tree, original).unwrap_or_else(|e| panic!("{at}: {e}"));
        if found.is_empty() {
            without_items.push(at.clone());
        }
    }
    println!("{} originals parsed, {} without items", cases.len(), without_items.len());
    // A file with no function, type or class at all is rare; a handful is
    // plausible (constants-only modules), a crowd means a broken query.
    assert!(without_items.len() * 20 <= cases.len(), "originals without items:\n{}", without_items.join("\n"));
}

#[test]
fn markers_of_dev_sets_are_found_and_real_code_is_not_flagged() {
    let cases = cases();
    for file in FILES {
        let (mut comments, mut found, mut checked) = (0usize, 0usize, 0usize);
        let (mut missed, mut false_positives) = (Vec::new(), Vec::new());
        for (at, case) in cases.iter().filter(|(at, _)| at.contains(&format!("/{file}:"))) {
            let language = Language::from_name(field(case, "lang", at));
            let expected: HashSet<&str> = field(case, "expected", at).lines().map(str::trim).collect();
            for update_line in field(case, "update", at).lines().map(str::trim) {
                if update_line.is_empty() || expected.contains(update_line) || !looks_like_comment(update_line) {
                    continue;
                }
                comments += 1;
                if is_marker_line(language, update_line) {
                    found += 1;
                } else {
                    missed.push(format!("{at}: {update_line}"));
                }
            }
            for text in [field(case, "original", at), field(case, "expected", at)] {
                for code_line in text.lines() {
                    checked += 1;
                    if is_marker_line(language, code_line) {
                        false_positives.push(format!("{at}: {}", code_line.trim()));
                    }
                }
            }
        }
        println!(
            "{file}: marker recall {found}/{comments}, false positives {}/{checked} original+expected lines",
            false_positives.len()
        );
        assert!(comments > 0, "{file}: no marker lines found; is it the apply data set?");
        assert!(missed.is_empty(), "{file}: {} markers missed:\n{}", missed.len(), missed.join("\n"));
        assert!(
            false_positives.is_empty(),
            "{file}: {} lines of real code flagged as markers:\n{}",
            false_positives.len(),
            false_positives.join("\n")
        );
    }
}
