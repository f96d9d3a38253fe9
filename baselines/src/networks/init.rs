//! Layer construction with the initialisation of the reference framework, in one place.
//!
//! tch's layer constructors do not initialise as PyTorch does, and the paper's numbers come from
//! PyTorch code:
//!
//! | layer | tch default | PyTorch default (what the reference code gets) |
//! |---|---|---|
//! | Linear / Conv weight | Kaiming-uniform, ReLU gain: U(±sqrt(6 / fan_in)) | Kaiming-uniform, a = sqrt(5): U(±1 / sqrt(fan_in)) |
//! | Linear bias | U(±1 / sqrt(fan_in)) | U(±1 / sqrt(fan_in)) |
//! | Conv bias | 0 | U(±1 / sqrt(fan_in)) |
//! | BatchNorm weight | U(0, 1) | 1 |
//!
//! so every network builds its layers through this module, naming the rule its reference code
//! uses ([`LayerInit`]). tch's 2.4x wider weights made a fresh LeNet classifier start at a
//! cross-entropy of about 6.7 instead of ln 10 and were behind the digits GH divergence of earlier
//! versions. `baselines/tests/init_parity.rs` checks every rule against its reference bounds and
//! standard deviations.

use std::borrow::Borrow;
use tch::nn::{self, init::FanInOut, init::NonLinearity, init::NormalOrUniform, Init};

/// How a Linear or Conv layer's weight and bias are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerInit {
    /// `nn.Linear` / `nn.Conv2d` as constructed: weight U(±1/sqrt(fan_in)) (kaiming_uniform_ with
    /// a = sqrt(5)), bias U(±1/sqrt(fan_in)).
    PyTorchDefault,
    /// `xavier_normal_` weight (std sqrt(2 / (fan_in + fan_out))), zero bias: CDAN's
    /// `init_weights` for Linear layers (its discriminator).
    XavierNormal,
    /// `kaiming_normal_` with PyTorch's defaults (a = 0, fan_in, leaky_relu gain sqrt(2): std
    /// sqrt(2 / fan_in)), zero bias: GVB's `init_weights` for Linear layers (its classifier,
    /// bridge and discriminator).
    KaimingNormal,
    /// `kaiming_normal_(mode="fan_out", nonlinearity="relu")` (std sqrt(2 / fan_out)), zero bias:
    /// torchvision's ResNet convolutions (which have no bias).
    KaimingNormalFanOut,
    /// `normal_(0, std)` weight and a constant bias (SSRT's and DWL's explicit initialisations).
    Normal { std: f64, bias: f64 },
}

impl LayerInit {
    /// The tch initialisers `(weight, bias)` for a layer with fan-in `fan_in` (inputs × receptive
    /// field) and fan-out `fan_out` (outputs × receptive field).
    pub fn initialisers(self, fan_in: i64, fan_out: i64) -> (Init, Init) {
        let bound = 1.0 / (fan_in as f64).sqrt();
        match self {
            LayerInit::PyTorchDefault => (
                // Kaiming-uniform with gain sqrt(2 / (1 + 5)) = sqrt(1/3): bound sqrt(3)·gain/sqrt(fan_in).
                Init::Kaiming { dist: NormalOrUniform::Uniform, fan: FanInOut::FanIn, non_linearity: NonLinearity::ExplicitGain((1.0f64 / 3.0).sqrt()) },
                Init::Uniform { lo: -bound, up: bound },
            ),
            LayerInit::XavierNormal => (Init::Randn { mean: 0.0, stdev: (2.0 / (fan_in + fan_out) as f64).sqrt() }, Init::Const(0.0)),
            LayerInit::KaimingNormal => (Init::Randn { mean: 0.0, stdev: (2.0 / fan_in as f64).sqrt() }, Init::Const(0.0)),
            LayerInit::KaimingNormalFanOut => (Init::Randn { mean: 0.0, stdev: (2.0 / fan_out as f64).sqrt() }, Init::Const(0.0)),
            LayerInit::Normal { std, bias } => (Init::Randn { mean: 0.0, stdev: std }, Init::Const(bias)),
        }
    }
}

/// A fully connected layer `input → output` (weight `[output, input]`, bias `[output]`).
pub fn linear<'a, P: Borrow<nn::Path<'a>>>(p: P, input: i64, output: i64, init: LayerInit) -> nn::Linear {
    let (ws_init, bs_init) = init.initialisers(input, output);
    nn::linear(p, input, output, nn::LinearConfig { ws_init, bs_init: Some(bs_init), bias: true })
}

/// A 2-D convolution with a square `kernel` and bias.
pub fn conv2d<'a, P: Borrow<nn::Path<'a>>>(p: P, input: i64, output: i64, kernel: i64, stride: i64, padding: i64, init: LayerInit) -> nn::Conv2D {
    let field = kernel * kernel;
    let (ws_init, bs_init) = init.initialisers(input * field, output * field);
    nn::conv2d(p, input, output, kernel, nn::ConvConfig { stride, padding, ws_init, bs_init, ..Default::default() })
}

/// `nn.BatchNorm1d` / `nn.BatchNorm2d` as constructed: weight 1, bias 0, eps 1e-5, momentum 0.1,
/// running mean 0 and variance 1.
fn batch_norm_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig { ws_init: Init::Const(1.0), bs_init: Init::Const(0.0), eps: 1e-5, momentum: 0.1, ..Default::default() }
}

pub fn batch_norm1d<'a, P: Borrow<nn::Path<'a>>>(p: P, features: i64) -> nn::BatchNorm {
    nn::batch_norm1d(p, features, batch_norm_config())
}

pub fn batch_norm2d<'a, P: Borrow<nn::Path<'a>>>(p: P, features: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, features, batch_norm_config())
}
