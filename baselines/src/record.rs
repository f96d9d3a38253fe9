//! The machine-readable record of a run: JSON lines, one event per line.
//!
//! ```text
//! {"event":"config", "spec":{...}, "deviations":[...], "device":..., "data":{...}, ...}
//! {"event":"telemetry", "iteration":i, "pair":"stepB", "d":..., "cos":..., "norm1":..., "norm2":...,
//!  "conflict":..., "w1":..., "w2":..., "clamped":...}
//! {"event":"losses", "iteration":i, "values":{...}}
//! {"event":"epoch", "epoch":e, "iteration":i, "train_seconds":s, ...}
//! {"event":"eval", "iteration":i, "epoch":e, "heads":{...}, "accuracy":a, "heads_mean_class":{...}, "mean_class_accuracy":m}
//! {"event":"summary", ... RunSummary ...}
//! ```
//!
//! The record is written to `run.jsonl.partial` and renamed to `run.jsonl` only once the run has
//! finished, so a `run.jsonl` is always complete.

use crate::harmonizer::Harmonization;
use crate::train::{Evaluation, RunObserver, RunSpec, RunSummary};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use record_schema::RECORD_FILE;

/// Facts about where and on what a run ran, recorded beside its spec.
#[derive(Clone, Debug, Serialize)]
pub struct RunContext {
    pub device: String,
    pub torch_threads: i32,
    pub data_root: String,
    pub source_train: String,
    pub target_train: String,
    pub target_test: String,
    pub deviations: Vec<String>,
    pub suite_version: String,
    /// The libtorch loaded (`device::libtorch_version`); null where it could not be read.
    pub libtorch: Option<String>,
    /// CUDA runtime and cuDNN versions on a GPU; null on CPU.
    pub cuda: Option<String>,
    /// The GPU's name and UUID (nvidia-smi); null on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::numerics::GpuIdentity>,
    /// Float32 precision and determinism in force on a GPU; null on CPU, where they change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerics: Option<crate::numerics::NumericsInForce>,
    pub started_unix: u64,
}

pub struct JsonlRecorder {
    partial: PathBuf,
    final_path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlRecorder {
    /// Starts a record in `dir` (created if needed) with the run's configuration.
    pub fn create(dir: &Path, spec: &RunSpec, context: &RunContext) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = dir.join(format!("{RECORD_FILE}.partial"));
        let out = BufWriter::new(File::create(&partial).with_context(|| format!("creating {}", partial.display()))?);
        let mut r = JsonlRecorder { partial, final_path: dir.join(RECORD_FILE), out };
        r.write(&json!({"event": "config", "spec": spec, "context": context}))?;
        Ok(r)
    }

    fn write(&mut self, value: &serde_json::Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Writes the summary and makes the record visible as `run.jsonl`.
    pub fn finish(mut self, summary: &RunSummary) -> Result<PathBuf> {
        let mut value = serde_json::to_value(summary)?;
        value["event"] = json!("summary");
        self.write(&value)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.partial, &self.final_path)
            .with_context(|| format!("renaming {} to {}", self.partial.display(), self.final_path.display()))?;
        Ok(self.final_path)
    }
}

impl RunObserver for JsonlRecorder {
    fn telemetry(&mut self, iteration: u64, records: &[(String, Harmonization)], losses: &[(String, f64)]) -> Result<()> {
        for (pair, h) in records {
            let mut v = serde_json::to_value(h)?;
            v["event"] = json!("telemetry");
            v["iteration"] = json!(iteration);
            v["pair"] = json!(pair);
            self.write(&v)?;
        }
        if !losses.is_empty() {
            let values: serde_json::Map<String, serde_json::Value> = losses.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            self.write(&json!({"event": "losses", "iteration": iteration, "values": values}))?;
        }
        Ok(())
    }

    fn epoch(&mut self, epoch: u64, iteration: u64, train_seconds: f64, extra: &[(String, f64)]) -> Result<()> {
        let mut v = json!({"event": "epoch", "epoch": epoch, "iteration": iteration, "train_seconds": train_seconds});
        for (k, x) in extra {
            v[k] = json!(x);
        }
        self.write(&v)?;
        self.out.flush()?;
        Ok(())
    }

    fn evaluation(&mut self, eval: &Evaluation) -> Result<()> {
        let mut v = serde_json::to_value(eval)?;
        v["event"] = json!("eval");
        self.write(&v)?;
        self.out.flush()?;
        Ok(())
    }
}

/// Forwards every event to two observers (the record and a progress display).
pub struct Tee<'a>(pub &'a mut dyn RunObserver, pub &'a mut dyn RunObserver);

impl RunObserver for Tee<'_> {
    fn telemetry(&mut self, i: u64, r: &[(String, Harmonization)], l: &[(String, f64)]) -> Result<()> {
        self.0.telemetry(i, r, l)?;
        self.1.telemetry(i, r, l)
    }
    fn epoch(&mut self, e: u64, i: u64, s: f64, x: &[(String, f64)]) -> Result<()> {
        self.0.epoch(e, i, s, x)?;
        self.1.epoch(e, i, s, x)
    }
    fn evaluation(&mut self, eval: &Evaluation) -> Result<()> {
        self.0.evaluation(eval)?;
        self.1.evaluation(eval)
    }
    fn progress(&mut self, i: u64) {
        self.0.progress(i);
        self.1.progress(i);
    }
    fn stop_requested(&self) -> Option<String> {
        self.0.stop_requested().or_else(|| self.1.stop_requested())
    }
}
