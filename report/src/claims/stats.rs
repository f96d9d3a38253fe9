//! Intervals: a t interval over the seeds of one unit, a percentile bootstrap over units and seeds.

use super::Settings;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeMap;

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

pub(crate) fn mean(v: &[f64]) -> f64 {
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

