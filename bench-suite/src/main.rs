//! `bench-suite`: runs the experiments of the reproduction suite.

use anyhow::{Context, Result};
use baselines::harmonizer::{GhppRule, Harmonizer, Method};
use bench_suite::protocol::Protocol;
use bench_suite::runner::{self, RunOptions, Runs};
use bench_suite::step_bench::{self, StepBenchConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "bench-suite",
    version,
    about = "Runs the GH / GH++ reproduction experiments: baselines x {none, GH, GH++} x tasks x seeds",
    long_about = "Runs the experiments of the reproduction suite for \"Gradient Harmonization in \
                  Unsupervised Domain Adaptation\" (GH and GH++): single runs, the whole grid, and \
                  micro-benchmarks of the harmonized training step. Uses CUDA when libtorch sees a \
                  GPU, else the CPU."
)]
struct Cli {
    /// Protocol file (default: the built-in bench-suite/protocol.toml)
    #[arg(long, global = true)]
    protocol: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train and evaluate one baseline on one task (digits, benchmark or your own images); says
    /// its plan first (--dry-run: only that), writes a JSON-lines run record, reports what trained
    RunOne(bench_suite::run_one::RunOneArgs),
    /// Images per second per core of the image input pipeline (with and without the decoded
    /// cache) against torchvision's ImageFolder + PIL DataLoader on the same JPEGs, same transform
    BenchInput {
        /// Where the benchmark's JPEGs are written (once) and read
        #[arg(long, default_value = "runs/bench-input/images")]
        dir: PathBuf,
        /// Decoding workers (ours) and DataLoader workers (torchvision)
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 36)]
        batch: usize,
        /// Timed batches per pipeline
        #[arg(long, default_value_t = 40)]
        batches: usize,
        /// JPEGs per size (300x300, 640x480, 1000x1000)
        #[arg(long, default_value_t = 120)]
        per_size: usize,
        /// Interleaved rounds of all pipelines (medians are shown: this host's noise averages out)
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The Python with torchvision and pillow (default: the project venv)
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
    },
    /// Time the plain, three-pass GH and two-pass GH training steps (weights on the host, and on the device) with the host reads each makes (LeNet digits, ResNet-50 or ViT-B/16, DANN loss)
    BenchStep {
        /// auto (CUDA if available), cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
        /// The feature extractor: lenet (digits), resnet50 or vit-b16 (images; try --batch 2 or 4
        /// on a CPU)
        #[arg(long, value_enum, default_value = "lenet")]
        backbone: bench_suite::step_bench::StepBackbone,
        /// ResNet-50 / ViT-B/16 input side
        #[arg(long, default_value_t = 224)]
        image_side: i64,
        /// Images per domain in a batch (source and target each)
        #[arg(long, default_value_t = 64)]
        batch: i64,
        /// Harmonizer of the harmonized steps: gh or gh++
        #[arg(long, default_value = "gh")]
        harmonizer: Method,
        /// GH++ trade-off α in [0, 1]
        #[arg(long, default_value_t = Harmonizer::DEFAULT_ALPHA)]
        alpha: f64,
        /// GH++ rule: released (the authors' code) or rotation
        #[arg(long, default_value = "released")]
        rule: GhppRule,
        /// Untimed steps per kind before timing
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Timed rounds; each round times every kind once
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Steps per kind in one round
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: i64,
    },
    /// Time each baseline x harmonizer of a profile (real data, networks and optimiser steps) in
    /// interleaved rounds in one process, so load from elsewhere falls on every arm alike; writes
    /// <runs>/bench-speed/<profile>.json, which the report uses for Table VI, the speed chart and the
    /// paper's speed claims (reproduce-all runs it after the grid)
    BenchSpeed {
        #[command(flatten)]
        grid: GridArgs,
        /// Where the data lives (as laid out by data-fetch)
        #[arg(long, env = "GH_DATA_ROOT", default_value = "data")]
        data_root: PathBuf,
        /// all (every task of the profile), first (the first task of each dataset: a step's cost
        /// depends on the dataset's protocol, not on the pair), or a comma-separated list
        #[arg(long, default_value = "all")]
        tasks: bench_suite::speed_bench::TaskSelection,
        /// Rounds; each runs every arm once, in an order rotated per round
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Timed iterations per arm and round
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        /// Untimed iterations per arm before the first round
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// No progress lines
        #[arg(long)]
        quiet: bool,
    },
    /// Time whole training iterations of the baselines' image protocols (their real steps,
    /// random ResNet / ViT weights and random images: no data needed)
    BenchIteration {
        /// auto (CUDA if available), cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
        /// Whose image protocol: office31, officehome (ResNet-50), visda2017, domainnet (ResNet-101)
        #[arg(long, default_value = "office31")]
        dataset: String,
        /// Baselines, comma-separated (ssrt: ViT-B/16)
        #[arg(long, value_delimiter = ',', default_value = "cdan,gvb,mcd,dwl")]
        baselines: Vec<String>,
        /// Harmonizers, comma-separated (none, gh, gh++)
        #[arg(long, value_delimiter = ',', default_value = "none,gh++")]
        harmonizers: Vec<String>,
        /// Images per domain (default: the protocol's, 36 for CDAN / GVB, 32 for MCD / DWL)
        #[arg(long)]
        batch: Option<usize>,
        /// Image side (224 in the protocols)
        #[arg(long, default_value_t = 224)]
        image_side: i64,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        #[arg(long, default_value_t = 1)]
        iterations: usize,
    },
    /// List a profile's cells: which are done, which are pending, estimated cost
    Plan {
        #[command(flatten)]
        grid: GridArgs,
    },
    /// Run a profile's pending cells (resumable: done cells are skipped, interrupted ones restarted).
    /// Any number of runs may share one runs folder, on one machine or many (NFS included): each
    /// claims a cell before training it, so none trains twice. SIGTERM / Ctrl-C stop the cell in
    /// training and leave it pending (exit status 3)
    Run {
        #[command(flatten)]
        grid: GridArgs,
        /// Where the data lives (as laid out by data-fetch)
        #[arg(long, env = "GH_DATA_ROOT", default_value = "data")]
        data_root: PathBuf,
        /// No progress bars
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        workers: WorkerArgs,
    },
    /// The state of a profile's cells in a runs folder: done, running (host, pid, since, last
    /// heartbeat), stale claims, failed (with the error), pending
    Status {
        #[command(flatten)]
        grid: GridArgs,
        /// A claim whose heartbeat is older than this counts as stale (seconds; as for `run`)
        #[arg(long, default_value_t = 300.0)]
        claim_timeout: f64,
        /// List every pending cell too
        #[arg(long)]
        all: bool,
    },
    /// Run a profile on a cluster
    #[command(subcommand)]
    Launch(LaunchCommand),
    /// The main job's fetch and run steps: picks the profile (paper with CUDA, digits-cpu without),
    /// fetches its data, runs its cells (then `report` writes tables and plots)
    ReproduceAll {
        #[command(flatten)]
        grid: GridArgs,
        /// Where the data lives (as laid out by data-fetch)
        #[arg(long, env = "GH_DATA_ROOT", default_value = "data")]
        data_root: PathBuf,
        /// Extra data source (folder or base URL) tried before the manifest's mirrors; repeatable.
        /// Also GH_DATA_MIRROR (comma-separated; URLs hold colons).
        #[arg(long = "mirror", value_name = "DIR|URL")]
        mirrors: Vec<String>,
        /// Where `report` writes tables and charts (a subfolder per profile)
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// No progress bars
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        workers: WorkerArgs,
    },
}

#[derive(clap::Args, Clone)]
struct WorkerArgs {
    /// Worker processes on this machine, each claiming cells until none is pending (with --gpus:
    /// workers per GPU, e.g. 4 for the small digits networks)
    #[arg(long)]
    workers: Option<usize>,
    /// One worker per GPU: all, or CUDA device indices such as 0,1,3 (each worker sees only its GPU)
    #[arg(long, value_name = "all|LIST")]
    gpus: Option<String>,
    /// CPU threads of this worker (libtorch and image decoding). Default: all cores, or the cores
    /// divided among the workers of --workers / --gpus
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds without a heartbeat after which another worker takes a cell's claim over (a dead
    /// worker on this host is noticed at once)
    #[arg(long, default_value_t = 300.0)]
    claim_timeout: f64,
    /// Seconds between a worker's heartbeats on its claim
    #[arg(long, default_value_t = 15.0)]
    heartbeat: f64,
    /// Progress as JSON lines on stdout (for the process that started this worker)
    #[arg(long, hide = true)]
    events: bool,
    #[command(flatten)]
    numerics: bench_suite::numerics_args::NumericsArgs,
}

impl WorkerArgs {
    fn timing(&self) -> Result<bench_suite::claim::ClaimTiming> {
        anyhow::ensure!(
            self.heartbeat > 0.0 && self.claim_timeout > 2.0 * self.heartbeat,
            "--claim-timeout ({} s) must exceed twice --heartbeat ({} s), or live workers would lose their cells",
            self.claim_timeout,
            self.heartbeat
        );
        Ok(bench_suite::claim::ClaimTiming { heartbeat: std::time::Duration::from_secs_f64(self.heartbeat), timeout: std::time::Duration::from_secs_f64(self.claim_timeout) })
    }
}

#[derive(Subcommand)]
enum LaunchCommand {
    /// Submit a Slurm job array whose tasks run workers that claim the profile's pending cells
    /// until none is left or their time is nearly up; run again to submit only what is still
    /// pending. The sbatch script comes from a template file (bench-suite/templates/slurm-array.sbatch)
    Slurm(bench_suite::slurm::SlurmArgs),
}

#[derive(clap::Args)]
struct GridArgs {
    /// Profile of the protocol file (default: paper with CUDA, digits-cpu without)
    #[arg(long)]
    profile: Option<String>,
    /// Folder of the grid's cells and profile manifests
    #[arg(long, env = "GH_RUNS", default_value = "runs")]
    runs: PathBuf,
    /// Run only cells k with k mod n = i - 1 (i/n, 1 <= i <= n), e.g. 2/4
    #[arg(long)]
    shard: Option<String>,
    /// auto (CUDA if available), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// Ignore the profile's split stand-ins (use the real train splits; they must be fetched)
    #[arg(long)]
    no_stand_ins: bool,
}

impl GridArgs {
    /// (profile, device, shard, why the profile was chosen)
    fn resolve(&self, protocol: &Protocol, will_run: bool) -> Result<(String, tch::Device, Option<(usize, usize)>, String)> {
        let device = baselines::device::select(&self.device)?;
        let (profile, why) = match &self.profile {
            Some(p) => (p.clone(), format!("profile {p} (chosen with --profile)")),
            None if device.is_cuda() => ("paper".to_owned(), "CUDA is available: running the paper profile".to_owned()),
            None => ("digits-cpu".to_owned(), "no CUDA GPU visible: running the digits-cpu profile (the embedded default for CPU machines)".to_owned()),
        };
        let entry = protocol.profiles.get(&profile).with_context(|| {
            format!("unknown profile '{profile}'; the protocol has: {}", protocol.profiles.keys().cloned().collect::<Vec<_>>().join(", "))
        })?;
        if will_run && entry.requires_cuda && !device.is_cuda() {
            anyhow::bail!("profile '{profile}' needs a CUDA GPU and none is visible (device {}); use --profile digits-cpu", baselines::device::describe(device));
        }
        let shard = self.shard.as_deref().map(runner::parse_shard).transpose()?;
        Ok((profile, device, shard, why))
    }
}

fn main() {
    // Die quietly on a closed pipe instead of panicking.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        if e.downcast_ref::<StoppedBySignal>().is_some() {
            eprintln!("bench-suite: {e}");
            std::process::exit(3);
        }
        eprintln!("bench-suite: error: {e:#}");
        std::process::exit(1);
    }
}

fn bench_speed(protocol: &Protocol, config: &bench_suite::speed_bench::SpeedBenchConfig, runs: &std::path::Path, quiet: bool) -> Result<()> {
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

/// The error of a run stopped by a signal (exit status 3: cells remain pending; a requeued or later
/// run finishes them).
#[derive(Debug)]
struct StoppedBySignal;

impl std::fmt::Display for StoppedBySignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by a signal; the cell in training was left pending (run again to finish the grid)")
    }
}

impl std::error::Error for StoppedBySignal {}

/// While the grid runs, SIGTERM, SIGINT and SIGUSR1 (Slurm's usual pre-timeout signal) set the
/// returned flag (the cell in training stops cleanly); a second SIGINT or SIGTERM ends the process
/// at once. A USR1 never counts as the first of two: `scancel` sends TERM to the worker while the
/// Slurm script forwards USR1 to it, in either order, and that must stay one clean stop. Once the
/// guard is dropped (the grid is over: reproduce-all goes on to bench-speed and the report), SIGINT
/// and SIGTERM end the process at once again.
fn stop_on_signals() -> Result<(std::sync::Arc<std::sync::atomic::AtomicBool>, GridSignals)> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let flag = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicBool::new(false));
    let grid_over = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Handlers run in the order registered: the shutdown checks see the flags as they were
        // before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, 130, grid_over.clone()).context("installing a signal handler")?;
        signal_hook::flag::register_conditional_shutdown(signal, 130, terminated.clone()).context("installing a signal handler")?;
        signal_hook::flag::register(signal, terminated.clone()).context("installing a signal handler")?;
        signal_hook::flag::register(signal, flag.clone()).context("installing a signal handler")?;
    }
    signal_hook::flag::register(SIGUSR1, flag.clone()).context("installing a signal handler")?;
    Ok((flag.clone(), GridSignals { grid_over, stop: flag }))
}

/// Dropped when the grid is over: signals end the process at once from then on, unless the grid
/// was stopped by one: the process is then on its way to exit status 3, and the TERM that `scancel`
/// sends beside the forwarded USR1 must not turn that into 130.
struct GridSignals {
    grid_over: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for GridSignals {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if !self.stop.load(Ordering::Relaxed) {
            self.grid_over.store(true, Ordering::Relaxed);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_grid(protocol: &Protocol, profile: &str, grid: &GridArgs, device: tch::Device, shard: Option<(usize, usize)>, data_root: &std::path::Path, quiet: bool, workers: &WorkerArgs) -> Result<()> {
    let runs = Runs::new(&grid.runs);
    let timing = workers.timing()?;
    let (shutdown, _grid_signals) = stop_on_signals()?;
    workers.numerics.apply()?;
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
        claim_timing: timing,
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
            "  other workers: {} cell(s) published by them, {} in training by them (left to them; a claim without heartbeat for {} s is taken over by the next run), {} failed in them",
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
        say(format!("  lost to another worker (its claim went stale; nothing published by this one): {l}"));
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
fn run_workers(protocol: &Protocol, profile: &str, grid: &GridArgs, data_root: &std::path::Path, quiet: bool, workers: &WorkerArgs, shutdown: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
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
    args.extend(["--claim-timeout".into(), workers.claim_timeout.to_string(), "--heartbeat".into(), workers.heartbeat.to_string()]);
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
fn fetch_for_profile(protocol: &Protocol, profile: &str, data_root: &std::path::Path, mirrors: &[String], quiet: bool) -> Result<()> {
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
fn write_report(runs: &std::path::Path, profile: &str, out: &std::path::Path) -> Result<()> {
    let exe = std::env::current_exe()?;
    let report = exe.with_file_name("report");
    if !report.is_file() {
        anyhow::bail!("{} not found beside bench-suite: build it (`cargo make build`), then run `report --runs {} --profile {profile}`", report.display(), runs.display());
    }
    let status = std::process::Command::new(&report).arg("--runs").arg(runs).arg("--profile").arg(profile).arg("--out").arg(out).status()?;
    anyhow::ensure!(status.success(), "report failed ({status})");
    Ok(())
}

fn load_protocol(path: &Option<PathBuf>) -> Result<Protocol> {
    match path {
        Some(p) => Protocol::load(p),
        None => Protocol::embedded(),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::RunOne(args) => bench_suite::run_one::run(&load_protocol(&cli.protocol)?, &args),
        Command::BenchInput { dir, workers, batch, batches, per_size, rounds, python } => {
            anyhow::ensure!(
                workers > 0 && batch > 0 && batches > 0 && per_size > 0 && rounds > 0,
                "--workers, --batch, --batches, --per-size and --rounds must be positive"
            );
            let config = bench_suite::input_bench::InputBenchConfig { dir, python, workers, batch, batches, per_size, rounds };
            let result = bench_suite::input_bench::run(&config)?;
            print!("{}", bench_suite::input_bench::render(&config, &result));
            Ok(())
        }
        Command::BenchStep { device, backbone, image_side, batch, harmonizer, alpha, rule, warmup, rounds, steps, seed } => {
            anyhow::ensure!(harmonizer != Method::None, "--harmonizer must be gh or gh++ (the plain step is always timed)");
            anyhow::ensure!(rounds > 0 && steps > 0 && batch > 0, "--rounds, --steps and --batch must be positive");
            anyhow::ensure!(image_side >= 32, "--image-side must be at least 32");
            let config = StepBenchConfig {
                backbone,
                image_side,
                device: baselines::device::select(&device)?,
                batch_per_domain: batch,
                harmonizer: Harmonizer::new(harmonizer, alpha, rule)?,
                warmup_steps: warmup,
                rounds,
                steps_per_round: steps,
                seed,
            };
            let result = step_bench::run(&config)?;
            print!("{}", step_bench::render(&config, &result));
            Ok(())
        }
        Command::BenchIteration { device, dataset, baselines: names, harmonizers, batch, image_side, warmup, iterations } => {
            let protocol = load_protocol(&cli.protocol)?;
            anyhow::ensure!(image_side >= 32, "--image-side must be at least 32");
            anyhow::ensure!(protocol.datasets.contains_key(&dataset), "unknown dataset '{dataset}'");
            let config = bench_suite::iteration_bench::IterationBenchConfig {
                device: baselines::device::select(&device)?,
                dataset,
                baselines: names.iter().map(|b| baselines::methods::MethodName::parse(b)).collect::<anyhow::Result<_>>()?,
                harmonizers: harmonizers.iter().map(|h| Ok(Harmonizer::new(h.parse::<Method>()?, Harmonizer::DEFAULT_ALPHA, GhppRule::Released)?)).collect::<anyhow::Result<_>>()?,
                batch,
                image_side,
                warmup,
                iterations,
            };
            let timings = bench_suite::iteration_bench::run(&protocol, &config)?;
            print!("{}", bench_suite::iteration_bench::render(&config, &timings));
            Ok(())
        }
        Command::BenchSpeed { grid, data_root, tasks, rounds, iterations, warmup, quiet } => {
            let protocol = load_protocol(&cli.protocol)?;
            let (profile, device, _, why) = grid.resolve(&protocol, true)?;
            eprintln!("bench-speed: {why}");
            let config = bench_suite::speed_bench::SpeedBenchConfig { profile, device, data_root, drop_stand_ins: grid.no_stand_ins, tasks, rounds, iterations_per_round: iterations, warmup };
            bench_speed(&protocol, &config, &grid.runs, quiet)
        }
        Command::Plan { grid } => {
            let protocol = load_protocol(&cli.protocol)?;
            let (profile, device, shard, why) = grid.resolve(&protocol, false)?;
            eprintln!("plan: {why}");
            let runs = Runs::new(&grid.runs);
            let plan = runner::plan(&protocol, &profile, &runs, device, grid.no_stand_ins)?;
            print!("{}", runner::render_plan(&plan, &runs, shard));
            Ok(())
        }
        Command::Run { grid, data_root, quiet, workers } => {
            let protocol = load_protocol(&cli.protocol)?;
            // The workers' parent needs no device of its own (--gpus counts the GPUs itself).
            let (profile, device, shard, why) = grid.resolve(&protocol, workers.workers.is_none() && workers.gpus.is_none())?;
            if !workers.events {
                eprintln!("run: {why}");
            }
            run_grid(&protocol, &profile, &grid, device, shard, &data_root, quiet, &workers)
        }
        Command::Status { grid, claim_timeout, all } => {
            let protocol = load_protocol(&cli.protocol)?;
            let (profile, device, _, _) = grid.resolve(&protocol, false)?;
            let timing = bench_suite::claim::ClaimTiming { timeout: std::time::Duration::from_secs_f64(claim_timeout), ..Default::default() };
            print!("{}", bench_suite::status::render(&protocol, &profile, &Runs::new(&grid.runs), device, grid.no_stand_ins, timing, all)?);
            Ok(())
        }
        Command::Launch(LaunchCommand::Slurm(args)) => {
            let protocol = load_protocol(&cli.protocol)?;
            bench_suite::slurm::launch(&protocol, cli.protocol.as_deref(), &args)
        }
        Command::ReproduceAll { grid, data_root, mirrors, out, quiet, workers } => {
            let protocol = load_protocol(&cli.protocol)?;
            let (profile, device, shard, why) = grid.resolve(&protocol, true)?;
            println!("reproduce-all: {why} on {}", baselines::device::describe(device));
            let mut mirrors = mirrors;
            if let Ok(env) = std::env::var("GH_DATA_MIRROR") {
                mirrors.extend(env.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
            }
            let started = std::time::Instant::now();
            fetch_for_profile(&protocol, &profile, &data_root, &mirrors, quiet)?;
            let grid_result = run_grid(&protocol, &profile, &grid, device, shard, &data_root, quiet, &workers);
            // Speed from a controlled benchmark, not from the cells' wall clocks (one task per
            // dataset for profiles that need a GPU: the cost depends on the protocol, not the pair).
            let speed_result = if grid_result.is_ok() {
                let tasks = if protocol.profiles[&profile].requires_cuda { bench_suite::speed_bench::TaskSelection::FirstPerDataset } else { bench_suite::speed_bench::TaskSelection::All };
                let config = bench_suite::speed_bench::SpeedBenchConfig { profile: profile.clone(), device, data_root: data_root.clone(), drop_stand_ins: grid.no_stand_ins, tasks, rounds: 5, iterations_per_round: 10, warmup: 3 };
                bench_speed(&protocol, &config, &grid.runs, quiet)
            } else {
                Ok(())
            };
            // The report covers whatever finished, also when some cells failed.
            let report_result = write_report(&grid.runs, &profile, &out);
            println!("reproduce-all: wall time {}", runner::human_duration(started.elapsed().as_secs_f64()));
            grid_result.and(speed_result).and(report_result)
        }
    }
}
