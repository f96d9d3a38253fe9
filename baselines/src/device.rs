//! Choosing where tensors live: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, `cuda`,
//! `cuda:N`.

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};

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

/// A host tensor on `device`, without waiting for the copy on CUDA: through page-locked memory
/// and a non-blocking copy (libtorch's host allocator keeps the pinned block until the copy is
/// done, so the host tensor may be dropped at once). A plain copy elsewhere.
///
/// Pinned through `_pin_memory`: `Tensor::pin_memory(device)`, tch's only form, passes a device,
/// which libtorch 2.11 deprecates with two warnings per call (pin_memory's and is_pinned's),
/// i.e. eight lines per image step; `_pin_memory` makes the same copy without them.
pub fn upload(host: &Tensor, device: Device) -> Tensor {
    if device.is_cuda() {
        host.internal_pin_memory(device).to_device_(device, host.kind(), true, false)
    } else {
        host.to_device(device)
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

/// The libtorch a run actually loaded, as "2.11.0+cu130" (recorded with every run: results are
/// reproducible only with the same libtorch). Read at run time, not at build time, because a
/// binary can be pointed at another libtorch (the GPU bundle uses the machine's PyTorch): the
/// loaded `libtorch_cpu.so` is found in /proc/self/maps, and its version beside it, in PyTorch's
/// `torch/version.py` (a wheel) or `build-version` (a libtorch archive). None where neither exists.
pub fn libtorch_version() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so"))?;
    let root = std::path::Path::new(lib).parent()?.parent()?;
    libtorch_version_in(root)
}

/// The version recorded in a libtorch root (PyTorch's `torch/` folder or a libtorch archive's).
pub fn libtorch_version_in(root: &std::path::Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.trim_start().starts_with("__version__"))?;
        let value = line.split_once('=')?.1.trim().trim_matches(|c| c == '\'' || c == '"');
        return (!value.is_empty()).then(|| value.to_owned());
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    let value = text.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// CUDA runtime and cuDNN versions libtorch reports, for runs on a GPU ("CUDA runtime 13000,
/// cuDNN 91900"); None on CPU.
pub fn cuda_versions(device: Device) -> Option<String> {
    match device {
        Device::Cuda(_) => Some(format!("CUDA runtime {}, cuDNN {}", tch::utils::version_cudart(), tch::utils::version_cudnn())),
        _ => None,
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

    #[test]
    fn the_loaded_libtorch_version_is_the_venvs() {
        // The tests link the venv's PyTorch (setup pins it): the version read from the mapped
        // library must be the one that PyTorch's own version.py states.
        let found = libtorch_version().expect("libtorch_cpu.so is mapped and has a version beside it");
        assert!(found.starts_with("2.11.0"), "{found}");
        assert_eq!(cuda_versions(Device::Cpu), None);
    }

    #[test]
    fn versions_read_from_a_wheel_or_an_archive() {
        let dir = std::env::temp_dir().join(format!("libtorch-version-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(libtorch_version_in(&dir), None);
        std::fs::write(dir.join("build-version"), "2.11.0+cpu\n").unwrap();
        assert_eq!(libtorch_version_in(&dir).as_deref(), Some("2.11.0+cpu"));
        std::fs::write(dir.join("version.py"), "from typing import Optional\n__version__ = '2.11.0+cu130'\ndebug = False\n").unwrap();
        assert_eq!(libtorch_version_in(&dir).as_deref(), Some("2.11.0+cu130"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
