//! Networks of the digits protocol, torchvision's ResNets of the image protocols, and the heads the
//! baselines put on them. Heads used by one
//! baseline only live in that baseline's file (baselines/src/methods/). Every layer is built
//! through [`init`], which initialises it as the reference code does.

pub mod dtn;
pub mod grl;
pub mod heads;
pub mod init;
pub mod lenet;
pub mod resnet;
pub mod vit;

use crate::data::DigitsFormat;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Optimiser parameter group of a pretrained backbone (learning-rate multiplier 1 in CDAN / GVB).
pub const BACKBONE_GROUP: usize = 0;
/// Optimiser parameter group of layers trained from scratch (multiplier 10 in CDAN / GVB).
pub const NEW_LAYERS_GROUP: usize = 1;

/// The backbone of an image protocol, as a method configuration names it:
/// `backbone = { network = "resnet50", pretrained = true }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageBackbone {
    pub network: resnet::Depth,
    /// Start from the ImageNet-1K weights (the paper); false: torchvision's random initialisation
    /// (tests, and runs on your own data without the weights).
    pub pretrained: bool,
}

/// What a method's feature extractor is built as.
#[derive(Clone, Debug, PartialEq)]
pub enum Network {
    /// LeNet or DTN, by the digits task's input format.
    Digits(DigitsFormat),
    /// A torchvision ResNet; `weights` is the safetensors file to start from when the backbone is
    /// pretrained.
    Image { backbone: ImageBackbone, weights: Option<PathBuf> },
    /// timm's ViT (SSRT), with its weights file when pretrained.
    Vit { backbone: vit::VitBackbone, weights: Option<PathBuf> },
}

impl Network {
    /// Whether the image protocol's heads apply (a ResNet or ViT backbone).
    pub fn is_image(&self) -> bool {
        matches!(self, Network::Image { .. } | Network::Vit { .. })
    }
}

/// Every variable of several stores, named `<label>/<variable path>` (from the harmonizer crate,
/// which names the parameters it harmonizes the same way).
pub use harmonizer::autograd::named_variables;

/// Whether the networks apply their dropout layers in training mode. Always on in training;
/// off only where a step is compared with an independent implementation (dropout masks cannot be
/// shared between two frameworks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dropout {
    #[default]
    On,
    Off,
}

impl Dropout {
    /// `nn.Dropout(p)`: zeroes elements.
    pub fn apply(self, x: &Tensor, p: f64, train: bool) -> Tensor {
        match self {
            Dropout::On => x.dropout(p, train),
            Dropout::Off => x.shallow_clone(),
        }
    }

    /// `nn.Dropout2d(p)`: zeroes whole channels.
    pub fn apply_2d(self, x: &Tensor, p: f64, train: bool) -> Tensor {
        match self {
            Dropout::On => x.feature_dropout(p, train),
            Dropout::Off => x.shallow_clone(),
        }
    }
}

/// The feature extractor: LeNet at 28×28 grey, DTN at 32×32 RGB, or a ResNet on images.
#[derive(Debug)]
pub enum Backbone {
    LeNet(lenet::LeNet),
    Dtn(dtn::Dtn),
    ResNet(resnet::ResNet),
}

impl Backbone {
    /// Builds the backbone of `network` under `p` (in `p`'s optimiser group).
    pub fn build(p: &nn::Path, network: &Network, dropout: Dropout) -> Backbone {
        match network {
            Network::Digits(format) => Backbone::for_format(p, *format, dropout),
            Network::Image { backbone, .. } => Backbone::ResNet(resnet::ResNet::new(p, backbone.network)),
            // SSRT builds its ViT itself (it runs the blocks one by one); configurations pair a ViT
            // only with SSRT (train.rs).
            Network::Vit { .. } => unreachable!("a ViT backbone is built by SSRT, not through Backbone::build"),
        }
    }

    /// Copies the pretrained weights into the backbone's variables (those of `vs` under
    /// `prefix`, e.g. "backbone."), strictly; nothing to do for digits or unpretrained backbones.
    pub fn load_pretrained(vs: &mut nn::VarStore, prefix: &str, network: &Network) -> Result<()> {
        match network {
            Network::Image { backbone, weights } if backbone.pretrained => match weights {
                Some(path) => resnet::load_strict(vs, prefix, path),
                None => bail!(
                    "the {} backbone is pretrained but no weights file was given (fetch it with `data-fetch fetch {}`)",
                    backbone.network.name(),
                    backbone.network.name()
                ),
            },
            _ => Ok(()),
        }
    }

    pub fn for_format(p: &nn::Path, format: DigitsFormat, dropout: Dropout) -> Backbone {
        match format {
            DigitsFormat::Grey28 => Backbone::LeNet(lenet::LeNet::new(p, dropout)),
            DigitsFormat::Rgb32 => Backbone::Dtn(dtn::Dtn::new(p, dropout)),
        }
    }

    pub fn features(&self) -> i64 {
        match self {
            Backbone::LeNet(_) => lenet::LeNet::FEATURES,
            Backbone::Dtn(_) => dtn::Dtn::FEATURES,
            Backbone::ResNet(_) => resnet::ResNet::FEATURES,
        }
    }
}

impl ModuleT for Backbone {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Backbone::LeNet(n) => n.forward_t(xs, train),
            Backbone::Dtn(n) => n.forward_t(xs, train),
            Backbone::ResNet(n) => n.forward_t(xs, train),
        }
    }
}

/// Copies every variable of `vs` under `prefix` (e.g. "" or "backbone.") from the safetensors file
/// `path`, strictly: each expected tensor present with its shape; unknown keys (other than those
/// `dropped` accepts) are errors naming the file, the key and the shapes.
pub fn load_safetensors_strict(vs: &mut nn::VarStore, prefix: &str, path: &std::path::Path, dropped: impl Fn(&str) -> bool) -> Result<()> {
    let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("reading the weights {}", path.display()))?
        .into_iter()
        .collect();
    let variables = vs.variables();
    let mut wanted: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, var) in &variables {
        if let Some(key) = name.strip_prefix(prefix) {
            wanted.insert(key.to_owned(), var.shallow_clone());
        }
    }
    for (key, var) in &wanted {
        let Some(t) = tensors.get(key) else {
            bail!("{}: the key '{key}' is missing (expected shape {:?})", path.display(), var.size());
        };
        if t.size() != var.size() {
            bail!("{}: '{key}' has shape {:?}, the network expects {:?}", path.display(), t.size(), var.size());
        }
    }
    if let Some((key, t)) = tensors.iter().find(|(k, _)| !wanted.contains_key(*k) && !dropped(k)) {
        bail!("{}: unexpected key '{key}' (shape {:?}) that the network does not have", path.display(), t.size());
    }
    tch::no_grad(|| {
        for (key, var) in &wanted {
            let mut var = var.shallow_clone();
            var.copy_(&tensors[key].to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(())
}
