//! Regression checks for nightly runs: a runs folder against thresholds kept as data
//! (`ci/thresholds.toml`), proposing thresholds from a trusted run, and comparing two runs folders
//! seed by seed.

use crate::claims::t_interval;
use crate::records::{self, CellRecord, ManifestCell};
use crate::speed;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// `ci/thresholds.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsFile {
    #[serde(default)]
    pub group: Vec<Threshold>,
}

/// The bounds of one cell group: a profile's task × baseline × harmonizer over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub profile: String,
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    pub harmonizer: String,
    /// "completed" (every seed must complete), "diverged" (a divergence is the expected result)
    /// or "any".
    #[serde(default = "completed")]
    pub status: String,
    /// Lowest acceptable mean final accuracy over the completed seeds (%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_final_accuracy: Option<f64>,
    /// How that bound was set (e.g. "mean 95.1 - 2 x std 0.4 over 2 seeds").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_tolerance: Option<String>,
    /// Highest acceptable median seconds per 100 training iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds_per_100: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_tolerance: Option<String>,
    /// Where the bounds came from.
    pub source: ThresholdSource,
}

fn completed() -> String {
    "completed".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSource {
    pub commit: String,
    pub date: String,
    pub runs: String,
}

impl ThresholdsFile {
    pub fn load(path: &Path) -> Result<ThresholdsFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ThresholdsFile = toml::from_str(&text).with_context(|| format!("{} is not a thresholds file", path.display()))?;
        if file.group.is_empty() {
            bail!("{} has no [[group]]: propose thresholds from a trusted run with `report thresholds --from <runs> --profile <profile> --out {}`, review and commit them", path.display(), path.display());
        }
        for (i, g) in file.group.iter().enumerate() {
            if !["completed", "diverged", "any"].contains(&g.status.as_str()) {
                bail!("{}: group {} ({}): status '{}' must be completed, diverged or any", path.display(), i + 1, g.label(), g.status);
            }
        }
        Ok(file)
    }
}

impl Threshold {
    pub fn label(&self) -> String {
        format!("{}/{}/{}/{}/{}", self.profile, self.dataset, self.task, self.baseline, self.harmonizer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
}

/// One line of the check: a group's cells, status, accuracy or speed against its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    pub group: String,
    /// cells, status, accuracy, speed, group.
    pub check: &'static str,
    pub value: String,
    pub bound: String,
    pub verdict: Verdict,
    /// Why, for failures (and notes for passes).
    pub detail: String,
}

/// Checks the runs under `runs` against `thresholds`: the groups of `only` (profile names), or
/// of every profile in the file when `only` is empty. A profile asked for with no group in the
/// file is an error naming how to derive them (its first run has nothing to be checked against).
pub fn check(runs: &Path, thresholds: &ThresholdsFile, only: &[String]) -> Result<Vec<CheckRow>> {
    let in_file: BTreeSet<&str> = thresholds.group.iter().map(|g| g.profile.as_str()).collect();
    for p in only {
        if !in_file.contains(p.as_str()) {
            bail!(
                "the thresholds have no group of profile {p} (they cover: {}): propose them from a trusted run with `report thresholds --from {} --profile {p}`, review and add them",
                in_file.iter().copied().collect::<Vec<_>>().join(", "),
                runs.display()
            );
        }
    }
    let profiles: BTreeSet<&str> = in_file.into_iter().filter(|p| only.is_empty() || only.iter().any(|o| o == p)).collect();
    let mut rows = Vec::new();
    for profile in profiles {
        let manifest = records::manifest(runs, profile)?;
        let records = records::load_done(runs, &manifest)?;
        let bench = speed::load_bench(runs, profile)?;
        let speeds = speed::speeds(bench.as_ref(), &records);
        for g in thresholds.group.iter().filter(|g| g.profile == profile) {
            rows.extend(check_group(g, &manifest, &records, &speeds));
        }
    }
    Ok(rows)
}

fn check_group(g: &Threshold, manifest: &[ManifestCell], records: &[CellRecord], speeds: &speed::Speeds) -> Vec<CheckRow> {
    let label = g.label();
    let row = |check: &'static str, value: String, bound: String, pass: bool, detail: String| CheckRow {
        group: label.clone(),
        check,
        value,
        bound,
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        detail,
    };
    let cells: Vec<&ManifestCell> = manifest.iter().filter(|c| c.dataset == g.dataset && c.task == g.task && c.baseline == g.baseline && c.harmonizer == g.harmonizer).collect();
    if cells.is_empty() {
        return vec![row("group", "absent".into(), "in the profile".into(), false, format!("unknown group: profile {}'s manifest has no such cells (renamed or removed? update the thresholds file)", g.profile))];
    }
    let mut out = Vec::new();
    let missing: Vec<String> = cells.iter().filter(|c| !c.done).map(|c| format!("seed {}", c.seed)).collect();
    out.push(row(
        "cells",
        format!("{}/{}", cells.len() - missing.len(), cells.len()),
        format!("{}/{}", cells.len(), cells.len()),
        missing.is_empty(),
        if missing.is_empty() { String::new() } else { format!("missing cell(s): {}", missing.join(", ")) },
    ));
    let runs: Vec<&CellRecord> = records.iter().filter(|r| r.dataset == g.dataset && r.task == g.task && r.baseline == g.baseline && r.harmonizer == g.harmonizer).collect();
    let diverged: Vec<String> = runs.iter().filter(|r| r.diverged_at.is_some()).map(|r| format!("seed {} at iteration {}", r.seed, r.diverged_at.unwrap_or(0))).collect();
    let status_ok = match g.status.as_str() {
        "completed" => diverged.is_empty(),
        "diverged" => !diverged.is_empty() || runs.is_empty(),
        _ => true,
    };
    out.push(row(
        "status",
        if diverged.is_empty() { "completed".into() } else { format!("{} diverged", diverged.len()) },
        g.status.clone(),
        status_ok,
        if diverged.is_empty() { String::new() } else { format!("diverged: {}", diverged.join(", ")) },
    ));
    if let Some(min) = g.min_final_accuracy {
        let acc: Vec<f64> = runs.iter().filter_map(|r| r.final_accuracy.filter(|_| r.diverged_at.is_none())).collect();
        match acc.is_empty() {
            true => out.push(row("accuracy", "no completed run".into(), format!(">= {min:.2}"), false, "no completed run to measure".into())),
            false => {
                let mean = acc.iter().sum::<f64>() / acc.len() as f64;
                out.push(row("accuracy", format!("{mean:.2}"), format!(">= {min:.2}"), mean >= min, format!("mean final accuracy over {} seed(s)", acc.len())));
            }
        }
    }
    if let Some(max) = g.max_seconds_per_100 {
        match speeds.find(&g.task, &g.baseline, &g.harmonizer).and_then(|a| a.median_seconds()) {
            Some(s) => out.push(row("speed", format!("{s:.3}"), format!("<= {max:.3}"), s <= max, format!("median seconds per 100 iterations ({})", speeds.source.short()))),
            None => out.push(row("speed", "no timing".into(), format!("<= {max:.3}"), false, format!("no timing for this group ({})", speeds.source.short()))),
        }
    }
    out
}

pub fn failed(rows: &[CheckRow]) -> usize {
    rows.iter().filter(|r| r.verdict == Verdict::Fail).count()
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
    }
}

pub fn text(rows: &[CheckRow]) -> String {
    let w = rows.iter().map(|r| r.group.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<w$}  {:<8}  {:>16}  {:>16}  {:<7}  {}\n", "group", "check", "value", "bound", "verdict", "detail");
    for r in rows {
        let _ = writeln!(out, "{:<w$}  {:<8}  {:>16}  {:>16}  {:<7}  {}", r.group, r.check, r.value, r.bound, verdict_text(r.verdict), r.detail);
    }
    let _ = writeln!(out, "\n{} check(s), {} failed", rows.len(), failed(rows));
    out
}

pub fn markdown(rows: &[CheckRow]) -> String {
    let mut out = format!("### Regression check: {} check(s), {} failed\n\n| Group | Check | Value | Bound | Verdict | Detail |\n|---|---|---|---|---|---|\n", rows.len(), failed(rows));
    for r in rows {
        let v = if r.verdict == Verdict::Fail { "**FAIL**" } else { "pass" };
        let _ = writeln!(out, "| `{}` | {} | {} | {} | {v} | {} |", r.group, r.check, r.value, r.bound.replace('<', "&lt;").replace('>', "&gt;"), r.detail.replace('|', "/"));
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// JUnit XML: one test case per check, a failure element for each failed one.
pub fn junit(rows: &[CheckRow]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"report check\" tests=\"{}\" failures=\"{}\">", rows.len(), failed(rows));
    let _ = writeln!(out, "  <testsuite name=\"regression thresholds\" tests=\"{}\" failures=\"{}\">", rows.len(), failed(rows));
    for r in rows {
        let name = xml(&format!("{} {}", r.check, r.group));
        match r.verdict {
            Verdict::Pass => {
                let _ = writeln!(out, "    <testcase classname=\"{}\" name=\"{name}\"/>", xml(&r.group));
            }
            Verdict::Fail => {
                let _ = writeln!(out, "    <testcase classname=\"{}\" name=\"{name}\">", xml(&r.group));
                let _ = writeln!(out, "      <failure message=\"{}\">value {} against bound {}: {}</failure>", xml(&format!("{}: {} (bound {})", r.check, r.value, r.bound)), xml(&r.value), xml(&r.bound), xml(&r.detail));
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Thresholds proposed from a trusted run of `profile` (a maintainer reviews and commits them):
/// accuracy at the mean less twice the seed spread (at least 1 point), speed at 1.25 x the
/// median (left out with `with_speed` false: CPU timings belong to the machine that measured
/// them), status as observed. The seed spread is pooled over the baseline's groups of the run
/// (same dataset): a standard deviation from one group's two seeds has one degree of freedom and
/// comes out near zero by chance (bands too tight, nights failing on noise); pooled over a
/// baseline's tasks and harmonizers it has one per group.
pub fn propose(runs: &Path, profile: &str, commit: &str, date: &str, with_speed: bool) -> Result<ThresholdsFile> {
    let manifest = records::manifest(runs, profile)?;
    let records = records::load_done(runs, &manifest)?;
    let bench = speed::load_bench(runs, profile)?;
    let speeds = speed::speeds(bench.as_ref(), &records);
    let mut groups: BTreeMap<(String, String, String, String), Vec<&CellRecord>> = BTreeMap::new();
    for c in &manifest {
        groups.entry((c.dataset.clone(), c.task.clone(), c.baseline.clone(), c.harmonizer.clone())).or_default();
    }
    for r in &records {
        groups.entry((r.dataset.clone(), r.task.clone(), r.baseline.clone(), r.harmonizer.clone())).or_default().push(r);
    }
    let completed = |runs_of: &[&CellRecord]| -> Vec<f64> { runs_of.iter().filter_map(|r| r.final_accuracy.filter(|_| r.diverged_at.is_none())).collect() };
    // (dataset, baseline) -> (sum of squared deviations from each group's mean, degrees of freedom).
    let mut spread: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for ((dataset, _, baseline, _), runs_of) in &groups {
        let acc = completed(runs_of);
        if acc.len() > 1 {
            let mean = acc.iter().sum::<f64>() / acc.len() as f64;
            let e = spread.entry((dataset.clone(), baseline.clone())).or_default();
            e.0 += acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>();
            e.1 += acc.len() - 1;
        }
    }
    let mut out = ThresholdsFile::default();
    for ((dataset, task, baseline, harmonizer), runs_of) in groups {
        if runs_of.is_empty() {
            continue; // nothing measured yet: no bound to propose
        }
        let acc = completed(&runs_of);
        let status = if runs_of.iter().all(|r| r.diverged_at.is_none()) { "completed" } else if acc.is_empty() { "diverged" } else { "any" };
        let (min_final_accuracy, accuracy_tolerance) = if acc.is_empty() {
            (None, None)
        } else {
            let mean = acc.iter().sum::<f64>() / acc.len() as f64;
            let (std, spread_text) = match spread.get(&(dataset.clone(), baseline.clone())) {
                Some(&(squares, dof)) if dof > 0 => {
                    let std = (squares / dof as f64).sqrt();
                    (std, format!("seed std {std:.2} pooled over {baseline}'s groups, {dof} dof"))
                }
                _ => (0.0, "no seed spread measured".to_owned()),
            };
            let band = (2.0 * std).max(1.0);
            (Some(((mean - band) * 100.0).floor() / 100.0), Some(format!("mean {mean:.2} over {} seed(s) - max(2 x {spread_text}, 1 point)", acc.len())))
        };
        let (max_seconds_per_100, speed_tolerance) = match speeds.find(&task, &baseline, &harmonizer).and_then(|a| a.median_seconds()).filter(|_| with_speed) {
            Some(m) => (Some(((m * 1.25) * 1000.0).ceil() / 1000.0), Some(format!("1.25 x median {m:.3} ({})", speeds.source.short()))),
            None => (None, None),
        };
        out.group.push(Threshold {
            profile: profile.to_owned(),
            dataset,
            task,
            baseline,
            harmonizer,
            status: status.to_owned(),
            min_final_accuracy,
            accuracy_tolerance,
            max_seconds_per_100,
            speed_tolerance,
            source: ThresholdSource { commit: commit.to_owned(), date: date.to_owned(), runs: format!("{} (profile {profile}, {} seed(s))", runs.display(), runs_of.len()) },
        });
    }
    if out.group.is_empty() {
        bail!("profile {profile} under {} has no finished cells to derive thresholds from", runs.display());
    }
    Ok(out)
}

/// One group of a comparison: per-seed differences B − A of the final accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub group: String,
    pub seeds: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// The interval lies below zero: B is worse than A.
    pub worse: bool,
}

/// Pairs the finished cells of `profile` in two runs folders by group and seed.
pub fn compare(a: &Path, b: &Path, profile: &str, confidence: f64) -> Result<Vec<Comparison>> {
    let (ra, _) = records::load_profile(a, profile)?;
    let (rb, _) = records::load_profile(b, profile)?;
    let key = |r: &CellRecord| (r.dataset.clone(), r.task.clone(), r.baseline.clone(), r.harmonizer.clone());
    let mut by_a: BTreeMap<_, BTreeMap<u64, f64>> = BTreeMap::new();
    for r in &ra {
        if let Some(acc) = r.final_accuracy.filter(|_| r.diverged_at.is_none()) {
            by_a.entry(key(r)).or_default().insert(r.seed, acc);
        }
    }
    let mut diffs: BTreeMap<_, Vec<f64>> = BTreeMap::new();
    for r in &rb {
        if let (Some(acc), Some(before)) = (r.final_accuracy.filter(|_| r.diverged_at.is_none()), by_a.get(&key(r)).and_then(|m| m.get(&r.seed))) {
            diffs.entry(key(r)).or_default().push(acc - before);
        }
    }
    Ok(diffs
        .into_iter()
        .map(|((dataset, task, baseline, harmonizer), d)| {
            let (mean, lo, hi) = t_interval(&d, confidence);
            Comparison { group: format!("{profile}/{dataset}/{task}/{baseline}/{harmonizer}"), seeds: d.len(), mean, lo, hi, worse: hi < 0.0 }
        })
        .collect())
}

pub fn comparison_text(rows: &[Comparison], a: &Path, b: &Path) -> String {
    let w = rows.iter().map(|r| r.group.len()).max().unwrap_or(5).max(5);
    let mut out = format!("Final accuracy, {} minus {} (paired by seed; 95% t interval over seeds)\n\n", b.display(), a.display());
    let _ = writeln!(out, "{:<w$}  {:>5}  {:>8}  {:>20}  flag", "group", "seeds", "mean", "interval");
    for r in rows {
        let interval = if r.lo.is_finite() { format!("[{:+.2}, {:+.2}]", r.lo, r.hi) } else { "(one seed)".to_owned() };
        let _ = writeln!(out, "{:<w$}  {:>5}  {:>+8.2}  {:>20}  {}", r.group, r.seeds, r.mean, interval, if r.worse { "WORSE" } else { "" });
    }
    let _ = writeln!(out, "\n{} group(s) compared, {} worse", rows.len(), rows.iter().filter(|r| r.worse).count());
    out
}
