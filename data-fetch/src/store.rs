//! The data root on disk: where datasets, downloads in progress and locks live, and the per-dataset
//! completion marker.
//!
//! ```text
//! <root>/<dataset>/...                   verified, unpacked data (what training reads)
//! <root>/<dataset>/.data-fetch.json      completion marker: what is installed, with checksums
//! <root>/.downloads/<dataset>/<file>.part  download in progress (resumable)
//! <root>/.downloads/<dataset>/<file>       verified archive awaiting unpacking (or kept)
//! <root>/.staging/<dataset>/...          unpacking in progress
//! <root>/.locks/<dataset>.lock           one fetch per dataset at a time
//! <root>/pinned-checksums.toml           SHA-256 pins of files nobody publishes a checksum for
//! ```

use crate::checksum::{Digests, Verification};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the default data root.
pub const ROOT_ENV: &str = "GH_DATA_ROOT";

#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// `--root`, else `$GH_DATA_ROOT`, else `./data`, made absolute.
    pub fn resolve(cli: Option<&Path>) -> Result<Root> {
        let chosen = match cli {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os(ROOT_ENV) {
                Some(v) if !v.is_empty() => PathBuf::from(v),
                _ => PathBuf::from("data"),
            },
        };
        let path = if chosen.is_absolute() { chosen } else { std::env::current_dir()?.join(chosen) };
        Ok(Root { path })
    }

    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dataset_dir(&self, dataset: &str) -> PathBuf {
        self.path.join(dataset)
    }

    pub fn downloads_dir(&self, dataset: &str) -> PathBuf {
        self.path.join(".downloads").join(dataset)
    }

    pub fn staging_dir(&self, dataset: &str) -> PathBuf {
        self.path.join(".staging").join(dataset)
    }

    fn marker_path(&self, dataset: &str) -> PathBuf {
        self.dataset_dir(dataset).join(".data-fetch.json")
    }

    /// Takes the dataset's lock, waiting (with a message) while another process holds it.
    pub fn lock(&self, name: &str) -> Result<LockGuard> {
        let dir = self.path.join(".locks");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!("data-fetch: another data-fetch is working on '{name}' ({}); waiting for it", path.display());
                file.lock().with_context(|| format!("locking {}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        Ok(LockGuard { _file: file })
    }

    pub fn load_state(&self, dataset: &str) -> Result<DatasetState> {
        let path = self.marker_path(dataset);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!("{} is not a valid marker; delete it to fetch '{dataset}' again", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DatasetState::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save_state(&self, dataset: &str, state: &DatasetState) -> Result<()> {
        let text = serde_json::to_string_pretty(state)?;
        write_atomically(&self.marker_path(dataset), text.as_bytes())
    }

    /// Removes the helper folders a failed fetch may leave empty, so a clean failure leaves only
    /// locks and pins behind.
    pub fn tidy(&self, dataset: &str) {
        for dir in [self.downloads_dir(dataset), self.staging_dir(dataset)] {
            let _ = fs::remove_dir(&dir);
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// Holds a dataset's lock until dropped (closing the file releases it).
pub struct LockGuard {
    _file: File,
}

/// The completion marker of one dataset: every installed file of the manifest, with how it was
/// verified. A dataset is complete when every manifest file has an up-to-date entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatasetState {
    pub files: BTreeMap<String, InstalledFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstalledFile {
    /// Where the bytes came from (URL or local path).
    pub source: String,
    /// Digests of the downloaded file; absent when a mirror provided the decompressed payload.
    pub archive: Option<Digests>,
    pub verification: Verification,
    /// Digests of the payload (single-file unpacks).
    pub payload: Option<Digests>,
    /// Paths placed in the dataset folder, relative to it.
    pub installed: Vec<String>,
    /// Regular files and bytes unpacked (tree archives).
    pub unpacked_files: u64,
    /// Image counts checked after unpacking, by path.
    pub image_counts: BTreeMap<String, u64>,
    /// Seconds since the Unix epoch.
    pub fetched_at: u64,
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so readers
/// see the old content or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Moves `from` to `to`, replacing whatever is there (file or folder), creating parents.
pub fn replace_with(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(to).with_context(|| format!("removing old {}", to.display()))?,
        Ok(_) => fs::remove_file(to).with_context(|| format!("removing old {}", to.display()))?,
        Err(_) => {}
    }
    fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/marker.json");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn root_resolution_prefers_the_flag() {
        let r = Root::resolve(Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(r.path(), Path::new("/tmp/x"));
        assert!(Root::resolve(Some(Path::new("rel"))).unwrap().path().is_absolute());
    }
}
