//! Gradient reversal layer: identity forward, gradient multiplied by `-coeff` backward.

use tch::Tensor;

/// `x` forward; `-coeff · grad` backward. Written as `x.detach() + (x − x.detach())·(−coeff)`:
/// the second term is exactly zero forward, so the forward value is bit-identical to `x`.
pub fn reverse_gradient(x: &Tensor, coeff: f64) -> Tensor {
    let frozen = x.detach();
    &frozen + (x - &frozen) * (-coeff)
}

/// The GRL coefficient schedule of CDAN and GVB: `2 / (1 + exp(−10 i / max_iter)) − 1`, rising from
/// 0 to ~1 (docs/design/protocols.md uses max_iter = 10000).
pub fn grl_coefficient(iteration: u64, max_iter: u64) -> f64 {
    2.0 / (1.0 + (-10.0 * iteration as f64 / max_iter as f64).exp()) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn forward_is_identity_and_backward_is_reversed() {
        let x = Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let y = reverse_gradient(&x, 0.7);
        assert!(y.equal(&x.detach()));
        (&y * 2.0).sum(Kind::Float).backward();
        let expected = x.ones_like() * (-1.4);
        assert!(x.grad().allclose(&expected, 1e-7, 1e-7, false));
    }

    #[test]
    fn coefficient_schedule_starts_at_zero_and_tends_to_one() {
        assert_eq!(grl_coefficient(0, 10_000), 0.0);
        assert!((grl_coefficient(10_000, 10_000) - 0.999_909_204).abs() < 1e-6);
    }
}
