//! [`Harmonizer::weights`] as tensor operations on the gradients' device, so that a harmonized
//! step on CUDA queues its work without reading `(n1, n2, d)` back to the host (a sync per pair
//! per step, which `none` does not pay). The same operations in the same order, in double
//! precision. libtorch's `sqrt`, `acos` and `sin` (vectorised: SLEEF / MKL on the CPU, libdevice
//! on CUDA) are not the host libm's, so GH++'s weights can differ from [`Harmonizer::weights`] in
//! the last bits of a double (tests: within 1e-12 relative on the CPU; GH's, made of correctly
//! rounded operations, are identical), which the cast to the gradients' float32 almost always
//! absorbs. Training on the CPU therefore keeps the host path (it waits for nothing there, and
//! its numbers are the reference); CUDA two-pass steps use this one.
//!
//! The training loop reads the weights only on telemetry steps ([`DeviceWeights::to_host`]) and
//! the run's counts once at its end ([`DeviceSummary::to_host`]).

use crate::{GhppRule, Harmonization, HarmonizationSummary, Harmonizer, Method, ROTATION_COS_MARGIN};
use tch::{Kind, TchError, Tensor};

/// One pair's measurements and weights, on the device: `[n1, n2, d, w1, w2]` (double) and the
/// step's flags, for the summary.
pub struct DeviceWeights {
    /// `[n1, n2, d, w1, w2]`, double, on the device.
    values: Tensor,
    conflict: Tensor,
    clamped: Tensor,
    cos: Tensor,
}

impl DeviceWeights {
    /// w1 and w2 as 0-dim double tensors on the device.
    pub fn w1(&self) -> Tensor {
        self.values.get(3)
    }

    pub fn w2(&self) -> Tensor {
        self.values.get(4)
    }

    /// The step's record on the host (one copy, i.e. a sync: call it on telemetry steps only).
    /// The weights are the device's, the rest is derived from the same `(n1, n2, d)`.
    pub fn to_host(&self, harmonizer: &Harmonizer) -> Result<Harmonization, TchError> {
        crate::host_reads::note();
        let v = Vec::<f64>::try_from(self.values.f_to_device(tch::Device::Cpu)?)?;
        let mut record = harmonizer.weights(v[0], v[1], v[2]);
        record.w1 = v[3];
        record.w2 = v[4];
        Ok(record)
    }
}

impl Harmonizer {
    /// [`Harmonizer::weights`] on `dots = [n1, n2, d]` (a double tensor on any device), without
    /// leaving it.
    pub fn weights_on_device(&self, dots: &Tensor) -> Result<DeviceWeights, TchError> {
        let dots = dots.f_to_kind(Kind::Double)?;
        let (n1, n2, d) = (dots.get(0), dots.get(1), dots.get(2));
        let zero = n1.f_zeros_like()?;
        // f64::max ignores a NaN, as fmax does (clamp_min would keep it).
        let norm1 = n1.f_fmax(&zero)?.f_sqrt()?;
        let norm2 = n2.f_fmax(&zero)?.f_sqrt()?;
        let both = norm1.f_gt(0.0)?.f_logical_and(&norm2.f_gt(0.0)?)?;
        let cos_measured = d.f_div(&norm1.f_mul(&norm2)?)?.f_where_self(&both, &zero)?;
        let conflict = d.f_lt(0.0)?.f_logical_and(&both)?;
        let floor = match (self.method, self.rule) {
            (Method::GhPlusPlus, GhppRule::Rotation) => -1.0 + ROTATION_COS_MARGIN,
            _ => -1.0,
        };
        let cos = cos_measured.f_clamp(floor, 1.0)?;
        let clamped = cos.f_ne_tensor(&cos_measured)?.f_logical_and(&cos_measured.f_isfinite()?)?;
        let one = zero.f_ones_like()?;
        let (w1, w2) = match (self.method, self.rule) {
            (Method::None, _) => (one.shallow_clone(), one.shallow_clone()),
            // 1 − d/n as 1 + (−(d/n)): the same rounding.
            (Method::Gh, _) => (d.f_div(&n1)?.f_neg()?.f_add_scalar(1.0)?, d.f_div(&n2)?.f_neg()?.f_add_scalar(1.0)?),
            (Method::GhPlusPlus, GhppRule::Released) => released(&cos, self.alpha)?,
            (Method::GhPlusPlus, GhppRule::Rotation) => rotation(&norm1, &norm2, &cos, self.alpha)?,
        };
        let w1 = w1.f_where_self(&conflict, &one)?;
        let w2 = w2.f_where_self(&conflict, &one)?;
        let values = Tensor::f_stack(&[n1, n2, d, w1, w2], 0)?;
        Ok(DeviceWeights { values, conflict, clamped, cos })
    }
}

/// `released_ghpp_weights`, operation for operation (`to_degrees` and `to_radians` are products
/// with Rust's constants).
fn released(cos: &Tensor, alpha: f64) -> Result<(Tensor, Tensor), TchError> {
    const DEGREES_PER_RADIAN: f64 = 180.0f64 / std::f64::consts::PI;
    const RADIANS_PER_DEGREE: f64 = std::f64::consts::PI / 180.0;
    let deviation_deg = cos.f_acos()?.f_mul_scalar(DEGREES_PER_RADIAN)?.f_sub_scalar(90.0)?;
    let half = |k: f64| -> Result<Tensor, TchError> {
        deviation_deg.f_mul_scalar(k)?.f_div_scalar(2.0)?.f_mul_scalar(RADIANS_PER_DEGREE)?.f_sin()?.f_mul_scalar(2.0)
    };
    let w1 = half(alpha)?.f_add_scalar(1.0)?;
    let w2 = half(1.0 - alpha)?.f_neg()?.f_add_scalar(1.0)?;
    Ok((w1, w2))
}

/// `rotation_coefficients(..).weights()`, operation for operation.
fn rotation(norm1: &Tensor, norm2: &Tensor, cos: &Tensor, alpha: f64) -> Result<(Tensor, Tensor), TchError> {
    let theta = cos.f_acos()?;
    let deviation = theta.f_sub_scalar(std::f64::consts::FRAC_PI_2)?;
    let phi1 = deviation.f_mul_scalar(alpha)?;
    let phi2 = deviation.f_mul_scalar(1.0 - alpha)?;
    let sin_theta = theta.f_sin()?;
    let g1_from_g1 = theta.f_sub(&phi1)?.f_sin()?.f_div(&sin_theta)?;
    let g1_from_g2 = norm1.f_div(norm2)?.f_mul(&phi1.f_sin()?)?.f_div(&sin_theta)?;
    let g2_from_g1 = norm2.f_div(norm1)?.f_mul(&phi2.f_sin()?)?.f_div(&sin_theta)?;
    let g2_from_g2 = theta.f_sub(&phi2)?.f_sin()?.f_div(&sin_theta)?;
    Ok((g1_from_g1.f_add(&g2_from_g1)?, g1_from_g2.f_add(&g2_from_g2)?))
}

/// A pair's [`HarmonizationSummary`] and re-weighted-step count, accumulated on the device:
/// `[conflicts, clamps, Σw1 | conflict, Σw2 | conflict, Σcos, re-weighted steps]`, each step added
/// in order as the host summary adds it.
#[derive(Default)]
pub struct DeviceSummary {
    measured_steps: u64,
    sums: Option<Tensor>,
}

impl DeviceSummary {
    pub fn add(&mut self, step: &DeviceWeights) -> Result<(), TchError> {
        self.measured_steps += 1;
        let c = step.conflict.f_to_kind(Kind::Double)?;
        let zero = c.f_zeros_like()?;
        let w1 = step.w1();
        let w2 = step.w2();
        let reweighted = w1.f_ne(1.0)?.f_logical_or(&w2.f_ne(1.0)?)?.f_to_kind(Kind::Double)?;
        let row = Tensor::f_stack(
            &[
                c,
                step.clamped.f_to_kind(Kind::Double)?,
                w1.f_where_self(&step.conflict, &zero)?,
                w2.f_where_self(&step.conflict, &zero)?,
                step.cos.shallow_clone(),
                reweighted,
            ],
            0,
        )?;
        self.sums = Some(match self.sums.take() {
            Some(s) => s.f_add(&row)?,
            None => row,
        });
        Ok(())
    }

    /// The summary and the count of steps whose weights were not both 1 (one copy: a sync).
    pub fn to_host(&self) -> Result<(HarmonizationSummary, u64), TchError> {
        let Some(sums) = &self.sums else { return Ok((HarmonizationSummary::default(), 0)) };
        crate::host_reads::note();
        let v = Vec::<f64>::try_from(sums.f_to_device(tch::Device::Cpu)?)?;
        let summary = HarmonizationSummary {
            measured_steps: self.measured_steps,
            conflicts: v[0] as u64,
            clamps: v[1] as u64,
            sum_w1_conflict: v[2],
            sum_w2_conflict: v[3],
            sum_cos: v[4],
        };
        Ok((summary, v[5] as u64))
    }
}
