//! The schema round-trips, reads records from before its newer fields, and matches what the grid
//! actually wrote: every committed cell's files parse into the schema's types and serialize back
//! to the same JSON (a field the writer adds that the schema lacks, or renames, fails here).

use record_schema::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn snapshot(load: f64) -> LoadSnapshot {
    LoadSnapshot { load_1min: load, load_5min: load / 2.0, logical_cpus: 2, suite_processes: 1, unix_time: 1_796_316_862 }
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
}

#[test]
fn every_type_round_trips() {
    let phases = PhaseSeconds { setup: 0.5, data: 1.0, step: 300.0, measured_step: 60.0, telemetry: 2.0, device_wait: 0.1, epoch_end: 0.2, evaluation: 3.0, other: 0.05, iterations: 9370, measured_iterations: 937 };
    round_trip(&CellTiming { load_start: snapshot(1.0), load_end: snapshot(2.9), interrupted: Some("paused".into()), wall_seconds: Some(400.0), phases: Some(phases.clone()) });
    round_trip(&CellTiming { load_start: snapshot(1.0), load_end: snapshot(1.2), interrupted: None, wall_seconds: None, phases: None });
    let summary = RunSummary {
        status: RunStatus::Diverged { iteration: 12, reason: "non-finite".into() },
        iterations: 12,
        final_accuracy: None,
        final_mean_class_accuracy: None,
        final_heads: [("c".to_owned(), 0.5)].into(),
        best_accuracy_oracle: Some(0.75),
        best_iteration: Some(10),
        train_seconds: 1.5,
        seconds_per_epoch: 0.7,
        seconds_per_100_steps: 12.5,
        harmonization: [(
            "transfer/cls".to_owned(),
            PairSummary { formed_steps: 4, reweighted_steps: 2, measured_steps: 4, conflict_rate: Some(0.5), mean_w1_in_conflict: Some(1.4), mean_w2_in_conflict: Some(1.0), mean_cos: Some(-0.1), clamped_steps: 0 },
        )]
        .into(),
        trained: Trained::NotHarmonized,
        // Not serialized: the record keeps only what identical runs share.
        phases: PhaseSeconds::default(),
    };
    round_trip(&summary);
    round_trip(&Evaluation { iteration: 937, epoch: 1.0, heads: [("c".to_owned(), 0.9)].into(), accuracy: 0.9, heads_mean_class: Default::default(), mean_class_accuracy: Some(0.88) });
    let cell = CellInfo { hash: "12c4d8da70a6bd09".into(), dataset: "digits".into(), task: "M-U".into(), baseline: "cdan".into(), harmonizer: "gh".into(), seed: 3, spec: Some(serde_json::json!({"seed": 3})), unsupported: None, deviations: vec!["usps: test split".into()] };
    assert_eq!(cell.label(), "digits/M-U cdan gh seed 3");
    round_trip(&ProfileManifest { profile: "p".into(), reported_with: None, cells: vec![cell.clone()] });
    round_trip(&ProfileManifest { profile: "p-arm".into(), reported_with: Some("p".into()), cells: vec![cell] });
    // Manifests written before `reported_with` existed still read, as reported on their own.
    let old: ProfileManifest = serde_json::from_str(r#"{"profile": "p", "cells": []}"#).unwrap();
    assert_eq!(old.reported_with, None);
    round_trip(&SpeedRecord {
        profile: "p".into(),
        suite_version: "0.2.0".into(),
        device: "cpu (2 threads)".into(),
        libtorch: Some("2.11.0+cu130".into()),
        cuda: None,
        torch_threads: 2,
        rounds: 3,
        iterations_per_round: 100,
        warmup: 10,
        load_before: snapshot(0.1),
        load_after: snapshot(2.0),
        seconds: 30.0,
        numerics: Some(serde_json::json!({"precision": "bf16", "deterministic": false, "cuda_fp32": "matmul=tf32 conv=tf32", "cudnn_benchmark": false})),
        arms: vec![SpeedArm { dataset: "digits".into(), task: "M-U".into(), baseline: "cdan".into(), harmonizer: "gh".into(), batch: 64, seconds_per_100: vec![6.0, 7.0], ratio_to_none: vec![1.3, 1.4] }],
    });
}

#[test]
fn the_phases_of_a_run_divide_by_its_iterations() {
    let p = PhaseSeconds { data: 10.0, step: 90.0, measured_step: 20.0, iterations: 100, measured_iterations: 10, ..Default::default() };
    assert_eq!(p.per_iteration()[..3], [("data", 0.1), ("step", 0.9), ("measured_step", 0.2)]);
    assert_eq!((p.plain_step(), p.telemetry_step()), (Some(1.0), Some(2.0)));
    let all_measured = PhaseSeconds { measured_iterations: 100, ..p };
    assert_eq!(all_measured.plain_step(), None);
}

#[test]
fn loads_and_interruptions_mark_a_timing_as_loaded() {
    let quiet = CellTiming { load_start: snapshot(1.0), load_end: snapshot(2.4), interrupted: None, wall_seconds: None, phases: None };
    assert!(!quiet.is_loaded());
    assert!(CellTiming { load_end: snapshot(2.6), ..quiet.clone() }.is_loaded());
    assert!(CellTiming { interrupted: Some("SIGSTOP".into()), ..quiet.clone() }.is_loaded());
    assert!(CellTiming { load_start: LoadSnapshot { suite_processes: 2, ..snapshot(0.5) }, ..quiet }.is_loaded());
}

#[test]
fn records_from_before_newer_fields_still_read() {
    // A summary without `trained`, `final_mean_class_accuracy`, `formed_steps`, `reweighted_steps`.
    let old: RunSummary = serde_json::from_str(
        r#"{"status":"completed","iterations":10,"final_accuracy":0.5,"final_heads":{"c":0.5},"best_accuracy_oracle":0.5,"best_iteration":10,
            "train_seconds":1.0,"seconds_per_epoch":1.0,"seconds_per_100_steps":10.0,
            "harmonization":{"transfer/cls":{"measured_steps":5,"conflict_rate":0.2,"mean_w1_in_conflict":null,"mean_w2_in_conflict":null,"mean_cos":null,"clamped_steps":0}}}"#,
    )
    .unwrap();
    assert_eq!((old.trained, old.harmonization["transfer/cls"].formed_steps), (Trained::AsAsked, 0));
    // A timing with load snapshots from before `unix_time`, and neither phases nor wall time.
    let timing: CellTiming = serde_json::from_str(
        r#"{"load_start":{"load_1min":1.0,"load_5min":1.0,"logical_cpus":2,"suite_processes":1},
            "load_end":{"load_1min":1.0,"load_5min":1.0,"logical_cpus":2,"suite_processes":1}}"#,
    )
    .unwrap();
    assert_eq!((timing.load_start.unix_time, timing.phases, timing.wall_seconds), (0, None, None));
}

fn published_cells() -> Vec<PathBuf> {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    let mut cells = Vec::new();
    for profile in std::fs::read_dir(&results).unwrap().flatten() {
        if let Ok(entries) = std::fs::read_dir(profile.path().join("cells")) {
            cells.extend(entries.flatten().map(|e| e.path()).filter(|p| p.join("done").is_file()));
        }
    }
    cells.sort();
    cells
}

fn same_json<T: serde::Serialize + serde::de::DeserializeOwned>(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();
    let typed: T = serde_json::from_value(written.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(serde_json::to_value(&typed).unwrap(), written, "{} does not round-trip through the schema", path.display());
}

#[test]
fn the_committed_cells_are_what_the_schema_says() {
    for manifest in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../results")).unwrap().flatten().flat_map(|p| std::fs::read_dir(p.path().join("profiles")).into_iter().flatten().flatten()) {
        same_json::<ProfileManifest>(&manifest.path());
    }
    let cells = published_cells();
    assert!(cells.len() >= 10, "expected the published cells under results/, found {}", cells.len());
    for cell in &cells {
        same_json::<CellInfo>(&cell.join("cell.json"));
        same_json::<RunSummary>(&cell.join("done"));
        // `interrupted` was written by hand into some; everything else by the grid.
        same_json::<CellTiming>(&cell.join("timing.json"));
        let record = std::fs::read_to_string(cell.join(RECORD_FILE)).unwrap();
        let mut summary: Value = serde_json::from_str(record.lines().last().unwrap()).unwrap();
        assert_eq!(summary.as_object_mut().unwrap().remove("event"), Some(Value::from("summary")));
        let typed: RunSummary = serde_json::from_value(summary.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), summary, "{}: the record's summary line", cell.display());
    }
}
