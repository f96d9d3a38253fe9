//! Executes one run: loads the task's data, trains, writes the run record. Used by `run-one` and
//! by every cell of the grid.

use anyhow::{Context, Result};
use baselines::data::image_task::LoadOptions;
use baselines::data::{load_task, TaskData};
use baselines::record::{JsonlRecorder, RunContext, Tee};
use baselines::train::{self, Evaluation, RunObserver, RunSpec, RunSummary};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use tch::Device;

/// Shows a run's progress: iterations, ETA, the last evaluation.
pub struct ProgressObserver {
    bar: ProgressBar,
    stop: Option<Box<dyn Fn() -> Option<String>>>,
    events: Option<crate::runner::EventSink>,
    last_event: Option<std::time::Instant>,
}

impl ProgressObserver {
    pub fn new(total: u64, label: &str, visible: bool) -> Self {
        let bar = if visible { ProgressBar::new(total) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} it, {per_sec}, ETA {eta} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        ProgressObserver { bar, stop: None, events: None, last_event: None }
    }

    /// Also reports progress as events (at most a few per second).
    pub fn events(self, sink: Option<crate::runner::EventSink>) -> Self {
        ProgressObserver { events: sink, ..self }
    }

    /// Asks `reason` after every iteration; a reason stops the run (see `RunObserver::stop_requested`).
    pub fn stop_when(self, reason: impl Fn() -> Option<String> + 'static) -> Self {
        ProgressObserver { stop: Some(Box::new(reason)), ..self }
    }

    /// Shows the bar inside a group of bars (the grid's).
    pub fn attach(self, multi: &indicatif::MultiProgress) -> Self {
        let bar = multi.add(self.bar.clone());
        ProgressObserver { bar, ..self }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl RunObserver for ProgressObserver {
    fn evaluation(&mut self, eval: &Evaluation) -> Result<()> {
        self.bar.set_message(format!("target acc {:.2}% @ {}", 100.0 * eval.accuracy, eval.iteration));
        Ok(())
    }

    fn progress(&mut self, iteration: u64) {
        self.bar.set_position(iteration);
        if let Some(sink) = &self.events {
            let now = std::time::Instant::now();
            if self.last_event.is_none_or(|t| now.duration_since(t).as_millis() >= 250) {
                self.last_event = Some(now);
                sink(serde_json::json!({"event": "progress", "iteration": iteration}));
            }
        }
    }

    fn stop_requested(&self) -> Option<String> {
        self.stop.as_ref().and_then(|f| f())
    }
}

/// Loads the data of a run (a spec's task and stand-ins; own data read like the digits where the
/// spec says so).
pub fn load_data(spec: &RunSpec, data_root: &Path, options: &LoadOptions, device: Device) -> Result<TaskData> {
    let loaded = match (&spec.task, spec.digits_input) {
        (baselines::data::Task::Own { source, target }, Some(format)) => baselines::data::own_digits::load(source, target, format, device),
        _ => load_task(data_root, &spec.task, &spec.stand_ins, spec.images.as_ref(), options, device),
    };
    loaded.with_context(|| format!("loading the data of {} from {}", spec.task.short_name(), data_root.display()))
}

/// Trains `spec` and leaves its record in `out_dir/run.jsonl` (complete runs only).
pub fn execute(spec: &RunSpec, data: &TaskData, data_root: &Path, device: Device, out_dir: &Path, progress: &mut dyn RunObserver) -> Result<(RunSummary, PathBuf)> {
    let context = RunContext {
        device: baselines::device::describe(device),
        torch_threads: tch::get_num_threads(),
        data_root: data_root.display().to_string(),
        source_train: data.source_train.description().to_owned(),
        target_train: data.target_train.description().to_owned(),
        target_test: data.target_test.description().to_owned(),
        deviations: train::deviations(spec, data),
        suite_version: env!("CARGO_PKG_VERSION").to_owned(),
        libtorch: baselines::device::libtorch_version(),
        cuda: baselines::device::cuda_versions(device),
        gpu: baselines::numerics::gpu_identity(device),
        numerics: baselines::numerics::asked().changes_results_on(device).then(baselines::numerics::in_force_now),
        started_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    };
    let mut recorder = JsonlRecorder::create(out_dir, spec, &context)?;
    let summary = train::run(spec, data, device, &mut Tee(&mut recorder, progress))?;
    let path = recorder.finish(&summary)?;
    Ok((summary, path))
}
