//! SSRT (safe self-refinement for transformer-based domain adaptation), as the paper runs it
//! (docs/design/protocols-images.md §1):
//! - ViT-B/16 backbone (networks/vit.rs), feature = CLS token after the final norm; bottleneck
//!   Linear(768→b) N(0, 0.005) bias 0.1 → BatchNorm1d → ReLU → Dropout(0.5); classifier and
//!   discriminator Linear(b→b) → ReLU → Dropout(0.5) → Linear(b→C or 1), N(0, 0.01), zero bias;
//! - one forward pass on cat(source, target); in training, the token sequence entering a block ℓ
//!   drawn from `sr_layers` ({0, 4, 8}) gets a perturbed copy of the target rows appended:
//!   y' = y + α_adap · stopgrad(partner − y), the partner being the mirror row of the reversed
//!   target batch (all tokens, CLS included), so the batch grows to 1.5x from block ℓ on;
//! - the discriminator sees the bottleneck output through a gradient reversal whose coefficient
//!   λ(k) = 2·0.1/(1 + exp(−k/1000)) − 0.1 follows the network's forward counter k, which advances
//!   on **every** forward, evaluation included (as released; our evaluation forwards the target
//!   test set only, in our evaluation batches, where the released code also forwards the source
//!   list in batches of 32: the counter's offsets differ, the rule is the same);
//! - losses: source cross-entropy; domain BCE over the clean source and target rows, x 2; the
//!   self-refinement loss, a confidence-masked KL divergence between the clean and perturbed target
//!   predictions in a direction drawn per iteration (KL(p‖p') masked by max p > 0.4, or KL(p'‖p)
//!   masked by max p' > 0.4; strict), with no stop-gradient on either side;
//! - safe training: the SR weight is 0.2·r(i) and the perturbation sr_alpha·r(i) (used from the
//!   next forward on), with the ramp r(i) = sin(((i − φ)/P)·π/2) until φ + P, then 1; the number of
//!   distinct predicted target classes is monitored per iteration and, every 1000 iterations,
//!   tested for a drop at five scales; a drop restarts the ramp (φ = i, P doubled when the last
//!   restart is within P) and asks for a restore at the next 1000-iteration boundary.
//!   The released snapshot aliases the live weights, so its "restore" changes nothing: the default
//!   `mode = "ramp-only"` reproduces that; `mode = "restore"` (a labelled variant) really restores
//!   the weights saved at the last boundary (optimiser state is not restored, as released).
//!
//! Digits (ours: the released code has none): the digits protocol's tensors, grey replicated to
//! RGB and resized bilinearly to the ViT's input inside the model.
//!
//! Harmonized pair: L1 = source cross-entropy, L2 = 2·domain BCE + 0.2·r·SR (the reverse of CDAN's
//! order), scope = the ViT backbone; the weights scale the whole model's gradients (the default
//! outside-scope rule, as released). Nesterov SGD, weight decay on every parameter, learning rate
//! x0.1 on the backbone, inv schedule.

use super::common::{apply_schedule, GroupMultipliers, GroupedSgd, LrSchedule, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::harmonizer::autograd::{LossPair, Parameters, Scope, StepLosses};
use crate::networks::grl::reverse_gradient;
use crate::networks::init::{batch_norm1d, linear, LayerInit};
use crate::networks::vit::{Vit, VitBackbone};
use crate::networks::{named_variables, Dropout, Network, NEW_LAYERS_GROUP};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use tch::nn::{self, Module};
use tch::{Device, Kind, Reduction, Tensor};

mod safe_training;
pub use safe_training::{chunk_means, SafeTraining, SafeTrainingConfig, SafeTrainingMode};

/// The harmonized pair (see the module comment).
pub const PAIRS: &[super::PairDescription] = &[super::PairDescription {
    label: "cls/adaptation",
    losses: "L1 = source cross-entropy, L2 = 2 x domain BCE + 0.2 x r x SR",
    scope: "ViT backbone",
}];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    pub sgd: Sgd,
    pub lr_schedule: LrSchedule,
    /// Learning rate x0.1 on the backbone, x1 on the heads (weight decay x1 on all).
    pub multipliers: GroupMultipliers,
    /// Bottleneck width b, also the hidden width of the classifier and discriminator.
    pub bottleneck: i64,
    pub sr_alpha: f64,
    /// Blocks whose input may be perturbed (0: after the embedding).
    pub sr_layers: Vec<usize>,
    pub sr_loss_weight: f64,
    /// Confidence threshold of the SR mask (strict >).
    pub sr_epsilon: f64,
    /// Probability of the KL(p‖p') direction.
    pub sr_loss_p: f64,
    /// Weight of the domain loss (applied to 2 x BCE, as released).
    pub domain_loss_weight: f64,
    pub safe_training: SafeTrainingConfig,
    /// The reversal's coefficient: 2·high/(1 + exp(−k/max_iter)) − high.
    pub grl_high: f64,
    pub grl_max_iter: f64,
    pub vit: VitBackbone,
}

/// Linear(b→b) → ReLU → Dropout(0.5) → Linear(b→out), N(0, 0.01) weights, zero biases.
#[derive(Debug)]
struct Head {
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout: Dropout,
}

impl Head {
    fn new(p: nn::Path, width: i64, outputs: i64, dropout: Dropout) -> Head {
        let init = LayerInit::Normal { std: 0.01, bias: 0.0 };
        Head { fc1: linear(&p / "fc1", width, width, init), fc2: linear(&p / "fc2", width, outputs, init), dropout }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.fc2.forward(&self.dropout.apply(&self.fc1.forward(x).relu(), 0.5, train))
    }
}

pub struct Ssrt {
    config: Config,
    iters_per_epoch: u64,
    store: nn::VarStore,
    vit: Vit,
    bottleneck: nn::Linear,
    bottleneck_bn: nn::BatchNorm,
    classifier: Head,
    discriminator: Head,
    dropout: Dropout,
    /// Forwards of the network so far, evaluation included (the reversal's counter).
    forwards: Cell<u64>,
    /// The perturbation magnitude of the next forward (sr_alpha x the last ramp).
    alpha_adap: f64,
    safe: SafeTraining,
    snapshot: Option<Vec<(String, Tensor)>>,
    params: Parameters,
    scope: Scope,
    opt: GroupedSgd,
}

impl Ssrt {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let Network::Vit { backbone, weights } = &setup.network else {
            bail!("SSRT needs a ViT backbone (its configuration's `vit`), got {:?}", setup.network);
        };
        if let Some(bad) = config.sr_layers.iter().find(|&&l| l >= backbone.config.depth as usize) {
            bail!("sr_layers holds {bad}, but the ViT has {} blocks (0..{})", backbone.config.depth, backbone.config.depth - 1);
        }
        if config.sr_layers.is_empty() {
            bail!("sr_layers is empty: SSRT perturbs the input of one of these blocks");
        }
        let mut store = nn::VarStore::new(setup.device);
        let vit = Vit::new(&(store.root() / "backbone"), backbone.config);
        let heads = store.root().set_group(NEW_LAYERS_GROUP);
        let b = config.bottleneck;
        let bottleneck = linear(&heads / "bottleneck" / "fc", vit.features(), b, LayerInit::Normal { std: 0.005, bias: 0.1 });
        let bottleneck_bn = batch_norm1d(&heads / "bottleneck" / "bn", b);
        let classifier = Head::new(&heads / "classifier", b, setup.classes, setup.dropout);
        let discriminator = Head::new(&heads / "discriminator", b, 1, setup.dropout);
        if backbone.pretrained {
            match weights {
                Some(path) => Vit::load_strict(&mut store, "backbone.", path)?,
                None => bail!("the ViT backbone is pretrained but no weights file was given (fetch it with `data-fetch fetch {}`)", backbone.weights.dataset()),
            }
        }
        let params = Parameters::from_stores(&[("model", &store)]);
        let scope = params.scope("ViT backbone", &["model/backbone."])?;
        let opt = config.sgd.build(&store, &config.multipliers)?;
        Ok(Ssrt {
            alpha_adap: config.sr_alpha,
            safe: SafeTraining::new(config.safe_training),
            config,
            iters_per_epoch: setup.iters_per_epoch,
            store,
            vit,
            bottleneck,
            bottleneck_bn,
            classifier,
            discriminator,
            dropout: setup.dropout,
            forwards: Cell::new(0),
            snapshot: None,
            params,
            scope,
            opt,
        })
    }

    /// Forwards of the network so far (training and evaluation): the reversal's counter k.
    pub fn forwards(&self) -> u64 {
        self.forwards.get()
    }

    /// The safe-training monitor (inspected and driven by tests).
    pub fn safe_training(&mut self) -> &mut SafeTraining {
        &mut self.safe
    }

    /// The window-boundary work at the start of iteration `i`: the restore a drop asked for (the
    /// `restore` variant copies the saved weights back; as released nothing changes), then a new
    /// snapshot (kept only by the `restore` variant: the released one aliases the live weights).
    pub fn begin_iteration(&mut self, i: u64) {
        let (restore, snapshot) = self.safe.begin(i);
        if restore && self.config.safe_training.mode == SafeTrainingMode::Restore {
            self.restore_snapshot();
        }
        if snapshot {
            self.snapshot = match self.config.safe_training.mode {
                SafeTrainingMode::Restore => Some(self.store.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()),
                SafeTrainingMode::RampOnly => None,
            };
        }
    }

    /// λ(k) of the reversal.
    pub fn grl_coefficient(&self, k: u64) -> f64 {
        let h = self.config.grl_high;
        2.0 * h / (1.0 + (-(k as f64) / self.config.grl_max_iter).exp()) - h
    }

    /// (class logits, domain logits) of `images`; in training, the target rows (after `ns` source
    /// rows) are perturbed at the input of block `layer` and appended.
    fn forward(&self, images: &Tensor, ns: i64, layer: Option<usize>, train: bool) -> (Tensor, Tensor) {
        let mut tokens = self.vit.embed(&self.adapt(images));
        for i in 0..self.vit.depth() {
            if layer == Some(i) {
                tokens = perturb(&tokens, ns, self.alpha_adap);
            }
            tokens = self.vit.block(i, &tokens);
        }
        let f = self.vit.head(&tokens);
        let z = self.dropout.apply(&self.bottleneck.forward(&f).apply_t(&self.bottleneck_bn, train).relu(), 0.5, train);
        let logits = self.classifier.forward(&z, train);
        let k = self.forwards.get() + 1;
        self.forwards.set(k);
        let domain = self.discriminator.forward(&reverse_gradient(&z, self.grl_coefficient(k)), train);
        (logits, domain)
    }

    /// Digits (ours): grey replicated to three channels, resized bilinearly to the ViT's input.
    /// Images of the image protocols pass unchanged.
    fn adapt(&self, images: &Tensor) -> Tensor {
        let side = self.vit.config().image;
        let (n, c, h, w) = images.size4().expect("N×C×H×W images");
        let rgb = if c == 1 { images.expand([n, 3, h, w], false) } else { images.shallow_clone() };
        if h == side && w == side {
            rgb
        } else {
            rgb.upsample_bilinear2d([side, side], false, None, None)
        }
    }

    fn restore_snapshot(&mut self) {
        if let Some(saved) = &self.snapshot {
            let vars = self.store.variables();
            tch::no_grad(|| {
                for (name, value) in saved {
                    vars[name].shallow_clone().copy_(value);
                }
            });
        }
    }
}

/// Appends y + alpha·stopgrad(partner − y) for the target rows (after `ns`), partner = the
/// mirror row of the reversed target batch.
pub fn perturb(tokens: &Tensor, ns: i64, alpha: f64) -> Tensor {
    let nt = tokens.size()[0] - ns;
    let target = tokens.narrow(0, ns, nt);
    let partner = target.flip([0]);
    let moved = &target + (partner - &target).detach() * alpha;
    Tensor::cat(&[tokens, &moved], 0)
}

/// Σ m·KL(p‖q) / (Σ m + 1e-6) over rows, with m = [max p > epsilon] (no stop-gradient).
pub fn masked_kl(log_p: &Tensor, log_q: &Tensor, epsilon: f64) -> Tensor {
    let p = log_p.exp();
    let kl = (&p * (log_p - log_q)).sum_dim_intlist([1i64].as_slice(), false, log_p.kind());
    let mask = p.detach().amax([1i64].as_slice(), false).gt(epsilon).to_kind(log_p.kind());
    (kl * &mask).sum(log_p.kind()) / (mask.sum(log_p.kind()) + 1e-6)
}

/// One draw from torch's CPU generator (the run's seed): uniform in [0, 1).
fn uniform() -> f64 {
    Tensor::rand([1], (Kind::Double, Device::Cpu)).double_value(&[0])
}

impl UdaMethod for Ssrt {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        let i = ctx.iteration;
        self.begin_iteration(i);
        let c = self.config.clone();
        apply_schedule(&mut [(&mut self.opt, c.sgd.lr, &c.lr_schedule)], i, self.iters_per_epoch);
        self.opt.zero_grad();
        let (ns, nt) = (batch.source.size()[0], batch.target.size()[0]);
        let layer = c.sr_layers[((uniform() * c.sr_layers.len() as f64) as usize).min(c.sr_layers.len() - 1)];
        let (logits, domain) = self.forward(&Tensor::cat(&[&batch.source, &batch.target], 0), ns, Some(layer), true);
        let cls = logits.narrow(0, 0, ns).cross_entropy_for_logits(&batch.labels);
        let opts = (Kind::Float, domain.device());
        let domain_labels = Tensor::cat(&[Tensor::ones([ns], opts), Tensor::zeros([nt], opts)], 0);
        let bce = domain.narrow(0, 0, ns + nt).squeeze_dim(1).binary_cross_entropy_with_logits::<Tensor>(&domain_labels, None, None, Reduction::Mean);
        let log_clean = logits.narrow(0, ns, nt).log_softmax(1, Kind::Float);
        let log_perturbed = logits.narrow(0, ns + nt, nt).log_softmax(1, Kind::Float);
        let sr = if uniform() <= c.sr_loss_p {
            masked_kl(&log_clean, &log_perturbed, c.sr_epsilon)
        } else {
            masked_kl(&log_perturbed, &log_clean, c.sr_epsilon)
        };
        let r = self.safe.ramp(i);
        let adaptation = &bce * (2.0 * c.domain_loss_weight) + &sr * (c.sr_loss_weight * r);
        ctx.log_loss("cls", &cls);
        ctx.log_loss("domain", &bce);
        ctx.log_loss("sr", &sr);
        ctx.log_loss("ramp", &Tensor::from(r));
        let pair = LossPair::new(&cls, &adaptation, &self.scope);
        ctx.backward(&self.params, &["cls/adaptation"], &StepLosses { pairs: vec![pair], unharmonized: None })?;
        self.opt.step();
        // The monitor: distinct predicted classes of the clean target rows.
        let predicted = log_clean.detach().argmax(1, false);
        let diversity = predicted.unique_dim(0, false, false, false).0.size()[0] as f64;
        self.safe.record(i, diversity, r);
        self.alpha_adap = c.sr_alpha * r;
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| vec![("c".to_owned(), self.forward(images, images.size()[0], None, false).0)])
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        named_variables(&[("model", &self.store)])
    }

    fn learning_rates(&self) -> Vec<(String, f64)> {
        self.opt.learning_rates("model")
    }
}

impl super::MethodSpec for Config {
    fn batch(&self) -> usize {
        self.batch
    }
    fn vit_backbone(&self) -> Option<crate::networks::vit::VitBackbone> {
        Some(self.vit)
    }
    fn deviations(&self, task: &crate::data::Task) -> Vec<String> {
        let mut out = vec![
            "ssrt: the reversal's counter advances on our evaluation forwards (target test set, our evaluation batches); the released code also forwards the source list, in batches of 32"
                .to_owned(),
        ];
        if matches!(task, crate::data::Task::Digits(_)) {
            out.push("ssrt on digits: our protocol (the released code has none): Office-31's settings, inputs replicated to RGB and resized to the ViT's side".into());
        }
        if self.safe_training.mode == SafeTrainingMode::Restore {
            out.push("ssrt: safe training restores the weights on a drop (our variant; as released the restore is a no-op)".into());
        }
        out
    }
    fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>> {
        Ok(Box::new(Ssrt::new(self.clone(), setup)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_perturbation_mixes_toward_the_mirror_partner_and_grows_the_batch() {
        // 2 source rows, 4 target rows, 1 token of width 1.
        let tokens = Tensor::from_slice(&[10.0f32, 20.0, 1.0, 2.0, 3.0, 4.0]).view([6, 1, 1]);
        let out = perturb(&tokens, 2, 0.5);
        assert_eq!(out.size(), vec![10, 1, 1], "1.5x... of the target rows appended");
        let appended: Vec<f32> = Vec::try_from(out.narrow(0, 6, 4).flatten(0, -1)).unwrap();
        // y + 0.5 (partner - y): partners of 1, 2, 3, 4 are 4, 3, 2, 1.
        assert_eq!(appended, vec![2.5, 2.5, 2.5, 2.5]);
        let kept: Vec<f32> = Vec::try_from(out.narrow(0, 0, 6).flatten(0, -1)).unwrap();
        assert_eq!(kept, vec![10.0, 20.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn the_kl_mask_is_strictly_above_the_threshold() {
        // Row 0: max p = 0.4 exactly (masked out); row 1: max p = 0.7 (kept).
        let p = Tensor::from_slice(&[0.4f64, 0.3, 0.3, 0.7, 0.2, 0.1]).view([2, 3]);
        let q = Tensor::from_slice(&[0.2f64, 0.4, 0.4, 0.5, 0.25, 0.25]).view([2, 3]);
        let loss = masked_kl(&p.log(), &q.log(), 0.4).double_value(&[]);
        let row1: f64 = [(0.7f64, 0.5f64), (0.2, 0.25), (0.1, 0.25)].iter().map(|(a, b)| a * (a / b).ln()).sum();
        assert!((loss - row1 / (1.0 + 1e-6)).abs() < 1e-9, "{loss} vs {row1}");
    }
}
