//! Pieces several baselines share: optimiser settings, learning-rate schedules, entropies and the
//! entropy-conditioned domain loss of CDAN+E and GVB-GD.

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
    pub fn build(&self, vs: &nn::VarStore) -> Result<nn::Optimizer> {
        Ok(nn::Sgd { momentum: self.momentum, dampening: 0.0, wd: self.weight_decay, nesterov: self.nesterov }.build(vs, self.lr)?)
    }
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

/// Sets the learning rate of every optimiser to its base rate times its schedule's factor.
pub fn apply_schedule(optimizers: &mut [(&mut nn::Optimizer, f64, &LrSchedule)], iteration: u64, iters_per_epoch: u64) {
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
    let p = domain_probs.view([-1]);
    let per_sample = match form {
        DomainBce::Clamped => p.binary_cross_entropy::<Tensor>(&targets, None, Reduction::None),
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

/// Fraction of rows whose arg-max equals the label.
pub fn accuracy(scores: &Tensor, labels: &Tensor) -> f64 {
    scores.argmax(1, false).eq_tensor(labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

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
