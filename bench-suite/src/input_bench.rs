//! `bench-suite bench-input`: training-transform images per second per core of this pipeline
//! (decoding every time, and from the decoded cache) against torchvision's ImageFolder + PIL
//! DataLoader on the same JPEGs with the same transform, batch and worker count
//! (tools/bench_input_torchvision.py, run with the project venv).

use anyhow::{bail, Context, Result};
use baselines::data::decoded_cache::CacheMode;
use baselines::data::image_task::{load_image_task, LoadOptions};
use baselines::data::pipeline::{HostOutput, PipelineOptions};
use baselines::data::transform::{ImageInput, Mode, TrainCrop};
use baselines::data::{Samples, Task};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub struct InputBenchConfig {
    pub dir: PathBuf,
    pub python: PathBuf,
    pub workers: usize,
    pub batch: usize,
    pub batches: usize,
    pub per_size: usize,
    /// Interleaved rounds; the table shows medians.
    pub rounds: usize,
}

/// Medians over the rounds (images per second), and each round's ratios to torchvision.
pub struct InputBenchResult {
    pub images: usize,
    pub rounds: Vec<[f64; 5]>,
    /// Batches ready for the device (uint8, normalised there), decoding every image.
    pub ours_decode: f64,
    pub ours_cache: f64,
    /// Float batches normalised by the decoding workers (what CPU training gets).
    pub ours_decode_normalised: f64,
    pub ours_cache_normalised: f64,
    pub torchvision: f64,
    /// Peak resident memory of this process while the pipeline ran (decoding every time), and its
    /// resident memory before (libtorch loaded), in MiB.
    pub peak_rss_mib: f64,
    pub base_rss_mib: f64,
}

fn status_kib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

fn python(config: &InputBenchConfig, args: &[&str]) -> Result<String> {
    let out = Command::new(&config.python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/bench_input_torchvision.py"))
        .args(args)
        .output()
        .with_context(|| format!("running {} (install the venv with `cargo make setup`)", config.python.display()))?;
    if !out.status.success() {
        bail!("tools/bench_input_torchvision.py {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Images per second of our training stream over the benchmark folder.
fn ours(config: &InputBenchConfig, cache: CacheMode, normalise: bool) -> Result<f64> {
    let task = Task::parse(&format!("folder:{}->{}", config.dir.display(), config.dir.display()))?;
    let options = LoadOptions {
        pipeline: PipelineOptions { workers: config.workers, prefetch: 4 },
        cache,
        cache_dir: Some(config.dir.with_extension("cache")),
        cache_progress: None,
    };
    let data = load_image_task(&config.dir, &task, &ImageInput::PAPER, &options)?;
    let Samples::Files(set) = &data.source_train else { bail!("expected image files") };
    let output = if normalise { HostOutput::Normalised } else { HostOutput::Uint8 };
    let mut stream = set.train_stream_as(config.batch, 1, Mode::Train(TrainCrop::RandomCrop), tch::Device::Cpu, output);
    stream.next_batch()?; // warm-up (threads started, caches paged in)
    let started = Instant::now();
    for _ in 0..config.batches {
        let _batch = stream.next_raw()?.context("stream ended")?;
    }
    Ok((config.batches * config.batch) as f64 / started.elapsed().as_secs_f64())
}

pub fn run(config: &InputBenchConfig) -> Result<InputBenchResult> {
    if !config.dir.join("300x300").is_dir() {
        eprintln!("bench-input: writing {} JPEGs per size into {}", config.per_size, config.dir.display());
        python(config, &["make", &config.dir.display().to_string(), &config.per_size.to_string()])?;
    }
    let base_rss_mib = status_kib("VmRSS:").unwrap_or(0.0) / 1024.0;
    let mut peak_rss_mib = 0.0;
    let mut rounds = Vec::new();
    for round in 1..=config.rounds.max(1) {
        eprintln!("bench-input: round {round}/{}: this pipeline, decoding every image", config.rounds);
        let decode = ours(config, CacheMode::Off, false)?;
        let decode_normalised = ours(config, CacheMode::Off, true)?;
        if round == 1 {
            peak_rss_mib = status_kib("VmHWM:").unwrap_or(0.0) / 1024.0;
        }
        eprintln!("bench-input: round {round}/{}: this pipeline, from the decoded cache", config.rounds);
        let cache = ours(config, CacheMode::Auto, false)?;
        let cache_normalised = ours(config, CacheMode::Auto, true)?;
        eprintln!("bench-input: round {round}/{}: torchvision ImageFolder + PIL DataLoader", config.rounds);
        let line = python(config, &["bench", &config.dir.display().to_string(), &config.workers.to_string(), &config.batch.to_string(), &config.batches.to_string()])?;
        let v: serde_json::Value = serde_json::from_str(line.trim()).with_context(|| format!("parsing '{line}'"))?;
        let torchvision = v["images_per_second"].as_f64().context("images_per_second")?;
        rounds.push([torchvision, decode, cache, decode_normalised, cache_normalised]);
    }
    let median = |k: usize| -> f64 {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (torchvision, ours_decode, ours_cache, ours_decode_normalised, ours_cache_normalised) = (median(0), median(1), median(2), median(3), median(4));
    Ok(InputBenchResult {
        images: config.per_size * 3,
        rounds,
        ours_decode,
        ours_cache,
        ours_decode_normalised,
        ours_cache_normalised,
        torchvision,
        peak_rss_mib,
        base_rss_mib,
    })
}

pub fn render(config: &InputBenchConfig, r: &InputBenchResult) -> String {
    let per_core = |x: f64| x / config.workers as f64;
    let mut s = format!(
        "training transform (resize 256x256, random crop 224, flip, normalise), {} JPEGs (300x300, 640x480, 1000x1000), \
         batch {}, {} workers, {} timed batches; medians of {} interleaved rounds (ratio range over the rounds)\n\n",
        r.images,
        config.batch,
        config.workers,
        config.batches,
        r.rounds.len()
    );
    s.push_str("| pipeline | images/s | images/s per core | vs torchvision | range over rounds |\n|---|---|---|---|---|\n");
    for (k, (name, x)) in [
        ("torchvision ImageFolder + PIL (normalised float batches)", r.torchvision),
        ("ours, decoding every image (uint8 batches for the device)", r.ours_decode),
        ("ours, decoded cache (uint8 batches for the device)", r.ours_cache),
        ("ours, decoding every image (normalised float batches, as for CPU training)", r.ours_decode_normalised),
        ("ours, decoded cache (normalised float batches, as for CPU training)", r.ours_cache_normalised),
    ]
    .into_iter()
    .enumerate()
    {
        let ratios: Vec<f64> = r.rounds.iter().map(|round| round[k] / round[0]).collect();
        let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        s.push_str(&format!("| {name} | {x:.0} | {:.0} | {:.2}x | {lo:.2}x–{hi:.2}x |\n", per_core(x), x / r.torchvision));
    }
    s.push_str(
        "\nFor CUDA our pipeline hands uint8 batches to the device, which normalises them; for CPU \
         training its decoding workers normalise, as torchvision's do (the last two rows).\n",
    );
    s.push_str(&format!(
        "\npeak resident memory of this process while decoding: {:.0} MiB ({:.0} MiB before the pipeline started, libtorch loaded)\n",
        r.peak_rss_mib, r.base_rss_mib
    ));
    s
}
