//! A claim's quantity, per unit (a baseline × task, or a task) and seed, from the run records and
//! the published speeds.

use super::stats::mean;
use super::{listed, Quantity, Tasks};
use crate::aggregate::main_pair;
use crate::latex::row_name;
use crate::paper::PaperResults;
use crate::records::CellRecord;
use crate::speed::{Source, Speeds};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The cells of one dataset, by (baseline, harmonizer label, task, seed).
pub(super) struct Cells<'a> {
    by_key: HashMap<(&'a str, &'a str, &'a str, u64), &'a CellRecord>,
}

impl<'a> Cells<'a> {
    pub(super) fn new(records: &'a [CellRecord], dataset: &str) -> Cells<'a> {
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
pub(super) struct Series<'a> {
    pub(super) units: BTreeMap<String, BTreeMap<u64, f64>>,
    pub(super) expected: Vec<String>,
    pub(super) used: Vec<&'a CellRecord>,
    pub(super) left_out: Vec<String>,
    /// Said beside the verdict (where the numbers come from).
    pub(super) extra_deviations: Vec<String>,
}

impl<'a> Series<'a> {
    fn put(&mut self, unit: &str, seed: u64, value: f64, from: &[&'a CellRecord]) {
        self.units.entry(unit.to_owned()).or_default().insert(seed, value);
        self.used.extend_from_slice(from);
    }
}

/// A quantity of each run of (baseline, harmonizer) on its own, per task and seed; a run whose
/// `value` is None is left out with `missing`.
fn per_run<'a>(s: &mut Series<'a>, cells: &Cells<'a>, tasks: &[String], baseline: &str, harmonizer: &str, missing: &str, value: impl Fn(&CellRecord) -> Option<f64>) {
    for t in tasks {
        let unit = unit_name(Some(baseline), t);
        s.expected.push(unit.clone());
        for seed in cells.seeds(baseline, harmonizer, t) {
            let r = cells.get(baseline, harmonizer, t, seed).expect("listed seed");
            match value(r) {
                Some(v) => s.put(&unit, seed, v, &[r]),
                None => s.left_out.push(format!("{unit} seed {seed}: {missing}")),
            }
        }
    }
}

pub(super) fn resolve_tasks(tasks: &Tasks, dataset: &str, paper: &PaperResults) -> Vec<String> {
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

pub(super) fn series<'a>(q: &Quantity, cells: &Cells<'a>, tasks: &[String], speeds: &Speeds) -> Series<'a> {
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
                                _ if x.not_trained.is_some() || y.not_trained.is_some() => {
                                    s.left_out.push(format!("{unit} seed {seed}: a run that never trained its transfer loss or pair has no accuracy"))
                                }
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
            per_run(&mut s, cells, tasks, baseline, harmonizer, "no conflict rate recorded", |r| {
                r.pairs.get(main_pair(baseline)).and_then(|p| p.conflict_rate).map(|c| 100.0 * c)
            });
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
            per_run(&mut s, cells, tasks, baseline, harmonizer, "no harmonized inner products recorded", |r| {
                let after: Vec<f64> = r.telemetry.iter().filter(|x| x.pair == pair).filter_map(|x| x.d_after).filter(|d| d.is_finite()).collect();
                let negative = after.iter().filter(|d| **d < 0.0).count();
                (!after.is_empty()).then(|| 100.0 * negative as f64 / after.len() as f64)
            });
        }
        Quantity::InnerProductMean { baseline, .. } => {
            let pair = main_pair(baseline);
            per_run(&mut s, cells, tasks, baseline, "none", "no inner products recorded", |r| {
                let d: Vec<f64> = r.telemetry.iter().filter(|x| x.pair == pair && x.d.is_finite()).map(|x| x.d).collect();
                (!d.is_empty()).then(|| mean(&d))
            });
        }
        Quantity::HarmonizedAngle { baseline, harmonizer, .. } => {
            let pair = main_pair(baseline);
            per_run(&mut s, cells, tasks, baseline, harmonizer, "no conflicting step with norms recorded", |r| {
                let angles: Vec<f64> = r.telemetry.iter().filter(|x| x.pair == pair && x.conflict).filter_map(harmonized_angle).collect();
                (!angles.is_empty()).then(|| mean(&angles))
            });
        }
        Quantity::DeviationRatio { baseline, harmonizer, against, .. } => {
            let pair = main_pair(baseline);
            let mean_deviation = |r: &CellRecord| -> Option<f64> {
                let d: Vec<f64> = r.telemetry.iter().filter(|x| x.pair == pair && x.conflict).filter_map(update_deviation).collect();
                (!d.is_empty()).then(|| mean(&d))
            };
            for t in tasks {
                let unit = unit_name(Some(baseline), t);
                s.expected.push(unit.clone());
                for seed in seeds_of(cells, &[(baseline, harmonizer), (baseline, against)], t) {
                    match (cells.get(baseline, harmonizer, t, seed), cells.get(baseline, against, t, seed)) {
                        (Some(x), Some(y)) => match (mean_deviation(x), mean_deviation(y)) {
                            (Some(a), Some(b)) if b > 0.0 => s.put(&unit, seed, a / b, &[x, y]),
                            _ => s.left_out.push(format!("{unit} seed {seed}: no conflicting step with norms recorded in one of the pair")),
                        },
                        _ => s.left_out.push(format!("{unit} seed {seed}: only one of the pair ran")),
                    }
                }
            }
        }
        Quantity::ConflictRateMinFifth { baseline, harmonizer, .. } => {
            let pair = main_pair(baseline);
            per_run(&mut s, cells, tasks, baseline, harmonizer, "no measured step of the pair", |r| {
                let length = r.iterations.max(1);
                let mut fifths = [(0u64, 0u64); 5];
                for x in r.telemetry.iter().filter(|x| x.pair == pair && x.d.is_finite()) {
                    let k = ((x.iteration * 5 / length) as usize).min(4);
                    fifths[k].0 += 1;
                    fifths[k].1 += u64::from(x.conflict);
                }
                let rates: Vec<f64> = fifths.iter().filter(|(n, _)| *n > 0).map(|(n, c)| 100.0 * *c as f64 / *n as f64).collect();
                (!rates.is_empty()).then(|| rates.iter().copied().fold(f64::INFINITY, f64::min))
            });
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

/// The angle (degrees) between the two harmonized gradients of a step; None without norms.
/// With a recorded harmonized inner product (GH, GH++ by rotation) from it and the harmonized
/// norms: GH's g1' = g1 − (d/|g2|²)·g2 has |g1'| = |g1|·sin θ (and likewise g2'); the rotation
/// keeps the norms. GH++ as released scales each gradient by its weight: cos = sign(w1·w2)·cos θ.
pub(crate) fn harmonized_angle(x: &crate::records::Telemetry) -> Option<f64> {
    if !(x.norm1 > 0.0 && x.norm2 > 0.0 && x.cos.is_finite()) {
        return None;
    }
    let cos = match x.d_after {
        Some(after) if after == 0.0 => 0.0,
        Some(after) => {
            let sin2 = (1.0 - x.cos * x.cos).max(0.0);
            // GH's harmonized norms (|g|·sin θ); a rotation's d_after is exactly 0 (above).
            after / (x.norm1 * x.norm2 * sin2)
        }
        None => (x.w1 * x.w2).signum() * x.cos,
    };
    Some(cos.clamp(-1.0, 1.0).acos().to_degrees())
}

/// The angle (degrees) between the applied update w1·g1 + w2·g2 and the unharmonized g1 + g2,
/// from |g1|, |g2|, d = g1·g2 and the weights; None without norms or for a zero update.
pub(crate) fn update_deviation(x: &crate::records::Telemetry) -> Option<f64> {
    let (n1, n2, d) = (x.norm1 * x.norm1, x.norm2 * x.norm2, x.d);
    if !(n1 > 0.0 && n2 > 0.0 && d.is_finite() && x.w1.is_finite() && x.w2.is_finite()) {
        return None;
    }
    let (w1, w2) = (x.w1, x.w2);
    let applied = w1 * w1 * n1 + w2 * w2 * n2 + 2.0 * w1 * w2 * d;
    let plain = n1 + n2 + 2.0 * d;
    let dot = w1 * n1 + w2 * n2 + (w1 + w2) * d;
    if !(applied > 0.0 && plain > 0.0) {
        return None;
    }
    Some((dot / (applied.sqrt() * plain.sqrt())).clamp(-1.0, 1.0).acos().to_degrees())
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Telemetry;

    fn step(n1: f64, n2: f64, d: f64, w1: f64, w2: f64, d_after: Option<f64>) -> Telemetry {
        let (a, b) = (n1.sqrt(), n2.sqrt());
        Telemetry { iteration: 0, pair: "p".into(), d, cos: d / (a * b), conflict: d < 0.0, w1, w2, d_after, norm1: a, norm2: b }
    }

    /// The angle between two 2-d vectors, degrees.
    fn angle(u: (f64, f64), v: (f64, f64)) -> f64 {
        ((u.0 * v.0 + u.1 * v.1) / ((u.0 * u.0 + u.1 * u.1).sqrt() * (v.0 * v.0 + v.1 * v.1).sqrt())).acos().to_degrees()
    }

    #[test]
    fn harmonized_angles_of_each_rule() {
        // g1 = (1, 0), g2 = 2·(cos 120°, sin 120°): θ = 120°, n1 = 1, n2 = 4, d = −1.
        let (n1, n2, d) = (1.0, 4.0, -1.0);
        let cos: f64 = -0.5;
        // GH: g1' = g1 − (d/n2)·g2 and g2' = g2 − (d/n1)·g1, at 180° − θ = 60°.
        let gh = step(n1, n2, d, 1.0 - d / n1, 1.0 - d / n2, Some(-d * (1.0 - cos * cos)));
        assert!((harmonized_angle(&gh).unwrap() - 60.0).abs() < 1e-9);
        let rotation = step(n1, n2, d, 1.3, 0.9, Some(0.0));
        assert_eq!(harmonized_angle(&rotation), Some(90.0));
        // As released: w1·g1 and w2·g2 keep θ.
        let released = step(n1, n2, d, 1.2611, 0.7389, None);
        assert!((harmonized_angle(&released).unwrap() - 120.0).abs() < 1e-9);
        assert_eq!(harmonized_angle(&Telemetry { norm1: f64::NAN, ..released }), None);
    }

    #[test]
    fn update_deviation_is_the_angle_between_the_applied_and_the_plain_update() {
        let g1 = (1.0, 0.0);
        let g2 = (2.0 * (120f64).to_radians().cos(), 2.0 * (120f64).to_radians().sin());
        for (w1, w2) in [(2.0, 1.25), (1.2611, 0.7389), (1.0, 1.0)] {
            let applied = (w1 * g1.0 + w2 * g2.0, w1 * g1.1 + w2 * g2.1);
            let plain = (g1.0 + g2.0, g1.1 + g2.1);
            let expected = if (w1, w2) == (1.0, 1.0) { 0.0 } else { angle(applied, plain) };
            let got = update_deviation(&step(1.0, 4.0, -1.0, w1, w2, None)).unwrap();
            assert!((got - expected).abs() < 1e-6, "w = ({w1}, {w2}): {got} vs {expected}");
        }
    }
}
