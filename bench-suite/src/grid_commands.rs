//! The grid commands behind the dispatcher: run a profile's cells (in this process or as
//! workers), fetch what a profile reads, time a profile (bench-speed), write its report.

use crate::cli::{GridArgs, WorkerArgs};
use crate::signals::{stop_on_signals, StoppedBySignal};
use anyhow::{Context, Result};
use bench_suite::protocol::Protocol;
use bench_suite::runner::{self, RunOptions, Runs};

pub(crate) fn bench_speed(protocol: &Protocol, config: &bench_suite::speed_bench::SpeedBenchConfig, runs: &std::path::Path, quiet: bool) -> Result<()> {
    let record = bench_suite::speed_bench::run(protocol, config, &mut |group| {
        if !quiet {
            eprintln!("bench-speed: timing {group}");
        }
    })?;
    print!("{}", bench_suite::speed_bench::render(&record));
    let path = bench_suite::speed_bench::write_record(runs, &record)?;
    println!("bench-speed record: {}", path.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_grid(protocol: &Protocol, profile: &str, grid: &GridArgs, device: tch::Device, shard: Option<(usize, usize)>, data_root: &std::path::Path, quiet: bool, workers: &WorkerArgs) -> Result<()> {
    let runs = Runs::new(&grid.runs);
    let timing = workers.timing()?;
    let (shutdown, _grid_signals) = stop_on_signals()?;
    workers.numerics.apply()?;
    runs.adopt_numerics(workers.numerics.numerics())?;
    if workers.workers.is_some() || workers.gpus.is_some() {
        return run_workers(protocol, profile, grid, data_root, quiet, workers, shutdown);
    }
    if let Some(t) = workers.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        tch::set_num_threads(t as i32);
    }
    let plan = runner::plan(protocol, profile, &runs, device, grid.no_stand_ins)?;
    if !workers.events {
        print!("{}", runner::render_plan(&plan, &runs, shard).lines().take(5).collect::<Vec<_>>().join("\n"));
        println!();
    }
    let events: Option<runner::EventSink> = workers.events.then(|| {
        std::sync::Arc::new(|event: serde_json::Value| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{event}");
            let _ = out.flush();
        }) as runner::EventSink
    });
    let options = RunOptions {
        shard,
        show_progress: !quiet,
        drop_stand_ins: grid.no_stand_ins,
        lease_timing: timing,
        shutdown,
        decode_threads: workers.threads,
        events,
        ..RunOptions::new(data_root, device)
    };
    let report = runner::run(protocol, profile, &runs, &options)?;
    // With --events, stdout carries only events: the summary goes to stderr.
    let say = |line: String| if workers.events { eprintln!("{line}") } else { println!("{line}") };
    say(format!(
        "grid {profile}: ran {} cell(s) in {}, {} already done, {} not runnable in this build{}",
        report.ran,
        runner::human_duration(report.seconds),
        report.skipped_done,
        report.unsupported,
        if report.restarted_incomplete > 0 { format!(", {} interrupted cell(s) restarted", report.restarted_incomplete) } else { String::new() }
    ));
    if report.done_elsewhere + report.busy + report.failed_elsewhere > 0 {
        say(format!(
            "  other workers: {} cell(s) published by them, {} in training by them (left to them; a lease without heartbeat for {} s is taken over by the next run), {} failed in them",
            report.done_elsewhere,
            report.busy,
            timing.timeout.as_secs(),
            report.failed_elsewhere
        ));
    }
    for d in &report.diverged {
        say(format!("  diverged (a result, reported as such): {d}"));
    }
    for l in &report.lost {
        say(format!("  lost to another worker (its lease went stale; nothing published by this one): {l}"));
    }
    for (cell, err) in &report.failed {
        say(format!("  FAILED {cell}: {err}"));
    }
    say(format!("records: {}/cells; profile manifest: {}/profiles/{profile}.json", runs.root().display(), runs.root().display()));
    if !report.failed.is_empty() {
        anyhow::bail!("{} cell(s) failed; fix the cause and rerun (done cells are kept)", report.failed.len());
    }
    if report.stopped.is_some() {
        return Err(StoppedBySignal.into());
    }
    Ok(())
}

/// `run --workers N` / `--gpus`: this process starts the workers and shows their progress.
pub(crate) fn run_workers(protocol: &Protocol, profile: &str, grid: &GridArgs, data_root: &std::path::Path, quiet: bool, workers: &WorkerArgs, shutdown: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    use bench_suite::workers;
    let gpus = match &workers.gpus {
        Some(text) => Some(workers::parse_gpus(text, tch::Cuda::device_count().max(0) as usize)?),
        None => None,
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let mut slots = workers::slots(gpus.as_deref(), visible.as_deref(), workers.workers.unwrap_or(1), &grid.device, cores)?;
    if let Some(t) = workers.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        slots.iter_mut().for_each(|s| s.threads = t);
    }
    let runs = Runs::new(&grid.runs);
    let plan = runner::plan(protocol, profile, &runs, tch::Device::Cpu, grid.no_stand_ins)?;
    let pending = plan.count(|s| matches!(s, runner::CellState::Pending | runner::CellState::Failed(_)));
    println!(
        "run: profile {profile}, {pending} cell(s) pending under {}; {} worker(s): {}",
        runs.root().display(),
        slots.len(),
        slots.iter().map(|s| format!("{} ({} thread(s))", s.label, s.threads)).collect::<Vec<_>>().join(", ")
    );
    let mut args: Vec<String> = Vec::new();
    if let Some(p) = std::env::args().collect::<Vec<_>>().windows(2).find(|w| w[0] == "--protocol").map(|w| w[1].clone()) {
        args.extend(["--protocol".into(), p]);
    }
    args.extend(["run".into(), "--profile".into(), profile.to_owned(), "--runs".into(), grid.runs.display().to_string()]);
    args.extend(["--data-root".into(), data_root.display().to_string()]);
    args.extend(["--lease-timeout".into(), workers.lease_timeout.to_string(), "--heartbeat".into(), workers.heartbeat.to_string()]);
    args.extend(workers.numerics.worker_args());
    if let Some(shard) = &grid.shard {
        args.extend(["--shard".into(), shard.clone()]);
    }
    if grid.no_stand_ins {
        args.push("--no-stand-ins".into());
    }
    let exe = std::env::current_exe().context("locating this executable to start the workers")?;
    let started = std::time::Instant::now();
    let outcome = workers::supervise(&exe, &args, &slots, !quiet, shutdown)?;
    println!(
        "run: {} cell(s) published ({} diverged), {} failed, {} lost to other workers, in {}",
        outcome.ran,
        outcome.diverged,
        outcome.failed,
        outcome.lost,
        runner::human_duration(started.elapsed().as_secs_f64())
    );
    if !outcome.crashed.is_empty() {
        anyhow::bail!("worker(s) ended with an error: {} (their messages are above)", outcome.crashed.join(", "));
    }
    if outcome.failed > 0 {
        anyhow::bail!("{} cell(s) failed; `bench-suite status --profile {profile}` shows the errors; fix the cause and rerun", outcome.failed);
    }
    if outcome.stopped {
        return Err(StoppedBySignal.into());
    }
    Ok(())
}

/// Fetches what the profile's runnable tasks read, with missing files allowed (the cells that need
/// them fail with a message naming the file).
pub(crate) fn fetch_for_profile(protocol: &Protocol, profile: &str, data_root: &std::path::Path, mirrors: &[String], quiet: bool) -> Result<()> {
    use data_fetch::fetch::{FetchOptions, Fetcher, FileOutcome, Mirror};
    let manifest = data_fetch::manifest::Manifest::embedded()?;
    let mut names: Vec<String> = Vec::new();
    for cell in bench_suite::grid::cells(protocol, profile)? {
        if let Some(spec) = cell.spec {
            if let Some(t) = spec.task.digits() {
                for d in [t.source, t.target] {
                    names.push(d.name().to_owned());
                }
            }
            if let baselines::data::Task::Benchmark { benchmark, .. } = spec.task {
                names.push(benchmark.name().to_owned());
            }
            if let Some(b) = spec.method.image_backbone().filter(|b| b.pretrained) {
                names.push(b.network.name().to_owned());
            }
            if let Some(v) = spec.method.vit_backbone().filter(|v| v.pretrained) {
                names.push(v.weights.dataset().to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    let root = data_fetch::store::Root::new(std::path::absolute(data_root)?);
    let options = FetchOptions {
        mirrors: mirrors.iter().map(|m| Mirror::parse(m)).collect(),
        http: data_fetch::download::HttpOptions { show_progress: !quiet, ..Default::default() },
        keep_archives: false,
    };
    let fetcher = Fetcher::new(root, &manifest, options)?;
    for name in &names {
        let reports = fetcher.fetch(name)?;
        for r in reports {
            for (file, outcome) in &r.files {
                match outcome {
                    FileOutcome::AlreadyPresent => {}
                    FileOutcome::Installed { source, .. } => println!("fetch: {}/{file} installed from {source}", r.dataset),
                    FileOutcome::Missing { attempts, .. } => {
                        println!("fetch: {}/{file} is MISSING ({} source(s) tried; `data-fetch fetch {}` shows each attempt)", r.dataset, attempts.len(), r.dataset)
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs the `report` binary that sits beside this one.
pub(crate) fn write_report(runs: &std::path::Path, profile: &str, out: &std::path::Path) -> Result<()> {
    let exe = std::env::current_exe()?;
    let report = exe.with_file_name("report");
    if !report.is_file() {
        anyhow::bail!("{} not found beside bench-suite: build it (`cargo make build`), then run `report --runs {} --profile {profile}`", report.display(), runs.display());
    }
    let status = std::process::Command::new(&report).arg("--runs").arg(runs).arg("--profile").arg(profile).arg("--out").arg(out).status()?;
    anyhow::ensure!(status.success(), "report failed ({status})");
    Ok(())
}
