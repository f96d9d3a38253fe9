//! Where published speeds come from: bench-speed's record when present, else the cells not timed
//! under load (loaded cells counted, never used).

use report::records::CellRecord;
use report::speed::{load_bench, speeds, Source};
use std::collections::BTreeMap;

fn cell(harmonizer: &str, seed: u64, secs: f64, loaded: Option<bool>) -> CellRecord {
    CellRecord {
        hash: format!("{harmonizer}{seed}"),
        dataset: "digits".into(),
        task: "M-U".into(),
        baseline: "mcd".into(),
        harmonizer: harmonizer.into(),
        harmonizer_method: harmonizer.into(),
        alpha: 0.5,
        seed,
        diverged_at: None,
        not_trained: None,
        final_accuracy: Some(90.0),
        best_accuracy: Some(90.0),
        seconds_per_epoch: secs,
        seconds_per_100_steps: secs,
        train_seconds: 60.0,
        timing_loaded: loaded,
        phases: None,
        wall_seconds: None,
        iterations: 100,
        deviations: Vec::new(),
        device: "cpu (2 threads)".into(),
        libtorch: None,
        suite_version: "0.2.0".into(),
        pairs: BTreeMap::new(),
        evaluations: Vec::new(),
        telemetry: Vec::new(),
    }
}

#[test]
fn loaded_cells_are_left_out_and_ratios_pair_seeds() {
    let records = vec![
        cell("none", 1, 10.0, Some(false)),
        cell("none", 2, 12.0, Some(false)),
        cell("none", 3, 30.0, Some(true)),
        cell("gh", 1, 12.0, Some(false)),
        cell("gh", 2, 15.0, None),
        cell("gh", 3, 14.0, Some(false)),
    ];
    let s = speeds(None, &records);
    let Source::Cells { used, loaded_left_out, load_unknown, .. } = &s.source else { panic!("{:?}", s.source) };
    assert_eq!((*used, loaded_left_out.len(), *load_unknown), (5, 1, 1));
    assert!(s.source.describe().contains("1 cell(s) timed under load left out"));
    let gh = s.find("M-U", "mcd", "gh").unwrap();
    // Seed 3's baseline was loaded: no ratio for seed 3; seeds 1 and 2 give 1.2 and 1.25.
    assert_eq!(gh.ratio_to_none, vec![1.2, 1.25]);
    assert_eq!(s.find("M-U", "mcd", "none").unwrap().seconds_per_100, vec![10.0, 12.0]);
}

#[test]
fn a_bench_speed_record_takes_precedence() {
    let runs = tempfile::tempdir().unwrap();
    assert!(load_bench(runs.path(), "p").unwrap().is_none());
    std::fs::create_dir_all(runs.path().join("bench-speed")).unwrap();
    let snapshot = r#"{"load_1min": 1.0, "load_5min": 1.0, "logical_cpus": 2, "suite_processes": 1, "unix_time": 0}"#;
    let record = format!(
        r#"{{"profile": "p", "suite_version": "0.2.0", "device": "cpu (2 threads)", "torch_threads": 2, "rounds": 3,
        "iterations_per_round": 20, "warmup": 3, "load_before": {snapshot}, "load_after": {snapshot}, "seconds": 12.0,
        "arms": [
          {{"dataset": "digits", "task": "M-U", "baseline": "mcd", "harmonizer": "none", "batch": 32, "seconds_per_100": [10.0, 11.0, 12.0], "ratio_to_none": []}},
          {{"dataset": "digits", "task": "M-U", "baseline": "mcd", "harmonizer": "gh", "batch": 32, "seconds_per_100": [11.0, 12.0, 13.0], "ratio_to_none": [1.1, 1.09, 1.08]}}
        ]}}"#
    );
    std::fs::write(runs.path().join("bench-speed/p.json"), &record).unwrap();
    let bench = load_bench(runs.path(), "p").unwrap().unwrap();
    let s = speeds(Some(&bench), &[cell("none", 1, 99.0, Some(false))]);
    assert!(matches!(s.source, Source::Bench { rounds: 3, .. }));
    assert!(s.source.describe().contains("quiet machine"));
    assert_eq!(s.find("M-U", "mcd", "gh").unwrap().median_ratio(), Some(1.09));
    assert_eq!(s.find("M-U", "mcd", "none").unwrap().median_seconds(), Some(11.0));
    assert!(!s.source.describe().contains("precision"), "no numerics recorded, none claimed");
    // A record with its numerics (bf16, or any GPU run) names the precision beside the device.
    let bf16 = record.replace(r#""seconds": 12.0,"#, r#""seconds": 12.0, "numerics": {"precision": "bf16", "deterministic": false, "cuda_fp32": "matmul=tf32 conv=tf32", "cudnn_benchmark": false},"#);
    std::fs::write(runs.path().join("bench-speed/p.json"), bf16).unwrap();
    let bench = load_bench(runs.path(), "p").unwrap().unwrap();
    let described = speeds(Some(&bench), &[]).source.describe();
    assert!(described.contains("on cpu (2 threads), bf16 precision:"), "{described}");
    std::fs::write(runs.path().join("bench-speed/p.json"), "{").unwrap();
    let err = format!("{:#}", load_bench(runs.path(), "p").unwrap_err());
    assert!(err.contains("bench-speed --profile p"), "{err}");
}

fn with_phases(mut r: CellRecord, step: f64, wall: f64) -> CellRecord {
    r.phases = Some(record_schema::PhaseSeconds { data: 1.0, step, measured_step: 2.0, evaluation: 0.5, setup: 0.25, iterations: 100, measured_iterations: 10, ..Default::default() });
    r.wall_seconds = Some(wall);
    r
}

/// The time split: medians per iteration over the quiet cells only, loaded cells counted; no file
/// for cells recorded before phases were clocked.
#[test]
fn the_time_split_uses_quiet_cells_and_names_the_loaded_ones() {
    assert!(report::time_split::markdown(&[cell("none", 1, 10.0, Some(false))], "p").is_none());
    let records = vec![
        with_phases(cell("none", 1, 10.0, Some(false)), 9.0, 20.0),
        with_phases(cell("none", 2, 10.0, Some(false)), 18.0, 30.0),
        with_phases(cell("none", 3, 10.0, Some(false)), 27.0, 40.0),
        // Loaded: its slow step must not move the medians.
        with_phases(cell("none", 4, 10.0, Some(true)), 900.0, 999.0),
        with_phases(cell("gh", 1, 10.0, Some(false)), 45.0, 60.0),
    ];
    let md = report::time_split::markdown(&records, "p").unwrap();
    let row = |h: &str| md.lines().find(|l| l.starts_with(&format!("| M-U | mcd | {h} |"))).unwrap_or_else(|| panic!("no {h} row in\n{md}")).to_owned();
    let none = row("none");
    // cells (loaded) | data 1 s / 100 it = 10 ms | step median 18 s / 100 = 180 ms | measured 20 ms |
    // telemetry 0 | device wait 0 | epoch end 0 | evaluation 5 ms | other 0 | total 215 ms |
    // step ms 18 / 90 = 200 | telemetry step 2 / 10 = 200 | setup | train s | wall median (range)
    assert_eq!(none, "| M-U | mcd | none | 3 (1) | 10.00 | 180.00 | 20.00 | 0.00 | 0.00 | 0.00 | 5.00 | 0.00 | 215.00 | 200.00 | 200.00 | 0.25 | 60 | 30 (20–40) |", "{md}");
    assert!(row("gh").contains("| 1 (0) | 10.00 | 450.00 |"), "{md}");
    let none_at = md.find("| none |").unwrap();
    assert!(none_at < md.find("| gh |").unwrap(), "none comes before gh:\n{md}");
}
