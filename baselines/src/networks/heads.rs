//! Heads shared by several baselines.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// A linear classifier `features → classes`.
#[derive(Debug)]
pub struct LinearClassifier {
    fc: nn::Linear,
}

impl LinearClassifier {
    pub fn new(p: &nn::Path, features: i64, classes: i64) -> Self {
        LinearClassifier { fc: nn::linear(p / "fc", features, classes, Default::default()) }
    }
}

impl Module for LinearClassifier {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc.forward(xs)
    }
}

/// A domain discriminator `in → hidden → ReLU → Dropout 0.5 → hidden → ReLU → Dropout 0.5 → 1`
/// (logit), the shape DANN and CDAN use (CDAN: in = hidden = 1024).
#[derive(Debug)]
pub struct DomainDiscriminator {
    fc1: nn::Linear,
    fc2: nn::Linear,
    out: nn::Linear,
}

impl DomainDiscriminator {
    pub fn new(p: &nn::Path, input: i64, hidden: i64) -> Self {
        DomainDiscriminator {
            fc1: nn::linear(p / "fc1", input, hidden, Default::default()),
            fc2: nn::linear(p / "fc2", hidden, hidden, Default::default()),
            out: nn::linear(p / "out", hidden, 1, Default::default()),
        }
    }
}

impl ModuleT for DomainDiscriminator {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.fc1.forward(xs).relu().dropout(0.5, train);
        let x = self.fc2.forward(&x).relu().dropout(0.5, train);
        self.out.forward(&x)
    }
}
