//! The image transforms of the image protocols (docs/design/protocols.md, docs/design/protocols-images.md), on 8-bit RGB:
//!
//! - train: resize to `resize`×`resize` (torchvision `Resize((256, 256))`, PIL bilinear, or bicubic
//!   for TLlib's `ResizeImage`), then one of `RandomCrop(crop)`, `RandomResizedCrop(crop)` (scale
//!   0.08–1, ratio 3/4–4/3, bilinear) or `CenterCrop(crop)`, then `RandomHorizontalFlip(0.5)`;
//! - test: the same resize, then `CenterCrop(crop)`.
//!
//! Output is uint8 CHW; normalisation (ImageNet mean/std) happens on the device. Resizing uses
//! fast_image_resize's convolution filters, the algorithm of PIL's `resize` (with antialiasing
//! when shrinking). Each sample's random draws come from its own generator seeded from the
//! stream's seed, the pass and the sample's position, so results do not depend on which worker
//! decodes it.

use super::decode::{Rgb, RgbRef};
use anyhow::{bail, Result};
use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainCrop {
    /// torchvision `RandomCrop(crop)`: CDAN (amazon, Office-Home, VisDA loaders), GVB.
    RandomCrop,
    /// torchvision `RandomResizedCrop(crop)`: CDAN's webcam/dslr loaders, MCD, DWL, SSRT.
    RandomResizedCrop,
    /// `CenterCrop(crop)`: TLlib's "cen.crop" training resizing (MCD on VisDA).
    CenterCrop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// torchvision `Resize` on PIL images (bilinear, antialiased).
    Bilinear,
    /// PIL's default `Image.resize` filter since Pillow 7 (TLlib's `ResizeImage`: MCD, DWL).
    Bicubic,
}

impl ResizeFilter {
    fn alg(self) -> ResizeAlg {
        ResizeAlg::Convolution(match self {
            ResizeFilter::Bilinear => FilterType::Bilinear,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
        })
    }
}

/// The input pipeline of an image run: recorded with it (part of its cell hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// Side of the square first resize (256).
    pub resize: u32,
    /// Side of the crop the network sees (224).
    pub crop: u32,
    pub resize_filter: ResizeFilter,
    pub source_crop: TrainCrop,
    pub target_crop: TrainCrop,
    /// Random horizontal flips in training.
    pub flip: bool,
}

impl ImageInput {
    /// Resize 256×256 (bilinear), random crop 224, flip; test: centre crop 224 (CDAN/GVB's
    /// default transform in docs/design/protocols.md).
    pub const PAPER: ImageInput = ImageInput {
        resize: 256,
        crop: 224,
        resize_filter: ResizeFilter::Bilinear,
        source_crop: TrainCrop::RandomCrop,
        target_crop: TrainCrop::RandomCrop,
        flip: true,
    };

    /// The same transform at `resize`/`crop` (e.g. 36/32 for a DTN-sized run on your own data).
    pub fn sized(resize: u32, crop: u32) -> Result<ImageInput> {
        if crop == 0 || crop > resize {
            bail!("image input {resize}/{crop}: the crop must be positive and at most the resize side");
        }
        Ok(ImageInput { resize, crop, ..ImageInput::PAPER })
    }

    /// `RESIZE/CROP`, e.g. `256/224`.
    pub fn parse_size(s: &str) -> Result<ImageInput> {
        let (a, b) = s.split_once('/').ok_or_else(|| anyhow::anyhow!("image size '{s}': expected RESIZE/CROP, e.g. 256/224"))?;
        let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| anyhow::anyhow!("image size '{s}': '{v}' is not a whole number"));
        ImageInput::sized(parse(a)?, parse(b)?)
    }
}

/// A crop box: top row, left column, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
}

/// Deterministic generator of one sample's random draws.
pub fn sample_rng(stream_seed: u64, pass: u64, position: u64) -> rand::rngs::StdRng {
    let mut x = stream_seed ^ splitmix(pass.wrapping_add(0x5851_F42D_4C95_7F2D)) ^ splitmix(position.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1));
    x = splitmix(x);
    rand::rngs::StdRng::seed_from_u64(x)
}

pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Python's round() (half to even), which torchvision's CenterCrop uses.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// torchvision `CenterCrop` offsets (an image at least `crop` on each side).
pub fn center_box(height: u32, width: u32, crop: u32) -> CropBox {
    let top = round_half_even((height - crop) as f64 / 2.0) as u32;
    let left = round_half_even((width - crop) as f64 / 2.0) as u32;
    CropBox { top, left, height: crop, width: crop }
}

/// torchvision `RandomCrop.get_params`: a uniform top-left corner.
pub fn random_crop_box(height: u32, width: u32, crop: u32, rng: &mut impl Rng) -> CropBox {
    let top = rng.gen_range(0..=height - crop);
    let left = rng.gen_range(0..=width - crop);
    CropBox { top, left, height: crop, width: crop }
}

/// torchvision `RandomResizedCrop.get_params` (scale 0.08–1, ratio 3/4–4/3): ten tries at a
/// random area and log-uniform aspect ratio, else the centre crop at the clamped ratio.
pub fn random_resized_box(height: u32, width: u32, rng: &mut impl Rng) -> CropBox {
    let (scale, ratio) = ((0.08f64, 1.0f64), (3.0f64 / 4.0, 4.0f64 / 3.0));
    let area = (height * width) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.gen_range(scale.0..scale.1);
        let aspect = rng.gen_range(log_lo..log_hi).exp();
        let w = (target_area * aspect).sqrt().round() as i64;
        let h = (target_area / aspect).sqrt().round() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let top = rng.gen_range(0..=(height as i64 - h)) as u32;
            let left = rng.gen_range(0..=(width as i64 - w)) as u32;
            return CropBox { top, left, height: h as u32, width: w as u32 };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (width, (width as f64 / ratio.0).round() as u32)
    } else if in_ratio > ratio.1 {
        ((height as f64 * ratio.1).round() as u32, height)
    } else {
        (width, height)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// Resizes (a box of) `src` to `width`×`height`.
pub fn resize(resizer: &mut Resizer, src: RgbRef, region: Option<CropBox>, width: u32, height: u32, filter: ResizeFilter) -> Result<Rgb> {
    let view = ImageRef::new(src.width, src.height, src.pixels, PixelType::U8x3).map_err(|e| anyhow::anyhow!("image buffer: {e:?}"))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let mut options = ResizeOptions::new().resize_alg(filter.alg());
    if let Some(b) = region {
        options = options.crop(b.left as f64, b.top as f64, b.width as f64, b.height as f64);
    }
    resizer.resize(&view, &mut dst, &options).map_err(|e| anyhow::anyhow!("resize: {e:?}"))?;
    Ok(Rgb { width, height, pixels: dst.into_vec() })
}

/// Copies `b` out of `src` as CHW, mirrored left-right when `flip`.
pub fn crop_to_chw(src: RgbRef, b: CropBox, flip: bool, out: &mut [u8]) {
    let (h, w) = (b.height as usize, b.width as usize);
    assert_eq!(out.len(), 3 * h * w, "output buffer size");
    let stride = src.width as usize * 3;
    let plane = h * w;
    for y in 0..h {
        let row = &src.pixels[(b.top as usize + y) * stride + b.left as usize * 3..][..w * 3];
        for x in 0..w {
            let sx = if flip { w - 1 - x } else { x };
            let p = &row[sx * 3..sx * 3 + 3];
            let o = y * w + x;
            out[o] = p[0];
            out[plane + o] = p[1];
            out[2 * plane + o] = p[2];
        }
    }
}

/// How one sample is transformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train(TrainCrop),
    Test,
}

/// The first, deterministic step (cacheable): the square resize.
pub fn resize_square(resizer: &mut Resizer, decoded: Rgb, input: &ImageInput) -> Result<Rgb> {
    if decoded.width == input.resize && decoded.height == input.resize {
        return Ok(decoded);
    }
    resize(resizer, decoded.view(), None, input.resize, input.resize, input.resize_filter)
}

/// The rest, on the resized image: crop (and for RandomResizedCrop its bilinear resize), flip,
/// written as CHW into `out` (3·crop·crop bytes).
pub fn finish(resizer: &mut Resizer, resized: RgbRef, input: &ImageInput, mode: Mode, rng: &mut impl Rng, out: &mut [u8]) -> Result<()> {
    let c = input.crop;
    match mode {
        Mode::Test => {
            crop_to_chw(resized, center_box(resized.height, resized.width, c), false, out);
        }
        Mode::Train(kind) => {
            let (image, b) = match kind {
                TrainCrop::RandomCrop => (None, random_crop_box(resized.height, resized.width, c, rng)),
                TrainCrop::CenterCrop => (None, center_box(resized.height, resized.width, c)),
                TrainCrop::RandomResizedCrop => {
                    let region = random_resized_box(resized.height, resized.width, rng);
                    // torchvision resized_crop: crop, then resize to crop×crop (bilinear).
                    (Some(resize(resizer, resized, Some(region), c, c, ResizeFilter::Bilinear)?), CropBox { top: 0, left: 0, height: c, width: c })
                }
            };
            let flip = input.flip && rng.gen_bool(0.5);
            crop_to_chw(image.as_ref().map(|i| i.view()).unwrap_or(resized), b, flip, out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> Rgb {
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.extend([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8]);
            }
        }
        Rgb { width: w, height: h, pixels }
    }

    #[test]
    fn centre_crop_rounds_half_to_even_like_python() {
        assert_eq!(center_box(256, 256, 224), CropBox { top: 16, left: 16, height: 224, width: 224 });
        // (5 - 2) / 2 = 1.5 → 2 (even); (7 - 2) / 2 = 2.5 → 2.
        assert_eq!(center_box(5, 7, 2).top, 2);
        assert_eq!(center_box(5, 7, 2).left, 2);
    }

    #[test]
    fn crop_and_flip_copy_exact_pixels() {
        let img = ramp(6, 5);
        let b = CropBox { top: 1, left: 2, height: 3, width: 2 };
        let mut out = vec![0u8; 3 * 3 * 2];
        crop_to_chw(img.view(), b, false, &mut out);
        let px = |x: usize, y: usize, ch: usize| img.pixels[(y * 6 + x) * 3 + ch];
        assert_eq!(out[0], px(2, 1, 0));
        assert_eq!(out[1], px(3, 1, 0));
        assert_eq!(out[6 + 5], px(3, 3, 1));
        crop_to_chw(img.view(), b, true, &mut out);
        assert_eq!(out[0], px(3, 1, 0));
        assert_eq!(out[1], px(2, 1, 0));
    }

    #[test]
    fn random_boxes_stay_inside_and_depend_only_on_the_seed() {
        for k in 0..200 {
            let mut rng = sample_rng(7, 3, k);
            let b = random_resized_box(256, 256, &mut rng);
            assert!(b.top + b.height <= 256 && b.left + b.width <= 256 && b.width > 0 && b.height > 0);
            let r = random_crop_box(256, 256, 224, &mut rng);
            assert!(r.top <= 32 && r.left <= 32);
        }
        let a = random_resized_box(256, 256, &mut sample_rng(1, 2, 3));
        assert_eq!(a, random_resized_box(256, 256, &mut sample_rng(1, 2, 3)));
        assert_ne!(a, random_resized_box(256, 256, &mut sample_rng(1, 2, 4)));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(ImageInput::parse_size("256/224").unwrap(), ImageInput::PAPER);
        assert!(ImageInput::parse_size("32/36").is_err());
        assert!(ImageInput::parse_size("x").is_err());
    }
}
