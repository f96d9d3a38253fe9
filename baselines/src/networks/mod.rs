//! Networks of the digits protocol and the heads the baselines put on them. Heads used by one
//! baseline only live in that baseline's file (baselines/src/methods/). Every layer is built
//! through [`init`], which initialises it as the reference code does.

pub mod dtn;
pub mod grl;
pub mod heads;
pub mod init;
pub mod lenet;
pub mod resnet;

use crate::data::DigitsFormat;
use tch::nn::{self, ModuleT};
use tch::Tensor;

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

/// The feature extractor of a digits task: LeNet at 28×28 grey, DTN at 32×32 RGB.
#[derive(Debug)]
pub enum Backbone {
    LeNet(lenet::LeNet),
    Dtn(dtn::Dtn),
}

impl Backbone {
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
        }
    }
}

impl ModuleT for Backbone {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Backbone::LeNet(n) => n.forward_t(xs, train),
            Backbone::Dtn(n) => n.forward_t(xs, train),
        }
    }
}
