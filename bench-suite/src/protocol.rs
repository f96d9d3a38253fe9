//! The protocol file (`bench-suite/protocol.toml`, embedded; `--protocol` overrides): datasets and
//! tasks, baselines, harmonizers, seeds, hyperparameters, schedules and profiles.

use anyhow::{bail, Context, Result};
use baselines::data::transform::{ImageInput, ResizeFilter, TrainCrop};
use baselines::methods::{MethodConfig, MethodName};
use crate::schedule::ScheduleRule;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const EMBEDDED: &str = include_str!("../protocol.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub paper_table: String,
    pub domains: BTreeMap<String, String>,
    pub tasks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolFile {
    version: u32,
    baselines: Vec<String>,
    harmonizers: Vec<String>,
    seeds: Vec<u64>,
    datasets: BTreeMap<String, DatasetEntry>,
    #[serde(default)]
    hyperparameters: BTreeMap<String, BTreeMap<String, toml::Table>>,
    #[serde(default)]
    schedule: BTreeMap<String, BTreeMap<String, ScheduleRule>>,
    #[serde(default)]
    profiles: BTreeMap<String, crate::grid::ProfileEntry>,
    /// Seconds per 100 iterations per baseline, by device kind ("cpu", "cuda").
    #[serde(default)]
    cost: BTreeMap<String, BTreeMap<String, f64>>,
    /// The same for the image protocols, by device kind and backbone.
    #[serde(default)]
    backbone_cost: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// The image transforms of each baseline's image protocol.
    #[serde(default)]
    input: BTreeMap<String, InputEntry>,
    /// Baselines that are another baseline's method with some settings changed (SSRT*).
    #[serde(default)]
    variants: BTreeMap<String, Variant>,
}

/// A `[variants."<name>"]` entry: a grid baseline that runs `method`'s protocol with `set` applied
/// to its hyperparameters on every dataset (part of what the baseline is, not a deviation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub method: String,
    pub set: toml::Table,
    pub description: String,
}

/// An `[input.<baseline>]` entry: how the baseline's code resizes and crops images.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEntry {
    pub resize_filter: ResizeFilter,
    pub train_crop: TrainCrop,
    /// Domains whose training loaders use RandomResizedCrop instead (CDAN: webcam, dslr).
    #[serde(default)]
    pub random_resized_crop_domains: Vec<String>,
    /// Per-dataset overrides of the training crop.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInput {
    pub train_crop: TrainCrop,
}

#[derive(Debug, Clone)]
pub struct Protocol {
    pub origin: String,
    pub baselines: Vec<String>,
    pub harmonizers: Vec<String>,
    pub seeds: Vec<u64>,
    pub datasets: BTreeMap<String, DatasetEntry>,
    hyperparameters: BTreeMap<String, BTreeMap<String, toml::Table>>,
    schedule: BTreeMap<String, BTreeMap<String, ScheduleRule>>,
    pub profiles: BTreeMap<String, crate::grid::ProfileEntry>,
    pub cost: BTreeMap<String, BTreeMap<String, f64>>,
    pub backbone_cost: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    input: BTreeMap<String, InputEntry>,
    pub variants: BTreeMap<String, Variant>,
}

impl Protocol {
    pub fn embedded() -> Result<Protocol> {
        Protocol::parse(EMBEDDED, "bench-suite/protocol.toml (embedded)")
    }

    pub fn load(path: &Path) -> Result<Protocol> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading protocol {}", path.display()))?;
        Protocol::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Protocol> {
        let f: ProtocolFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        if f.version != 1 {
            bail!("{origin}: version {} is not supported (expected 1)", f.version);
        }
        let p = Protocol {
            origin: origin.to_owned(),
            baselines: f.baselines,
            harmonizers: f.harmonizers,
            seeds: f.seeds,
            datasets: f.datasets,
            hyperparameters: f.hyperparameters,
            schedule: f.schedule,
            profiles: f.profiles,
            cost: f.cost,
            backbone_cost: f.backbone_cost,
            input: f.input,
            variants: f.variants,
        };
        p.validate().with_context(|| format!("{origin}: invalid protocol"))?;
        Ok(p)
    }

    /// The method a grid baseline runs and the settings its variant changes (none for a plain
    /// baseline): "ssrt*" is SSRT with another ViT.
    pub fn baseline_method(&self, baseline: &str) -> Result<(MethodName, Option<&toml::Table>)> {
        match self.variants.get(baseline) {
            Some(v) => Ok((MethodName::parse(&v.method)?, Some(&v.set))),
            None => Ok((
                MethodName::parse(baseline).map_err(|_| {
                    let known: Vec<&str> = MethodName::ALL.iter().map(|m| m.name()).chain(self.variants.keys().map(String::as_str)).collect();
                    anyhow::anyhow!("baseline '{baseline}' is not implemented (this build and protocol have: {})", known.join(", "))
                })?,
                None,
            )),
        }
    }

    /// The protocol's configuration of a grid baseline (a variant's settings applied).
    pub fn baseline_config(&self, dataset: &str, baseline: &str, task: Option<&str>) -> Result<MethodConfig> {
        let (method, set) = self.baseline_method(baseline)?;
        let config = self.method_config(dataset, method, task)?;
        match set {
            Some(set) => crate::grid::override_config(&config, set).with_context(|| format!("{}: variants.\"{baseline}\".set", self.origin)),
            None => Ok(config),
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in &self.variants {
            MethodName::parse(&v.method).with_context(|| format!("variants.\"{name}\".method"))?;
            if !self.baselines.contains(name) {
                bail!("variants.\"{name}\" is not in `baselines`");
            }
        }
        for h in &self.harmonizers {
            h.parse::<baselines::harmonizer::Method>()?;
        }
        for (name, d) in &self.datasets {
            // Each domain letter names the dataset's domain as the readers know it.
            if name != "digits" {
                let benchmark = baselines::data::benchmarks::Benchmark::parse(name).with_context(|| format!("datasets.{name}"))?;
                for (letter, domain) in &d.domains {
                    let info = benchmark.domains()[benchmark.domain_index(letter).with_context(|| format!("datasets.{name}.domains"))?];
                    if info.name != domain {
                        bail!("datasets.{name}.domains: {letter} = \"{domain}\", but {letter} is {} in the readers", info.name);
                    }
                }
            }
            for t in &d.tasks {
                baselines::data::Task::for_protocol(name, t).with_context(|| format!("datasets.{name}: task '{t}'"))?;
                let (a, b) = t.split_once('-').with_context(|| format!("datasets.{name}: task '{t}' is not <source>-<target>"))?;
                for letter in [a, b] {
                    if !d.domains.contains_key(letter) {
                        bail!("datasets.{name}: task '{t}' uses domain '{letter}', not among {:?}", d.domains.keys().collect::<Vec<_>>());
                    }
                }
            }
        }
        // Every hyperparameter set, and every per-task override, must build a method config.
        for (dataset, methods) in &self.hyperparameters {
            let entry = self.datasets.get(dataset).with_context(|| format!("hyperparameters.{dataset}: unknown dataset"))?;
            for (method, table) in methods {
                let name = MethodName::parse(method).with_context(|| format!("hyperparameters.{dataset}.{method}"))?;
                self.method_config(dataset, name, None)?;
                if let Some(tasks) = table.get("tasks").and_then(|t| t.as_table()) {
                    for task in tasks.keys() {
                        if !entry.tasks.contains(task) {
                            bail!("hyperparameters.{dataset}.{method}.tasks.{task}: unknown task of {dataset}");
                        }
                        self.method_config(dataset, name, Some(task))?;
                    }
                }
                match self.schedule.get(dataset).and_then(|s| s.get(method)) {
                    None => bail!("hyperparameters.{dataset}.{method} has no [schedule.{dataset}.{method}]"),
                    Some(rule) => rule.validate().with_context(|| format!("schedule.{dataset}.{method}"))?,
                }
            }
        }
        for (device, costs) in &self.cost {
            if !["cpu", "cuda"].contains(&device.as_str()) {
                bail!("cost.{device}: expected cost.cpu or cost.cuda");
            }
            for b in costs.keys() {
                MethodName::parse(b).with_context(|| format!("cost.{device}.{b}"))?;
            }
        }
        for (device, backbones) in &self.backbone_cost {
            if !["cpu", "cuda"].contains(&device.as_str()) {
                bail!("backbone_cost.{device}: expected backbone_cost.cpu or backbone_cost.cuda");
            }
            for (backbone, costs) in backbones {
                if !["resnet50", "resnet101"].contains(&backbone.as_str()) {
                    bail!("backbone_cost.{device}.{backbone}: expected resnet50 or resnet101");
                }
                for b in costs.keys() {
                    MethodName::parse(b).with_context(|| format!("backbone_cost.{device}.{backbone}.{b}"))?;
                }
            }
        }
        for (method, entry) in &self.input {
            MethodName::parse(method).with_context(|| format!("input.{method}"))?;
            for d in entry.datasets.keys() {
                if !self.datasets.contains_key(d) {
                    bail!("input.{method}.datasets.{d}: unknown dataset");
                }
            }
        }
        for (name, profile) in &self.profiles {
            profile.validate(name, self).with_context(|| format!("profiles.{name}"))?;
        }
        Ok(())
    }

    /// All tasks of the protocol as (dataset, task id), in file order within each dataset.
    pub fn all_tasks(&self) -> Vec<(String, String)> {
        self.datasets.iter().flat_map(|(d, e)| e.tasks.iter().map(move |t| (d.clone(), t.clone()))).collect()
    }

    /// The hyperparameters of `method` on `dataset`, with the task's overrides applied.
    pub fn method_config(&self, dataset: &str, method: MethodName, task: Option<&str>) -> Result<MethodConfig> {
        let at = format!("{}: hyperparameters.{dataset}.{}", self.origin, method.name());
        let base = self
            .hyperparameters
            .get(dataset)
            .and_then(|m| m.get(method.name()))
            .with_context(|| format!("{at}: not in the protocol (no hyperparameters for {} on {dataset})", method.name()))?;
        let mut table = base.clone();
        let overrides = table.remove("tasks");
        if let (Some(task), Some(toml::Value::Table(tasks))) = (task, &overrides) {
            if let Some(toml::Value::Table(o)) = tasks.get(task) {
                for (k, v) in o {
                    if !table.contains_key(k) {
                        bail!("{at}.tasks.{task}: '{k}' overrides nothing (not a key of hyperparameters.{dataset}.{})", method.name());
                    }
                    table.insert(k.clone(), v.clone());
                }
            }
        }
        table.insert("method".into(), toml::Value::String(method.name().into()));
        toml::Value::Table(table).try_into::<MethodConfig>().map_err(|e| anyhow::anyhow!("{at}{}: {e}", task.map(|t| format!(" (task {t})")).unwrap_or_default()))
    }

    /// The datasets whose protocol has hyperparameters for `method`, in file order.
    pub fn datasets_of(&self, method: MethodName) -> Vec<String> {
        self.hyperparameters.iter().filter(|(_, m)| m.contains_key(method.name())).map(|(d, _)| d.clone()).collect()
    }

    /// The image transforms of `method` on a task of `dataset` from domain `source` to `target`
    /// (domain names as the readers know them), at 256 / 224.
    pub fn image_input(&self, dataset: &str, method: MethodName, source: &str, target: &str) -> Result<ImageInput> {
        let entry = self.input.get(method.name()).with_context(|| format!("{}: no [input.{}] (image transforms of {})", self.origin, method.name(), method.name()))?;
        let default = entry.datasets.get(dataset).map(|d| d.train_crop).unwrap_or(entry.train_crop);
        let crop_of = |domain: &str| {
            if entry.random_resized_crop_domains.iter().any(|d| d == domain) {
                TrainCrop::RandomResizedCrop
            } else {
                default
            }
        };
        Ok(ImageInput { resize_filter: entry.resize_filter, source_crop: crop_of(source), target_crop: crop_of(target), ..ImageInput::PAPER })
    }

    /// The schedule of `method` on `dataset` as the protocol states it (resolve it with the run's
    /// batch and training-set sizes).
    pub fn schedule(&self, dataset: &str, method: MethodName) -> Result<ScheduleRule> {
        self.schedule
            .get(dataset)
            .and_then(|m| m.get(method.name()))
            .cloned()
            .with_context(|| format!("{}: no [schedule.{dataset}.{}]", self.origin, method.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_protocol_lists_the_52_tasks() {
        let p = Protocol::embedded().unwrap();
        assert_eq!(p.all_tasks().len(), 52);
        assert_eq!(p.datasets["digits"].tasks, ["M-U", "U-M", "S-M"]);
    }

    #[test]
    fn every_task_parses_with_its_class_count() {
        let p = Protocol::embedded().unwrap();
        let classes = [("digits", 10), ("office31", 31), ("officehome", 65), ("visda2017", 12), ("domainnet", 345)];
        for (dataset, n) in classes {
            for t in &p.datasets[dataset].tasks {
                let task = baselines::data::Task::for_protocol(dataset, t).unwrap();
                assert_eq!(task.known_classes(), Some(n), "{dataset} {t}");
                assert_eq!(baselines::data::Task::parse(&task.name()).unwrap(), task);
            }
        }
        let wrong = EMBEDDED.replace("Rw = \"Real World\"", "Rw = \"Real_World\"");
        let err = format!("{:#}", Protocol::parse(&wrong, "p.toml").unwrap_err());
        assert!(err.contains("Rw is Real World"), "{err}");
    }

    #[test]
    fn image_inputs_follow_each_baselines_code() {
        let p = Protocol::embedded().unwrap();
        let cdan = p.image_input("office31", MethodName::Cdan, "amazon", "webcam").unwrap();
        assert_eq!((cdan.source_crop, cdan.target_crop, cdan.resize_filter), (TrainCrop::RandomCrop, TrainCrop::RandomResizedCrop, ResizeFilter::Bilinear));
        assert_eq!((cdan.resize, cdan.crop), (256, 224));
        let mcd = p.image_input("visda2017", MethodName::Mcd, "train", "validation").unwrap();
        assert_eq!((mcd.source_crop, mcd.resize_filter), (TrainCrop::CenterCrop, ResizeFilter::Bicubic));
        assert_eq!(p.image_input("office31", MethodName::Mcd, "amazon", "webcam").unwrap().source_crop, TrainCrop::RandomResizedCrop);
        assert_eq!(p.image_input("office31", MethodName::Gvb, "dslr", "amazon").unwrap().source_crop, TrainCrop::RandomCrop);
    }

    #[test]
    fn image_protocols_carry_their_learning_rates_backbones_and_multipliers() {
        let p = Protocol::embedded().unwrap();
        let lr = |dataset, method, task| match p.method_config(dataset, method, Some(task)).unwrap() {
            MethodConfig::Cdan(c) => (c.sgd.lr, c.backbone.unwrap().network.name(), c.multipliers.lr.new_layers),
            MethodConfig::Gvb(c) => (c.sgd.lr, c.backbone.unwrap().network.name(), c.multipliers.lr.new_layers),
            MethodConfig::Mcd(c) => (c.lr, c.backbone.unwrap().network.name(), 1.0),
            MethodConfig::Dwl(c) => (c.lr, c.backbone.unwrap().network.name(), 1.0),
            other => panic!("{other:?}"),
        };
        assert_eq!(lr("office31", MethodName::Cdan, "A-W"), (0.001, "resnet50", 10.0));
        assert_eq!(lr("office31", MethodName::Cdan, "A-D"), (0.0003, "resnet50", 10.0));
        assert_eq!(lr("office31", MethodName::Gvb, "A-W"), (0.0003, "resnet50", 10.0));
        assert_eq!(lr("office31", MethodName::Gvb, "D-A"), (0.001, "resnet50", 10.0));
        assert_eq!(lr("visda2017", MethodName::Cdan, "Syn-Real"), (0.0003, "resnet101", 10.0));
        assert_eq!(lr("domainnet", MethodName::Mcd, "clp-skt"), (0.001, "resnet101", 1.0));
        assert_eq!(lr("officehome", MethodName::Dwl, "Ar-Cl"), (0.001, "resnet50", 1.0));
    }

    #[test]
    fn task_overrides_apply() {
        let p = Protocol::embedded().unwrap();
        let lr = |task| match p.method_config("digits", MethodName::Mcd, task).unwrap() {
            MethodConfig::Mcd(c) => c.lr,
            other => panic!("{other:?}"),
        };
        assert_eq!(lr(Some("M-U")), 0.01);
        assert_eq!(lr(Some("U-M")), 0.1);
        assert_eq!(lr(None), 0.01);
    }

    #[test]
    fn unknown_keys_and_values_are_errors_naming_them_and_the_file() {
        let text = EMBEDDED.replace("num_k = 4", "num_k = 4\nnum_q = 2");
        let err = format!("{:#}", Protocol::parse(&text, "my-protocol.toml").unwrap_err());
        assert!(err.contains("my-protocol.toml") && err.contains("num_q"), "{err}");
        let text = EMBEDDED.replace("harmonizers = [\"none\", \"gh\", \"gh++\"]", "harmonizers = [\"none\", \"gh\", \"gh+++\"]");
        let err = format!("{:#}", Protocol::parse(&text, "my-protocol.toml").unwrap_err());
        assert!(err.contains("my-protocol.toml") && err.contains("gh+++"), "{err}");
        let text = EMBEDDED.replace("version = 1", "version = 1\ncolour = \"red\"");
        let err = format!("{:#}", Protocol::parse(&text, "my-protocol.toml").unwrap_err());
        assert!(err.contains("colour") && err.contains("my-protocol.toml"), "{err}");
    }

    #[test]
    fn reported_with_names_another_profile_that_is_reported_on_its_own() {
        let p = Protocol::embedded().unwrap();
        assert_eq!(p.profiles["digits-paper-cdan-rotation"].reported_with.as_deref(), Some("digits-paper-cdan"));
        let joined = "reported_with = \"digits-paper-cdan\"";
        for (replacement, expected) in [
            ("reported_with = \"digits-paper-cdna\"", "'digits-paper-cdna' is not a profile"),
            ("reported_with = \"digits-paper-cdan-rotation\"", "names the profile itself"),
        ] {
            let err = format!("{:#}", Protocol::parse(&EMBEDDED.replace(joined, replacement), "my-protocol.toml").unwrap_err());
            assert!(err.contains("profiles.digits-paper-cdan-rotation") && err.contains(expected), "{err}");
        }
        // A chain: the profile it names is itself reported with another.
        let text = EMBEDDED.replace("cell_order = \"seed-major\"\n\n# The paper's GH++", "cell_order = \"seed-major\"\nreported_with = \"digits-cpu\"\n\n# The paper's GH++");
        let err = format!("{:#}", Protocol::parse(&text, "my-protocol.toml").unwrap_err());
        assert!(err.contains("profiles.digits-paper-cdan-rotation") && err.contains("itself reported with another"), "{err}");
    }
}
