//! The one training loop every baseline runs through: seeded initialisation and data order,
//! harmonizer telemetry every k-th step, periodic evaluation on the target test split, epoch
//! timing, and a summary. What happens is reported to a [`RunObserver`] (the JSON-lines run
//! record in [`crate::record`]).

use crate::data::pipeline::Loader;
use crate::data::transform::{ImageInput, Mode};
use crate::data::{BatchSampler, DigitsFormat, ImageSet, Samples, SplitStandIns, Task, TaskData};
use crate::harmonizer::{Harmonization, HarmonizationSummary, Harmonizer};
use crate::methods::{BackwardPath, Batch, MethodConfig, Setup, StepContext, UdaMethod};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Tensor};

/// How long a run trains and how often it is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub iterations: u64,
    pub iters_per_epoch: u64,
    /// Evaluate on the target test split every this many iterations (and after the last).
    pub eval_every: u64,
}

/// Everything that determines a run's result (the device aside): the full configuration that is
/// recorded with it and, in the grid, hashed into its directory name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub task: Task,
    /// The image pipeline's transforms (image tasks only; absent for digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageInput>,
    /// Your own images read like the digits benchmarks instead (in memory, grey 28×28 for LeNet:
    /// [`crate::data::own_digits`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits_input: Option<DigitsFormat>,
    pub seed: u64,
    pub method: MethodConfig,
    pub harmonizer: Harmonizer,
    pub schedule: Schedule,
    /// Splits standing in for unavailable train splits (deviations, recorded).
    #[serde(default)]
    pub stand_ins: SplitStandIns,
    /// Record harmonizer telemetry every k-th iteration (1 = every iteration).
    pub telemetry_every: u64,
    #[serde(default)]
    pub backward: BackwardPath,
    /// How this run departs from its protocol by request (run-one's `--set`, `--iters-per-epoch`),
    /// one sentence each: recorded with the run's deviations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_deviations: Vec<String>,
}

impl RunSpec {
    pub fn validate(&self) -> Result<()> {
        let s = &self.schedule;
        if s.iterations == 0 || s.iters_per_epoch == 0 || s.eval_every == 0 || self.telemetry_every == 0 {
            bail!("iterations, iters_per_epoch, eval_every and telemetry_every must be positive");
        }
        match (&self.task, &self.images, &self.digits_input) {
            (Task::Digits(_), Some(_), _) | (Task::Digits(_), _, Some(_)) => bail!("digits tasks take no image input settings"),
            (Task::Own { .. }, None, Some(_)) => {}
            (_, Some(_), Some(_)) => bail!("a run reads its images either through the image pipeline or like the digits, not both"),
            (Task::Benchmark { .. }, _, Some(_)) => bail!("benchmark tasks are read through the image pipeline"),
            (Task::Benchmark { .. } | Task::Own { .. }, None, None) => bail!("image tasks need image input settings (resize, crop)"),
            _ => {}
        }
        // Fail before any data is read when no network fits the input.
        network(self, None)?;
        if !self.method.name().harmonizes() && self.harmonizer.method() != crate::harmonizer::Method::None {
            bail!("{} has no harmonized pair: run it with harmonizer none", self.method.name());
        }
        let warmup = self.warmup_iterations();
        if warmup >= s.iterations {
            bail!("{}", WarmupTooLong { method: self.method.name().name(), warmup, iterations: s.iterations, epochs: warmup / s.iters_per_epoch, iters_per_epoch: s.iters_per_epoch });
        }
        Ok(())
    }

    /// Iterations before the method's transfer loss (and so its harmonized pair) first trains:
    /// CDAN's source-only epochs; 0 for the others.
    pub fn warmup_iterations(&self) -> u64 {
        self.method.warmup_epochs() * self.schedule.iters_per_epoch
    }
}

/// A run that would end inside its method's warm-up: none of its steps would train the transfer
/// loss or meet the harmonizer. The message names the shortest length and the setting to change.
#[derive(Debug)]
pub struct WarmupTooLong {
    pub method: &'static str,
    pub warmup: u64,
    pub iterations: u64,
    pub epochs: u64,
    pub iters_per_epoch: u64,
}

impl std::fmt::Display for WarmupTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{m} trains the source cross-entropy alone for its first {e} epoch(s) ({w} iterations at {ipe} per epoch): \
             a run of {n} iterations ends inside that warm-up, so neither {m}'s transfer loss nor the harmonizer would ever train. \
             Run at least {min} iterations (--iters {min}; --iters {ex} gives 500 adapted steps), or shorten the warm-up \
             with --set source_only_epochs=0 (recorded as a deviation)",
            m = self.method,
            e = self.epochs,
            w = self.warmup,
            ipe = self.iters_per_epoch,
            n = self.iterations,
            min = self.warmup + 1,
            ex = self.warmup + 500,
        )
    }
}

/// A seed derived from the task, the run's seed and a purpose only: never from the method or the
/// harmonizer, so that none / GH / GH++ runs of one seed share initialisation and data order.
pub fn derive_seed(task: &Task, seed: u64, purpose: &str) -> u64 {
    let digest = Sha256::digest(format!("{}|{seed}|{purpose}", task.name()).as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap())
}

/// Receives what happens during a run.
pub trait RunObserver {
    fn telemetry(&mut self, _iteration: u64, _records: &[(String, Harmonization)], _losses: &[(String, f64)]) -> Result<()> {
        Ok(())
    }
    fn epoch(&mut self, _epoch: u64, _iteration: u64, _train_seconds: f64, _extra: &[(String, f64)]) -> Result<()> {
        Ok(())
    }
    fn evaluation(&mut self, _eval: &Evaluation) -> Result<()> {
        Ok(())
    }
    /// Called after every iteration (progress bars).
    fn progress(&mut self, _iteration: u64) {}
    /// Checked after every iteration: a reason stops the run with a [`RunStopped`] error (a grid
    /// worker told to stop, or one that lost its cell to another worker).
    fn stop_requested(&self) -> Option<String> {
        None
    }
}

/// The error of a run stopped from outside (see [`RunObserver::stop_requested`]): not a failure of
/// the run, which is left to be run again.
#[derive(Debug, thiserror::Error)]
#[error("stopped at iteration {iteration}: {reason}")]
pub struct RunStopped {
    pub iteration: u64,
    pub reason: String,
}

/// Observer that ignores everything.
pub struct NoObserver;
impl RunObserver for NoObserver {}

pub use record_schema::{Evaluation, PairSummary, PhaseSeconds, RunStatus, RunSummary, Trained};

fn pair_summary(steps: &crate::methods::PairSteps, s: &HarmonizationSummary) -> PairSummary {
    let w = s.mean_weights_in_conflict();
    PairSummary {
        formed_steps: steps.formed,
        reweighted_steps: steps.reweighted,
        measured_steps: s.measured_steps,
        conflict_rate: s.conflict_rate(),
        mean_w1_in_conflict: w.map(|w| w.0),
        mean_w2_in_conflict: w.map(|w| w.1),
        mean_cos: (s.measured_steps > 0).then(|| s.sum_cos / s.measured_steps as f64),
        clamped_steps: s.clamps,
    }
}

/// What a run trained, from the pairs it formed (see [`Trained`]).
pub fn judge_trained(spec: &RunSpec, pairs: &BTreeMap<String, PairSummary>) -> Trained {
    if !spec.method.name().harmonizes() || pairs.values().any(|p| p.formed_steps > 0) {
        Trained::AsAsked
    } else if spec.harmonizer.method() == crate::harmonizer::Method::None {
        Trained::NotAdapted
    } else {
        Trained::NotHarmonized
    }
}

/// A run's training state: the method with its networks and optimisers, the two training streams
/// and the step context. `run` steps it through a schedule; `bench-speed` times its steps.
pub struct Trainer<'a> {
    pub method: Box<dyn UdaMethod>,
    source_order: Stream<'a>,
    target_order: Stream<'a>,
    pub ctx: StepContext,
}

impl<'a> Trainer<'a> {
    /// Builds the spec's networks (seeded from the spec) and its data streams over `data`.
    pub fn new(spec: &RunSpec, data: &'a TaskData, device: Device) -> Result<Trainer<'a>> {
        spec.validate()?;
        let network = network(spec, data.weights_root.as_deref())?;
        let (weights, dataset) = match &network {
            crate::networks::Network::Image { weights, backbone } => (weights.as_ref(), backbone.network.name()),
            crate::networks::Network::Vit { weights, backbone } => (weights.as_ref(), backbone.weights.dataset()),
            crate::networks::Network::Digits(_) => (None, ""),
        };
        if let Some(path) = weights.filter(|p| !p.is_file()) {
            bail!("the ImageNet weights {} are missing: fetch them with `data-fetch fetch {dataset}` (same data root)", path.display());
        }
        if device.is_cuda() && crate::numerics::Numerics::allows_cudnn_benchmark() {
            // Fixed input sizes: let cuDNN pick the fastest convolution algorithms once (not in
            // deterministic mode, where its choice could vary between runs).
            tch::Cuda::cudnn_set_benchmark(true);
        }
        tch::manual_seed(derive_seed(&spec.task, spec.seed, "init") as i64);
        let setup = Setup {
            device,
            network,
            classes: data.classes,
            source_digits: spec.task.digits().map(|t| t.source),
            iters_per_epoch: spec.schedule.iters_per_epoch,
            dropout: crate::networks::Dropout::On,
        };
        let method: Box<dyn UdaMethod> = spec.method.build(&setup)?;
        let batch = spec.method.batch();
        let images = spec.images.as_ref();
        Ok(Trainer {
            method,
            source_order: Stream::train(&data.source_train, batch, derive_seed(&spec.task, spec.seed, "source-order"), images.map(|i| i.source_crop), device),
            target_order: Stream::train(&data.target_train, batch, derive_seed(&spec.task, spec.seed, "target-order"), images.map(|i| i.target_crop), device),
            ctx: StepContext::new(spec.harmonizer, spec.backward),
        })
    }

    /// One training iteration (all of the method's optimiser steps) on the next two batches;
    /// `measure` records the step's telemetry. Queues device work without waiting for it.
    pub fn step(&mut self, iteration: u64, measure: bool) -> Result<()> {
        let batch = self.next_batch()?;
        self.train_on(&batch, iteration, measure)
    }

    /// The next source and target batches of the two training streams.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let (source, labels) = self.source_order.next()?;
        let (target, _) = self.target_order.next()?;
        Ok(Batch { source, labels, target })
    }

    /// One training iteration on `batch`.
    pub fn train_on(&mut self, batch: &Batch, iteration: u64, measure: bool) -> Result<()> {
        train_step(self.method.as_mut(), &mut self.ctx, batch, iteration, measure)
    }
}

/// One training iteration of `method` on `batch` (the loop's, and the benchmarks'): its forward
/// passes under bf16 autocast when the process asked for `--precision bf16` (its backward passes
/// suspend it: see `numerics`).
pub fn train_step(method: &mut dyn UdaMethod, ctx: &mut StepContext, batch: &Batch, iteration: u64, measure: bool) -> Result<()> {
    ctx.begin(iteration, measure);
    let _autocast = crate::numerics::AutocastScope::for_forward(batch.source.device())?;
    method.train_step(ctx, batch)
}

/// Adds the seconds since `*clock` to `*phase` and restarts the clock.
fn lap(clock: &mut Instant, phase: &mut f64) {
    let now = Instant::now();
    *phase += (now - *clock).as_secs_f64();
    *clock = now;
}

/// Trains `spec` on `data` and evaluates it.
pub fn run(spec: &RunSpec, data: &TaskData, device: Device, observer: &mut dyn RunObserver) -> Result<RunSummary> {
    let classes = data.classes;
    let mut phases = PhaseSeconds::default();
    let mut clock = Instant::now();
    let mut trainer = Trainer::new(spec, data, device)?;
    lap(&mut clock, &mut phases.setup);
    let images = spec.images.as_ref();
    // Samples for DWL's per-epoch statistics (started when first needed).
    let mut stats_order: Option<(Stream, Stream)> = None;

    let mut evaluations: Vec<Evaluation> = Vec::new();
    let mut train_seconds = 0.0;
    let mut epoch_seconds = Vec::new();
    let mut epoch_clock = 0.0;
    let mut status = RunStatus::Completed;
    let mut trained = 0;
    // The last iteration whose device-side finiteness flag was read.
    let mut checked = 0;
    let s = &spec.schedule;
    for it in 0..s.iterations {
        let started = Instant::now();
        clock = started;
        let measure = it % spec.telemetry_every == 0;
        let batch = trainer.next_batch()?;
        lap(&mut clock, &mut phases.data);
        trainer.train_on(&batch, it, measure)?;
        if measure {
            lap(&mut clock, &mut phases.measured_step);
            phases.measured_iterations += 1;
            observer.telemetry(it, &trainer.ctx.records, &trainer.ctx.losses)?;
            let diverged = non_finite(&trainer.ctx);
            lap(&mut clock, &mut phases.telemetry);
            if let Some(reason) = diverged {
                status = RunStatus::Diverged { iteration: it, reason };
                break;
            }
        } else {
            lap(&mut clock, &mut phases.step);
        }
        let done = it + 1;
        // Wait for the device only where a clock is read (epoch ends, evaluations, the end): on
        // CUDA a step then queues its work without a host round trip (telemetry steps aside).
        if done % s.iters_per_epoch == 0 || done % s.eval_every == 0 || done == s.iterations {
            crate::device::synchronize(device);
            if !trainer.ctx.take_finite() {
                status = RunStatus::Diverged { iteration: done, reason: format!("a harmonized loss became non-finite after iteration {checked} (seen at the device check of iteration {done})") };
                break;
            }
            checked = done;
            lap(&mut clock, &mut phases.device_wait);
        }
        phases.iterations = done;
        let elapsed = started.elapsed().as_secs_f64();
        train_seconds += elapsed;
        epoch_clock += elapsed;
        trained = done;
        if done % s.iters_per_epoch == 0 {
            let epoch = done / s.iters_per_epoch;
            // Up to 1000 source and target samples for methods with per-epoch statistics (DWL).
            let extra = if trainer.method.needs_epoch_samples() {
                let stats = stats_order.get_or_insert_with(|| {
                    let n = |set: &Samples| 1000.min(set.len()).max(1);
                    (
                        Stream::train(&data.source_train, n(&data.source_train), derive_seed(&spec.task, spec.seed, "stats"), images.map(|i| i.source_crop), device),
                        Stream::train(&data.target_train, n(&data.target_train), derive_seed(&spec.task, spec.seed, "stats-target"), images.map(|i| i.target_crop), device),
                    )
                });
                let (xs, ys) = stats.0.next()?;
                let (xt, _) = stats.1.next()?;
                let _autocast = crate::numerics::AutocastScope::for_forward(device)?;
                trainer.method.end_epoch((&xs, &ys), &xt)?
            } else {
                Vec::new()
            };
            observer.epoch(epoch, done, epoch_clock, &extra)?;
            epoch_seconds.push(epoch_clock);
            epoch_clock = 0.0;
            lap(&mut clock, &mut phases.epoch_end);
        }
        if done % s.eval_every == 0 || done == s.iterations {
            let scores = match evaluate_samples(trainer.method.as_ref(), &data.target_test, classes, device)? {
                Ok(h) => h,
                Err(reason) => {
                    status = RunStatus::Diverged { iteration: done, reason };
                    break;
                }
            };
            let eval = scores.into_evaluation(done, done as f64 / s.iters_per_epoch as f64);
            observer.evaluation(&eval)?;
            evaluations.push(eval);
            lap(&mut clock, &mut phases.evaluation);
        }
        observer.progress(done);
        if let Some(reason) = observer.stop_requested() {
            return Err(RunStopped { iteration: done, reason }.into());
        }
        lap(&mut clock, &mut phases.other);
    }
    let harmonization: BTreeMap<String, PairSummary> =
        trainer.ctx.summaries()?.into_iter().map(|(k, (summary, steps))| (k, pair_summary(&steps, &summary))).collect();
    let completed = status == RunStatus::Completed;
    let last = evaluations.last().filter(|_| completed);
    let best = evaluations.iter().filter(|_| completed).max_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
    let seconds_per_epoch = if epoch_seconds.is_empty() {
        train_seconds / trained.max(1) as f64 * s.iters_per_epoch as f64
    } else {
        epoch_seconds.iter().sum::<f64>() / epoch_seconds.len() as f64
    };
    Ok(RunSummary {
        status,
        iterations: trained,
        final_accuracy: last.map(|e| e.accuracy),
        final_mean_class_accuracy: last.and_then(|e| e.mean_class_accuracy),
        final_heads: last.map(|e| e.heads.clone()).unwrap_or_default(),
        best_accuracy_oracle: best.map(|e| e.accuracy),
        best_iteration: best.map(|e| e.iteration),
        train_seconds,
        seconds_per_epoch,
        seconds_per_100_steps: train_seconds / trained.max(1) as f64 * 100.0,
        trained: judge_trained(spec, &harmonization),
        harmonization,
        phases,
    })
}

/// The feature extractor a spec trains, in words (run-one's plan): which rule picked it and why.
pub fn describe_network(spec: &RunSpec) -> Result<String> {
    use crate::networks::Network;
    let network = network(spec, None)?;
    if let Some(own) = spec.method.describe_network(&network) {
        return Ok(own);
    }
    Ok(match network {
        Network::Digits(DigitsFormat::Grey28) => "LeNet, 28×28 grey".to_owned(),
        Network::Digits(DigitsFormat::Rgb32) => "DTN, 32×32 RGB".to_owned(),
        Network::Image { backbone, .. } => format!(
            "{} ({}) + the protocol's heads",
            backbone.network.name(),
            if backbone.pretrained { "ImageNet-1K weights" } else { "random initialisation" }
        ),
        Network::Vit { backbone, .. } => format!(
            "ViT (side {}, patch {}, depth {}, {}) + SSRT's heads",
            backbone.config.image,
            backbone.config.patch,
            backbone.config.depth,
            if backbone.pretrained { format!("{} weights", backbone.weights.dataset()) } else { "random initialisation".to_owned() }
        ),
    })
}

/// The network of a run: a ResNet where the method's configuration names one (image protocols;
/// its ImageNet weights under `weights_root` when pretrained); otherwise the digits task's network,
/// or the DTN on 32×32 crops of an image task (your own data at a small size).
fn network(spec: &RunSpec, weights_root: Option<&std::path::Path>) -> Result<crate::networks::Network> {
    use crate::networks::Network;
    if let Some(backbone) = spec.method.vit_backbone() {
        match &spec.images {
            Some(input) if i64::from(input.crop) == backbone.config.image => {}
            Some(input) => bail!(
                "the ViT takes {s}×{s} images; this run's crop is {c}×{c} (--image-size .../{s})",
                s = backbone.config.image,
                c = input.crop
            ),
            // Digits (SSRT's digits protocol, ours): the model resizes them to the ViT's input.
            None => {}
        }
        let weights = backbone.pretrained.then(|| weights_root.map(|r| backbone.weights.file(r))).flatten();
        return Ok(Network::Vit { backbone, weights });
    }
    if let Some(backbone) = spec.method.image_backbone() {
        if spec.images.is_none() {
            bail!("the {} backbone takes image tasks (this run's task is {})", backbone.network.name(), spec.task.name());
        }
        let weights = backbone.pretrained.then(|| weights_root.map(|r| backbone.network.imagenet_weights(r))).flatten();
        return Ok(Network::Image { backbone, weights });
    }
    if let Some(format) = spec.digits_input {
        return Ok(Network::Digits(format));
    }
    match (&spec.task, &spec.images) {
        (Task::Digits(t), _) => Ok(Network::Digits(t.format())),
        (_, Some(input)) if input.crop == 32 => Ok(Network::Digits(DigitsFormat::Rgb32)),
        (_, Some(input)) => bail!(
            "{c}×{c} images need a ResNet backbone: this {} configuration has none (the image protocols of \
             protocol.toml set `backbone = {{ network = \"resnet50\", pretrained = true }}`). Or train the DTN on \
             32×32 crops, e.g. --image-size 36/32, or LeNet on whole 28×28 grey images, --image-size 28",
            spec.method.name(),
            c = input.crop
        ),
        (_, None) => bail!("image tasks need image input settings"),
    }
}

/// Batches of one training set: sampled from device memory, or read by the image pipeline.
enum Stream<'a> {
    Memory(BatchSampler, &'a ImageSet),
    Files(Loader),
}

impl<'a> Stream<'a> {
    fn train(samples: &'a Samples, batch: usize, seed: u64, crop: Option<crate::data::transform::TrainCrop>, device: Device) -> Stream<'a> {
        match samples {
            Samples::InMemory(set) => Stream::Memory(BatchSampler::new(set.len() as usize, batch, seed), set),
            Samples::Files(files) => {
                let crop = crop.unwrap_or(crate::data::transform::TrainCrop::RandomCrop);
                Stream::Files(files.train_stream(batch, seed, Mode::Train(crop), device))
            }
        }
    }

    fn next(&mut self) -> Result<(Tensor, Tensor)> {
        match self {
            Stream::Memory(sampler, set) => Ok(sampler.next_batch(set)),
            Stream::Files(loader) => loader.next_batch()?.ok_or_else(|| anyhow::anyhow!("the training stream ended")),
        }
    }
}

/// Per-head correct counts on a test set, overall and per class.
pub struct HeadScores {
    /// head → (correct per class, total per class).
    per_class: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

impl HeadScores {
    /// Overall accuracy of each head.
    pub fn accuracy(&self) -> BTreeMap<String, f64> {
        self.per_class.iter().map(|(h, (c, n))| (h.clone(), c.iter().sum::<f64>() / n.iter().sum::<f64>().max(1.0))).collect()
    }

    /// Mean over the classes present of each head's per-class accuracy.
    pub fn mean_class_accuracy(&self) -> BTreeMap<String, f64> {
        self.per_class
            .iter()
            .map(|(h, (c, n))| {
                let recalls: Vec<f64> = c.iter().zip(n).filter(|(_, &n)| n > 0.0).map(|(c, n)| c / n).collect();
                (h.clone(), recalls.iter().sum::<f64>() / recalls.len().max(1) as f64)
            })
            .collect()
    }

    fn into_evaluation(self, iteration: u64, epoch: f64) -> Evaluation {
        let heads = self.accuracy();
        let heads_mean_class = self.mean_class_accuracy();
        let best = heads.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(h, _)| h.clone());
        let accuracy = heads.values().cloned().fold(f64::NAN, f64::max);
        let mean_class_accuracy = best.and_then(|h| heads_mean_class.get(&h).copied());
        Evaluation { iteration, epoch, heads, accuracy, heads_mean_class, mean_class_accuracy }
    }
}

/// Scores of every head on a test set of `classes` classes (digits in chunks of 1000 from device
/// memory, images in chunks of 200 through the pipeline); `Ok(Err(reason))` when a head's scores
/// are not finite.
pub fn evaluate_samples(method: &dyn UdaMethod, samples: &Samples, classes: i64, device: Device) -> Result<std::result::Result<HeadScores, String>> {
    match samples {
        Samples::InMemory(set) => {
            let (n, mut start) = (set.len(), 0);
            accumulate_heads(method, classes, || {
                if start >= n {
                    return Ok(None);
                }
                let len = 1000.min(n - start);
                let batch = (set.images.narrow(0, start, len), set.labels.narrow(0, start, len));
                start += len;
                Ok(Some(batch))
            })
        }
        Samples::Files(files) => {
            let mut loader = files.eval_stream(200, device);
            accumulate_heads(method, classes, || loader.next_batch())
        }
    }
}

/// Each head's per-class counts over the batches `next` yields (kept on the device until the end).
fn accumulate_heads(
    method: &dyn UdaMethod,
    classes: i64,
    mut next: impl FnMut() -> Result<Option<(Tensor, Tensor)>>,
) -> Result<std::result::Result<HeadScores, String>> {
    let mut correct: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut totals: Option<Tensor> = None;
    while let Some((x, y)) = next()? {
        let y = y.to_kind(tch::Kind::Int64);
        let heads = {
            let _autocast = crate::numerics::AutocastScope::for_forward(x.device())?;
            method.eval_heads(&x)
        };
        for (head, scores) in heads {
            if !bool::try_from(scores.isfinite().all()).unwrap_or(false) {
                return Ok(Err(format!("head '{head}' outputs non-finite scores")));
            }
            let hits = scores.argmax(1, false).eq_tensor(&y).to_kind(tch::Kind::Float);
            let per_class = Tensor::zeros([classes], (tch::Kind::Float, y.device())).index_add(0, &y, &hits);
            match correct.get_mut(&head) {
                Some(c) => *c += per_class,
                None => {
                    correct.insert(head, per_class);
                }
            }
        }
        let counts = Tensor::zeros([classes], (tch::Kind::Float, y.device())).index_add(0, &y, &y.ones_like().to_kind(tch::Kind::Float));
        totals = Some(match totals {
            Some(t) => t + counts,
            None => counts,
        });
    }
    let totals: Vec<f64> = match totals {
        Some(t) => Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).to_device(Device::Cpu))?,
        None => vec![0.0; classes.max(0) as usize],
    };
    let mut per_class = BTreeMap::new();
    for (head, c) in correct {
        per_class.insert(head, (Vec::<f64>::try_from(c.to_kind(tch::Kind::Double).to_device(Device::Cpu))?, totals.clone()));
    }
    Ok(Ok(HeadScores { per_class }))
}

/// Why this step's measurements show divergence, if they do.
fn non_finite(ctx: &StepContext) -> Option<String> {
    if let Some((name, v)) = ctx.losses.iter().find(|(_, v)| !v.is_finite()) {
        return Some(format!("loss '{name}' is {v}"));
    }
    ctx.records
        .iter()
        .find(|(_, h)| !(h.w1.is_finite() && h.w2.is_finite() && h.d.is_finite()))
        .map(|(pair, h)| format!("pair '{pair}': d = {}, w1 = {}, w2 = {}", h.d, h.w1, h.w2))
}

/// Sentence per deviation of this run from the paper's protocol, recorded with it.
pub fn deviations(spec: &RunSpec, data: &TaskData) -> Vec<String> {
    let mut out = data.deviations.clone();
    out.extend(spec_deviations(spec));
    out
}

/// The deviations a spec states by itself (those of its data aside: stand-ins, files left out).
pub fn spec_deviations(spec: &RunSpec) -> Vec<String> {
    let mut out = spec.requested_deviations.clone();
    if let (Task::Benchmark { .. }, Some(input)) = (&spec.task, &spec.images) {
        if (input.resize, input.crop) != (ImageInput::PAPER.resize, ImageInput::PAPER.crop) {
            out.push(format!("images resized to {} and cropped to {} (paper protocol: 256 and 224)", input.resize, input.crop));
        }
    }
    if spec.harmonizer.method() == crate::harmonizer::Method::GhPlusPlus && spec.harmonizer.rule() != crate::harmonizer::GhppRule::Released {
        out.push(format!("GH++ uses the {} rule, not the released one", spec.harmonizer.rule().name()));
    }
    out.extend(spec.method.deviations(&spec.task));
    out
}

/// The stand-ins as `domain=split` strings (for logs).
pub fn describe_stand_ins(stand_ins: &SplitStandIns) -> Vec<String> {
    stand_ins.iter().map(|(d, s)| format!("{}={}", d.name(), s.name())).collect()
}
