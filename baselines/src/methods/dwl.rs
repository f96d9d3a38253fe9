//! DWL (dynamic weighted learning), as the paper runs it (docs/design/protocols.md, "DWL").
//!
//! Networks (digits M↔U): G = Conv 1→32 k5, BN, ReLU, MaxPool 2; Conv 32→48 k5, BN, ReLU,
//! MaxPool 2 (768-d); three predictors C, C1, C2 = Drop, 768→100, BN, ReLU, Drop, 100→100, BN,
//! ReLU, Drop, 100→10; discriminator D = 768-1024-ReLU-1024-ReLU-1 (sigmoid). For S→M, where
//! docs/design/protocols.md gives no DWL network, G is the DTN (512-d) and the heads take 512 inputs.
//! Five SGD optimisers (G, C, C1, C2, D) with one fixed setting.
//!
//! One iteration:
//! 1. `source_steps` source cross-entropy steps of G and C;
//! 2. a discriminator step (source = 1, target = 0, features detached);
//! 3. a classifier step of C, C1, C2: CE(C) + CE(C1) + CE(C2) − disc(C1, C2) on target;
//! 4. the balance loop, `balance_steps` harmonized steps of G only:
//!    L1 = adversarial_weight · BCE(D(G(x_t)), source), L2 = disc(C1,C2) + disc(C,C1) + disc(C,C2)
//!    on target; total `T·w1·L1 + (1−T)·w2·L2` (T applied after harmonizing), scope G;
//! 5. a pseudo-label step of G and C on confident target predictions of C + C1 + C2.
//!
//! disc(a, b) = mean|softmax(a) − softmax(b)|. The balance weight T = A / (A + 1 − J) starts at
//! `initial_balance` and is re-estimated each epoch (each iteration when the source is SVHN).
//! docs/design/protocols.md does not give the normalisations; ours (stated in docs/deviations.md): A = m/(1+m) with m
//! the squared distance between the mean L2-normalised source and target features (linear MMD),
//! J = j/(1+j) with j = tr(S_b)/tr(S_w) of the source features (LDA criterion).
//! Reported accuracy: max over C, C1, C2, C1+C2, C+C1+C2 (each head recorded).
//! Released-code defects not reproduced: it does not run as committed (import shadowing, double
//! pooling); this is written from the description.
//!
//! Image protocol (docs/design/protocols-images.md §3): G = ResNet-50/101 from ImageNet weights, pooled to
//! 2048 (pooled once: the released code's double pooling is a defect, not reproduced); C, C1, C2 =
//! Linear 2048→1024, BN, ReLU, Linear 1024→C (no dropout); D = Linear 2048→1024 (N(0, 0.01), bias
//! 0), ReLU, Dropout 0.5, Linear 1024→1 (N(0, 0.3), bias 0), sigmoid. Five SGDs, lr 1e-3 fixed.
//! The balance statistics keep the digits normalisations above (ours; the released code's running
//! max/min normalisation and LDA eigenvalues are not reproduced).
//!
//! Initialisation (networks/init.rs): PyTorch defaults everywhere but the image discriminator.
//! docs/design/protocols.md gives no initialisation for DWL's digits networks (ours).

use super::common::{backward, GroupMultipliers, GroupedSgd, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::data::DigitsFormat;
use crate::harmonizer::autograd::{LossPair, Parameters, Scope, StepLosses};
use crate::networks::named_variables;
use crate::networks::init::{batch_norm1d, batch_norm2d, conv2d, linear, LayerInit};
use crate::networks::{Backbone, Dropout, ImageBackbone, Network};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Reduction, Tensor};

/// DWL's digits networks keep PyTorch's default initialisation (see the module comment).
const INIT: LayerInit = LayerInit::PyTorchDefault;

/// The harmonized pair (see the module comment).
pub const PAIRS: &[super::PairDescription] = &[super::PairDescription {
    label: "balance",
    losses: "L1 = adversarial BCE on target, L2 = the three classifier discrepancies on target",
    scope: "generator G",
}];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Source cross-entropy steps per iteration (8).
    pub source_steps: usize,
    /// Harmonized balance steps per iteration (8).
    pub balance_steps: usize,
    /// Factor inside L1 (0.2).
    pub adversarial_weight: f64,
    /// Confidence above which a target prediction becomes a pseudo-label.
    pub pseudo_label_threshold: f64,
    /// T before the first estimate (0.5).
    pub initial_balance: f64,
    /// The ResNet of the image protocol (absent on digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<ImageBackbone>,
}

/// G for the grey 28×28 digits.
#[derive(Debug)]
struct SmallCnn {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.bn1.forward_t(&self.conv1.forward(xs), train).relu().max_pool2d_default(2);
        let x = self.bn2.forward_t(&self.conv2.forward(&x), train).relu().max_pool2d_default(2);
        x.flatten(1, -1)
    }
}

#[derive(Debug)]
enum Generator {
    Small(SmallCnn),
    /// The DTN (S→M) or a ResNet (images).
    Backbone(Backbone),
}

impl Generator {
    fn new(p: &nn::Path, network: &Network, dropout: Dropout) -> (Generator, i64) {
        match network {
            Network::Digits(DigitsFormat::Grey28) => (
                Generator::Small(SmallCnn {
                    conv1: conv2d(p / "conv1", 1, 32, 5, 1, 0, INIT),
                    bn1: batch_norm2d(p / "bn1", 32),
                    conv2: conv2d(p / "conv2", 32, 48, 5, 1, 0, INIT),
                    bn2: batch_norm2d(p / "bn2", 48),
                }),
                48 * 4 * 4,
            ),
            other => {
                let backbone = Backbone::build(p, other, dropout);
                let features = backbone.features();
                (Generator::Backbone(backbone), features)
            }
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Generator::Small(n) => n.forward_t(xs, train),
            Generator::Backbone(n) => n.forward_t(xs, train),
        }
    }
}

/// C, C1, C2: per hidden layer Dropout (digits only), Linear, BN, ReLU; then Dropout (digits
/// only) and the output Linear. Digits: hidden 100, 100 with dropout 0.5; images: 1024, no dropout.
#[derive(Debug)]
struct Predictor {
    hidden: Vec<(nn::Linear, nn::BatchNorm)>,
    out: nn::Linear,
    dropout: Option<Dropout>,
}

impl Predictor {
    fn new(p: &nn::Path, input: i64, classes: i64, image: bool, dropout: Dropout) -> Self {
        let widths: &[i64] = if image { &[1024] } else { &[100, 100] };
        let mut hidden = Vec::new();
        let mut width = input;
        for (i, &w) in widths.iter().enumerate() {
            hidden.push((linear(p / format!("fc{}", i + 1), width, w, INIT), batch_norm1d(p / format!("bn{}", i + 1), w)));
            width = w;
        }
        Predictor { hidden, out: linear(p / "out", width, classes, INIT), dropout: (!image).then_some(dropout) }
    }

    fn drop(&self, x: &Tensor, train: bool) -> Tensor {
        match self.dropout {
            Some(d) => d.apply(x, 0.5, train),
            None => x.shallow_clone(),
        }
    }
}

impl ModuleT for Predictor {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (fc, bn) in &self.hidden {
            x = bn.forward_t(&fc.forward(&self.drop(&x, train)), train).relu();
        }
        self.out.forward(&self.drop(&x, train))
    }
}

/// D: digits features-1024-ReLU-1024-ReLU-1; images 2048-1024-ReLU-Dropout 0.5-1 with DWL's normal
/// initialisation. Outputs the logit (the sigmoid is inside the loss).
#[derive(Debug)]
struct Discriminator {
    layers: Vec<nn::Linear>,
    dropout: Option<Dropout>,
}

impl Discriminator {
    fn new(p: &nn::Path, input: i64, image: bool, dropout: Dropout) -> Self {
        let layers = if image {
            vec![linear(p / "fc1", input, 1024, LayerInit::Normal { std: 0.01, bias: 0.0 }), linear(p / "out", 1024, 1, LayerInit::Normal { std: 0.3, bias: 0.0 })]
        } else {
            vec![linear(p / "fc1", input, 1024, INIT), linear(p / "fc2", 1024, 1024, INIT), linear(p / "out", 1024, 1, INIT)]
        };
        Discriminator { layers, dropout: image.then_some(dropout) }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (last, hidden) = self.layers.split_last().expect("at least one layer");
        let mut x = xs.shallow_clone();
        for fc in hidden {
            x = fc.forward(&x).relu();
            if let Some(d) = self.dropout {
                x = d.apply(&x, 0.5, train);
            }
        }
        last.forward(&x)
    }
}

pub struct Dwl {
    config: Config,
    stores: Vec<nn::VarStore>,
    g: Generator,
    c: Predictor,
    c1: Predictor,
    c2: Predictor,
    d: Discriminator,
    params: Parameters,
    scope: Scope,
    /// Optimisers of G, C, C1, C2, D.
    opts: Vec<GroupedSgd>,
    balance: f64,
    per_iteration_balance: bool,
}

/// The stores' labels, in the order of `stores` and `opts`.
const LABELS: [&str; 5] = ["G", "C", "C1", "C2", "D"];
const G: usize = 0;
const C: usize = 1;
const C1: usize = 2;
const C2: usize = 3;
const D: usize = 4;

/// The stores paired with their labels.
fn labelled(stores: &[nn::VarStore]) -> Vec<(&'static str, &nn::VarStore)> {
    LABELS.into_iter().zip(stores).collect()
}

fn discrepancy(a: &Tensor, b: &Tensor) -> Tensor {
    (a.softmax(1, Kind::Float) - b.softmax(1, Kind::Float)).abs().mean(Kind::Float)
}

fn bce(logits: &Tensor, target: f64) -> Tensor {
    let t = logits.full_like(target);
    logits.binary_cross_entropy_with_logits::<Tensor>(&t, None, None, Reduction::Mean)
}

impl Dwl {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let mut stores: Vec<nn::VarStore> = (0..5).map(|_| nn::VarStore::new(setup.device)).collect();
        let image = setup.network.is_image();
        let (g, features) = Generator::new(&stores[G].root(), &setup.network, setup.dropout);
        let c = Predictor::new(&stores[C].root(), features, setup.classes, image, setup.dropout);
        let c1 = Predictor::new(&stores[C1].root(), features, setup.classes, image, setup.dropout);
        let c2 = Predictor::new(&stores[C2].root(), features, setup.classes, image, setup.dropout);
        let d = Discriminator::new(&stores[D].root(), features, image, setup.dropout);
        Backbone::load_pretrained(&mut stores[G], "", &setup.network)?;
        let params = Parameters::from_stores(&labelled(&stores));
        let scope = params.scope("generator", &["G/"])?;
        let sgd = Sgd { lr: config.lr, momentum: config.momentum, weight_decay: config.weight_decay, nesterov: false };
        let opts = stores.iter().map(|vs| sgd.build(vs, &GroupMultipliers::default())).collect::<Result<Vec<_>>>()?;
        let balance = config.initial_balance;
        Ok(Dwl { config, stores, g, c, c1, c2, d, params, scope, opts, balance, per_iteration_balance: setup.source_digits == Some(crate::data::Domain::Svhn) })
    }

    fn zero(&mut self, which: &[usize]) {
        for &i in which {
            self.opts[i].zero_grad();
        }
    }

    fn step(&mut self, which: &[usize]) {
        for &i in which {
            self.opts[i].step();
        }
    }

    /// T = A / (A + 1 − J) from features of labelled source and of target images.
    fn estimate_balance(&self, fs: &Tensor, labels: &Tensor, ft: &Tensor) -> (f64, f64, f64) {
        let normalise = |f: &Tensor| f / (f.norm_scalaropt_dim(2, [1], true) + 1e-8);
        let mmd = (normalise(fs).mean_dim(0, false, Kind::Float) - normalise(ft).mean_dim(0, false, Kind::Float))
            .square()
            .sum(Kind::Float)
            .double_value(&[]);
        let a = mmd / (1.0 + mmd);
        let mean = fs.mean_dim(0, true, Kind::Float);
        let (mut between, mut within) = (0.0, 0.0);
        let classes = labels.max().int64_value(&[]) + 1;
        for k in 0..classes {
            let mask = labels.eq(k);
            let n = mask.sum(Kind::Float).double_value(&[]);
            if n == 0.0 {
                continue;
            }
            let fk = fs.index_select(0, &mask.nonzero().squeeze_dim(1));
            let mk = fk.mean_dim(0, true, Kind::Float);
            between += n * (&mk - &mean).square().sum(Kind::Float).double_value(&[]);
            within += (&fk - &mk).square().sum(Kind::Float).double_value(&[]);
        }
        let j_raw = if within > 0.0 { between / within } else { 0.0 };
        let j = j_raw / (1.0 + j_raw);
        let t = if a + 1.0 - j > 0.0 { a / (a + 1.0 - j) } else { 0.5 };
        (t.clamp(0.0, 1.0), a, j)
    }
}

impl UdaMethod for Dwl {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        let cfg = self.config.clone();
        // 1. Source cross-entropy steps.
        for _ in 0..cfg.source_steps {
            self.zero(&[G, C]);
            let loss = self.c.forward_t(&self.g.forward_t(&batch.source, true), true).cross_entropy_for_logits(&batch.labels);
            backward(&loss)?;
            self.step(&[G, C]);
        }
        // 2. Discriminator step.
        self.zero(&[D]);
        let fs = self.g.forward_t(&batch.source, true).detach();
        let ft = self.g.forward_t(&batch.target, true).detach();
        let d_loss = bce(&self.d.forward_t(&fs, true), 1.0) + bce(&self.d.forward_t(&ft, true), 0.0);
        backward(&d_loss)?;
        self.step(&[D]);
        // 3. Classifier step: fit the source, pull C1 and C2 apart on target.
        self.zero(&[C, C1, C2]);
        let c_loss = self.c.forward_t(&fs, true).cross_entropy_for_logits(&batch.labels)
            + self.c1.forward_t(&fs, true).cross_entropy_for_logits(&batch.labels)
            + self.c2.forward_t(&fs, true).cross_entropy_for_logits(&batch.labels)
            - discrepancy(&self.c1.forward_t(&ft, true), &self.c2.forward_t(&ft, true));
        backward(&c_loss)?;
        self.step(&[C, C1, C2]);
        if self.per_iteration_balance {
            self.balance = self.estimate_balance(&fs, &batch.labels, &ft).0;
        }
        // 4. Balance loop: G aligns (fools D) and makes the three predictors agree, harmonized.
        let t = self.balance;
        for _ in 0..cfg.balance_steps {
            self.zero(&[G, C, C1, C2, D]);
            let ft = self.g.forward_t(&batch.target, true);
            let adversarial = bce(&self.d.forward_t(&ft, true), 1.0) * cfg.adversarial_weight;
            let (p, p1, p2) = (self.c.forward_t(&ft, true), self.c1.forward_t(&ft, true), self.c2.forward_t(&ft, true));
            let agreement = discrepancy(&p1, &p2) + discrepancy(&p, &p1) + discrepancy(&p, &p2);
            ctx.log_loss("balance_adversarial", &adversarial);
            ctx.log_loss("balance_discrepancy", &agreement);
            let pair = LossPair::new(&adversarial, &agreement, &self.scope).with_coefficients(t, 1.0 - t);
            ctx.backward(&self.params, &["balance"], &StepLosses { pairs: vec![pair], unharmonized: None })?;
            self.step(&[G]);
        }
        // 5. Pseudo-labels from the ensemble's confident target predictions.
        self.zero(&[G, C]);
        let ft = self.g.forward_t(&batch.target, true);
        let logits = self.c.forward_t(&ft, true);
        let ensemble = tch::no_grad(|| {
            (logits.softmax(1, Kind::Float) + self.c1.forward_t(&ft, false).softmax(1, Kind::Float) + self.c2.forward_t(&ft, false).softmax(1, Kind::Float)) / 3.0
        });
        let (confidence, pseudo) = ensemble.max_dim(1, false);
        let keep = confidence.gt(cfg.pseudo_label_threshold).nonzero().squeeze_dim(1);
        if keep.size()[0] > 0 {
            let loss = logits.index_select(0, &keep).cross_entropy_for_logits(&pseudo.index_select(0, &keep));
            ctx.log_loss("pseudo_label", &loss);
            backward(&loss)?;
            self.step(&[G, C]);
        }
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| {
            let f = self.g.forward_t(images, false);
            let p = self.c.forward_t(&f, false).softmax(1, Kind::Float);
            let p1 = self.c1.forward_t(&f, false).softmax(1, Kind::Float);
            let p2 = self.c2.forward_t(&f, false).softmax(1, Kind::Float);
            vec![
                ("c1+c2".to_owned(), &p1 + &p2),
                ("c+c1+c2".to_owned(), &p + &p1 + &p2),
                ("c".to_owned(), p),
                ("c1".to_owned(), p1),
                ("c2".to_owned(), p2),
            ]
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        named_variables(&labelled(&self.stores))
    }

    fn learning_rates(&self) -> Vec<(String, f64)> {
        LABELS.iter().zip(&self.opts).flat_map(|(label, opt)| opt.learning_rates(label)).collect()
    }

    fn needs_epoch_samples(&self) -> bool {
        true
    }

    fn end_epoch(&mut self, source: (&Tensor, &Tensor), target: &Tensor) -> Result<Vec<(String, f64)>> {
        if self.per_iteration_balance {
            return Ok(vec![("balance_T".into(), self.balance)]);
        }
        let (fs, ft) = tch::no_grad(|| (self.g.forward_t(source.0, false), self.g.forward_t(target, false)));
        let (t, a, j) = self.estimate_balance(&fs, source.1, &ft);
        self.balance = t;
        Ok(vec![("balance_T".into(), t), ("balance_A".into(), a), ("balance_J".into(), j)])
    }
}

impl super::MethodSpec for Config {
    fn batch(&self) -> usize {
        self.batch
    }
    fn image_backbone(&self) -> Option<crate::networks::ImageBackbone> {
        self.backbone
    }
    fn describe_network(&self, network: &crate::networks::Network) -> Option<String> {
        matches!(network, crate::networks::Network::Digits(DigitsFormat::Grey28)).then(|| "DWL's digits network (two conv blocks to 768), 28×28 grey".to_owned())
    }
    fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>> {
        Ok(Box::new(Dwl::new(self.clone(), setup)?))
    }
}
