//! SVHN cropped digits in MATLAB v5 `.mat` files: `X` uint8 32×32×3×N (column-major), `y` N×1
//! labels 1..10 where 10 means digit 0. Parsed with the `matfile` crate; the 128-byte header is
//! checked here first so that a wrong file gets an error with an offset.

use anyhow::{bail, Context, Result};
use std::path::Path;

pub const SIDE: usize = 32;

/// Images in N×3×32×32 row-major byte order (as torchvision's `transpose(X, (3, 2, 0, 1))`).
#[derive(Debug, Clone, PartialEq)]
pub struct SvhnData {
    pub count: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

pub fn read(path: &Path) -> Result<SvhnData> {
    let p = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("reading {p}"))?;
    if bytes.len() < 128 {
        bail!("{p}: {} bytes, shorter than the 128-byte MATLAB 5 header (truncated?)", bytes.len());
    }
    if &bytes[..6] == b"\x89HDF\r\n" || bytes[..128].windows(8).any(|w| w == b"\x89HDF\r\n\x1a\n") {
        bail!("{p}: offset 0: this is a MATLAB 7.3 (HDF5) file; expected MATLAB 5 (save with -v7 or earlier)");
    }
    if &bytes[..6] != b"MATLAB" {
        bail!("{p}: offset 0: expected the text 'MATLAB 5.0 MAT-file', found {:?}", String::from_utf8_lossy(&bytes[..16]));
    }
    let endian = &bytes[126..128];
    if endian != b"IM" && endian != b"MI" {
        bail!("{p}: offset 126: expected the endian indicator 'IM' or 'MI', found {endian:?}");
    }
    let mat = matfile::MatFile::parse(&bytes[..]).map_err(|e| anyhow::anyhow!("{p}: malformed MATLAB 5 data after the header: {e:?}"))?;
    let x = mat.find_by_name("X").with_context(|| format!("{p}: no numeric array named 'X' (the images): truncated, or not an SVHN file"))?;
    let y = mat.find_by_name("y").with_context(|| format!("{p}: no numeric array named 'y' (the labels): truncated, or not an SVHN file"))?;
    let size = x.size();
    if size.len() != 4 || size[0] != SIDE || size[1] != SIDE || size[2] != 3 {
        bail!("{p}: array 'X' has size {size:?}, expected [32, 32, 3, N]");
    }
    let count = size[3];
    let raw = match x.data() {
        matfile::NumericData::UInt8 { real, .. } => real,
        other => bail!("{p}: array 'X' holds {}, expected uint8", numeric_kind(other)),
    };
    let labels_raw: Vec<f64> = match y.data() {
        matfile::NumericData::Double { real, .. } => real.clone(),
        matfile::NumericData::UInt8 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        other => bail!("{p}: array 'y' holds {}, expected double or uint8", numeric_kind(other)),
    };
    if labels_raw.len() != count {
        bail!("{p}: 'y' has {} labels for {count} images", labels_raw.len());
    }
    let mut labels = Vec::with_capacity(count);
    for (i, &l) in labels_raw.iter().enumerate() {
        if l.fract() != 0.0 || !(1.0..=10.0).contains(&l) {
            bail!("{p}: y({}) = {l}, expected an integer 1..10", i + 1);
        }
        labels.push((l as u8) % 10);
    }
    // Column-major X(r, c, ch, n) lives at r + 32 c + 1024 ch + 3072 n; we want [n][ch][r][c].
    let mut pixels = vec![0u8; raw.len()];
    for n in 0..count {
        for ch in 0..3 {
            let base = n * 3 * SIDE * SIDE + ch * SIDE * SIDE;
            for r in 0..SIDE {
                for c in 0..SIDE {
                    pixels[base + r * SIDE + c] = raw[base + c * SIDE + r];
                }
            }
        }
    }
    Ok(SvhnData { count, pixels, labels })
}

fn numeric_kind(d: &matfile::NumericData) -> &'static str {
    use matfile::NumericData::*;
    match d {
        Int8 { .. } => "int8",
        UInt8 { .. } => "uint8",
        Int16 { .. } => "int16",
        UInt16 { .. } => "uint16",
        Int32 { .. } => "int32",
        UInt32 { .. } => "uint32",
        Int64 { .. } => "int64",
        UInt64 { .. } => "uint64",
        Single { .. } => "single",
        Double { .. } => "double",
    }
}
