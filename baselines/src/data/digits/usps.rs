//! USPS in LIBSVM text (usually bzip2-compressed): one image per line,
//! `label idx:value ...` with label 1..10 (digit = label − 1), indices 1..=256 (a 16×16 image row by
//! row, omitted indices are 0) and values in [-1, 1].

use crate::data::read_maybe_compressed;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const SIDE: usize = 16;

/// Pixels as bytes, as torchvision stores them: `uint8((v + 1) / 2 · 255)` (truncated), so that
/// our transform pipeline matches the released code's.
#[derive(Debug, Clone, PartialEq)]
pub struct UspsData {
    pub count: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

pub fn read(path: &Path) -> Result<UspsData> {
    let bytes = read_maybe_compressed(path)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8 text (is it a LIBSVM file?)", path.display()))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |col: usize| format!("{}:{}:{}", path.display(), n + 1, col + 1);
        if line.trim().is_empty() {
            continue;
        }
        let mut tokens = tokens_with_columns(line);
        let (label_col, label_token) = tokens.next().unwrap();
        let label: f64 = label_token.parse().map_err(|_| anyhow::anyhow!("{}: expected a label 1..10, found '{label_token}'", at(label_col)))?;
        if label.fract() != 0.0 || !(1.0..=10.0).contains(&label) {
            bail!("{}: label {label_token} is not an integer in 1..10", at(label_col));
        }
        labels.push(label as u8 - 1);
        let mut image = [0.0f64; SIDE * SIDE];
        let mut last = 0usize;
        for (col, token) in tokens {
            let (i, v) = token.split_once(':').with_context(|| format!("{}: expected 'index:value', found '{token}'", at(col)))?;
            let i: usize = i.parse().map_err(|_| anyhow::anyhow!("{}: index '{i}' is not a number", at(col)))?;
            let v: f64 = v.parse().map_err(|_| anyhow::anyhow!("{}: value '{v}' is not a number", at(col)))?;
            if i == 0 || i > SIDE * SIDE || i <= last {
                bail!("{}: index {i} out of order or outside 1..={} (previous {last})", at(col), SIDE * SIDE);
            }
            if !(-1.0 - 1e-6..=1.0 + 1e-6).contains(&v) {
                bail!("{}: value {v} outside [-1, 1]", at(col));
            }
            image[i - 1] = v;
            last = i;
        }
        pixels.extend(image.iter().map(|v| (((v + 1.0) / 2.0) * 255.0).clamp(0.0, 255.0) as u8));
    }
    if labels.is_empty() {
        bail!("{}: no images (empty file?)", path.display());
    }
    Ok(UspsData { count: labels.len(), pixels, labels })
}

/// Whitespace-separated tokens with their 0-based byte column.
fn tokens_with_columns(line: &str) -> impl Iterator<Item = (usize, &str)> {
    line.split(|c: char| c == ' ' || c == '\t' || c == '\r')
        .scan(0usize, |pos, tok| {
            let start = *pos;
            *pos += tok.len() + 1;
            Some((start, tok))
        })
        .filter(|(_, t)| !t.is_empty())
}
