//! Your own digit-like images (a `folder:` or `list:` pair) read the way the digits benchmarks
//! are: every file decoded once into memory, converted to grey, brought to the digits format's
//! side (28×28 for LeNet) and normalised to [-1, 1] exactly as MNIST and USPS are
//! ([`crate::data::to_format`]); no augmentation, as in the digits protocols. The target folder is also
//! the test set (evaluated without labels in training, as for every own-data task).
//!
//! Grey conversion is PIL's `convert("L")` (ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B,
//! rounded, in PIL's fixed point): a grey PNG comes back unchanged. Images of another side are resized bilinearly, as
//! USPS's 16×16 images are for the M↔U protocol.

use crate::data::decode::decode_file;
use crate::data::image_list::ImageList;
use crate::data::task::OwnData;
use crate::data::{to_format, DigitsFormat, ImageSet, Samples, TaskData};
use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// Whether the first image of `data` is grey (every pixel R = G = B): the default input of own
/// data under the digits protocol is then LeNet's 28×28 grey, else the DTN's 32×32 RGB crops.
pub fn first_image_is_grey(data: &OwnData) -> Result<bool> {
    let list = data.read()?;
    let Some(first) = list.entries.first() else { bail!("{}: no images", list.origin) };
    let rgb = decode_file(&first.path)?;
    Ok(rgb.pixels.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]))
}

/// Loads a user's source and target into device memory at `format`.
pub fn load(source: &OwnData, target: &OwnData, format: DigitsFormat, device: Device) -> Result<TaskData> {
    // The same pairing checks as the image pipeline's (same class folders on both sides).
    let (s, t) = crate::data::image_task::read_own(source, target)?;
    let classes = s.classes.len().max(t.classes.len()) as i64;
    let source_set = decode_all(&s, format, device)?;
    let target_set = decode_all(&t, format, device)?;
    let test = ImageSet {
        images: target_set.images.shallow_clone(),
        labels: target_set.labels.shallow_clone(),
        description: format!("{} (target, as the test set: {} images)", t.origin, t.len()),
    };
    Ok(TaskData {
        source_train: Samples::InMemory(source_set),
        target_train: Samples::InMemory(target_set),
        target_test: Samples::InMemory(test),
        classes,
        deviations: s.notes.iter().chain(&t.notes).cloned().collect(),
        weights_root: None,
    })
}

fn decode_all(list: &ImageList, format: DigitsFormat, device: Device) -> Result<ImageSet> {
    if list.is_empty() {
        bail!("{}: no images", list.origin);
    }
    let side = format.side();
    let mut images = Vec::with_capacity(list.len());
    for (i, entry) in list.entries.iter().enumerate() {
        let rgb = decode_file(&entry.path).with_context(|| list.locate(i))?;
        let (w, h) = (rgb.width as i64, rgb.height as i64);
        let pixels = match format.channels() {
            1 => Tensor::from_slice(&grey(&rgb.pixels)).view([1, 1, h, w]),
            _ => Tensor::from_slice(&rgb.pixels).view([1, h, w, 3]).permute([0, 3, 1, 2]),
        };
        let pixels = if (w, h) == (side, side) {
            pixels
        } else {
            // Bilinear to the square side on 0..255, rounded back to bytes (as for USPS).
            pixels.to_kind(Kind::Float).upsample_bilinear2d([side, side], false, None, None).round().clamp(0.0, 255.0).to_kind(Kind::Uint8)
        };
        images.push(pixels);
    }
    let labels: Vec<i64> = list.entries.iter().map(|e| i64::from(e.label)).collect();
    let images = to_format(&Tensor::cat(&images, 0), format).with_context(|| list.origin.clone())?;
    Ok(ImageSet {
        images: images.to_device(device),
        labels: Tensor::from_slice(&labels).to_device(device),
        description: format!("{} ({} images, {} classes, {}×{} {})", list.origin, list.len(), list.classes.len(), side, side, if format.channels() == 1 { "grey" } else { "RGB" }),
    })
}

/// PIL's `convert("L")` of interleaved RGB (its fixed-point form of the 601-2 weights, rounded).
fn grey(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).map(|p| ((19595 * u32::from(p[0]) + 38470 * u32::from(p[1]) + 7471 * u32::from(p[2]) + 0x8000) >> 16) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_is_pils_luma_and_keeps_grey_pixels() {
        assert_eq!(grey(&[10, 10, 10, 255, 255, 255, 0, 0, 0]), vec![10, 255, 0]);
        // PIL 13: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for these c.
        assert_eq!(grey(&[200, 30, 90, 1, 2, 3, 255, 0, 0, 17, 200, 33]), vec![88, 2, 76, 126]);
    }
}
