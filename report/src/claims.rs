//! The paper's claims (`report/paper_claims.toml`, embedded) and their verdicts on a profile's runs.
//!
//! Every quantity is computed per *unit* (a baseline × task, or a task) and seed, from cells that the
//! grid pairs by seed (same initialisation and data order), so a gain is a per-seed difference. The
//! estimate is the mean over units of the mean over seeds. Its interval: a t interval over seeds
//! when the claim has one unit; a bootstrap over units and seeds (percentile, fixed seed) when it
//! averages several. Verdict rules: [`verdict`].

use crate::aggregate::main_pair;
use crate::latex::{escape, row_name};
use crate::paper::PaperResults;
use crate::records::CellRecord;
use crate::speed::{Source, Speeds};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

pub const EMBEDDED: &str = include_str!("../paper_claims.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsFile {
    pub settings: Settings,
    #[serde(default)]
    pub gains: Vec<GainGroup>,
    #[serde(default)]
    pub claim: Vec<ClaimEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub confidence: f64,
    pub min_seeds: usize,
    pub bootstrap_resamples: usize,
    pub bootstrap_seed: u64,
    /// Per unit of a quantity (points, percent, ratio, inner_product).
    pub max_width: BTreeMap<String, f64>,
}

/// Section 4.3's per-dataset sentence, expanded into one claim per baseline and harmonizer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GainGroup {
    pub dataset: String,
    /// "Avg", "Avg‡" or a task.
    pub average: String,
    pub source: String,
    pub words: String,
    /// The sentence's numbers, as it attributes them.
    pub stated: BTreeMap<String, [f64; 2]>,
    /// What is tested, per baseline: [GH, GH++] gains.
    pub paper: BTreeMap<String, [f64; 2]>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimType {
    /// The sign is the claim (the value, if any, is reported beside it).
    Directional,
    /// The paper's value, within a tolerance.
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Positive,
    Negative,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimEntry {
    pub id: String,
    pub words: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: ClaimType,
    #[serde(default)]
    pub paper: Option<f64>,
    #[serde(default)]
    pub direction: Option<Direction>,
    #[serde(default)]
    pub tolerance: Option<f64>,
    #[serde(default)]
    pub min_seeds: Option<usize>,
    #[serde(default)]
    pub note: Option<String>,
    pub quantity: Quantity,
}

/// A list of tasks, or "Avg" / "Avg‡" (the paper's table columns).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Tasks {
    Average(String),
    List(Vec<String>),
}

fn none() -> String {
    "none".to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Quantity {
    Gain {
        dataset: String,
        tasks: Tasks,
        baselines: Vec<String>,
        harmonizer: String,
        #[serde(default = "none")]
        against: String,
    },
    GainContrast {
        dataset: String,
        tasks: Tasks,
        higher: Vec<String>,
        lower: Vec<String>,
        harmonizers: Vec<String>,
    },
    ConflictRate {
        dataset: String,
        tasks: Tasks,
        baseline: String,
        #[serde(default = "none")]
        harmonizer: String,
    },
    ConflictContrast {
        dataset: String,
        tasks: Tasks,
        higher: Vec<String>,
        lower: Vec<String>,
    },
    ResidualConflicts {
        dataset: String,
        tasks: Tasks,
        baseline: String,
        harmonizer: String,
    },
    InnerProductMean {
        dataset: String,
        tasks: Tasks,
        baseline: String,
    },
    TimeRatio {
        dataset: String,
        tasks: Tasks,
        baseline: String,
        harmonizer: String,
        #[serde(default = "none")]
        against: String,
    },
    AlphaBest {
        dataset: String,
        tasks: Tasks,
        baselines: Vec<String>,
        best: f64,
    },
}

/// What a quantity is measured in (for display, plot panels and the width limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// Accuracy points.
    Points,
    /// Percent of measured steps.
    Percent,
    Ratio,
    InnerProduct,
}

impl Unit {
    pub fn key(self) -> &'static str {
        match self {
            Unit::Points => "points",
            Unit::Percent => "percent",
            Unit::Ratio => "ratio",
            Unit::InnerProduct => "inner_product",
        }
    }

    /// Axis title of the forest plot's panel.
    pub fn axis(self) -> &'static str {
        match self {
            Unit::Points => "accuracy difference (points)",
            Unit::Percent => "% of measured steps",
            Unit::Ratio => "time ratio (harmonized / baseline)",
            Unit::InnerProduct => "mean inner product g1·g2",
        }
    }

    /// The value of "no effect" (drawn as a reference line).
    pub fn null(self) -> f64 {
        match self {
            Unit::Ratio => 1.0,
            _ => 0.0,
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Points => format!("{v:+.2}"),
            Unit::Percent => format!("{v:.1}%"),
            Unit::Ratio => format!("{v:.3}×"),
            Unit::InnerProduct if v == 0.0 => "0".to_owned(),
            Unit::InnerProduct => format!("{v:.2e}"),
        }
    }
}

impl Quantity {
    pub fn dataset(&self) -> &str {
        match self {
            Quantity::Gain { dataset, .. }
            | Quantity::GainContrast { dataset, .. }
            | Quantity::ConflictRate { dataset, .. }
            | Quantity::ConflictContrast { dataset, .. }
            | Quantity::ResidualConflicts { dataset, .. }
            | Quantity::InnerProductMean { dataset, .. }
            | Quantity::TimeRatio { dataset, .. }
            | Quantity::AlphaBest { dataset, .. } => dataset,
        }
    }

    fn tasks(&self) -> &Tasks {
        match self {
            Quantity::Gain { tasks, .. }
            | Quantity::GainContrast { tasks, .. }
            | Quantity::ConflictRate { tasks, .. }
            | Quantity::ConflictContrast { tasks, .. }
            | Quantity::ResidualConflicts { tasks, .. }
            | Quantity::InnerProductMean { tasks, .. }
            | Quantity::TimeRatio { tasks, .. }
            | Quantity::AlphaBest { tasks, .. } => tasks,
        }
    }

    pub fn unit(&self) -> Unit {
        match self {
            Quantity::Gain { .. } | Quantity::GainContrast { .. } | Quantity::AlphaBest { .. } => Unit::Points,
            Quantity::ConflictRate { .. } | Quantity::ConflictContrast { .. } | Quantity::ResidualConflicts { .. } => Unit::Percent,
            Quantity::TimeRatio { .. } => Unit::Ratio,
            Quantity::InnerProductMean { .. } => Unit::InnerProduct,
        }
    }
}

/// One claim, ready to be checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub id: String,
    /// The paper's words (short).
    pub words: String,
    /// Our one-line statement of what is tested.
    pub statement: String,
    pub source: String,
    pub kind: ClaimType,
    pub paper: Option<f64>,
    /// +1 or -1 for directional claims.
    pub sign: f64,
    pub tolerance: f64,
    pub min_seeds: Option<usize>,
    pub notes: Vec<String>,
    pub quantity: Quantity,
}

impl ClaimsFile {
    pub fn embedded() -> Result<ClaimsFile> {
        ClaimsFile::parse(EMBEDDED).context("report/paper_claims.toml (embedded)")
    }

    pub fn parse(text: &str) -> Result<ClaimsFile> {
        let file: ClaimsFile = toml::from_str(text)?;
        let s = &file.settings;
        if !(0.5..1.0).contains(&s.confidence) {
            bail!("settings.confidence = {} must be in [0.5, 1)", s.confidence);
        }
        if s.min_seeds == 0 || s.bootstrap_resamples < 100 {
            bail!("settings: min_seeds must be at least 1 and bootstrap_resamples at least 100");
        }
        Ok(file)
    }

    /// Every claim, the gain groups expanded, in file order; ids are unique.
    pub fn claims(&self) -> Result<Vec<Claim>> {
        let mut out = Vec::new();
        for g in &self.gains {
            let tasks = if g.average.starts_with("Avg") { Tasks::Average(g.average.clone()) } else { Tasks::List(vec![g.average.clone()]) };
            for (baseline, values) in &g.paper {
                for (harmonizer, value) in ["gh", "gh++"].into_iter().zip(values) {
                    let mut notes = Vec::new();
                    if let Some(n) = &g.note {
                        notes.push(n.clone());
                    }
                    out.push(Claim {
                        id: format!("{}/{baseline}+{harmonizer}", g.dataset),
                        words: g.words.clone(),
                        statement: format!(
                            "{} beats {} by {value:+.1} on {} of {}",
                            row_name(baseline, harmonizer),
                            row_name(baseline, "none"),
                            g.average,
                            dataset_name(&g.dataset)
                        ),
                        source: g.source.clone(),
                        kind: ClaimType::Directional,
                        paper: Some(*value),
                        sign: if *value < 0.0 { -1.0 } else { 1.0 },
                        tolerance: 0.0,
                        min_seeds: None,
                        notes,
                        quantity: Quantity::Gain {
                            dataset: g.dataset.clone(),
                            tasks: tasks.clone(),
                            baselines: vec![baseline.clone()],
                            harmonizer: harmonizer.to_owned(),
                            against: "none".to_owned(),
                        },
                    });
                }
            }
        }
        for c in &self.claim {
            let sign = match (c.direction, c.paper) {
                (Some(Direction::Negative), _) => -1.0,
                (Some(Direction::Positive), _) => 1.0,
                (None, Some(p)) if p < 0.0 => -1.0,
                (None, Some(_)) => 1.0,
                (None, None) if c.kind == ClaimType::Directional => bail!("claim {}: a directional claim needs `paper` or `direction`", c.id),
                (None, None) => bail!("claim {}: a value claim needs `paper`", c.id),
            };
            if c.kind == ClaimType::Value && (c.paper.is_none() || c.tolerance.is_none()) {
                bail!("claim {}: a value claim needs `paper` and `tolerance`", c.id);
            }
            out.push(Claim {
                id: c.id.clone(),
                words: c.words.clone(),
                statement: c.words.clone(),
                source: c.source.clone(),
                kind: c.kind,
                paper: c.paper,
                sign,
                tolerance: c.tolerance.unwrap_or(0.0),
                min_seeds: c.min_seeds,
                notes: c.note.iter().cloned().collect(),
                quantity: c.quantity.clone(),
            });
        }
        let mut seen = BTreeSet::new();
        for c in &out {
            if !seen.insert(c.id.as_str()) {
                bail!("claim id '{}' appears twice", c.id);
            }
        }
        Ok(out)
    }
}

pub fn dataset_name(dataset: &str) -> &str {
    match dataset {
        "digits" => "Digits",
        "office31" => "Office-31",
        "officehome" => "Office-Home",
        "visda2017" => "VisDA-2017",
        "domainnet" => "DomainNet",
        other => other,
    }
}

// ------------------------------------------------------------------ statistics

/// How the interval was obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// t interval over the seeds of one unit, with these degrees of freedom.
    TOverSeeds { df: usize },
    /// Percentile bootstrap resampling units, then seeds within each.
    Bootstrap { resamples: usize },
}

impl Method {
    pub fn describe(self) -> String {
        match self {
            Method::TOverSeeds { df } => format!("t over seeds (df {df})"),
            Method::Bootstrap { resamples } => format!("bootstrap over units and seeds ({resamples} resamples)"),
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Method::TOverSeeds { .. } => "t",
            Method::Bootstrap { .. } => "boot",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// Values (unit × seed) behind the estimate.
    pub n: usize,
    pub units: usize,
    /// The fewest seeds any unit has.
    pub min_seeds: usize,
    pub method: Method,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Mean and `confidence` t interval of `values` (n ≥ 2; with one value the interval is unbounded).
pub fn t_interval(values: &[f64], confidence: f64) -> (f64, f64, f64) {
    let n = values.len();
    let m = mean(values);
    if n < 2 {
        return (m, f64::NEG_INFINITY, f64::INFINITY);
    }
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("positive degrees of freedom").inverse_cdf(0.5 + confidence / 2.0);
    let half = t * (var / n as f64).sqrt();
    (m, m - half, m + half)
}

/// Percentile bootstrap of the mean over units of each unit's mean over seeds: each resample
/// draws units with replacement, then each drawn unit's seeds with replacement.
pub fn bootstrap_interval(units: &[Vec<f64>], confidence: f64, resamples: usize, seed: u64) -> (f64, f64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut total = 0.0;
        for _ in 0..units.len() {
            let unit = &units[rng.gen_range(0..units.len())];
            let mut s = 0.0;
            for _ in 0..unit.len() {
                s += unit[rng.gen_range(0..unit.len())];
            }
            total += s / unit.len() as f64;
        }
        stats.push(total / units.len() as f64);
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    (percentile(&stats, tail), percentile(&stats, 1.0 - tail))
}

/// Linear interpolation between order statistics (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

/// The estimate of per-unit, per-seed values.
pub fn estimate(units: &BTreeMap<String, BTreeMap<u64, f64>>, settings: &Settings, seed: u64) -> Option<Estimate> {
    let values: Vec<Vec<f64>> = units.values().map(|s| s.values().copied().collect::<Vec<f64>>()).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return None;
    }
    let n = values.iter().map(Vec::len).sum();
    let min_seeds = values.iter().map(Vec::len).min().unwrap_or(0);
    let point = mean(&values.iter().map(|v| mean(v)).collect::<Vec<f64>>());
    if values.len() == 1 {
        let (m, lo, hi) = t_interval(&values[0], settings.confidence);
        return Some(Estimate { mean: m, lo, hi, n, units: 1, min_seeds, method: Method::TOverSeeds { df: n.saturating_sub(1) } });
    }
    let (lo, hi) = bootstrap_interval(&values, settings.confidence, settings.bootstrap_resamples, seed);
    Some(Estimate { mean: point, lo, hi, n, units: values.len(), min_seeds, method: Method::Bootstrap { resamples: settings.bootstrap_resamples } })
}

// ------------------------------------------------------------------ verdicts

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Reproduced,
    NotReproduced,
    Inconclusive,
    NotRun,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotRun => "not run",
        }
    }
}

/// The verdict on an estimate, and why:
/// - too few seeds (fewer than `min_seeds` in some unit): inconclusive;
/// - directional claims: reproduced when the interval excludes 0 on the paper's side; not
///   reproduced when it excludes the paper's value and the estimate has the other sign (without a
///   paper value: when the whole interval is on the other side of 0, or at 0); else inconclusive;
/// - value claims: inconclusive when the interval is wider than the unit's `max_width`;
///   reproduced when it meets [paper − tolerance, paper + tolerance]; else not reproduced.
pub fn verdict(claim: &Claim, est: &Estimate, settings: &Settings) -> (Verdict, String) {
    let min_seeds = claim.min_seeds.unwrap_or(settings.min_seeds);
    let unit = claim.quantity.unit();
    if est.min_seeds < min_seeds {
        return (Verdict::Inconclusive, format!("{} seed(s) per unit, fewer than {min_seeds}", est.min_seeds));
    }
    let max_width = settings.max_width.get(unit.key()).copied().unwrap_or(f64::INFINITY);
    let width = est.hi - est.lo;
    let null = unit.null();
    match claim.kind {
        ClaimType::Directional => {
            let s = claim.sign;
            let side = if s > 0.0 { "above" } else { "below" };
            if s * (est.lo - null) > 0.0 && s * (est.hi - null) > 0.0 {
                let magnitude = match claim.paper {
                    Some(p) if p < est.lo => format!("; the paper's {} is below the interval", unit.format(p)),
                    Some(p) if p > est.hi => format!("; the paper's {} is above the interval", unit.format(p)),
                    Some(p) => format!("; the paper's {} is inside it", unit.format(p)),
                    None => String::new(),
                };
                return (Verdict::Reproduced, format!("the interval lies {side} {}{magnitude}", unit.format(null)));
            }
            let wrong_sign = s * (est.mean - null) <= 0.0;
            match claim.paper {
                Some(p) if (p < est.lo || p > est.hi) && wrong_sign => {
                    (Verdict::NotReproduced, format!("the interval excludes the paper's {} and the estimate has the other sign", unit.format(p)))
                }
                None if s * (est.hi - null) <= 0.0 && s * (est.lo - null) <= 0.0 => {
                    (Verdict::NotReproduced, format!("the whole interval is on the other side of {}", unit.format(null)))
                }
                _ => {
                    let wide = if width > max_width { format!(" (and is wider than {})", unit.format(max_width).trim_start_matches('+')) } else { String::new() };
                    (Verdict::Inconclusive, format!("the interval contains {}{wide}", unit.format(null)))
                }
            }
        }
        ClaimType::Value => {
            let p = claim.paper.unwrap_or(f64::NAN);
            if !(width <= max_width) {
                return (Verdict::Inconclusive, format!("the interval is wider than {}", unit.format(max_width).trim_start_matches('+')));
            }
            let (band_lo, band_hi) = (p - claim.tolerance, p + claim.tolerance);
            let band = if claim.tolerance > 0.0 { format!("the paper's {} ± {}", unit.format(p), unit.format(claim.tolerance).trim_start_matches('+')) } else { format!("the paper's {}", unit.format(p)) };
            if est.lo <= band_hi && est.hi >= band_lo {
                (Verdict::Reproduced, format!("the interval meets {band}"))
            } else {
                (Verdict::NotReproduced, format!("the interval misses {band}"))
            }
        }
    }
}

// ------------------------------------------------------------------ quantities from records

/// The cells of one dataset, by (baseline, harmonizer label, task, seed).
struct Cells<'a> {
    by_key: HashMap<(&'a str, &'a str, &'a str, u64), &'a CellRecord>,
}

impl<'a> Cells<'a> {
    fn new(records: &'a [CellRecord], dataset: &str) -> Cells<'a> {
        let mut by_key = HashMap::new();
        for r in records.iter().filter(|r| r.dataset == dataset) {
            by_key.entry((r.baseline.as_str(), r.harmonizer.as_str(), r.task.as_str(), r.seed)).or_insert(r);
        }
        Cells { by_key }
    }

    fn get(&self, baseline: &str, harmonizer: &str, task: &str, seed: u64) -> Option<&'a CellRecord> {
        self.by_key.get(&(baseline, harmonizer, task, seed)).copied()
    }

    /// Seeds with a cell of (baseline, harmonizer, task).
    fn seeds(&self, baseline: &str, harmonizer: &str, task: &str) -> BTreeSet<u64> {
        self.by_key.keys().filter(|k| k.0 == baseline && k.1 == harmonizer && k.2 == task).map(|k| k.3).collect()
    }

    /// GH++ cells of (baseline, task, seed) by alpha: the released rule, whole-model weights.
    fn by_alpha(&self, baseline: &str, task: &str, seed: u64) -> BTreeMap<u64, &'a CellRecord> {
        let mut out = BTreeMap::new();
        for (k, r) in &self.by_key {
            let alpha_only = k.1 == "gh++" || k.1.strip_prefix("gh++(α=").is_some_and(|q| !q.contains(','));
            if k.0 == baseline && k.2 == task && k.3 == seed && r.harmonizer_method == "gh++" && alpha_only {
                out.insert(r.alpha.to_bits(), *r);
            }
        }
        out
    }
}

/// Per unit, per seed values, with the records they came from and what was left out.
#[derive(Default)]
struct Series<'a> {
    units: BTreeMap<String, BTreeMap<u64, f64>>,
    expected: Vec<String>,
    used: Vec<&'a CellRecord>,
    left_out: Vec<String>,
    /// Said beside the verdict (where the numbers come from).
    extra_deviations: Vec<String>,
}

impl<'a> Series<'a> {
    fn put(&mut self, unit: &str, seed: u64, value: f64, from: &[&'a CellRecord]) {
        self.units.entry(unit.to_owned()).or_default().insert(seed, value);
        self.used.extend_from_slice(from);
    }
}

fn resolve_tasks(tasks: &Tasks, dataset: &str, paper: &PaperResults) -> Vec<String> {
    match tasks {
        Tasks::List(v) => v.clone(),
        Tasks::Average(a) => {
            let all = paper.task_order(dataset);
            if a.as_str() == "Avg‡" {
                let excluded = paper.avg_dagger_excludes(dataset).unwrap_or_default();
                all.into_iter().filter(|t| !excluded.contains(t)).collect()
            } else {
                all
            }
        }
    }
}

fn accuracy(r: &CellRecord) -> Option<f64> {
    r.final_accuracy.filter(|_| r.diverged_at.is_none())
}

fn unit_name(baseline: Option<&str>, task: &str) -> String {
    let t = task.replace('-', "→");
    match baseline {
        Some(b) => format!("{} {t}", row_name(b, "none")),
        None => t,
    }
}

/// Seeds run for any of these cells (the union; a seed missing one of them is left out and said).
fn seeds_of(cells: &Cells, keys: &[(&str, &str)], task: &str) -> BTreeSet<u64> {
    keys.iter().flat_map(|(b, h)| cells.seeds(b, h, task)).collect()
}

fn series<'a>(q: &Quantity, cells: &Cells<'a>, tasks: &[String], speeds: &Speeds) -> Series<'a> {
    let mut s = Series::default();
    match q {
        Quantity::Gain { baselines, harmonizer, against, .. } => {
            for b in baselines {
                for t in tasks {
                    let unit = unit_name(Some(b), t);
                    s.expected.push(unit.clone());
                    for seed in seeds_of(cells, &[(b, harmonizer), (b, against)], t) {
                        match (cells.get(b, harmonizer, t, seed), cells.get(b, against, t, seed)) {
                            (Some(x), Some(y)) => match (accuracy(x), accuracy(y)) {
                                (Some(ax), Some(ay)) => s.put(&unit, seed, ax - ay, &[x, y]),
                                _ => s.left_out.push(format!("{unit} seed {seed}: a diverged run has no accuracy")),
                            },
                            _ => s.left_out.push(format!("{unit} seed {seed}: only one of the pair ran")),
                        }
                    }
                }
            }
        }
        Quantity::GainContrast { higher, lower, harmonizers, .. } => {
            for t in tasks {
                let unit = unit_name(None, t);
                s.expected.push(unit.clone());
                let keys: Vec<(&str, &str)> = higher.iter().chain(lower).flat_map(|b| std::iter::once("none").chain(harmonizers.iter().map(String::as_str)).map(move |h| (b.as_str(), h))).collect();
                for seed in seeds_of(cells, &keys, t) {
                    let mut from = Vec::new();
                    let mut gain = |b: &str| -> Option<f64> {
                        let base = cells.get(b, "none", t, seed)?;
                        from.push(base);
                        let mut g = Vec::new();
                        for h in harmonizers {
                            let r = cells.get(b, h, t, seed)?;
                            from.push(r);
                            g.push(accuracy(r)? - accuracy(base)?);
                        }
                        Some(mean(&g))
                    };
                    let hi: Option<Vec<f64>> = higher.iter().map(|b| gain(b)).collect();
                    let lo: Option<Vec<f64>> = lower.iter().map(|b| gain(b)).collect();
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => s.put(&unit, seed, mean(&hi) - mean(&lo), &from),
                        _ => s.left_out.push(format!("{unit} seed {seed}: a cell is missing or diverged")),
                    }
                }
            }
        }
        Quantity::ConflictRate { baseline, harmonizer, .. } => {
            for t in tasks {
                let unit = unit_name(Some(baseline), t);
                s.expected.push(unit.clone());
                for seed in cells.seeds(baseline, harmonizer, t) {
                    let r = cells.get(baseline, harmonizer, t, seed).expect("listed seed");
                    match r.pairs.get(main_pair(baseline)).and_then(|p| p.conflict_rate) {
                        Some(c) => s.put(&unit, seed, 100.0 * c, &[r]),
                        None => s.left_out.push(format!("{unit} seed {seed}: no conflict rate recorded")),
                    }
                }
            }
        }
        Quantity::ConflictContrast { higher, lower, .. } => {
            for t in tasks {
                let unit = unit_name(None, t);
                s.expected.push(unit.clone());
                let keys: Vec<(&str, &str)> = higher.iter().chain(lower).map(|b| (b.as_str(), "none")).collect();
                for seed in seeds_of(cells, &keys, t) {
                    let mut from = Vec::new();
                    let mut rate = |b: &str| -> Option<f64> {
                        let r = cells.get(b, "none", t, seed)?;
                        from.push(r);
                        r.pairs.get(main_pair(b))?.conflict_rate.map(|c| 100.0 * c)
                    };
                    let hi: Option<Vec<f64>> = higher.iter().map(|b| rate(b)).collect();
                    let lo: Option<Vec<f64>> = lower.iter().map(|b| rate(b)).collect();
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => s.put(&unit, seed, mean(&hi) - mean(&lo), &from),
                        _ => s.left_out.push(format!("{unit} seed {seed}: a baseline run or its conflict rate is missing")),
                    }
                }
            }
        }
        Quantity::ResidualConflicts { baseline, harmonizer, .. } => {
            let pair = main_pair(baseline);
            for t in tasks {
                let unit = unit_name(Some(baseline), t);
                s.expected.push(unit.clone());
                for seed in cells.seeds(baseline, harmonizer, t) {
                    let r = cells.get(baseline, harmonizer, t, seed).expect("listed seed");
                    let after: Vec<f64> = r.telemetry.iter().filter(|x| x.pair == pair).filter_map(|x| x.d_after).filter(|d| d.is_finite()).collect();
                    if after.is_empty() {
                        s.left_out.push(format!("{unit} seed {seed}: no harmonized inner products recorded"));
                    } else {
                        let negative = after.iter().filter(|d| **d < 0.0).count();
                        s.put(&unit, seed, 100.0 * negative as f64 / after.len() as f64, &[r]);
                    }
                }
            }
        }
        Quantity::InnerProductMean { baseline, .. } => {
            let pair = main_pair(baseline);
            for t in tasks {
                let unit = unit_name(Some(baseline), t);
                s.expected.push(unit.clone());
                for seed in cells.seeds(baseline, "none", t) {
                    let r = cells.get(baseline, "none", t, seed).expect("listed seed");
                    let d: Vec<f64> = r.telemetry.iter().filter(|x| x.pair == pair && x.d.is_finite()).map(|x| x.d).collect();
                    if d.is_empty() {
                        s.left_out.push(format!("{unit} seed {seed}: no inner products recorded"));
                    } else {
                        s.put(&unit, seed, mean(&d), &[r]);
                    }
                }
            }
        }
        Quantity::TimeRatio { baseline, harmonizer, against, .. } => {
            // From the published speeds (bench-speed's rounds, or cells not timed under load).
            for t in tasks {
                let unit = unit_name(Some(baseline), t);
                s.expected.push(unit.clone());
                if against != "none" {
                    s.left_out.push(format!("{unit}: time ratios are measured against `none` only"));
                    continue;
                }
                if let Some(arm) = speeds.find(t, baseline, harmonizer) {
                    for (k, r) in arm.ratio_to_none.iter().enumerate() {
                        s.units.entry(unit.clone()).or_default().insert(k as u64 + 1, *r);
                    }
                }
            }
            if !s.units.is_empty() {
                s.extra_deviations.push(speeds.source.describe());
                if let Source::Cells { loaded_left_out, .. } = &speeds.source {
                    s.used.extend(cells.by_key.values().filter(|r| r.baseline == *baseline && (r.harmonizer == *harmonizer || r.harmonizer == "none")));
                    if !loaded_left_out.is_empty() {
                        s.extra_deviations.push(format!("timed under load, left out: {}", listed(loaded_left_out, 3)));
                    }
                }
            }
        }
        Quantity::AlphaBest { baselines, best, .. } => {
            for b in baselines {
                for t in tasks {
                    let unit = unit_name(Some(b), t);
                    s.expected.push(unit.clone());
                    let seeds: BTreeSet<u64> = cells.by_key.keys().filter(|k| k.0 == b && k.2 == t && k.1.starts_with("gh++")).map(|k| k.3).collect();
                    for seed in seeds {
                        let runs = cells.by_alpha(b, t, seed);
                        let at_best = runs.get(&best.to_bits()).and_then(|r| accuracy(r));
                        let others: Vec<f64> = runs.iter().filter(|(a, _)| **a != best.to_bits()).filter_map(|(_, r)| accuracy(r)).collect();
                        match at_best {
                            Some(x) if !others.is_empty() => s.put(&unit, seed, x - mean(&others), &runs.values().copied().collect::<Vec<_>>()),
                            _ => s.left_out.push(format!("{unit} seed {seed}: needs a completed run at alpha {best} and at another alpha")),
                        }
                    }
                }
            }
        }
    }
    s
}

/// A claim checked on a profile's runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub claim: Claim,
    pub estimate: Option<Estimate>,
    pub verdict: Verdict,
    pub reason: String,
    /// Deviations of the runs behind the estimate, the claim's coverage, what was left out.
    pub deviations: Vec<String>,
}

/// A stable per-claim bootstrap seed (FNV-1a of the id, mixed with the file's seed).
fn claim_seed(base: u64, id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64 ^ base, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn listed(items: &[String], at_most: usize) -> String {
    if items.len() <= at_most {
        items.join("; ")
    } else {
        format!("{}; and {} more", items[..at_most].join("; "), items.len() - at_most)
    }
}

/// Checks every claim against the records of one profile.
pub fn evaluate(claims: &[Claim], records: &[CellRecord], speeds: &Speeds, paper: &PaperResults, settings: &Settings) -> Vec<Outcome> {
    let mut by_dataset: HashMap<&str, Cells> = HashMap::new();
    claims
        .iter()
        .map(|claim| {
            let dataset = claim.quantity.dataset();
            let cells = by_dataset.entry(dataset).or_insert_with(|| Cells::new(records, dataset));
            let tasks = resolve_tasks(claim.quantity.tasks(), dataset, paper);
            let s = series(&claim.quantity, cells, &tasks, speeds);
            let Some(est) = estimate(&s.units, settings, claim_seed(settings.bootstrap_seed, &claim.id)) else {
                let reason = if s.left_out.is_empty() { "no cells of this claim in the profile".to_owned() } else { format!("no usable pair: {}", listed(&s.left_out, 3)) };
                return Outcome { claim: claim.clone(), estimate: None, verdict: Verdict::NotRun, reason, deviations: Vec::new() };
            };
            let mut deviations: BTreeSet<String> = s.used.iter().flat_map(|r| r.deviations.iter().cloned()).collect();
            let missing: Vec<String> = s.expected.iter().filter(|u| !s.units.contains_key(*u)).cloned().collect();
            if !missing.is_empty() {
                deviations.insert(format!("covers {} of the claim's {} units; not run: {}", s.units.len(), s.expected.len(), missing.join(", ")));
            }
            if !s.left_out.is_empty() {
                deviations.insert(format!("left out: {}", listed(&s.left_out, 3)));
            }
            deviations.extend(s.extra_deviations.iter().cloned());
            let mut est = est;
            if claim.quantity.unit() == Unit::Percent {
                // A share of steps lies in [0, 100]; a t interval on few seeds can overshoot.
                (est.lo, est.hi) = (est.lo.max(0.0), est.hi.min(100.0));
            }
            let (verdict, reason) = verdict(claim, &est, settings);
            Outcome { claim: claim.clone(), estimate: Some(est), verdict, reason, deviations: deviations.into_iter().collect() }
        })
        .collect()
}

// ------------------------------------------------------------------ outputs

fn paper_text(c: &Claim) -> String {
    let unit = c.quantity.unit();
    match (c.kind, c.paper) {
        (ClaimType::Value, Some(p)) if c.tolerance > 0.0 => format!("{} ± {}", unit.format(p), unit.format(c.tolerance).trim_start_matches('+')),
        (_, Some(p)) => unit.format(p),
        (_, None) => format!("{} {}", if c.sign > 0.0 { ">" } else { "<" }, unit.format(unit.null()).trim_start_matches('+')),
    }
}

fn interval_text(unit: Unit, e: &Estimate) -> String {
    if e.lo.is_finite() && e.hi.is_finite() {
        format!("[{}, {}]", unit.format(e.lo), unit.format(e.hi))
    } else {
        "(one value: no interval)".to_owned()
    }
}

fn n_text(e: &Estimate) -> String {
    if e.n == e.units * e.min_seeds {
        format!("{}×{}", e.units, e.min_seeds)
    } else {
        format!("{} ({} units)", e.n, e.units)
    }
}

/// Distinct deviations of the checked claims, numbered in order of first appearance.
fn numbered_deviations(outcomes: &[Outcome]) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for o in outcomes {
        for d in &o.deviations {
            if !list.contains(d) {
                list.push(d.clone());
            }
        }
    }
    list
}

fn deviation_refs(o: &Outcome, list: &[String]) -> String {
    let mut refs: Vec<usize> = o.deviations.iter().filter_map(|d| list.iter().position(|x| x == d)).map(|i| i + 1).collect();
    refs.sort_unstable();
    refs.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}

pub fn counts(outcomes: &[Outcome]) -> BTreeMap<Verdict, usize> {
    let mut c = BTreeMap::new();
    for o in outcomes {
        *c.entry(o.verdict).or_insert(0) += 1;
    }
    c
}

fn summary_line(outcomes: &[Outcome]) -> String {
    let c = counts(outcomes);
    [Verdict::Reproduced, Verdict::NotReproduced, Verdict::Inconclusive, Verdict::NotRun]
        .iter()
        .map(|v| format!("{} {}", c.get(v).copied().unwrap_or(0), v.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checked claims as a markdown table (the part the README quotes), with the numbered deviations.
pub fn markdown_table(outcomes: &[Outcome]) -> String {
    let checked: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_some()).collect();
    let owned: Vec<Outcome> = checked.iter().map(|o| (*o).clone()).collect();
    let devs = numbered_deviations(&owned);
    let mut out = String::new();
    let _ = writeln!(out, "| Claim | Source | Paper | Ours, 95% interval | n | Verdict | Dev. |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for o in &checked {
        let e = o.estimate.as_ref().expect("checked");
        let unit = o.claim.quantity.unit();
        let _ = writeln!(
            out,
            "| `{}`: {} | {} | {} | {} {} ({}) | {} | **{}**: {} | {} |",
            o.claim.id,
            o.claim.statement.replace('|', "/"),
            o.claim.source,
            paper_text(&o.claim),
            unit.format(e.mean),
            interval_text(unit, e),
            e.method.short(),
            n_text(e),
            o.verdict.label(),
            o.reason,
            deviation_refs(o, &devs)
        );
    }
    if !devs.is_empty() {
        let _ = writeln!(out, "\nDeviations and coverage:\n");
        for (i, d) in devs.iter().enumerate() {
            let _ = writeln!(out, "{}. {d}", i + 1);
        }
    }
    out
}

/// `claims.md`: the table a person reads first.
pub fn markdown(outcomes: &[Outcome], profile: &str, settings: &Settings) -> String {
    let mut out = format!("# The paper's claims, checked on profile `{profile}`\n\n");
    let _ = writeln!(out, "{}.\n", summary_line(outcomes));
    let _ = writeln!(
        out,
        "Each quantity is computed per unit (a baseline × task, or a task) and seed; gains are paired by seed \
         (same initialisation and data order), last model. Intervals at {:.0}%: `t` = t interval over the seeds of \
         one unit; `boot` = percentile bootstrap over units and the seeds within them ({} resamples, where a claim \
         averages several units). n = units × seeds. Verdicts: fewer than {} seeds per unit → inconclusive; a \
         directional claim is *reproduced* when the interval excludes 0 (1× for ratios) on the paper's side, *not \
         reproduced* when it excludes the paper's value and the estimate has the other sign; a value claim is \
         reproduced when the interval meets the paper's value ± its tolerance, inconclusive when the interval is \
         too wide. Intervals of shares of steps are clipped to [0%, 100%]. Claims and rules: `report/paper_claims.toml`.\n",
        100.0 * settings.confidence,
        settings.bootstrap_resamples,
        settings.min_seeds
    );
    if outcomes.iter().any(|o| o.estimate.is_some()) {
        out.push_str(&markdown_table(outcomes));
    } else {
        let _ = writeln!(out, "No claim has cells in this profile.");
    }
    let not_run: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_none()).collect();
    if !not_run.is_empty() {
        let _ = writeln!(out, "\n## Not run in this profile ({})\n", not_run.len());
        let mut by_dataset: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for o in &not_run {
            by_dataset.entry(o.claim.quantity.dataset()).or_default().push(o.claim.id.as_str());
        }
        for (d, ids) in by_dataset {
            let _ = writeln!(out, "- {}: {}", dataset_name(d), ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "));
        }
    }
    let mut notes: Vec<(String, Vec<&str>)> = Vec::new();
    for o in outcomes {
        for n in &o.claim.notes {
            match notes.iter_mut().find(|(x, _)| x == n) {
                Some((_, ids)) => ids.push(&o.claim.id),
                None => notes.push((n.clone(), vec![&o.claim.id])),
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\n## Notes on the paper's statements\n");
        for (n, ids) in notes {
            let shown: Vec<String> = ids.iter().take(3).map(|i| format!("`{i}`")).collect();
            let more = if ids.len() > 3 { format!(" and {} more", ids.len() - 3) } else { String::new() };
            let _ = writeln!(out, "- {n} ({}{more})", shown.join(", "));
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `claims.csv`: every claim, checked or not.
pub fn csv(outcomes: &[Outcome]) -> String {
    let mut out = String::from("id,source,type,unit,paper,tolerance,estimate,lo,hi,n,units,min_seeds,method,verdict,reason,deviations\n");
    let num = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| format!("{x:.6}")).unwrap_or_default();
    for o in outcomes {
        let e = o.estimate.as_ref();
        let fields = [
            o.claim.id.clone(),
            o.claim.source.clone(),
            match o.claim.kind {
                ClaimType::Directional => "directional".into(),
                ClaimType::Value => "value".into(),
            },
            o.claim.quantity.unit().key().to_owned(),
            num(o.claim.paper),
            num(Some(o.claim.tolerance)),
            num(e.map(|e| e.mean)),
            num(e.map(|e| e.lo)),
            num(e.map(|e| e.hi)),
            e.map(|e| e.n.to_string()).unwrap_or_default(),
            e.map(|e| e.units.to_string()).unwrap_or_default(),
            e.map(|e| e.min_seeds.to_string()).unwrap_or_default(),
            e.map(|e| e.method.describe()).unwrap_or_default(),
            o.verdict.label().to_owned(),
            o.reason.clone(),
            o.deviations.join(" | "),
        ];
        let _ = writeln!(out, "{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
    }
    out
}

/// `claims.tex`: the checked claims as a booktabs table.
pub fn latex(outcomes: &[Outcome], profile: &str, settings: &Settings) -> String {
    let checked: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_some()).collect();
    let owned: Vec<Outcome> = checked.iter().map(|o| (*o).clone()).collect();
    let devs = numbered_deviations(&owned);
    let mut out = String::new();
    let _ = writeln!(out, "% Generated by `report` from the runs of profile {profile}; do not edit by hand.");
    let _ = writeln!(out, "\\begin{{table*}}[t]");
    let _ = writeln!(out, "\\centering\\small");
    let dev_text: Vec<String> = devs.iter().enumerate().map(|(i, d)| format!("({}) {}", i + 1, escape(d))).collect();
    let _ = writeln!(
        out,
        "\\caption{{The paper's claims checked on our runs ({}). Estimates with {:.0}\\% intervals: t over seeds (one unit) or a bootstrap over units and seeds; n = units $\\times$ seeds. Not run here: {} claims (claims.md). Deviations: {}}}",
        escape(&summary_line(outcomes)),
        100.0 * settings.confidence,
        outcomes.len() - checked.len(),
        if dev_text.is_empty() { "none.".to_owned() } else { dev_text.join("; ") }
    );
    let _ = writeln!(out, "\\label{{tab:claims}}");
    let _ = writeln!(out, "\\begin{{tabular}}{{p{{6.2cm}}lllllc}}");
    let _ = writeln!(out, "\\toprule");
    let _ = writeln!(out, "Claim & Source & Paper & Ours & 95\\% interval & n & Verdict \\\\");
    let _ = writeln!(out, "\\midrule");
    for o in &checked {
        let e = o.estimate.as_ref().expect("checked");
        let unit = o.claim.quantity.unit();
        let refs = deviation_refs(o, &devs);
        let refs = if refs.is_empty() { String::new() } else { format!("$^{{{refs}}}$") };
        let _ = writeln!(
            out,
            "{} & {} & {} & {} & {} & {} & {}{} \\\\",
            escape(&o.claim.statement),
            escape(&o.claim.source),
            escape(&paper_text(&o.claim)),
            escape(&unit.format(e.mean)),
            escape(&interval_text(unit, e)),
            escape(&n_text(e)),
            escape(o.verdict.label()),
            refs
        );
    }
    let _ = writeln!(out, "\\bottomrule");
    let _ = writeln!(out, "\\end{{tabular}}");
    let _ = writeln!(out, "\\end{{table*}}");
    out
}
