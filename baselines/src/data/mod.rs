//! Data: tasks ([`task`]), the digits readers (one file per format) with the digits transforms,
//! split stand-ins and seeded batch sampling (this file), and the image benchmarks and the image
//! pipeline, all in the [`images`] folder ([`benchmarks`], [`image_list`], [`decode`],
//! [`transform`], [`decoded_cache`], [`pipeline`], [`image_task`]).
//!
//! Transforms (docs/design/protocols.md): M↔U at 28×28 grey (USPS upsampled from 16×16), S→M at 32×32 RGB
//! (MNIST upsampled and replicated to three channels); pixels scaled to [0, 1], then normalised
//! with mean 0.5 and std 0.5 (so [-1, 1]).

pub mod digits;
pub mod images;
pub mod synthetic;
pub mod task;

pub use digits::{mnist, own_digits, svhn, usps};

// The image pipeline's modules, also at their former paths (`data::pipeline`, ...).
pub use images::{benchmarks, decode, decoded_cache, image_list, image_task, pipeline, transform};

pub use task::Task;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Reads a file, transparently decompressing gzip or bzip2 (recognised by their magic bytes).
pub fn read_maybe_compressed(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
        Ok(out)
    } else if raw.starts_with(b"BZh") {
        bzip2::read::MultiBzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt or truncated bzip2 data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    Mnist,
    Usps,
    Svhn,
}

impl Domain {
    pub fn name(self) -> &'static str {
        match self {
            Domain::Mnist => "mnist",
            Domain::Usps => "usps",
            Domain::Svhn => "svhn",
        }
    }

    /// The paper's letter: M, U, S.
    pub fn letter(self) -> &'static str {
        match self {
            Domain::Mnist => "M",
            Domain::Usps => "U",
            Domain::Svhn => "S",
        }
    }

    /// A domain by name (mnist) or letter (M).
    pub fn parse(s: &str) -> Result<Domain> {
        match s {
            "mnist" | "M" => Ok(Domain::Mnist),
            "usps" | "U" => Ok(Domain::Usps),
            "svhn" | "S" => Ok(Domain::Svhn),
            _ => bail!("unknown digits domain '{s}': expected mnist, usps or svhn"),
        }
    }

    /// Images in `split` as the readers find them in the published files (MNIST 60,000 / 10,000,
    /// USPS 7,291 / 2,007, SVHN 73,257 / 26,032): data-derived epochs are planned from these
    /// before any data is read (checked against the readers by test, and against the loaded data
    /// by every run).
    pub fn split_size(self, split: Split) -> usize {
        match (self, split) {
            (Domain::Mnist, Split::Train) => 60_000,
            (Domain::Mnist, Split::Test) => 10_000,
            (Domain::Usps, Split::Train) => 7_291,
            (Domain::Usps, Split::Test) => 2_007,
            (Domain::Svhn, Split::Train) => 73_257,
            (Domain::Svhn, Split::Test) => 26_032,
        }
    }

    /// The file holding `split`, relative to the data root (the layout data-fetch produces; see
    /// data-fetch/manifest.toml).
    pub fn files(self, split: Split) -> (&'static str, Option<&'static str>) {
        match (self, split) {
            (Domain::Mnist, Split::Train) => ("mnist/train-images-idx3-ubyte", Some("mnist/train-labels-idx1-ubyte")),
            (Domain::Mnist, Split::Test) => ("mnist/t10k-images-idx3-ubyte", Some("mnist/t10k-labels-idx1-ubyte")),
            (Domain::Usps, Split::Train) => ("usps/usps.bz2", None),
            (Domain::Usps, Split::Test) => ("usps/usps.t.bz2", None),
            (Domain::Svhn, Split::Train) => ("svhn/train_32x32.mat", None),
            (Domain::Svhn, Split::Test) => ("svhn/test_32x32.mat", None),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => bail!("unknown split '{s}': expected train or test"),
        }
    }
}

/// The image format a task trains at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigitsFormat {
    /// 1×28×28 (LeNet): MNIST ↔ USPS.
    Grey28,
    /// 3×32×32 (DTN): SVHN → MNIST.
    Rgb32,
}

impl DigitsFormat {
    pub fn channels(self) -> i64 {
        match self {
            DigitsFormat::Grey28 => 1,
            DigitsFormat::Rgb32 => 3,
        }
    }

    pub fn side(self) -> i64 {
        match self {
            DigitsFormat::Grey28 => 28,
            DigitsFormat::Rgb32 => 32,
        }
    }
}

/// A digits transfer task: `mnist-usps`, `usps-mnist`, `svhn-mnist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DigitsTask {
    pub source: Domain,
    pub target: Domain,
}

impl DigitsTask {
    pub fn parse(s: &str) -> Result<DigitsTask> {
        let (a, b) = s.split_once('-').with_context(|| format!("task '{s}': expected <source>-<target>, e.g. mnist-usps"))?;
        let task = DigitsTask { source: Domain::parse(a)?, target: Domain::parse(b)? };
        if task.source == task.target {
            bail!("task '{s}': source and target are the same domain");
        }
        Ok(task)
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.source.name(), self.target.name())
    }

    /// The paper's short name (M→U, U→M, S→M).
    pub fn short_name(&self) -> String {
        self.id().replace('-', "→")
    }

    /// The protocol file's task id (M-U, U-M, S-M).
    pub fn id(&self) -> String {
        format!("{}-{}", self.source.letter(), self.target.letter())
    }

    /// 32×32 RGB whenever SVHN is involved (DTN), else 28×28 grey (LeNet).
    pub fn format(&self) -> DigitsFormat {
        if self.source == Domain::Svhn || self.target == Domain::Svhn {
            DigitsFormat::Rgb32
        } else {
            DigitsFormat::Grey28
        }
    }
}

impl TryFrom<String> for DigitsTask {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        DigitsTask::parse(&s)
    }
}

impl From<DigitsTask> for String {
    fn from(t: DigitsTask) -> String {
        t.name()
    }
}

/// For some domains a split other than `train` plays the train role (data unavailable here).
/// Always recorded with the run as a deviation; never applied silently.
pub type SplitStandIns = BTreeMap<Domain, Split>;

/// Images in the source and target training sets of a run (what data-derived epochs are made of).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainSizes {
    pub source: usize,
    pub target: usize,
}

impl TrainSizes {
    /// A digits task's training sets, stand-ins applied, from the published split sizes.
    pub fn of_digits(task: DigitsTask, stand_ins: &SplitStandIns) -> TrainSizes {
        let size = |d: Domain| d.split_size(stand_ins.get(&d).copied().unwrap_or(Split::Train));
        TrainSizes { source: size(task.source), target: size(task.target) }
    }

    /// The sizes of loaded training sets.
    pub fn of_data(data: &TaskData) -> TrainSizes {
        TrainSizes { source: data.source_train.len(), target: data.target_train.len() }
    }
}

/// Parses `usps=test` (repeatable on the command line).
pub fn parse_stand_in(s: &str) -> Result<(Domain, Split)> {
    let (d, sp) = s.split_once('=').with_context(|| format!("--split '{s}': expected <domain>=<split>, e.g. usps=test"))?;
    Ok((Domain::parse(d)?, Split::parse(sp)?))
}

/// Images normalised to [-1, 1] as N×C×H×W float, labels as int64, on a device.
#[derive(Debug)]
pub struct ImageSet {
    pub images: Tensor,
    pub labels: Tensor,
    /// e.g. "usps test split (2007 images) as usps train".
    pub description: String,
}

impl ImageSet {
    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One set of a task: digits held on the device, or image files read through the pipeline.
pub enum Samples {
    InMemory(ImageSet),
    Files(std::sync::Arc<pipeline::FileSet>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::InMemory(s) => s.len() as usize,
            Samples::Files(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn description(&self) -> &str {
        match self {
            Samples::InMemory(s) => &s.description,
            Samples::Files(f) => &f.description,
        }
    }
}

/// The three sets of a task.
pub struct TaskData {
    pub source_train: Samples,
    pub target_train: Samples,
    pub target_test: Samples,
    /// The class count (from the dataset; for your own data, from its folders or lists).
    pub classes: i64,
    /// One sentence per stand-in used, or per data note (files left out).
    pub deviations: Vec<String>,
    /// Where pretrained backbone weights are looked up: the data root data-fetch fills
    /// (`<root>/resnet50/…`); None for in-memory tasks.
    pub weights_root: Option<std::path::PathBuf>,
}

/// Loads any task: digits into device memory (with stand-ins), image tasks as file sets read
/// through the pipeline at `input`.
pub fn load_task(
    root: &Path,
    task: &Task,
    stand_ins: &SplitStandIns,
    input: Option<&transform::ImageInput>,
    options: &image_task::LoadOptions,
    device: Device,
) -> Result<TaskData> {
    match (task, input) {
        (Task::Digits(t), None) => load_digits_task(root, *t, stand_ins, device),
        (Task::Digits(t), Some(_)) => bail!("{}: digits tasks take no image input settings", t.name()),
        (_, Some(input)) => {
            if !stand_ins.is_empty() {
                bail!("split stand-ins (--split) apply to digits tasks only");
            }
            image_task::load_image_task(root, task, input, options)
        }
        (_, None) => bail!("{}: an image task needs its image input settings (resize, crop)", task.name()),
    }
}

pub fn load_digits_task(root: &Path, task: DigitsTask, stand_ins: &SplitStandIns, device: Device) -> Result<TaskData> {
    let format = task.format();
    let mut deviations = Vec::new();
    let mut train_role = |domain: Domain| -> Result<ImageSet> {
        match stand_ins.get(&domain) {
            Some(&split) if split != Split::Train => {
                let set = load(root, domain, split, format, device)?;
                deviations.push(format!(
                    "{d}: the {s} split ({n} images) stands in for the {d} train split",
                    d = domain.name(),
                    s = split.name(),
                    n = set.len()
                ));
                Ok(ImageSet { description: format!("{} ({} split standing in for train)", domain.name(), split.name()), ..set })
            }
            _ => {
                let (file, _) = domain.files(Split::Train);
                if !root.join(file).exists() {
                    bail!(
                        "the {d} train split is not at {} (fetch it with `data-fetch fetch {d}`), or let \
                         another split stand in for it with --split {d}=test (recorded as a deviation)",
                        root.join(file).display(),
                        d = domain.name()
                    );
                }
                load(root, domain, Split::Train, format, device)
            }
        }
    };
    let source_train = train_role(task.source)?;
    let target_train = train_role(task.target)?;
    let target_test = load(root, task.target, Split::Test, format, device)?;
    Ok(TaskData {
        source_train: Samples::InMemory(source_train),
        target_train: Samples::InMemory(target_train),
        target_test: Samples::InMemory(target_test),
        classes: 10,
        deviations,
        weights_root: Some(root.to_path_buf()),
    })
}

/// Loads one split of one domain at the task's format.
pub fn load(root: &Path, domain: Domain, split: Split, format: DigitsFormat, device: Device) -> Result<ImageSet> {
    let (images_file, labels_file) = domain.files(split);
    let path = root.join(images_file);
    let (pixels, labels, side, channels) = match domain {
        Domain::Mnist => {
            let images = mnist::read_images(&path)?;
            let labels_path: PathBuf = root.join(labels_file.expect("mnist has a labels file"));
            let labels = mnist::read_labels(&labels_path)?;
            if labels.len() != images.count {
                bail!("{} holds {} images but {} holds {} labels", path.display(), images.count, labels_path.display(), labels.len());
            }
            if images.rows != 28 || images.cols != 28 {
                bail!("{}: images are {}×{}, expected 28×28", path.display(), images.rows, images.cols);
            }
            (images.pixels, labels, 28, 1)
        }
        Domain::Usps => {
            let d = usps::read(&path)?;
            (d.pixels, d.labels, usps::SIDE as i64, 1)
        }
        Domain::Svhn => {
            let d = svhn::read(&path)?;
            (d.pixels, d.labels, svhn::SIDE as i64, 3)
        }
    };
    let n = labels.len() as i64;
    let images = Tensor::from_slice(&pixels).view([n, channels, side, side]);
    let images = to_format(&images, format).with_context(|| format!("{}", path.display()))?;
    let labels = Tensor::from_slice(&labels).to_kind(Kind::Int64);
    Ok(ImageSet {
        images: images.to_device(device),
        labels: labels.to_device(device),
        description: format!("{} {} split ({n} images)", domain.name(), split.name()),
    })
}

/// u8 N×C×h×w → normalised float N×C'×S×S: bilinear resize (PIL-style, on 0..255, rounded back
/// to bytes like PIL's 8-bit output), channel replication for grey → RGB, then (x/255 − 0.5)/0.5.
pub fn to_format(images: &Tensor, format: DigitsFormat) -> Result<Tensor> {
    let side = format.side();
    let mut x = images.to_kind(Kind::Float);
    if x.size()[2] != side {
        x = x.upsample_bilinear2d([side, side], false, None, None).round().clamp(0.0, 255.0);
    }
    let channels = x.size()[1];
    if format.channels() == 3 && channels == 1 {
        x = x.repeat([1, 3, 1, 1]);
    } else if format.channels() == 1 && channels == 3 {
        // RGB → grey is not part of any protocol task; refuse rather than guess.
        bail!("RGB images cannot be used at the grey 28×28 format");
    }
    Ok((x / 255.0 - 0.5) / 0.5)
}

/// Endless shuffled batches over `n` items: a fresh permutation each pass (like TLL's
/// ForeverDataIterator over a shuffling loader). Seeded, independent of torch's generator.
pub struct BatchSampler {
    n: usize,
    batch: usize,
    rng: rand::rngs::StdRng,
    order: Vec<i64>,
    pos: usize,
}

impl BatchSampler {
    pub fn new(n: usize, batch: usize, seed: u64) -> BatchSampler {
        assert!(n > 0 && batch > 0, "empty data set or batch");
        BatchSampler { n, batch, rng: rand::rngs::StdRng::seed_from_u64(seed), order: Vec::new(), pos: usize::MAX }
    }

    /// Indices of the next batch (wrapping into a new permutation; a batch never spans two).
    pub fn next_indices(&mut self) -> Vec<i64> {
        let batch = self.batch.min(self.n);
        if self.pos == usize::MAX || self.pos + batch > self.n {
            self.order = (0..self.n as i64).collect();
            self.order.shuffle(&mut self.rng);
            self.pos = 0;
        }
        let out = self.order[self.pos..self.pos + batch].to_vec();
        self.pos += batch;
        out
    }

    pub fn next_batch(&mut self, set: &ImageSet) -> (Tensor, Tensor) {
        // Uploaded without waiting (CUDA): a step then queues its work with no host round trip.
        let idx = crate::device::upload(&Tensor::from_slice(&self.next_indices()), set.images.device());
        (set.images.index_select(0, &idx), set.labels.index_select(0, &idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_and_pick_their_format() {
        let t = DigitsTask::parse("mnist-usps").unwrap();
        assert_eq!(t, DigitsTask::parse("M-U").unwrap());
        assert_eq!(t.id(), "M-U");
        assert_eq!(t.format(), DigitsFormat::Grey28);
        assert_eq!(t.short_name(), "M→U");
        assert_eq!(DigitsTask::parse("svhn-mnist").unwrap().format(), DigitsFormat::Rgb32);
        assert!(DigitsTask::parse("mnist-mnist").is_err());
        assert!(DigitsTask::parse("mnist").unwrap_err().to_string().contains("<source>-<target>"));
    }

    #[test]
    fn sampler_is_seeded_and_covers_every_item_each_pass() {
        let mut a = BatchSampler::new(10, 5, 7);
        let mut b = BatchSampler::new(10, 5, 7);
        let mut seen: Vec<i64> = a.next_indices();
        seen.extend(a.next_indices());
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        b.next_indices();
        b.next_indices();
        assert_eq!(a.next_indices(), b.next_indices());
    }

    #[test]
    fn format_upsamples_normalises_and_replicates() {
        let img = Tensor::from_slice(&[0u8, 255, 255, 0]).view([1, 1, 2, 2]);
        let out = to_format(&img, DigitsFormat::Rgb32).unwrap();
        assert_eq!(out.size(), vec![1, 3, 32, 32]);
        assert!(out.min().double_value(&[]) >= -1.0 && out.max().double_value(&[]) <= 1.0);
        let same = Tensor::from_slice(&vec![255u8; 28 * 28]).view([1, 1, 28, 28]);
        let out = to_format(&same, DigitsFormat::Grey28).unwrap();
        assert_eq!(out.min().double_value(&[]), 1.0);
    }
}
