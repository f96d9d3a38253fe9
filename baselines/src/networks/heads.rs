//! Heads shared by several baselines. Each takes the [`LayerInit`] its baseline's code uses.

use super::init::{linear, LayerInit};
use super::Dropout;
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// A linear classifier `features → classes`.
#[derive(Debug)]
pub struct LinearClassifier {
    fc: nn::Linear,
}

impl LinearClassifier {
    pub fn new(p: &nn::Path, features: i64, classes: i64, init: LayerInit) -> Self {
        LinearClassifier { fc: linear(p / "fc", features, classes, init) }
    }
}

impl Module for LinearClassifier {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc.forward(xs)
    }
}

/// A domain discriminator `in → hidden → ReLU → Dropout 0.5 → hidden → ReLU → Dropout 0.5 → 1`
/// (logit), the shape DANN and CDAN use (CDAN's `AdversarialNetwork`).
#[derive(Debug)]
pub struct DomainDiscriminator {
    fc1: nn::Linear,
    fc2: nn::Linear,
    out: nn::Linear,
    dropout: Dropout,
}

impl DomainDiscriminator {
    pub fn new(p: &nn::Path, input: i64, hidden: i64, init: LayerInit, dropout: Dropout) -> Self {
        DomainDiscriminator {
            fc1: linear(p / "fc1", input, hidden, init),
            fc2: linear(p / "fc2", hidden, hidden, init),
            out: linear(p / "out", hidden, 1, init),
            dropout,
        }
    }
}

impl ModuleT for DomainDiscriminator {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.dropout.apply(&self.fc1.forward(xs).relu(), 0.5, train);
        let x = self.dropout.apply(&self.fc2.forward(&x).relu(), 0.5, train);
        self.out.forward(&x)
    }
}
