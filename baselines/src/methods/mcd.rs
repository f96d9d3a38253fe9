//! MCD (maximum classifier discrepancy), as Transfer-Learning-Library implements it and the paper
//! runs it (docs/design/protocols.md, "MCD"). Generator G (the backbone) and two classifiers F1, F2, each
//! Drop 0.5, Linear in→h, BN, ReLU, Drop 0.5, Linear h→h, BN, ReLU, Linear h→C.
//!
//! One iteration, source and target forwarded together:
//! - step A (not harmonized): G, F1, F2 minimise source CE of both heads + ent_w·(ent(p1_t) + ent(p2_t));
//! - step B (harmonized): L1 = CE(F1, s) + CE(F2, s) + ent_w·(ent(p1_t) + ent(p2_t)),
//!   L2 = −trade_off·mean|p1_t − p2_t|; scope G; total w1·L1 + w2·L2; only F1 and F2 step
//!   (G's gradient is computed for the dot products, then discarded);
//! - step C (not harmonized), num_k times: G minimises trade_off·mean|p1_t − p2_t|.
//!
//! ent(p) = −mean_k log(mean_i p_ik + 1e-6) (class-balance entropy). Reported accuracy is
//! max(acc F1, acc F2). Released-code defect not reproduced: its `--GH` flag parsed with
//! type=bool was always on, so its "GH++" MCD runs actually ran GH; here the harmonizer is the one
//! named in the run configuration.
//!
//! Image protocol (docs/design/protocols-images.md §2): G = ResNet-50/101 from ImageNet weights (pooled to
//! 2048; TLlib pools inside the heads, which is the same computation), heads of width 1024,
//! batch 32 + 32 forwarded together, fixed learning rate 1e-3 for all (no multipliers).
//!
//! Initialisation (networks/init.rs): PyTorch defaults everywhere (TLL builds G and the heads with
//! no init of their own); on images G starts from its ImageNet weights.

use super::common::{backward, GroupMultipliers, GroupedSgd, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::harmonizer::autograd::{LossPair, Parameters, Scope, StepLosses};
use crate::networks::named_variables;
use crate::networks::init::{batch_norm1d, linear, LayerInit};
use crate::networks::{Backbone, Dropout, ImageBackbone};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// The harmonized pair (see the module comment).
pub const PAIRS: &[super::PairDescription] = &[super::PairDescription {
    label: "stepB",
    losses: "L1 = source cross-entropy of F1 and F2 + class-balance entropy, L2 = -trade_off x discrepancy on target",
    scope: "generator G",
}];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    /// Fixed learning rate of all three optimisers.
    pub lr: f64,
    /// G's momentum (0 in TLL) and the heads' (0.9).
    pub momentum_generator: f64,
    pub momentum_heads: f64,
    pub weight_decay: f64,
    /// Weight of the classifier discrepancy.
    pub trade_off: f64,
    /// Weight of the class-balance entropy on target predictions.
    pub entropy_weight: f64,
    /// Generator steps (step C) per iteration.
    pub num_k: usize,
    /// Hidden width of F1 and F2.
    pub head_hidden: i64,
    /// The ResNet of the image protocol (absent on digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<ImageBackbone>,
}

/// F1 / F2.
#[derive(Debug)]
struct Head {
    fc1: nn::Linear,
    bn1: nn::BatchNorm,
    fc2: nn::Linear,
    bn2: nn::BatchNorm,
    out: nn::Linear,
    dropout: Dropout,
}

impl Head {
    fn new(p: &nn::Path, input: i64, hidden: i64, classes: i64, dropout: Dropout) -> Head {
        let init = LayerInit::PyTorchDefault;
        Head {
            fc1: linear(p / "fc1", input, hidden, init),
            bn1: batch_norm1d(p / "bn1", hidden),
            fc2: linear(p / "fc2", hidden, hidden, init),
            bn2: batch_norm1d(p / "bn2", hidden),
            out: linear(p / "out", hidden, classes, init),
            dropout,
        }
    }
}

impl ModuleT for Head {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.bn1.forward_t(&self.fc1.forward(&self.dropout.apply(xs, 0.5, train)), train).relu();
        let x = self.bn2.forward_t(&self.fc2.forward(&self.dropout.apply(&x, 0.5, train)), train).relu();
        self.out.forward(&x)
    }
}

pub struct Mcd {
    config: Config,
    stores: [nn::VarStore; 3],
    generator: Backbone,
    f1: Head,
    f2: Head,
    params: Parameters,
    scope: Scope,
    opt_g: GroupedSgd,
    opt_f1: GroupedSgd,
    opt_f2: GroupedSgd,
}

/// Outputs of one forward pass over source and target together.
struct Forward {
    ce: Tensor,
    entropy: Tensor,
    discrepancy: Tensor,
}

/// −mean_k log(mean_i p_ik + 1e-6).
fn class_balance_entropy(probs: &Tensor) -> Tensor {
    -(probs.mean_dim(0, false, Kind::Float) + 1e-6).log().mean(Kind::Float)
}

impl Mcd {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let mut stores = [nn::VarStore::new(setup.device), nn::VarStore::new(setup.device), nn::VarStore::new(setup.device)];
        let generator = Backbone::build(&stores[0].root(), &setup.network, setup.dropout);
        let f1 = Head::new(&stores[1].root(), generator.features(), config.head_hidden, setup.classes, setup.dropout);
        let f2 = Head::new(&stores[2].root(), generator.features(), config.head_hidden, setup.classes, setup.dropout);
        Backbone::load_pretrained(&mut stores[0], "", &setup.network)?;
        let params = Parameters::from_stores(&[("G", &stores[0]), ("F1", &stores[1]), ("F2", &stores[2])]);
        let scope = params.scope("generator", &["G/"])?;
        let sgd = |momentum: f64| Sgd { lr: config.lr, momentum, weight_decay: config.weight_decay, nesterov: false };
        let one = GroupMultipliers::default();
        let opt_g = sgd(config.momentum_generator).build(&stores[0], &one)?;
        let opt_f1 = sgd(config.momentum_heads).build(&stores[1], &one)?;
        let opt_f2 = sgd(config.momentum_heads).build(&stores[2], &one)?;
        Ok(Mcd { config, stores, generator, f1, f2, params, scope, opt_g, opt_f1, opt_f2 })
    }

    fn zero_all(&mut self) {
        self.opt_g.zero_grad();
        self.opt_f1.zero_grad();
        self.opt_f2.zero_grad();
    }

    fn forward(&self, batch: &Batch) -> Forward {
        let ns = batch.source.size()[0];
        let g = self.generator.forward_t(&Tensor::cat(&[&batch.source, &batch.target], 0), true);
        let (y1, y2) = (self.f1.forward_t(&g, true), self.f2.forward_t(&g, true));
        let nt = y1.size()[0] - ns;
        let ce = y1.narrow(0, 0, ns).cross_entropy_for_logits(&batch.labels) + y2.narrow(0, 0, ns).cross_entropy_for_logits(&batch.labels);
        let p1 = y1.narrow(0, ns, nt).softmax(1, Kind::Float);
        let p2 = y2.narrow(0, ns, nt).softmax(1, Kind::Float);
        let entropy = class_balance_entropy(&p1) + class_balance_entropy(&p2);
        let discrepancy = (&p1 - &p2).abs().mean(Kind::Float);
        Forward { ce, entropy, discrepancy }
    }
}

impl UdaMethod for Mcd {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        let c = self.config.clone();
        // Step A: everything learns the source.
        self.zero_all();
        let a = self.forward(batch);
        backward(&(&a.ce + &a.entropy * c.entropy_weight))?;
        self.opt_g.step();
        self.opt_f1.step();
        self.opt_f2.step();

        // Step B: the heads maximise their discrepancy on target, harmonized with the source loss.
        self.zero_all();
        let b = self.forward(batch);
        let l1 = &b.ce + &b.entropy * c.entropy_weight;
        let l2 = &b.discrepancy * (-c.trade_off);
        ctx.log_loss("stepB_source", &l1);
        ctx.log_loss("stepB_discrepancy", &b.discrepancy);
        ctx.backward(&self.params, &["stepB"], &StepLosses { pairs: vec![LossPair::new(&l1, &l2, &self.scope)], unharmonized: None })?;
        self.opt_f1.step();
        self.opt_f2.step();

        // Step C: the generator minimises the discrepancy.
        for _ in 0..c.num_k {
            self.zero_all();
            let f = self.forward(batch);
            backward(&(&f.discrepancy * c.trade_off))?;
            self.opt_g.step();
        }
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| {
            let g = self.generator.forward_t(images, false);
            vec![("f1".to_owned(), self.f1.forward_t(&g, false)), ("f2".to_owned(), self.f2.forward_t(&g, false))]
        })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        named_variables(&[("G", &self.stores[0]), ("F1", &self.stores[1]), ("F2", &self.stores[2])])
    }

    fn learning_rates(&self) -> Vec<(String, f64)> {
        [self.opt_g.learning_rates("G"), self.opt_f1.learning_rates("F1"), self.opt_f2.learning_rates("F2")].concat()
    }
}

impl super::MethodSpec for Config {
    fn batch(&self) -> usize {
        self.batch
    }
    fn image_backbone(&self) -> Option<crate::networks::ImageBackbone> {
        self.backbone
    }
    fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>> {
        Ok(Box::new(Mcd::new(self.clone(), setup)?))
    }
}
