//! Tiny synthetic digits for tests and smoke runs: an "easy" domain pair where each class is a
//! bright horizontal band at its own height, and the target domain is shifted in brightness and
//! noisier. Also writes such data as MNIST IDX and USPS LIBSVM files, so that whole pipelines
//! (readers, grid, report) can be exercised without the real datasets.

use super::{DigitsFormat, ImageSet, Samples, TaskData};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// `n` images of `side`×`side` bytes (row-major) with labels cycling through 0..10.
/// `domain_shift` brightens the background and adds noise (the target domain).
pub fn band_images(n: usize, side: usize, domain_shift: bool, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * side * side);
    let mut labels = Vec::with_capacity(n);
    let band = (side / 12).max(1);
    for i in 0..n {
        let label = (i % 10) as u8;
        labels.push(label);
        let top = 1 + label as usize * (side - 2) / 10;
        for r in 0..side {
            for _ in 0..side {
                let on = r >= top && r < top + band;
                let base: f64 = if on { 230.0 } else if domain_shift { 70.0 } else { 10.0 };
                let noise: f64 = rng.gen_range(-1.0..1.0) * if domain_shift { 40.0 } else { 15.0 };
                pixels.push((base + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    (pixels, labels)
}

fn image_set(pixels: &[u8], labels: &[u8], side: usize, format: DigitsFormat, device: Device, what: &str) -> ImageSet {
    let n = labels.len() as i64;
    let images = Tensor::from_slice(pixels).view([n, 1, side as i64, side as i64]);
    ImageSet {
        images: super::to_format(&images, format).expect("grey synthetic images fit every format").to_device(device),
        labels: Tensor::from_slice(labels).to_kind(Kind::Int64).to_device(device),
        description: format!("synthetic {what} ({n} images)"),
    }
}

/// An in-memory easy task: source bands, target shifted bands (train and test).
pub fn easy_task(n_train: usize, n_test: usize, format: DigitsFormat, device: Device, seed: u64) -> TaskData {
    let side = 28;
    let (ps, ls) = band_images(n_train, side, false, seed);
    let (pt, lt) = band_images(n_train, side, true, seed + 1);
    let (pe, le) = band_images(n_test, side, true, seed + 2);
    TaskData {
        source_train: Samples::InMemory(image_set(&ps, &ls, side, format, device, "source")),
        target_train: Samples::InMemory(image_set(&pt, &lt, side, format, device, "target")),
        target_test: Samples::InMemory(image_set(&pe, &le, side, format, device, "target test")),
        classes: 10,
        deviations: vec!["synthetic data".to_owned()],
        weights_root: None,
    }
}

/// Writes MNIST IDX files (uncompressed) under `dir/mnist/` and USPS LIBSVM bzip2 files under
/// `dir/usps/` (both splits), laid out as data-fetch lays out the real ones.
pub fn write_fake_digits_root(dir: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir.join("mnist"))?;
    std::fs::create_dir_all(dir.join("usps"))?;
    for (split, n, s) in [("train", n_train, seed), ("t10k", n_test, seed + 1)] {
        let (pixels, labels) = band_images(n, 28, false, s);
        std::fs::write(dir.join(format!("mnist/{split}-images-idx3-ubyte")), idx_images(&pixels, n, 28))?;
        std::fs::write(dir.join(format!("mnist/{split}-labels-idx1-ubyte")), idx_labels(&labels))?;
    }
    for (file, n, s) in [("usps.bz2", n_train, seed + 2), ("usps.t.bz2", n_test, seed + 3)] {
        let (pixels, labels) = band_images(n, 16, true, s);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(libsvm_text(&pixels, &labels, 16).as_bytes())?;
        std::fs::write(dir.join("usps").join(file), bz.finish()?)?;
    }
    Ok(())
}

/// An IDX3 file of `n` images of `side`×`side` bytes.
pub fn idx_images(pixels: &[u8], n: usize, side: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n, side, side] {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// An IDX1 labels file.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend((labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// USPS LIBSVM text: label 1..10 (digit + 1) then `i:v` with v in [-1, 1].
pub fn libsvm_text(pixels: &[u8], labels: &[u8], side: usize) -> String {
    let mut text = String::new();
    for (i, &label) in labels.iter().enumerate() {
        text.push_str(&(label + 1).to_string());
        for (j, &p) in pixels[i * side * side..(i + 1) * side * side].iter().enumerate() {
            text.push_str(&format!(" {}:{:.6}", j + 1, p as f64 / 255.0 * 2.0 - 1.0));
        }
        text.push('\n');
    }
    text
}

/// Writes a small image domain as class folders under `dir/<class>/` (`per_class` images of
/// `width`×`height` per class, alternately JPEG and PNG): class k is a bright disc in its own
/// colour at its own place; `domain_shift` darkens the background, tints it and adds more noise
/// (the target domain). Returns the class names (`class_a`, `class_b`, ...).
/// Digit-like class folders `0`..`9` of `per_class` 28×28 grey PNGs each (the band images of
/// [`band_images`]): your own digits data, as `folder:A->B` reads it.
pub fn write_digit_folders(dir: &Path, per_class: usize, domain_shift: bool, seed: u64) -> Result<()> {
    let (pixels, labels) = band_images(per_class * 10, 28, domain_shift, seed);
    for (i, (image, label)) in pixels.chunks_exact(28 * 28).zip(&labels).enumerate() {
        let class_dir = dir.join(label.to_string());
        std::fs::create_dir_all(&class_dir)?;
        let path = class_dir.join(format!("{i:05}.png"));
        image::GrayImage::from_raw(28, 28, image.to_vec())
            .expect("28×28 bytes")
            .save(&path)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn write_image_folders(dir: &Path, classes: usize, per_class: usize, width: u32, height: u32, domain_shift: bool, seed: u64) -> Result<Vec<String>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut names = Vec::new();
    for k in 0..classes {
        let name = format!("class_{}", (b'a' + k as u8) as char);
        let class_dir = dir.join(&name);
        std::fs::create_dir_all(&class_dir)?;
        for i in 0..per_class {
            let image = class_image(k, classes, width, height, domain_shift, &mut rng);
            let path = class_dir.join(format!("{i:04}.{}", if i % 2 == 0 { "jpg" } else { "png" }));
            image.save(&path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        }
        names.push(name);
    }
    Ok(names)
}

fn class_image(k: usize, classes: usize, width: u32, height: u32, domain_shift: bool, rng: &mut impl Rng) -> image::RgbImage {
    let colour: [f64; 3] = match k % 3 {
        0 => [230.0, 40.0, 40.0],
        1 => [40.0, 220.0, 60.0],
        _ => [50.0, 70.0, 235.0],
    };
    let background: [f64; 3] = if domain_shift { [60.0, 50.0, 90.0] } else { [20.0, 20.0, 20.0] };
    let noise = if domain_shift { 35.0 } else { 15.0 };
    let cx = width as f64 * (0.25 + 0.5 * k as f64 / classes.max(2) as f64) + rng.gen_range(-0.05..0.05) * width as f64;
    let cy = height as f64 * (0.5 + rng.gen_range(-0.1..0.1));
    let r = width.min(height) as f64 * 0.22;
    image::RgbImage::from_fn(width, height, |x, y| {
        let inside = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) < r * r;
        let base = if inside { colour } else { background };
        let mut px = |c: usize| (base[c] + rng.gen_range(-1.0..1.0) * noise).clamp(0.0, 255.0) as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}
