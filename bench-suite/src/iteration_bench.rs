//! Times whole training iterations of a baseline's protocol (images, or digits with LeNet / DTN): the baseline's own
//! `train_step` (all its optimiser steps: MCD's three, DWL's nineteen), with its networks, heads,
//! parameter groups and harmonized pairs, on random images of the protocol's batch size. The
//! networks are randomly initialised (the cost depends on neither weights nor pixel values), so no
//! data or weight files are needed. Digits cells' `time_split.md` (the report) compares with this.

use crate::protocol::Protocol;
use anyhow::{bail, Result};
use baselines::harmonizer::Harmonizer;
use baselines::methods::{BackwardPath, Batch, MethodName, Setup, StepContext};
use baselines::networks::{Dropout, Network};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug)]
pub struct IterationBenchConfig {
    pub device: Device,
    pub dataset: String,
    pub baselines: Vec<MethodName>,
    pub harmonizers: Vec<Harmonizer>,
    /// Images per domain (default: the protocol's batch).
    pub batch: Option<usize>,
    pub image_side: i64,
    /// Untimed iterations before the timed ones.
    pub warmup: usize,
    pub iterations: usize,
}

#[derive(Clone, Debug)]
pub struct IterationTiming {
    pub baseline: MethodName,
    pub harmonizer: String,
    pub backbone: String,
    pub batch: usize,
    /// One input's shape: 3x224x224, 1x28x28, ...
    pub input: String,
    /// Seconds of each timed iteration.
    pub seconds: Vec<f64>,
}

/// The protocol's configuration of `baseline` on `dataset` (its first task), unpretrained, with
/// the network it builds and that network's name.
fn config(protocol: &Protocol, dataset: &str, baseline: MethodName) -> Result<(baselines::methods::MethodConfig, Network, String)> {
    let entry = protocol.datasets.get(dataset).ok_or_else(|| anyhow::anyhow!("unknown dataset '{dataset}'"))?;
    let task = entry.tasks.first().ok_or_else(|| anyhow::anyhow!("{dataset} has no tasks"))?;
    let config = protocol.method_config(dataset, baseline, Some(task))?;
    let mut table = toml::Table::try_from(&config)?;
    let (network, name) = if let Some(mut vit) = config.vit_backbone() {
        vit.pretrained = false;
        table.insert("vit".into(), toml::Value::try_from(vit)?);
        (Network::Vit { backbone: vit, weights: None }, "vit-b16".to_owned())
    } else if let Some(mut backbone) = config.image_backbone() {
        backbone.pretrained = false;
        table.insert("backbone".into(), toml::Value::try_from(backbone)?);
        (Network::Image { backbone, weights: None }, backbone.network.name().to_owned())
    } else if let Some(digits) = baselines::data::Task::for_protocol(dataset, task)?.digits() {
        // LeNet or DTN, as a digits cell of this task builds it.
        let format = digits.format();
        (Network::Digits(format), if format == baselines::data::DigitsFormat::Grey28 { "lenet" } else { "dtn" }.to_owned())
    } else {
        bail!("{} on {dataset} has no image protocol (no ResNet or ViT backbone in the protocol file)", baseline.name());
    };
    Ok((toml::Value::Table(table).try_into()?, network, name))
}

/// The epoch length the benchmark's methods are built with (only warm-ups and per-epoch
/// schedules read it).
const ITERS_PER_EPOCH: u64 = 1_000_000;

pub fn run(protocol: &Protocol, c: &IterationBenchConfig) -> Result<Vec<IterationTiming>> {
    if c.iterations == 0 {
        bail!("--iterations must be positive");
    }
    let task = baselines::data::Task::for_protocol(&c.dataset, &protocol.datasets[&c.dataset].tasks[0])?;
    let classes = task.known_classes().unwrap_or(10);
    // Digits: the task's own input format (its image side), whatever --image-side says.
    let (channels, side) = match task.digits() {
        Some(d) => (d.format().channels(), d.format().side()),
        None => (3, c.image_side),
    };
    let mut out = Vec::new();
    for &baseline in &c.baselines {
        let (method_config, network, backbone) = config(protocol, &c.dataset, baseline)?;
        let batch = c.batch.unwrap_or(method_config.batch());
        for &harmonizer in &c.harmonizers {
            tch::manual_seed(0);
            let setup = Setup {
                device: c.device,
                network: network.clone(),
                classes,
                source_digits: task.digits().map(|d| d.source),
                iters_per_epoch: ITERS_PER_EPOCH,
                dropout: Dropout::On,
            };
            // Time the steps a cell trains after its warm-up (digits CDAN's first epoch is
            // source-only: neither its transfer loss nor the harmonizer would run).
            let first = method_config.warmup_epochs() * ITERS_PER_EPOCH;
            let mut method = method_config.build(&setup)?;
            let mut ctx = StepContext::new(harmonizer, BackwardPath::TwoPass);
            let opts = (Kind::Float, c.device);
            let shape = [batch as i64, channels, side, side];
            let mut seconds = Vec::new();
            for it in 0..(c.warmup + c.iterations) {
                let batch = Batch {
                    source: Tensor::randn(shape, opts),
                    labels: Tensor::randint(classes, [batch as i64], (Kind::Int64, c.device)),
                    target: Tensor::randn(shape, opts),
                };
                baselines::device::synchronize(c.device);
                let started = Instant::now();
                baselines::train::train_step(method.as_mut(), &mut ctx, &batch, first + it as u64, false)?;
                baselines::device::synchronize(c.device);
                if it >= c.warmup {
                    seconds.push(started.elapsed().as_secs_f64());
                }
            }
            if baseline.harmonizes() {
                let formed = ctx.summaries()?.values().map(|(_, steps)| steps.formed).max().unwrap_or(0);
                anyhow::ensure!(
                    formed == (c.warmup + c.iterations) as u64,
                    "{} {}: {formed} of {} timed steps formed the harmonized pair; the timing would not be of the adapted step",
                    baseline.name(),
                    harmonizer.label(),
                    c.warmup + c.iterations
                );
            }
            out.push(IterationTiming { baseline, harmonizer: harmonizer.label(), backbone: backbone.clone(), batch, input: format!("{channels}x{side}x{side}"), seconds });
        }
    }
    Ok(out)
}

pub fn render(c: &IterationBenchConfig, timings: &[IterationTiming]) -> String {
    let mut s = format!(
        "bench-iteration: {} protocol, random {} inputs, {} warm-up + {} timed iteration(s) each (no telemetry), on {}, {} precision\n\n",
        c.dataset,
        timings.first().map(|t| t.input.as_str()).unwrap_or("-"),
        c.warmup,
        c.iterations,
        baselines::device::describe(c.device),
        baselines::numerics::asked().precision.name()
    );
    s.push_str(&format!("{:<9} {:<10} {:<10} {:>11} {:>13} {:>13}\n", "baseline", "harmonizer", "backbone", "batch", "median ms/it", "min ms/it"));
    for t in timings {
        let mut v = t.seconds.clone();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        s.push_str(&format!("{:<9} {:<10} {:<10} {:>11} {:>13.1} {:>13.1}\n", t.baseline.name(), t.harmonizer, t.backbone, format!("{}+{}", t.batch, t.batch), 1000.0 * median, 1000.0 * v[0]));
    }
    s
}
