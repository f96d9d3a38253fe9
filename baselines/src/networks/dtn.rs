//! DTN for SVHN → MNIST at 32×32 RGB (the digits network of CDAN's and MCD's released code):
//! three Conv k5 s2 p2 (3→64→128→256) each with BatchNorm, Dropout2d (0.1, 0.3, 0.5) and ReLU,
//! flatten 4096, Linear 4096→512, BatchNorm, ReLU, Dropout 0.5. Output 512-d features.
//! Initialisation: PyTorch's defaults for every layer (the released code sets none).

use super::init::{batch_norm1d, batch_norm2d, conv2d, linear, LayerInit};
use super::Dropout;
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub struct Dtn {
    convs: Vec<(nn::Conv2D, nn::BatchNorm, f64)>,
    fc: nn::Linear,
    bn: nn::BatchNorm,
    dropout: Dropout,
}

impl Dtn {
    pub const FEATURES: i64 = 512;

    pub fn new(p: &nn::Path, dropout: Dropout) -> Self {
        let layers = [(3, 64, 0.1), (64, 128, 0.3), (128, 256, 0.5)];
        let convs = layers
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, drop))| {
                (
                    conv2d(p / format!("conv{}", i + 1), cin, cout, 5, 2, 2, LayerInit::PyTorchDefault),
                    batch_norm2d(p / format!("bn{}", i + 1), cout),
                    drop,
                )
            })
            .collect();
        Dtn {
            convs,
            fc: linear(p / "fc", 256 * 4 * 4, Self::FEATURES, LayerInit::PyTorchDefault),
            bn: batch_norm1d(p / "fc_bn", Self::FEATURES),
            dropout,
        }
    }
}

impl ModuleT for Dtn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (conv, bn, drop) in &self.convs {
            x = self.dropout.apply_2d(&bn.forward_t(&conv.forward(&x), train), *drop, train).relu();
        }
        let x = self.fc.forward(&x.flatten(1, -1));
        self.dropout.apply(&self.bn.forward_t(&x, train).relu(), 0.5, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn maps_32x32_rgb_to_512_features() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Dtn::new(&vs.root(), Dropout::On);
        let y = net.forward_t(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), vec![2, Dtn::FEATURES]);
    }
}
