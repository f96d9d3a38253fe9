//! `run-one`: from its flags to the run it trains. [`resolve`] turns the flags into a
//! [`RunSpec`] (task → protocol → input and network → hyperparameters and `--set` → schedule),
//! [`render_plan`] says what will train before anything does (`--dry-run` stops there).
//!
//! Rules (also in `run-one --help`):
//! - **Epochs come from the protocol and the data, never from `--iters`.** `--iters` sets the
//!   run's length; an epoch stays what the baseline's protocol says (a fixed count, or CDAN's
//!   digits epoch of max(len(source), len(target)) / batch, drop_last, on your folders too).
//! - **A run that would end inside its warm-up is refused before training** (CDAN's source-only
//!   epochs: neither its transfer loss nor the harmonizer would ever train); the error names the
//!   shortest length and `--set source_only_epochs=N`, which shortens the warm-up and, like every
//!   `--set`, `--iters`, `--eval-every` and `--iters-per-epoch`, is recorded as a deviation.
//! - **The network follows the input**: digits tasks train their own format (LeNet on 28×28
//!   grey for M↔U, the DTN on 32×32 RGB for S→M); for your own data `--image-size 28` reads whole
//!   images as 28×28 grey into memory like MNIST (LeNet), `--image-size 32` as 32×32 RGB (the
//!   DTN), `--image-size R/32` trains the DTN on random 32-pixel crops through the image pipeline,
//!   any other `R/C` the protocol's ResNet. Without `--image-size`, your own data under
//!   `--protocol-of digits` is read at 28 when its first image is grey, else at 32; otherwise
//!   it runs Office-31's ResNet protocol at 256/224.

use crate::grid::override_recorded;
use crate::protocol::Protocol;
use crate::schedule::ScheduleRule;
use anyhow::{bail, Context, Result};
use baselines::data::benchmarks::Role;
use baselines::data::transform::ImageInput;
use baselines::data::{parse_stand_in, DigitsFormat, Split, SplitStandIns, Task, TrainSizes};
use baselines::harmonizer::{GhppRule, Harmonizer, Method, OutsideScope};
use baselines::methods::BackwardPath;
use baselines::train::RunSpec;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The flags of `run-one`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct RunOneArgs {
    #[arg(long, help = method_help())]
    pub method: String,
    #[arg(long, default_value = "none", help = harmonizer_help())]
    pub harmonizer: Method,
    /// GH++ trade-off α in [0, 1]
    #[arg(long, default_value_t = Harmonizer::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// GH++ rule: released (the authors' code) or rotation
    #[arg(long, default_value = "released")]
    pub rule: GhppRule,
    /// Outside the scope: reweighted (as released: heads get w1/w2 too) or scope-only (a deviation)
    #[arg(long, default_value = "reweighted")]
    pub outside_scope: OutsideScope,
    /// A digits task (mnist-usps / M-U, usps-mnist, svhn-mnist), a benchmark task
    /// (office31:A-W, officehome:Ar-Cl, visda2017:Syn-Real, domainnet:clp-inf), or your own
    /// data: folder:PATH_A->PATH_B (two folders of class subfolders with the same class names)
    /// or list:FILE_A->FILE_B (two '<path> <label>' image lists)
    #[arg(long)]
    pub task: String,
    /// Whose protocol (hyperparameters, schedule, transforms) to run: digits, office31,
    /// officehome, visda2017 or domainnet. Default: the task's own; for your own data, digits'
    /// at --image-size 28, 32 or R/32, else office31's (ResNet-50)
    #[arg(long, value_name = "DATASET")]
    pub protocol_of: Option<String>,
    /// Your own data's input, which picks the network: 28 (whole images, 28×28 grey, in memory:
    /// LeNet), 32 (32×32 RGB in memory: the DTN), RESIZE/32 (the DTN on random crops) or
    /// RESIZE/CROP (the protocol's ResNet; benchmarks: 256/224). See "Networks" below
    #[arg(long, value_name = "28|32|RESIZE/CROP")]
    pub image_size: Option<String>,
    /// Image tasks: decoding threads (default: all cores)
    #[arg(long)]
    pub workers: Option<usize>,
    /// Image tasks: ready batches that may wait in the queue
    #[arg(long, default_value_t = 4)]
    pub prefetch: usize,
    /// Image tasks: the decoded cache (auto: on where the disk has room; off: decode every time)
    #[arg(long, default_value = "auto")]
    pub cache: String,
    /// Image tasks: where decoded caches live (default: <data-root>/.decoded-cache)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The run's length in iterations (default: the protocol's). Never changes the epoch; a
    /// length inside the method's warm-up is refused (see "Schedule" below). Recorded as a
    /// deviation
    #[arg(long)]
    pub iters: Option<u64>,
    /// Evaluate every N iterations, and after the last (default: the protocol's; recorded)
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Iterations per epoch (default: the protocol's, from the data where it says so;
    /// recorded as a deviation)
    #[arg(long)]
    pub iters_per_epoch: Option<u64>,
    /// Record harmonizer telemetry every k-th iteration
    #[arg(long, default_value_t = 10)]
    pub telemetry_every: u64,
    /// Let a split stand in for a domain's train split, e.g. usps=test (repeatable; recorded as a deviation)
    #[arg(long = "split", value_name = "DOMAIN=SPLIT")]
    pub splits: Vec<String>,
    /// Override a hyperparameter of the method, e.g. batch=64 or source_only_epochs=0
    /// (repeatable; recorded as a deviation)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Where the data lives (as laid out by data-fetch)
    #[arg(long, env = "GH_DATA_ROOT", default_value = "data")]
    pub data_root: PathBuf,
    /// auto (CUDA if available), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub numerics: crate::numerics_args::NumericsArgs,
    /// Harmonized backward: two-pass (default) or three-pass (the released code's shape)
    #[arg(long, default_value = "two-pass")]
    pub backward: BackwardPath,
    /// Output folder for run.jsonl (default: runs/one/<task>-<method>-<harmonizer>-s<seed>)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the plan (task and sizes, network, input, batch, schedule, warm-up, evaluations,
    /// harmonizer and scope, device, deviations) and exit without reading images or training
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

const AFTER_HELP: &str = "\
Schedule:
  --iters sets how long the run trains; an epoch stays the protocol's (a fixed count, or CDAN's
  digits epoch: max(len(source), len(target)) / batch, drop_last, also on your own folders).
  A run that would end inside the method's warm-up (CDAN's source-only epochs) is refused before
  training: the error names the shortest length, and --set source_only_epochs=N shortens the
  warm-up. Every --set, --iters, --eval-every and --iters-per-epoch is recorded as a deviation.

Networks (the input picks them):
  digits tasks         their own format: LeNet on 28x28 grey (M<->U), the DTN on 32x32 RGB (S->M)
  --image-size 28      your images whole, as 28x28 grey in memory, like MNIST: LeNet
  --image-size 32      your images whole, as 32x32 RGB in memory: the DTN
  --image-size R/32    the DTN on random 32-pixel crops of R-pixel resizes (image pipeline)
  --image-size R/C     the protocol's ResNet (benchmarks: 256/224, the paper's)
  Without --image-size, your own data under --protocol-of digits is read at 28 when its first
  image is grey, else at 32; without --protocol-of it runs Office-31's ResNet-50 protocol.

What trained:
  The summary counts, per harmonized pair, the steps that formed it and the steps where the
  harmonizer changed a weight. A run whose pair never formed ends 'not-adapted' (harmonizer
  none) or 'not-harmonized' (GH / GH++); the report marks it and leaves it out of claims.";

/// What `run-one` will train, with what the plan block says beside the spec.
#[derive(Clone, Debug)]
pub struct RunOnePlan {
    pub spec: RunSpec,
    /// The baseline as named (a variant such as ssrt* included).
    pub baseline: String,
    /// Whose protocol runs, and why.
    pub dataset: String,
    pub dataset_why: String,
    /// The training sets' sizes where known before reading the images.
    pub sizes: Option<TrainSizes>,
    /// Where the sizes come from.
    pub sizes_from: String,
    /// The protocol's own schedule at this batch and data, before the flags.
    pub protocol_schedule: baselines::train::Schedule,
    pub epoch_rule: String,
    /// The network, and the rule that picked it.
    pub network: String,
    pub network_why: String,
    pub input: String,
}

/// The input a run reads, from `--image-size` and the task.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Input {
    /// A digits task's own tensors.
    DigitsTask,
    /// Own images in memory at a digits format.
    OwnDigits(DigitsFormat, &'static str),
    /// The image pipeline at resize / crop.
    Pipeline(ImageInput, &'static str),
}

fn parse_input(task: &Task, image_size: Option<&str>, protocol_of: Option<&str>) -> Result<Input> {
    let whole = |side: &str| match side.trim() {
        "28" => Ok(Some(DigitsFormat::Grey28)),
        "32" => Ok(Some(DigitsFormat::Rgb32)),
        s if !s.contains('/') => bail!("--image-size {s}: a single side is 28 (whole images as 28×28 grey: LeNet) or 32 (32×32 RGB: the DTN); give RESIZE/CROP (e.g. 256/224) for the image pipeline"),
        _ => Ok(None),
    };
    match (task, image_size) {
        (Task::Digits(t), Some(s)) => bail!(
            "--image-size {s}: digits tasks train at their own format ({} for {}); drop --image-size, or put the images in folders for folder:A->B",
            if t.format() == DigitsFormat::Grey28 { "28×28 grey, LeNet" } else { "32×32 RGB, the DTN" },
            t.short_name()
        ),
        (Task::Digits(_), None) => Ok(Input::DigitsTask),
        (Task::Benchmark { .. }, size) => {
            let why = if size.is_some() { "--image-size" } else { "the paper's 256/224" };
            let size = size.unwrap_or("256/224");
            if whole(size)?.is_some() {
                bail!("--image-size {size} reads whole images into memory, which is for your own data; benchmarks take RESIZE/CROP (the paper's 256/224)");
            }
            Ok(Input::Pipeline(ImageInput::parse_size(size).context("--image-size")?, why))
        }
        (Task::Own { .. }, Some(size)) => match whole(size)? {
            Some(format) => Ok(Input::OwnDigits(format, "--image-size")),
            None => Ok(Input::Pipeline(ImageInput::parse_size(size).context("--image-size")?, "--image-size")),
        },
        (Task::Own { source, .. }, None) if protocol_of == Some("digits") => {
            let grey = baselines::data::own_digits::first_image_is_grey(source).context("looking at your first source image (to pick 28×28 grey or 32×32 RGB; --image-size 28 or 32 decides instead)")?;
            Ok(if grey {
                Input::OwnDigits(DigitsFormat::Grey28, "--protocol-of digits and a grey first source image (--image-size 32 for the DTN)")
            } else {
                Input::OwnDigits(DigitsFormat::Rgb32, "--protocol-of digits and a colour first source image (--image-size 28 for grey LeNet)")
            })
        }
        (Task::Own { .. }, None) => Ok(Input::Pipeline(ImageInput::PAPER, "the default for your own data (Office-31's protocol at 256/224)")),
    }
}

/// Parses `--set KEY=VALUE` values as TOML (a bare word is a string).
fn set_table(sets: &[String]) -> Result<toml::Table> {
    let mut table = toml::Table::new();
    for s in sets {
        let (k, v) = s.split_once('=').with_context(|| format!("--set '{s}': expected KEY=VALUE"))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_owned()));
        table.insert(k.trim().to_owned(), value);
    }
    Ok(table)
}

/// The training sets' sizes before reading the images: digits from the published split sizes,
/// your own data from its folders or lists, benchmarks from their lists where present.
fn train_sizes(task: &Task, stand_ins: &SplitStandIns, data_root: &std::path::Path) -> Result<(TrainSizes, String)> {
    match task {
        Task::Digits(t) => {
            let split = |d: baselines::data::Domain| stand_ins.get(&d).copied().unwrap_or(Split::Train);
            Ok((
                TrainSizes::of_digits(*t, stand_ins),
                format!(
                    "published split sizes: {} {}, {} {}",
                    t.source.name(),
                    split(t.source).name(),
                    t.target.name(),
                    split(t.target).name()
                ),
            ))
        }
        Task::Own { source, target } => {
            let (s, t) = (source.read()?, target.read()?);
            Ok((TrainSizes { source: s.len(), target: t.len() }, format!("listed in {} and {}", s.origin, t.origin)))
        }
        Task::Benchmark { benchmark, source, target } => {
            let s = benchmark.read(data_root, *source, Role::Train)?;
            let t = benchmark.read(data_root, *target, Role::Train)?;
            Ok((TrainSizes { source: s.len(), target: t.len() }, format!("listed in {} and {}", s.origin, t.origin)))
        }
    }
}

/// `--method`'s help, from the method registry and the built-in protocol's variants, so that a
/// baseline added to either is listed without editing this file.
fn method_help() -> String {
    let methods: Vec<&str> = baselines::methods::MethodName::ALL.iter().map(|m| m.name()).collect();
    let mut help = format!("The baseline: {}", methods.join(", "));
    if let Ok(protocol) = Protocol::embedded() {
        for (name, variant) in &protocol.variants {
            help.push_str(&format!("; or {name}: {}", variant.description));
        }
    }
    help
}

/// `--harmonizer`'s help, from the harmonizer crate's list of methods.
fn harmonizer_help() -> String {
    format!("The harmonizer: {}", Method::ALL.map(|m| m.name()).join(", "))
}

/// Turns `run-one`'s flags into the run: reads no images (own data: its listing and, to pick
/// the input, the first image only).
pub fn resolve(protocol: &Protocol, args: &RunOneArgs) -> Result<RunOnePlan> {
    let baseline = args.method.to_ascii_lowercase();
    let (method, _) = protocol.baseline_method(&baseline)?;
    let task = Task::parse(&args.task)?;
    let input = parse_input(&task, args.image_size.as_deref(), args.protocol_of.as_deref())?;
    let own_task_id = match &task {
        Task::Digits(t) => Some(t.id()),
        Task::Benchmark { benchmark, source, target } => {
            let d = benchmark.domains();
            Some(format!("{}-{}", d[*source].id, d[*target].id))
        }
        Task::Own { .. } => None,
    };
    let (own_dataset, own_why) = match (&task, input) {
        (Task::Digits(_), _) => ("digits".to_owned(), "the task's own"),
        (Task::Benchmark { benchmark, .. }, _) => (benchmark.name().to_owned(), "the task's own"),
        (Task::Own { .. }, Input::OwnDigits(..)) => ("digits".to_owned(), "your own data read like the digits"),
        (Task::Own { .. }, Input::Pipeline(i, _)) if i.crop == 32 => ("digits".to_owned(), "your own data at 32-pixel crops (the DTN's)"),
        (Task::Own { .. }, _) => ("office31".to_owned(), "the default for your own images (ResNet-50)"),
    };
    let (dataset, dataset_why) = match &args.protocol_of {
        Some(d) => (d.clone(), "--protocol-of".to_owned()),
        None => (own_dataset.clone(), own_why.to_owned()),
    };
    anyhow::ensure!(
        protocol.datasets.contains_key(&dataset),
        "--protocol-of {dataset}: not a dataset of the protocol ({})",
        protocol.datasets.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    anyhow::ensure!(task.digits().is_none() || dataset == "digits", "digits tasks run the digits protocol (--protocol-of {dataset} was given)");
    let has = protocol.datasets_of(method);
    if !has.contains(&dataset) {
        let fix = if has == ["digits"] {
            "pass --protocol-of digits with --image-size 28 (LeNet on whole 28×28 grey images) or --image-size 36/32 (the DTN on 32×32 crops)".to_owned()
        } else {
            format!("pass --protocol-of with one of: {}", has.join(", "))
        };
        bail!("{} has no {dataset} protocol (it has: {}); {fix}", method.name(), has.join(", "));
    }
    if matches!(input, Input::OwnDigits(..)) && dataset != "digits" {
        bail!("--image-size 28 / 32 trains the digits networks: it runs the digits protocol (drop --protocol-of {dataset}, or give RESIZE/CROP for the {dataset} protocol's ResNet)");
    }
    // Per-task overrides apply when the task is one of that dataset's.
    let task_id = own_task_id.filter(|t| dataset == own_dataset && protocol.datasets[&dataset].tasks.contains(t));
    let (images, digits_input, input_text) = match (&task, input) {
        (_, Input::DigitsTask) => (None, None, "the digits tensors in memory, normalised to [-1, 1], no augmentation".to_owned()),
        (_, Input::OwnDigits(f, _)) => (
            None,
            Some(f),
            format!(
                "your images whole, {s}×{s} {c} in memory, normalised to [-1, 1], no augmentation (as the digits protocols read MNIST and USPS)",
                s = f.side(),
                c = if f.channels() == 1 { "grey" } else { "RGB" }
            ),
        ),
        (_, Input::Pipeline(size, why)) => {
            let transforms = match &task {
                Task::Benchmark { benchmark, source, target } if dataset != "digits" => {
                    let d = benchmark.domains();
                    Some(protocol.image_input(&dataset, method, d[*source].name, d[*target].name)?)
                }
                Task::Own { .. } if dataset != "digits" => Some(protocol.image_input(&dataset, method, "source", "target")?),
                _ => None,
            };
            let i = match transforms {
                Some(t) => ImageInput { resize: size.resize, crop: size.crop, ..t },
                None => size,
            };
            let text = format!(
                "image pipeline: resize {r}×{r} ({f:?}), train crop {c} ({sc:?} source, {tc:?} target){flip}, test centre crop {c} ({why})",
                r = i.resize,
                f = i.resize_filter,
                c = i.crop,
                sc = i.source_crop,
                tc = i.target_crop,
                flip = if i.flip { ", flips" } else { "" }
            );
            (Some(i), None, text)
        }
    };
    let mut config = protocol.baseline_config(&dataset, &baseline, task_id.as_deref())?;
    let mut requested = Vec::new();
    if !args.sets.is_empty() {
        let (changed, said) = override_recorded(&config, &set_table(&args.sets)?, &baseline, " by --set", "the protocol's").context("--set")?;
        config = changed;
        requested.extend(said);
    }
    let mut stand_ins = SplitStandIns::new();
    for s in &args.splits {
        let (d, sp) = parse_stand_in(s)?;
        stand_ins.insert(d, sp);
    }
    let rule: ScheduleRule = protocol.schedule(&dataset, method)?;
    let batch = config.batch();
    let (sizes, sizes_from) = match train_sizes(&task, &stand_ins, &args.data_root) {
        Ok((s, from)) => (Some(s), from),
        Err(e) if !rule.needs_sizes() => (None, format!("unknown before reading the data ({e:#})")),
        Err(e) => return Err(e.context("the protocol's epoch is made of the data: reading the training sets' sizes")),
    };
    let protocol_schedule = rule.resolve(batch, sizes)?;
    let mut schedule = protocol_schedule.clone();
    if let Some(n) = args.iters {
        if n != schedule.iterations {
            requested.push(format!("run length {n} iterations by --iters (the protocol's: {})", schedule.iterations));
        }
        schedule.iterations = n;
    }
    if let Some(e) = args.eval_every {
        if e != schedule.eval_every {
            requested.push(format!("evaluated every {e} iterations by --eval-every (the protocol's: {})", schedule.eval_every));
        }
        schedule.eval_every = e;
    }
    if let Some(e) = args.iters_per_epoch {
        if e != schedule.iters_per_epoch {
            requested.push(format!("{e} iterations per epoch by --iters-per-epoch (the protocol's: {})", schedule.iters_per_epoch));
        }
        schedule.iters_per_epoch = e;
    }
    let spec = RunSpec {
        task,
        images,
        digits_input,
        seed: args.seed,
        method: config,
        harmonizer: Harmonizer::new(args.harmonizer, args.alpha, args.rule)?.with_outside_scope(args.outside_scope),
        schedule,
        stand_ins,
        telemetry_every: args.telemetry_every,
        backward: args.backward,
        requested_deviations: requested,
    };
    spec.validate()?;
    let network = baselines::train::describe_network(&spec)?;
    let network_why = match (&spec.task, input) {
        (Task::Digits(t), _) => format!("the digits task's format ({})", t.short_name()),
        (_, Input::OwnDigits(_, why)) => format!("whole images, picked by {why}"),
        (_, Input::Pipeline(i, _)) if i.crop == 32 && spec.method.image_backbone().is_none() && spec.method.vit_backbone().is_none() => "32-pixel crops (the DTN's input)".to_owned(),
        _ => format!("the {dataset} protocol's backbone"),
    };
    Ok(RunOnePlan {
        epoch_rule: rule.epoch_rule(batch),
        spec,
        baseline,
        dataset,
        dataset_why,
        sizes,
        sizes_from,
        protocol_schedule,
        network,
        network_why,
        input: input_text,
    })
}


/// `run-one`: resolves, says the plan, then (unless `--dry-run`) loads, trains, writes the record
/// and says what trained.
pub fn run(protocol: &Protocol, args: &RunOneArgs) -> Result<()> {
    use crate::execute::{self, ProgressObserver};
    use baselines::data::decoded_cache::CacheMode;
    use baselines::data::image_task::LoadOptions;
    let plan = resolve(protocol, args)?;
    let device = baselines::device::select(&args.device)?;
    let mut described = baselines::device::describe(device);
    if args.numerics.numerics().changes_results_on(device) {
        described.push_str(&format!(", {} precision, deterministic {}", args.numerics.precision.name(), if args.numerics.deterministic { "on" } else { "off" }));
    }
    eprint!("{}", render_plan(&plan, &described));
    if args.dry_run {
        return Ok(());
    }
    args.numerics.apply()?;
    let spec = &plan.spec;
    let method = spec.method.name();
    let out = args.out.clone().unwrap_or_else(|| {
        let safe = |s: String| s.replace(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)), "_");
        PathBuf::from("runs/one").join(format!("{}-{}-{}-s{}", safe(spec.task.name()), plan.baseline.replace('*', "star"), safe(spec.harmonizer.label()), spec.seed))
    });
    let mut options = LoadOptions { cache: CacheMode::parse(&args.cache)?, cache_dir: args.cache_dir.clone(), ..Default::default() };
    if let Some(w) = args.workers {
        options.pipeline.workers = w.max(1);
    }
    options.pipeline.prefetch = args.prefetch.max(1);
    if !args.quiet {
        options.cache_progress = Some(cache_progress_bar());
    }
    let data = execute::load_data(spec, &args.data_root, &options, device)?;
    let loaded = TrainSizes::of_data(&data);
    if let Some(planned) = plan.sizes.filter(|p| *p != loaded) {
        bail!(
            "the plan counted {} source and {} target training images ({}), the data read holds {} and {}: the epoch would be wrong (is the data complete?)",
            planned.source, planned.target, plan.sizes_from, loaded.source, loaded.target
        );
    }
    for d in &data.deviations {
        eprintln!("run-one: data note: {d}");
    }
    let mut progress = ProgressObserver::new(spec.schedule.iterations, &format!("{} {}", method.name(), spec.harmonizer.label()), !args.quiet);
    let (summary, path) = execute::execute(spec, &data, &args.data_root, device, &out, &mut progress)?;
    progress.finish();
    print!("{}", render_outcome(spec, &summary, std::io::IsTerminal::is_terminal(&std::io::stdout())));
    println!("record: {}", path.display());
    Ok(())
}

/// What a finished run reports: accuracy, time, and per pair what trained; a run that did not
/// train what was asked says so first (in red on a terminal).
pub fn render_outcome(spec: &RunSpec, summary: &baselines::train::RunSummary, colour: bool) -> String {
    use baselines::train::{RunStatus, Trained};
    let mut out = String::new();
    let red = |text: String| if colour { format!("\x1b[1;31m{text}\x1b[0m") } else { text };
    if let RunStatus::Diverged { iteration, reason } = &summary.status {
        let _ = writeln!(out, "{}", red(format!("DIVERGED at iteration {iteration}: {reason} (no accuracy is reported for this run)")));
    }
    match summary.trained {
        Trained::AsAsked => {}
        Trained::NotAdapted => {
            let _ = writeln!(out, "{}", red(format!("NOT ADAPTED: no step trained {}'s transfer loss; this is not a {} result", spec.method.name(), spec.method.name().paper_name())));
        }
        Trained::NotHarmonized => {
            let _ = writeln!(out, "{}", red(format!("NOT HARMONIZED: no step formed the pair {} harmonizes; this is not a {} result", spec.harmonizer.label(), spec.harmonizer.label())));
        }
    }
    let pct = |x: Option<f64>| x.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "final target accuracy: {}   best (oracle selection): {}{}",
        pct(summary.final_accuracy),
        pct(summary.best_accuracy_oracle),
        summary.best_iteration.map(|i| format!(" at iteration {i}")).unwrap_or_default()
    );
    if !summary.final_heads.is_empty() {
        let _ = writeln!(out, "heads at the end: {}", summary.final_heads.iter().map(|(k, v)| format!("{k} {:.2}%", 100.0 * v)).collect::<Vec<_>>().join(", "));
    }
    let _ = writeln!(out, "training time: {:.1} s ({:.2} s per 100 steps, {:.2} s per epoch)", summary.train_seconds, summary.seconds_per_100_steps, summary.seconds_per_epoch);
    let pairs = spec.method.name().pairs();
    for p in pairs {
        let label = p.label;
        match summary.harmonization.get(label) {
            None => {
                let _ = writeln!(out, "pair {label}: formed in 0 of {} steps", summary.iterations);
            }
            Some(h) => {
                let pct = |x: Option<f64>| x.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into());
                let num = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    "pair {label}: formed in {} of {} steps, reweighted by {} in {}; {} measured steps, conflict rate {}, mean w1/w2 in conflict {}/{}, clamped {}",
                    h.formed_steps,
                    summary.iterations,
                    spec.harmonizer.label(),
                    h.reweighted_steps,
                    h.measured_steps,
                    pct(h.conflict_rate),
                    num(h.mean_w1_in_conflict),
                    num(h.mean_w2_in_conflict),
                    h.clamped_steps
                );
            }
        }
    }
    out
}

/// A progress bar for building decoded caches (one per list, shown while it builds).
fn cache_progress_bar() -> baselines::data::image_task::CacheProgress {
    let bar = std::sync::Mutex::new(None::<(String, indicatif::ProgressBar)>);
    std::sync::Arc::new(move |what: &str, done: usize, total: usize| {
        let mut slot = bar.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(w, _)| w != what) {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(indicatif::ProgressStyle::with_template("decoded cache {prefix} [{bar:25}] {pos}/{len} images, ETA {eta}").expect("valid template"));
            b.set_prefix(what.to_owned());
            *slot = Some((what.to_owned(), b));
        }
        if let Some((_, b)) = slot.as_ref() {
            b.set_position(done as u64);
            if done >= total {
                b.finish_and_clear();
            }
        }
    })
}

/// The evaluation points of a schedule (the first few and the last).
fn evaluation_points(s: &baselines::train::Schedule) -> String {
    let mut points: Vec<u64> = (1..=s.iterations / s.eval_every).map(|k| k * s.eval_every).collect();
    if points.last() != Some(&s.iterations) {
        points.push(s.iterations);
    }
    let shown: Vec<String> = if points.len() > 8 {
        points[..6].iter().map(u64::to_string).chain(["…".to_owned(), points[points.len() - 1].to_string()]).collect()
    } else {
        points.iter().map(u64::to_string).collect()
    };
    format!("{} evaluation(s), after iterations {}", points.len(), shown.join(", "))
}

/// The plan block: what will train, before anything does.
pub fn render_plan(plan: &RunOnePlan, device: &str) -> String {
    let spec = &plan.spec;
    let method = spec.method.name();
    let s = &spec.schedule;
    let mut out = String::new();
    let _ = writeln!(out, "plan: {} + {} on {} (seed {})", method.paper_name(), spec.harmonizer.label(), spec.task.short_name(), spec.seed);
    let _ = writeln!(out, "  task        {}", spec.task.name());
    match plan.sizes {
        Some(z) => {
            let _ = writeln!(out, "  sizes       {} source, {} target training images ({})", z.source, z.target, plan.sizes_from);
        }
        None => {
            let _ = writeln!(out, "  sizes       {}", plan.sizes_from);
        }
    }
    let _ = writeln!(out, "  protocol    {} ({})", plan.dataset, plan.dataset_why);
    let _ = writeln!(out, "  network     {} ({})", plan.network, plan.network_why);
    let _ = writeln!(out, "  input       {}", plan.input);
    let _ = writeln!(out, "  batch       {0} source + {0} target", spec.method.batch());
    let epochs = s.iterations as f64 / s.iters_per_epoch as f64;
    let _ = writeln!(
        out,
        "  schedule    {} iterations = {} epoch(s) of {} (epoch: {}); the protocol's: {} iterations",
        s.iterations,
        if epochs.fract() == 0.0 { format!("{epochs:.0}") } else { format!("{epochs:.2}") },
        s.iters_per_epoch,
        plan.epoch_rule,
        plan.protocol_schedule.iterations
    );
    let warmup = spec.warmup_iterations();
    if warmup > 0 {
        let _ = writeln!(
            out,
            "  warm-up     {warmup} iterations ({} source-only epoch(s)): the transfer loss and the harmonizer train in iterations {}-{} ({} steps)",
            spec.method.warmup_epochs(),
            warmup + 1,
            s.iterations,
            s.iterations - warmup
        );
    } else {
        let _ = writeln!(out, "  warm-up     none: the transfer loss trains from the first iteration");
    }
    let _ = writeln!(out, "  evaluation  every {} iterations and after the last: {}", s.eval_every, evaluation_points(s));
    let pairs = method.pairs();
    if pairs.is_empty() {
        let _ = writeln!(out, "  harmonizer  {} ({} has no harmonized pair)", spec.harmonizer.label(), method.name());
    } else {
        let _ = writeln!(out, "  harmonizer  {} on {} pair(s):", spec.harmonizer.label(), pairs.len());
        for p in pairs {
            let _ = writeln!(out, "                {}: {}; scope {}", p.label, p.losses, p.scope);
        }
    }
    let _ = writeln!(out, "  telemetry   every {} iterations", spec.telemetry_every);
    let _ = writeln!(out, "  device      {device}");
    let mut deviations: Vec<String> = baselines::train::describe_stand_ins(&spec.stand_ins).iter().map(|d| format!("stand-in {d}")).collect();
    deviations.extend(baselines::train::spec_deviations(spec));
    if deviations.is_empty() {
        let _ = writeln!(out, "  deviations  none");
    } else {
        let _ = writeln!(out, "  deviations  {}", deviations[0]);
        for d in &deviations[1..] {
            let _ = writeln!(out, "              {d}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunOneArgs,
    }

    /// The help and the errors list what the registry, the protocol and the harmonizer crate
    /// hold, so that adding a baseline or a harmonizer needs no edit here.
    #[test]
    fn method_and_harmonizer_lists_come_from_the_registries() {
        let help = <Cli as clap::CommandFactory>::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let listed = help.split("The baseline: ").nth(1).and_then(|h| h.split(';').next()).unwrap_or_default();
        let names: Vec<&str> = baselines::methods::MethodName::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(listed, names.join(", "), "{help}");
        assert!(help.contains("; or ssrt*: SSRT with an ImageNet-1K-only ViT-B/16"), "{help}");
        assert!(help.contains("The harmonizer: none, gh, gh++"), "{help}");
        let protocol = Protocol::embedded().unwrap();
        let err = format!("{:#}", resolve(&protocol, &args(&["--method", "newda", "--task", "M-U"])).unwrap_err());
        assert!(err.contains("baseline 'newda' is not implemented") && err.contains("cdan") && err.contains("ssrt*"), "{err}");
        let err = Cli::try_parse_from(["run-one", "--method", "cdan", "--task", "M-U", "--harmonizer", "gh+"]).err().unwrap().to_string();
        assert!(err.contains("expected one of none, gh, gh++"), "{err}");
    }

    fn args(line: &[&str]) -> RunOneArgs {
        Cli::try_parse_from(std::iter::once("run-one").chain(line.iter().copied())).unwrap().args
    }

    fn resolve_line(line: &[&str]) -> Result<RunOnePlan> {
        resolve(&Protocol::embedded().unwrap(), &args(line))
    }

    fn grey_folders(dir: &std::path::Path, per_class: usize) -> String {
        let (a, b) = (dir.join("src"), dir.join("tgt"));
        baselines::data::synthetic::write_digit_folders(&a, per_class, false, 1).unwrap();
        baselines::data::synthetic::write_digit_folders(&b, per_class / 2, true, 2).unwrap();
        format!("folder:{}->{}", a.display(), b.display())
    }

    #[test]
    fn a_digits_task_keeps_the_protocols_epoch_whatever_iters_says() {
        let plan = resolve_line(&["--method", "cdan", "--task", "M-U", "--split", "usps=test", "--iters", "1437"]).unwrap();
        let s = &plan.spec.schedule;
        assert_eq!((s.iterations, s.iters_per_epoch, s.eval_every), (1437, 937, 937));
        assert_eq!(plan.spec.warmup_iterations(), 937);
        assert!(plan.spec.requested_deviations.iter().any(|d| d.contains("1437 iterations by --iters (the protocol's: 9370)")), "{:?}", plan.spec.requested_deviations);
        // The protocol's run has no requested deviation and the paper's schedule.
        let full = resolve_line(&["--method", "cdan", "--task", "M-U"]).unwrap();
        assert!(full.spec.requested_deviations.is_empty());
        assert_eq!(full.spec.schedule.iterations, 9370);
        // U->M's own learning-rate schedule (a per-task override) still applies.
        let um = resolve_line(&["--method", "cdan", "--task", "U-M"]).unwrap();
        assert!(format!("{:?}", um.spec.method).contains("every: 6"), "{:?}", um.spec.method);
    }

    #[test]
    fn a_run_inside_the_warm_up_is_refused_naming_the_length_and_the_setting() {
        let err = format!("{:#}", resolve_line(&["--method", "cdan", "--harmonizer", "gh", "--task", "M-U", "--iters", "500"]).unwrap_err());
        assert!(err.contains("937 iterations") && err.contains("--iters 938") && err.contains("--set source_only_epochs=0"), "{err}");
        // Shortening the warm-up is allowed, and recorded.
        let plan = resolve_line(&["--method", "cdan", "--harmonizer", "gh", "--task", "M-U", "--iters", "500", "--set", "source_only_epochs=0"]).unwrap();
        assert_eq!(plan.spec.warmup_iterations(), 0);
        assert!(plan.spec.requested_deviations.iter().any(|d| d.contains("source_only_epochs = 0 by --set (the protocol's: 1)")), "{:?}", plan.spec.requested_deviations);
    }

    #[test]
    fn own_grey_folders_train_lenet_with_epochs_of_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let task = grey_folders(dir.path(), 20);
        // 200 source, 100 target images; batch 64: 3 iterations per epoch.
        let plan = resolve_line(&["--method", "cdan", "--task", &task, "--protocol-of", "digits"]).unwrap();
        assert_eq!(plan.spec.digits_input, Some(DigitsFormat::Grey28));
        assert!(plan.network.starts_with("LeNet"), "{}", plan.network);
        assert_eq!(plan.sizes, Some(TrainSizes { source: 200, target: 100 }));
        assert_eq!((plan.spec.schedule.iters_per_epoch, plan.spec.schedule.iterations), (3, 30));
        // --image-size 28 says the same without looking at the images; 32 picks the DTN.
        assert_eq!(resolve_line(&["--method", "cdan", "--task", &task, "--image-size", "28"]).unwrap().spec.digits_input, Some(DigitsFormat::Grey28));
        let dtn = resolve_line(&["--method", "cdan", "--task", &task, "--image-size", "32"]).unwrap();
        assert!(dtn.network.starts_with("DTN"), "{}", dtn.network);
        let crops = resolve_line(&["--method", "cdan", "--task", &task, "--image-size", "36/32"]).unwrap();
        assert_eq!((crops.dataset.as_str(), crops.spec.images.map(|i| i.crop)), ("digits", Some(32)));
        // --iters inside the 3-iteration warm-up is refused; past it the epoch stays 3.
        assert!(resolve_line(&["--method", "cdan", "--task", &task, "--image-size", "28", "--iters", "3"]).is_err());
        assert_eq!(resolve_line(&["--method", "cdan", "--task", &task, "--image-size", "28", "--iters", "9"]).unwrap().spec.schedule.iters_per_epoch, 3);
    }

    #[test]
    fn each_override_lands_in_the_spec() {
        let plan = resolve_line(&[
            "--method", "mcd", "--task", "U-M", "--harmonizer", "gh++", "--alpha", "0.25", "--rule", "rotation", "--seed", "4", "--iters", "100", "--eval-every", "50",
            "--iters-per-epoch", "25", "--telemetry-every", "5", "--split", "usps=test", "--set", "batch=16", "--backward", "three-pass", "--outside-scope", "scope-only",
        ])
        .unwrap();
        let spec = &plan.spec;
        assert_eq!(spec.harmonizer.label(), "gh++(rotation,α=0.25,scope-only)");
        assert_eq!((spec.seed, spec.telemetry_every, spec.method.batch()), (4, 5, 16));
        assert_eq!((spec.schedule.iterations, spec.schedule.eval_every, spec.schedule.iters_per_epoch), (100, 50, 25));
        assert_eq!(spec.backward, BackwardPath::ThreePass);
        assert_eq!(spec.stand_ins.get(&baselines::data::Domain::Usps), Some(&Split::Test));
        // U->M's learning rate (a per-task override) under the --set batch.
        assert!(format!("{:?}", spec.method).contains("lr: 0.1"), "{:?}", spec.method);
        assert_eq!(spec.requested_deviations.len(), 4, "{:?}", spec.requested_deviations);
    }

    #[test]
    fn a_benchmark_task_runs_its_image_protocol_without_its_data_for_a_plan() {
        let plan = resolve_line(&["--method", "cdan", "--task", "office31:A-W", "--data-root", "/nonexistent"]).unwrap();
        let i = plan.spec.images.unwrap();
        assert_eq!((i.resize, i.crop), (256, 224));
        assert_eq!(plan.spec.schedule.iters_per_epoch, 500);
        assert!(plan.sizes.is_none() && plan.sizes_from.contains("data-fetch fetch office31"), "{}", plan.sizes_from);
        assert!(plan.network.starts_with("resnet50"), "{}", plan.network);
    }

    #[test]
    fn errors_name_the_flag_that_fixes_them() {
        let dir = tempfile::tempdir().unwrap();
        let task = grey_folders(dir.path(), 2);
        let err = format!("{:#}", resolve_line(&["--method", "source-only", "--task", &task]).unwrap_err());
        assert!(err.contains("--protocol-of digits") && err.contains("--image-size 28") && err.contains("--image-size 36/32"), "{err}");
        let err = format!("{:#}", resolve_line(&["--method", "cdan", "--task", "M-U", "--image-size", "32"]).unwrap_err());
        assert!(err.contains("drop --image-size"), "{err}");
        let err = format!("{:#}", resolve_line(&["--method", "cdan", "--task", &task, "--image-size", "64"]).unwrap_err());
        assert!(err.contains("28") && err.contains("RESIZE/CROP"), "{err}");
    }
}
