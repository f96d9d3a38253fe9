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

/// How the learning rate evolves with the iteration `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    #[default]
    Fixed,
    /// `lr0 · (1 + gamma·i)^(−power)` (CDAN, GVB, SSRT: gamma 0.001, power 0.75).
    Inv { gamma: f64, power: f64 },
}

impl LrSchedule {
    pub fn factor(&self, iteration: u64) -> f64 {
        match *self {
            LrSchedule::Fixed => 1.0,
            LrSchedule::Inv { gamma, power } => (1.0 + gamma * iteration as f64).powf(-power),
        }
    }
}

/// Sets the learning rate of every optimiser to its base rate times the schedule's factor.
pub fn apply_schedule(optimizers: &mut [(&mut nn::Optimizer, f64)], schedule: &LrSchedule, iteration: u64) {
    let f = schedule.factor(iteration);
    for (opt, base) in optimizers.iter_mut() {
        opt.set_lr(*base * f);
    }
}

/// Shannon entropy of each row of probabilities, `−Σ p log(p + 1e-5)` (CDAN's and GVB's form).
pub fn entropy_per_sample(probs: &Tensor) -> Tensor {
    -(probs * (probs + 1e-5).log()).sum_dim_intlist(1, false, Kind::Float)
}

/// Entropy-conditioned domain loss (CDAN+E, GVB-GD): per-sample BCE of the domain logits against
/// source = 1, target = 0, weighted by `weights` normalised within the source half and within the
/// target half, divided by the (constant) total weight. `weights` keeps its gradient (CDAN and GVB
/// pass the entropy through a gradient-reversal layer first).
pub fn weighted_domain_bce(domain_logits: &Tensor, weights: &Tensor, n_source: i64) -> Tensor {
    let n = weights.size()[0];
    let device = weights.device();
    let targets = Tensor::cat(
        &[Tensor::ones([n_source], (Kind::Float, device)), Tensor::zeros([n - n_source], (Kind::Float, device))],
        0,
    );
    let per_sample = domain_logits.view([-1]).binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::None);
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
        assert_eq!(s.factor(0), 1.0);
        assert!((s.factor(1000) - 2f64.powf(-0.75)).abs() < 1e-12);
        assert_eq!(LrSchedule::Fixed.factor(5000), 1.0);
    }

    #[test]
    fn uniform_weights_give_the_plain_mean_bce() {
        let logits = Tensor::from_slice(&[0.3f32, -1.0, 2.0, 0.5]).view([4, 1]);
        let w = Tensor::ones([4], (Kind::Float, Device::Cpu));
        let got = weighted_domain_bce(&logits, &w, 2).double_value(&[]);
        let targets = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]);
        let expected = logits.view([-1]).binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::Mean).double_value(&[]);
        assert!((got - expected).abs() < 1e-6);
    }

    #[test]
    fn entropy_of_uniform_and_one_hot() {
        let u = Tensor::full([1, 4], 0.25, (Kind::Float, Device::Cpu));
        assert!((entropy_per_sample(&u).double_value(&[0]) - 4f64.ln()).abs() < 1e-4);
        let h = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).view([1, 3]);
        assert!(entropy_per_sample(&h).double_value(&[0]).abs() < 1e-4);
    }
}
