//! Decoding one image file (JPEG through zune-jpeg, PNG) into 8-bit RGB, the way PIL's
//! `Image.open(f).convert("RGB")` does: grey is replicated to three channels, an alpha channel is
//! dropped (not composited), a palette is expanded, CMYK is converted by the decoder.
//!
//! A file that does not decode, or a JPEG cut short (no end-of-image marker: decoders would
//! otherwise fill the missing part grey, as PIL refuses to by default), is an error naming it.

use anyhow::{bail, Context, Result};
use image::DynamicImage;
use std::path::Path;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// A borrowed [`Rgb`] (e.g. an image in the decoded cache's memory map).
#[derive(Clone, Copy, Debug)]
pub struct RgbRef<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

impl Rgb {
    pub fn view(&self) -> RgbRef<'_> {
        RgbRef { width: self.width, height: self.height, pixels: &self.pixels }
    }
}

pub fn decode_file(path: &Path) -> Result<Rgb> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_bytes(&bytes).with_context(|| format!("{}: cannot decode", path.display()))
}

pub fn decode_bytes(bytes: &[u8]) -> Result<Rgb> {
    let format = image::guess_format(bytes).context("neither a JPEG nor a PNG file (unrecognised header)")?;
    match format {
        image::ImageFormat::Jpeg => {
            if !has_end_of_image(bytes) {
                bail!("truncated JPEG (no end-of-image marker)");
            }
            return decode_jpeg(bytes);
        }
        image::ImageFormat::Png => {}
        other => bail!("{other:?} images are not supported (JPEG and PNG are)"),
    }
    let image = image::load_from_memory_with_format(bytes, format).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rgb = match image {
        DynamicImage::ImageRgb8(i) => i,
        // Grey and grey+alpha: replicate, drop alpha; RGBA: drop alpha (PIL's convert("RGB")).
        other => other.into_rgb8(),
    };
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        bail!("the image is empty ({width}×{height})");
    }
    Ok(Rgb { width, height, pixels: rgb.into_raw() })
}

/// zune-jpeg straight to RGB (grey replicated, CMYK/YCCK converted as `image` would ask it to).
fn decode_jpeg(bytes: &[u8]) -> Result<Rgb> {
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), options);
    let pixels = decoder.decode().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (width, height) = decoder.dimensions().map(|(w, h)| (w as u32, h as u32)).context("no image dimensions")?;
    if width == 0 || height == 0 || pixels.len() != width as usize * height as usize * 3 {
        bail!("the decoder returned {} bytes for {width}×{height} RGB", pixels.len());
    }
    Ok(Rgb { width, height, pixels })
}

/// A JPEG's end-of-image marker (FF D9) among its last bytes (some writers pad after it).
fn has_end_of_image(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}
