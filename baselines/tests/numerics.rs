//! The libtorch numerics settings are applied and read back (its own test binary: they are
//! process-wide, and deterministic mode would change what other tests may run).

use baselines::numerics::{gpu_identity, Numerics, Precision};
use tch::Device;

#[test]
fn settings_are_applied_and_read_back() {
    let default = Numerics::default();
    assert_eq!(default.precision, Precision::Tf32);
    Numerics { precision: Precision::Fp32, deterministic: true }.apply().unwrap();
    let f = Numerics { precision: Precision::Fp32, deterministic: true }.in_force();
    assert_eq!((f.deterministic, f.cudnn_benchmark, f.cuda_fp32.as_str()), (true, false, "matmul=ieee conv=ieee"));
    assert!(!Numerics::allows_cudnn_benchmark());
    default.apply().unwrap();
    let f = default.in_force();
    assert_eq!((f.deterministic, f.cuda_fp32.as_str()), (false, "matmul=tf32 conv=tf32"));
    let bf16 = Numerics { precision: Precision::Bf16, deterministic: false };
    bf16.apply().unwrap();
    let f = bf16.in_force();
    assert_eq!((f.precision, f.cuda_fp32.as_str()), (Precision::Bf16, "matmul=tf32 conv=tf32"), "bf16 keeps TF32 for what autocast leaves in float32");
    default.apply().unwrap();
    assert!("fp16".parse::<Precision>().unwrap_err().to_string().contains("fp32, tf32"));
    assert_eq!(gpu_identity(Device::Cpu), None);
}
