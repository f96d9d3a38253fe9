//! A run's summary (the cell's `done` file and the run record's last line) and its evaluations.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One evaluation on the target test split (the run record's `eval` lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Iterations done when evaluated.
    pub iteration: u64,
    pub epoch: f64,
    /// Accuracy of each head on the target test split.
    pub heads: BTreeMap<String, f64>,
    /// The reported accuracy: the best head (MCD: max(F1, F2); DWL: max over its five).
    pub accuracy: f64,
    /// Mean per-class accuracy (the mean of per-class recalls over the classes present in the
    /// test set) of each head.
    #[serde(default)]
    pub heads_mean_class: BTreeMap<String, f64>,
    /// The mean per-class accuracy of the head that gives the reported accuracy.
    #[serde(default)]
    pub mean_class_accuracy: Option<f64>,
}

/// One harmonized pair over a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairSummary {
    /// Steps whose backward included this pair's two losses (the transfer loss trained).
    #[serde(default)]
    pub formed_steps: u64,
    /// Steps where the harmonizer changed a weight (w1 or w2 not 1): GH / GH++ only.
    #[serde(default)]
    pub reweighted_steps: u64,
    /// Steps whose dot products were measured (every harmonized step for GH / GH++; the
    /// telemetry steps for `none`).
    pub measured_steps: u64,
    /// Fraction of measured steps with d < 0.
    pub conflict_rate: Option<f64>,
    pub mean_w1_in_conflict: Option<f64>,
    pub mean_w2_in_conflict: Option<f64>,
    pub mean_cos: Option<f64>,
    pub clamped_steps: u64,
}

/// What a run's steps trained, against what was asked (a run that never trained its baseline's
/// transfer loss, or never met its harmonizer, is not a result of that baseline or harmonizer).
/// `baselines::train::judge_trained` decides it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trained {
    /// Every harmonized pair of the method was formed in some step (or the method has none).
    #[default]
    AsAsked,
    /// The method's transfer loss never entered a step (harmonizer none).
    NotAdapted,
    /// GH / GH++ was asked but no step formed the pair it harmonizes.
    NotHarmonized,
}

impl Trained {
    pub fn label(self) -> &'static str {
        match self {
            Trained::AsAsked => "as-asked",
            Trained::NotAdapted => "not-adapted",
            Trained::NotHarmonized => "not-harmonized",
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum RunStatus {
    Completed,
    /// A loss, a harmonizer weight or the network's outputs became non-finite: training stopped
    /// there. The run is a result (reported as diverged), not an error.
    Diverged {
        iteration: u64,
        /// What became non-finite (empty in hand-edited or foreign records that omit it).
        #[serde(default)]
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub status: RunStatus,
    /// Iterations trained.
    pub iterations: u64,
    /// Accuracy after the last iteration (none when diverged).
    pub final_accuracy: Option<f64>,
    /// Mean per-class accuracy after the last iteration (none when diverged).
    #[serde(default)]
    pub final_mean_class_accuracy: Option<f64>,
    pub final_heads: BTreeMap<String, f64>,
    /// Best accuracy over all evaluations: oracle selection on target test labels, reported by
    /// the released code for CDAN, GVB, MCD and DWL. Labelled as such everywhere. None when
    /// diverged.
    pub best_accuracy_oracle: Option<f64>,
    pub best_iteration: Option<u64>,
    /// Training time only (evaluation excluded).
    pub train_seconds: f64,
    pub seconds_per_epoch: f64,
    pub seconds_per_100_steps: f64,
    pub harmonization: BTreeMap<String, PairSummary>,
    /// Whether the steps trained what was asked (see [`Trained`]); shown and left out of claims
    /// by the report when not.
    #[serde(default)]
    pub trained: Trained,
    /// Where the run's wall-clock time went. Not part of the record (a timing, like the load
    /// snapshots, it goes to the cell's `timing.json`), so records stay byte-comparable.
    #[serde(skip)]
    pub phases: crate::PhaseSeconds,
}
