//! The device a config names.

use tch::Device;

/// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> std::result::Result<Device, String> {
    Ok(match name {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => return Err(format!("{other:?}: expected auto, cpu, cuda or cuda:N")),
        },
    })
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
    }
}
