//! What a run transfers between: a digits task, a task of one of the four image benchmarks, or a
//! user's own pair of image folders or image lists.
//!
//! Written forms (also the form recorded in run records and hashed into grid cells):
//! - digits: `mnist-usps`, `usps-mnist`, `svhn-mnist` (letters `M-U` etc. are accepted);
//! - benchmarks: `<dataset>:<task id>` with the protocol's ids, e.g. `office31:A-W`,
//!   `officehome:Rw-Cl`, `visda2017:Syn-Real`, `domainnet:clp-inf` (domain names are accepted too:
//!   `office31:amazon-webcam`);
//! - your own data: `folder:PATH_A->PATH_B` (two folders of class subfolders) or
//!   `list:FILE_A->FILE_B` (two image lists of `<path> <label>` lines, paths relative to the list).

use super::benchmarks::Benchmark;
use super::DigitsTask;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One side of a user's own task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OwnData {
    /// A folder of class subfolders (labels: sorted subfolder names).
    Folder(PathBuf),
    /// An image list: `<path> <label>` per line, paths relative to the list's folder.
    List(PathBuf),
}

impl OwnData {
    pub fn path(&self) -> &PathBuf {
        match self {
            OwnData::Folder(p) | OwnData::List(p) => p,
        }
    }

    /// Its images and labels (list paths relative to the list's folder).
    pub fn read(&self) -> Result<super::image_list::ImageList> {
        use super::image_list::ImageList;
        match self {
            OwnData::Folder(p) => ImageList::from_class_folders(p, None),
            OwnData::List(p) => ImageList::from_list_file(p, p.parent().unwrap_or(std::path::Path::new("")), None),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Task {
    Digits(DigitsTask),
    /// A task of an image benchmark: its source and target domain indices in
    /// [`Benchmark::domains`].
    Benchmark { benchmark: Benchmark, source: usize, target: usize },
    Own { source: OwnData, target: OwnData },
}

impl Task {
    pub fn parse(s: &str) -> Result<Task> {
        if let Some(rest) = s.strip_prefix("folder:").or_else(|| s.strip_prefix("list:")) {
            let list = s.starts_with("list:");
            let (a, b) = rest
                .split_once("->")
                .with_context(|| format!("task '{s}': expected {}:PATH_A->PATH_B", if list { "list" } else { "folder" }))?;
            if a.is_empty() || b.is_empty() {
                bail!("task '{s}': both sides need a path");
            }
            let side = |p: &str| if list { OwnData::List(PathBuf::from(p)) } else { OwnData::Folder(PathBuf::from(p)) };
            return Ok(Task::Own { source: side(a), target: side(b) });
        }
        if let Some((dataset, id)) = s.split_once(':') {
            let benchmark = Benchmark::parse(dataset)?;
            let (a, b) = id.split_once('-').with_context(|| format!("task '{s}': expected {dataset}:<source>-<target>"))?;
            let (source, target) = (benchmark.domain_index(a)?, benchmark.domain_index(b)?);
            if source == target {
                bail!("task '{s}': source and target are the same domain");
            }
            return Ok(Task::Benchmark { benchmark, source, target });
        }
        DigitsTask::parse(s).map(Task::Digits).with_context(|| {
            format!(
                "task '{s}' is not a digits task; image tasks are written <dataset>:<task>, e.g. office31:A-W, \
                 or folder:PATH_A->PATH_B / list:FILE_A->FILE_B for your own data"
            )
        })
    }

    /// A protocol task of `dataset` (protocol.toml's dataset names and task ids).
    pub fn for_protocol(dataset: &str, id: &str) -> Result<Task> {
        if dataset == "digits" {
            return DigitsTask::parse(id).map(Task::Digits);
        }
        Task::parse(&format!("{dataset}:{id}"))
    }

    /// The written form (see the module documentation).
    pub fn name(&self) -> String {
        match self {
            Task::Digits(t) => t.name(),
            Task::Benchmark { benchmark, source, target } => {
                let d = benchmark.domains();
                format!("{}:{}-{}", benchmark.name(), d[*source].id, d[*target].id)
            }
            Task::Own { source, target } => {
                let kind = if matches!(source, OwnData::List(_)) { "list" } else { "folder" };
                format!("{kind}:{}->{}", source.path().display(), target.path().display())
            }
        }
    }

    /// For tables and logs: M→U, A→W, Syn→Real, or the two folder names.
    pub fn short_name(&self) -> String {
        match self {
            Task::Digits(t) => t.short_name(),
            Task::Benchmark { benchmark, source, target } => {
                let d = benchmark.domains();
                format!("{}→{}", d[*source].id, d[*target].id)
            }
            Task::Own { source, target } => {
                let base = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string());
                format!("{}→{}", base(source.path()), base(target.path()))
            }
        }
    }

    pub fn digits(&self) -> Option<DigitsTask> {
        match self {
            Task::Digits(t) => Some(*t),
            _ => None,
        }
    }

    /// The class count where the task alone fixes it (a user's own data: known once read).
    pub fn known_classes(&self) -> Option<i64> {
        match self {
            Task::Digits(_) => Some(10),
            Task::Benchmark { benchmark, .. } => Some(benchmark.classes() as i64),
            Task::Own { .. } => None,
        }
    }
}

impl TryFrom<String> for Task {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        Task::parse(&s)
    }
}

impl From<Task> for String {
    fn from(t: Task) -> String {
        t.name()
    }
}

impl From<DigitsTask> for Task {
    fn from(t: DigitsTask) -> Task {
        Task::Digits(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_form_parses_and_round_trips() {
        for s in ["mnist-usps", "office31:A-W", "officehome:Rw-Cl", "visda2017:Syn-Real", "domainnet:qdr-skt", "folder:a/b->c d/e", "list:x.txt->y.txt"] {
            let t = Task::parse(s).unwrap();
            assert_eq!(t.name(), s);
            assert_eq!(Task::parse(&t.name()).unwrap(), t);
        }
        assert_eq!(Task::parse("M-U").unwrap().name(), "mnist-usps");
        assert_eq!(Task::parse("office31:amazon-webcam").unwrap().name(), "office31:A-W");
        assert_eq!(Task::parse("officehome:Real World-Art").unwrap().name(), "officehome:Rw-Ar");
        assert_eq!(Task::parse("office31:A-W").unwrap().known_classes(), Some(31));
        assert_eq!(Task::parse("domainnet:clp-inf").unwrap().known_classes(), Some(345));
        assert_eq!(Task::parse("visda2017:Syn-Real").unwrap().short_name(), "Syn→Real");
        assert!(Task::parse("office31:A-A").is_err());
        assert!(Task::parse("office31:A-X").unwrap_err().to_string().contains("A, W, D"));
        assert!(Task::parse("folder:onlyone").is_err());
        assert!(Task::parse("cifar:A-B").unwrap_err().to_string().contains("office31"));
    }

    #[test]
    fn the_digits_form_is_unchanged_in_json() {
        let t = Task::parse("svhn-mnist").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), serde_json::to_string(&DigitsTask::parse("svhn-mnist").unwrap()).unwrap());
    }
}
