//! The manifest: what to download, from where, how to check it, and where it goes.
//! The data lives in `data-fetch/manifest.toml` (embedded in the binary; `--manifest` overrides).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Component, Path};

/// The manifest shipped with the binary.
pub const EMBEDDED: &str = include_str!("../manifest.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    #[serde(rename = "dataset")]
    pub datasets: Vec<Dataset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dataset,
    Weights,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    pub family: String,
    pub kind: Kind,
    pub description: String,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(rename = "file")]
    pub files: Vec<FileSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Unpack {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "gz")]
    Gz,
    #[serde(rename = "bz2")]
    Bz2,
    #[serde(rename = "tar")]
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "zip")]
    Zip,
}

impl Unpack {
    /// Archives that unpack into a directory tree (as opposed to one payload file).
    pub fn is_tree(self) -> bool {
        matches!(self, Unpack::Tar | Unpack::TarGz | Unpack::Zip)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub name: String,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub md5: Option<String>,
    #[serde(default)]
    pub sha256_prefix: Option<String>,
    #[serde(default)]
    pub checksum_source: Option<String>,
    pub unpack: Unpack,
    #[serde(default)]
    pub payload: Option<Payload>,
    #[serde(default)]
    pub manual: Option<String>,
    #[serde(default)]
    pub check: Vec<ImageCheck>,
}

/// The single file a `none`/`gz`/`bz2` download turns into.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub path: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// After unpacking, `path` must hold `images` (exactly) or at least `min_images` image files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCheck {
    pub path: String,
    #[serde(default)]
    pub images: Option<u64>,
    #[serde(default)]
    pub min_images: Option<u64>,
}

/// How a file's bytes are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumStatus {
    Sha256,
    Md5,
    /// Only a prefix of the SHA-256 is published (torchvision file names).
    Sha256Prefix,
    /// Nothing published: pinned on first download.
    None,
}

impl FileSpec {
    pub fn checksum_status(&self) -> ChecksumStatus {
        if self.sha256.is_some() {
            ChecksumStatus::Sha256
        } else if self.md5.is_some() {
            ChecksumStatus::Md5
        } else if self.sha256_prefix.is_some() {
            ChecksumStatus::Sha256Prefix
        } else {
            ChecksumStatus::None
        }
    }

    /// Where the payload lands, relative to the dataset folder (single-file unpacks only).
    pub fn payload_path(&self) -> Option<&str> {
        self.payload.as_ref().map(|p| p.path.as_str())
    }
}

impl Manifest {
    pub fn embedded() -> Result<Manifest> {
        Manifest::parse(EMBEDDED, "data-fetch/manifest.toml (embedded)")
    }

    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parses and validates; errors name the file and, for syntax and unknown keys, the line.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let manifest: Manifest = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        manifest.validate().with_context(|| format!("{origin}: invalid manifest"))?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<()> {
        if self.version != 1 {
            bail!("version {} is not supported (expected 1)", self.version);
        }
        let mut names = HashSet::new();
        for d in &self.datasets {
            if !names.insert(d.name.as_str()) {
                bail!("dataset '{}' is listed twice", d.name);
            }
            if ["all", "digits", "weights"].contains(&d.name.as_str()) {
                bail!("dataset name '{}' is reserved for a group", d.name);
            }
            if d.files.is_empty() {
                bail!("dataset '{}' has no [[dataset.file]]", d.name);
            }
            let mut file_names = HashSet::new();
            for f in &d.files {
                let at = format!("dataset '{}', file '{}'", d.name, f.name);
                if !file_names.insert(f.name.as_str()) {
                    bail!("{at}: listed twice");
                }
                if f.name.contains('/') || f.name.contains('\\') || f.name.starts_with('.') {
                    bail!("{at}: a file name must be a plain name");
                }
                for (what, hex, len) in [("sha256", &f.sha256, 64), ("md5", &f.md5, 32)] {
                    if let Some(h) = hex {
                        if h.len() != len || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                            bail!("{at}: {what} must be {len} hex digits, got '{h}'");
                        }
                    }
                }
                match (f.unpack.is_tree(), &f.payload) {
                    (true, Some(_)) => bail!("{at}: payload is for none/gz/bz2; a {:?} archive uses check", f.unpack),
                    (false, None) => bail!("{at}: unpack = {:?} needs payload = {{ path = ... }}", f.unpack),
                    (false, Some(_)) if !f.check.is_empty() => bail!("{at}: image checks apply to tar/zip archives only"),
                    _ => {}
                }
                if let Some(p) = &f.payload {
                    check_relative(&p.path).with_context(|| format!("{at}: payload path"))?;
                }
                for c in &f.check {
                    check_relative(&c.path).with_context(|| format!("{at}: check path"))?;
                    if c.images.is_some() == c.min_images.is_some() {
                        bail!("{at}: check '{}' needs exactly one of images, min_images", c.path);
                    }
                }
            }
        }
        Ok(())
    }

    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// Resolves a name given on the command line: a dataset, a family (`digits`, `office31`, ...),
    /// `weights` or `all`.
    pub fn select(&self, name: &str) -> Result<Vec<&Dataset>> {
        let selected: Vec<&Dataset> = match name {
            "all" => self.datasets.iter().collect(),
            "weights" => self.datasets.iter().filter(|d| d.kind == Kind::Weights).collect(),
            _ => match self.dataset(name) {
                Some(d) => vec![d],
                None => self.datasets.iter().filter(|d| d.family == name).collect(),
            },
        };
        if selected.is_empty() {
            let mut known: Vec<&str> = self.datasets.iter().map(|d| d.name.as_str()).collect();
            let mut families: Vec<&str> = self.datasets.iter().map(|d| d.family.as_str()).collect();
            families.sort();
            families.dedup();
            known.extend(families.into_iter().filter(|f| self.dataset(f).is_none()));
            known.push("all");
            bail!("unknown dataset or group '{name}'; known: {}", known.join(", "));
        }
        Ok(selected)
    }
}

/// A path inside the dataset folder: relative, no `..`.
fn check_relative(path: &str) -> Result<()> {
    let p = Path::new(path);
    if path.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("'{path}' must be a relative path without '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_is_valid_and_covers_the_five_families_and_weights() {
        let m = Manifest::embedded().unwrap();
        for family in ["digits", "office31", "officehome", "visda2017", "domainnet"] {
            assert!(!m.select(family).unwrap().is_empty(), "{family}");
        }
        let weights: Vec<&str> = m.select("weights").unwrap().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(weights, ["resnet50", "resnet101", "vit-b16-in21k-ft-in1k", "vit-b16-in1k"]);
        assert_eq!(m.select("digits").unwrap().len(), 3);
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_and_line() {
        let text = "version = 1\n[[dataset]]\nname = \"x\"\nfamily = \"x\"\nkind = \"dataset\"\ndescription = \"\"\ncolour = 3\n";
        let err = format!("{:#}", Manifest::parse(text, "my.toml").unwrap_err());
        assert!(err.contains("my.toml") && err.contains("colour") && err.contains("line 7"), "{err}");
    }

    #[test]
    fn inconsistent_entries_are_rejected() {
        let base = |extra: &str| {
            format!("version = 1\n[[dataset]]\nname = \"x\"\nfamily = \"x\"\nkind = \"dataset\"\ndescription = \"\"\n[[dataset.file]]\nname = \"a.tar\"\n{extra}")
        };
        let err = |extra: &str| format!("{:#}", Manifest::parse(&base(extra), "m.toml").unwrap_err());
        assert!(err("unpack = \"gz\"\n").contains("needs payload"));
        assert!(err("unpack = \"tar\"\nsha256 = \"abc\"\n").contains("64 hex digits"));
        assert!(err("unpack = \"tar\"\ncheck = [{ path = \"../x\", images = 1 }]\n").contains("without '..'"));
        assert!(Manifest::parse(&base("unpack = \"tar\"\n"), "m.toml").is_ok());
    }

    #[test]
    fn unknown_selection_lists_known_names() {
        let m = Manifest::embedded().unwrap();
        let err = m.select("cifar").unwrap_err().to_string();
        assert!(err.contains("mnist") && err.contains("digits") && err.contains("all"), "{err}");
    }
}
