//! Library behind the `report` binary: reads the grid's run records, aggregates them over seeds
//! (polars), writes LaTeX tables in the paper's layout beside the paper's numbers, and charts.

pub mod aggregate;
pub mod charts;
pub mod check;
pub mod claims;
pub mod latex;
pub mod paper;
pub mod records;
pub mod speed;
pub mod time_split;

use anyhow::{Context, Result};
use latex::Selection;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What was written for one profile.
#[derive(Debug)]
pub struct Generated {
    pub profile: String,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub cells: usize,
    pub missing: usize,
    pub diverged: usize,
}

/// Writes the report of `profile` (its cells under `runs`) into `out/<profile>/`.
pub fn generate_profile(runs: &Path, out: &Path, profile: &str) -> Result<Generated> {
    let arms = records::reported_with(runs, profile)?;
    let (records, missing) = records::load_with_arms(runs, profile, &arms)?;
    let aggs = aggregate::aggregate(&records).context("aggregating over seeds")?;
    let paper = paper::PaperResults::embedded()?;
    let dir = out.join(profile);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    let claims_file = claims::ClaimsFile::embedded()?;
    let bench = speed::load_bench(runs, profile)?;
    let speeds = speed::speeds(bench.as_ref(), &records);
    let outcomes = claims::evaluate(&claims_file.claims()?, &records, &speeds, &paper, &claims_file.settings);
    for (name, text) in [
        ("claims.md", claims::markdown(&outcomes, profile, &claims_file.settings)),
        ("claims.tex", claims::latex(&outcomes, profile, &claims_file.settings)),
        ("claims.csv", claims::csv(&outcomes)),
        ("headline.md", claims::headline(&outcomes, &aggs, &records, &paper, profile, claims_file.settings.confidence)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    files.extend(charts::write_forest(&dir, &outcomes, profile)?);
    let datasets: BTreeSet<&str> = records.iter().map(|r| r.dataset.as_str()).collect();
    for dataset in &datasets {
        let mut deviations: Vec<String> = records.iter().filter(|r| r.dataset == *dataset).flat_map(|r| r.deviations.iter().cloned()).collect();
        deviations.sort();
        deviations.dedup();
        for selection in [Selection::Last, Selection::BestOracle] {
            let path = dir.join(format!("table_{dataset}_{}.tex", selection.slug()));
            std::fs::write(&path, latex::accuracy_table(dataset, selection, &aggs, &paper, &deviations, profile))?;
            files.push(path);
        }
        let path = dir.join(format!("table_speed_{dataset}.tex"));
        std::fs::write(&path, latex::speed_table(dataset, &aggs, &speeds, &paper, profile))?;
        files.push(path);
    }
    let csv = dir.join("aggregates.csv");
    std::fs::write(&csv, aggregates_csv(&aggs))?;
    files.push(csv);
    files.extend(charts::write_all(&dir, &records, &speeds, profile)?);
    if let Some(text) = time_split::markdown(&records, profile) {
        let path = dir.join("time_split.md");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    let diverged = records.iter().filter(|r| r.diverged_at.is_some()).count();
    let index = dir.join("index.md");
    std::fs::write(&index, index_text(profile, &arms, &records, missing, diverged, &files, &dir, &speeds.source.describe()))?;
    files.push(index);
    Ok(Generated { profile: profile.to_owned(), dir, files, cells: records.len(), missing, diverged })
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// The aggregates as CSV (one row per dataset × task × baseline × harmonizer).
pub fn aggregates_csv(aggs: &[aggregate::Aggregate]) -> String {
    let mut out = String::from("dataset,task,baseline,harmonizer,runs,completed,diverged,not_trained,final_mean,final_std,best_oracle_mean,best_oracle_std,seconds_per_epoch,seconds_per_100_steps,conflict_rate,mean_w1_in_conflict,mean_w2_in_conflict\n");
    for a in aggs {
        let _ = writeln!(
            out,
            "{},{},{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{}",
            a.dataset, a.task, a.baseline, a.harmonizer, a.runs, a.completed, a.diverged, a.not_trained,
            opt(a.final_mean), opt(a.final_std), opt(a.best_mean), opt(a.best_std),
            opt(a.seconds_per_epoch), opt(a.seconds_per_100_steps), opt(a.conflict_rate), opt(a.mean_w1), opt(a.mean_w2)
        );
    }
    out
}

/// Which devices and builds the cells ran on, with counts; a pool of several libtorch or suite
/// versions is said, since their numbers need not be bit-identical.
fn builds_text(records: &[records::CellRecord]) -> String {
    let mut builds: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for r in records {
        *builds.entry((&r.device, &r.suite_version, r.libtorch.as_deref().unwrap_or("unrecorded"))).or_default() += 1;
    }
    if builds.is_empty() {
        return "no finished cells".to_owned();
    }
    let versions: BTreeSet<(&str, &str)> = builds.keys().map(|&(_, suite, lib)| (suite, lib)).collect();
    let list: Vec<String> = builds.iter().map(|(&(device, suite, lib), n)| format!("{n} cell(s) on {device}, suite {suite}, libtorch {lib}")).collect();
    let mixed = if versions.len() > 1 { " (**mixed builds**: the tables pool cells of different suite or libtorch versions)" } else { "" };
    format!("{}{mixed}", list.join("; "))
}

#[allow(clippy::too_many_arguments)]
fn index_text(profile: &str, arms: &[String], records: &[records::CellRecord], missing: usize, diverged: usize, files: &[PathBuf], dir: &Path, speed_source: &str) -> String {
    let mut out = format!("# Report of profile `{profile}`\n\n");
    if !arms.is_empty() {
        let names: Vec<String> = arms.iter().map(|a| format!("`{a}`")).collect();
        let _ = writeln!(out, "Includes the cells of {} (`reported_with = \"{profile}\"` in its manifest), paired with this profile's cells by seed.\n", names.join(", "));
    }
    let _ = writeln!(out, "**Start here: [the paper's claims, checked](claims.md)** (verdicts with intervals; also `claims.tex`, `claims.csv` and the forest plot `claims.png` / `claims.svg`).\n");
    let _ = writeln!(out, "- finished cells: {} ({} diverged, reported as such); cells without a record yet: {missing}", records.len(), diverged);
    let not_trained: Vec<String> = records
        .iter()
        .filter_map(|r| r.not_trained.as_ref().map(|t| format!("{} {} {} seed {} ({t})", r.task, r.baseline, r.harmonizer, r.seed)))
        .collect();
    if !not_trained.is_empty() {
        let _ = writeln!(
            out,
            "- cells that never trained their baseline's transfer loss or harmonized pair (marked §, left out of the means and the claims): {} ({})",
            not_trained.len(),
            not_trained.join(", ")
        );
    }
    let _ = writeln!(out, "- ran with: {}", builds_text(records));
    let _ = writeln!(out, "- accuracy tables: `table_<dataset>_last.tex` (last model) and `table_<dataset>_best.tex` (best evaluation, oracle selection on target test labels)");
    let _ = writeln!(out, "- `table_speed_<dataset>.tex`: training speed (the paper's Table VI); `aggregates.csv`: every aggregate");
    let loaded: Vec<String> = records.iter().filter(|r| r.timing_loaded == Some(true)).map(|r| format!("{} {} {} seed {}", r.task, r.baseline, r.harmonizer, r.seed)).collect();
    let unknown = records.iter().filter(|r| r.timing_loaded.is_none()).count();
    let _ = writeln!(
        out,
        "- cells timed under load (load average above the CPU count, or another bench-suite process running): {}{}; their timings are kept in their records but never used for speed numbers or claims",
        if loaded.is_empty() { "none".to_owned() } else { format!("{} ({})", loaded.len(), loaded.join(", ")) },
        if unknown > 0 { format!("; {unknown} cell(s) recorded before loads were recorded") } else { String::new() }
    );
    let _ = writeln!(out, "- speed numbers: {}\n", speed_source);
    let _ = writeln!(out, "Files:\n");
    for f in files {
        let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
        // A chart is listed once, with its caption (`<chart>.txt`).
        if name.ends_with(".svg") || name.ends_with(".txt") {
            continue;
        }
        match name.strip_suffix(".png") {
            Some(stem) => {
                let caption = std::fs::read_to_string(dir.join(format!("{stem}.txt"))).unwrap_or_default();
                let _ = writeln!(out, "- `{stem}.png` / `{stem}.svg`: {}", caption.trim());
            }
            None => {
                let _ = writeln!(out, "- `{name}`");
            }
        }
    }
    out
}
