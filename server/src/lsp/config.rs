//! The server's settings, from `initializationOptions` and
//! `workspace/didChangeConfiguration` (either the settings object itself or
//! one wrapped as `{"graft": {...}}`), validated as a whole: an invalid
//! update is refused with a message naming the setting, and the previous
//! configuration stays in force.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use graft_engine::apply::ApplyMode;
use graft_engine::backend::Device;
use serde::Deserialize;
use serde_json::Value;

/// How much goes to the log file and `window/logMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LogLevel {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug]
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| ConfigError::Invalid {
                key: "logLevel",
                reason: format!("`{s}` is not error, warn, info or debug"),
            })
    }
}

/// A setting that cannot be used, named as the client spells it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("graft settings: `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("graft settings: {0}")]
    Malformed(serde_json::Error),
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// GGUF file or Hugging Face directory for the model and auto engines.
    pub model_path: PathBuf,
    pub device: Device,
    /// The engine an apply uses unless its request names one.
    pub engine: ApplyMode,
    /// Send edits as change annotations that need the user's confirmation
    /// (when the client supports them).
    pub preview: bool,
    pub log_level: LogLevel,
    pub log_file: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model_path: graft_engine::home::default_model_path(),
            device: Device::Cpu,
            engine: ApplyMode::Auto,
            preview: false,
            log_level: LogLevel::Info,
            log_file: graft_engine::home::graft_home().join("logs").join("lsp.log"),
        }
    }
}

/// The settings as the client sends them; every field optional (absent:
/// the default).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    model_path: Option<String>,
    device: Option<String>,
    engine: Option<String>,
    preview: Option<bool>,
    log_level: Option<String>,
    log_file: Option<String>,
}

impl Config {
    /// The configuration `value` describes (absent or null: the defaults).
    pub fn from_value(value: Option<&Value>) -> Result<Self, ConfigError> {
        let value = match value {
            None | Some(Value::Null) => return Ok(Config::default()),
            Some(Value::Object(map)) if map.len() == 1 && map.contains_key("graft") => &map["graft"],
            Some(value) => value,
        };
        let raw = match value {
            Value::Null => RawConfig::default(),
            value => RawConfig::deserialize(value).map_err(ConfigError::Malformed)?,
        };
        let defaults = Config::default();
        let model_path = match raw.model_path.filter(|p| !p.is_empty()) {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    return Err(ConfigError::Invalid {
                        key: "modelPath",
                        reason: format!("{}: no such file or directory", path.display()),
                    });
                }
                path
            }
            None => defaults.model_path,
        };
        let device = match raw.device.as_deref() {
            None => defaults.device,
            Some(name) => parse_device(name)?,
        };
        let engine = match raw.engine.as_deref() {
            None => defaults.engine,
            Some(name) => ApplyMode::from_str(name).map_err(|_| ConfigError::Invalid {
                key: "engine",
                reason: format!("`{name}` is not merge, model or auto"),
            })?,
        };
        let log_level = match raw.log_level.as_deref() {
            None => defaults.log_level,
            Some(level) => level.parse()?,
        };
        let log_file = raw.log_file.filter(|p| !p.is_empty()).map_or(defaults.log_file, PathBuf::from);
        Ok(Config { model_path, device, engine, preview: raw.preview.unwrap_or(false), log_level, log_file })
    }
}

/// `cpu`, `cuda` (GPU 0) or `cuda:N`. Whether this build and machine can
/// use the device shows when the model loads (`graft/status`, the apply's
/// error), never as a silent fallback to another device.
fn parse_device(name: &str) -> Result<Device, ConfigError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(Device::Cuda(ordinal)),
            _ => Err(ConfigError::Invalid { key: "device", reason: format!("`{name}` is not cpu, cuda or cuda:N") }),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_settings_are_the_defaults_and_a_graft_wrapper_is_unwrapped() {
        assert_eq!(Config::from_value(None).expect("defaults"), Config::default());
        let config = Config::from_value(Some(&json!({"graft": {"engine": "merge", "preview": true}}))).expect("valid");
        assert_eq!(config.engine, ApplyMode::Merge);
        assert!(config.preview);
        let config = Config::from_value(Some(&json!({"device": "cuda:1"}))).expect("valid");
        assert_eq!(config.device, Device::Cuda(1));
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let cases = [
            (json!({"engine": "fast"}), "`engine`: `fast` is not merge, model or auto"),
            (json!({"device": "gpu"}), "`device`: `gpu` is not cpu, cuda or cuda:N"),
            (json!({"logLevel": "loud"}), "`logLevel`: `loud`"),
            (json!({"modelPath": "/nonexistent/model.gguf"}), "`modelPath`: /nonexistent/model.gguf: no such file"),
            (json!({"enigne": "merge"}), "unknown field `enigne`"),
            (json!({"preview": "yes"}), "invalid type"),
        ];
        for (value, expected) in cases {
            let err = Config::from_value(Some(&value)).expect_err("invalid");
            assert!(err.to_string().contains(expected), "{value}: {err}");
        }
    }
}
