//! `bench-suite`: runs the experiments of the reproduction suite.

use anyhow::{Context, Result};
use baselines::data::{parse_stand_in, DigitsTask, SplitStandIns};
use baselines::harmonizer::{GhppRule, Harmonizer, Method, OutsideScope};
use baselines::methods::{BackwardPath, MethodName};
use baselines::train::RunSpec;
use bench_suite::execute::{self, ProgressObserver};
use bench_suite::grid::override_config;
use bench_suite::protocol::Protocol;
use bench_suite::step_bench::{self, StepBenchConfig};
use clap::{Parser, Subcommand, ValueEnum};
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

#[derive(Clone, Copy, ValueEnum)]
enum OutsideScopeArg {
    Reweighted,
    ScopeOnly,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackwardArg {
    TwoPass,
    ThreePass,
}

#[derive(Subcommand)]
enum Command {
    /// Train and evaluate one baseline on one digits task; writes a JSON-lines run record
    RunOne {
        /// source-only, cdan, mcd, dwl or gvb
        #[arg(long)]
        method: String,
        /// none, gh or gh++
        #[arg(long, default_value = "none")]
        harmonizer: Method,
        /// GH++ trade-off α in [0, 1]
        #[arg(long, default_value_t = Harmonizer::DEFAULT_ALPHA)]
        alpha: f64,
        /// GH++ rule: released (the authors' code) or rotation
        #[arg(long, default_value = "released")]
        rule: GhppRule,
        /// Outside the scope: reweighted (as released: heads get w1/w2 too) or scope-only (a deviation)
        #[arg(long, default_value = "reweighted")]
        outside_scope: OutsideScopeArg,
        /// mnist-usps (M-U), usps-mnist (U-M) or svhn-mnist (S-M)
        #[arg(long)]
        task: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Training iterations (default: the protocol's schedule)
        #[arg(long)]
        iters: Option<u64>,
        /// Evaluate every N iterations (default: the protocol's, at most --iters)
        #[arg(long)]
        eval_every: Option<u64>,
        /// Iterations per epoch (default: the protocol's, at most --iters)
        #[arg(long)]
        iters_per_epoch: Option<u64>,
        /// Record harmonizer telemetry every k-th iteration
        #[arg(long, default_value_t = 10)]
        telemetry_every: u64,
        /// Let a split stand in for a domain's train split, e.g. usps=test (repeatable; recorded as a deviation)
        #[arg(long = "split", value_name = "DOMAIN=SPLIT")]
        splits: Vec<String>,
        /// Override a hyperparameter of the method, e.g. batch=64 or lr=0.05 (repeatable; recorded)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Where the data lives (as laid out by data-fetch)
        #[arg(long, env = "GH_DATA_ROOT", default_value = "data")]
        data_root: PathBuf,
        /// auto (CUDA if available), cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
        /// Harmonized backward: two-pass (default) or three-pass (the released code's shape)
        #[arg(long, value_enum, default_value = "two-pass")]
        backward: BackwardArg,
        /// Output folder for run.jsonl (default: runs/one/<task>-<method>-<harmonizer>-s<seed>)
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Time the plain, three-pass GH and two-pass GH training steps (LeNet digits, DANN loss)
    BenchStep {
        /// auto (CUDA if available), cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
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
    /// The main job: fetch data, run the grid, write the report
    ReproduceAll,
}

fn main() {
    // Die quietly on a closed pipe instead of panicking.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("bench-suite: error: {e:#}");
        std::process::exit(1);
    }
}

fn load_protocol(path: &Option<PathBuf>) -> Result<Protocol> {
    match path {
        Some(p) => Protocol::load(p),
        None => Protocol::embedded(),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::RunOne {
            method, harmonizer, alpha, rule, outside_scope, task, seed, iters, eval_every, iters_per_epoch, telemetry_every,
            splits, sets, data_root, device, backward, out, quiet,
        } => {
            let protocol = load_protocol(&cli.protocol)?;
            let method = MethodName::parse(&method)?;
            let task = DigitsTask::parse(&task)?;
            let mut config = protocol.method_config("digits", method, Some(&task.id()))?;
            if !sets.is_empty() {
                let mut table = toml::Table::new();
                for s in &sets {
                    let (k, v) = s.split_once('=').with_context(|| format!("--set '{s}': expected KEY=VALUE"))?;
                    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                        .map(|mut t| t.remove("v").unwrap())
                        .unwrap_or_else(|_| toml::Value::String(v.to_owned()));
                    table.insert(k.trim().to_owned(), value);
                }
                config = override_config(&config, &table).context("--set")?;
            }
            let mut schedule = protocol.schedule("digits", method)?;
            if let Some(n) = iters {
                schedule.iterations = n;
                schedule.eval_every = schedule.eval_every.min(n);
                schedule.iters_per_epoch = schedule.iters_per_epoch.min(n);
            }
            if let Some(e) = eval_every {
                schedule.eval_every = e;
            }
            if let Some(e) = iters_per_epoch {
                schedule.iters_per_epoch = e;
            }
            let mut stand_ins = SplitStandIns::new();
            for s in &splits {
                let (d, sp) = parse_stand_in(s)?;
                stand_ins.insert(d, sp);
            }
            let spec = RunSpec {
                task,
                seed,
                method: config,
                harmonizer: Harmonizer::new(harmonizer, alpha, rule)?.with_outside_scope(match outside_scope {
                    OutsideScopeArg::Reweighted => OutsideScope::Reweighted,
                    OutsideScopeArg::ScopeOnly => OutsideScope::ScopeOnly,
                }),
                schedule,
                stand_ins,
                telemetry_every,
                backward: match backward {
                    BackwardArg::TwoPass => BackwardPath::TwoPass,
                    BackwardArg::ThreePass => BackwardPath::ThreePass,
                },
            };
            spec.validate()?;
            let device = baselines::device::select(&device)?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from("runs/one").join(format!("{}-{}-{}-s{seed}", task.name(), method.name(), spec.harmonizer.label().replace(['(', ')', ',', '='], "_")))
            });
            eprintln!(
                "run-one: {} {} + {} on {} ({}), seed {seed}, {} iterations, device {}",
                method.paper_name(),
                task.short_name(),
                spec.harmonizer.label(),
                data_root.display(),
                if spec.stand_ins.is_empty() { "no stand-ins".to_owned() } else { format!("stand-ins {}", baselines::train::describe_stand_ins(&spec.stand_ins).join(", ")) },
                spec.schedule.iterations,
                baselines::device::describe(device)
            );
            let data = execute::load_data(&spec, &data_root, device)?;
            for d in baselines::train::deviations(&spec, &data) {
                eprintln!("run-one: deviation: {d}");
            }
            let mut progress = ProgressObserver::new(spec.schedule.iterations, &format!("{} {}", method.name(), spec.harmonizer.label()), !quiet);
            let (summary, path) = execute::execute(&spec, &data, &data_root, device, &out, &mut progress)?;
            progress.finish();
            println!("record: {}", path.display());
            let pct = |x: Option<f64>| x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
            if let baselines::train::RunStatus::Diverged { iteration, reason } = &summary.status {
                println!("DIVERGED at iteration {iteration}: {reason} (no accuracy is reported for this run)");
            }
            println!(
                "final target accuracy: {}   best (oracle selection): {}{}",
                pct(summary.final_accuracy),
                pct(summary.best_accuracy_oracle),
                summary.best_iteration.map(|i| format!(" at iteration {i}")).unwrap_or_default()
            );
            if !summary.final_heads.is_empty() {
                println!("heads at the end: {}", summary.final_heads.iter().map(|(k, v)| format!("{k} {:.2}%", 100.0 * v)).collect::<Vec<_>>().join(", "));
            }
            println!("training time: {:.1} s ({:.2} s per 100 steps, {:.2} s per epoch)", summary.train_seconds, summary.seconds_per_100_steps, summary.seconds_per_epoch);
            for (pair, h) in &summary.harmonization {
                let pct = |x: Option<f64>| x.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into());
                let num = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                println!(
                    "pair {pair}: {} measured steps, conflict rate {}, mean w1/w2 in conflict {}/{}, clamped {}",
                    h.measured_steps, pct(h.conflict_rate), num(h.mean_w1_in_conflict), num(h.mean_w2_in_conflict), h.clamped_steps
                );
            }
            Ok(())
        }
        Command::BenchStep { device, batch, harmonizer, alpha, rule, warmup, rounds, steps, seed } => {
            anyhow::ensure!(harmonizer != Method::None, "--harmonizer must be gh or gh++ (the plain step is always timed)");
            anyhow::ensure!(rounds > 0 && steps > 0 && batch > 0, "--rounds, --steps and --batch must be positive");
            let config = StepBenchConfig {
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
        Command::ReproduceAll => {
            println!(
                "reproduce-all: the experiment grid is not built yet. It will fetch the data \
                 (data-fetch), run baseline x {{none, GH, GH++}} x task x seed (digits-cpu profile \
                 without CUDA, paper profile with CUDA) and write tables and plots (report)."
            );
            Ok(())
        }
    }
}
