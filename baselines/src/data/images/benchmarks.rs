//! The four image benchmarks: their domains, class orders, and where each split's images are in
//! the layout data-fetch produces (data-fetch/manifest.toml), per docs/design/protocols-images.md:
//!
//! | benchmark | layout under the data root | labels |
//! |---|---|---|
//! | office31 | `office31/<domain>/images/<class>/*.jpg` | sorted (ASCII) class folder names |
//! | officehome | `officehome/OfficeHomeDataset_10072016/<Domain>/<Class>/*.jpg` | the fixed TLlib order below |
//! | visda2017 | `visda2017/{train,validation}/image_list.txt` (`<class>/<file> <label>`) | the lists' labels (alphabetical) |
//! | domainnet | `domainnet/splits/<domain>_{train,test}.txt` (`<domain>/<class>/<file> <label>`, relative to `domainnet/`) | the lists' labels |
//!
//! Splits: Office-31, Office-Home and VisDA train on the whole source and target lists and
//! evaluate on the whole target list (test transform); DomainNet trains on the `_train` lists and
//! evaluates on the target's `_test` list.

use super::image_list::ImageList;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    Office31,
    OfficeHome,
    Visda2017,
    DomainNet,
}

/// A domain: the protocol's id (`A`), its name (`amazon`) and its folder or list stem.
#[derive(Clone, Copy, Debug)]
pub struct DomainInfo {
    pub id: &'static str,
    pub name: &'static str,
    pub folder: &'static str,
}

const fn d(id: &'static str, name: &'static str, folder: &'static str) -> DomainInfo {
    DomainInfo { id, name, folder }
}

const OFFICE31: [DomainInfo; 3] = [d("A", "amazon", "amazon"), d("W", "webcam", "webcam"), d("D", "dslr", "dslr")];
const OFFICEHOME: [DomainInfo; 4] =
    [d("Ar", "Art", "Art"), d("Cl", "Clipart", "Clipart"), d("Pr", "Product", "Product"), d("Rw", "Real World", "Real World")];
const VISDA: [DomainInfo; 2] = [d("Syn", "train", "train"), d("Real", "validation", "validation")];
const DOMAINNET: [DomainInfo; 6] = [
    d("clp", "clipart", "clipart"),
    d("inf", "infograph", "infograph"),
    d("pnt", "painting", "painting"),
    d("qdr", "quickdraw", "quickdraw"),
    d("rel", "real", "real"),
    d("skt", "sketch", "sketch"),
];

/// Office-Home's label order (TLlib's list, which the released code's lists use): not
/// alphabetical (docs/design/protocols-images.md §5).
pub const OFFICEHOME_CLASSES: [&str; 65] = [
    "Drill", "Exit_Sign", "Bottle", "Glasses", "Computer", "File_Cabinet", "Shelf", "Toys", "Sink", "Laptop", "Kettle", "Folder",
    "Keyboard", "Flipflops", "Pencil", "Bed", "Hammer", "ToothBrush", "Couch", "Bike", "Postit_Notes", "Mug", "Webcam", "Desk_Lamp",
    "Telephone", "Helmet", "Mouse", "Pen", "Monitor", "Mop", "Sneakers", "Notebook", "Backpack", "Alarm_Clock", "Push_Pin",
    "Paper_Clip", "Batteries", "Radio", "Fan", "Ruler", "Pan", "Screwdriver", "Trash_Can", "Printer", "Speaker", "Eraser", "Bucket",
    "Chair", "Calendar", "Calculator", "Flowers", "Lamp_Shade", "Spoon", "Candles", "Clipboards", "Scissors", "TV", "Curtains", "Fork",
    "Soda", "Table", "Knives", "Oven", "Refrigerator", "Marker",
];

/// Which part of a domain a set is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Labelled source / unlabelled target training data.
    Train,
    /// Target evaluation data.
    Test,
}

impl Benchmark {
    pub const ALL: [Benchmark; 4] = [Benchmark::Office31, Benchmark::OfficeHome, Benchmark::Visda2017, Benchmark::DomainNet];

    /// The name used by protocol.toml and data-fetch.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Office31 => "office31",
            Benchmark::OfficeHome => "officehome",
            Benchmark::Visda2017 => "visda2017",
            Benchmark::DomainNet => "domainnet",
        }
    }

    pub fn parse(s: &str) -> Result<Benchmark> {
        Benchmark::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            anyhow::anyhow!("unknown image benchmark '{s}': expected one of office31, officehome, visda2017, domainnet (or folder: / list: for your own data)")
        })
    }

    pub fn classes(self) -> usize {
        match self {
            Benchmark::Office31 => 31,
            Benchmark::OfficeHome => 65,
            Benchmark::Visda2017 => 12,
            Benchmark::DomainNet => 345,
        }
    }

    pub fn domains(self) -> &'static [DomainInfo] {
        match self {
            Benchmark::Office31 => &OFFICE31,
            Benchmark::OfficeHome => &OFFICEHOME,
            Benchmark::Visda2017 => &VISDA,
            Benchmark::DomainNet => &DOMAINNET,
        }
    }

    /// A domain by id (`A`) or name (`amazon`).
    pub fn domain_index(self, s: &str) -> Result<usize> {
        self.domains().iter().position(|d| d.id == s || d.name == s || d.folder == s).ok_or_else(|| {
            let ids: Vec<&str> = self.domains().iter().map(|d| d.id).collect();
            anyhow::anyhow!("{}: unknown domain '{s}': expected one of {}", self.name(), ids.join(", "))
        })
    }

    /// Reads the images of `domain` in `role` from the data root.
    pub fn read(self, root: &Path, domain: usize, role: Role) -> Result<ImageList> {
        let info = self.domains()[domain];
        let dir = root.join(self.name());
        let fetch_hint = format!("(fetch it with `data-fetch fetch {}`, or point --data-root at a copy)", self.name());
        let list = match self {
            Benchmark::Office31 => {
                let folder = dir.join(info.folder).join("images");
                if !folder.is_dir() {
                    bail!("the Office-31 {} images are not at {} {fetch_hint}", info.name, folder.display());
                }
                ImageList::from_class_folders(&folder, None)?
            }
            Benchmark::OfficeHome => {
                let folder = dir.join("OfficeHomeDataset_10072016").join(info.folder);
                if !folder.is_dir() {
                    bail!("the Office-Home {} images are not at {} {fetch_hint}", info.name, folder.display());
                }
                ImageList::from_class_folders(&folder, Some(&OFFICEHOME_CLASSES))?
            }
            Benchmark::Visda2017 => {
                let list = dir.join(info.folder).join("image_list.txt");
                if !list.is_file() {
                    bail!("the VisDA-2017 {} image list is not at {} {fetch_hint}", info.name, list.display());
                }
                ImageList::from_list_file(&list, &dir.join(info.folder), Some(self.classes()))?
            }
            Benchmark::DomainNet => {
                let split = match role {
                    Role::Train => "train",
                    Role::Test => "test",
                };
                let list = dir.join("splits").join(format!("{}_{split}.txt", info.folder));
                if !list.is_file() {
                    bail!("the DomainNet {} {split} list is not at {} {fetch_hint}", info.name, list.display());
                }
                ImageList::from_list_file(&list, &dir, Some(self.classes()))?
            }
        };
        if list.classes.len() != self.classes() {
            bail!("{}: {} classes, but {} has {}", list.origin, list.classes.len(), self.name(), self.classes());
        }
        Ok(list)
    }

    /// What each set of a task is read as, for the run record.
    pub fn describe(self, domain: usize, role: Role) -> String {
        let info = self.domains()[domain];
        match (self, role) {
            (Benchmark::DomainNet, Role::Train) => format!("{} train split", info.name),
            (Benchmark::DomainNet, Role::Test) => format!("{} test split", info.name),
            _ => format!("{} (all images)", info.name),
        }
    }
}
