//! Shared helpers for graft's end-to-end and golden tests: where the
//! workspace, its fixtures, the shared data sets, the default model and the
//! `graft` binary are. Missing prerequisites fail loudly (never skip).

use std::path::PathBuf;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// `fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

/// The shared data directory: `$GRAFT_SHARED`, else `../shared` beside the
/// checkout (where CI puts it).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("GRAFT_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("..").join("shared"),
    }
}

/// `shared/data/apply/dev.jsonl`, which must exist.
pub fn dev_jsonl() -> PathBuf {
    let path = shared_dir().join("data").join("apply").join("dev.jsonl");
    assert!(path.is_file(), "{} is missing: the tests read the shared apply data in place", path.display());
    path
}

/// The default model, which must have been fetched (`graft models fetch`,
/// which the test script runs first).
pub fn default_model() -> PathBuf {
    let path = graft_engine::home::default_model_path();
    assert!(path.is_file(), "{} is missing: run `graft models fetch` before the tests", path.display());
    path
}

/// The release `graft` binary built next to the running test.
pub fn graft_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/graft
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).map(PathBuf::from).unwrap_or_default();
    let bin = profile_dir.join(format!("graft{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} is missing: build it first (`cargo build --release -p graft-server`)", bin.display());
    bin
}

/// A file of little-endian f32 values (reference logits).
pub fn read_f32_le(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}
