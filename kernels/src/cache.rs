//! The kernel sources and their run-time compilation: each `.cu` module is
//! compiled by NVRTC to PTX for the device's architecture and the PTX is
//! cached on disk, keyed by (source hash, arch, options), so a source edit,
//! another GPU or other flags never reuse a stale module.

use std::path::{Path, PathBuf};

use cudarc::nvrtc::{CompileError, CompileOptions};
use sha2::{Digest, Sha256};

use crate::error::{KernelError, Result};

/// One module: a `.cu` file embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct ModuleSource {
    pub name: &'static str,
    pub source: &'static str,
}

/// Every module, one per op family, each prefixed with `pdl.cuh` (the
/// programmatic-dependent-launch helpers every kernel calls), the two that
/// normalize rows with `rms.cuh` (one row scale, bit for bit the same in
/// both), and the two that stage through cp.async and run tensor-core MMAs
/// with `async.cuh` and `mma.cuh`.
pub const MODULES: [ModuleSource; 7] = [
    ModuleSource { name: "embed", source: concat!(include_str!("cu/pdl.cuh"), include_str!("cu/embed.cu")) },
    ModuleSource {
        name: "norm",
        source: concat!(include_str!("cu/pdl.cuh"), include_str!("cu/rms.cuh"), include_str!("cu/norm.cu")),
    },
    ModuleSource { name: "rope", source: concat!(include_str!("cu/pdl.cuh"), include_str!("cu/rope.cu")) },
    ModuleSource {
        name: "attention",
        source: concat!(
            include_str!("cu/pdl.cuh"),
            include_str!("cu/async.cuh"),
            include_str!("cu/mma.cuh"),
            include_str!("cu/attention.cu")
        ),
    },
    ModuleSource {
        name: "matmul",
        source: concat!(
            include_str!("cu/pdl.cuh"),
            include_str!("cu/rms.cuh"),
            include_str!("cu/async.cuh"),
            include_str!("cu/mma.cuh"),
            include_str!("cu/matmul.cu")
        ),
    },
    ModuleSource { name: "sample", source: concat!(include_str!("cu/pdl.cuh"), include_str!("cu/sample.cu")) },
    ModuleSource { name: "init", source: concat!(include_str!("cu/pdl.cuh"), include_str!("cu/init.cu")) },
];

/// Where NVRTC finds `cuda_bf16.h`: `$GRAFT_CUDA_INCLUDE` (CUDA's headers
/// installed elsewhere, e.g. the `nvidia-cuda-runtime-cu12` wheel's
/// `include/`), else a CUDA toolkit's default place.
pub fn cuda_include_dir() -> String {
    std::env::var("GRAFT_CUDA_INCLUDE").unwrap_or_else(|_| DEFAULT_CUDA_INCLUDE_DIR.to_owned())
}

/// A CUDA toolkit's headers on Linux.
pub const DEFAULT_CUDA_INCLUDE_DIR: &str = "/usr/local/cuda/include";

/// The NVRTC target for a compute capability: the arch-specific `a`
/// variant where it exists (wgmma on Hopper), `None` below 8.0 (the
/// kernels use bf16 tensor-core MMAs).
pub fn arch_for(major: i32, minor: i32) -> Option<&'static str> {
    Some(match (major, minor) {
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 7) => "sm_87",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90a",
        (10, 0) => "sm_100a",
        (12, 0) => "sm_120a",
        (8, _) => "sm_80",
        (9, _) => "sm_90",
        (10.., _) => "sm_100",
        _ => return None,
    })
}

/// Options every module is compiled with (besides the arch).
pub fn compile_options(arch: &'static str) -> CompileOptions {
    CompileOptions {
        arch: Some(arch),
        include_paths: vec![cuda_include_dir()],
        options: vec!["--std=c++17".to_owned()],
        ..Default::default()
    }
}

/// The cache key of a module: sha256 over the source, the arch and every
/// option, each length-prefixed so no two different triples collide by
/// concatenation.
pub fn cache_key(source: &str, arch: &str, options: &CompileOptions) -> String {
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(source.as_bytes());
    part(arch.as_bytes());
    part(format!("{options:?}").as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The cached PTX file of a module under `dir`.
pub fn cache_file(dir: &Path, module: &str, key: &str) -> PathBuf {
    dir.join(format!("{module}-{}.ptx", &key[..32]))
}

/// The PTX of `module` for `arch`: read from `dir` when cached, else
/// compiled and written there (atomically: a temporary file renamed into
/// place, so a concurrent process never reads half a module).
pub fn load_or_compile(dir: &Path, module: &ModuleSource, arch: &'static str) -> Result<String> {
    let options = compile_options(arch);
    let key = cache_key(module.source, arch, &options);
    let path = cache_file(dir, module.name, &key);
    if let Ok(ptx) = std::fs::read_to_string(&path) {
        return Ok(ptx);
    }
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(module.source, options).map_err(|err| KernelError::Compile {
        module: module.name,
        arch,
        log: match err {
            CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => other.to_string(),
        },
    })?;
    let text = ptx.to_src();
    let cache_err = |path: &Path| {
        let path = path.to_owned();
        move |source| KernelError::Cache { path, source }
    };
    std::fs::create_dir_all(dir).map_err(cache_err(dir))?;
    let tmp = dir.join(format!(".{}.{}.tmp", module.name, std::process::id()));
    std::fs::write(&tmp, &text).map_err(cache_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(cache_err(&path))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_source_arch_and_options() {
        let base = compile_options("sm_90a");
        let key = cache_key("a", "sm_90a", &base);
        assert_eq!(key.len(), 64);
        assert_eq!(key, cache_key("a", "sm_90a", &base), "deterministic");
        assert_ne!(key, cache_key("b", "sm_90a", &base));
        assert_ne!(key, cache_key("a", "sm_80", &base));
        let mut other = base.clone();
        other.options.push("-lineinfo".into());
        assert_ne!(key, cache_key("a", "sm_90a", &other));
        // Length prefixes: moving a byte between parts changes the key.
        assert_ne!(cache_key("ab", "c", &base), cache_key("a", "bc", &base));
    }

    #[test]
    fn cache_files_are_named_by_module_and_key() {
        let key = cache_key("src", "sm_90a", &compile_options("sm_90a"));
        let path = cache_file(Path::new("/tmp/k"), "matmul", &key);
        assert_eq!(path.parent(), Some(Path::new("/tmp/k")));
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        assert!(name.starts_with("matmul-") && name.ends_with(".ptx") && name.contains(&key[..32]), "{name}");
    }

    #[test]
    fn a_cached_module_is_read_back_without_compiling() {
        let dir = tempfile::tempdir().expect("temp dir");
        let module = MODULES[0];
        let key = cache_key(module.source, "sm_90a", &compile_options("sm_90a"));
        std::fs::write(cache_file(dir.path(), module.name, &key), "// cached ptx").expect("write");
        // No NVRTC on this path: the cached text comes back as is.
        assert_eq!(load_or_compile(dir.path(), &module, "sm_90a").expect("cached"), "// cached ptx");
    }

    #[test]
    fn arch_comes_from_the_compute_capability() {
        assert_eq!(arch_for(9, 0), Some("sm_90a"));
        assert_eq!(arch_for(8, 0), Some("sm_80"));
        assert_eq!(arch_for(8, 9), Some("sm_89"));
        assert_eq!(arch_for(7, 5), None, "no bf16 MMA before Ampere");
    }

    #[test]
    fn every_module_names_a_distinct_source() {
        for (i, a) in MODULES.iter().enumerate() {
            assert!(a.source.contains("__global__"), "{} has kernels", a.name);
            assert!(MODULES[i + 1..].iter().all(|b| b.name != a.name), "{} is unique", a.name);
        }
    }
}
