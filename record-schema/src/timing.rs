//! `timing.json`: what else ran while a cell was timed, and where its time went. Kept beside the
//! run record, not in it, so records of identical runs stay identical.

use crate::LoadSnapshot;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellTiming {
    pub load_start: LoadSnapshot,
    pub load_end: LoadSnapshot,
    /// A reason the timing is known to be disturbed where the two snapshots cannot see it (the
    /// process was paused, or shared the CPUs only mid-cell); written by hand or by a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// From the start of the cell's training to its record's end (its task's data, loaded once
    /// per worker, aside); absent in cells from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseSeconds>,
}

impl CellTiming {
    /// Whether the timing measures more than the cell: loaded at either end, or interrupted.
    pub fn is_loaded(&self) -> bool {
        self.load_start.is_loaded() || self.load_end.is_loaded() || self.interrupted.is_some()
    }
}

/// Host seconds of each part of a run (`baselines::train::run`'s clocks). On the CPU these are
/// the parts' costs; on CUDA a step only queues its work, which then shows up in `device_wait`
/// (the synchronisations at epoch ends and evaluations) and in telemetry steps (which read
/// numbers back).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Networks and optimisers built, data streams started.
    pub setup: f64,
    /// Drawing the next source and target batches.
    pub data: f64,
    /// The method's `train_step` on iterations without telemetry.
    pub step: f64,
    /// `train_step` on telemetry iterations (for `none`: two backward passes instead of one).
    pub measured_step: f64,
    /// Writing the telemetry and loss records, and the finiteness check.
    pub telemetry: f64,
    /// Waiting for the device at epoch ends and evaluations.
    pub device_wait: f64,
    /// Epoch ends: per-epoch statistics (DWL) and the epoch record.
    pub epoch_end: f64,
    /// Evaluations on the target test split (their records included).
    pub evaluation: f64,
    /// Progress display and stop checks.
    pub other: f64,
    /// Iterations trained, of which with telemetry.
    pub iterations: u64,
    pub measured_iterations: u64,
}

impl PhaseSeconds {
    /// Each phase that runs in the training loop (setup aside), in the loop's order, with its
    /// seconds over the run.
    pub fn phases(&self) -> [(&'static str, f64); 8] {
        [
            ("data", self.data),
            ("step", self.step),
            ("measured_step", self.measured_step),
            ("telemetry", self.telemetry),
            ("device_wait", self.device_wait),
            ("epoch_end", self.epoch_end),
            ("evaluation", self.evaluation),
            ("other", self.other),
        ]
    }

    /// [`PhaseSeconds::phases`] per training iteration.
    pub fn per_iteration(&self) -> Vec<(&'static str, f64)> {
        let n = self.iterations.max(1) as f64;
        self.phases().into_iter().map(|(name, s)| (name, s / n)).collect()
    }

    /// Seconds of one iteration without telemetry (`None` when every iteration had it).
    pub fn plain_step(&self) -> Option<f64> {
        let n = self.iterations.checked_sub(self.measured_iterations).filter(|n| *n > 0)?;
        Some(self.step / n as f64)
    }

    /// Seconds of one iteration with telemetry (`None` when none had it).
    pub fn telemetry_step(&self) -> Option<f64> {
        (self.measured_iterations > 0).then(|| self.measured_step / self.measured_iterations as f64)
    }
}
