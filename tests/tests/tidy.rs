//! Repository hygiene, checked on every run: each Rust source file opens
//! with a `//!` doc saying what it is for, and no `dbg!` is left behind.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = graft_tests::workspace_root();
    let mut files = Vec::new();
    for crate_dir in ["engine", "grammars", "server", "tests"] {
        rust_files(&root.join(crate_dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} Rust files under {}", files.len(), root.display());
    files
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc: {missing:#?}");
}

#[test]
fn no_dbg_macros_are_left_behind() {
    let needle = concat!("dbg", "!(");
    let offenders: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|path| std::fs::read_to_string(path).unwrap_or_default().contains(needle))
        .map(|path| path.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "files with {needle}: {offenders:#?}");
}
