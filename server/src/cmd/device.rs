//! `--device auto|cpu|cuda[:N]`: which backend a command runs on. `auto`
//! takes GPU 0 when this build has CUDA and a GPU works (and says so on
//! stderr), else the CPU, with the reason on stderr when a CUDA build found
//! no usable GPU.

use std::path::Path;

use anyhow::Context;
use graft_engine::backend::Device;
use graft_engine::{Engine, EngineOptions};

/// The `--device` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Auto,
    Fixed(Device),
}

/// Parses `auto`, `cpu`, `cuda` (device 0) or `cuda:N`.
pub fn parse_device(value: &str) -> Result<DeviceArg, String> {
    match value {
        "auto" => Ok(DeviceArg::Auto),
        "cpu" => Ok(DeviceArg::Fixed(Device::Cpu)),
        "cuda" => Ok(DeviceArg::Fixed(Device::Cuda(0))),
        _ => match value.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(DeviceArg::Fixed(Device::Cuda(ordinal))),
            _ => Err(format!("`{value}`: expected auto, cpu, cuda or cuda:N")),
        },
    }
}

/// Loads `model_path` on the chosen device.
pub fn load_engine(model_path: &Path, device: DeviceArg) -> anyhow::Result<Engine> {
    let load = |device| {
        let options = EngineOptions { device, ..EngineOptions::default() };
        Engine::load(model_path, &options).with_context(|| format!("loading {} on {device}", model_path.display()))
    };
    match device {
        DeviceArg::Fixed(device) => load(device),
        DeviceArg::Auto if cfg!(feature = "cuda") => match load(Device::Cuda(0)) {
            Ok(engine) => {
                eprintln!("graft: running on {}", engine.backend().describe());
                Ok(engine)
            }
            Err(err) => {
                eprintln!("graft: no usable GPU ({err:#}); running on the CPU");
                load(Device::Cpu)
            }
        },
        DeviceArg::Auto => load(Device::Cpu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!(parse_device("auto"), Ok(DeviceArg::Auto));
        assert_eq!(parse_device("cpu"), Ok(DeviceArg::Fixed(Device::Cpu)));
        assert_eq!(parse_device("cuda"), Ok(DeviceArg::Fixed(Device::Cuda(0))));
        assert_eq!(parse_device("cuda:3"), Ok(DeviceArg::Fixed(Device::Cuda(3))));
        assert!(parse_device("cuda:x").is_err());
        assert!(parse_device("gpu").is_err());
    }
}
