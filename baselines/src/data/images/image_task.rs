//! Loading the three sets of an image task (a benchmark's or your own) as [`FileSet`]s, with the
//! decoded cache where it is on.

use super::benchmarks::Role;
use super::decoded_cache::{CacheMode, DecodedCache};
use super::image_list::ImageList;
use super::pipeline::{FileSet, PipelineOptions};
use crate::data::task::{OwnData, Task};
use super::transform::ImageInput;
use crate::data::{Samples, TaskData};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reports the decoded cache's build: (what, done, total).
pub type CacheProgress = Arc<dyn Fn(&str, usize, usize) + Send + Sync>;

/// How image sets are read (none of it changes a run's result).
#[derive(Clone)]
pub struct LoadOptions {
    pub pipeline: PipelineOptions,
    pub cache: CacheMode,
    /// Where decoded caches live (default: `<data root>/.decoded-cache`).
    pub cache_dir: Option<PathBuf>,
    pub cache_progress: Option<CacheProgress>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { pipeline: PipelineOptions::default(), cache: CacheMode::Auto, cache_dir: None, cache_progress: None }
    }
}

/// Reads a user's folder pair or list pair (labels checked to agree).
pub(crate) fn read_own(source: &OwnData, target: &OwnData) -> Result<(ImageList, ImageList)> {
    let (a, b) = (source.read()?, target.read()?);
    if let (OwnData::Folder(pa), OwnData::Folder(pb)) = (source, target) {
        if a.classes != b.classes {
            let only_a: Vec<&String> = a.classes.iter().filter(|c| !b.classes.contains(c)).collect();
            let only_b: Vec<&String> = b.classes.iter().filter(|c| !a.classes.contains(c)).collect();
            bail!(
                "the two folders must have the same class subfolders: only in {}: {only_a:?}; only in {}: {only_b:?}",
                pa.display(),
                pb.display()
            );
        }
    }
    Ok((a, b))
}

pub fn load_image_task(root: &Path, task: &Task, input: &ImageInput, options: &LoadOptions) -> Result<TaskData> {
    let (source, target, test, descriptions) = match task {
        Task::Benchmark { benchmark, source, target } => {
            let s = benchmark.read(root, *source, Role::Train)?;
            let t = benchmark.read(root, *target, Role::Train)?;
            let e = if *benchmark == super::benchmarks::Benchmark::DomainNet { Some(benchmark.read(root, *target, Role::Test)?) } else { None };
            let d = [benchmark.describe(*source, Role::Train), benchmark.describe(*target, Role::Train), benchmark.describe(*target, Role::Test)];
            (s, t, e, d)
        }
        Task::Own { source, target } => {
            let (s, t) = read_own(source, target)?;
            let d = [format!("{} (source)", s.origin), format!("{} (target)", t.origin), format!("{} (target, test transform)", t.origin)];
            (s, t, None, d)
        }
        Task::Digits(_) => bail!("{} is a digits task, not an image task", task.name()),
    };
    let classes = source.classes.len().max(target.classes.len()) as i64;
    // Data notes (files left out, classes absent from a list), recorded with the run.
    let mut notes: Vec<String> = source.notes.iter().chain(&target.notes).cloned().collect();
    if let Some(e) = &test {
        notes.extend(e.notes.iter().cloned());
    }
    let pool = options.pipeline.pool()?;
    let cache_dir = options.cache_dir.clone().unwrap_or_else(|| root.join(".decoded-cache"));
    let make = |list: ImageList, description: String| -> Result<Arc<FileSet>> {
        let cache = match options.cache {
            CacheMode::Off => None,
            CacheMode::Auto => {
                let what = description.clone();
                let progress = options.cache_progress.clone();
                let report = move |done: usize, total: usize| {
                    if let Some(p) = &progress {
                        p(&what, done, total)
                    }
                };
                match DecodedCache::open_or_build(&list, input, &cache_dir, &pool, &report)
                    .with_context(|| format!("the decoded cache of {}", list.origin))?
                {
                    Ok(c) => Some(Arc::new(c)),
                    Err(why) => {
                        // Speed only: the images are decoded each time instead.
                        eprintln!("note: {why}");
                        None
                    }
                }
            }
        };
        Ok(Arc::new(FileSet {
            description: format!("{description} ({} images, {} classes)", list.len(), list.classes.len()),
            list: Arc::new(list),
            cache,
            input: *input,
            pool: pool.clone(),
            options: options.pipeline,
        }))
    };
    let [ds, dt, de] = descriptions;
    let source_set = make(source, ds)?;
    let target_set = make(target, dt)?;
    let test_set = match test {
        Some(list) => make(list, de)?,
        // The target list itself, read with the test transform (same files, same cache).
        None => Arc::new(target_set.with_description(format!("{de} ({} images)", target_set.len()))),
    };
    Ok(TaskData {
        source_train: Samples::Files(source_set),
        target_train: Samples::Files(target_set),
        target_test: Samples::Files(test_set),
        classes,
        deviations: notes,
        weights_root: Some(root.to_path_buf()),
    })
}
