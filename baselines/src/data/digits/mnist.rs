//! MNIST IDX files (gzip-compressed or not): `idx3` images (u8, N×28×28) and `idx1` labels.
//! Format: big-endian magic `0x0000_08DD` (08 = unsigned byte, DD = number of dimensions), then
//! one big-endian u32 per dimension, then the bytes.

use crate::data::read_maybe_compressed;
use anyhow::{bail, Result};
use std::path::Path;

/// Images as one byte per pixel, row-major, with their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

pub fn read_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_maybe_compressed(path)?;
    let dims = parse_header(path, &bytes, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let start = 4 + 4 * 3;
    check_length(path, &bytes, start, count * rows * cols)?;
    Ok(IdxImages { count, rows, cols, pixels: bytes[start..].to_vec() })
}

pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_compressed(path)?;
    let dims = parse_header(path, &bytes, 1)?;
    let start = 4 + 4;
    check_length(path, &bytes, start, dims[0])?;
    let labels = bytes[start..].to_vec();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        bail!("{}: label {l} at byte offset {} is not a digit 0-9", path.display(), start + i);
    }
    Ok(labels)
}

fn parse_header(path: &Path, bytes: &[u8], expected_dims: usize) -> Result<Vec<usize>> {
    let p = path.display();
    if bytes.len() < 4 {
        bail!("{p}: {} bytes, too short for an IDX magic number (truncated file?)", bytes.len());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!("{p}: offset 0: expected the IDX magic 00 00 08 0{expected_dims}, found {:02x} {:02x} {:02x} {:02x} (not an IDX file?)", bytes[0], bytes[1], bytes[2], bytes[3]);
    }
    if bytes[2] != 0x08 {
        bail!("{p}: offset 2: element type 0x{:02x}, expected 0x08 (unsigned byte)", bytes[2]);
    }
    if bytes[3] as usize != expected_dims {
        bail!("{p}: offset 3: {} dimensions, expected {expected_dims} ({})", bytes[3], if expected_dims == 3 { "an images file" } else { "a labels file" });
    }
    let header_len = 4 + 4 * expected_dims;
    if bytes.len() < header_len {
        bail!("{p}: {} bytes, too short for an IDX header of {header_len} bytes (truncated file?)", bytes.len());
    }
    Ok((0..expected_dims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect())
}

fn check_length(path: &Path, bytes: &[u8], start: usize, expected: usize) -> Result<()> {
    let have = bytes.len() - start;
    if have != expected {
        bail!(
            "{}: offset {start}: the header announces {expected} data bytes, the file holds {have} ({})",
            path.display(),
            if have < expected { "truncated" } else { "trailing bytes" }
        );
    }
    Ok(())
}
