//! The device a config names.
//!
//! Checking a name and resolving it are two steps: configs are validated by every stage at load,
//! and resolving `auto` asks libtorch whether CUDA is there. Keeping that call out of validation
//! keeps libtorch out of the image stages (crop, faces), which the release build's LTO then links
//! without it (no ~0.3 s library load at their start, no CUDA probe).

use tch::Device;

/// A device name as written in a config, not yet looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    /// CUDA device 0 when libtorch sees one, otherwise the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceName {
    /// `auto`, `cpu`, `cuda` or `cuda:N`; anything else is refused by name.
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        Ok(match name {
            "auto" => Self::Auto,
            "cpu" => Self::Cpu,
            "cuda" => Self::Cuda(0),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Self::Cuda(n),
                None => return Err(format!("{other:?}: expected auto, cpu, cuda or cuda:N")),
            },
        })
    }

    pub fn resolve(self) -> Device {
        match self {
            Self::Auto => Device::cuda_if_available(),
            Self::Cpu => Device::Cpu,
            Self::Cuda(n) => Device::Cuda(n),
        }
    }
}

/// Parse and resolve in one step, for the stages that are about to run a model.
pub fn parse_device(name: &str) -> std::result::Result<Device, String> {
    DeviceName::parse(name).map(DeviceName::resolve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_devices_and_others_are_refused_by_name() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device("cuda"), Ok(Device::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Ok(Device::Cuda(3)));
        let err = parse_device("cuda:x").unwrap_err();
        assert!(err.contains("\"cuda:x\"") && err.contains("cuda:N"), "{err}");
        assert!(parse_device("gpu").is_err());
        assert_eq!(DeviceName::parse("auto"), Ok(DeviceName::Auto));
        assert!(DeviceName::parse("cuda:").is_err() && DeviceName::parse("").is_err());
    }
}
