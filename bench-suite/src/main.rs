//! `bench-suite`: runs the experiments of the reproduction suite.

use anyhow::Result;
use baselines::harmonizer::{GhppRule, Harmonizer, Method};
use bench_suite::protocol::Protocol;
use bench_suite::runner::{self, Runs};
use bench_suite::step_bench::{self, StepBenchConfig};
use clap::Parser;
use std::path::PathBuf;

mod cli;
mod grid_commands;
mod signals;

use cli::{Cli, Command, LaunchCommand};
use grid_commands::{bench_speed, fetch_for_profile, run_grid, write_report};
use signals::StoppedBySignal;

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
        Command::BenchIteration { device, dataset, baselines: names, harmonizers, batch, image_side, warmup, iterations, numerics } => {
            let protocol = load_protocol(&cli.protocol)?;
            numerics.apply()?;
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
        Command::BenchSpeed { grid, data_root, tasks, rounds, iterations, warmup, quiet, numerics } => {
            let protocol = load_protocol(&cli.protocol)?;
            numerics.apply()?;
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
        Command::Status { grid, lease_timeout, all } => {
            let protocol = load_protocol(&cli.protocol)?;
            let (profile, device, _, _) = grid.resolve(&protocol, false)?;
            let timing = bench_suite::lease::LeaseTiming { timeout: std::time::Duration::from_secs_f64(lease_timeout), ..Default::default() };
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
