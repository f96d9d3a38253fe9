//! Hashing, checking a file against what the manifest knows, and trust-on-first-use pins for files
//! whose checksum nobody publishes.

use crate::manifest::FileSpec;
use anyhow::{bail, Context, Result};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// SHA-256 and MD5 of a file, computed in one read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    pub size: u64,
    pub sha256: String,
    pub md5: String,
}

pub fn digest_file(path: &Path) -> Result<Digests> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    digest_reader(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("reading {}", path.display()))
}

pub fn digest_reader(mut reader: impl Read) -> std::io::Result<Digests> {
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digests { size, sha256: hex::encode(sha.finalize()), md5: hex::encode(md5.finalize()) })
}

/// What a downloaded file was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// The published SHA-256 matched.
    Sha256,
    /// The published MD5 matched (the SHA-256 is recorded alongside).
    Md5,
    /// A published SHA-256 prefix matched and the full hash matched this root's pin.
    Sha256PrefixAndPin,
    /// No published checksum: matched the SHA-256 pinned in this root on first download.
    Pinned,
    /// No published checksum and no pin yet: pinned now (trust on first use).
    PinnedNow,
}

/// Checks `digests` of the file `spec` describes against the manifest and the root's pins.
/// On first use of an unpublished checksum it records a pin (the caller saves `pins`).
pub fn verify(
    dataset: &str,
    spec: &FileSpec,
    digests: &Digests,
    pins: &mut Pins,
) -> Result<Verification> {
    let what = format!("{dataset}/{}", spec.name);
    if let Some(size) = spec.size {
        if digests.size != size {
            bail!("{what}: {} bytes, the manifest expects {size}", digests.size);
        }
    }
    if let Some(expected) = &spec.sha256 {
        if !digests.sha256.eq_ignore_ascii_case(expected) {
            bail!("{what}: SHA-256 {} does not match the published {expected}", digests.sha256);
        }
        return Ok(Verification::Sha256);
    }
    if let Some(expected) = &spec.md5 {
        if !digests.md5.eq_ignore_ascii_case(expected) {
            bail!("{what}: MD5 {} does not match the published {expected}", digests.md5);
        }
        return Ok(Verification::Md5);
    }
    if let Some(prefix) = &spec.sha256_prefix {
        if !digests.sha256.starts_with(&prefix.to_ascii_lowercase()) {
            bail!("{what}: SHA-256 {} does not start with the published prefix {prefix}", digests.sha256);
        }
    }
    match pins.get(dataset, &spec.name) {
        Some(pin) if pin.sha256 == digests.sha256 && pin.size == digests.size => {
            Ok(if spec.sha256_prefix.is_some() { Verification::Sha256PrefixAndPin } else { Verification::Pinned })
        }
        Some(pin) => bail!(
            "{what}: SHA-256 {} ({} bytes) differs from the SHA-256 pinned in {} on first download: {} \
             ({} bytes). The upstream file changed or this copy is corrupt; refusing it. If the change \
             is legitimate, delete that pin and fetch again.",
            digests.sha256,
            digests.size,
            pins.path.display(),
            pin.sha256,
            pin.size
        ),
        None => {
            pins.insert(dataset, &spec.name, digests);
            Ok(Verification::PinnedNow)
        }
    }
}

/// Checks the digests of a decompressed payload against what the manifest knows of it.
pub fn verify_payload(file: &str, payload: &crate::manifest::Payload, digests: &Digests) -> Result<()> {
    if let Some(sha) = &payload.sha256 {
        if !digests.sha256.eq_ignore_ascii_case(sha) {
            bail!("decompressed {file}: SHA-256 {} ({} bytes) does not match the manifest's {sha}", digests.sha256, digests.size);
        }
    }
    if let Some(size) = payload.size {
        if digests.size != size {
            bail!("decompressed {file} is {} bytes, the manifest expects {size}", digests.size);
        }
    }
    Ok(())
}

/// SHA-256 pins for files without a published checksum, kept per data root in
/// `pinned-checksums.toml`. A maintainer copies confirmed pins into the manifest.
#[derive(Debug)]
pub struct Pins {
    path: PathBuf,
    entries: BTreeMap<String, BTreeMap<String, Pin>>,
    dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub sha256: String,
    pub size: u64,
}

impl Pins {
    pub const FILE_NAME: &'static str = "pinned-checksums.toml";

    pub fn load(root: &Path) -> Result<Pins> {
        let path = root.join(Self::FILE_NAME);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Pins { path, entries, dirty: false })
    }

    pub fn get(&self, dataset: &str, file: &str) -> Option<&Pin> {
        self.entries.get(dataset).and_then(|d| d.get(file))
    }

    fn insert(&mut self, dataset: &str, file: &str, digests: &Digests) {
        self.entries
            .entry(dataset.to_owned())
            .or_default()
            .insert(file.to_owned(), Pin { sha256: digests.sha256.clone(), size: digests.size });
        self.dirty = true;
    }

    /// Writes the pins atomically if anything was added.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let header = "# SHA-256 pins of files whose checksum nobody publishes, recorded by data-fetch on\n\
                      # their first verified download (trust on first use). A later download that differs\n\
                      # is refused. Once confirmed, copy a pin into data-fetch/manifest.toml as sha256.\n\n";
        let body = toml::to_string(&self.entries).context("serializing pins")?;
        crate::store::write_atomically(&self.path, format!("{header}{body}").as_bytes())?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileSpec, Unpack};

    fn spec() -> FileSpec {
        FileSpec {
            name: "a.bin".into(),
            urls: vec![],
            size: None,
            sha256: None,
            md5: None,
            sha256_prefix: None,
            checksum_source: None,
            unpack: Unpack::None,
            payload: None,
            manual: None,
            check: vec![],
        }
    }

    #[test]
    fn digests_match_known_values() {
        let d = digest_reader(&b"abc"[..]).unwrap();
        assert_eq!(d.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.size, 3);
    }

    #[test]
    fn first_download_is_pinned_and_a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut pins = Pins::load(dir.path()).unwrap();
        let a = digest_reader(&b"first"[..]).unwrap();
        assert_eq!(verify("v", &spec(), &a, &mut pins).unwrap(), Verification::PinnedNow);
        pins.save().unwrap();
        let mut pins = Pins::load(dir.path()).unwrap();
        assert_eq!(verify("v", &spec(), &a, &mut pins).unwrap(), Verification::Pinned);
        let b = digest_reader(&b"second"[..]).unwrap();
        let err = verify("v", &spec(), &b, &mut pins).unwrap_err().to_string();
        assert!(err.contains("refusing") && err.contains(&a.sha256), "{err}");
    }

    #[test]
    fn published_checksums_win_and_mismatches_name_both_values() {
        let mut pins = Pins::load(Path::new("/nonexistent")).unwrap();
        let d = digest_reader(&b"abc"[..]).unwrap();
        let mut s = spec();
        s.md5 = Some("900150983cd24fb0d6963f7d28e17f72".into());
        assert_eq!(verify("v", &s, &d, &mut pins).unwrap(), Verification::Md5);
        s.md5 = Some("00000000000000000000000000000000".into());
        let err = verify("v", &s, &d, &mut pins).unwrap_err().to_string();
        assert!(err.contains("900150983cd24fb0d6963f7d28e17f72") && err.contains("published"), "{err}");
        let mut s = spec();
        s.size = Some(4);
        assert!(verify("v", &s, &d, &mut pins).unwrap_err().to_string().contains("expects 4"));
        let mut s = spec();
        s.sha256_prefix = Some("ffff".into());
        assert!(verify("v", &s, &d, &mut pins).unwrap_err().to_string().contains("prefix"));
    }
}
