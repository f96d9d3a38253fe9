//! torchvision's ResNet-50 and ResNet-101 (Bottleneck blocks, stride on the 3×3 convolution as in
//! torchvision's V1.5 design), with torchvision's parameter names, so that its state dicts load by
//! name: `conv1`, `bn1`, `layer{1..4}.{k}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}`.
//! The ImageNet classifier `fc` is not part of the backbone: features are the 2048-d global average
//! pool. Initialisation as torchvision's: convolutions kaiming-normal (fan-out, ReLU), batch-norm
//! weight 1 and bias 0. [`load_strict`] reads a safetensors state dict.

use super::init::{batch_norm2d, LayerInit};
use anyhow::Result;
use std::path::Path;
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Depth {
    Resnet50,
    Resnet101,
}

impl Depth {
    pub fn name(self) -> &'static str {
        match self {
            Depth::Resnet50 => "resnet50",
            Depth::Resnet101 => "resnet101",
        }
    }

    /// The ImageNet-1K weights as data-fetch lays them out: torchvision's V1 weights in timm's
    /// safetensors copy (`<data root>/<name>/<name>.tv_in1k.safetensors`). torchvision's own
    /// `.pth` files are Python pickles, which libtorch's reader cannot load
    /// (`Tensor::loadz_multi` fails with "isGenericDict() INTERNAL ASSERT FAILED"); nothing is
    /// converted behind the user's back.
    pub fn imagenet_weights(self, data_root: &Path) -> std::path::PathBuf {
        data_root.join(self.name()).join(format!("{}.tv_in1k.safetensors", self.name()))
    }

    fn blocks(self) -> [i64; 4] {
        match self {
            Depth::Resnet50 => [3, 4, 6, 3],
            Depth::Resnet101 => [3, 4, 23, 3],
        }
    }
}

/// A bias-free convolution with torchvision's ResNet initialisation.
fn conv(p: nn::Path, input: i64, output: i64, kernel: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let field = kernel * kernel;
    let (ws_init, _) = LayerInit::KaimingNormalFanOut.initialisers(input * field, output * field);
    nn::conv2d(p, input, output, kernel, nn::ConvConfig { stride, padding, ws_init, bias: false, ..Default::default() })
}

#[derive(Debug)]
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    const EXPANSION: i64 = 4;

    fn new(p: nn::Path, input: i64, planes: i64, stride: i64) -> Bottleneck {
        let out = planes * Self::EXPANSION;
        let downsample = (stride != 1 || input != out).then(|| (conv(&p / "downsample" / "0", input, out, 1, stride, 0), batch_norm2d(&p / "downsample" / "1", out)));
        Bottleneck {
            conv1: conv(&p / "conv1", input, planes, 1, 1, 0),
            bn1: batch_norm2d(&p / "bn1", planes),
            conv2: conv(&p / "conv2", planes, planes, 3, stride, 1),
            bn2: batch_norm2d(&p / "bn2", planes),
            conv3: conv(&p / "conv3", planes, out, 1, 1, 0),
            bn3: batch_norm2d(&p / "bn3", out),
            downsample,
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let y = y.apply(&self.conv2).apply_t(&self.bn2, train).relu();
        let y = y.apply(&self.conv3).apply_t(&self.bn3, train);
        let identity = match &self.downsample {
            Some((c, bn)) => x.apply(c).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        (y + identity).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Bottleneck>>,
}

impl ResNet {
    pub const FEATURES: i64 = 2048;

    pub fn new(p: &nn::Path, depth: Depth) -> ResNet {
        let mut input = 64;
        let mut layers = Vec::new();
        for (k, (&n, planes)) in depth.blocks().iter().zip([64, 128, 256, 512]).enumerate() {
            let stride = if k == 0 { 1 } else { 2 };
            let lp = p / format!("layer{}", k + 1);
            let mut blocks = Vec::new();
            for b in 0..n {
                blocks.push(Bottleneck::new(&lp / b.to_string(), input, planes, if b == 0 { stride } else { 1 }));
                input = planes * Bottleneck::EXPANSION;
            }
            layers.push(blocks);
        }
        ResNet { conv1: conv(p / "conv1", 3, 64, 7, 2, 3), bn1: batch_norm2d(p / "bn1", 64), layers }
    }
}

impl ModuleT for ResNet {
    /// N×3×H×W normalised images → N×2048 pooled features.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in &self.layers {
            for block in layer {
                y = block.forward_t(&y, train);
            }
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

/// Keys of a torchvision ResNet state dict that the backbone does not hold: the ImageNet classifier
/// and batch norm's step counters.
fn dropped_by_name(key: &str) -> bool {
    key == "fc.weight" || key == "fc.bias" || key.ends_with(".num_batches_tracked")
}

/// Copies every variable of `vs` under `prefix` (e.g. "" or "backbone.") from the safetensors file
/// `path`, strictly (see [`super::load_safetensors_strict`]); torchvision's classifier and step
/// counters are dropped.
pub fn load_strict(vs: &mut nn::VarStore, prefix: &str, path: &Path) -> Result<()> {
    super::load_safetensors_strict(vs, prefix, path, dropped_by_name)
}
