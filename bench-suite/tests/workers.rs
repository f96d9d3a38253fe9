//! Many workers on one runs folder (separate `bench-suite run` processes, and `run --workers N`):
//! every cell published exactly once, also while workers are SIGKILLed at random moments and
//! restarted; a SIGTERM stops a worker cleanly; `status` and `launch slurm` (with a stand-in
//! sbatch) on the same grids. The real Slurm test is tests/slurm.rs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_grid_done_once, journal, protocol_file, BIN};

fn worker(dir: &Path, protocol: &Path, extra: &[&str]) -> Command {
    worker_of("many", dir, protocol, extra)
}

fn worker_of(profile: &str, dir: &Path, protocol: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--protocol").arg(protocol).args(["run", "--profile", profile, "--device", "cpu", "--quiet", "--threads", "1"]);
    c.arg("--runs").arg(dir.join("runs")).arg("--data-root").arg(dir.join("data"));
    c.args(extra).stdout(Stdio::null()).stderr(Stdio::piped()).env("RUST_LOG", "warn");
    c
}

#[test]
fn workers_started_by_run_workers_divide_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 3, 12);
    let out = worker(dir.path(), &protocol, &["--workers", "3"]).stdout(Stdio::piped()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 worker(s): worker 1 (1 thread(s)), worker 2 (1 thread(s)), worker 3 (1 thread(s))"), "{text}");
    assert!(text.contains("run: 12 cell(s) published"), "{text}");
    assert_grid_done_once(&dir.path().join("runs"), 12);
    let owners: BTreeSet<String> = journal(&dir.path().join("runs")).into_iter().filter(|(_, _, e)| e == "published").map(|(o, _, _)| o).collect();
    eprintln!("cells published by {} distinct workers", owners.len());
    assert!(owners.len() >= 2, "the workers shared the grid: {owners:?}");
}

/// A small deterministic generator (the test prints its seed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn workers_killed_at_random_moments_and_restarted_leave_every_cell_done_once() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 5, 40);
    let runs = dir.path().join("runs");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);
    let workers = 3;
    let start = |_: usize| -> Child { worker(dir.path(), &protocol, &["--lease-timeout", "5", "--heartbeat", "0.5"]).spawn().unwrap() };
    let mut procs: Vec<Child> = (0..workers).map(start).collect();
    let mut killed: BTreeSet<u32> = BTreeSet::new();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Kill a random worker every 0.2-1.5 s, 12 times, restarting it each time.
    while kills < 12 {
        std::thread::sleep(Duration::from_millis(200 + rng.next(1300)));
        let k = rng.next(workers as u64) as usize;
        if procs[k].try_wait().unwrap().is_none() {
            killed.insert(procs[k].id());
            procs[k].kill().unwrap();
            procs[k].wait().unwrap();
            kills += 1;
        }
        procs[k] = start(k);
    }
    // Then let them finish; a finished worker is restarted while cells remain.
    loop {
        assert!(Instant::now() < deadline, "the grid did not finish");
        let mut all_exited = true;
        for p in procs.iter_mut() {
            match p.try_wait().unwrap() {
                None => all_exited = false,
                Some(status) => {
                    let mut err = String::new();
                    use std::io::Read;
                    p.stderr.take().map(|mut s| s.read_to_string(&mut err));
                    assert!(status.success(), "a worker failed: {status} {err}");
                }
            }
        }
        if all_exited {
            let remaining = Command::new(BIN).arg("--protocol").arg(&protocol).args(["status", "--profile", "many", "--device", "cpu"]).arg("--runs").arg(&runs).output().unwrap();
            let text = String::from_utf8_lossy(&remaining.stdout).into_owned();
            if text.contains("done 20,") {
                break;
            }
            procs = (0..workers).map(start).collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // One more run finds nothing to do and removes leases left by a worker killed between
    // publishing a cell and releasing it.
    assert!(start(0).wait().unwrap().success());
    assert_grid_done_once(&runs, 20);
    let events = journal(&runs);
    let takeovers: Vec<&String> = events.iter().filter(|(_, _, e)| e.starts_with("took-over")).map(|(_, _, e)| e).collect();
    for t in takeovers.iter().filter(|t| !t.contains("an unreadable lease")) {
        let pid: u32 = t.split("(pid ").nth(1).and_then(|s| s.split(' ').next()).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{t}"));
        assert!(killed.contains(&pid), "a lease of a live worker was taken over: {t}");
    }
    let leased = events.iter().filter(|(_, _, e)| e.starts_with("leased")).count();
    eprintln!(
        "kill test: {workers} workers, {kills} SIGKILLs, 20 cells, {leased} leases, {} takeovers of killed workers' leases, duplicates 0",
        takeovers.len()
    );
}

#[test]
fn sigterm_stops_the_cell_in_training_and_leaves_it_pending() {
    stop_with(&[libc::SIGTERM]);
}

/// What `scancel` does to a worker under the Slurm script: TERM from Slurm and USR1 forwarded by the
/// script, here in the order that once ended the worker at once (status 130, cell not released).
#[test]
fn usr1_then_sigterm_is_one_clean_stop() {
    stop_with(&[libc::SIGUSR1, libc::SIGTERM]);
}

fn stop_with(signals: &[i32]) {
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 1, 100_000);
    let runs = dir.path().join("runs");
    let mut child = worker(dir.path(), &protocol, &[]).spawn().unwrap();
    let leases = runs.join("cells/.leases");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait until it trains: a lease and a folder in progress exist.
    loop {
        assert!(Instant::now() < deadline, "the worker never started a cell");
        let leased = std::fs::read_dir(&leases).map(|d| d.count() > 0).unwrap_or(false);
        let in_progress = std::fs::read_dir(runs.join("cells")).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))).unwrap_or(false);
        if leased && in_progress {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    for (k, &signal) in signals.iter().enumerate() {
        if k > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(child.id() as i32, signal) };
    }
    let stopped_by = Instant::now();
    let status = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(3), "exit status 3 after a stop: {err}");
    assert!(stopped_by.elapsed() < Duration::from_secs(20), "stopped promptly");
    assert!(err.contains("stopped by a signal"), "{err}");
    let names: Vec<String> = std::fs::read_dir(runs.join("cells")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n.starts_with('.') && !n.starts_with(".tmp-") && !n.starts_with(".failed")), "nothing published, in progress or failed: {names:?}");
    assert_eq!(std::fs::read_dir(&leases).unwrap().count(), 0, "the lease was released");
    assert!(journal(&runs).iter().any(|(_, _, e)| e.starts_with("released: a stop signal arrived")));
    let status = Command::new(BIN).arg("--protocol").arg(&protocol).args(["status", "--profile", "many", "--device", "cpu"]).arg("--runs").arg(&runs).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("done 0, running 0, stale leases 0, failed 0, pending 4"), "{text}");
}

#[test]
fn status_shows_running_stale_failed_and_pending_cells() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 1, 12);
    let runs = dir.path().join("runs");
    let p = bench_suite::protocol::Protocol::parse(&std::fs::read_to_string(&protocol).unwrap(), "test").unwrap();
    let plan = bench_suite::runner::plan(&p, "many", &bench_suite::runner::Runs::new(&runs), tch::Device::Cpu, false).unwrap();
    let hashes: Vec<String> = plan.cells.iter().map(|c| c.info.hash.clone()).collect();
    let host = bench_suite::lease::hostname();
    let live = bench_suite::lease::Leases::new(&runs, bench_suite::lease::Worker::this_process(), Default::default()).unwrap();
    let _running = live.try_lease(&hashes[0], &plan.cells[0].info.label()).unwrap().unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let dead_worker = bench_suite::lease::Worker { owner: "dead-worker".into(), host: host.clone(), pid: dead, pid_start: None };
    let stale = bench_suite::lease::Leases::new(&runs, dead_worker, Default::default()).unwrap();
    std::mem::forget(stale.try_lease(&hashes[1], "x").unwrap().unwrap());
    std::fs::write(runs.join("cells").join(format!(".failed-{}.txt", hashes[2])), "loading the data: file not found\nmore").unwrap();
    let text = bench_suite::status::render(&p, "many", &bench_suite::runner::Runs::new(&runs), tch::Device::Cpu, false, Default::default(), false).unwrap();
    assert!(text.contains("done 0, running 1, stale leases 1, failed 1, pending 1"), "{text}");
    assert!(text.contains(&format!("{host} pid {}", std::process::id())), "{text}");
    assert!(text.contains("its process is gone; the next worker takes it over"), "{text}");
    assert!(text.contains("loading the data: file not found"), "{text}");
}

#[test]
fn launch_slurm_writes_the_array_script_and_submits_only_pending_work() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 2, 12);
    let runs = dir.path().join("runs");
    let launch = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("--protocol")
            .arg(&protocol)
            .args(["launch", "slurm", "--profile", "many", "--gpus-per-task", "0", "--cpus-per-task", "2", "--time", "0:30:00"])
            .arg("--runs")
            .arg(&runs)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, text) = launch(&["--dry-run", "--workers", "3", "--array-parallelism", "2", "--requeue", "--partition", "debug"]);
    assert!(ok, "{text}");
    for needed in ["#SBATCH --array=0-2%2", "#SBATCH --time=0:30:00", "#SBATCH --cpus-per-task=2", "#SBATCH --signal=B:USR1@300", "#SBATCH --partition=debug", "#SBATCH --requeue", "requeue=1", "run --profile many", "--device cpu", "--threads 2", "--protocol"] {
        assert!(text.contains(needed), "the script lacks {needed}: {text}");
    }
    assert!(text.contains("8 pending cell(s) of profile many, 3 array task(s)"), "{text}");
    // A stand-in sbatch: records its arguments, prints a job id as `--parsable` does.
    let sbatch = dir.path().join("sbatch");
    std::fs::write(&sbatch, format!("#!/bin/sh\necho \"$@\" > {}\necho '4242;cluster'\n", dir.path().join("sbatch.args").display())).unwrap();
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (ok, text) = launch(&["--sbatch", sbatch.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("submitted job 4242") && text.contains("JOB_ID=4242"), "{text}");
    assert!(text.contains("8 array task(s)"), "one task per pending cell by default: {text}");
    let args = std::fs::read_to_string(dir.path().join("sbatch.args")).unwrap();
    assert!(args.starts_with("--parsable ") && args.trim_end().ends_with(".sbatch"), "{args}");
    // A custom template with a placeholder the launcher does not know: named with its line.
    let template = dir.path().join("my.sbatch");
    std::fs::write(&template, "#!/bin/bash\n#SBATCH --array={{array}}\n{{nonsense}}\n").unwrap();
    let (ok, text) = launch(&["--dry-run", "--template", template.to_str().unwrap()]);
    assert!(!ok && text.contains("line 3: unknown placeholder {{nonsense}}"), "{text}");
    // Nothing pending: nothing submitted.
    let out = worker(dir.path(), &protocol, &[]).output().unwrap();
    assert!(out.status.success());
    let (ok, text) = launch(&["--sbatch", "/nonexistent/sbatch"]);
    assert!(ok && text.contains("nothing to submit"), "{text}");
}

/// A cell whose training blows up (CDAN at a learning rate of 1e30) is recorded as diverged, and
/// the same worker goes on to train the next cell (on CUDA a NaN in the domain loss used to be a
/// device-side assert that poisoned the worker; here the flow is checked on the CPU).
#[test]
fn a_diverged_cell_is_a_result_and_the_same_worker_runs_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = protocol_file(dir.path(), 1, 6);
    let extra = r#"
[profiles.blowup]
description = "a CDAN cell that diverges, then a DWL cell"
datasets = ["digits"]
tasks = ["M-U"]
baselines = ["cdan", "dwl"]
harmonizers = ["gh"]
seeds = [1]
telemetry_every = 1

[profiles.blowup.schedule.cdan]
iterations = 6
iters_per_epoch = 3
eval_every = 6

[profiles.blowup.schedule.dwl]
iterations = 4
iters_per_epoch = 2
eval_every = 2

[profiles.blowup.hyperparameters.cdan]
batch = 16
conditioning = { kind = "random", dim = 32 }
discriminator_hidden = 32
source_only_epochs = 0
sgd = { lr = 1e30, momentum = 0.9, weight_decay = 0.0005 }

[profiles.blowup.hyperparameters.dwl]
batch = 8
source_steps = 1
balance_steps = 1
"#;
    let text = std::fs::read_to_string(&protocol).unwrap();
    std::fs::write(&protocol, format!("{text}\n{extra}")).unwrap();
    let out = worker_of("blowup", dir.path(), &protocol, &["--workers", "1"]).stdout(Stdio::piped()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("run: 2 cell(s) published (1 diverged), 0 failed"), "{text}");
    let runs = dir.path().join("runs");
    let mut statuses: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(runs.join("cells")).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')) {
        let record = std::fs::read_to_string(entry.path().join("run.jsonl")).unwrap();
        let config: serde_json::Value = serde_json::from_str(record.lines().next().unwrap()).unwrap();
        let summary: serde_json::Value = serde_json::from_str(record.lines().last().unwrap()).unwrap();
        let method = config["spec"]["method"]["method"].as_str().unwrap_or("?").to_owned();
        statuses.push((method, summary["status"].as_str().unwrap_or("?").to_owned()));
    }
    statuses.sort();
    assert_eq!(statuses, [("cdan".to_owned(), "diverged".to_owned()), ("dwl".to_owned(), "completed".to_owned())], "{text}");
}
