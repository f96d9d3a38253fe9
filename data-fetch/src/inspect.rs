//! What is on disk: per-dataset status (for `list` and `path`) and re-verification (`verify`).

use crate::checksum::digest_file;
use crate::extract::count_images;
use crate::fetch::is_installed;
use crate::manifest::{Dataset, Unpack};
use crate::store::Root;
use anyhow::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Complete,
    Partial { present: usize, total: usize },
    Missing,
}

impl Status {
    pub fn describe(&self) -> String {
        match self {
            Status::Complete => "complete".into(),
            Status::Partial { present, total } => format!("partial ({present}/{total} files)"),
            Status::Missing => "not fetched".into(),
        }
    }
}

pub fn status(root: &Root, dataset: &Dataset) -> Result<Status> {
    let state = root.load_state(&dataset.name)?;
    let present = dataset.files.iter().filter(|f| is_installed(root, dataset, f, &state)).count();
    Ok(match present {
        0 => Status::Missing,
        n if n == dataset.files.len() => Status::Complete,
        n => Status::Partial { present: n, total: dataset.files.len() },
    })
}

/// One problem found by [`verify`].
#[derive(Debug)]
pub struct Problem {
    pub file: String,
    pub what: String,
}

/// Re-checks what the marker says is installed: payload files are hashed again against the
/// manifest (or the digests recorded at install), unpacked folders are recounted.
pub fn verify(root: &Root, dataset: &Dataset) -> Result<(usize, Vec<Problem>)> {
    let state = root.load_state(&dataset.name)?;
    let dir = root.dataset_dir(&dataset.name);
    let mut checked = 0;
    let mut problems = Vec::new();
    for spec in &dataset.files {
        let problem = |what: String| Problem { file: spec.name.clone(), what };
        let Some(entry) = state.files.get(&spec.name) else {
            problems.push(problem("not fetched".into()));
            continue;
        };
        checked += 1;
        if !is_installed(root, dataset, spec, &state) {
            problems.push(problem("installed files are missing, or the manifest's checksum changed since the fetch".into()));
            continue;
        }
        match spec.unpack {
            Unpack::None | Unpack::Gz | Unpack::Bz2 => {
                let rel = spec.payload_path().unwrap_or(&spec.name);
                let digests = digest_file(&dir.join(rel))?;
                let expected = spec
                    .payload
                    .as_ref()
                    .and_then(|p| p.sha256.clone())
                    .or_else(|| if spec.unpack == Unpack::None { spec.sha256.clone() } else { None })
                    .or_else(|| entry.payload.as_ref().map(|p| p.sha256.clone()));
                match expected {
                    Some(sha) if !digests.sha256.eq_ignore_ascii_case(&sha) => {
                        problems.push(problem(format!("{rel}: SHA-256 {} differs from {sha}", digests.sha256)))
                    }
                    None => problems.push(problem(format!("{rel}: nothing to compare its SHA-256 with"))),
                    _ => {}
                }
                if spec.unpack == Unpack::None {
                    if let Some(md5) = &spec.md5 {
                        if !digests.md5.eq_ignore_ascii_case(md5) {
                            problems.push(problem(format!("{rel}: MD5 {} differs from the published {md5}", digests.md5)));
                        }
                    }
                }
            }
            Unpack::Tar | Unpack::TarGz | Unpack::Zip => {
                for check in &spec.check {
                    let n = count_images(&dir.join(&check.path))?;
                    let ok = check.images.is_none_or(|want| n == want) && check.min_images.is_none_or(|min| n >= min);
                    if !ok {
                        problems.push(problem(format!("'{}' holds {n} images, expected {:?}", check.path, check.images.or(check.min_images))));
                    }
                }
            }
        }
    }
    Ok((checked, problems))
}
