//! The input pipeline of image tasks: batches of transformed images decoded on a rayon pool by a
//! producer thread, a bounded queue of ready uint8 batches (the step never waits while the CPU
//! keeps up), and normalisation (ImageNet mean/std) on the device. On CUDA the host batch is
//! pinned and copied without blocking.
//!
//! Determinism: a stream's order is a fresh seeded permutation per pass (drop_last: a batch never
//! spans two passes), and each sample's random draws come from (stream seed, pass, position), so a
//! (task, seed) gives the same batches whatever the number of workers or the queue depth.

use super::decode::decode_file;
use super::decoded_cache::DecodedCache;
use super::image_list::ImageList;
use super::transform::{finish, resize_square, sample_rng, splitmix, ImageInput, Mode};
use anyhow::{Context, Result};
use fast_image_resize::Resizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// ImageNet normalisation (torchvision's).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

thread_local! {
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Runs `f` with this thread's resizer (its scratch buffers are reused).
pub fn with_resizer<T>(f: impl FnOnce(&mut Resizer) -> T) -> T {
    RESIZER.with(|r| f(&mut r.borrow_mut()))
}

/// Image `i` of `list` decoded and given the transform's first, deterministic step (the square
/// resize): what the decoded cache stores, and what the pipeline computes without it.
pub fn decode_resized(list: &ImageList, i: usize, input: &ImageInput, resizer: &mut Resizer) -> Result<super::decode::Rgb> {
    let decoded = decode_file(&list.entries[i].path).with_context(|| list.locate(i))?;
    resize_square(resizer, decoded, input)
}

/// How many decoding threads, and how many ready batches may wait.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    pub workers: usize,
    pub prefetch: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        PipelineOptions { workers, prefetch: 4 }
    }
}

impl PipelineOptions {
    pub fn pool(&self) -> Result<Arc<rayon::ThreadPool>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.workers.max(1))
            .thread_name(|i| format!("decode-{i}"))
            .build()
            .context("starting the image decoding threads")?;
        Ok(Arc::new(pool))
    }
}

/// The images of one set of a task, and how they are read.
pub struct FileSet {
    pub list: Arc<ImageList>,
    pub cache: Option<Arc<DecodedCache>>,
    pub input: ImageInput,
    pub pool: Arc<rayon::ThreadPool>,
    pub options: PipelineOptions,
    pub description: String,
}

impl FileSet {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The same images under another description (the target list read as the test set).
    pub fn with_description(&self, description: String) -> FileSet {
        FileSet {
            list: self.list.clone(),
            cache: self.cache.clone(),
            input: self.input,
            pool: self.pool.clone(),
            options: self.options,
            description,
        }
    }

    /// Sample `i` transformed in `mode`, as CHW bytes into `out`.
    pub fn transform_into(&self, i: usize, mode: Mode, rng: &mut impl rand::Rng, out: &mut [u8]) -> Result<()> {
        let input = &self.input;
        with_resizer(|resizer| {
            if let Some(view) = self.cache.as_ref().and_then(|c| c.get(i)) {
                return finish(resizer, view, input, mode, rng, out);
            }
            let resized = decode_resized(&self.list, i, input, resizer)?;
            finish(resizer, resized.view(), input, mode, rng, out)
        })
    }

    /// Endless training batches of `batch` images (fewer only if the set is smaller), normalised
    /// for `device`: on CUDA as uint8 normalised there, on the CPU by the decoding workers.
    pub fn train_stream(self: &Arc<Self>, batch: usize, seed: u64, mode: Mode, device: Device) -> Loader {
        self.train_stream_as(batch, seed, mode, device, HostOutput::for_device(device))
    }

    /// Like [`FileSet::train_stream`], choosing what the host hands over.
    pub fn train_stream_as(self: &Arc<Self>, batch: usize, seed: u64, mode: Mode, device: Device, output: HostOutput) -> Loader {
        let batch = batch.min(self.len()).max(1);
        let n = self.len();
        let mut order: (u64, Vec<usize>) = (u64::MAX, Vec::new());
        let plan = move |k: u64| -> Option<(u64, Vec<(usize, u64)>)> {
            let per_pass = (n / batch) as u64;
            let (pass, b) = (k / per_pass, (k % per_pass) as usize);
            if order.0 != pass {
                let mut fresh: Vec<usize> = (0..n).collect();
                fresh.shuffle(&mut rand::rngs::StdRng::seed_from_u64(splitmix(seed ^ splitmix(pass))));
                order = (pass, fresh);
            }
            Some((pass, (b * batch..(b + 1) * batch).map(|p| (order.1[p], p as u64)).collect()))
        };
        Loader::start(self.clone(), Box::new(plan), batch, seed, mode, device, output)
    }

    /// Every image once, in list order, in chunks of `chunk`, with the test transform.
    pub fn eval_stream(self: &Arc<Self>, chunk: usize, device: Device) -> Loader {
        let n = self.len();
        let plan = move |k: u64| -> Option<(u64, Vec<(usize, u64)>)> {
            let start = k as usize * chunk;
            (start < n).then(|| (0, (start..(start + chunk).min(n)).map(|i| (i, i as u64)).collect()))
        };
        Loader::start(self.clone(), Box::new(plan), chunk, 0, Mode::Test, device, HostOutput::for_device(device))
    }
}

/// Upper bound on the bytes of ready batches waiting in a queue.
const QUEUE_BYTES: usize = 1 << 30;

/// Batches that may wait: `prefetch`, but at most QUEUE_BYTES of them, and at least one.
fn queue_depth(prefetch: usize, batch_bytes: usize) -> usize {
    prefetch.max(1).min((QUEUE_BYTES / batch_bytes.max(1)).max(1))
}

/// Bytes of a batch of `batch` samples as handed over.
fn batch_bytes(batch: usize, side: usize, output: HostOutput) -> usize {
    batch * 3 * side * side * if output == HostOutput::Normalised { 4 } else { 1 }
}

type Plan = Box<dyn FnMut(u64) -> Option<(u64, Vec<(usize, u64)>)> + Send>;

/// What the decoding side hands over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOutput {
    /// uint8 CHW, normalised on the device (CUDA: a quarter of the bytes to copy, and the
    /// arithmetic on the GPU).
    Uint8,
    /// float CHW normalised by the decoding workers (CPU training: in parallel, no extra pass).
    Normalised,
}

impl HostOutput {
    pub fn for_device(device: Device) -> HostOutput {
        if device.is_cuda() {
            HostOutput::Uint8
        } else {
            HostOutput::Normalised
        }
    }
}

enum Pixels {
    Uint8(Vec<u8>),
    Float(Vec<f32>),
}

struct RawBatch {
    pixels: Pixels,
    labels: Vec<i64>,
}

/// Per channel 1/(255·std) and −mean/std: (x/255 − mean)/std = x·scale + shift.
fn normalisation() -> ([f32; 3], [f32; 3]) {
    let scale = IMAGENET_STD.map(|s| (1.0 / (255.0 * s)) as f32);
    let shift = [0, 1, 2].map(|c| (-IMAGENET_MEAN[c] / IMAGENET_STD[c]) as f32);
    (scale, shift)
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A running stream of batches; dropping it stops its producer.
pub struct Loader {
    rx: Option<Receiver<Result<RawBatch>>>,
    producer: Option<JoinHandle<()>>,
    side: i64,
    device: Device,
    /// Per channel 1/(255·std) and −mean/std, on the device.
    scale: Tensor,
    shift: Tensor,
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    fn start(set: Arc<FileSet>, mut plan: Plan, batch: usize, seed: u64, mode: Mode, device: Device, output: HostOutput) -> Loader {
        let side = set.input.crop as usize;
        // At most `prefetch` batches, and at most QUEUE_BYTES of them (DWL's 1000-image statistics
        // batches at 224×224 would otherwise queue gigabytes), but always one.
        let depth = queue_depth(set.options.prefetch, batch_bytes(batch, side, output));
        let (tx, rx) = sync_channel::<Result<RawBatch>>(depth);
        let producer = std::thread::Builder::new()
            .name("batch-producer".into())
            .spawn(move || {
                let sample_bytes = 3 * side * side;
                let mut k = 0u64;
                let (scale, shift) = normalisation();
                let plane = side * side;
                while let Some((pass, items)) = plan(k) {
                    let (result, pixels) = match output {
                        HostOutput::Uint8 => {
                            let mut pixels = vec![0u8; items.len() * sample_bytes];
                            let result: Result<()> = set.pool.install(|| {
                                pixels.par_chunks_mut(sample_bytes).zip(items.par_iter()).try_for_each(|(out, &(index, position))| {
                                    set.transform_into(index, mode, &mut sample_rng(seed, pass, position), out)
                                })
                            });
                            (result, Pixels::Uint8(pixels))
                        }
                        HostOutput::Normalised => {
                            let mut pixels = vec![0f32; items.len() * sample_bytes];
                            let result: Result<()> = set.pool.install(|| {
                                pixels.par_chunks_mut(sample_bytes).zip(items.par_iter()).try_for_each(|(out, &(index, position))| {
                                    SCRATCH.with(|scratch| {
                                        let mut bytes = scratch.borrow_mut();
                                        bytes.resize(sample_bytes, 0);
                                        set.transform_into(index, mode, &mut sample_rng(seed, pass, position), &mut bytes)?;
                                        for c in 0..3 {
                                            let (src, dst) = (&bytes[c * plane..(c + 1) * plane], &mut out[c * plane..(c + 1) * plane]);
                                            for (d, &v) in dst.iter_mut().zip(src) {
                                                *d = v as f32 * scale[c] + shift[c];
                                            }
                                        }
                                        Ok(())
                                    })
                                })
                            });
                            (result, Pixels::Float(pixels))
                        }
                    };
                    let labels = items.iter().map(|&(i, _)| set.list.entries[i].label as i64).collect();
                    let message = result.map(|_| RawBatch { pixels, labels });
                    let failed = message.is_err();
                    if tx.send(message).is_err() || failed {
                        return;
                    }
                    k += 1;
                }
            })
            .expect("spawning the batch producer thread");
        let (scale, shift) = normalisation();
        Loader {
            rx: Some(rx),
            producer: Some(producer),
            side: side as i64,
            device,
            scale: Tensor::from_slice(&scale).view([1, 3, 1, 1]).to_device(device),
            shift: Tensor::from_slice(&shift).view([1, 3, 1, 1]).to_device(device),
        }
    }

    /// The next batch as the host hands it over (uint8, or float already normalised: see
    /// [`HostOutput`]) N×3×S×S with int64 labels, or None when a finite stream ends.
    pub fn next_raw(&mut self) -> Result<Option<(Tensor, Tensor)>> {
        let rx = self.rx.as_ref().expect("loader is running");
        match rx.recv() {
            Ok(Ok(raw)) => {
                let n = raw.labels.len() as i64;
                let images = match &raw.pixels {
                    Pixels::Uint8(p) => Tensor::from_slice(p),
                    Pixels::Float(p) => Tensor::from_slice(p),
                };
                Ok(Some((images.view([n, 3, self.side, self.side]), Tensor::from_slice(&raw.labels))))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The next batch normalised on the device (float N×3×S×S) with its labels there.
    pub fn next_batch(&mut self) -> Result<Option<(Tensor, Tensor)>> {
        Ok(self.next_raw()?.map(|(images, labels)| {
            let (images, labels) = (crate::device::upload(&images, self.device), crate::device::upload(&labels.to_kind(Kind::Int64), self.device));
            if images.kind() == Kind::Uint8 {
                // (x/255 − mean)/std as one fused multiply-add on the device.
                (self.shift.addcmul(&images.to_kind(Kind::Float), &self.scale), labels)
            } else {
                (images, labels)
            }
        }))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the queue makes the producer's next send fail, so it stops.
        self.rx.take();
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_holds_at_most_a_gibibyte_of_batches_but_always_one() {
        // Batch 36 at 224×224: uint8 5.4 MB, float 21.7 MB; both fit the asked depth.
        assert_eq!(queue_depth(4, batch_bytes(36, 224, HostOutput::Uint8)), 4);
        assert_eq!(queue_depth(4, batch_bytes(36, 224, HostOutput::Normalised)), 4);
        // DWL's 1000-image statistics batch as floats (602 MB): one.
        assert_eq!(queue_depth(4, batch_bytes(1000, 224, HostOutput::Normalised)), 1);
        assert_eq!(queue_depth(4, batch_bytes(1000, 224, HostOutput::Uint8)), 4.min(QUEUE_BYTES / 150_528_000));
        assert_eq!(queue_depth(0, 1), 1);
        assert_eq!(queue_depth(3, usize::MAX), 1);
    }
}
