//! CDAN+E (conditional adversarial domain adaptation with entropy conditioning), as the paper runs
//! it (protocols.md, "CDAN"):
//! - features f = G(x) (source and target forwarded separately), logits = C(f);
//! - random multilinear map (always on): `(f Rf) ⊙ (softmax(logits)ᵀ Rp) / sqrt(d)` with fixed
//!   Gaussian Rf, Rp (the softmax enters detached);
//! - discriminator d-d-ReLU-Drop-d-ReLU-Drop-1 behind a gradient-reversal layer with the
//!   coefficient 2/(1+exp(−10 i/max_iter)) − 1;
//! - transfer loss: domain BCE weighted by 1 + exp(−H) (H passed through the same reversal),
//!   normalised within source and within target.
//!
//! Harmonized pair: L1 = transfer loss, L2 = source cross-entropy, scope = the base network
//! (G + C). Total `trade_off·w1·L1 + w2·L2`: the trade-off is applied after harmonizing.

use super::common::{apply_schedule, entropy_per_sample, weighted_domain_bce, LrSchedule, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::harmonizer::autograd::{LossPair, Parameters, Scope, StepLosses};
use crate::networks::grl::{grl_coefficient, reverse_gradient};
use crate::networks::heads::{DomainDiscriminator, LinearClassifier};
use crate::networks::Backbone;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    /// One SGD setting for the base network and the discriminator.
    pub sgd: Sgd,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Weight of the transfer loss, applied after harmonizing (1 in the paper).
    pub trade_off: f64,
    /// Output size of the random multilinear map (1024).
    pub random_dim: i64,
    /// Hidden width of the discriminator (1024).
    pub discriminator_hidden: i64,
    /// `max_iter` of the GRL coefficient schedule (10000).
    pub grl_max_iter: u64,
}

pub struct Cdan {
    config: Config,
    _stores: (nn::VarStore, nn::VarStore),
    backbone: Backbone,
    classifier: LinearClassifier,
    discriminator: DomainDiscriminator,
    random_features: Tensor,
    random_probs: Tensor,
    params: Parameters,
    scope: Scope,
    opt_base: nn::Optimizer,
    opt_disc: nn::Optimizer,
}

impl Cdan {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let base = nn::VarStore::new(setup.device);
        let disc = nn::VarStore::new(setup.device);
        let backbone = Backbone::for_format(&(base.root() / "backbone"), setup.format);
        let classifier = LinearClassifier::new(&(base.root() / "classifier"), backbone.features(), setup.classes);
        let discriminator = DomainDiscriminator::new(&disc.root(), config.random_dim, config.discriminator_hidden);
        let opts = (Kind::Float, setup.device);
        let random_features = Tensor::randn([backbone.features(), config.random_dim], opts);
        let random_probs = Tensor::randn([setup.classes, config.random_dim], opts);
        let params = Parameters::from_stores(&[("base", &base), ("disc", &disc)]);
        let scope = params.scope("base network", &["base/"])?;
        let opt_base = config.sgd.build(&base)?;
        let opt_disc = config.sgd.build(&disc)?;
        Ok(Cdan { config, _stores: (base, disc), backbone, classifier, discriminator, random_features, random_probs, params, scope, opt_base, opt_disc })
    }
}

impl UdaMethod for Cdan {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        let lr = self.config.sgd.lr;
        apply_schedule(&mut [(&mut self.opt_base, lr), (&mut self.opt_disc, lr)], &self.config.lr_schedule, ctx.iteration);
        self.opt_base.zero_grad();
        self.opt_disc.zero_grad();
        let ns = batch.source.size()[0];
        let fs = self.backbone.forward_t(&batch.source, true);
        let ft = self.backbone.forward_t(&batch.target, true);
        let features = Tensor::cat(&[&fs, &ft], 0);
        let logits = self.classifier.forward(&features);
        let probs = logits.softmax(1, Kind::Float);
        let cls = logits.narrow(0, 0, ns).cross_entropy_for_logits(&batch.labels);
        let coeff = grl_coefficient(ctx.iteration, self.config.grl_max_iter);
        let mapped = features.mm(&self.random_features) * probs.detach().mm(&self.random_probs) / (self.config.random_dim as f64).sqrt();
        let domain_logits = self.discriminator.forward_t(&reverse_gradient(&mapped, coeff), true);
        let weights = reverse_gradient(&entropy_per_sample(&probs), coeff).neg().exp() + 1.0;
        let transfer = weighted_domain_bce(&domain_logits, &weights, ns);
        ctx.log_loss("cls", &cls);
        ctx.log_loss("transfer", &transfer);
        let pair = LossPair::new(&transfer, &cls, &self.scope).with_coefficients(self.config.trade_off, 1.0);
        ctx.backward(&self.params, &["transfer/cls"], &StepLosses { pairs: vec![pair], extra: None })?;
        self.opt_base.step();
        self.opt_disc.step();
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| vec![("c".to_owned(), self.classifier.forward(&self.backbone.forward_t(images, false)))])
    }
}
