//! `launch slurm` against a real Slurm: a one-node cluster on this machine (ci/slurm-local.sh
//! start). Runs only with GH_SLURM_TEST=1 (`cargo make test-slurm` starts Slurm, sets it and stops
//! Slurm afterwards); otherwise it says why and passes.
//!
//! 1. A tiny grid through a 3-task job array: every cell done exactly once.
//! 2. Longer cells through 2 tasks; task 1, then task 0, is cancelled (scancel JOB_i) while it
//!    trains: each worker stops its cell cleanly (status 3); launching again submits one task per
//!    pending cell, and the grid ends with every cell published once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{assert_grid_done_once, journal, protocol_file, BIN};

fn enabled() -> bool {
    if std::env::var("GH_SLURM_TEST").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set GH_SLURM_TEST=1 with a Slurm running (cargo make test-slurm does both)");
    false
}

fn launch(dir: &Path, protocol: &Path, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--protocol")
        .arg(protocol)
        .args(["launch", "slurm", "--profile", "many", "--gpus-per-task", "0", "--cpus-per-task", "1", "--mem", "1G", "--time", "0:15:00", "--lease-timeout", "60"])
        .arg("--runs")
        .arg(dir.join("runs"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .args(extra)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "launch slurm failed: {text}");
    text
}

fn job_id(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("JOB_ID=")).unwrap_or_else(|| panic!("no job id in: {text}")).trim().to_owned()
}

fn squeue(job: &str) -> String {
    let out = Command::new("squeue").args(["-h", "-j", job, "-o", "%i %T"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_job(job: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !squeue(job).trim().is_empty() {
        assert!(Instant::now() < deadline, "job {job} still queued after {limit:?}: {}", squeue(job));
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn logs(dir: &Path) -> String {
    let mut all = String::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("runs/slurm/logs")) {
        for e in entries.flatten() {
            all.push_str(&format!("--- {}\n{}", e.file_name().to_string_lossy(), std::fs::read_to_string(e.path()).unwrap_or_default()));
        }
    }
    all
}

/// Waits until array task `task` of `job` trains a CDAN cell (its worker holds that lease); its pid.
fn wait_until_training(dir: &Path, runs: &Path, job: &str, task: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "task {task} of job {job} never trained a CDAN cell: {}\n{}", squeue(job), logs(dir));
        let log = std::fs::read_to_string(dir.join(format!("runs/slurm/logs/{job}_{task}.out"))).unwrap_or_default();
        if let Some(pid) = log.lines().find_map(|l| l.strip_prefix("worker pid ")).and_then(|p| p.trim().parse::<u32>().ok()) {
            let leases = std::fs::read_dir(runs.join("cells/.leases")).map(|d| d.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect::<Vec<_>>()).unwrap_or_default();
            if leases.iter().any(|c| c.contains(&format!("\"pid\":{pid},")) && c.contains(" cdan ")) {
                std::thread::sleep(Duration::from_millis(500));
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_array_runs_the_grid_and_a_cancelled_task_is_made_up_by_a_relaunch() {
    if !enabled() {
        return;
    }
    // 1. Three array tasks share eight short cells.
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 2, 12);
    let started = Instant::now();
    let text = launch(dir.path(), &protocol, &["--workers", "3"]);
    let job = job_id(&text);
    wait_for_job(&job, Duration::from_secs(300));
    let logs1 = logs(dir.path());
    assert_grid_done_once(&dir.path().join("runs"), 8);
    assert_eq!(logs1.matches("worker exited with status 0").count(), 3, "{logs1}");
    eprintln!("slurm 1: job {job}, 3 array tasks, 8 cells done once, {:.1} s", started.elapsed().as_secs_f64());

    // 2. Two tasks on longer cells; cancel task 1 while it trains, then task 0 likewise, so that
    //    cells stay pending; a relaunch submits only those.
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 2, 400);
    let runs = dir.path().join("runs");
    let started = Instant::now();
    let text = launch(dir.path(), &protocol, &["--workers", "2"]);
    let job = job_id(&text);
    for task in [1, 0] {
        let pid = wait_until_training(dir.path(), &runs, &job, task);
        let cancelled = format!("{job}_{task}");
        assert!(Command::new("scancel").arg(&cancelled).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(120);
        while squeue(&cancelled).contains("RUNNING") || squeue(&cancelled).contains("COMPLETING") {
            assert!(Instant::now() < deadline, "{cancelled} did not end");
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(dir.path().join(format!("runs/slurm/logs/{job}_{task}.out"))).unwrap_or_default();
        assert!(log.contains("worker exited with status 3"), "the worker of {cancelled} (pid {pid}) stopped cleanly:\n{log}");
    }
    wait_for_job(&job, Duration::from_secs(120));
    let stopped: Vec<_> = journal(&runs).into_iter().filter(|(_, _, e)| e.starts_with("released: a stop signal arrived")).collect();
    assert_eq!(stopped.len(), 2, "both cancelled workers released their cells: {stopped:?}");
    let status_text = || {
        let out = Command::new(BIN).arg("--protocol").arg(&protocol).args(["status", "--profile", "many", "--device", "cpu"]).arg("--runs").arg(&runs).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let after_cancel = status_text();
    eprintln!("after cancelling both tasks:\n{after_cancel}");
    assert!(after_cancel.contains("running 0, stale leases 0, failed 0"), "{after_cancel}");
    let pending: usize = after_cancel.split("pending ").nth(1).and_then(|s| s.split(',').next()).and_then(|n| n.trim().parse().ok()).unwrap();
    assert!(pending >= 2, "{after_cancel}");
    // Relaunch without --workers: one task per pending cell, only those.
    let text = launch(dir.path(), &protocol, &[]);
    assert!(text.contains(&format!("{pending} pending cell(s) of profile many, {pending} array task(s)")), "{text}");
    wait_for_job(&job_id(&text), Duration::from_secs(600));
    assert_grid_done_once(&runs, 8);
    let events = journal(&runs);
    let leases = events.iter().filter(|(_, _, e)| e.starts_with("leased")).count();
    eprintln!("slurm 2: job {job} (2 array tasks, both cancelled mid-cell), relaunch of the {pending} pending cell(s); 8 cells done once, {leases} leases, {:.1} s", started.elapsed().as_secs_f64());
}
