//! How a run computes: float32 precision of CUDA matmuls and convolutions, bfloat16 autocast,
//! and determinism. Set once per process before training ([`Numerics::apply`]) and recorded with
//! every run ([`Numerics::in_force`]), with the GPU's name and UUID ([`gpu_identity`]). On the
//! CPU, fp32 / tf32 and determinism change nothing (libtorch's CPU kernels compute float32 in
//! float32 either way); bf16 does: it autocasts the CPU's forward passes too.
//!
//! bf16 autocast, as PyTorch's `torch.autocast(device, dtype=torch.bfloat16)` recommends: the
//! training loop holds an [`AutocastScope`] over the forward passes and losses of each step and
//! over evaluation; every backward pass (and the harmonizer's arithmetic on the gradients) runs
//! with autocast suspended ([`AutocastScope::suspend`]), which also drops autocast's cache of
//! bfloat16 weight copies before an optimiser step can change the weights. Parameters, gradients,
//! optimiser state and the harmonizer's weights stay float32; bfloat16 needs no loss scaling.
//!
//! libtorch's global settings that tch does not bind go through cpp/context.cpp.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_int, CStr, CString};
use tch::Device;

unsafe extern "C" {
    fn gh_set_deterministic(on: c_int, error: *mut c_char, size: usize) -> c_int;
    fn gh_deterministic_algorithms() -> c_int;
    fn gh_benchmark_cudnn() -> c_int;
    fn gh_set_cuda_fp32_precision(precision: *const c_char, error: *mut c_char, size: usize) -> c_int;
    fn gh_cuda_fp32_precision(out: *mut c_char, size: usize);
    fn gh_autocast_set(cuda: c_int, on: c_int, was_on: *mut c_int, was_bf16: *mut c_int, error: *mut c_char, size: usize) -> c_int;
    fn gh_autocast_restore(cuda: c_int, was_on: c_int, was_bf16: c_int, error: *mut c_char, size: usize) -> c_int;
    fn gh_autocast_enabled(cuda: c_int) -> c_int;
}

/// The float32 precision of CUDA matmuls and convolutions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// IEEE float32 throughout.
    Fp32,
    /// TensorFloat-32 for matmuls and convolutions (10-bit mantissa products, float32 sums). The
    /// default: PyTorch 1.8.1, which the released code pins, enables TF32 for both by default
    /// (`torch.backends.cuda.matmul.allow_tf32` and `cudnn.allow_tf32` were True until 1.12), so
    /// on a GPU that has TF32 this is what the paper's code ran.
    #[default]
    Tf32,
    /// bfloat16 autocast of the forward passes and losses (PyTorch's autocast lists decide which
    /// operations run in bfloat16: convolutions, matmuls, attention; losses, softmax and
    /// reductions stay float32), on the CPU as on CUDA; float32 operations outside autocast use
    /// TF32 on CUDA. Not what the paper ran: a speed option, recorded with every run.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "ieee" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => bail!("unknown precision '{s}': expected fp32, tf32 (default: what the paper's PyTorch 1.8.1 ran) or bf16"),
        }
    }
}

/// A process's numerics settings, as asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numerics {
    pub precision: Precision,
    /// Deterministic algorithms (libtorch errors where an operation has none), deterministic
    /// cuDNN, cuDNN benchmark mode off. Off by default, as in the released code (which turns
    /// benchmark mode on).
    pub deterministic: bool,
}

/// The settings last applied in this process (the defaults before any).
static ASKED: std::sync::Mutex<Numerics> = std::sync::Mutex::new(Numerics { precision: Precision::Tf32, deterministic: false });

/// What this process runs with now: the settings last applied, read back from libtorch.
pub fn in_force_now() -> NumericsInForce {
    asked().in_force()
}

/// The settings last applied in this process ([`Numerics::default`] before any).
pub fn asked() -> Numerics {
    *ASKED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The settings in force, as recorded with a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumericsInForce {
    pub precision: Precision,
    pub deterministic: bool,
    /// What libtorch reports, e.g. "matmul=tf32 conv=tf32" (CUDA's float32 precisions).
    pub cuda_fp32: String,
    pub cudnn_benchmark: bool,
}

impl Numerics {
    /// Applies the settings to libtorch (process-wide). cuBLAS needs its workspace fixed for
    /// deterministic results: CUBLAS_WORKSPACE_CONFIG is set (before CUDA starts) unless given.
    pub fn apply(&self) -> Result<()> {
        if self.deterministic && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
            // SAFETY: called at start-up, before any thread of ours reads the environment.
            unsafe { std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8") };
        }
        let mut error = vec![0 as c_char; 512];
        let precision = CString::new(match self.precision {
            Precision::Fp32 => "ieee",
            _ => "tf32",
        })?;
        // SAFETY: the shim writes at most `error.len()` bytes, NUL-terminated.
        if unsafe { gh_set_cuda_fp32_precision(precision.as_ptr(), error.as_mut_ptr(), error.len()) } != 0 {
            bail!("setting the CUDA float32 precision: {}", message(&error));
        }
        if unsafe { gh_set_deterministic(c_int::from(self.deterministic), error.as_mut_ptr(), error.len()) } != 0 {
            bail!("setting deterministic algorithms: {}", message(&error));
        }
        *ASKED.lock().unwrap_or_else(|e| e.into_inner()) = *self;
        Ok(())
    }

    /// What libtorch has in force now (read back, not assumed).
    pub fn in_force(&self) -> NumericsInForce {
        let mut out = vec![0 as c_char; 128];
        // SAFETY: as in `apply`.
        unsafe { gh_cuda_fp32_precision(out.as_mut_ptr(), out.len()) };
        NumericsInForce {
            precision: self.precision,
            deterministic: unsafe { gh_deterministic_algorithms() } != 0,
            cuda_fp32: message(&out),
            cudnn_benchmark: unsafe { gh_benchmark_cudnn() } != 0,
        }
    }

    /// Whether these settings can change a run's results on `device` (and so are recorded with it
    /// and shown in its plan): all of them on CUDA; on the CPU only bf16's autocast.
    pub fn changes_results_on(&self, device: Device) -> bool {
        device.is_cuda() || self.precision == Precision::Bf16
    }

    /// Whether training may turn cuDNN's benchmark mode on (not when deterministic).
    pub fn allows_cudnn_benchmark() -> bool {
        (unsafe { gh_deterministic_algorithms() }) == 0
    }
}

/// Autocast on this thread, changed for as long as the scope lives and restored when it drops
/// (autocast state is thread-local, as in PyTorch). Scopes nest: drop them in reverse order.
#[must_use = "autocast is restored when the scope drops"]
pub struct AutocastScope {
    /// (device type is CUDA, was on, was bfloat16) per device type changed.
    previous: Vec<(bool, bool, bool)>,
}

impl AutocastScope {
    /// bfloat16 autocast for `device`'s type when this process applied `--precision bf16`;
    /// None (nothing changed) otherwise.
    pub fn for_forward(device: Device) -> Result<Option<AutocastScope>> {
        if asked().precision != Precision::Bf16 {
            return Ok(None);
        }
        Self::bf16(device).map(Some)
    }

    /// bfloat16 autocast for `device`'s type, whatever the process's settings.
    pub fn bf16(device: Device) -> Result<AutocastScope> {
        let mut scope = AutocastScope { previous: Vec::new() };
        scope.set(device.is_cuda(), true)?;
        Ok(scope)
    }

    /// Autocast off on both device types (a no-op where it was off): for backward passes and
    /// arithmetic on gradients, which PyTorch's autocast guidance keeps outside autocast.
    pub fn suspend() -> Result<AutocastScope> {
        let mut scope = AutocastScope { previous: Vec::new() };
        for cuda in [false, true] {
            if enabled(cuda) {
                scope.set(cuda, false)?;
            }
        }
        Ok(scope)
    }

    fn set(&mut self, cuda: bool, on: bool) -> Result<()> {
        let mut error = vec![0 as c_char; 512];
        let (mut was_on, mut was_bf16) = (0, 0);
        // SAFETY: the shim writes the two ints and at most `error.len()` bytes, NUL-terminated.
        if unsafe { gh_autocast_set(c_int::from(cuda), c_int::from(on), &mut was_on, &mut was_bf16, error.as_mut_ptr(), error.len()) } != 0 {
            bail!("setting autocast: {}", message(&error));
        }
        self.previous.push((cuda, was_on != 0, was_bf16 != 0));
        Ok(())
    }
}

impl Drop for AutocastScope {
    fn drop(&mut self) {
        let mut error = vec![0 as c_char; 512];
        for &(cuda, was_on, was_bf16) in self.previous.iter().rev() {
            // SAFETY: as in `set`. Restoring a state libtorch gave us cannot fail; if it did,
            // the next scope's read would show it, so the error is only reported.
            if unsafe { gh_autocast_restore(c_int::from(cuda), c_int::from(was_on), c_int::from(was_bf16), error.as_mut_ptr(), error.len()) } != 0 {
                eprintln!("warning: restoring autocast: {}", message(&error));
            }
        }
    }
}

/// Whether autocast is on on this thread for CUDA (`cuda`) or the CPU.
pub fn enabled(cuda: bool) -> bool {
    // SAFETY: reads thread-local state.
    unsafe { gh_autocast_enabled(c_int::from(cuda)) != 0 }
}

fn message(buffer: &[c_char]) -> String {
    // SAFETY: the shim NUL-terminates within the buffer (which starts zeroed).
    unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned()
}

/// A GPU's name and UUID, as `nvidia-smi` reports them (libtorch does not expose the UUID);
/// None on the CPU, or where nvidia-smi is missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuIdentity {
    pub name: String,
    pub uuid: String,
}

pub fn gpu_identity(device: Device) -> Option<GpuIdentity> {
    let Device::Cuda(i) = device else { return None };
    // CUDA_VISIBLE_DEVICES renumbers the GPUs libtorch sees; nvidia-smi takes the same selector.
    let selector = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) if !v.trim().is_empty() => v.split(',').nth(i).map(|s| s.trim().to_owned())?,
        _ => i.to_string(),
    };
    let out = std::process::Command::new("nvidia-smi").args(["--query-gpu=name,uuid", "--format=csv,noheader", "-i", &selector]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (name, uuid) = text.lines().next()?.split_once(',')?;
    Some(GpuIdentity { name: name.trim().to_owned(), uuid: uuid.trim().to_owned() })
}
