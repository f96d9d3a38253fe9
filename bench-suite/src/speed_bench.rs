//! `bench-speed`: the training cost of every baseline × harmonizer of a profile, measured the way a
//! busy machine cannot spoil. For each task and baseline, the arms (none, GH, GH++, ...) are built
//! side by side in one process from the profile's real specs (data, networks, optimisers, batch)
//! and timed in interleaved rounds: each round runs every arm for the same number of iterations,
//! in an order that rotates from round to round, so load from elsewhere falls on all arms alike and
//! shows up as spread across rounds rather than as a difference between arms. Ratios to `none` are
//! taken within a round. The record (`<runs>/bench-speed/<profile>.json`) is what the report uses
//! for Table VI, the speed chart and the paper's speed claims.
//!
//! Timed iterations start after the schedule's first epoch (CDAN's is source-only) and record no
//! telemetry (the grid's cells measure every `telemetry_every`-th step, which costs `none` runs an
//! extra backward pass there); evaluation and per-epoch statistics are not part of a step.

use crate::grid;
use crate::load::LoadSnapshot;
use crate::protocol::Protocol;
use anyhow::{bail, Context, Result};
use baselines::data::TaskData;
use baselines::train::Trainer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

#[derive(Clone, Debug)]
pub struct SpeedBenchConfig {
    pub profile: String,
    pub device: Device,
    pub data_root: PathBuf,
    pub drop_stand_ins: bool,
    /// Tasks to time (default: every task of the profile).
    pub tasks: TaskSelection,
    pub rounds: usize,
    pub iterations_per_round: usize,
    /// Untimed iterations per arm before the first round.
    pub warmup: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TaskSelection {
    All,
    /// The first task of each dataset (the step's cost depends on the dataset's protocol, not the pair).
    FirstPerDataset,
    Only(Vec<String>),
}

impl std::str::FromStr for TaskSelection {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "all" => TaskSelection::All,
            "first" => TaskSelection::FirstPerDataset,
            list => TaskSelection::Only(list.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect()),
        })
    }
}

pub use record_schema::speed::{median, SpeedArm, SpeedRecord};

/// Where the record of a profile lives.
pub fn record_path(runs: &Path, profile: &str) -> PathBuf {
    SpeedRecord::path(runs, profile)
}

struct Group {
    dataset: String,
    task: String,
    baseline: String,
    /// (harmonizer label, spec) in the profile's order.
    arms: Vec<(String, baselines::train::RunSpec)>,
}

/// The profile's task × baseline groups (first seed of each), in the profile's order.
fn groups(protocol: &Protocol, c: &SpeedBenchConfig) -> Result<Vec<Group>> {
    let cells = grid::cells(protocol, &c.profile)?;
    let first_seed = cells.iter().map(|x| x.seed).min().unwrap_or(1);
    let mut first_task: HashMap<String, String> = HashMap::new();
    for x in &cells {
        first_task.entry(x.dataset.clone()).or_insert_with(|| x.task.clone());
    }
    let mut out: Vec<Group> = Vec::new();
    for x in cells.into_iter().filter(|x| x.seed == first_seed) {
        let wanted = match &c.tasks {
            TaskSelection::All => true,
            TaskSelection::FirstPerDataset => first_task.get(&x.dataset) == Some(&x.task),
            TaskSelection::Only(list) => list.contains(&x.task),
        };
        let Some(mut spec) = x.spec.filter(|_| wanted) else { continue };
        if c.drop_stand_ins {
            spec.stand_ins = Default::default();
        }
        match out.iter_mut().find(|g| g.dataset == x.dataset && g.task == x.task && g.baseline == x.baseline) {
            Some(g) => g.arms.push((x.harmonizer_label, spec)),
            None => out.push(Group { dataset: x.dataset, task: x.task, baseline: x.baseline, arms: vec![(x.harmonizer_label, spec)] }),
        }
    }
    if let TaskSelection::Only(list) = &c.tasks {
        for t in list {
            if !out.iter().any(|g| &g.task == t) {
                bail!("task '{t}' is not in profile {} (or not runnable in this build)", c.profile);
            }
        }
    }
    if out.is_empty() {
        bail!("profile {} has no runnable cells to time", c.profile);
    }
    Ok(out)
}

/// Runs the benchmark; `progress` is told each group as it starts.
pub fn run(protocol: &Protocol, c: &SpeedBenchConfig, progress: &mut dyn FnMut(&str)) -> Result<SpeedRecord> {
    if c.rounds < 2 || c.iterations_per_round == 0 {
        bail!("--rounds must be at least 2 and --iterations positive (the spread over rounds is part of the result)");
    }
    let groups = groups(protocol, c)?;
    let load_before = LoadSnapshot::now();
    let started = Instant::now();
    let mut data_cache: HashMap<String, TaskData> = HashMap::new();
    let mut arms_out = Vec::new();
    for g in &groups {
        progress(&format!("{} {} {} ({} arms)", g.dataset, g.task, g.baseline, g.arms.len()));
        let spec0 = &g.arms[0].1;
        let key = format!("{}|{:?}|{:?}", spec0.task.name(), spec0.stand_ins, spec0.images);
        if !data_cache.contains_key(&key) {
            let data = crate::execute::load_data(spec0, &c.data_root, &Default::default(), c.device)?;
            data_cache.insert(key.clone(), data);
        }
        let data = &data_cache[&key];
        let mut trainers: Vec<(Trainer, u64)> = Vec::new();
        for (label, spec) in &g.arms {
            let trainer = Trainer::new(spec, data, c.device).with_context(|| format!("building {} {} {label}", g.task, g.baseline))?;
            trainers.push((trainer, spec.schedule.iters_per_epoch));
        }
        for (trainer, it) in trainers.iter_mut() {
            for _ in 0..c.warmup {
                trainer.step(*it, false)?;
                *it += 1;
            }
        }
        baselines::device::synchronize(c.device);
        let n = trainers.len();
        let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); n];
        for round in 0..c.rounds {
            for k in 0..n {
                let arm = (k + round) % n;
                let (trainer, it) = &mut trainers[arm];
                let t0 = Instant::now();
                for _ in 0..c.iterations_per_round {
                    trainer.step(*it, false)?;
                    *it += 1;
                }
                baselines::device::synchronize(c.device);
                seconds[arm].push(t0.elapsed().as_secs_f64() / c.iterations_per_round as f64 * 100.0);
            }
        }
        let none = g.arms.iter().position(|(l, _)| l == "none");
        for (k, (label, spec)) in g.arms.iter().enumerate() {
            let ratio_to_none = match none {
                Some(b) if b != k => seconds[k].iter().zip(&seconds[b]).map(|(x, y)| x / y).collect(),
                _ => Vec::new(),
            };
            arms_out.push(SpeedArm {
                dataset: g.dataset.clone(),
                task: g.task.clone(),
                baseline: g.baseline.clone(),
                harmonizer: label.clone(),
                batch: spec.method.batch(),
                seconds_per_100: seconds[k].clone(),
                ratio_to_none,
            });
        }
    }
    Ok(SpeedRecord {
        profile: c.profile.clone(),
        suite_version: env!("CARGO_PKG_VERSION").to_owned(),
        device: baselines::device::describe(c.device),
        libtorch: baselines::device::libtorch_version(),
        cuda: baselines::device::cuda_versions(c.device),
        torch_threads: tch::get_num_threads(),
        rounds: c.rounds,
        iterations_per_round: c.iterations_per_round,
        warmup: c.warmup,
        load_before,
        load_after: LoadSnapshot::now(),
        seconds: started.elapsed().as_secs_f64(),
        numerics: baselines::numerics::asked()
            .changes_results_on(c.device)
            .then(|| serde_json::to_value(baselines::numerics::in_force_now()).expect("the numerics serialize")),
        arms: arms_out,
    })
}

/// Writes the record atomically (a temporary file renamed over the old one).
pub fn write_record(runs: &Path, record: &SpeedRecord) -> Result<PathBuf> {
    let path = record_path(runs, &record.profile);
    crate::runner::write_json_shared(&path, record)?;
    Ok(path)
}

/// The record as a table (the report puts it beside the paper's Table VI).
pub fn render(record: &SpeedRecord) -> String {
    let mut s = format!(
        "bench-speed {}: {} rounds x {} iterations per arm (after {} warm-up), interleaved, on {} ({} torch threads, libtorch {}{}), {:.0} s\n",
        record.profile,
        record.rounds,
        record.iterations_per_round,
        record.warmup,
        record.device,
        record.torch_threads,
        record.libtorch.as_deref().unwrap_or("unrecorded"),
        precision_text(record),
        record.seconds
    );
    s.push_str(&format!("  before: {}\n  after:  {}\n", record.load_before.describe(), record.load_after.describe()));
    if record.load_before.is_loaded() || record.load_after.is_loaded() {
        s.push_str("  note: the machine was busy; interleaving spreads that over all arms (see the spread over rounds)\n");
    }
    s.push_str(&format!("\n{:<12} {:<6} {:<12} {:>6} {:>12} {:>17} {:>9} {:>17}\n", "dataset", "task", "baseline", "batch", "s/100 it", "min-max", "x none", "min-max"));
    for a in &record.arms {
        let (lo, hi) = min_max(&a.seconds_per_100);
        let ratio = if a.ratio_to_none.is_empty() {
            (String::from("-"), String::new())
        } else {
            let (rl, rh) = min_max(&a.ratio_to_none);
            (format!("{:.3}", median(&a.ratio_to_none)), format!("{rl:.3}-{rh:.3}"))
        };
        s.push_str(&format!(
            "{:<12} {:<6} {:<12} {:>6} {:>12.2} {:>17} {:>9} {:>17}\n",
            a.dataset,
            a.task,
            format!("{}{}", a.baseline, if a.harmonizer == "none" { String::new() } else { format!("+{}", a.harmonizer) }),
            a.batch,
            a.median(),
            format!("{lo:.2}-{hi:.2}"),
            ratio.0,
            ratio.1
        ));
    }
    s
}

/// ", bf16 precision" where the record holds the numerics (they change the speed there).
fn precision_text(record: &SpeedRecord) -> String {
    record.precision().map(|p| format!(", {p} precision")).unwrap_or_default()
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)))
}
