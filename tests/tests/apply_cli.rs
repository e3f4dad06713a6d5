//! Drives `graft apply` and `graft fixtures` end to end: the merged file on
//! stdout, `--json`'s shape, `--in-place` (atomic, permissions kept, flagged
//! results refused without `--force`), the snippet from stdin, errors naming
//! the file, the lazy model of `auto`, and `graft fixtures`' per-case lines,
//! summary and exit status.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use graft_tests::graft_bin;

/// A fixture case copied into a fresh temporary directory.
struct Scratch {
    dir: tempfile::TempDir,
    original: PathBuf,
    update: PathBuf,
    expected: String,
}

fn scratch(case: &str, ext: &str) -> Scratch {
    let source = graft_tests::fixtures_dir().join("apply").join(case);
    let dir = tempfile::tempdir().expect("temp dir");
    let original = dir.path().join(format!("original.{ext}"));
    let update = dir.path().join(format!("update.{ext}"));
    fs::copy(source.join(format!("original.{ext}")), &original).expect("copies the original");
    fs::copy(source.join(format!("update.{ext}")), &update).expect("copies the snippet");
    let expected_path = source.join(format!("expected.{ext}"));
    let expected = fs::read_to_string(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
    Scratch { dir, original, update, expected }
}

fn graft(args: &[&str]) -> Output {
    Command::new(graft_bin()).args(args).output().expect("graft runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).expect("lists").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn apply_prints_the_merged_file() {
    let s = scratch("rust-impl-method", "rs");
    let output = graft(&["apply", path(&s.original), "--update", path(&s.update), "--engine", "merge"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), s.expected);
}

#[test]
fn apply_reads_the_snippet_from_stdin() {
    let s = scratch("python-insert-end", "py");
    let mut child = Command::new(graft_bin())
        .args(["apply", path(&s.original), "--update", "-", "--engine", "merge"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graft runs");
    let snippet = fs::read(&s.update).expect("reads the snippet");
    child.stdin.take().expect("stdin is piped").write_all(&snippet).expect("writes stdin");
    let output = child.wait_with_output().expect("graft finishes");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), s.expected);
}

#[test]
fn apply_json_is_one_object_of_text_valid_report_and_stats() {
    let s = scratch("go-struct-field", "go");
    let output = graft(&["apply", path(&s.original), "--update", path(&s.update), "--engine", "merge", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    let object = value.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["report", "stats", "text", "valid"]);
    assert_eq!(value["text"], s.expected.as_str());
    assert_eq!(value["valid"], true);
    assert_eq!(value["report"]["mode"], "merge");
    assert_eq!(value["report"]["language"], "go");
    assert_eq!(value["report"]["merge"]["pieces"].as_array().map(Vec::len), Some(2));
    assert!(value["report"]["problems"].as_array().is_some_and(Vec::is_empty));
    assert!(value["stats"]["total_ms"].as_f64().is_some_and(|ms| ms > 0.0));
}

#[cfg(unix)]
#[test]
fn apply_in_place_replaces_the_file_atomically_keeping_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let s = scratch("rust-crlf", "rs");
    fs::set_permissions(&s.original, fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = listing(s.dir.path());
    let output = graft(&["apply", path(&s.original), "--update", path(&s.update), "--engine", "merge", "--in-place"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "--in-place prints nothing on stdout");
    assert_eq!(fs::read(&s.original).expect("reads the result"), s.expected.as_bytes(), "CRLF bytes kept");
    let mode = fs::metadata(&s.original).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(listing(s.dir.path()), before, "no temporary file left behind");
}

#[test]
fn a_flagged_result_is_printed_with_its_reasons_and_exit_status_2() {
    let s = scratch("rust-unplaceable", "rs");
    let output = graft(&["apply", path(&s.original), "--update", path(&s.update), "--engine", "merge"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(!output.stdout.is_empty(), "the flagged result is still printed");
    let err = stderr(&output);
    assert!(err.contains(path(&s.original)) && err.contains("flagged"), "{err}");
    assert!(err.contains("doubtful region") && err.contains("lead_not_found"), "the reason is named: {err}");
}

#[test]
fn in_place_refuses_a_flagged_result_unless_forced() {
    let s = scratch("javascript-unplaceable", "js");
    let original = fs::read(&s.original).expect("reads");
    let args = ["apply", path(&s.original), "--update", path(&s.update), "--engine", "merge", "--in-place"];
    let refused = graft(&args);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("NOT written"), "{}", stderr(&refused));
    assert_eq!(fs::read(&s.original).expect("reads"), original, "the file is untouched");

    let forced = graft(&[&args[..], &["--force"]].concat());
    assert_eq!(forced.status.code(), Some(2), "still flagged: {}", stderr(&forced));
    assert!(stderr(&forced).contains("--force"), "{}", stderr(&forced));
    let json = graft(&["apply", path(&s.original), "--update", path(&s.update), "--engine", "merge", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(fs::read_to_string(&s.original).expect("reads"), value["text"].as_str().unwrap_or_default());
}

#[test]
fn errors_name_the_file_and_exit_with_1() {
    let s = scratch("rust-impl-method", "rs");
    let missing = s.dir.path().join("nope.rs");
    let output = graft(&["apply", path(&missing), "--update", path(&s.update)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(path(&missing)) && stderr(&output).contains("cannot read the file"),
        "{}",
        stderr(&output)
    );

    let missing_snippet = s.dir.path().join("nope.snippet");
    let output = graft(&["apply", path(&s.original), "--update", path(&missing_snippet)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(path(&missing_snippet)), "{}", stderr(&output));

    let binary = s.dir.path().join("binary.rs");
    fs::write(&binary, b"fn a() {}\n\xff\xfe\n").expect("writes");
    let output = graft(&["apply", path(&binary), "--update", path(&s.update)]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains(path(&binary)) && err.contains("not UTF-8") && err.contains("line 2"), "{err}");

    let empty = s.dir.path().join("empty.rs");
    fs::write(&empty, " \n\n").expect("writes");
    let output = graft(&["apply", path(&s.original), "--update", path(&empty)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&format!("{}: the snippet is empty", path(&empty))), "{}", stderr(&output));
}

#[test]
fn auto_loads_the_model_only_when_the_merge_is_flagged() {
    let bogus_model = "/nonexistent/graft-test-model.gguf";
    let clean = scratch("go-struct-field", "go");
    let output = graft(&["apply", path(&clean.original), "--update", path(&clean.update), "--model", bogus_model]);
    assert_eq!(output.status.code(), Some(0), "a clean merge needs no model: {}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), clean.expected);

    let doubtful = scratch("rust-unplaceable", "rs");
    let output =
        graft(&["apply", path(&doubtful.original), "--update", path(&doubtful.update), "--model", bogus_model]);
    assert_eq!(output.status.code(), Some(1), "a flagged merge loads the model: {}", stderr(&output));
    assert!(stderr(&output).contains(bogus_model), "{}", stderr(&output));
}

#[test]
fn fixtures_on_jsonl_prints_cases_a_summary_and_fails_when_a_case_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jsonl = dir.path().join("cases.jsonl");
    let good = serde_json::json!({
        "id": "good-case", "lang": "python", "path": "a.py", "instruction": "add b",
        "original": "def a():\n    return 1\n",
        "update": "# ... existing code ...\n    return 1\n\n\ndef b():\n    return 2\n",
        "expected": "def a():\n    return 1\n\n\ndef b():\n    return 2\n",
    });
    let bad = serde_json::json!({
        "id": "bad-case", "lang": "rust", "path": "b.rs", "instruction": "x",
        "original": "fn a() {}\n", "update": "fn a() {}\n", "expected": "fn b() {}\n",
    });
    fs::write(&jsonl, format!("{good}\n{bad}\n")).expect("writes");
    let results = dir.path().join("results.jsonl");
    let output = graft(&["fixtures", path(&jsonl), "--engine", "merge", "--json-lines", path(&results)]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ok ") && lines[0].contains("good-case") && lines[0].contains("exact"), "{stdout}");
    assert!(lines[1].starts_with("FAIL") && lines[1].contains("bad-case") && lines[1].contains("wrong"), "{stdout}");
    for row in [
        "exact match",
        "exact ignoring trailing whitespace",
        "valid",
        "flagged",
        "unflagged wrong",
        "median latency",
        "p90 latency",
    ] {
        assert!(stdout.contains(row), "summary row `{row}` missing:\n{stdout}");
    }
    let unflagged_wrong = lines.iter().find(|l| l.trim_start().starts_with("unflagged wrong")).expect("row");
    assert_eq!(unflagged_wrong.split_whitespace().nth(2), Some("1"), "{unflagged_wrong}");
    assert_eq!(lines.last(), Some(&"1 passed, 1 failed"));

    let results = fs::read_to_string(&results).expect("--json-lines written");
    let rows: Vec<serde_json::Value> =
        results.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["id"].as_str(), rows[0]["pass"].as_bool()), (Some("good-case"), Some(true)));
    assert_eq!((rows[1]["verdict"].as_str(), rows[1]["pass"].as_bool()), (Some("wrong"), Some(false)));

    let only_good = graft(&["fixtures", path(&jsonl), "--engine", "merge", "--filter", "good"]);
    assert_eq!(only_good.status.code(), Some(0), "{}", stderr(&only_good));
    assert!(String::from_utf8_lossy(&only_good.stdout).ends_with("1 passed, 0 failed\n"));
}

#[test]
fn fixtures_on_a_directory_counts_expected_flags_as_passes() {
    let dir = graft_tests::fixtures_dir().join("apply");
    let output = graft(&["fixtures", path(&dir), "--engine", "merge", "--filter", "unplaceable"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
    assert!(stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 3, "{stdout}");
    assert!(stdout.ends_with(" passed, 0 failed\n"), "{stdout}");
}
