//! A set of labelled image files, read from a folder of class subfolders or from an image list
//! (`<path> <label>` per line; the label is the last token, so paths may hold spaces).
//!
//! Every listed file must exist when the list is read; a line that does not parse or a label out
//! of range is an error naming the list file and line. Nothing is skipped silently: files in class
//! folders that are not .jpg/.jpeg/.png are left out and counted in the list's notes.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageEntry {
    pub path: PathBuf,
    pub label: u32,
    /// The list line this entry came from (1-based); 0 for folder entries.
    pub line: u32,
}

#[derive(Clone, Debug)]
pub struct ImageList {
    pub entries: Vec<ImageEntry>,
    /// Class names by label.
    pub classes: Vec<String>,
    /// The folder or list file the entries come from.
    pub origin: String,
    /// What was left out, and why (recorded with the run).
    pub notes: Vec<String>,
}

pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

/// Image files below `dir` (recursively, following links); other files go to `ignored`.
fn collect_images(dir: &Path, files: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if path.is_dir() {
            collect_images(&path, files, ignored)?;
        } else if is_image_file(&path) {
            files.push(path);
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            ignored.push(path);
        }
    }
    Ok(())
}

impl ImageList {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where entry `i` came from, for error messages.
    pub fn locate(&self, i: usize) -> String {
        let e = &self.entries[i];
        if e.line > 0 {
            format!("{} (listed in {} line {})", e.path.display(), self.origin, e.line)
        } else {
            e.path.display().to_string()
        }
    }

    /// A folder of class subfolders. Labels follow `order` when given (every name in it must be a
    /// subfolder and no other subfolder may exist), otherwise the subfolder names sorted by bytes.
    /// Images anywhere below a class folder belong to it (as in torchvision's ImageFolder), in
    /// sorted path order.
    pub fn from_class_folders(dir: &Path, order: Option<&[&str]>) -> Result<ImageList> {
        let mut folders: Vec<String> = Vec::new();
        for entry in fs::read_dir(dir).with_context(|| format!("reading the class folders of {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            if entry.file_type()?.is_dir() {
                let name = entry.file_name().into_string().map_err(|n| anyhow::anyhow!("{}: folder name {n:?} is not UTF-8", dir.display()))?;
                if !name.starts_with('.') {
                    folders.push(name);
                }
            }
        }
        folders.sort();
        if folders.is_empty() {
            bail!("{} has no class subfolders (expected <class>/<image> files inside)", dir.display());
        }
        let classes: Vec<String> = match order {
            Some(order) => {
                let missing: Vec<&str> = order.iter().filter(|c| !folders.iter().any(|f| f == *c)).copied().collect();
                let extra: Vec<&String> = folders.iter().filter(|f| !order.contains(&f.as_str())).collect();
                if !missing.is_empty() || !extra.is_empty() {
                    bail!("{}: class folders differ from the expected {} classes (missing: {missing:?}; unexpected: {extra:?})", dir.display(), order.len());
                }
                order.iter().map(|c| c.to_string()).collect()
            }
            None => folders,
        };
        let mut entries = Vec::new();
        let mut ignored: Vec<PathBuf> = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let mut files: Vec<PathBuf> = Vec::new();
            collect_images(&dir.join(class), &mut files, &mut ignored)?;
            files.sort();
            entries.extend(files.into_iter().map(|path| ImageEntry { path, label: label as u32, line: 0 }));
        }
        let mut notes = Vec::new();
        if !ignored.is_empty() {
            ignored.sort();
            notes.push(format!(
                "{}: {} entries in class folders are not .jpg/.jpeg/.png files and were left out (first: {})",
                dir.display(),
                ignored.len(),
                ignored[0].display()
            ));
        }
        if entries.is_empty() {
            bail!("{}: the class folders hold no .jpg/.jpeg/.png images", dir.display());
        }
        Ok(ImageList { entries, classes, origin: dir.display().to_string(), notes })
    }

    /// An image list: `<path> <label>` per line, paths relative to `base`. `classes`, when known,
    /// bounds the labels and, with it, class names must be consistent: each label's images lie in
    /// one folder, whose name names the class. Without it, labels run to the largest one listed
    /// and class names are the folders where consistent, else `class <k>`.
    pub fn from_list_file(list: &Path, base: &Path, classes: Option<usize>) -> Result<ImageList> {
        let text = fs::read(list).with_context(|| format!("reading the image list {}", list.display()))?;
        let text = String::from_utf8(text).map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", list.display()))?;
        let mut entries = Vec::new();
        let mut folder_of: BTreeMap<u32, (String, u32)> = BTreeMap::new();
        let mut consistent = true;
        for (k, raw) in text.lines().enumerate() {
            let line_no = k as u32 + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let here = || format!("{} line {line_no}", list.display());
            let (path, label) = line
                .rsplit_once(|c: char| c.is_whitespace())
                .with_context(|| format!("{}: expected '<path> <label>', found '{line}'", here()))?;
            let label: u32 = label
                .parse()
                .map_err(|_| anyhow::anyhow!("{}: the label '{label}' is not a non-negative integer (line: '{line}')", here()))?;
            if let Some(n) = classes {
                if label as usize >= n {
                    bail!("{}: label {label} is out of range (this dataset has {n} classes, labels 0..{})", here(), n - 1);
                }
            }
            let rel = path.trim().trim_start_matches("./");
            let full = base.join(rel);
            if !full.is_file() {
                bail!("{}: the image {} does not exist", here(), full.display());
            }
            let folder = Path::new(rel).parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            match folder_of.get(&label) {
                Some((f, first)) if *f != folder => {
                    if classes.is_some() {
                        bail!("{}: label {label} is given to folder '{folder}', but line {first} gave it to '{f}'", here());
                    }
                    consistent = false;
                }
                Some(_) => {}
                None => {
                    folder_of.insert(label, (folder, line_no));
                }
            }
            entries.push(ImageEntry { path: full, label, line: line_no });
        }
        if entries.is_empty() {
            bail!("{}: the image list is empty", list.display());
        }
        let n = classes.unwrap_or_else(|| entries.iter().map(|e| e.label as usize).max().unwrap_or(0) + 1);
        let class_names: Vec<String> = (0..n as u32)
            .map(|k| match folder_of.get(&k) {
                Some((f, _)) if consistent && !f.is_empty() => f.clone(),
                _ => format!("class {k}"),
            })
            .collect();
        let mut notes = Vec::new();
        let absent = (0..n as u32).filter(|k| !folder_of.contains_key(k)).count();
        if absent > 0 {
            notes.push(format!("{}: {absent} of {n} classes have no image in this list", list.display()));
        }
        Ok(ImageList { entries, classes: class_names, origin: list.display().to_string(), notes })
    }
}
