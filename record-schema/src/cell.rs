//! `cell.json`: what a grid cell is (labels for the report, the run's spec, deviations).

use serde::{Deserialize, Serialize};

/// A cell's `cell.json`. `Spec` is the run's spec: `baselines::train::RunSpec` where it is
/// written and run, a JSON value where it is only read (the report, which needs no libtorch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellInfo<Spec = serde_json::Value> {
    pub hash: String,
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    /// The harmonizer's label: none, gh, gh++, gh++(α=0.25), gh(scope-only), ...
    pub harmonizer: String,
    pub seed: u64,
    pub spec: Option<Spec>,
    /// Why the cell cannot run in this build.
    pub unsupported: Option<String>,
    /// Departures from the paper's protocol (the run record adds data stand-ins).
    #[serde(default)]
    pub deviations: Vec<String>,
}

impl<Spec> CellInfo<Spec> {
    /// `digits/M-U cdan gh seed 1`.
    pub fn label(&self) -> String {
        format!("{}/{} {} {} seed {}", self.dataset, self.task, self.baseline, self.harmonizer, self.seed)
    }
}

/// `<runs>/profiles/<profile>.json`: the profile's cells, written by every worker that runs it.
/// A cell that cannot run in the build that wrote it has an empty `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileManifest<Spec = serde_json::Value> {
    pub profile: String,
    /// The profile whose report this one's cells join: an arm run into the same runs folder
    /// (e.g. GH++'s rotation rule beside a profile's released rule, paired by seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_with: Option<String>,
    pub cells: Vec<CellInfo<Spec>>,
}

impl ProfileManifest {
    /// Where a profile's manifest lives.
    pub fn path(runs: &std::path::Path, profile: &str) -> std::path::PathBuf {
        runs.join("profiles").join(format!("{profile}.json"))
    }
}
