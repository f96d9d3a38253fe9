//! The command line of `bench-suite`: clap definitions and the resolution of grid flags. The
//! library's own types (harmonizer, rule, backward path, numerics) are parsed directly, never
//! copied into CLI-only enums.

use anyhow::{Context, Result};
use baselines::harmonizer::{GhppRule, Harmonizer, Method};
use bench_suite::protocol::Protocol;
use bench_suite::runner;
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
pub(crate) struct Cli {
    /// Protocol file (default: the built-in bench-suite/protocol.toml)
    #[arg(long, global = true)]
    pub(crate) protocol: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        #[command(flatten)]
        numerics: bench_suite::numerics_args::NumericsArgs,
    },
    /// Time whole training iterations of the baselines' protocols (their real steps, random
    /// weights and random inputs: no data needed); digits compares with a cell's time split
    BenchIteration {
        /// auto (CUDA if available), cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
        /// Whose protocol: office31, officehome (ResNet-50), visda2017, domainnet (ResNet-101), or
        /// digits (LeNet on M→U, the dataset's first task)
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
        #[command(flatten)]
        numerics: bench_suite::numerics_args::NumericsArgs,
    },
    /// List a profile's cells: which are done, which are pending, estimated cost
    Plan {
        #[command(flatten)]
        grid: GridArgs,
    },
    /// Run a profile's pending cells (resumable: done cells are skipped, interrupted ones restarted).
    /// Any number of runs may share one runs folder, on one machine or many (NFS included): each
    /// leases a cell before training it, so none trains twice. SIGTERM / Ctrl-C stop the cell in
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
    /// heartbeat), stale leases, failed (with the error), pending
    Status {
        #[command(flatten)]
        grid: GridArgs,
        /// A lease whose heartbeat is older than this counts as stale (seconds; as for `run`)
        #[arg(long, alias = "claim-timeout", default_value_t = 300.0)]
        lease_timeout: f64,
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
pub(crate) struct WorkerArgs {
    /// Worker processes on this machine, each leasing cells until none is pending (with --gpus:
    /// workers per GPU, e.g. 4 for the small digits networks)
    #[arg(long)]
    pub(crate) workers: Option<usize>,
    /// One worker per GPU: all, or CUDA device indices such as 0,1,3 (each worker sees only its GPU)
    #[arg(long, value_name = "all|LIST")]
    pub(crate) gpus: Option<String>,
    /// CPU threads of this worker (libtorch and image decoding). Default: all cores, or the cores
    /// divided among the workers of --workers / --gpus
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Seconds without a heartbeat after which another worker takes a cell's lease over (a dead
    /// worker on this host is noticed at once). Older builds called it --claim-timeout, which
    /// still works
    #[arg(long, alias = "claim-timeout", default_value_t = 300.0)]
    pub(crate) lease_timeout: f64,
    /// Seconds between a worker's heartbeats on its lease
    #[arg(long, default_value_t = 15.0)]
    pub(crate) heartbeat: f64,
    /// Progress as JSON lines on stdout (for the process that started this worker)
    #[arg(long, hide = true)]
    pub(crate) events: bool,
    #[command(flatten)]
    pub(crate) numerics: bench_suite::numerics_args::NumericsArgs,
}

impl WorkerArgs {
    pub(crate) fn timing(&self) -> Result<bench_suite::lease::LeaseTiming> {
        anyhow::ensure!(
            self.heartbeat > 0.0 && self.lease_timeout > 2.0 * self.heartbeat,
            "--lease-timeout ({} s) must exceed twice --heartbeat ({} s), or live workers would lose their cells",
            self.lease_timeout,
            self.heartbeat
        );
        Ok(bench_suite::lease::LeaseTiming { heartbeat: std::time::Duration::from_secs_f64(self.heartbeat), timeout: std::time::Duration::from_secs_f64(self.lease_timeout) })
    }
}

#[derive(Subcommand)]
pub(crate) enum LaunchCommand {
    /// Submit a Slurm job array whose tasks run workers that lease the profile's pending cells
    /// until none is left or their time is nearly up; run again to submit only what is still
    /// pending. The sbatch script comes from a template file (bench-suite/templates/slurm-array.sbatch)
    Slurm(bench_suite::slurm::SlurmArgs),
}

#[derive(clap::Args)]
pub(crate) struct GridArgs {
    /// Profile of the protocol file (default: paper with CUDA, digits-cpu without)
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Folder of the grid's cells and profile manifests
    #[arg(long, env = "GH_RUNS", default_value = "runs")]
    pub(crate) runs: PathBuf,
    /// Run only cells k with k mod n = i - 1 (i/n, 1 <= i <= n), e.g. 2/4
    #[arg(long)]
    pub(crate) shard: Option<String>,
    /// auto (CUDA if available), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    /// Ignore the profile's split stand-ins (use the real train splits; they must be fetched)
    #[arg(long)]
    pub(crate) no_stand_ins: bool,
}

impl GridArgs {
    /// (profile, device, shard, why the profile was chosen)
    pub(crate) fn resolve(&self, protocol: &Protocol, will_run: bool) -> Result<(String, tch::Device, Option<(usize, usize)>, String)> {
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
