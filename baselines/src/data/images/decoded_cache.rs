//! The decoded cache: a list's images decoded once and stored resized (the transform's first,
//! deterministic step: `resize`×`resize` RGB) in one memory-mapped file, so that later epochs and
//! later cells skip JPEG decoding.
//!
//! File `<dir>/<key>.ghdc`: a header (magic, version, image count, side, key), a CRC-32 per image,
//! then the images back to back. The key is a SHA-256 over the resize (side, filter) and every
//! entry's path, size and modification time: a changed, added or removed file gives another key
//! and so a new cache. A file whose header or length does not match is rebuilt, never used; an
//! image whose CRC does not match at read time is decoded from its file instead (and counted).
//! Built in `<file>.tmp-<pid>` and renamed, so a crash never leaves a half-written cache.

use super::decode::RgbRef;
use super::image_list::ImageList;
use super::transform::ImageInput;
use anyhow::{Context, Result};
use memmap2::Mmap;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"GHDCACHE";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4 + 32;

pub struct DecodedCache {
    map: Mmap,
    count: usize,
    side: u32,
    pub path: PathBuf,
    /// Images whose CRC did not match when read (decoded from their files instead).
    pub crc_failures: AtomicU64,
}

/// Whether to use the decoded cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Use (and build) it when the disk has room for it, else decode every time.
    Auto,
    Off,
}

impl CacheMode {
    pub fn parse(s: &str) -> Result<CacheMode> {
        match s {
            "auto" | "on" => Ok(CacheMode::Auto),
            "off" => Ok(CacheMode::Off),
            _ => anyhow::bail!("cache mode '{s}': expected auto or off"),
        }
    }
}

/// The key of a list at a resize: changes with any file's path, size or modification time.
pub fn cache_key(list: &ImageList, input: &ImageInput) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(format!("gh-decoded-cache v{VERSION} {} {:?}\n", input.resize, input.resize_filter).as_bytes());
    for e in &list.entries {
        let meta = fs::metadata(&e.path).with_context(|| format!("{}: cannot read its metadata", e.path.display()))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
        h.update(e.path.to_string_lossy().as_bytes());
        h.update(format!("\0{}\0{mtime}\n", meta.len()).as_bytes());
    }
    Ok(h.finalize().into())
}

fn image_bytes(side: u32) -> usize {
    side as usize * side as usize * 3
}

fn expected_len(count: usize, side: u32) -> u64 {
    (HEADER + 4 * count + count * image_bytes(side)) as u64
}

/// Free bytes on the file system holding `dir` (None when unknown).
fn free_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

impl DecodedCache {
    /// Opens the cache of `list` at `input`'s resize in `dir`, building it first when it is
    /// missing or does not match. `Ok(None)` (with the reason) when the disk has no room for it.
    /// `progress(done, total)` is called while building.
    pub fn open_or_build(
        list: &ImageList,
        input: &ImageInput,
        dir: &Path,
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<std::result::Result<DecodedCache, String>> {
        let key = cache_key(list, input)?;
        let hex: String = key.iter().take(16).map(|b| format!("{b:02x}")).collect();
        fs::create_dir_all(dir).with_context(|| format!("creating the decoded cache folder {}", dir.display()))?;
        let path = dir.join(format!("{hex}.ghdc"));
        if let Some(cache) = DecodedCache::open(&path, list.len(), input.resize, &key)? {
            return Ok(Ok(cache));
        }
        let needed = expected_len(list.len(), input.resize);
        if let Some(free) = free_bytes(dir) {
            // Keep a margin of a tenth of the cache plus 1 GiB for everything else.
            if free < needed + needed / 10 + (1 << 30) {
                return Ok(Err(format!(
                    "the decoded cache of {} needs {:.1} GiB but {} has {:.1} GiB free: decoding every image each time",
                    list.origin,
                    needed as f64 / (1u64 << 30) as f64,
                    dir.display(),
                    free as f64 / (1u64 << 30) as f64
                )));
            }
        }
        DecodedCache::build(list, input, &path, &key, pool, progress)?;
        let cache = DecodedCache::open(&path, list.len(), input.resize, &key)?
            .with_context(|| format!("{}: the cache just built does not read back", path.display()))?;
        Ok(Ok(cache))
    }

    /// The cache at `path` if it is complete and matches `key`; None otherwise.
    fn open(path: &Path, count: usize, side: u32, key: &[u8; 32]) -> Result<Option<DecodedCache>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        let len = file.metadata()?.len();
        if len != expected_len(count, side) {
            return Ok(None);
        }
        // SAFETY: the file is only ever written under a temporary name and renamed into place.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let h = &map[..HEADER];
        let ok = &h[..8] == MAGIC
            && u32::from_le_bytes(h[8..12].try_into().unwrap()) == VERSION
            && u64::from_le_bytes(h[12..20].try_into().unwrap()) == count as u64
            && u32::from_le_bytes(h[20..24].try_into().unwrap()) == side
            && &h[24..56] == key;
        if !ok {
            return Ok(None);
        }
        Ok(Some(DecodedCache { map, count, side, path: path.to_owned(), crc_failures: AtomicU64::new(0) }))
    }

    fn build(
        list: &ImageList,
        input: &ImageInput,
        path: &Path,
        key: &[u8; 32],
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        let tmp = path.with_extension(format!("ghdc.tmp-{}", std::process::id()));
        let result = (|| -> Result<()> {
            let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut out = BufWriter::with_capacity(1 << 22, file);
            let count = list.len();
            out.write_all(MAGIC)?;
            out.write_all(&VERSION.to_le_bytes())?;
            out.write_all(&(count as u64).to_le_bytes())?;
            out.write_all(&input.resize.to_le_bytes())?;
            out.write_all(key)?;
            out.write_all(&vec![0u8; 4 * count])?;
            let mut crcs = Vec::with_capacity(count);
            let chunk = 256;
            for start in (0..count).step_by(chunk) {
                let end = (start + chunk).min(count);
                let images: Vec<Result<Vec<u8>>> = pool.install(|| {
                    (start..end)
                        .into_par_iter()
                        .map(|i| {
                            super::pipeline::with_resizer(|r| super::pipeline::decode_resized(list, i, input, r)).map(|img| img.pixels)
                        })
                        .collect()
                });
                for img in images {
                    let img = img?;
                    crcs.push(crc32fast::hash(&img));
                    out.write_all(&img)?;
                }
                progress(end, count);
            }
            out.seek(SeekFrom::Start(HEADER as u64))?;
            for c in &crcs {
                out.write_all(&c.to_le_bytes())?;
            }
            let file = out.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", tmp.display(), e.error()))?;
            file.sync_all()?;
            fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.with_context(|| format!("building the decoded cache {}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Image `i`, resized; None (counted) if its bytes do not match their CRC.
    pub fn get(&self, i: usize) -> Option<RgbRef<'_>> {
        let n = image_bytes(self.side);
        let crc = u32::from_le_bytes(self.map[HEADER + 4 * i..HEADER + 4 * i + 4].try_into().unwrap());
        let start = HEADER + 4 * self.count + i * n;
        let pixels = &self.map[start..start + n];
        if crc32fast::hash(pixels) != crc {
            self.crc_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(RgbRef { width: self.side, height: self.side, pixels })
    }
}
