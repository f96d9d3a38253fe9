//! Networks of the digits protocol and the heads the baselines put on them. Heads used by one
//! baseline only live in that baseline's file (baselines/src/methods/).

pub mod dtn;
pub mod grl;
pub mod heads;
pub mod lenet;

use crate::data::DigitsFormat;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The feature extractor of a digits task: LeNet at 28×28 grey, DTN at 32×32 RGB.
#[derive(Debug)]
pub enum Backbone {
    LeNet(lenet::LeNet),
    Dtn(dtn::Dtn),
}

impl Backbone {
    pub fn for_format(p: &nn::Path, format: DigitsFormat) -> Backbone {
        match format {
            DigitsFormat::Grey28 => Backbone::LeNet(lenet::LeNet::new(p)),
            DigitsFormat::Rgb32 => Backbone::Dtn(dtn::Dtn::new(p)),
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
