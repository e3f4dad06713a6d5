//! The kernels crate's error type: every variant names the object (module,
//! kernel, buffer, file) that failed.

use std::path::PathBuf;

/// Everything graft-kernels can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No CUDA driver library (libcuda) or NVRTC could be loaded.
    #[error("CUDA is not available: {what} could not be loaded")]
    Unavailable { what: &'static str },

    #[error("CUDA driver call `{op}` failed: {source}")]
    Driver { op: String, source: cudarc::driver::DriverError },

    #[error("device {ordinal} has compute capability {major}.{minor}; graft's kernels need 8.0 or newer")]
    UnsupportedDevice { ordinal: usize, major: i32, minor: i32 },

    #[error("NVRTC could not compile module `{module}` for {arch}: {log}")]
    Compile { module: &'static str, arch: &'static str, log: String },

    #[error("kernel cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },

    /// A launch wrapper was given buffers or sizes that do not fit the kernel.
    #[error("kernel `{kernel}`: {what}")]
    Shape { kernel: &'static str, what: String },
}

impl KernelError {
    /// Wraps a driver error with the name of the call that failed.
    pub(crate) fn driver(op: impl Into<String>) -> impl FnOnce(cudarc::driver::DriverError) -> Self {
        let op = op.into();
        move |source| Self::Driver { op, source }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;
