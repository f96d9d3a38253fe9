//! The device-side weights ([`Harmonizer::weights_on_device`]) against the host reference
//! ([`Harmonizer::weights`]), and the two-pass step with either, on CPU tensors.

use harmonizer::autograd::{backward_two_pass, backward_two_pass_on_device, LossPair, Parameters, StepLosses};
use harmonizer::on_device::DeviceSummary;
use harmonizer::{GhppRule, HarmonizationSummary, Harmonizer};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

fn every_harmonizer() -> Vec<Harmonizer> {
    let mut out = vec![Harmonizer::none(), Harmonizer::gh()];
    for rule in [GhppRule::Released, GhppRule::Rotation] {
        for alpha in [0.0, 0.25, 0.5, 0.75, 1.0] {
            out.push(Harmonizer::gh_plus_plus(alpha, rule).unwrap());
        }
    }
    out
}

/// (n1, n2, d) triples: a deterministic spread of angles and norm ratios, and the edge cases
/// (zero gradients, rounding past ±1, exactly opposite, orthogonal, non-finite).
fn inputs() -> Vec<(f64, f64, f64)> {
    let mut out = vec![
        (1.0, 1.0, -1.0),
        (1.0, 1.0, -1.000_000_1),
        (4.0, 1.0, -2.0),
        (1.0, 1.0, 0.0),
        (1.0, 1.0, -0.0),
        (0.0, 3.0, 0.0),
        (0.0, 0.0, 0.0),
        (2.0, 0.5, 1.0),
        (f64::NAN, 1.0, -0.5),
        (1.0, f64::INFINITY, -0.5),
        (1.0, 1.0, f64::NAN),
        (-1e-30, 1.0, -0.1),
    ];
    // A linear congruential spread, so the test needs no random crate and never changes.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..2000 {
        let norm1 = 10f64.powf(next() * 8.0 - 4.0);
        let norm2 = 10f64.powf(next() * 8.0 - 4.0);
        let cos = next() * 2.0 - 1.0;
        out.push((norm1 * norm1, norm2 * norm2, cos * norm1 * norm2));
    }
    out
}

/// libtorch's double `sqrt`, `acos` and `sin` (vectorised: SLEEF / MKL on the CPU, libdevice on
/// CUDA) are not the host libm's: they agree to within a few units in the last place, not bit for
/// bit. 1e-12 relative is a thousand times that and a million times below float32's resolution,
/// into which the weights are cast.
const RELATIVE: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a - b).abs() <= RELATIVE * a.abs().max(b.abs())
}

#[test]
fn device_weights_are_the_host_weights() {
    let mut checked = 0;
    let mut identical = 0;
    let mut flags_differ = 0;
    for h in every_harmonizer() {
        for (n1, n2, d) in inputs() {
            let host = h.weights(n1, n2, d);
            let dots = Tensor::from_slice(&[n1, n2, d]);
            let device = h.weights_on_device(&dots).unwrap();
            let w = (device.w1().double_value(&[]), device.w2().double_value(&[]));
            assert!(close(w.0, host.w1) && close(w.1, host.w2), "{} at (n1, n2, d) = ({n1:e}, {n2:e}, {d:e}): device ({:e}, {:e}), host ({:e}, {:e})", h.label(), w.0, w.1, host.w1, host.w2);
            identical += usize::from(w.0.to_bits() == host.w1.to_bits() && w.1.to_bits() == host.w2.to_bits());
            let record = device.to_host(&h).unwrap();
            assert_eq!((record.w1.to_bits(), record.w2.to_bits()), (w.0.to_bits(), w.1.to_bits()), "the record holds the applied weights");
            assert_eq!(record.conflict, host.conflict);
            flags_differ += usize::from(device_clamped(&device) != host.clamped);
            checked += 1;
        }
    }
    assert!(checked > 20_000);
    // GH (correctly rounded operations only) and the unchanged weights of non-conflicting pairs
    // are identical; the trigonometric rules differ in the last bits now and then.
    assert!(identical * 2 > checked, "{identical} of {checked} identical");
    // The clamp flag can differ only where cos θ is within rounding of ±1 (a handful of inputs).
    assert!(flags_differ * 1000 < checked, "{flags_differ} clamp flags differ");
}

fn device_clamped(w: &harmonizer::on_device::DeviceWeights) -> bool {
    let mut s = DeviceSummary::default();
    s.add(w).unwrap();
    s.to_host().unwrap().0.clamps == 1
}

#[test]
fn device_summary_is_the_host_summary() {
    for h in every_harmonizer() {
        let mut host = HarmonizationSummary::default();
        let mut host_reweighted = 0;
        let mut device = DeviceSummary::default();
        for (n1, n2, d) in inputs().into_iter().filter(|(a, b, c)| a.is_finite() && b.is_finite() && c.is_finite()) {
            let record = h.weights(n1, n2, d);
            host.add(&record);
            host_reweighted += u64::from(record.w1 != 1.0 || record.w2 != 1.0);
            device.add(&h.weights_on_device(&Tensor::from_slice(&[n1, n2, d])).unwrap()).unwrap();
        }
        let (summary, reweighted) = device.to_host().unwrap();
        let label = h.label();
        assert_eq!((summary.measured_steps, summary.conflicts), (host.measured_steps, host.conflicts), "{label}");
        assert!(summary.clamps.abs_diff(host.clamps) <= 2, "{label}: {} clamps on the device, {} on the host", summary.clamps, host.clamps);
        for (a, b) in [(summary.sum_w1_conflict, host.sum_w1_conflict), (summary.sum_w2_conflict, host.sum_w2_conflict)] {
            assert!(close(a, b), "{label}: {a} vs {b}");
        }
        // Σ cos θ over many signs: cancellation, so an absolute bound.
        assert!((summary.sum_cos - host.sum_cos).abs() < 1e-9, "{label}: {} vs {}", summary.sum_cos, host.sum_cos);
        assert_eq!(reweighted, host_reweighted, "{label}");
        if h.method() != harmonizer::Method::None {
            assert!(reweighted > 500, "{label}: only {reweighted} re-weighted steps");
        }
    }
}

/// A two-layer network with two losses that conflict on some parameters.
fn step_gradients(h: &Harmonizer, on_device: bool) -> Vec<Vec<f32>> {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let body = nn::linear(vs.root() / "body", 6, 5, Default::default());
    let head = nn::linear(vs.root() / "head", 5, 3, Default::default());
    let x = Tensor::randn([16, 6], (Kind::Float, Device::Cpu));
    let features = body.forward(&x).relu();
    let out = head.forward(&features);
    let l1 = out.mean(Kind::Float);
    // Mostly opposed to l1 (d < 0 over the body), not exactly.
    let l2 = out.mean(Kind::Float) * -0.7 + out.square().mean(Kind::Float) * 0.1;
    let params = Parameters::from_stores(&[("net", &vs)]);
    let scope = params.scope("body", &["net/body"]).unwrap();
    let losses = StepLosses { pairs: vec![LossPair::new(&l1, &l2, &scope).with_coefficients(1.0, 0.3)], unharmonized: None };
    if on_device {
        backward_two_pass_on_device(h, &params, &losses).unwrap();
    } else {
        backward_two_pass(h, &params, &losses).unwrap();
    }
    params.tensors().iter().map(|p| Vec::<f32>::try_from(p.grad().flatten(0, -1)).unwrap()).collect()
}

#[test]
fn the_step_on_device_writes_the_host_steps_gradients() {
    for h in every_harmonizer() {
        let (on_device, host) = (step_gradients(&h, true), step_gradients(&h, false));
        for (a, b) in on_device.iter().flatten().zip(host.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(b.abs()), "{}: {a} vs {b}", h.label());
        }
        if h.method() == harmonizer::Method::Gh {
            assert_eq!(on_device, host, "GH's weights use correctly rounded operations only");
            assert_ne!(host, step_gradients(&Harmonizer::none(), false), "the pair must conflict for the test to say anything");
        }
    }
}
