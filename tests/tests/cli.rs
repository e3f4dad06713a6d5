//! Drives the real `graft` binary: `models fetch|list`, `generate` (text on
//! stdout, one stats line on stderr, the same greedy text as the engine
//! gives in-process) and errors for bad input.

use std::process::Command;

use graft_engine::decode::GenerateParams;
use graft_engine::{Engine, EngineOptions};
use graft_tests::{default_model, graft_bin};

#[test]
fn fetch_is_idempotent_and_list_shows_the_default_model() {
    let model = default_model();
    let fetch = Command::new(graft_bin()).args(["models", "fetch"]).output().expect("graft runs");
    assert!(fetch.status.success(), "{}", String::from_utf8_lossy(&fetch.stderr));
    assert!(String::from_utf8_lossy(&fetch.stderr).contains("cached and verified"));
    let list = Command::new(graft_bin()).args(["models", "list"]).output().expect("graft runs");
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(stdout.contains(&*model.to_string_lossy()) && stdout.contains("(default)"), "{stdout}");
}

#[test]
fn generate_prints_the_greedy_continuation_and_a_stats_line() {
    let prompt = "The three primary colors are";
    let output = Command::new(graft_bin())
        .args(["generate", "--prompt", prompt, "--max-tokens", "16"])
        .output()
        .expect("graft runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stats = stderr.lines().last().unwrap_or_default();
    assert!(
        stats.starts_with("prompt ")
            && stats.contains(" tok, output ")
            && stats.contains("prefill")
            && stats.ends_with("tok/s"),
        "stats line: {stats}"
    );

    let mut engine = Engine::load(&default_model(), &EngineOptions::default()).expect("default model loads");
    let ids = engine.tokenizer().encode(prompt, true).expect("encodes");
    let params = GenerateParams::new(16, engine.tokenizer().eos_ids().to_vec());
    let generation = engine.generate(&ids, &params, |_| {}).expect("generates");
    let text_ids: Vec<u32> =
        generation.tokens.iter().copied().filter(|t| !engine.tokenizer().eos_ids().contains(t)).collect();
    let expected = engine.tokenizer().decode(&text_ids).expect("decodes");
    assert!(!expected.trim().is_empty());
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{expected}\n"));
}

#[test]
fn a_missing_model_file_is_an_error_naming_it() {
    let output = Command::new(graft_bin())
        .args(["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"])
        .output()
        .expect("graft runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/model.gguf"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_model_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.gguf");
    std::fs::write(&path, "these are not weights\n").expect("write");
    let output = Command::new(graft_bin())
        .args(["generate", "--model"])
        .arg(&path)
        .args(["--prompt", "hi"])
        .output()
        .expect("graft runs");
    assert_eq!(output.status.code(), Some(1), "exit code 1, not a panic (101)");
    assert!(String::from_utf8_lossy(&output.stderr).contains("notes.gguf"));
}
