//! `bench-suite bench-speed`'s record, `<runs>/bench-speed/<profile>.json`: controlled timings of
//! a profile's arms, which the report prefers to the grid cells' own timings.

use crate::LoadSnapshot;
use serde::{Deserialize, Serialize};

/// One arm: a task × baseline × harmonizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedArm {
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    pub harmonizer: String,
    pub batch: usize,
    /// Training seconds per 100 iterations, one value per round.
    pub seconds_per_100: Vec<f64>,
    /// Per round, this arm's time over the `none` arm's time in the same round (empty for `none`
    /// and where the profile has no `none` arm).
    pub ratio_to_none: Vec<f64>,
}

impl SpeedArm {
    pub fn median(&self) -> f64 {
        median(&self.seconds_per_100)
    }
}

/// The median (mean of the middle two for an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedRecord {
    pub profile: String,
    pub suite_version: String,
    pub device: String,
    /// The libtorch loaded; absent in records written before it was recorded.
    #[serde(default)]
    pub libtorch: Option<String>,
    /// CUDA runtime and cuDNN versions on a GPU.
    #[serde(default)]
    pub cuda: Option<String>,
    pub torch_threads: i32,
    pub rounds: usize,
    pub iterations_per_round: usize,
    pub warmup: usize,
    pub load_before: LoadSnapshot,
    pub load_after: LoadSnapshot,
    pub seconds: f64,
    /// What libtorch had in force where it changes the speed (CUDA, or bf16 on any device):
    /// precision, deterministic, CUDA's float32 precisions, cuDNN benchmark mode (baselines'
    /// `NumericsInForce`, as a cell's run record holds it). Absent on the CPU at tf32 / fp32 and
    /// in records written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerics: Option<serde_json::Value>,
    pub arms: Vec<SpeedArm>,
}

impl SpeedRecord {
    /// The precision the benchmark ran with, where its numerics are recorded ("bf16", "tf32", ...).
    pub fn precision(&self) -> Option<&str> {
        self.numerics.as_ref().and_then(|n| n["precision"].as_str())
    }

    /// Where the record of a profile lives.
    pub fn path(runs: &std::path::Path, profile: &str) -> std::path::PathBuf {
        runs.join("bench-speed").join(format!("{profile}.json"))
    }
}
