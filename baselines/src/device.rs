//! Choosing where tensors live: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, `cuda`,
//! `cuda:N`.

use anyhow::{bail, Context, Result};
use tch::Device;

/// Parses a device name; `cuda` requests fail with a reason when no GPU is usable.
pub fn select(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let index = match spec.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .with_context(|| format!("device '{spec}': expected cuda or cuda:N"))?,
                None => bail!("unknown device '{spec}': expected auto, cpu, cuda or cuda:N"),
            };
            let count = tch::Cuda::device_count() as usize;
            if count == 0 {
                bail!("device '{spec}' requested but libtorch sees no CUDA GPU (driver missing, or a CPU-only machine); use --device cpu or auto");
            }
            if index >= count {
                bail!("device '{spec}' requested but only {count} CUDA GPU(s) are visible");
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Waits for the device's queued work (timings on CUDA are otherwise meaningless); no-op on CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Human-readable name, as recorded in run configurations.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_nonsense() {
        assert_eq!(select("cpu").unwrap(), Device::Cpu);
        assert!(select("auto").is_ok());
        assert!(select("tpu").unwrap_err().to_string().contains("expected auto, cpu"));
        assert!(select("cuda:x").unwrap_err().to_string().contains("cuda:N"));
        if !tch::Cuda::is_available() {
            assert!(select("cuda").unwrap_err().to_string().contains("no CUDA GPU"));
        }
    }
}
