//! The UDA baselines behind one trait. Each baseline owns its networks, optimisers and training
//! step(s) and lives in one file; the harmonizer is passed in through [`StepContext`] and applied
//! to the baseline's harmonized pair(s) (docs/design/protocols.md says which, in which order, over which scope).
//!
//! Where the released code has a defect (docs/design/protocols.md, "Known defects"), the baselines here do not
//! reproduce it; each such choice is stated in the baseline's file and in docs/deviations.md.

pub mod cdan;
pub mod common;
pub mod dwl;
pub mod gvb;
pub mod mcd;
pub mod source_only;
pub mod ssrt;

use crate::networks::{Dropout, ImageBackbone, Network};
use crate::harmonizer::autograd::{backward_plain, backward_three_pass_reference, backward_two_pass, backward_two_pass_on_device, Parameters, StepLosses};
use crate::harmonizer::on_device::DeviceSummary;
use crate::harmonizer::{Harmonization, HarmonizationSummary, Harmonizer, Method as HarmonizerMethod};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// What a baseline's configuration says about itself: the one trait a new baseline implements
/// (in its own file) beside its training step ([`UdaMethod`]). Its name, paper name and pairs are
/// declared once, in the [`methods!`] line below.
pub trait MethodSpec {
    /// Source and target images per batch (each).
    fn batch(&self) -> usize;
    /// Epochs at the start that train without the transfer loss (no harmonized pair is formed).
    fn warmup_epochs(&self) -> u64 {
        0
    }
    /// The ResNet backbone of an image protocol (None: the digits networks or a ViT).
    fn image_backbone(&self) -> Option<ImageBackbone> {
        None
    }
    /// The ViT backbone (SSRT).
    fn vit_backbone(&self) -> Option<crate::networks::vit::VitBackbone> {
        None
    }
    /// Builds the method's networks and optimisers (initialised from torch's current seed).
    fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>>;
    /// This method's departures from its released protocol on `task`, for the run's record.
    fn deviations(&self, _task: &crate::data::Task) -> Vec<String> {
        Vec::new()
    }
    /// The feature extractor in words where the method builds its own (run-one's plan).
    fn describe_network(&self, _network: &crate::networks::Network) -> Option<String> {
        None
    }
}

/// Declares the baselines: each line `Variant => module, "record name", "paper name";` gives the
/// name enum ([`MethodName`], with `ALL`, `name`, `paper_name`, `pairs`, `parse`) and the
/// configuration enum ([`MethodConfig`], tagged by the record name in protocol and record files).
/// `module::Config` implements [`MethodSpec`]; `module::PAIRS` describes its harmonized pairs.
macro_rules! methods {
    ($($variant:ident => $module:ident, $name:literal, $paper:literal;)*) => {
        /// The baselines.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum MethodName {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl MethodName {
            pub const ALL: [MethodName; [$($name),*].len()] = [$(MethodName::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(MethodName::$variant => $name,)*
                }
            }

            /// As the paper names it (CDAN means CDAN+E, GVB means GVB-GD).
            pub fn paper_name(self) -> &'static str {
                match self {
                    $(MethodName::$variant => $paper,)*
                }
            }

            /// The pairs the method harmonizes, as its file describes them.
            pub fn pairs(self) -> &'static [PairDescription] {
                match self {
                    $(MethodName::$variant => $module::PAIRS,)*
                }
            }
        }

        /// Hyperparameters of a baseline on a dataset, from the protocol file.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "method", deny_unknown_fields)]
        pub enum MethodConfig {
            $(#[serde(rename = $name)] $variant($module::Config),)*
        }

        impl MethodConfig {
            pub fn name(&self) -> MethodName {
                match self {
                    $(MethodConfig::$variant(_) => MethodName::$variant,)*
                }
            }

            fn spec(&self) -> &dyn MethodSpec {
                match self {
                    $(MethodConfig::$variant(c) => c,)*
                }
            }
        }
    };
}

methods! {
    SourceOnly => source_only, "source-only", "Source only";
    Cdan => cdan, "cdan", "CDAN";
    Mcd => mcd, "mcd", "MCD";
    Dwl => dwl, "dwl", "DWL";
    Gvb => gvb, "gvb", "GVB";
    Ssrt => ssrt, "ssrt", "SSRT";
}

impl MethodName {
    pub fn parse(s: &str) -> Result<MethodName> {
        MethodName::ALL.into_iter().find(|m| m.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            anyhow::anyhow!("unknown method '{s}': expected one of {}", MethodName::ALL.map(|m| m.name()).join(", "))
        })
    }

    /// Whether the method has a harmonized pair at all.
    pub fn harmonizes(self) -> bool {
        !self.pairs().is_empty()
    }
}

impl std::fmt::Display for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A harmonized pair of a method: its record label, its two losses and the parameters whose
/// gradients the harmonizer compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairDescription {
    pub label: &'static str,
    pub losses: &'static str,
    pub scope: &'static str,
}

/// Which backward implementation harmonized steps use (identical gradients; see harmonizer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackwardPath {
    #[default]
    TwoPass,
    /// The released code's shape, for timing comparisons.
    ThreePass,
}

impl std::str::FromStr for BackwardPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "two-pass" => Ok(BackwardPath::TwoPass),
            "three-pass" => Ok(BackwardPath::ThreePass),
            _ => Err(format!("unknown backward path '{s}': expected two-pass (default) or three-pass (the released code's shape)")),
        }
    }
}

impl MethodConfig {
    /// Source and target images per batch (each).
    pub fn batch(&self) -> usize {
        self.spec().batch()
    }

    /// Epochs at the start that train without the transfer loss (CDAN's `source_only_epochs`;
    /// 0 for the others): no harmonized pair is formed in them.
    pub fn warmup_epochs(&self) -> u64 {
        self.spec().warmup_epochs()
    }

    /// The ResNet backbone of an image protocol (None: the digits networks).
    pub fn image_backbone(&self) -> Option<ImageBackbone> {
        self.spec().image_backbone()
    }

    /// The ViT backbone (SSRT).
    pub fn vit_backbone(&self) -> Option<crate::networks::vit::VitBackbone> {
        self.spec().vit_backbone()
    }

    /// Builds the method's networks and optimisers (initialised from torch's current seed).
    pub fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>> {
        self.spec().build(setup)
    }

    /// The method's departures from its released protocol on `task` (recorded with the run).
    pub fn deviations(&self, task: &crate::data::Task) -> Vec<String> {
        self.spec().deviations(task)
    }

    /// The feature extractor in words where the method builds its own.
    pub fn describe_network(&self, network: &crate::networks::Network) -> Option<String> {
        self.spec().describe_network(network)
    }
}

/// What a method is built for.
#[derive(Clone, Debug)]
pub struct Setup {
    pub device: Device,
    /// The feature extractor (digits network by input format, or a ResNet with its weights).
    pub network: Network,
    pub classes: i64,
    /// The source's digits domain (None for image tasks): DWL, for one, updates its balance
    /// weight per iteration when it is SVHN.
    pub source_digits: Option<crate::data::Domain>,
    /// Iterations per epoch of the run (epoch-based schedules: CDAN's digits protocol).
    pub iters_per_epoch: u64,
    /// Dropout in training mode: on, except in equivalence tests.
    pub dropout: Dropout,
}

/// A labelled source batch and an unlabelled target batch.
pub struct Batch {
    pub source: Tensor,
    pub labels: Tensor,
    pub target: Tensor,
}

/// Logits (or scores) of each evaluated head, as the method reports them.
pub type HeadOutputs = Vec<(String, Tensor)>;

pub trait UdaMethod {
    /// One training iteration (which may hold several optimiser steps, as in MCD and DWL).
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()>;

    /// Scores of every head for a batch of target images, in evaluation mode, without gradients.
    /// The reported accuracy is the maximum over heads (MCD, DWL); each head is recorded too.
    fn eval_heads(&self, images: &Tensor) -> HeadOutputs;

    /// Called at the end of each epoch with samples of source (images, labels) and target
    /// images: DWL re-estimates its balance weight here. Returns named quantities to record.
    fn end_epoch(&mut self, _source: (&Tensor, &Tensor), _target: &Tensor) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }

    /// Whether [`UdaMethod::end_epoch`] uses its samples (drawing them costs a pass over up to
    /// 1000 images per domain, which only DWL needs).
    fn needs_epoch_samples(&self) -> bool {
        false
    }

    /// Every tensor that determines the method's next step, by name: all variables of its stores
    /// as `<store>/<variable path>` (parameters and batch-norm running statistics) and fixed
    /// tensors such as CDAN's random matrices. Optimiser state is not included.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// The learning rate each trainable variable's optimiser group was last given, by the same
    /// names as [`UdaMethod::state`] (parameter groups and their multipliers, checked by tests).
    fn learning_rates(&self) -> Vec<(String, f64)>;
}

/// The harmonizer and the bookkeeping of one training iteration.
pub struct StepContext {
    pub harmonizer: Harmonizer,
    pub backward_path: BackwardPath,
    pub iteration: u64,
    /// Record this step's telemetry (and, for `none`, measure it with two backward passes).
    pub measure: bool,
    /// Per-pair records of this step, kept when `measure` is set.
    pub records: Vec<(String, Harmonization)>,
    /// Loss values of this step, kept when `measure` is set.
    pub losses: Vec<(String, f64)>,
    /// Per-pair counts over the run: every harmonized step (all steps of GH / GH++ runs; the
    /// measured steps of `none` runs).
    pub summary: BTreeMap<String, HarmonizationSummary>,
    /// Per-pair counts of what trained: every step that formed the pair, measured or not.
    pub pair_steps: BTreeMap<String, PairSteps>,
    /// On the device: whether every harmonized loss since the last [`StepContext::take_finite`]
    /// was finite. Read only where the loop waits for the device anyway (epoch ends,
    /// evaluations), so divergence between telemetry steps is caught without a sync per step.
    finite: Option<Tensor>,
    /// Per-pair counts kept on the device (CUDA two-pass steps), merged by [`StepContext::summaries`].
    device_summary: BTreeMap<String, DeviceSummary>,
    /// Compute the weights on the device on the CPU too (tests and benchmarks of the CUDA path;
    /// training on the CPU keeps the host reference).
    pub weights_on_device_on_cpu: bool,
}

/// How often a harmonized pair trained over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairSteps {
    /// Steps whose backward included the pair's two losses.
    pub formed: u64,
    /// Steps where the harmonizer changed w1 or w2 (GH / GH++ only).
    pub reweighted: u64,
}

impl StepContext {
    pub fn new(harmonizer: Harmonizer, backward_path: BackwardPath) -> Self {
        StepContext {
            harmonizer,
            backward_path,
            iteration: 0,
            measure: false,
            records: Vec::new(),
            losses: Vec::new(),
            summary: BTreeMap::new(),
            pair_steps: BTreeMap::new(),
            finite: None,
            device_summary: BTreeMap::new(),
            weights_on_device_on_cpu: false,
        }
    }

    /// Starts iteration `i`.
    pub fn begin(&mut self, iteration: u64, measure: bool) {
        self.iteration = iteration;
        self.measure = measure;
        self.records.clear();
        self.losses.clear();
    }

    /// The one place where a method's harmonized losses are differentiated: a plain backward for
    /// `none` when nothing is measured, else two passes (or the reference three) with the records
    /// kept under `labels` (one per pair).
    pub fn backward(&mut self, params: &Parameters, labels: &[&str], losses: &StepLosses) -> Result<()> {
        // Backward passes and the harmonizer's arithmetic on gradients run outside autocast.
        let _no_autocast = crate::numerics::AutocastScope::suspend()?;
        if labels.len() != losses.pairs.len() {
            bail!("internal: {} pair labels for {} pairs", labels.len(), losses.pairs.len());
        }
        for label in labels {
            self.pair_steps.entry((*label).to_owned()).or_default().formed += 1;
        }
        for pair in &losses.pairs {
            let ok = pair.l1.isfinite().logical_and(&pair.l2.isfinite());
            self.finite = Some(match self.finite.take() {
                Some(f) => f.logical_and(&ok),
                None => ok,
            });
        }
        if self.harmonizer.method() == HarmonizerMethod::None && !self.measure {
            backward_plain(losses)?;
            return Ok(());
        }
        let on_device = self.backward_path == BackwardPath::TwoPass
            && (self.weights_on_device_on_cpu || losses.pairs.first().is_some_and(|p| p.l1.device().is_cuda()));
        if on_device {
            return self.backward_on_device(params, labels, losses);
        }
        let records = match self.backward_path {
            BackwardPath::TwoPass => backward_two_pass(&self.harmonizer, params, losses)?,
            BackwardPath::ThreePass => backward_three_pass_reference(&self.harmonizer, params, losses)?,
        };
        let harmonizes = self.harmonizer.method() != HarmonizerMethod::None;
        for (label, record) in labels.iter().zip(records) {
            if harmonizes && (record.w1 != 1.0 || record.w2 != 1.0) {
                self.pair_steps.entry((*label).to_owned()).or_default().reweighted += 1;
            }
            self.summary.entry((*label).to_owned()).or_default().add(&record);
            if self.measure {
                self.records.push(((*label).to_owned(), record));
            }
        }
        Ok(())
    }

    /// The two-pass step with the weights computed and counted on the device (CUDA): nothing is
    /// read back except on telemetry steps. On the CPU the host path is kept: it waits for
    /// nothing there, and its numbers are the reference.
    fn backward_on_device(&mut self, params: &Parameters, labels: &[&str], losses: &StepLosses) -> Result<()> {
        let weights = backward_two_pass_on_device(&self.harmonizer, params, losses)?;
        for (label, w) in labels.iter().zip(weights) {
            self.device_summary.entry((*label).to_owned()).or_default().add(&w)?;
            if self.measure {
                self.records.push(((*label).to_owned(), w.to_host(&self.harmonizer)?));
            }
        }
        Ok(())
    }

    /// Per pair, the run's harmonization summary (read from the device where it was counted
    /// there: one copy per pair, at the end of a run).
    pub fn summaries(&self) -> Result<BTreeMap<String, (HarmonizationSummary, PairSteps)>> {
        let mut out = BTreeMap::new();
        for (label, steps) in &self.pair_steps {
            let mut steps = *steps;
            let summary = match self.device_summary.get(label) {
                Some(on_device) => {
                    let (summary, reweighted) = on_device.to_host()?;
                    if self.harmonizer.method() != HarmonizerMethod::None {
                        steps.reweighted += reweighted;
                    }
                    let mut host = self.summary.get(label).copied().unwrap_or_default();
                    host.merge(&summary);
                    host
                }
                None => self.summary.get(label).copied().unwrap_or_default(),
            };
            out.insert(label.clone(), (summary, steps));
        }
        Ok(out)
    }

    /// Whether every harmonized loss since the last call was finite (reads the device flag: call
    /// it where the loop synchronises anyway), and starts the flag afresh.
    pub fn take_finite(&mut self) -> bool {
        self.finite.take().is_none_or(|f| {
            crate::harmonizer::host_reads::note();
            bool::try_from(f).unwrap_or(false)
        })
    }

    /// Keeps a loss value for the telemetry (only when measuring: reading it syncs the device).
    pub fn log_loss(&mut self, name: &str, value: &Tensor) {
        if self.measure {
            crate::harmonizer::host_reads::note();
            self.losses.push((name.to_owned(), value.double_value(&[])));
        }
    }
}
