//! CDAN+E (conditional adversarial domain adaptation with entropy conditioning), as the paper runs
//! it (docs/design/protocols.md, "CDAN", and on digits "CDAN on digits", the CDAN authors' own digits script):
//! - features f = G(x), logits = C(f); source and target forwarded together (digits) or
//!   separately (images: batch norm sees each domain alone);
//! - conditioning on the (detached) softmax p: the outer product p ⊗ f flattened class-major
//!   (digits default, `conditioning = { kind = "outer" }`), or the random multilinear map
//!   `(f Rf) ⊙ (p Rp) / sqrt(d)` with fixed Gaussian Rf, Rp (`{ kind = "random", dim = d }`);
//! - discriminator d-h-ReLU-Drop-h-ReLU-Drop-1 with a sigmoid, behind a gradient-reversal layer
//!   whose coefficient 2/(1+exp(−10 k/max_iter)) − 1 follows the discriminator's own forward
//!   counter k (1 on its first forward), as CDAN's `AdversarialNetwork` does;
//! - transfer loss: domain BCE (`nn.BCELoss`) weighted by 1 + exp(−H), H passed through a reversal
//!   with the coefficient of the training iteration i, normalised within source and within target;
//! - the first `source_only_epochs` epochs train the source cross-entropy alone (digits: one); the
//!   discriminator neither runs nor steps then.
//!
//! Harmonized pair: L1 = transfer loss, L2 = source cross-entropy, scope = the base network
//! (G + C). Total `trade_off·w1·L1 + w2·L2`: the trade-off is applied after harmonizing.
//!
//! Image protocol (docs/design/protocols.md, docs/design/protocols-images.md §4): ResNet-50/101 (ImageNet weights) to
//! 2048, a linear bottleneck 2048→256 (no activation), classifier 256→C; the discriminator sees
//! the random multilinear map to 1024 of (bottleneck features, softmax); source and target
//! forwarded separately; Nesterov SGD with the inv schedule on both optimisers, learning rate x1
//! on the backbone and x10 on the bottleneck, classifier and discriminator.
//!
//! Initialisation (networks/init.rs): digits backbone and classifier PyTorch defaults (CDAN's
//! LeNet sets none), discriminator xavier-normal weights with zero biases (CDAN's `init_weights`).
//! Images: the ResNet from its ImageNet weights; bottleneck and classifier xavier-normal with zero
//! biases (ours: docs/design/protocols.md is silent; CDAN's `init_weights`, as for its discriminator).

use super::common::{apply_schedule, backward, entropy_per_sample, weighted_domain_bce, DomainBce, GroupMultipliers, GroupedSgd, LrSchedule, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::harmonizer::autograd::{LossPair, Parameters, Scope, StepLosses};
use crate::networks::grl::{grl_coefficient, reverse_gradient};
use crate::networks::named_variables;
use crate::networks::heads::{DomainDiscriminator, LinearClassifier};
use crate::networks::init::{linear, LayerInit};
use crate::networks::{Backbone, ImageBackbone, NEW_LAYERS_GROUP};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// What the discriminator is conditioned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Conditioning {
    /// The outer product softmax ⊗ features (classes × features inputs).
    Outer,
    /// The random multilinear map to `dim` inputs.
    Random { dim: i64 },
}

/// The harmonized pair (see the module comment).
pub const PAIRS: &[super::PairDescription] = &[super::PairDescription {
    label: "transfer/cls",
    losses: "L1 = transfer loss (entropy-weighted domain BCE), L2 = source cross-entropy",
    scope: "base network (backbone, bottleneck, classifier)",
}];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    /// One SGD setting for the base network and (as its own optimiser) the discriminator.
    pub sgd: Sgd,
    /// The base network's learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// The discriminator's (CDAN's digits script keeps it fixed; its image script uses inv).
    pub discriminator_lr_schedule: LrSchedule,
    /// Weight of the transfer loss, applied after harmonizing (1 in the paper).
    pub trade_off: f64,
    pub conditioning: Conditioning,
    /// Hidden width of the discriminator (digits 500, images 1024).
    pub discriminator_hidden: i64,
    /// `max_iter` of the GRL coefficient schedule (10000).
    pub grl_max_iter: u64,
    /// Epochs at the start that train the source cross-entropy only (digits: 1).
    pub source_only_epochs: u64,
    /// Source and target in one forward pass (digits) instead of two (images).
    pub joint_forward: bool,
    /// The ResNet of the image protocol (absent on digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<ImageBackbone>,
    /// Width of the linear bottleneck between features and classifier (images: 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<i64>,
    /// Learning-rate / weight-decay multipliers of backbone and new layers (images: lr x1 / x10).
    #[serde(default, skip_serializing_if = "GroupMultipliers::is_one")]
    pub multipliers: GroupMultipliers,
}

pub struct Cdan {
    config: Config,
    iters_per_epoch: u64,
    stores: (nn::VarStore, nn::VarStore),
    backbone: Backbone,
    bottleneck: Option<nn::Linear>,
    classifier: LinearClassifier,
    discriminator: DomainDiscriminator,
    /// Rf, Rp of the random multilinear map (undefined for outer-product conditioning).
    random_matrices: Option<(Tensor, Tensor)>,
    /// Training forwards of the discriminator so far (its GRL coefficient's counter).
    discriminator_forwards: u64,
    params: Parameters,
    scope: Scope,
    opt_base: GroupedSgd,
    opt_disc: GroupedSgd,
}

impl Cdan {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let mut base = nn::VarStore::new(setup.device);
        let disc = nn::VarStore::new(setup.device);
        let backbone = Backbone::build(&(base.root() / "backbone"), &setup.network, setup.dropout);
        let new_layers = base.root().set_group(NEW_LAYERS_GROUP);
        let head_init = if setup.network.is_image() { LayerInit::XavierNormal } else { LayerInit::PyTorchDefault };
        let bottleneck = config.bottleneck.map(|width| linear(&new_layers / "bottleneck", backbone.features(), width, head_init));
        let features = config.bottleneck.unwrap_or(backbone.features());
        let classifier = LinearClassifier::new(&(&new_layers / "classifier"), features, setup.classes, head_init);
        let (input, random_matrices) = match config.conditioning {
            Conditioning::Outer => (features * setup.classes, None),
            Conditioning::Random { dim } => {
                let opts = (Kind::Float, setup.device);
                (dim, Some((Tensor::randn([features, dim], opts), Tensor::randn([setup.classes, dim], opts))))
            }
        };
        let discriminator = DomainDiscriminator::new(&disc.root().set_group(NEW_LAYERS_GROUP), input, config.discriminator_hidden, LayerInit::XavierNormal, setup.dropout);
        Backbone::load_pretrained(&mut base, "backbone.", &setup.network)?;
        let params = Parameters::from_stores(&[("base", &base), ("disc", &disc)]);
        let scope = params.scope("base network", &["base/"])?;
        let opt_base = config.sgd.build(&base, &config.multipliers)?;
        let opt_disc = config.sgd.build(&disc, &config.multipliers)?;
        Ok(Cdan {
            config,
            iters_per_epoch: setup.iters_per_epoch,
            stores: (base, disc),
            backbone,
            bottleneck,
            classifier,
            discriminator,
            random_matrices,
            discriminator_forwards: 0,
            params,
            scope,
            opt_base,
            opt_disc,
        })
    }

    /// Features (after the bottleneck, if any) of a batch.
    fn features(&self, images: &Tensor, train: bool) -> Tensor {
        let f = self.backbone.forward_t(images, train);
        match &self.bottleneck {
            Some(b) => b.forward(&f),
            None => f,
        }
    }

    /// The discriminator's input for features `f` and (detached) softmax `p`.
    fn conditioned(&self, f: &Tensor, p: &Tensor) -> Tensor {
        match &self.random_matrices {
            None => {
                let n = f.size()[0];
                p.unsqueeze(2).bmm(&f.unsqueeze(1)).view([n, -1])
            }
            Some((rf, rp)) => f.mm(rf) * p.mm(rp) / (rf.size()[1] as f64).sqrt(),
        }
    }
}

impl UdaMethod for Cdan {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        let c = &self.config;
        apply_schedule(
            &mut [(&mut self.opt_base, c.sgd.lr, &c.lr_schedule), (&mut self.opt_disc, c.sgd.lr, &c.discriminator_lr_schedule)],
            ctx.iteration,
            self.iters_per_epoch,
        );
        self.opt_base.zero_grad();
        self.opt_disc.zero_grad();
        let ns = batch.source.size()[0];
        let features = if c.joint_forward {
            self.features(&Tensor::cat(&[&batch.source, &batch.target], 0), true)
        } else {
            Tensor::cat(&[self.features(&batch.source, true), self.features(&batch.target, true)], 0)
        };
        let logits = self.classifier.forward(&features);
        let cls = logits.narrow(0, 0, ns).cross_entropy_for_logits(&batch.labels);
        ctx.log_loss("cls", &cls);
        if ctx.iteration / self.iters_per_epoch.max(1) < c.source_only_epochs {
            backward(&cls)?;
            self.opt_base.step();
            return Ok(());
        }
        let probs = logits.softmax(1, Kind::Float);
        self.discriminator_forwards += 1;
        let disc_coeff = grl_coefficient(self.discriminator_forwards, c.grl_max_iter);
        let conditioned = self.conditioned(&features, &probs.detach());
        let domain_probs = self.discriminator.forward_t(&reverse_gradient(&conditioned, disc_coeff), true).sigmoid();
        let entropy_coeff = grl_coefficient(ctx.iteration, c.grl_max_iter);
        let weights = reverse_gradient(&entropy_per_sample(&probs), entropy_coeff).neg().exp() + 1.0;
        let transfer = weighted_domain_bce(&domain_probs, &weights, ns, DomainBce::Clamped);
        ctx.log_loss("transfer", &transfer);
        let pair = LossPair::new(&transfer, &cls, &self.scope).with_coefficients(c.trade_off, 1.0);
        ctx.backward(&self.params, &["transfer/cls"], &StepLosses { pairs: vec![pair], unharmonized: None })?;
        self.opt_base.step();
        self.opt_disc.step();
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| vec![("c".to_owned(), self.classifier.forward(&self.features(images, false)))])
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = named_variables(&[("base", &self.stores.0), ("disc", &self.stores.1)]);
        if let Some((rf, rp)) = &self.random_matrices {
            out.push(("fixed/random_features".into(), rf.shallow_clone()));
            out.push(("fixed/random_probs".into(), rp.shallow_clone()));
        }
        out
    }

    fn learning_rates(&self) -> Vec<(String, f64)> {
        [self.opt_base.learning_rates("base"), self.opt_disc.learning_rates("disc")].concat()
    }
}

impl super::MethodSpec for Config {
    fn batch(&self) -> usize {
        self.batch
    }
    fn warmup_epochs(&self) -> u64 {
        self.source_only_epochs
    }
    fn image_backbone(&self) -> Option<crate::networks::ImageBackbone> {
        self.backbone
    }
    fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>> {
        Ok(Box::new(Cdan::new(self.clone(), setup)?))
    }
}
