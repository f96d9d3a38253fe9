//! Profiles of the protocol file and the grid of cells they expand to.

use crate::protocol::Protocol;
use anyhow::{bail, Context, Result};
use baselines::data::{Domain, Split, SplitStandIns};
use baselines::harmonizer::{GhppRule, Harmonizer, Method};
use baselines::methods::{BackwardPath, MethodName};
use baselines::train::{RunSpec, Schedule};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A `[profiles.<name>]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    pub description: String,
    /// Datasets whose tasks the profile runs.
    pub datasets: Vec<String>,
    /// A subset of those datasets' tasks (default: all of them).
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    /// Default: the protocol's baselines.
    #[serde(default)]
    pub baselines: Option<Vec<String>>,
    /// Default: the protocol's harmonizers.
    #[serde(default)]
    pub harmonizers: Option<Vec<String>>,
    /// GH++ trade-offs to run (default: the paper's 0.5).
    #[serde(default)]
    pub alphas: Option<Vec<f64>>,
    #[serde(default)]
    pub ghpp_rule: Option<GhppRule>,
    /// Default: the protocol's seeds.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Splits standing in for unavailable train splits, e.g. `{ usps = "test" }` (deviations).
    #[serde(default)]
    pub stand_ins: BTreeMap<String, String>,
    #[serde(default = "default_telemetry_every")]
    pub telemetry_every: u64,
    /// Reduced schedules per baseline (deviations from the paper's, recorded with each cell).
    #[serde(default)]
    pub schedule: BTreeMap<String, Schedule>,
    /// Hyperparameter overrides per baseline (deviations, recorded with each cell).
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, toml::Table>,
    /// Whether the profile needs a CUDA device.
    #[serde(default)]
    pub requires_cuda: bool,
    /// Cost priors (seconds per 100 iterations) for this profile's settings, per baseline.
    #[serde(default)]
    pub cost: BTreeMap<String, f64>,
    /// The order cells run in within a task and baseline (default: each harmonizer's seeds in turn).
    #[serde(default)]
    pub cell_order: CellOrder,
    /// The profile whose report this one's cells join (run both into one runs folder): an arm
    /// that pairs with another profile's cells by seed, such as GH++'s rotation rule beside
    /// the released one. Written into the manifest; `report` renders the two together.
    #[serde(default)]
    pub reported_with: Option<String>,
}

/// The order a profile's cells run in, within one task and baseline. Runs go through cells in this
/// order, so a profile stopped part-way has finished the first ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellOrder {
    /// Every seed of the first harmonizer, then of the next.
    #[default]
    HarmonizerMajor,
    /// Every harmonizer of seed 1, then of seed 2: a profile stopped part-way holds whole paired
    /// seeds (what the claims' paired intervals need).
    SeedMajor,
}

fn default_telemetry_every() -> u64 {
    10
}

impl ProfileEntry {
    pub fn validate(&self, name: &str, protocol: &Protocol) -> Result<()> {
        for d in &self.datasets {
            if !protocol.datasets.contains_key(d) {
                bail!("dataset '{d}' is not in [datasets]");
            }
        }
        if let Some(tasks) = &self.tasks {
            for t in tasks {
                if !self.datasets.iter().any(|d| protocol.datasets[d].tasks.contains(t)) {
                    bail!("task '{t}' is not a task of {:?}", self.datasets);
                }
            }
        }
        for b in self.baselines.iter().flatten().chain(self.schedule.keys()).chain(self.hyperparameters.keys()).chain(self.cost.keys()) {
            if !protocol.baselines.contains(b) && MethodName::parse(b).is_err() {
                bail!("baseline '{b}' is not in the protocol's baselines");
            }
        }
        for h in self.harmonizers.iter().flatten() {
            h.parse::<Method>()?;
        }
        for &a in self.alphas.iter().flatten() {
            Harmonizer::gh_plus_plus(a, GhppRule::Released)?;
        }
        for (d, s) in &self.stand_ins {
            Domain::parse(d)?;
            Split::parse(s)?;
        }
        if self.telemetry_every == 0 {
            bail!("telemetry_every must be positive");
        }
        if let Some(target) = &self.reported_with {
            match protocol.profiles.get(target) {
                _ if target == name => bail!("reported_with names the profile itself; name the profile whose report its cells join"),
                None => bail!("reported_with = '{target}' is not a profile of the protocol"),
                Some(t) if t.reported_with.is_some() => bail!("reported_with = '{target}': that profile is itself reported with another; name the one it joins"),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// One run of the grid.
#[derive(Debug, Clone)]
pub struct Cell {
    pub dataset: String,
    pub task: String,
    pub spec: Option<RunSpec>,
    /// Why the cell cannot run in this build (dataset pipeline not implemented).
    pub unsupported: Option<String>,
    pub baseline: String,
    pub harmonizer_label: String,
    pub seed: u64,
    /// How the cell departs from the paper's protocol (reduced schedule, changed hyperparameters,
    /// split stand-ins), one sentence each; recorded with the cell and shown in the report.
    pub deviations: Vec<String>,
}

/// Expands a profile into its cells, in a stable order.
pub fn cells(protocol: &Protocol, profile_name: &str) -> Result<Vec<Cell>> {
    let profile = protocol
        .profiles
        .get(profile_name)
        .with_context(|| format!("unknown profile '{profile_name}'; the protocol has: {}", protocol.profiles.keys().cloned().collect::<Vec<_>>().join(", ")))?;
    let baselines = profile.baselines.clone().unwrap_or_else(|| protocol.baselines.clone());
    let harmonizer_names = profile.harmonizers.clone().unwrap_or_else(|| protocol.harmonizers.clone());
    let seeds = profile.seeds.clone().unwrap_or_else(|| protocol.seeds.clone());
    let alphas = profile.alphas.clone().unwrap_or_else(|| vec![Harmonizer::DEFAULT_ALPHA]);
    let rule = profile.ghpp_rule.unwrap_or_default();
    let mut harmonizers = Vec::new();
    for h in &harmonizer_names {
        let method = h.parse::<Method>()?;
        if method.takes_alpha_and_rule() {
            for &a in &alphas {
                harmonizers.push(Harmonizer::new(method, a, rule)?);
            }
        } else {
            harmonizers.push(Harmonizer::new(method, Harmonizer::DEFAULT_ALPHA, GhppRule::default())?);
        }
    }
    let mut stand_ins = SplitStandIns::new();
    for (d, s) in &profile.stand_ins {
        stand_ins.insert(Domain::parse(d)?, Split::parse(s)?);
    }
    let mut out = Vec::new();
    for dataset in &profile.datasets {
        let entry = &protocol.datasets[dataset];
        let tasks: Vec<&String> = entry.tasks.iter().filter(|t| profile.tasks.as_ref().is_none_or(|sel| sel.contains(t))).collect();
        for task in tasks {
            for baseline in &baselines {
                let pairs: Vec<(Harmonizer, u64)> = match profile.cell_order {
                    CellOrder::HarmonizerMajor => harmonizers.iter().flat_map(|h| seeds.iter().map(move |s| (*h, *s))).collect(),
                    CellOrder::SeedMajor => seeds.iter().flat_map(|s| harmonizers.iter().map(move |h| (*h, *s))).collect(),
                };
                for &(harmonizer, seed) in &pairs {
                    let mut cell = Cell {
                        dataset: dataset.clone(),
                        task: task.clone(),
                        spec: None,
                        unsupported: None,
                        baseline: baseline.clone(),
                        harmonizer_label: harmonizer.label(),
                        seed,
                        deviations: Vec::new(),
                    };
                    match run_spec(protocol, profile, dataset, task, baseline, harmonizer, seed, &stand_ins) {
                        Ok((spec, deviations)) => {
                            cell.spec = Some(spec);
                            cell.deviations = deviations;
                        }
                        Err(why) => cell.unsupported = Some(format!("{why:#}")),
                    }
                    out.push(cell);
                }
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn run_spec(
    protocol: &Protocol,
    profile: &ProfileEntry,
    dataset: &str,
    task: &str,
    baseline: &str,
    harmonizer: Harmonizer,
    seed: u64,
    stand_ins: &SplitStandIns,
) -> Result<(RunSpec, Vec<String>)> {
    let parsed = baselines::data::Task::for_protocol(dataset, task)?;
    let (method, _) = protocol.baseline_method(baseline)?;
    let images = match &parsed {
        baselines::data::Task::Benchmark { benchmark, source, target } => {
            let name = |i: usize| benchmark.domains()[i].name;
            Some(protocol.image_input(dataset, method, name(*source), name(*target))?)
        }
        _ => None,
    };
    let paper_config = protocol.baseline_config(dataset, baseline, Some(task))?;
    let mut deviations = Vec::new();
    let config = match profile.hyperparameters.get(baseline) {
        Some(overrides) => {
            let (changed, said) = override_recorded(&paper_config, overrides, baseline, "", "paper protocol").with_context(|| format!("profile hyperparameters.{baseline}"))?;
            deviations.extend(said);
            changed
        }
        None => paper_config,
    };
    let stand_ins: SplitStandIns = match parsed.digits() {
        Some(t) => stand_ins.iter().filter(|(d, _)| **d == t.source || **d == t.target).map(|(d, s)| (*d, *s)).collect(),
        None => SplitStandIns::new(),
    };
    // Data epochs (CDAN's digits script) from the published split sizes, stand-ins applied.
    let sizes = parsed.digits().map(|t| baselines::data::TrainSizes::of_digits(t, &stand_ins));
    let paper_schedule = protocol.schedule(dataset, method)?.resolve(config.batch(), sizes)?;
    let schedule = match profile.schedule.get(baseline) {
        Some(s) => s.clone(),
        None => paper_schedule.clone(),
    };
    if schedule != paper_schedule {
        deviations.push(format!(
            "{baseline}: reduced schedule, {} iterations evaluated every {} (paper protocol: {} evaluated every {})",
            schedule.iterations, schedule.eval_every, paper_schedule.iterations, paper_schedule.eval_every
        ));
    }
    let spec = RunSpec {
        task: parsed,
        images,
        digits_input: None,
        seed,
        method: config,
        harmonizer,
        schedule,
        stand_ins,
        telemetry_every: profile.telemetry_every,
        backward: BackwardPath::TwoPass,
        requested_deviations: Vec::new(),
    };
    spec.validate()?;
    Ok((spec, deviations))
}

/// Applies `overrides` and says each one as a deviation:
/// `<baseline>: <key> = <value><how> (<was>: <the value before>)`.
pub fn override_recorded(
    config: &baselines::methods::MethodConfig,
    overrides: &toml::Table,
    baseline: &str,
    how: &str,
    was: &str,
) -> Result<(baselines::methods::MethodConfig, Vec<String>)> {
    let changed = override_config(config, overrides)?;
    let before = toml::Table::try_from(config)?;
    let said = overrides
        .iter()
        .map(|(k, v)| format!("{baseline}: {k} = {v}{how} ({was}: {})", before.get(k).map(|p| p.to_string()).unwrap_or_default()))
        .collect();
    Ok((changed, said))
}

/// Applies `overrides` (keys of the method's table) to a method configuration.
pub fn override_config(config: &baselines::methods::MethodConfig, overrides: &toml::Table) -> Result<baselines::methods::MethodConfig> {
    let mut table = toml::Table::try_from(config)?;
    for (k, v) in overrides {
        if !table.contains_key(k) {
            bail!("'{k}' overrides nothing (keys: {})", table.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        table.insert(k.clone(), v.clone());
    }
    Ok(toml::Value::Table(table).try_into()?)
}
