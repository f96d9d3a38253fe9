//! `--precision` and `--deterministic`, shared by `run-one`, `run` and `reproduce-all`.

use baselines::numerics::{Numerics, Precision};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct NumericsArgs {
    /// Float32 precision of CUDA matmuls and convolutions: tf32 (what the paper's code ran:
    /// PyTorch 1.8.1 enables TF32 for both by default), fp32 (IEEE), or bf16 (bfloat16 autocast
    /// of forward passes and losses, backward and optimiser in float32; not what the paper ran,
    /// on the CPU too). Recorded with every GPU or bf16 run; tf32 / fp32 change nothing on the
    /// CPU. A grid's runs folder keeps the setting of its first run (numerics.json)
    #[arg(long, default_value = "tf32")]
    pub precision: Precision,
    /// Deterministic algorithms where libtorch has them (an error names an operation that has
    /// none), deterministic cuDNN with benchmark mode off, CUBLAS_WORKSPACE_CONFIG=:4096:8.
    /// Recorded with every GPU run. Off by default, as in the released code
    #[arg(long)]
    pub deterministic: bool,
}

impl NumericsArgs {
    pub fn numerics(&self) -> Numerics {
        Numerics { precision: self.precision, deterministic: self.deterministic }
    }

    /// Applies them to this process's libtorch (before any CUDA work).
    pub fn apply(&self) -> anyhow::Result<()> {
        self.numerics().apply()
    }

    /// The same flags for a worker process.
    pub fn worker_args(&self) -> Vec<String> {
        let mut out = vec!["--precision".to_owned(), self.precision.name().to_owned()];
        if self.deterministic {
            out.push("--deterministic".to_owned());
        }
        out
    }
}
