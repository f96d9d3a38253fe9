//! The grid runner: plans a profile's cells, runs the pending ones, survives being killed.
//!
//! ```text
//! <runs>/cells/<hash>/cell.json      what the cell is (labels + full RunSpec)
//! <runs>/cells/<hash>/run.jsonl      its run record
//! <runs>/cells/<hash>/done           marker with the summary (written before the folder appears)
//! <runs>/cells/.tmp-<hash>-<owner>/  a cell in progress (removed and restarted once its lease is gone)
//! <runs>/cells/.leases/<hash>.lease  which worker trains the cell now (see lease.rs)
//! <runs>/cells/.failed-<hash>.txt    the error of a cell that failed (retried by a later run)
//! <runs>/leases.log                  lease events of every worker (leased, taken over, published)
//! <runs>/profiles/<profile>.json     the profile's cells (what `report` reads)
//! ```
//!
//! A cell's folder is named by a hash of its full configuration and appears by an atomic rename
//! once complete, so a kill at any moment loses at most the cell in progress. Any number of
//! workers may run one profile on one runs folder at once: each leases a cell before training it.

use crate::lease::{self, Lease, LeaseTiming, Leases, Worker};
use crate::execute::{self, ProgressObserver};
use crate::grid::{self, Cell};
use crate::protocol::Protocol;
use anyhow::{bail, Context, Result};
use baselines::data::TaskData;
use crate::load::LoadSnapshot;
use baselines::train::{RunSpec, RunSummary};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tch::Device;

/// Hash of a cell's full configuration and the suite's version (its folder name): a new release
/// of the training code never reuses cells of an older one.
pub fn cell_hash(spec: &RunSpec) -> String {
    let canonical = serde_json::to_string(spec).expect("a RunSpec serializes");
    let keyed = format!("{}\n{canonical}", env!("CARGO_PKG_VERSION"));
    hex::encode(&Sha256::digest(keyed.as_bytes())[..8])
}

/// What a cell folder's `cell.json` holds (the schema's, with the spec typed).
pub type CellInfo = record_schema::CellInfo<RunSpec>;

fn cell_info(cell: &Cell) -> CellInfo {
    CellInfo {
        hash: cell.spec.as_ref().map(cell_hash).unwrap_or_default(),
        dataset: cell.dataset.clone(),
        task: cell.task.clone(),
        baseline: cell.baseline.clone(),
        harmonizer: cell.harmonizer_label.clone(),
        seed: cell.seed,
        spec: cell.spec.clone(),
        unsupported: cell.unsupported.clone(),
        deviations: cell.deviations.clone(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CellState {
    Done,
    Pending,
    /// Failed last time (retried on the next run).
    Failed(String),
    Unsupported(String),
}

#[derive(Debug, Clone)]
pub struct PlannedCell {
    pub info: CellInfo,
    pub state: CellState,
    /// Estimated training seconds (None: no cost model for this baseline on this device).
    pub estimate: Option<f64>,
    /// Whether the estimate comes from finished cells (else from the protocol's prior).
    pub measured: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: String,
    pub cells: Vec<PlannedCell>,
    /// Where the estimates come from.
    pub cost_note: String,
    /// The device kind the estimates are for ("cpu", "cuda").
    pub device_kind: String,
}

impl Plan {
    pub fn count(&self, f: impl Fn(&CellState) -> bool) -> usize {
        self.cells.iter().filter(|c| f(&c.state)).count()
    }

    pub fn pending_estimate(&self) -> (f64, usize) {
        let mut total = 0.0;
        let mut unknown = 0;
        for c in self.cells.iter().filter(|c| matches!(c.state, CellState::Pending | CellState::Failed(_))) {
            match c.estimate {
                Some(s) => total += s,
                None => unknown += 1,
            }
        }
        (total, unknown)
    }
}

pub struct Runs {
    root: PathBuf,
}

impl Runs {
    pub fn new(root: impl Into<PathBuf>) -> Runs {
        Runs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cells_dir(&self) -> PathBuf {
        self.root.join("cells")
    }

    pub fn cell_dir(&self, hash: &str) -> PathBuf {
        self.cells_dir().join(hash)
    }

    fn failed_file(&self, hash: &str) -> PathBuf {
        self.cells_dir().join(format!(".failed-{hash}.txt"))
    }

    pub fn is_done(&self, hash: &str) -> bool {
        self.cell_dir(hash).join("done").is_file()
    }

    /// The error of the cell's last failure, if it failed.
    pub fn failure(&self, hash: &str) -> Option<String> {
        fs::read_to_string(self.failed_file(hash)).ok()
    }

    /// Whether the cell failed (in some worker) after `since`.
    fn failed_since(&self, hash: &str, since: SystemTime) -> bool {
        fs::metadata(self.failed_file(hash)).and_then(|m| m.modified()).is_ok_and(|t| t >= since)
    }

    /// Removes every in-progress folder of a cell (called by the worker that just leased it).
    fn remove_tmp_folders(&self, hash: &str) -> Result<()> {
        let prefix = format!(".tmp-{hash}-");
        let Ok(entries) = fs::read_dir(self.cells_dir()) else { return Ok(()) };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                fs::remove_dir_all(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// Summaries of every finished cell (for cost estimates).
    /// Summaries of the finished cells that ran on `device_kind` ("cpu" or "cuda", read from the
    /// device recorded in each run's first line).
    fn done_summaries(&self, device_kind: &str) -> Vec<(CellInfo, RunSummary)> {
        let Ok(entries) = fs::read_dir(self.cells_dir()) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.path().join("done").is_file())
            .filter_map(|e| {
                let info: CellInfo = serde_json::from_str(&fs::read_to_string(e.path().join("cell.json")).ok()?).ok()?;
                let summary: RunSummary = serde_json::from_str(&fs::read_to_string(e.path().join("done")).ok()?).ok()?;
                let record = fs::read_to_string(e.path().join("run.jsonl")).ok()?;
                let first: serde_json::Value = serde_json::from_str(record.lines().next()?).ok()?;
                let device = first.get("context")?.get("device")?.as_str()?;
                device.starts_with(device_kind).then_some((info, summary))
            })
            .collect()
    }

    /// Removes folders of cells in progress whose worker is gone (no live lease of theirs), and
    /// cell folders without a `done` marker (left by versions before leases).
    fn clear_incomplete(&self, leases: &Leases) -> Result<usize> {
        let Ok(entries) = fs::read_dir(self.cells_dir()) else { return Ok(0) };
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let orphan_tmp = name.strip_prefix(".tmp-").is_some_and(|rest| {
                let (hash, owner) = rest.split_once('-').unwrap_or((rest, ""));
                !leases.held_by_owner_tag(hash, owner)
            });
            let no_marker = !name.starts_with('.') && e.path().is_dir() && !e.path().join("done").is_file();
            if orphan_tmp || no_marker {
                fs::remove_dir_all(e.path()).with_context(|| format!("removing incomplete cell {}", e.path().display()))?;
                n += 1;
            }
        }
        // A worker killed between publishing a cell and releasing its lease leaves a stale lease
        // on a done cell: nobody would ever take it over.
        for view in leases.all() {
            if view.stale.is_some() && self.is_done(&view.hash) {
                leases.remove_stale(&view.hash);
            }
        }
        Ok(n)
    }

    /// Checks that this folder's cells ran with `numerics` (records them on a folder's first
    /// run): a folder holds one setting, so a bf16 or fp32 result never lands beside a tf32 one
    /// under the same cell. A folder from before the record ran the defaults.
    pub fn adopt_numerics(&self, numerics: baselines::numerics::Numerics) -> Result<()> {
        use record_schema::FolderNumerics;
        let record = |n: baselines::numerics::Numerics| FolderNumerics { precision: n.precision.name().to_owned(), deterministic: n.deterministic };
        let asked = record(numerics);
        let path = FolderNumerics::path(&self.root);
        let has_cells = fs::read_dir(self.cells_dir()).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))));
        let held = match fs::read_to_string(&path) {
            Ok(text) => Some(serde_json::from_str::<FolderNumerics>(&text).with_context(|| {
                format!("{} is not a numerics record ({{\"precision\": \"tf32\", \"deterministic\": false}}); restore it or remove it if the folder's cells all ran with the defaults", path.display())
            })?),
            Err(_) if has_cells => Some(record(baselines::numerics::Numerics::default())),
            Err(_) => None,
        };
        if let Some(held) = held {
            if held != asked {
                let flags = |n: &FolderNumerics| format!("--precision {}{}", n.precision, if n.deterministic { " --deterministic" } else { "" });
                bail!(
                    "{} holds cells trained with {}; this run asks for {}. Cells do not record their precision in their identity, so results would mix: use another --runs folder for these settings, or rerun with {}",
                    self.root.display(),
                    flags(&held),
                    flags(&asked),
                    flags(&held)
                );
            }
        }
        if !path.is_file() {
            // Several workers may start at once: they write the same content, or the check above
            // stopped them.
            write_json_shared(&path, &asked)?;
        }
        Ok(())
    }

    fn write_profile(&self, profile: &str, reported_with: Option<&str>, cells: &[CellInfo]) -> Result<()> {
        let manifest = record_schema::ProfileManifest { profile: profile.to_owned(), reported_with: reported_with.map(str::to_owned), cells: cells.to_vec() };
        write_json_shared(&record_schema::ProfileManifest::path(&self.root, profile), &manifest)
    }
}

/// Writes `value` as pretty JSON to `path` (creating its folder) through a temporary file named
/// for this host and process, then a rename: workers on several hosts may write the same file of
/// a shared runs folder at once, and a reader sees the old content or the new, never a part.
pub(crate) fn write_json_shared(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let dir = path.parent().context("a runs folder's file has a parent folder")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("json.tmp.{}.{}", lease::hostname(), std::process::id()));
    fs::write(&tmp, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Seconds per 100 iterations of a cell on `device_kind`, and whether measured: the mean of
/// finished cells with the same baseline, harmonizer family, batch, backbone and input size, else
/// the profile's prior (CPU), else the protocol's prior (by backbone for the image protocols).
fn cost_per_100(protocol: &Protocol, profile: &str, device_kind: &str, info: &CellInfo, measured: &[(CellInfo, RunSummary)]) -> Option<(f64, bool)> {
    let spec = info.spec.as_ref();
    let backbone = spec.and_then(|s| s.method.image_backbone()).map(|b| b.network);
    let same: Vec<f64> = measured
        .iter()
        .filter(|(i, _)| {
            i.baseline == info.baseline
                && i.harmonizer.split('(').next() == info.harmonizer.split('(').next()
                && i.spec.as_ref().map(|s| s.method.batch()) == spec.map(|s| s.method.batch())
                && i.spec.as_ref().and_then(|s| s.method.image_backbone()).map(|b| b.network) == backbone
                && i.spec.as_ref().and_then(|s| s.images).map(|i| i.crop) == spec.and_then(|s| s.images).map(|i| i.crop)
        })
        .map(|(_, s)| s.seconds_per_100_steps)
        .collect();
    if !same.is_empty() {
        return Some((same.iter().sum::<f64>() / same.len() as f64, true));
    }
    if let Some(b) = backbone {
        return protocol.backbone_cost.get(device_kind).and_then(|c| c.get(b.name())).and_then(|c| c.get(&info.baseline)).map(|c| (*c, false));
    }
    // A variant (SSRT*) costs what its method does.
    let method = protocol.baseline_method(&info.baseline).map(|(m, _)| m.name().to_owned()).unwrap_or_else(|_| info.baseline.clone());
    protocol
        .profiles
        .get(profile)
        .and_then(|p| p.cost.get(&info.baseline))
        .filter(|_| device_kind == "cpu")
        .or_else(|| protocol.cost.get(device_kind).and_then(|c| c.get(&info.baseline).or_else(|| c.get(&method))))
        .map(|c| (*c, false))
}

pub fn plan(protocol: &Protocol, profile: &str, runs: &Runs, device: Device, drop_stand_ins: bool) -> Result<Plan> {
    let mut cells = grid::cells(protocol, profile)?;
    if drop_stand_ins {
        for c in &mut cells {
            if let Some(spec) = &mut c.spec {
                spec.stand_ins.clear();
            }
        }
    }
    // A profile that needs CUDA is estimated for CUDA wherever it is planned.
    let requires_cuda = protocol.profiles.get(profile).is_some_and(|p| p.requires_cuda);
    let device_kind = if device.is_cuda() || requires_cuda { "cuda" } else { "cpu" };
    let measured = runs.done_summaries(device_kind);
    let mut planned = Vec::with_capacity(cells.len());
    for cell in &cells {
        let info = cell_info(cell);
        let state = if let Some(why) = &cell.unsupported {
            CellState::Unsupported(why.clone())
        } else if runs.is_done(&info.hash) {
            CellState::Done
        } else if let Some(err) = runs.failure(&info.hash) {
            CellState::Failed(err.lines().next().unwrap_or("").to_owned())
        } else {
            CellState::Pending
        };
        let per_100 = cost_per_100(protocol, profile, device_kind, &info, &measured);
        let estimate = match (&info.spec, per_100) {
            (Some(spec), Some((c, _))) => Some(spec.schedule.iterations as f64 / 100.0 * c + 2.0),
            _ => None,
        };
        planned.push(PlannedCell { info, state, estimate, measured: per_100.is_some_and(|(_, m)| m) });
    }
    let cost_note = format!(
        "estimates for {device_kind}: seconds per 100 iterations from {} finished cell(s) of the same baseline, batch and backbone where available, \
         else the protocol's {device_kind} prior (marked \"prior\": not yet measured)",
        measured.len()
    );
    Ok(Plan { profile: profile.to_owned(), cells: planned, cost_note, device_kind: device_kind.to_owned() })
}

/// `i/n` with 1 ≤ i ≤ n: this process runs cells k (0-based, in plan order) with k mod n = i − 1.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s.split_once('/').with_context(|| format!("--shard '{s}': expected i/n, e.g. 1/4"))?;
    let (i, n): (usize, usize) = (i.trim().parse()?, n.trim().parse()?);
    if n == 0 || i == 0 || i > n {
        bail!("--shard '{s}': need 1 <= i <= n");
    }
    Ok((i, n))
}

pub struct RunOptions {
    pub data_root: PathBuf,
    pub device: Device,
    pub shard: Option<(usize, usize)>,
    pub show_progress: bool,
    /// Stop after this many cells (tests use it to simulate an interruption).
    pub max_cells: Option<usize>,
    pub drop_stand_ins: bool,
    /// Heartbeat and stale timeout of cell leases.
    pub lease_timing: LeaseTiming,
    /// Set (by SIGTERM, SIGINT or Slurm's pre-timeout signal) to stop the cell in training and
    /// leave it pending.
    pub shutdown: Arc<AtomicBool>,
    /// CPU threads for image decoding (default: all cores).
    pub decode_threads: Option<usize>,
    /// Machine-readable progress (`run --events`, read by the process that started this worker).
    pub events: Option<EventSink>,
}

/// Receives a worker's progress events (JSON objects with an "event" field).
pub type EventSink = Arc<dyn Fn(serde_json::Value) + Send + Sync>;

impl RunOptions {
    pub fn new(data_root: &Path, device: Device) -> RunOptions {
        RunOptions {
            data_root: data_root.to_path_buf(),
            device,
            shard: None,
            show_progress: false,
            max_cells: None,
            drop_stand_ins: false,
            lease_timing: LeaseTiming::default(),
            shutdown: Arc::new(AtomicBool::new(false)),
            decode_threads: None,
            events: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub ran: usize,
    pub skipped_done: usize,
    pub unsupported: usize,
    pub failed: Vec<(String, String)>,
    pub diverged: Vec<String>,
    pub restarted_incomplete: usize,
    pub seconds: f64,
    /// Cells that other live workers were training (left to them).
    pub busy: usize,
    /// Cells that another worker published while this one ran.
    pub done_elsewhere: usize,
    /// Cells that failed in another worker during this run (not retried by this one).
    pub failed_elsewhere: usize,
    /// Cells this worker lost to another (its lease was taken over while it stalled).
    pub lost: Vec<String>,
    /// Stopped by a signal: the cell in training was left pending.
    pub stopped: Option<String>,
}

/// Runs the profile's pending cells (those of this shard), in plan order, leasing each first:
/// cells that other workers hold are left to them, stale leases are taken over.
pub fn run(protocol: &Protocol, profile: &str, runs: &Runs, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    fs::create_dir_all(runs.cells_dir()).with_context(|| format!("creating {}", runs.cells_dir().display()))?;
    let leases = Leases::new(runs.root(), Worker::this_process(), options.lease_timing)?;
    let mut report = RunReport { restarted_incomplete: runs.clear_incomplete(&leases)?, ..Default::default() };
    let plan = plan(protocol, profile, runs, options.device, options.drop_stand_ins)?;
    let reported_with = protocol.profiles.get(profile).and_then(|p| p.reported_with.as_deref());
    runs.write_profile(profile, reported_with, &plan.cells.iter().map(|c| c.info.clone()).collect::<Vec<_>>())?;
    let mine: Vec<&PlannedCell> = plan
        .cells
        .iter()
        .enumerate()
        .filter(|(k, _)| options.shard.is_none_or(|(i, n)| k % n == i - 1))
        .map(|(_, c)| c)
        .collect();
    let todo: Vec<&PlannedCell> = mine.iter().copied().filter(|c| matches!(c.state, CellState::Pending | CellState::Failed(_))).collect();
    report.skipped_done = mine.iter().filter(|c| c.state == CellState::Done).count();
    report.unsupported = mine.iter().filter(|c| matches!(c.state, CellState::Unsupported(_))).count();
    let total_estimate: f64 = todo.iter().map(|c| c.estimate.unwrap_or(60.0)).sum();
    let multi = MultiProgress::new();
    if !options.show_progress {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let grid_bar = multi.add(ProgressBar::new(total_estimate.ceil() as u64));
    grid_bar.set_style(
        ProgressStyle::with_template("grid [{bar:30}] {msg} elapsed {elapsed_precise}, ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let emit = |event: serde_json::Value| {
        if let Some(sink) = &options.events {
            sink(event);
        }
    };
    let mut data_cache: HashMap<String, TaskData> = HashMap::new();
    let mut spent_estimate = 0.0f64;
    let mut attempted = 0;
    for (k, cell) in todo.iter().enumerate() {
        grid_bar.set_position(spent_estimate.min(total_estimate).ceil() as u64);
        spent_estimate += cell.estimate.unwrap_or(60.0);
        if options.shutdown.load(Ordering::Relaxed) {
            report.stopped = Some("a stop signal arrived".into());
            break;
        }
        if options.max_cells.is_some_and(|m| attempted >= m) {
            break;
        }
        let info = &cell.info;
        if runs.is_done(&info.hash) {
            report.done_elsewhere += 1;
            continue;
        }
        if runs.failed_since(&info.hash, started_at) {
            report.failed_elsewhere += 1;
            continue;
        }
        let Some(lease) = leases.try_lease(&info.hash, &info.label())? else {
            report.busy += 1;
            continue;
        };
        // Published by another worker between the check above and the lease.
        if runs.is_done(&info.hash) {
            lease.release("released: already published");
            report.done_elsewhere += 1;
            continue;
        }
        attempted += 1;
        grid_bar.set_message(format!("cell {}/{}: {}", k + 1, todo.len(), info.label()));
        let iterations = info.spec.as_ref().map_or(0, |s| s.schedule.iterations);
        emit(serde_json::json!({"event": "cell-start", "label": info.label(), "hash": info.hash, "iterations": iterations}));
        let end = |outcome: &str, error: Option<&str>| serde_json::json!({"event": "cell-end", "label": info.label(), "hash": info.hash, "outcome": outcome, "error": error});
        match run_leased_cell(runs, info, &lease, options, &multi, &mut data_cache) {
            Ok(CellOutcome::Published(summary)) => {
                let diverged = matches!(summary.status, baselines::train::RunStatus::Diverged { .. });
                if let baselines::train::RunStatus::Diverged { iteration, reason } = &summary.status {
                    report.diverged.push(format!("{} (iteration {iteration}: {reason})", info.label()));
                }
                report.ran += 1;
                lease.release("published");
                emit(end(if diverged { "diverged" } else { "published" }, None));
            }
            Ok(CellOutcome::PublishedElsewhere) => {
                report.done_elsewhere += 1;
                lease.release("discarded: another worker published the cell first");
                emit(end("published-elsewhere", None));
            }
            Ok(CellOutcome::Lost) => {
                report.lost.push(info.label());
                lease.release("discarded: the lease was lost while training");
                emit(end("lost", None));
            }
            Ok(CellOutcome::Stopped(why)) => {
                lease.release(&format!("released: {why}; the cell stays pending"));
                emit(end("stopped", Some(&why)));
                report.stopped = Some(why);
                break;
            }
            Err(e) => {
                let msg = format!("{e:#}");
                fs::write(runs.failed_file(&info.hash), &msg)?;
                lease.release("failed");
                emit(end("failed", Some(&msg)));
                report.failed.push((info.label(), msg));
            }
        }
    }
    emit(match &report.stopped {
        Some(why) => serde_json::json!({"event": "stopped", "reason": why}),
        None => serde_json::json!({"event": "idle", "busy": report.busy}),
    });
    grid_bar.finish_and_clear();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

enum CellOutcome {
    Published(RunSummary),
    PublishedElsewhere,
    Lost,
    Stopped(String),
}

/// Trains a leased cell in a folder of its own and publishes it (rename onto the cell's name).
/// Errors are the cell's failures; stops and lost leases are outcomes.
fn run_leased_cell(runs: &Runs, info: &CellInfo, lease: &Lease, options: &RunOptions, multi: &MultiProgress, data_cache: &mut HashMap<String, TaskData>) -> Result<CellOutcome> {
    let spec = info.spec.as_ref().expect("pending cells have a spec");
    // Folders of earlier owners of this cell (killed, or stopped past the timeout).
    runs.remove_tmp_folders(&info.hash)?;
    // Image cells of one task differ in their transforms (per baseline): part of the key.
    let key = format!("{}|{:?}|{:?}", spec.task.name(), spec.stand_ins, spec.images);
    if !data_cache.contains_key(&key) {
        let mut load = baselines::data::image_task::LoadOptions::default();
        if let Some(threads) = options.decode_threads {
            load.pipeline.workers = threads.max(1);
        }
        let data = execute::load_data(spec, &options.data_root, &load, options.device)?;
        data_cache.insert(key.clone(), data);
    }
    let data = &data_cache[&key];
    let tmp = runs.cells_dir().join(format!(".tmp-{}-{}", info.hash, lease::owner_tag(lease.owner())));
    // Training stops when the worker is told to stop or loses the cell's lease.
    let (shutdown, lost) = (options.shutdown.clone(), lease.lost_flag());
    let mut progress = ProgressObserver::new(spec.schedule.iterations, &format!("  {} {}", info.baseline, info.harmonizer), options.show_progress)
        .attach(multi)
        .stop_when(move || {
            if lost.load(Ordering::Relaxed) {
                Some("its lease was taken over by another worker".into())
            } else if shutdown.load(Ordering::Relaxed) {
                Some("a stop signal arrived".into())
            } else {
                None
            }
        })
        .events(options.events.clone());
    let load_start = LoadSnapshot::now();
    let wall = std::time::Instant::now();
    let outcome = execute::execute(spec, data, &options.data_root, options.device, &tmp, &mut progress);
    let wall_seconds = wall.elapsed().as_secs_f64();
    let load_end = LoadSnapshot::now();
    progress.finish();
    let summary = match outcome {
        Ok((summary, _)) => summary,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            if let Some(stopped) = e.downcast_ref::<baselines::train::RunStopped>() {
                return Ok(if lease.is_held() { CellOutcome::Stopped(stopped.reason.clone()) } else { CellOutcome::Lost });
            }
            // Another worker took the cell over and removed this folder under us: not a failure.
            if !lease.is_held() {
                return Ok(CellOutcome::Lost);
            }
            return Err(e);
        }
    };
    fs::write(tmp.join("cell.json"), serde_json::to_string_pretty(info)?)?;
    // What else ran while this cell was timed (the report keeps loaded timings out of speed
    // leases), and where its time went (the task's data, loaded once per worker, excluded).
    let timing = record_schema::CellTiming { load_start, load_end, interrupted: None, wall_seconds: Some(wall_seconds), phases: Some(summary.phases.clone()) };
    fs::write(tmp.join("timing.json"), serde_json::to_string_pretty(&timing)?)?;
    fs::write(tmp.join("done"), serde_json::to_string_pretty(&summary)?)?;
    if !lease.is_held() {
        let _ = fs::remove_dir_all(&tmp);
        return Ok(CellOutcome::Lost);
    }
    let target = runs.cell_dir(&info.hash);
    if target.join("done").is_file() {
        let _ = fs::remove_dir_all(&tmp);
        return Ok(CellOutcome::PublishedElsewhere);
    }
    if target.exists() {
        // A folder without its marker (left by an old version): never a published cell.
        fs::remove_dir_all(&target)?;
    }
    // rename fails when the target exists (non-empty): at most one worker publishes a cell.
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_dir_all(&tmp);
        if target.join("done").is_file() {
            return Ok(CellOutcome::PublishedElsewhere);
        }
        return Err(e).with_context(|| format!("publishing {}", target.display()));
    }
    let _ = fs::remove_file(runs.failed_file(&info.hash));
    Ok(CellOutcome::Published(summary))
}

/// The plan as text (`bench-suite plan`).
pub fn render_plan(plan: &Plan, runs: &Runs, shard: Option<(usize, usize)>) -> String {
    let mut out = String::new();
    let (pending_s, unknown) = plan.pending_estimate();
    out.push_str(&format!("profile {} — {} cells under {}\n", plan.profile, plan.cells.len(), runs.root().display()));
    out.push_str(&format!(
        "  done {}, pending {}, failed last time {}, not runnable in this build {}\n",
        plan.count(|s| *s == CellState::Done),
        plan.count(|s| *s == CellState::Pending),
        plan.count(|s| matches!(s, CellState::Failed(_))),
        plan.count(|s| matches!(s, CellState::Unsupported(_))),
    ));
    out.push_str(&format!(
        "  estimated time for the pending cells: {}{}\n  ({})\n",
        human_duration(pending_s),
        if unknown > 0 { format!(" + {unknown} cell(s) without a cost estimate") } else { String::new() },
        plan.cost_note
    ));
    if let Some((i, n)) = shard {
        out.push_str(&format!("  shard {i}/{n}: cells k with k mod {n} = {}\n", i - 1));
    }
    out.push_str(&format!("\n{:<12} {:>6} {:>9} {:>6} {:>8} {:>16}\n", "dataset", "cells", "runnable", "done", "pending", format!("est. {} hours", plan.device_kind)));
    let mut datasets: Vec<&str> = Vec::new();
    for c in &plan.cells {
        if !datasets.contains(&c.info.dataset.as_str()) {
            datasets.push(&c.info.dataset);
        }
    }
    for d in datasets {
        let of: Vec<&PlannedCell> = plan.cells.iter().filter(|c| c.info.dataset == d).collect();
        let pending: Vec<&&PlannedCell> = of.iter().filter(|c| matches!(c.state, CellState::Pending | CellState::Failed(_))).collect();
        let hours: f64 = pending.iter().filter_map(|c| c.estimate).fold(0.0, |a, b| a + b) / 3600.0;
        let priors = pending.iter().any(|c| c.estimate.is_some() && !c.measured);
        let unknown = pending.iter().filter(|c| c.estimate.is_none()).count();
        out.push_str(&format!(
            "{:<12} {:>6} {:>9} {:>6} {:>8} {:>16}\n",
            d,
            of.len(),
            of.iter().filter(|c| !matches!(c.state, CellState::Unsupported(_))).count(),
            of.iter().filter(|c| c.state == CellState::Done).count(),
            pending.len(),
            format!("{hours:.1}{}{}", if priors { " (prior)" } else { "" }, if unknown > 0 { format!(" +{unknown}?") } else { String::new() })
        ));
    }
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    out.push_str(&format!("\n{:<6} {:<18} {:<10} {:<35} {:>4} {:>18}  {}\n", "state", "task", "baseline", "harmonizer", "seed", "estimate", "hash"));
    for (k, c) in plan.cells.iter().enumerate() {
        if let CellState::Unsupported(why) = &c.state {
            *unsupported.entry(why.clone()).or_default() += 1;
            continue;
        }
        if shard.is_some_and(|(i, n)| k % n != i - 1) {
            continue;
        }
        let state = match &c.state {
            CellState::Done => "done",
            CellState::Pending => "todo",
            CellState::Failed(_) => "FAILED",
            CellState::Unsupported(_) => unreachable!(),
        };
        out.push_str(&format!(
            "{:<6} {:<18} {:<10} {:<35} {:>4} {:>18}  {}\n",
            state,
            format!("{}/{}", c.info.dataset, c.info.task),
            c.info.baseline,
            c.info.harmonizer,
            c.info.seed,
            c.estimate.map(|e| format!("{}{}", human_duration(e), if c.measured { "" } else { " (prior)" })).unwrap_or_else(|| "?".into()),
            c.info.hash
        ));
        if let CellState::Failed(why) = &c.state {
            out.push_str(&format!("       last error: {why}\n"));
        }
    }
    for (why, n) in unsupported {
        out.push_str(&format!("\nnot runnable in this build ({n} cells): {why}\n"));
    }
    out
}

pub fn human_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}
