//! Where a profile's training time goes: each cell's phases (`timing.json`, clocked by the training
//! loop: data, step, telemetry steps, records, device waits, epoch ends, evaluations), per
//! training iteration, median over the cells not timed under load.

use crate::records::CellRecord;
use crate::speed::{median, min_max};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn ms(v: Option<f64>) -> String {
    v.map(|s| format!("{:.2}", 1000.0 * s)).unwrap_or_else(|| "–".into())
}

fn seconds(v: Option<f64>, decimals: usize) -> String {
    v.map(|s| format!("{s:.decimals$}")).unwrap_or_else(|| "–".into())
}

/// `time_split.md`, or `None` when no cell of the profile has its time split (cells recorded
/// before the suite clocked phases).
pub fn markdown(records: &[CellRecord], profile: &str) -> Option<String> {
    let split: Vec<&CellRecord> = records.iter().filter(|r| r.phases.is_some()).collect();
    if split.is_empty() {
        return None;
    }
    let mut groups: BTreeMap<(String, usize, String, String), Vec<&CellRecord>> = BTreeMap::new();
    for r in &split {
        let key = (r.dataset.clone(), crate::latex::baseline_rank(&r.baseline), r.task.clone(), r.baseline.clone());
        groups.entry(key).or_default().push(r);
    }
    let phase_names: Vec<&str> = record_schema::PhaseSeconds::default().phases().iter().map(|(name, _)| *name).collect();
    let mut out = format!("# Where the time goes: profile `{profile}`\n\n");
    out.push_str(
        "Milliseconds per training iteration of each part of a cell (the training loop's own clocks, \
         `timing.json`'s `phases`), median over the cells **not timed under load**; loaded cells are \
         counted, never used. Each phase's seconds are divided by all iterations (telemetry runs every \
         k-th, evaluations and epoch ends less often), so a row's phases add up to `total`. `step ms` \
         is one iteration without telemetry, `telemetry step ms` one with it (for `none`, two backward \
         passes instead of one): compare them with `bench-suite bench-iteration --dataset digits` \
         (the same step on random inputs) on the same machine. `train s` is what the records call \
         training time (data, steps, telemetry, device waits); `wall s` also holds the \
         epoch ends, evaluations and setup (the task's data, loaded once per worker, aside).\n\n",
    );
    let header: Vec<String> = ["task", "baseline", "harmonizer", "cells (loaded)"]
        .iter()
        .map(|s| s.to_string())
        .chain(phase_names.iter().map(|s| s.to_string()))
        .chain(["total", "step ms", "telemetry step ms", "setup s", "train s", "wall s (range)"].iter().map(|s| s.to_string()))
        .collect();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
    for ((_, _, task, baseline), cells) in &groups {
        // none, GH, GH++, then their variants (a GH++ rule or α) after each.
        let mut by_harmonizer: BTreeMap<(usize, &str), Vec<&CellRecord>> = BTreeMap::new();
        for r in cells {
            let rank = crate::latex::harmonizer_rank(&r.harmonizer_method);
            by_harmonizer.entry((rank, r.harmonizer.as_str())).or_default().push(r);
        }
        for ((_, harmonizer), cells) in by_harmonizer {
            let by_count = cells.len();
            let quiet: Vec<&CellRecord> = cells.into_iter().filter(|r| r.timing_loaded != Some(true)).collect();
            let phases: Vec<&record_schema::PhaseSeconds> = quiet.iter().filter_map(|r| r.phases.as_ref()).collect();
            let loaded = by_count - quiet.len();
            let mut row = vec![task.clone(), baseline.clone(), harmonizer.to_owned(), format!("{} ({loaded})", quiet.len())];
            for (k, _) in phase_names.iter().enumerate() {
                row.push(ms(median(&phases.iter().map(|p| p.per_iteration()[k].1).collect::<Vec<f64>>())));
            }
            row.push(ms(median(&phases.iter().map(|p| p.per_iteration().iter().map(|(_, s)| s).sum()).collect::<Vec<f64>>())));
            row.push(ms(median(&phases.iter().filter_map(|p| p.plain_step()).collect::<Vec<f64>>())));
            row.push(ms(median(&phases.iter().filter_map(|p| p.telemetry_step()).collect::<Vec<f64>>())));
            row.push(seconds(median(&phases.iter().map(|p| p.setup).collect::<Vec<f64>>()), 2));
            row.push(seconds(median(&quiet.iter().map(|r| r.train_seconds).collect::<Vec<f64>>()), 0));
            let walls: Vec<f64> = quiet.iter().filter_map(|r| r.wall_seconds).collect();
            row.push(match (median(&walls), min_max(&walls)) {
                (Some(m), Some((lo, hi))) => format!("{m:.0} ({lo:.0}–{hi:.0})"),
                _ => "–".into(),
            });
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    }
    Some(out)
}
