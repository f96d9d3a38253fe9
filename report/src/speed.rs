//! The speed numbers the report publishes (Table VI, the speed chart, the paper's speed claims):
//! from `bench-speed`'s controlled benchmark (`<runs>/bench-speed/<profile>.json`) when it exists,
//! otherwise from the grid's cells whose timing was not taken under load. Cells timed under load
//! are counted and named, never used.

use crate::records::CellRecord;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

pub use record_schema::{LoadSnapshot, SpeedArm, SpeedRecord};

/// Where the published speeds come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Bench { device: String, rounds: usize, iterations_per_round: usize, load: String },
    Cells { devices: Vec<String>, used: usize, loaded_left_out: Vec<String>, load_unknown: usize },
}

impl Source {
    /// A few words: where the numbers come from.
    pub fn short(&self) -> &'static str {
        match self {
            Source::Bench { .. } => "bench-speed",
            Source::Cells { .. } => "grid cells not timed under load",
        }
    }

    /// One sentence for captions and claim deviations.
    pub fn describe(&self) -> String {
        match self {
            Source::Bench { device, rounds, iterations_per_round, load } => format!(
                "Speed from bench-speed on {device}: {rounds} interleaved rounds of {iterations_per_round} iterations per arm in one process (spread: over rounds; ratios within a round; {load})"
            ),
            Source::Cells { devices, used, loaded_left_out, load_unknown } => {
                let mut s = format!("Speed from the grid's cells on {} ({used} timings; spread: over seeds; ratios per seed)", devices.join(", "));
                if !loaded_left_out.is_empty() {
                    s.push_str(&format!(", {} cell(s) timed under load left out", loaded_left_out.len()));
                }
                if *load_unknown > 0 {
                    s.push_str(&format!(", {load_unknown} cell(s) without a load record (older runs) used as they are"));
                }
                s.push_str("; run bench-suite bench-speed for a controlled measurement");
                s
            }
        }
    }
}

/// One task × baseline × harmonizer: repeated timings (rounds or seeds) and paired ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    pub harmonizer: String,
    pub seconds_per_100: Vec<f64>,
    /// Paired with the `none` arm (same round, or same seed); empty for `none`.
    pub ratio_to_none: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Speeds {
    pub source: Source,
    pub arms: Vec<Arm>,
}

pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

pub fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    (!f.is_empty()).then(|| f.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x))))
}

impl Arm {
    pub fn median_seconds(&self) -> Option<f64> {
        median(&self.seconds_per_100)
    }
    pub fn median_ratio(&self) -> Option<f64> {
        median(&self.ratio_to_none)
    }
}

impl Speeds {
    pub fn find(&self, task: &str, baseline: &str, harmonizer: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.task == task && a.baseline == baseline && a.harmonizer == harmonizer)
    }
}

/// Reads the benchmark record of `profile`, if there is one.
pub fn load_bench(runs: &Path, profile: &str) -> Result<Option<SpeedRecord>> {
    let path = SpeedRecord::path(runs, profile);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not a bench-speed record (rerun `bench-suite bench-speed --profile {profile}`)", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The benchmark's device with its libtorch and, where recorded, its precision ("cuda:0 (NVIDIA
/// H200), libtorch 2.11.0+cu130 (...), bf16 precision").
fn bench_device(b: &SpeedRecord) -> String {
    let mut device = match crate::records::libtorch_label(b.libtorch.as_deref(), b.cuda.as_deref()) {
        Some(l) => format!("{}, libtorch {l}", b.device),
        None => b.device.clone(),
    };
    if let Some(p) = b.precision() {
        device.push_str(&format!(", {p} precision"));
    }
    device
}

/// The published speeds: the benchmark when there is one, else the cells not timed under load.
pub fn speeds(bench: Option<&SpeedRecord>, records: &[CellRecord]) -> Speeds {
    if let Some(b) = bench {
        let loaded = b.load_before.is_loaded() || b.load_after.is_loaded();
        let load = format!("{}: {} before, {} after", if loaded { "busy machine" } else { "quiet machine" }, b.load_before.describe_short(), b.load_after.describe_short());
        return Speeds {
            source: Source::Bench { device: bench_device(b), rounds: b.rounds, iterations_per_round: b.iterations_per_round, load },
            arms: b
                .arms
                .iter()
                .map(|a| Arm { dataset: a.dataset.clone(), task: a.task.clone(), baseline: a.baseline.clone(), harmonizer: a.harmonizer.clone(), seconds_per_100: a.seconds_per_100.clone(), ratio_to_none: a.ratio_to_none.clone() })
                .collect(),
        };
    }
    let mut loaded_left_out = Vec::new();
    let mut load_unknown = 0;
    // (dataset, task, baseline, harmonizer) -> seed -> seconds per 100 iterations.
    let mut timings: BTreeMap<(String, String, String, String), BTreeMap<u64, f64>> = BTreeMap::new();
    for r in records {
        if !(r.seconds_per_100_steps.is_finite() && r.seconds_per_100_steps > 0.0) {
            continue;
        }
        match r.timing_loaded {
            Some(true) => {
                loaded_left_out.push(format!("{} {} {} seed {}", r.task, r.baseline, r.harmonizer, r.seed));
                continue;
            }
            None => load_unknown += 1,
            Some(false) => {}
        }
        timings.entry((r.dataset.clone(), r.task.clone(), r.baseline.clone(), r.harmonizer.clone())).or_default().insert(r.seed, r.seconds_per_100_steps);
    }
    let used = timings.values().map(BTreeMap::len).sum();
    let devices: std::collections::BTreeSet<String> = records.iter().map(|r| r.device.clone()).collect();
    let arms = timings
        .iter()
        .map(|((dataset, task, baseline, harmonizer), by_seed)| {
            let none = timings.get(&(dataset.clone(), task.clone(), baseline.clone(), "none".to_owned()));
            let ratio_to_none = match none {
                Some(n) if harmonizer != "none" => by_seed.iter().filter_map(|(s, t)| n.get(s).map(|b| t / b)).collect(),
                _ => Vec::new(),
            };
            Arm { dataset: dataset.clone(), task: task.clone(), baseline: baseline.clone(), harmonizer: harmonizer.clone(), seconds_per_100: by_seed.values().copied().collect(), ratio_to_none }
        })
        .collect();
    Speeds { source: Source::Cells { devices: devices.into_iter().collect(), used, loaded_left_out, load_unknown }, arms }
}
