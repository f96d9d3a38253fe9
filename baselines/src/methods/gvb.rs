//! GVB-GD (gradually vanishing bridge on generator and discriminator), as the paper runs it
//! (docs/design/protocols.md, "GVB"):
//! - base network: features f = G(x) (source and target forwarded together), classifier C and
//!   generator bridge B, both f → classes; logits = C(f) − B(f);
//! - discriminator on the softmax, behind a gradient-reversal layer: C-h-ReLU-Drop-h-ReLU-Drop
//!   with two outputs (adversarial a, discriminator bridge b); domain score sigmoid(a − b);
//! - transfer loss: domain BCE weighted by exp(−H) (H through the reversal), normalised within
//!   source and within target.
//!
//! The discriminator's reversal coefficient follows its own forward counter (1 on its first
//! forward), the entropy's the training iteration, as in GVB's code. The domain BCE is GVB's own
//! `−[y log(p + 1e-8) + (1 − y) log(1 − p + 1e-8)]`.
//!
//! Image protocol (docs/design/protocols.md, docs/design/protocols-images.md §4): ResNet-50/101 (ImageNet weights) to
//! 2048, no bottleneck, classifier and bridge 2048→C; source and target forwarded separately;
//! Nesterov SGD with the inv schedule, learning rate x1 on the backbone and x10 on the classifier,
//! bridge and discriminator.
//!
//! Initialisation (networks/init.rs): digits backbone PyTorch defaults (images: the ResNet from
//! its ImageNet weights); classifier, bridge and every
//! discriminator layer Kaiming-normal weights with zero biases (GVB's `init_weights`, which its
//! code applies to exactly these layers).
//!
//! Two harmonized pairs, both over the base network:
//! A: L1 = transfer loss, L2 = source cross-entropy;  B: L1 = mean|B(f)| (generator bridge),
//! L2 = mean|b| (discriminator bridge). Total `trade_off·w1·L_transfer + w2·L_cls +
//! gvbg·w1'·L_gvbg + |gvbd|·w2'·L_gvbd`.

use super::common::{apply_schedule, entropy_per_sample, weighted_domain_bce, DomainBce, GroupMultipliers, GroupedSgd, LrSchedule, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::harmonizer::autograd::{LossPair, Parameters, Scope, StepLosses};
use crate::networks::grl::{grl_coefficient, reverse_gradient};
use crate::networks::named_variables;
use crate::networks::heads::LinearClassifier;
use crate::networks::init::{linear, LayerInit};
use crate::networks::{Backbone, Dropout, ImageBackbone, NEW_LAYERS_GROUP};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// The harmonized pairs (see the module comment).
pub const PAIRS: &[super::PairDescription] = &[
    super::PairDescription { label: "transfer/cls", losses: "L1 = transfer loss (domain BCE), L2 = source cross-entropy", scope: "base network" },
    super::PairDescription { label: "gvbg/gvbd", losses: "L1 = GVB-G bridge loss, L2 = GVB-D bridge loss", scope: "base network" },
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    pub sgd: Sgd,
    pub lr_schedule: LrSchedule,
    /// Weight of the transfer loss (1).
    pub trade_off: f64,
    /// Weights of the generator and discriminator bridge magnitudes (1, 1).
    pub gvbg_weight: f64,
    pub gvbd_weight: f64,
    pub discriminator_hidden: i64,
    pub grl_max_iter: u64,
    /// Source and target in one forward pass (digits, ours) or two (images, as GVB's code).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub joint_forward: bool,
    /// The ResNet of the image protocol (absent on digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<ImageBackbone>,
    /// Learning-rate / weight-decay multipliers of backbone and new layers (images: lr x1 / x10).
    #[serde(default, skip_serializing_if = "GroupMultipliers::is_one")]
    pub multipliers: GroupMultipliers,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The GVB discriminator with its bridge output.
#[derive(Debug)]
struct BridgedDiscriminator {
    fc1: nn::Linear,
    fc2: nn::Linear,
    adversarial: nn::Linear,
    bridge: nn::Linear,
    dropout: Dropout,
}

impl BridgedDiscriminator {
    fn new(p: &nn::Path, input: i64, hidden: i64, dropout: Dropout) -> Self {
        let init = LayerInit::KaimingNormal;
        BridgedDiscriminator {
            fc1: linear(p / "fc1", input, hidden, init),
            fc2: linear(p / "fc2", hidden, hidden, init),
            adversarial: linear(p / "adversarial", hidden, 1, init),
            bridge: linear(p / "bridge", hidden, 1, init),
            dropout,
        }
    }

    /// (adversarial logit, bridge).
    fn forward(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let h = self.dropout.apply(&self.fc1.forward(xs).relu(), 0.5, train);
        let h = self.dropout.apply(&self.fc2.forward(&h).relu(), 0.5, train);
        (self.adversarial.forward(&h), self.bridge.forward(&h))
    }
}

pub struct Gvb {
    config: Config,
    iters_per_epoch: u64,
    stores: (nn::VarStore, nn::VarStore),
    backbone: Backbone,
    classifier: LinearClassifier,
    bridge: LinearClassifier,
    discriminator: BridgedDiscriminator,
    /// Training forwards of the discriminator so far (its GRL coefficient's counter).
    discriminator_forwards: u64,
    params: Parameters,
    scope: Scope,
    opt_base: GroupedSgd,
    opt_disc: GroupedSgd,
}

impl Gvb {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let mut base = nn::VarStore::new(setup.device);
        let disc = nn::VarStore::new(setup.device);
        let backbone = Backbone::build(&(base.root() / "backbone"), &setup.network, setup.dropout);
        let new_layers = base.root().set_group(NEW_LAYERS_GROUP);
        let classifier = LinearClassifier::new(&(&new_layers / "classifier"), backbone.features(), setup.classes, LayerInit::KaimingNormal);
        let bridge = LinearClassifier::new(&(&new_layers / "bridge"), backbone.features(), setup.classes, LayerInit::KaimingNormal);
        let discriminator = BridgedDiscriminator::new(&disc.root().set_group(NEW_LAYERS_GROUP), setup.classes, config.discriminator_hidden, setup.dropout);
        Backbone::load_pretrained(&mut base, "backbone.", &setup.network)?;
        let params = Parameters::from_stores(&[("base", &base), ("disc", &disc)]);
        let scope = params.scope("base network", &["base/"])?;
        let opt_base = config.sgd.build(&base, &config.multipliers)?;
        let opt_disc = config.sgd.build(&disc, &config.multipliers)?;
        Ok(Gvb {
            config,
            iters_per_epoch: setup.iters_per_epoch,
            stores: (base, disc),
            backbone,
            classifier,
            bridge,
            discriminator,
            discriminator_forwards: 0,
            params,
            scope,
            opt_base,
            opt_disc,
        })
    }

    fn logits(&self, images: &Tensor, train: bool) -> (Tensor, Tensor) {
        let f = self.backbone.forward_t(images, train);
        let focal = self.bridge.forward(&f);
        (self.classifier.forward(&f) - &focal, focal)
    }
}

impl UdaMethod for Gvb {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        let c = self.config.clone();
        apply_schedule(&mut [(&mut self.opt_base, c.sgd.lr, &c.lr_schedule), (&mut self.opt_disc, c.sgd.lr, &c.lr_schedule)], ctx.iteration, self.iters_per_epoch);
        self.opt_base.zero_grad();
        self.opt_disc.zero_grad();
        let ns = batch.source.size()[0];
        let (logits, focal) = if c.joint_forward {
            self.logits(&Tensor::cat(&[&batch.source, &batch.target], 0), true)
        } else {
            let (ls, fs) = self.logits(&batch.source, true);
            let (lt, ft) = self.logits(&batch.target, true);
            (Tensor::cat(&[ls, lt], 0), Tensor::cat(&[fs, ft], 0))
        };
        let probs = logits.softmax(1, Kind::Float);
        let cls = logits.narrow(0, 0, ns).cross_entropy_for_logits(&batch.labels);
        self.discriminator_forwards += 1;
        let disc_coeff = grl_coefficient(self.discriminator_forwards, c.grl_max_iter);
        let (adversarial, disc_bridge) = self.discriminator.forward(&reverse_gradient(&probs, disc_coeff), true);
        let entropy_coeff = grl_coefficient(ctx.iteration, c.grl_max_iter);
        let weights = reverse_gradient(&entropy_per_sample(&probs), entropy_coeff).neg().exp();
        let transfer = weighted_domain_bce(&(&adversarial - &disc_bridge).sigmoid(), &weights, ns, DomainBce::Epsilon);
        let gvbg = focal.abs().mean(Kind::Float);
        let gvbd = disc_bridge.abs().mean(Kind::Float);
        ctx.log_loss("cls", &cls);
        ctx.log_loss("transfer", &transfer);
        ctx.log_loss("gvbg", &gvbg);
        ctx.log_loss("gvbd", &gvbd);
        let pairs = vec![
            LossPair::new(&transfer, &cls, &self.scope).with_coefficients(c.trade_off, 1.0),
            LossPair::new(&gvbg, &gvbd, &self.scope).with_coefficients(c.gvbg_weight, c.gvbd_weight.abs()),
        ];
        ctx.backward(&self.params, &["transfer/cls", "gvbg/gvbd"], &StepLosses { pairs, unharmonized: None })?;
        self.opt_base.step();
        self.opt_disc.step();
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| vec![("c".to_owned(), self.logits(images, false).0)])
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        named_variables(&[("base", &self.stores.0), ("disc", &self.stores.1)])
    }

    fn learning_rates(&self) -> Vec<(String, f64)> {
        [self.opt_base.learning_rates("base"), self.opt_disc.learning_rates("disc")].concat()
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
        Ok(Box::new(Gvb::new(self.clone(), setup)?))
    }
}
