//! Pieces several baselines share: optimiser settings, learning-rate schedules, entropies and the
//! entropy-conditioned domain loss of CDAN+E and GVB-GD.

use crate::networks::BACKBONE_GROUP;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Reduction, Tensor};

/// SGD settings of one optimiser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sgd {
    pub lr: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub nesterov: bool,
}

impl Sgd {
    /// One optimiser over `vs`, one parameter group per group its variables are in, each with
    /// its multipliers (all 1 by default).
    pub fn build(&self, vs: &nn::VarStore, multipliers: &GroupMultipliers) -> Result<GroupedSgd> {
        GroupedSgd::new(self, vs, multipliers)
    }
}

/// Multipliers of the base learning rate and weight decay for the pretrained backbone's
/// parameters and for the layers trained from scratch (CDAN / GVB on images: lr x1 and x10).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multipliers {
    pub backbone: f64,
    pub new_layers: f64,
}

impl Default for Multipliers {
    fn default() -> Self {
        Multipliers { backbone: 1.0, new_layers: 1.0 }
    }
}

impl Multipliers {
    pub fn is_one(&self) -> bool {
        *self == Multipliers::default()
    }

    /// The multiplier of optimiser group `group` ([`BACKBONE_GROUP`] or [`NEW_LAYERS_GROUP`]).
    pub fn of(&self, group: usize) -> f64 {
        if group == BACKBONE_GROUP {
            self.backbone
        } else {
            self.new_layers
        }
    }
}

/// The learning-rate and weight-decay multipliers of a method's parameter groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMultipliers {
    #[serde(default)]
    pub lr: Multipliers,
    #[serde(default)]
    pub weight_decay: Multipliers,
}

impl GroupMultipliers {
    pub fn is_one(&self) -> bool {
        self.lr.is_one() && self.weight_decay.is_one()
    }
}

/// SGD over the variables of one store, with a parameter group per optimiser group the store's
/// variables belong to (networks::BACKBONE_GROUP, networks::NEW_LAYERS_GROUP). Setting the learning
/// rate sets every group's to the base rate times the group's multiplier; the rates set are kept
/// so that tests can read them back.
pub struct GroupedSgd {
    opt: nn::Optimizer,
    /// (group, learning-rate multiplier, current learning rate).
    groups: Vec<(usize, f64, f64)>,
    /// Each trainable variable's name and group.
    members: Vec<(String, usize)>,
}

impl GroupedSgd {
    pub fn new(sgd: &Sgd, vs: &nn::VarStore, multipliers: &GroupMultipliers) -> Result<GroupedSgd> {
        let mut opt = nn::Sgd { momentum: sgd.momentum, dampening: 0.0, wd: sgd.weight_decay, nesterov: sgd.nesterov }.build(vs, sgd.lr)?;
        let members = variable_groups(vs);
        let mut present: Vec<usize> = members.iter().map(|(_, g)| *g).collect();
        present.sort_unstable();
        present.dedup();
        let mut groups = Vec::new();
        for g in present {
            let lr = sgd.lr * multipliers.lr.of(g);
            opt.set_lr_group(g, lr);
            opt.set_weight_decay_group(g, sgd.weight_decay * multipliers.weight_decay.of(g));
            groups.push((g, multipliers.lr.of(g), lr));
        }
        Ok(GroupedSgd { opt, groups, members })
    }

    /// Sets each group's learning rate to `base` times its multiplier.
    pub fn set_lr(&mut self, base: f64) {
        for (g, mult, current) in &mut self.groups {
            *current = base * *mult;
            self.opt.set_lr_group(*g, *current);
        }
    }

    pub fn zero_grad(&mut self) {
        self.opt.zero_grad();
    }

    pub fn step(&mut self) {
        self.opt.step();
    }

    /// Every trainable variable's current learning rate, named `<label>/<variable path>`.
    pub fn learning_rates(&self, label: &str) -> Vec<(String, f64)> {
        self.members
            .iter()
            .map(|(name, g)| (format!("{label}/{name}"), self.groups.iter().find(|(h, _, _)| h == g).map(|(_, _, lr)| *lr).unwrap_or(f64::NAN)))
            .collect()
    }
}

/// The optimiser group of each trainable variable of `vs`, by name.
fn variable_groups(vs: &nn::VarStore) -> Vec<(String, usize)> {
    let vars = vs.variables_.lock().unwrap();
    let mut out: Vec<(String, usize)> = vars
        .named_variables
        .iter()
        .filter_map(|(name, t)| vars.trainable_variables.iter().find(|v| v.tensor.data_ptr() == t.data_ptr()).map(|v| (name.clone(), v.group)))
        .collect();
    out.sort();
    out
}

/// How the learning rate evolves with the iteration `i` (0-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    #[default]
    Fixed,
    /// `lr0 · (1 + gamma·i)^(−power)` (CDAN, GVB, SSRT: gamma 0.001, power 0.75).
    Inv { gamma: f64, power: f64 },
    /// Multiplied by `gamma` at the start of every epoch `e` (1-based) with `e mod every = 0`,
    /// cumulatively: `lr0 · gamma^floor(e / every)` (CDAN's digits script: gamma 0.5, every 5 for
    /// M→U and 6 for U→M).
    EpochStep { every: u64, gamma: f64 },
}

impl LrSchedule {
    /// The factor on the base learning rate at iteration `iteration` of a run with
    /// `iters_per_epoch` iterations per epoch.
    pub fn factor(&self, iteration: u64, iters_per_epoch: u64) -> f64 {
        match *self {
            LrSchedule::Fixed => 1.0,
            LrSchedule::Inv { gamma, power } => (1.0 + gamma * iteration as f64).powf(-power),
            LrSchedule::EpochStep { every, gamma } => {
                let epoch = iteration / iters_per_epoch.max(1) + 1;
                gamma.powi((epoch / every.max(1)) as i32)
            }
        }
    }
}

/// Sets the learning rate of every optimiser to its base rate times its schedule's factor (times
/// each group's multiplier).
pub fn apply_schedule(optimizers: &mut [(&mut GroupedSgd, f64, &LrSchedule)], iteration: u64, iters_per_epoch: u64) {
    for (opt, base, schedule) in optimizers.iter_mut() {
        opt.set_lr(*base * schedule.factor(iteration, iters_per_epoch));
    }
}

/// Shannon entropy of each row of probabilities, `−Σ p log(p + 1e-5)` (CDAN's and GVB's form).
pub fn entropy_per_sample(probs: &Tensor) -> Tensor {
    -(probs * (probs + 1e-5).log()).sum_dim_intlist(1, false, Kind::Float)
}

/// How the per-sample binary cross-entropy of a domain probability is written. The two forms are
/// equal except where the discriminator saturates, which is where divergence happens, so each
/// baseline uses its own code's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainBce {
    /// `nn.BCELoss`: `−[y log p + (1 − y) log(1 − p)]` with each log clamped at −100 (CDAN).
    Clamped,
    /// `−[y log(p + 1e-8) + (1 − y) log(1 − p + 1e-8)]` (GVB's own loss).
    Epsilon,
}

/// `loss.backward()` for the losses a method differentiates itself (warm-up, discriminator and
/// classifier steps): with autocast suspended, like every backward pass (see `numerics`).
pub fn backward(loss: &Tensor) -> Result<()> {
    let _no_autocast = crate::numerics::AutocastScope::suspend()?;
    loss.f_backward()?;
    Ok(())
}

/// Entropy-conditioned domain loss (CDAN+E, GVB-GD): per-sample BCE of the domain probabilities
/// (sigmoid of the discriminator) against source = 1, target = 0, weighted by `weights` normalised
/// within the source half and within the target half, divided by the (constant) total weight.
/// `weights` keeps its gradient (CDAN and GVB pass the entropy through a gradient-reversal layer
/// first).
pub fn weighted_domain_bce(domain_probs: &Tensor, weights: &Tensor, n_source: i64, form: DomainBce) -> Tensor {
    let n = weights.size()[0];
    let device = weights.device();
    let targets = Tensor::cat(
        &[Tensor::ones([n_source], (Kind::Float, device)), Tensor::zeros([n - n_source], (Kind::Float, device))],
        0,
    );
    // Float32 for the loss whatever the forward computed in (a no-op in float32 runs): under
    // bf16 autocast, `p + 1e-8` and `1 − p` would round in bfloat16.
    let p = domain_probs.view([-1]).to_kind(Kind::Float);
    let per_sample = match form {
        // NaN probabilities (a diverged network) become 0.5 for the loss only: on CUDA,
        // binary_cross_entropy asserts its input is in [0, 1] on the device, which would poison
        // the worker's CUDA context instead of ending this run as diverged. The identity on
        // every finite input, so results are unchanged; the run's other losses still carry the
        // NaN to the divergence checks.
        // Autocast refuses binary_cross_entropy on CUDA ("unsafe to autocast"): it runs in
        // float32 with autocast suspended (suspending only sets thread-local flags; were it to
        // fail, libtorch's own error would name the operation).
        DomainBce::Clamped => {
            let _no_autocast = crate::numerics::AutocastScope::suspend().ok();
            p.nan_to_num(0.5, None, None).binary_cross_entropy::<Tensor>(&targets, None, Reduction::None)
        }
        DomainBce::Epsilon => {
            let log_p = (&p + 1e-8).log();
            let log_q = ((p.neg() + 1.0) + 1e-8).log();
            -(&targets * log_p + (targets.neg() + 1.0) * log_q)
        }
    };
    let ws = weights.narrow(0, 0, n_source);
    let wt = weights.narrow(0, n_source, n - n_source);
    let normalised = Tensor::cat(&[&ws / ws.sum(Kind::Float).detach(), &wt / wt.sum(Kind::Float).detach()], 0);
    (&normalised * per_sample).sum(Kind::Float) / normalised.sum(Kind::Float).detach()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn parameter_groups_step_with_their_multiplied_learning_rates() {
        use crate::networks::{BACKBONE_GROUP, NEW_LAYERS_GROUP};
        let vs = nn::VarStore::new(Device::Cpu);
        let backbone = vs.root().set_group(BACKBONE_GROUP).zeros("w", &[3]);
        let head = vs.root().set_group(NEW_LAYERS_GROUP).zeros("h", &[2]);
        let sgd = Sgd { lr: 0.01, momentum: 0.0, weight_decay: 0.0, nesterov: false };
        let mults = GroupMultipliers { lr: Multipliers { backbone: 1.0, new_layers: 10.0 }, weight_decay: Multipliers::default() };
        let mut opt = sgd.build(&vs, &mults).unwrap();
        let schedule = LrSchedule::Inv { gamma: 0.001, power: 0.75 };
        apply_schedule(&mut [(&mut opt, sgd.lr, &schedule)], 1000, 100);
        let factor = 2f64.powf(-0.75);
        let rates: std::collections::BTreeMap<String, f64> = opt.learning_rates("m").into_iter().collect();
        assert!((rates["m/w"] - 0.01 * factor).abs() < 1e-12 && (rates["m/h"] - 0.1 * factor).abs() < 1e-12, "{rates:?}");
        // The optimiser itself applies them: one step on a gradient of ones moves each group by its rate.
        opt.zero_grad();
        (backbone.sum(Kind::Float) + head.sum(Kind::Float)).backward();
        opt.step();
        assert!((backbone.double_value(&[0]) + 0.01 * factor).abs() < 1e-7, "{}", backbone.double_value(&[0]));
        assert!((head.double_value(&[0]) + 0.1 * factor).abs() < 1e-6, "{}", head.double_value(&[0]));
    }

    #[test]
    fn inv_schedule_matches_its_formula() {
        let s = LrSchedule::Inv { gamma: 0.001, power: 0.75 };
        assert_eq!(s.factor(0, 100), 1.0);
        assert!((s.factor(1000, 100) - 2f64.powf(-0.75)).abs() < 1e-12);
        assert_eq!(LrSchedule::Fixed.factor(5000, 100), 1.0);
    }

    #[test]
    fn epoch_step_halves_at_the_start_of_every_kth_epoch() {
        // CDAN's digits script, M->U: halved at the start of epochs 5 and 10.
        let s = LrSchedule::EpochStep { every: 5, gamma: 0.5 };
        let at_epoch = |e: u64| s.factor((e - 1) * 937 + 3, 937);
        assert_eq!([1, 4, 5, 9, 10].map(at_epoch), [1.0, 1.0, 0.5, 0.5, 0.25]);
        assert_eq!(s.factor(4 * 937 - 1, 937), 1.0);
        assert_eq!(s.factor(4 * 937, 937), 0.5);
    }

    #[test]
    fn uniform_weights_give_the_plain_mean_bce() {
        let logits = Tensor::from_slice(&[0.3f32, -1.0, 2.0, 0.5]).view([4, 1]);
        let w = Tensor::ones([4], (Kind::Float, Device::Cpu));
        let targets = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]);
        let expected = logits.view([-1]).binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::Mean).double_value(&[]);
        for form in [DomainBce::Clamped, DomainBce::Epsilon] {
            let got = weighted_domain_bce(&logits.sigmoid(), &w, 2, form).double_value(&[]);
            assert!((got - expected).abs() < 1e-6, "{form:?}: {got} vs {expected}");
        }
    }

    #[test]
    fn the_two_bce_forms_differ_only_at_saturation() {
        // A target sample (label 0) the discriminator calls source with certainty.
        let probs = Tensor::from_slice(&[0.5f32, 1.0]).view([2, 1]);
        let w = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let both = |form| weighted_domain_bce(&probs, &w, 1, form).double_value(&[]) * 2.0;
        // Source p = 0.5: ln 2 either way; target p = 1: nn.BCELoss clamps the log at -100,
        // GVB's form gives -ln(1e-8).
        assert!((both(DomainBce::Clamped) - (2f64.ln() + 100.0)).abs() < 1e-4, "{}", both(DomainBce::Clamped));
        assert!((both(DomainBce::Epsilon) - (2f64.ln() + 1e-8f64.ln().abs())).abs() < 1e-3, "{}", both(DomainBce::Epsilon));
    }

    #[test]
    fn entropy_of_uniform_and_one_hot() {
        let u = Tensor::full([1, 4], 0.25, (Kind::Float, Device::Cpu));
        assert!((entropy_per_sample(&u).double_value(&[0]) - 4f64.ln()).abs() < 1e-4);
        let h = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).view([1, 3]);
        assert!(entropy_per_sample(&h).double_value(&[0]).abs() < 1e-4);
    }
}
