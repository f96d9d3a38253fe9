//! Helpers shared by the worker tests (workers.rs) and the Slurm test (slurm.rs).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const BIN: &str = env!("CARGO_BIN_EXE_bench-suite");

/// `seeds` seeds x {cdan, dwl} x {none, gh++} on synthetic M->U; `cdan_iterations` sets how long a
/// CDAN cell trains.
pub fn protocol_file(dir: &Path, seeds: u32, cdan_iterations: u32) -> PathBuf {
    let embedded = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol.toml")).unwrap();
    let seeds: Vec<String> = (1..=seeds).map(|s| s.to_string()).collect();
    // Two epochs: CDAN's first is its source-only warm-up, so its transfer loss trains in the second
    // (a run that ends inside the warm-up is refused).
    let cdan_epoch = (cdan_iterations / 2).max(1);
    let tiny = format!(
        r#"
[profiles.many]
description = "small cells for the worker tests"
datasets = ["digits"]
tasks = ["M-U"]
baselines = ["cdan", "dwl"]
harmonizers = ["none", "gh++"]
seeds = [{}]
telemetry_every = 2

[profiles.many.schedule.cdan]
iterations = {cdan_iterations}
iters_per_epoch = {cdan_epoch}
eval_every = {cdan_iterations}

[profiles.many.schedule.dwl]
iterations = 4
iters_per_epoch = 2
eval_every = 2

[profiles.many.hyperparameters.cdan]
batch = 16
conditioning = {{ kind = "random", dim = 32 }}
discriminator_hidden = 32

[profiles.many.hyperparameters.dwl]
batch = 8
source_steps = 1
balance_steps = 1
"#,
        seeds.join(", ")
    );
    let path = dir.join("protocol.toml");
    std::fs::write(&path, format!("{embedded}\n{tiny}")).unwrap();
    baselines::data::synthetic::write_fake_digits_root(&dir.join("data"), 120, 60, 5).unwrap();
    path
}

/// Journal lines as (owner, hash, event).
pub fn journal(runs: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(runs.join("leases.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next();
            (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned())
        })
        .collect()
}

/// Every cell of the grid published exactly once (one folder each; no cell published twice in the
/// leases journal) and complete; nothing in progress left behind.
pub fn assert_grid_done_once(runs: &Path, cells: usize) {
    let published: BTreeMap<String, usize> = journal(runs).into_iter().filter(|(_, _, e)| e == "published").fold(BTreeMap::new(), |mut m, (_, h, _)| {
        *m.entry(h).or_default() += 1;
        m
    });
    // A worker killed between publishing and writing the journal leaves no "published" line.
    assert!(published.len() <= cells, "cells published: {published:?}");
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let names: Vec<String> = std::fs::read_dir(runs.join("cells")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let done: Vec<&String> = names.iter().filter(|n| !n.starts_with('.')).collect();
    assert_eq!(done.len(), cells, "cell folders: {names:?}");
    assert!(!names.iter().any(|n| n.starts_with(".tmp-")), "a folder in progress was left: {names:?}");
    for d in done {
        let record = std::fs::read_to_string(runs.join("cells").join(d).join("run.jsonl")).unwrap();
        assert!(record.lines().last().unwrap().contains("\"event\":\"summary\""), "{d}: incomplete record");
        assert!(runs.join("cells").join(d).join("done").is_file());
    }
    let leases: Vec<_> = std::fs::read_dir(runs.join("cells/.leases")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
}

