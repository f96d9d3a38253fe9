//! `report check` / `thresholds` / `compare` on the committed fixture records: a passing night, an
//! accuracy regression, a speed regression, a diverged cell, a missing cell and an unknown group,
//! each with its verdicts, JUnit content and exit status (the real binary).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixture runs, to damage.
fn runs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-r").arg(fixtures().join("runs")).arg(dir.path()).status().unwrap();
    assert!(status.success());
    dir
}

fn thresholds() -> String {
    std::fs::read_to_string(fixtures().join("thresholds.toml")).unwrap()
}

/// Runs `report check`; returns (exit status, stdout, JUnit XML).
fn check(runs: &Path, thresholds: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("thresholds.toml");
    std::fs::write(&file, thresholds).unwrap();
    let junit = dir.path().join("out/junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["check", "--runs"])
        .arg(runs)
        .arg("--thresholds")
        .arg(&file)
        .arg("--junit")
        .arg(&junit)
        .arg("--markdown")
        .arg(dir.path().join("out/summary.md"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    if out.status.code() != Some(2) {
        let md = std::fs::read_to_string(dir.path().join("out/summary.md")).unwrap();
        assert!(md.starts_with("### Regression check"), "{md}");
    }
    (out.status.code().unwrap_or(-1), stdout, xml)
}

/// The one group the cases below change: MCD+GH on M→U (mean accuracy 10.00, seeds 1 and 2).
const GROUP: &str = "fixture/digits/M-U/mcd/gh";

fn edit_group(text: &str, from: &str, to: &str) -> String {
    // The group's block starts at its `harmonizer = "gh"` line after `baseline = "mcd"` on M-U.
    let start = text.find("task = \"M-U\"\nbaseline = \"mcd\"\nharmonizer = \"gh\"\n").expect("the MCD+GH M-U group");
    let (head, tail) = text.split_at(start);
    let end = tail.find("[[group]]").unwrap_or(tail.len());
    let (block, rest) = tail.split_at(end);
    assert!(block.contains(from), "{from} not in {block}");
    format!("{head}{}{rest}", block.replacen(from, to, 1))
}

#[test]
fn a_passing_night() {
    let (code, out, xml) = check(&fixtures().join("runs"), &thresholds());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("64 check(s), 0 failed"), "{out}");
    assert!(xml.contains("tests=\"64\" failures=\"0\"") && !xml.contains("<failure"), "{xml}");
}

#[test]
fn an_accuracy_regression_fails() {
    let (code, out, xml) = check(&fixtures().join("runs"), &edit_group(&thresholds(), "min_final_accuracy = 3.31", "min_final_accuracy = 10.5"));
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with(GROUP) && l.contains("accuracy")).unwrap();
    assert!(line.contains("10.00") && line.contains(">= 10.50") && line.contains("FAIL"), "{line}");
    assert!(xml.contains("failures=\"1\"") && xml.contains("<failure message=\"accuracy: 10.00 (bound &gt;= 10.50)\""), "{xml}");
}

#[test]
fn a_speed_regression_fails() {
    let (code, out, xml) = check(&fixtures().join("runs"), &edit_group(&thresholds(), "max_seconds_per_100 = 3.527", "max_seconds_per_100 = 1.0"));
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with(GROUP) && l.contains("speed")).unwrap();
    // Seed 2's timing was taken under load (its timing.json): the median is seed 1's alone.
    assert!(line.contains("FAIL") && line.contains("<= 1.000") && line.contains("grid cells not timed under load"), "{line}");
    assert!(xml.contains("failures=\"1\"") && xml.contains("speed fixture/digits/M-U/mcd/gh"), "{xml}");
}

#[test]
fn a_diverged_cell_fails_where_completion_was_expected() {
    let runs = runs_copy();
    let cells = runs.path().join("runs/cells");
    // MCD+GH M→U seed 2 (the cell whose timing was loaded) now diverged at iteration 8.
    let done = cells.join("9d5a2eb79e698639/done");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&done).unwrap()).unwrap();
    v["status"] = "diverged".into();
    v["iteration"] = 8.into();
    v["final_accuracy"] = serde_json::Value::Null;
    std::fs::write(&done, v.to_string()).unwrap();
    let (code, out, xml) = check(&runs.path().join("runs"), &thresholds());
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with(GROUP) && l.contains("status")).unwrap();
    assert!(line.contains("1 diverged") && line.contains("FAIL") && line.contains("seed 2 at iteration 8"), "{line}");
    assert!(xml.contains("failures=\"1\""), "{xml}");
    // A group whose expected result is a divergence passes.
    let (code, out, _) = check(&runs.path().join("runs"), &edit_group(&thresholds(), "status = \"completed\"", "status = \"any\""));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_missing_cell_fails() {
    let runs = runs_copy();
    std::fs::remove_file(runs.path().join("runs/cells/f7f4c8559eb89073/done")).unwrap();
    let (code, out, xml) = check(&runs.path().join("runs"), &thresholds());
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with(GROUP) && l.contains("cells")).unwrap();
    assert!(line.contains("1/2") && line.contains("missing cell(s): seed 1"), "{line}");
    assert!(xml.contains("<failure message=\"cells: 1/2 (bound 2/2)\""), "{xml}");
}

#[test]
fn an_unknown_group_fails_and_a_bad_file_is_an_error() {
    let unknown = thresholds().replacen("task = \"M-U\"", "task = \"S-M\"", 1);
    let (code, out, xml) = check(&fixtures().join("runs"), &unknown);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fixture/digits/S-M/") && out.contains("unknown group"), "{out}");
    assert!(xml.contains("group fixture/digits/S-M/"), "{xml}");
    let (code, out, _) = check(&fixtures().join("runs"), &thresholds().replacen("status = \"completed\"", "status = \"done\"", 1));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("status 'done' must be completed, diverged or any"), "{out}");
    let (code, out, _) = check(&fixtures().join("runs"), &thresholds().replacen("max_seconds_per_100", "max_second_per_100", 1));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("max_second_per_100"), "{out}");
}

#[test]
fn proposed_thresholds_reproduce_the_committed_file_and_pass() {
    let proposed = report::check::propose(&fixtures().join("runs"), "fixture", "4eaa11c", "2026-11-29", true).unwrap();
    let committed: report::check::ThresholdsFile = toml::from_str(&thresholds()).unwrap();
    assert_eq!(proposed.group.len(), committed.group.len());
    for (p, c) in proposed.group.iter().zip(&committed.group) {
        assert_eq!((p.label(), p.min_final_accuracy, p.max_seconds_per_100, &p.status), (c.label(), c.min_final_accuracy, c.max_seconds_per_100, &c.status));
    }
    // Bounds: the mean less max(2 x the seed std pooled over the baseline's groups, 1 point); 1.25 x the median time.
    let g = proposed.group.iter().find(|g| g.label() == GROUP).unwrap();
    assert_eq!(g.min_final_accuracy, Some(3.31));
    let tolerance = g.accuracy_tolerance.as_deref().unwrap();
    assert!(tolerance.contains("mean 10.00") && tolerance.contains("pooled over mcd's groups, 8 dof"), "{tolerance}");
}

#[test]
fn thresholds_without_speed_bound_accuracy_and_status_only() {
    let with = report::check::propose(&fixtures().join("runs"), "fixture", "c", "d", true).unwrap();
    let without = report::check::propose(&fixtures().join("runs"), "fixture", "c", "d", false).unwrap();
    assert!(with.group.iter().all(|g| g.max_seconds_per_100.is_some()));
    assert!(without.group.iter().all(|g| g.max_seconds_per_100.is_none() && g.speed_tolerance.is_none()));
    for (a, b) in with.group.iter().zip(&without.group) {
        assert_eq!((a.label(), a.min_final_accuracy, &a.status), (b.label(), b.min_final_accuracy, &b.status));
    }
    // Checked, such a file has no speed rows, and a speed regression cannot fail it.
    let text = toml::to_string_pretty(&without).unwrap();
    let (code, out, _) = check(&fixtures().join("runs"), &text);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("48 check(s), 0 failed") && !out.contains(" speed "), "{out}");
}

/// `report check --profile P`: only P's groups; a P without groups names how to derive them.
#[test]
fn check_of_one_profile_and_of_a_profile_without_groups() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("thresholds.toml");
    // The fixture's groups plus one of another profile, whose runs are not in this folder.
    let other = thresholds().split("[[group]]").nth(1).unwrap().replacen("profile = \"fixture\"", "profile = \"elsewhere\"", 1);
    std::fs::write(&file, format!("{}\n[[group]]{other}", thresholds())).unwrap();
    let run = |profile: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_report")).args(["check", "--runs"]).arg(fixtures().join("runs")).arg("--thresholds").arg(&file).args(["--profile", profile]).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = run("fixture");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("64 check(s), 0 failed") && !out.contains("elsewhere"), "{out}");
    let (code, out) = run("nightly");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no group of profile nightly") && out.contains("elsewhere, fixture") && out.contains("report thresholds --from"), "{out}");
    // Without --profile every profile of the file is checked: `elsewhere` has no runs here.
    let out = Command::new(env!("CARGO_BIN_EXE_report")).args(["check", "--runs"]).arg(fixtures().join("runs")).arg("--thresholds").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compare_pairs_seeds_and_flags_a_worse_branch() {
    let runs = runs_copy();
    // The branch loses 2 and 3 points on MCD+GH M→U (seeds 1 and 2).
    for (cell, loss) in [("f7f4c8559eb89073", 0.02), ("9d5a2eb79e698639", 0.03)] {
        let done = runs.path().join("runs/cells").join(cell).join("done");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&done).unwrap()).unwrap();
        v["final_accuracy"] = (v["final_accuracy"].as_f64().unwrap() - loss).into();
        std::fs::write(&done, v.to_string()).unwrap();
    }
    let rows = report::check::compare(&fixtures().join("runs"), &runs.path().join("runs"), "fixture", 0.95).unwrap();
    let row = rows.iter().find(|r| r.group == GROUP).unwrap();
    // Differences -2 and -3: mean -2.5, t(0.975, 1) = 12.706 x 0.5 half-width: the interval holds 0.
    assert_eq!(row.seeds, 2);
    assert!((row.mean + 2.5).abs() < 1e-9 && (row.hi - (-2.5 + 12.706205 * 0.5)).abs() < 1e-4 && !row.worse, "{row:?}");
    assert!(rows.iter().filter(|r| r.group != GROUP).all(|r| r.mean == 0.0 && !r.worse));
    // With the same loss on both seeds (2 points) the interval is [-2, -2]: WORSE.
    let done = runs.path().join("runs/cells/9d5a2eb79e698639/done");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&done).unwrap()).unwrap();
    v["final_accuracy"] = (v["final_accuracy"].as_f64().unwrap() + 0.01).into();
    std::fs::write(&done, v.to_string()).unwrap();
    let rows = report::check::compare(&fixtures().join("runs"), &runs.path().join("runs"), "fixture", 0.95).unwrap();
    let row = rows.iter().find(|r| r.group == GROUP).unwrap();
    assert!(row.worse && (row.mean + 2.0).abs() < 1e-6, "{row:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_report")).arg("compare").arg(fixtures().join("runs")).arg(runs.path().join("runs")).args(["--profile", "fixture"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("16 group(s) compared, 1 worse"));
}

#[test]
fn the_committed_ci_thresholds_cover_digits_cpu_and_refuse_the_gpu_nightly_until_derived() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = report::check::ThresholdsFile::load(&root.join("ci/thresholds.toml")).unwrap();
    let protocol = std::fs::read_to_string(root.join("bench-suite/protocol.toml")).unwrap();
    for g in &file.group {
        assert!(protocol.contains(&format!("[profiles.{}]", g.profile)), "{}: no such profile in protocol.toml", g.label());
        assert!(!g.source.commit.is_empty() && !g.source.runs.is_empty(), "{}: no source", g.label());
    }
    // digits-cpu: every baseline x harmonizer x task of the profile, accuracy and status only
    // (hosted runners' CPUs are not the one that measured the timings).
    let cpu: Vec<_> = file.group.iter().filter(|g| g.profile == "digits-cpu").collect();
    assert_eq!(cpu.len(), 4 * 3 * 2);
    assert!(cpu.iter().all(|g| g.min_final_accuracy.is_some_and(|a| a > 10.0) && g.max_seconds_per_100.is_none() && g.status == "completed"));
    // The GPU nightly has no groups until it has run on a GPU: checking it names how to derive them.
    let err = format!("{:#}", report::check::check(&fixtures().join("runs"), &file, &["nightly".to_owned()]).unwrap_err());
    assert!(err.contains("no group of profile nightly") && err.contains("report thresholds --from"), "{err}");
}

#[test]
fn an_interrupted_reason_marks_a_quiet_timing_as_loaded() {
    // f7f4c8559eb89073's snapshots are quiet; a reason the snapshots cannot see (a pause, work in
    // the middle of the cell) makes its timing count as loaded, and only that.
    let runs = runs_copy();
    let cell = runs.path().join("runs/cells/f7f4c8559eb89073");
    assert_eq!(report::records::load_cell(&cell).unwrap().timing_loaded, Some(false));
    let path = cell.join("timing.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["interrupted"] = "paused with SIGSTOP for 3 minutes".into();
    std::fs::write(&path, v.to_string()).unwrap();
    assert_eq!(report::records::load_cell(&cell).unwrap().timing_loaded, Some(true));
    v["interrupted"] = serde_json::Value::Null;
    std::fs::write(&path, v.to_string()).unwrap();
    assert_eq!(report::records::load_cell(&cell).unwrap().timing_loaded, Some(false));
}
