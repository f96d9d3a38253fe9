//! The paper's claims (`report/paper_claims.toml`, embedded) and their verdicts on a profile's runs:
//! the claims file and its expansion (here), the statistics (`stats`), the quantities computed from
//! run records (`quantities`), and claims.md / .tex / .csv (`outputs`).
//!
//! Every quantity is computed per *unit* (a baseline × task, or a task) and seed, from cells that the
//! grid pairs by seed (same initialisation and data order), so a gain is a per-seed difference. The
//! estimate is the mean over units of the mean over seeds. Its interval: a t interval over seeds
//! when the claim has one unit; a bootstrap over units and seeds (percentile, fixed seed) when it
//! averages several. Verdict rules: [`verdict`].

mod outputs;
mod quantities;
mod stats;

pub use outputs::{counts, csv, headline, latex, markdown, markdown_table};
pub use stats::{bootstrap_interval, estimate, t_interval, Estimate, Method};

use crate::latex::row_name;
use crate::paper::PaperResults;
use crate::records::CellRecord;
use crate::speed::Speeds;
use anyhow::{bail, Context, Result};
use quantities::{resolve_tasks, series, Cells};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const EMBEDDED: &str = include_str!("../../paper_claims.toml");

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
    /// Mean angle (degrees) between the two harmonized gradients over the measured conflicting
    /// steps of `harmonizer`'s runs, from the telemetry's |g1|, |g2|, d, w1, w2 and the
    /// harmonized inner product where the rule defines one (GH; GH++ by rotation: g1''·g2'' with
    /// the norms kept); GH++ as released scales each gradient (w1·g1, w2·g2), whose angle is θ.
    HarmonizedAngle {
        dataset: String,
        tasks: Tasks,
        baseline: String,
        harmonizer: String,
    },
    /// Mean over measured conflicting steps of the angle between the update the harmonizer
    /// applies (w1·g1 + w2·g2) and the unharmonized one (g1 + g2), `harmonizer`'s runs divided
    /// by `against`'s, per seed.
    DeviationRatio {
        dataset: String,
        tasks: Tasks,
        baseline: String,
        harmonizer: String,
        against: String,
    },
    /// The smallest, over the five fifths of a run's iterations, of the % of measured steps
    /// whose pair conflicts (fifths with no measured step of the pair, e.g. inside CDAN's
    /// source-only warm-up, are skipped).
    ConflictRateMinFifth {
        dataset: String,
        tasks: Tasks,
        baseline: String,
        #[serde(default = "none")]
        harmonizer: String,
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
    Degrees,
}

impl Unit {
    pub fn key(self) -> &'static str {
        match self {
            Unit::Points => "points",
            Unit::Percent => "percent",
            Unit::Ratio => "ratio",
            Unit::InnerProduct => "inner_product",
            Unit::Degrees => "degrees",
        }
    }

    /// Axis title of the forest plot's panel.
    pub fn axis(self) -> &'static str {
        match self {
            Unit::Points => "accuracy difference (points)",
            Unit::Percent => "% of measured steps",
            Unit::Ratio => "time ratio (harmonized / baseline)",
            Unit::InnerProduct => "mean inner product g1·g2",
            Unit::Degrees => "angle (degrees)",
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
            Unit::Degrees => format!("{v:.2}°"),
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
            | Quantity::AlphaBest { dataset, .. }
            | Quantity::HarmonizedAngle { dataset, .. }
            | Quantity::DeviationRatio { dataset, .. }
            | Quantity::ConflictRateMinFifth { dataset, .. } => dataset,
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
            | Quantity::AlphaBest { tasks, .. }
            | Quantity::HarmonizedAngle { tasks, .. }
            | Quantity::DeviationRatio { tasks, .. }
            | Quantity::ConflictRateMinFifth { tasks, .. } => tasks,
        }
    }

    pub fn unit(&self) -> Unit {
        match self {
            Quantity::Gain { .. } | Quantity::GainContrast { .. } | Quantity::AlphaBest { .. } => Unit::Points,
            Quantity::ConflictRate { .. } | Quantity::ConflictContrast { .. } | Quantity::ResidualConflicts { .. } | Quantity::ConflictRateMinFifth { .. } => Unit::Percent,
            Quantity::TimeRatio { .. } | Quantity::DeviationRatio { .. } => Unit::Ratio,
            Quantity::HarmonizedAngle { .. } => Unit::Degrees,
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

pub(crate) fn listed(items: &[String], at_most: usize) -> String {
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

