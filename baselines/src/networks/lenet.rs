//! LeNet of the digits protocol (docs/design/protocols.md, "Digits protocol for the project"):
//! Conv 1→20 k5, MaxPool 2, ReLU, Conv 20→50 k5, Dropout2d 0.5, MaxPool 2, ReLU, flatten 800,
//! Linear 800→500, ReLU, Dropout 0.5. Input 1×28×28, output 500-d features.
//! Initialisation: PyTorch's defaults for every layer (MCD's and CDAN's digits code construct it
//! without any init of their own).

use super::init::{conv2d, linear, LayerInit};
use super::Dropout;
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub struct LeNet {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc: nn::Linear,
    dropout: Dropout,
}

impl LeNet {
    pub const FEATURES: i64 = 500;

    pub fn new(p: &nn::Path, dropout: Dropout) -> Self {
        LeNet {
            conv1: conv2d(p / "conv1", 1, 20, 5, 1, 0, LayerInit::PyTorchDefault),
            conv2: conv2d(p / "conv2", 20, 50, 5, 1, 0, LayerInit::PyTorchDefault),
            fc: linear(p / "fc", 800, Self::FEATURES, LayerInit::PyTorchDefault),
            dropout,
        }
    }
}

impl ModuleT for LeNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.conv1.forward(xs).max_pool2d_default(2).relu();
        let x = self.dropout.apply_2d(&self.conv2.forward(&x), 0.5, train).max_pool2d_default(2).relu();
        self.dropout.apply(&self.fc.forward(&x.flatten(1, -1)).relu(), 0.5, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn maps_28x28_digits_to_500_features() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = LeNet::new(&vs.root(), Dropout::On);
        let y = net.forward_t(&Tensor::zeros([3, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), vec![3, LeNet::FEATURES]);
    }
}
