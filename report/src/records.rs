//! Reading the grid's cells: `<runs>/profiles/<profile>.json` names them, each finished cell has
//! `cell.json` (labels, spec, deviations), `done` (summary) and `run.jsonl` (the run record).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One finished cell, with what the report needs from its record.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRecord {
    pub hash: String,
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    /// The harmonizer's label: none, gh, gh++, gh++(α=0.25), gh(scope-only), ...
    pub harmonizer: String,
    /// none, gh or gh++.
    pub harmonizer_method: String,
    pub alpha: f64,
    pub seed: u64,
    pub diverged_at: Option<u64>,
    /// `not-adapted` / `not-harmonized`: the run never trained its baseline's transfer loss or
    /// harmonized pair (the summary's `trained`), so its accuracies are left out like a diverged
    /// run's; None for runs that trained what was asked (and records from before the field).
    pub not_trained: Option<String>,
    /// Percent.
    pub final_accuracy: Option<f64>,
    pub best_accuracy: Option<f64>,
    pub seconds_per_epoch: f64,
    pub seconds_per_100_steps: f64,
    /// Seconds spent in training steps over the run (evaluations and data loading aside).
    pub train_seconds: f64,
    /// Whether the machine was loaded when the cell was timed (`timing.json`: load averages and
    /// suite processes at its start and end, or an `interrupted` reason); `None` for cells
    /// recorded before that existed.
    pub timing_loaded: Option<bool>,
    /// Where the cell's time went (`timing.json`'s `phases`); `None` for cells recorded before
    /// the suite split its time.
    pub phases: Option<record_schema::PhaseSeconds>,
    /// From the start of the cell's training to its record's end (`timing.json`).
    pub wall_seconds: Option<f64>,
    pub iterations: u64,
    pub deviations: Vec<String>,
    /// Where it ran, as recorded ("cpu (2 threads)", "cuda:0").
    pub device: String,
    /// The libtorch it ran with ("2.11.0+cu130"), plus CUDA's versions on a GPU; None for records
    /// written before the suite recorded it.
    pub libtorch: Option<String>,
    pub suite_version: String,
    /// Per harmonized pair: (measured steps, conflict rate, mean w1 and w2 in conflict).
    pub pairs: BTreeMap<String, PairStats>,
    /// (iteration, accuracy %) of every evaluation.
    pub evaluations: Vec<(u64, f64)>,
    pub telemetry: Vec<Telemetry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairStats {
    pub measured_steps: u64,
    pub conflict_rate: Option<f64>,
    pub mean_w1: Option<f64>,
    pub mean_w2: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub iteration: u64,
    pub pair: String,
    pub d: f64,
    pub cos: f64,
    pub conflict: bool,
    pub w1: f64,
    pub w2: f64,
    /// The harmonized pair's inner product, as the harmonizer recorded it (none for GH++ as
    /// released, which defines only the sum).
    pub d_after: Option<f64>,
    /// |g1| and |g2| over the scope (NaN for records that did not write them).
    pub norm1: f64,
    pub norm2: f64,
}

/// The profiles to report from `<runs>/profiles`: every manifest's, less those whose cells join
/// another profile's report (`reported_with`) when that profile's manifest is there too.
pub fn profiles(runs: &Path) -> Result<Vec<String>> {
    let all = manifest_names(runs);
    let mut out = Vec::new();
    for p in &all {
        match read_manifest(runs, p)?.reported_with {
            Some(target) if all.contains(&target) => {}
            _ => out.push(p.clone()),
        }
    }
    Ok(out)
}

/// The profiles whose manifests say their cells join `profile`'s report, sorted.
pub fn reported_with(runs: &Path, profile: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in manifest_names(runs) {
        if p != profile && read_manifest(runs, &p)?.reported_with.as_deref() == Some(profile) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The names of the manifests in `<runs>/profiles`, sorted.
fn manifest_names(runs: &Path) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(runs.join("profiles")) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn read_manifest(runs: &Path, profile: &str) -> Result<record_schema::ProfileManifest> {
    let path = record_schema::ProfileManifest::path(runs, profile);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {} (run `bench-suite run --profile {profile}` first)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a profile manifest of bench-suite's (rerun `bench-suite run --profile {profile}` to rewrite it)", path.display()))
}

/// A cell the profile's manifest lists (runnable in the build that wrote it).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestCell {
    pub hash: String,
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    pub harmonizer: String,
    pub seed: u64,
    /// Whether its `done` marker exists.
    pub done: bool,
}

/// The cells of a profile's manifest (`<runs>/profiles/<profile>.json`).
pub fn manifest(runs: &Path, profile: &str) -> Result<Vec<ManifestCell>> {
    Ok(read_manifest(runs, profile)?
        .cells
        .into_iter()
        .filter(|c| !c.hash.is_empty()) // not runnable in that build
        .map(|c| ManifestCell {
            done: runs.join("cells").join(&c.hash).join("done").is_file(),
            hash: c.hash,
            dataset: c.dataset,
            task: c.task,
            baseline: c.baseline,
            harmonizer: c.harmonizer,
            seed: c.seed,
        })
        .collect())
}

/// The profile's finished cells, with those of the profiles reported with it
/// ([`reported_with`]), plus the number of their cells without a record yet.
pub fn load_profile(runs: &Path, profile: &str) -> Result<(Vec<CellRecord>, usize)> {
    load_with_arms(runs, profile, &reported_with(runs, profile)?)
}

/// [`load_profile`] for a caller that has already listed the profiles reported with it.
pub fn load_with_arms(runs: &Path, profile: &str, arms: &[String]) -> Result<(Vec<CellRecord>, usize)> {
    let mut cells = manifest(runs, profile)?;
    for arm in arms {
        for c in manifest(runs, arm)? {
            if !cells.iter().any(|k| k.hash == c.hash) {
                cells.push(c);
            }
        }
    }
    Ok((load_done(runs, &cells)?, cells.iter().filter(|c| !c.done).count()))
}

/// The records of the manifest's finished cells.
pub fn load_done(runs: &Path, cells: &[ManifestCell]) -> Result<Vec<CellRecord>> {
    cells.iter().filter(|c| c.done).map(|c| load_cell(&runs.join("cells").join(&c.hash))).collect()
}

/// Reads one of the schema's files; the error names the file and what it should have held.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The libtorch a record says it ran with, with CUDA's versions on a GPU ("2.11.0+cu130 (CUDA
/// runtime 13000, cuDNN 91900)"); None where the record predates the field. Shared by cell and
/// bench-speed records.
pub fn libtorch_label(libtorch: Option<&str>, cuda: Option<&str>) -> Option<String> {
    libtorch.map(|l| match cuda {
        Some(cuda) => format!("{l} ({cuda})"),
        None => l.to_owned(),
    })
}

/// Reads one finished cell folder.
pub fn load_cell(dir: &Path) -> Result<CellRecord> {
    let info: record_schema::CellInfo = read_json(&dir.join("cell.json"), "a cell description (cell.json) of bench-suite's")?;
    let done: record_schema::RunSummary = read_json(&dir.join("done"), "a run summary (done) of bench-suite's")?;
    let record_path: PathBuf = dir.join("run.jsonl");
    let text = fs::read_to_string(&record_path).with_context(|| format!("reading {}", record_path.display()))?;
    let mut evaluations = Vec::new();
    let mut telemetry = Vec::new();
    let mut deviations: Vec<String> = info.deviations.clone();
    let mut spec = Value::Null;
    let mut device = String::new();
    let mut libtorch = None;
    let mut suite_version = String::new();
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON record", record_path.display(), n + 1))?;
        match v["event"].as_str() {
            Some("config") => {
                spec = v["spec"].clone();
                let context = &v["context"];
                device = context["device"].as_str().unwrap_or_default().to_owned();
                suite_version = context["suite_version"].as_str().unwrap_or("unrecorded").to_owned();
                libtorch = libtorch_label(context["libtorch"].as_str(), context["cuda"].as_str());
                for d in context["deviations"].as_array().into_iter().flatten() {
                    if let Some(d) = d.as_str() {
                        deviations.push(d.to_owned());
                    }
                }
            }
            Some("eval") => {
                if let (Some(i), Some(a)) = (v["iteration"].as_u64(), f(&v["accuracy"])) {
                    evaluations.push((i, 100.0 * a));
                }
            }
            Some("telemetry") => telemetry.push(Telemetry {
                iteration: v["iteration"].as_u64().unwrap_or(0),
                pair: v["pair"].as_str().unwrap_or("").to_owned(),
                d: f(&v["d"]).unwrap_or(f64::NAN),
                cos: f(&v["cos"]).unwrap_or(f64::NAN),
                conflict: v["conflict"].as_bool().unwrap_or(false),
                w1: f(&v["w1"]).unwrap_or(f64::NAN),
                w2: f(&v["w2"]).unwrap_or(f64::NAN),
                d_after: f(&v["d_after"]),
                norm1: f(&v["norm1"]).unwrap_or(f64::NAN),
                norm2: f(&v["norm2"]).unwrap_or(f64::NAN),
            }),
            _ => {}
        }
    }
    if spec.is_null() {
        bail!("{}: no config line", record_path.display());
    }
    deviations.sort();
    deviations.dedup();
    let pairs = done
        .harmonization
        .iter()
        .map(|(k, p)| (k.clone(), PairStats { measured_steps: p.measured_steps, conflict_rate: p.conflict_rate, mean_w1: p.mean_w1_in_conflict, mean_w2: p.mean_w2_in_conflict }))
        .collect();
    let timing: Option<record_schema::CellTiming> = match fs::read_to_string(dir.join("timing.json")) {
        Ok(text) => Some(serde_json::from_str(&text).with_context(|| format!("{} is not a cell timing (timing.json) of bench-suite's", dir.join("timing.json").display()))?),
        Err(_) => None,
    };
    let not_trained = (done.trained != record_schema::Trained::AsAsked).then(|| done.trained.label().to_owned());
    Ok(CellRecord {
        hash: info.hash,
        dataset: info.dataset,
        task: info.task,
        baseline: info.baseline,
        harmonizer: info.harmonizer,
        harmonizer_method: spec["harmonizer"]["method"].as_str().unwrap_or_default().to_owned(),
        alpha: f(&spec["harmonizer"]["alpha"]).unwrap_or(0.5),
        seed: info.seed,
        diverged_at: match done.status {
            record_schema::RunStatus::Diverged { iteration, .. } => Some(iteration),
            record_schema::RunStatus::Completed => None,
        },
        final_accuracy: done.final_accuracy.map(|a| 100.0 * a).filter(|_| not_trained.is_none()),
        best_accuracy: done.best_accuracy_oracle.map(|a| 100.0 * a).filter(|_| not_trained.is_none()),
        not_trained,
        seconds_per_epoch: done.seconds_per_epoch,
        seconds_per_100_steps: done.seconds_per_100_steps,
        train_seconds: done.train_seconds,
        // `interrupted` (a reason, written beside the snapshots) marks a cell whose timing is
        // known to be disturbed where the snapshots cannot see it.
        timing_loaded: timing.as_ref().map(record_schema::CellTiming::is_loaded),
        phases: timing.as_ref().and_then(|t| t.phases.clone()),
        wall_seconds: timing.as_ref().and_then(|t| t.wall_seconds),
        iterations: done.iterations,
        deviations,
        device,
        libtorch,
        suite_version,
        pairs,
        evaluations,
        telemetry,
    })
}

#[cfg(test)]
mod tests {
    use super::libtorch_label;

    #[test]
    fn libtorch_labels_carry_cuda_versions_on_a_gpu_only() {
        assert_eq!(libtorch_label(None, Some("CUDA runtime 13000, cuDNN 91900")), None);
        assert_eq!(libtorch_label(Some("2.11.0+cu130"), None).as_deref(), Some("2.11.0+cu130"));
        assert_eq!(libtorch_label(Some("2.11.0+cu130"), Some("CUDA runtime 13000, cuDNN 91900")).as_deref(), Some("2.11.0+cu130 (CUDA runtime 13000, cuDNN 91900)"));
    }
}
