//! Fetching a dataset: find verified bytes (local mirrors, then URLs), unpack them out of sight,
//! check them, then move them into place and record them in the completion marker.

use crate::checksum::{self, digest_file, Digests, Pins, Verification};
use crate::download::{self, HttpOptions, MirrorError};
use crate::extract;
use crate::manifest::{Dataset, FileSpec, Manifest, Unpack};
use crate::store::{self, DatasetState, InstalledFile, Root};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// An extra place to look for files, tried before the manifest's URLs, in the order given.
#[derive(Debug, Clone)]
pub enum Mirror {
    /// A folder holding the files (or their decompressed payloads), flat or in `<dataset>/`.
    Dir(PathBuf),
    /// A base URL; the file name is appended.
    Url(String),
}

impl Mirror {
    pub fn parse(s: &str) -> Mirror {
        if s.starts_with("http://") || s.starts_with("https://") {
            Mirror::Url(s.trim_end_matches('/').to_owned())
        } else {
            Mirror::Dir(PathBuf::from(s))
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    pub mirrors: Vec<Mirror>,
    pub http: HttpOptions,
    /// Keep verified archives in `.downloads/` after unpacking (costs disk, saves a download).
    pub keep_archives: bool,
}

/// What happened to one file of a fetch.
#[derive(Debug)]
pub enum FileOutcome {
    AlreadyPresent,
    Installed { source: String, verification: Verification, sha256: Option<String> },
    Missing { attempts: Vec<String>, manual: Option<String> },
}

#[derive(Debug)]
pub struct DatasetReport {
    pub dataset: String,
    pub dir: PathBuf,
    pub files: Vec<(String, FileOutcome)>,
}

impl DatasetReport {
    pub fn complete(&self) -> bool {
        self.files.iter().all(|(_, o)| !matches!(o, FileOutcome::Missing { .. }))
    }
}

pub struct Fetcher<'a> {
    root: Root,
    manifest: &'a Manifest,
    options: FetchOptions,
    client: reqwest::blocking::Client,
}

/// A verified source of one file, ready to install.
enum Obtained {
    /// The downloaded/copied file itself (archive or, for `none`, the payload), in `.downloads/`.
    Archive { path: PathBuf, digests: Digests, verification: Verification, source: String },
    /// A mirror's already-decompressed payload, verified against the payload checksum, staged.
    Payload { path: PathBuf, digests: Digests, source: String },
}

impl Obtained {
    fn source(&self) -> &str {
        match self {
            Obtained::Archive { source, .. } | Obtained::Payload { source, .. } => source,
        }
    }
}

impl<'a> Fetcher<'a> {
    pub fn new(root: Root, manifest: &'a Manifest, options: FetchOptions) -> Result<Self> {
        let client = download::client(&options.http)?;
        Ok(Fetcher { root, manifest, options, client })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Fetches every dataset `name` selects (a dataset, a family, `weights` or `all`).
    pub fn fetch(&self, name: &str) -> Result<Vec<DatasetReport>> {
        self.manifest.select(name)?.into_iter().map(|d| self.fetch_dataset(d)).collect()
    }

    pub fn fetch_dataset(&self, dataset: &Dataset) -> Result<DatasetReport> {
        fs::create_dir_all(self.root.path()).with_context(|| format!("creating data root {}", self.root.path().display()))?;
        let _lock = self.root.lock(&dataset.name)?;
        let mut state = self.root.load_state(&dataset.name)?;
        let mut files = Vec::new();
        for spec in &dataset.files {
            if is_installed(&self.root, dataset, spec, &state) {
                files.push((spec.name.clone(), FileOutcome::AlreadyPresent));
                continue;
            }
            let outcome = match self.obtain(dataset, spec)? {
                Ok(obtained) => self.install_and_record(dataset, spec, obtained, &mut state)?,
                Err(attempts) => FileOutcome::Missing { attempts, manual: spec.manual.clone() },
            };
            files.push((spec.name.clone(), outcome));
        }
        self.root.tidy(&dataset.name);
        Ok(DatasetReport { dataset: dataset.name.clone(), dir: self.root.dataset_dir(&dataset.name), files })
    }

    /// Imports a file the user downloaded by hand: verified like any download, then installed.
    pub fn import(&self, dataset_name: &str, file: &Path) -> Result<DatasetReport> {
        let dataset = self
            .manifest
            .dataset(dataset_name)
            .with_context(|| format!("unknown dataset '{dataset_name}' (data-fetch list shows them)"))?;
        let given = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let digests = digest_file(file)?;
        // Match by name first, else by size/checksum, so a renamed download is still recognised.
        let spec = dataset
            .files
            .iter()
            .find(|f| f.name == given)
            .or_else(|| {
                dataset.files.iter().find(|f| {
                    f.sha256.as_deref() == Some(digests.sha256.as_str()) || f.md5.as_deref() == Some(digests.md5.as_str())
                })
            })
            .with_context(|| {
                let names: Vec<&str> = dataset.files.iter().map(|f| f.name.as_str()).collect();
                format!("{} matches none of {dataset_name}'s files by name or checksum (expected one of: {})", file.display(), names.join(", "))
            })?;
        fs::create_dir_all(self.root.path())?;
        let _lock = self.root.lock(&dataset.name)?;
        let mut state = self.root.load_state(&dataset.name)?;
        let obtained = self
            .from_local_archive(dataset, spec, file)?
            .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
        let outcome = self.install_and_record(dataset, spec, obtained, &mut state)?;
        self.root.tidy(&dataset.name);
        if let FileOutcome::Missing { attempts, .. } = &outcome {
            anyhow::bail!("{}", attempts.join("; "));
        }
        Ok(DatasetReport { dataset: dataset.name.clone(), dir: self.root.dataset_dir(&dataset.name), files: vec![(spec.name.clone(), outcome)] })
    }

    /// Installs a verified file and records it in the dataset's marker. A file that does not
    /// unpack or check out leaves nothing behind (install cleans its staging) and is reported like
    /// a failed source.
    fn install_and_record(&self, dataset: &Dataset, spec: &FileSpec, obtained: Obtained, state: &mut DatasetState) -> Result<FileOutcome> {
        let source = obtained.source().to_owned();
        let installed = match self.install(dataset, spec, obtained) {
            Ok(i) => i,
            Err(e) => {
                let _ = fs::remove_file(self.root.downloads_dir(&dataset.name).join(&spec.name));
                return Ok(FileOutcome::Missing { attempts: vec![format!("{source}: {e:#}")], manual: spec.manual.clone() });
            }
        };
        let outcome = FileOutcome::Installed {
            source: installed.source.clone(),
            verification: installed.verification.clone(),
            sha256: installed.archive.as_ref().or(installed.payload.as_ref()).map(|d| d.sha256.clone()),
        };
        state.files.insert(spec.name.clone(), installed);
        self.root.save_state(&dataset.name, state)?;
        Ok(outcome)
    }

    /// Tries every source in order. Outer error: stop everything (local I/O); inner error: the
    /// file could not be obtained, with one line per attempt.
    fn obtain(&self, dataset: &Dataset, spec: &FileSpec) -> Result<std::result::Result<Obtained, Vec<String>>> {
        let mut attempts = Vec::new();
        // A verified archive left by an earlier run (kept, or unpacking was interrupted).
        let kept = self.root.downloads_dir(&dataset.name).join(&spec.name);
        if kept.exists() {
            match self.from_local_archive(dataset, spec, &kept)? {
                Ok(o) => return Ok(Ok(o)),
                Err(why) => {
                    attempts.push(format!("{}: {why}", kept.display()));
                    let _ = fs::remove_file(&kept);
                }
            }
        }
        for mirror in &self.options.mirrors {
            match mirror {
                Mirror::Dir(dir) => match self.from_mirror_dir(dataset, spec, dir)? {
                    Ok(o) => return Ok(Ok(o)),
                    Err(why) => attempts.push(why),
                },
                Mirror::Url(base) => match self.from_url(dataset, spec, &format!("{base}/{}", spec.name))? {
                    Ok(o) => return Ok(Ok(o)),
                    Err(why) => attempts.push(why),
                },
            }
        }
        for url in &spec.urls {
            match self.from_url(dataset, spec, url)? {
                Ok(o) => return Ok(Ok(o)),
                Err(why) => attempts.push(why),
            }
        }
        if attempts.is_empty() {
            attempts.push("no mirror is known for this file".into());
        }
        Ok(Err(attempts))
    }

    /// Copies a local file into `.downloads/` and verifies it as the download itself.
    fn from_local_archive(&self, dataset: &Dataset, spec: &FileSpec, file: &Path) -> Result<std::result::Result<Obtained, String>> {
        let downloads = self.root.downloads_dir(&dataset.name);
        fs::create_dir_all(&downloads)?;
        let target = downloads.join(&spec.name);
        if file != target {
            let part = downloads.join(format!("{}.part", spec.name));
            fs::copy(file, &part).with_context(|| format!("copying {} into {}", file.display(), downloads.display()))?;
            match self.verify_download(dataset, spec, &part)? {
                Ok((digests, verification)) => {
                    fs::rename(&part, &target)?;
                    return Ok(Ok(Obtained::Archive { path: target, digests, verification, source: file.display().to_string() }));
                }
                Err(why) => {
                    let _ = fs::remove_file(&part);
                    return Ok(Err(why));
                }
            }
        }
        Ok(self
            .verify_download(dataset, spec, &target)?
            .map(|(digests, verification)| Obtained::Archive { path: target.clone(), digests, verification, source: file.display().to_string() }))
    }

    fn from_mirror_dir(&self, dataset: &Dataset, spec: &FileSpec, dir: &Path) -> Result<std::result::Result<Obtained, String>> {
        let candidates = [dir.join(&spec.name), dir.join(&dataset.name).join(&spec.name)];
        let mut notes = Vec::new();
        for c in candidates.iter().filter(|c| c.is_file()) {
            match self.from_local_archive(dataset, spec, c)? {
                Ok(o) => return Ok(Ok(o)),
                Err(why) => notes.push(format!("{}: {why}", c.display())),
            }
        }
        // The decompressed payload, verified against its own checksum.
        if let (Unpack::Gz | Unpack::Bz2, Some(payload)) = (spec.unpack, &spec.payload) {
            let base = Path::new(&payload.path).file_name().map(PathBuf::from).unwrap_or_default();
            let payload_candidates = [dir.join(&base), dir.join(&dataset.name).join(&base), dir.join(&dataset.name).join(&payload.path)];
            for c in payload_candidates.iter().filter(|c| c.is_file()) {
                if payload.sha256.is_none() {
                    notes.push(format!("{}: found the decompressed payload, but the manifest knows no checksum for it", c.display()));
                    continue;
                }
                let staging = self.root.staging_dir(&dataset.name);
                fs::create_dir_all(&staging)?;
                let staged = staging.join(format!("{}.payload.{}", spec.name, std::process::id()));
                fs::copy(c, &staged).with_context(|| format!("copying {}", c.display()))?;
                let digests = digest_file(&staged)?;
                match checksum::verify_payload(&spec.name, payload, &digests) {
                    Ok(()) => return Ok(Ok(Obtained::Payload { path: staged, digests, source: c.display().to_string() })),
                    Err(why) => {
                        let _ = fs::remove_file(&staged);
                        notes.push(format!("{}: {why}", c.display()));
                    }
                }
            }
        }
        if notes.is_empty() {
            notes.push(format!("{}: not there (looked for {} and {}/{})", dir.display(), spec.name, dataset.name, spec.name));
        }
        Ok(Err(notes.join("; ")))
    }

    fn from_url(&self, dataset: &Dataset, spec: &FileSpec, url: &str) -> Result<std::result::Result<Obtained, String>> {
        let downloads = self.root.downloads_dir(&dataset.name);
        fs::create_dir_all(&downloads)?;
        let part = downloads.join(format!("{}.part", spec.name));
        let label = format!("{}/{}", dataset.name, spec.name);
        match download::download(&self.client, url, &part, &label, &self.options.http) {
            Ok(()) => {}
            Err(MirrorError::Local(e)) => return Err(e.context(format!("downloading {url}"))),
            Err(other) => return Ok(Err(format!("{url}: {other}"))),
        }
        match self.verify_download(dataset, spec, &part)? {
            Ok((digests, verification)) => {
                let target = downloads.join(&spec.name);
                fs::rename(&part, &target)?;
                Ok(Ok(Obtained::Archive { path: target, digests, verification, source: url.to_owned() }))
            }
            Err(why) => {
                // Never keep bytes that failed verification: the next mirror starts clean.
                let _ = fs::remove_file(&part);
                Ok(Err(format!("{url}: {why}")))
            }
        }
    }

    /// Hashes a complete download and checks it (pins under the root's pin lock).
    fn verify_download(&self, dataset: &Dataset, spec: &FileSpec, file: &Path) -> Result<std::result::Result<(Digests, Verification), String>> {
        let digests = digest_file(file)?;
        let _pin_lock = self.root.lock("pinned-checksums")?;
        let mut pins = Pins::load(self.root.path())?;
        match checksum::verify(&dataset.name, spec, &digests, &mut pins) {
            Ok(v) => {
                pins.save()?;
                if v == Verification::PinnedNow {
                    eprintln!(
                        "data-fetch: {}/{} has no published checksum; pinned SHA-256 {} ({} bytes) in {}. \
                         A maintainer can commit it to data-fetch/manifest.toml as sha256.",
                        dataset.name,
                        spec.name,
                        digests.sha256,
                        digests.size,
                        self.root.path().join(Pins::FILE_NAME).display()
                    );
                }
                Ok(Ok((digests, v)))
            }
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Unpacks out of sight, checks, then moves into the dataset folder.
    fn install(&self, dataset: &Dataset, spec: &FileSpec, obtained: Obtained) -> Result<InstalledFile> {
        let dataset_dir = self.root.dataset_dir(&dataset.name);
        let staging = self.root.staging_dir(&dataset.name);
        fs::create_dir_all(&staging)?;
        let (source, archive, verification, archive_path) = match obtained {
            Obtained::Payload { path, digests, source } => {
                let rel = spec.payload_path().context("payload without a path")?;
                store::replace_with(&path, &dataset_dir.join(rel))?;
                return Ok(InstalledFile {
                    source,
                    archive: None,
                    verification: Verification::Sha256,
                    payload: Some(digests),
                    installed: vec![rel.to_owned()],
                    unpacked_files: 1,
                    image_counts: BTreeMap::new(),
                    fetched_at: store::now_unix(),
                });
            }
            Obtained::Archive { path, digests, verification, source } => (source, digests, verification, path),
        };
        let mut installed = InstalledFile {
            source,
            archive: Some(archive.clone()),
            verification,
            payload: None,
            installed: Vec::new(),
            unpacked_files: 0,
            image_counts: BTreeMap::new(),
            fetched_at: store::now_unix(),
        };
        match spec.unpack {
            Unpack::None => {
                let rel = spec.payload_path().context("payload without a path")?;
                if self.options.keep_archives {
                    let staged = staging.join(format!("{}.{}", spec.name, std::process::id()));
                    fs::copy(&archive_path, &staged)?;
                    store::replace_with(&staged, &dataset_dir.join(rel))?;
                } else {
                    store::replace_with(&archive_path, &dataset_dir.join(rel))?;
                }
                installed.payload = Some(archive);
                installed.installed.push(rel.to_owned());
                installed.unpacked_files = 1;
            }
            Unpack::Gz | Unpack::Bz2 => {
                let payload = spec.payload.as_ref().context("payload missing")?;
                let staged = staging.join(format!("{}.payload.{}", spec.name, std::process::id()));
                let result = (|| -> Result<Digests> {
                    extract::decompress(spec.unpack, &archive_path, &staged)?;
                    let d = digest_file(&staged)?;
                    checksum::verify_payload(&spec.name, payload, &d)?;
                    Ok(d)
                })();
                let d = match result {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = fs::remove_file(&staged);
                        let _ = fs::remove_file(&archive_path);
                        return Err(e);
                    }
                };
                store::replace_with(&staged, &dataset_dir.join(&payload.path))?;
                installed.payload = Some(d);
                installed.installed.push(payload.path.clone());
                installed.unpacked_files = 1;
                self.drop_archive(&archive_path);
            }
            Unpack::Tar | Unpack::TarGz | Unpack::Zip => {
                let tree = staging.join(format!("{}.{}", spec.name, std::process::id()));
                let _ = fs::remove_dir_all(&tree);
                fs::create_dir_all(&tree)?;
                let checked = (|| -> Result<(u64, BTreeMap<String, u64>)> {
                    let files = extract::unpack_tree(spec.unpack, &archive_path, &tree)?;
                    let mut counts = BTreeMap::new();
                    for check in &spec.check {
                        let dir = tree.join(&check.path);
                        if !dir.is_dir() {
                            bail!("{}: expected folder '{}' is not in the archive", spec.name, check.path);
                        }
                        let n = extract::count_images(&dir)?;
                        match (check.images, check.min_images) {
                            (Some(want), _) if n != want => bail!("{}: '{}' holds {n} images, expected {want}", spec.name, check.path),
                            (_, Some(min)) if n < min => bail!("{}: '{}' holds {n} images, expected at least {min}", spec.name, check.path),
                            _ => {}
                        }
                        counts.insert(check.path.clone(), n);
                    }
                    Ok((files, counts))
                })();
                let (files, counts) = match checked {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = fs::remove_dir_all(&tree);
                        return Err(e);
                    }
                };
                for entry in fs::read_dir(&tree)? {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    store::replace_with(&entry.path(), &dataset_dir.join(&name))?;
                    installed.installed.push(name);
                }
                let _ = fs::remove_dir(&tree);
                installed.unpacked_files = files;
                installed.image_counts = counts;
                self.drop_archive(&archive_path);
            }
        }
        Ok(installed)
    }

    fn drop_archive(&self, path: &Path) {
        if !self.options.keep_archives {
            let _ = fs::remove_file(path);
        }
    }
}

/// The marker has an entry for the file that still matches the manifest, and what it installed
/// is on disk.
pub fn is_installed(root: &Root, dataset: &Dataset, spec: &FileSpec, state: &DatasetState) -> bool {
    let Some(entry) = state.files.get(&spec.name) else { return false };
    let archive_ok = match (&spec.sha256, &spec.md5, &entry.archive) {
        (Some(sha), _, Some(a)) => a.sha256.eq_ignore_ascii_case(sha),
        (None, Some(md5), Some(a)) => a.md5.eq_ignore_ascii_case(md5),
        _ => true,
    };
    let payload_ok = match (spec.payload.as_ref().and_then(|p| p.sha256.as_ref()), &entry.payload) {
        (Some(sha), Some(p)) => p.sha256.eq_ignore_ascii_case(sha),
        _ => true,
    };
    let dir = root.dataset_dir(&dataset.name);
    archive_ok && payload_ok && !entry.installed.is_empty() && entry.installed.iter().all(|p| dir.join(p).exists())
}
