//! Properties of the pure harmonizer (n1, n2, d) -> (w1, w2), checked on explicit vectors.

use baselines::harmonizer::{rotation_coefficients, GhppRule, Harmonizer};
use proptest::prelude::*;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn combine(a: f64, u: &[f64], b: f64, v: &[f64]) -> Vec<f64> {
    u.iter().zip(v).map(|(x, y)| a * x + b * y).collect()
}

fn assert_close(actual: f64, expected: f64, scale: f64, what: &str) {
    let tol = 1e-9 * scale.max(1.0);
    assert!((actual - expected).abs() <= tol, "{what}: {actual} vs {expected} (tol {tol})");
}

/// Two random vectors of one dimension, not both tiny.
fn vector_pair() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (2usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(-10.0f64..10.0, n),
            prop::collection::vec(-10.0f64..10.0, n),
        )
    })
    .prop_filter("non-degenerate", |(a, b)| dot(a, a) > 1e-3 && dot(b, b) > 1e-3)
}

fn all_harmonizers() -> Vec<Harmonizer> {
    let mut hs = vec![Harmonizer::none(), Harmonizer::gh()];
    for alpha in [0.0, 0.25, 0.5, 1.0] {
        hs.push(Harmonizer::gh_plus_plus(alpha, GhppRule::Released).unwrap());
        hs.push(Harmonizer::gh_plus_plus(alpha, GhppRule::Rotation).unwrap());
    }
    hs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// GH: each projected gradient is orthogonal to the other original gradient, and the two
    /// projections sum to w1·g1 + w2·g2 with the weights of the pure function.
    #[test]
    fn gh_projections_are_orthogonal_and_sum_to_the_weighted_pair((g1, g2) in vector_pair()) {
        let (n1, n2, d) = (dot(&g1, &g1), dot(&g2, &g2), dot(&g1, &g2));
        prop_assume!(d < 0.0);
        let g1p = combine(1.0, &g1, -d / n2, &g2);
        let g2p = combine(-d / n1, &g1, 1.0, &g2);
        let scale = n1.sqrt() * n2.sqrt();
        assert_close(dot(&g1p, &g2), 0.0, scale, "g1'·g2");
        assert_close(dot(&g2p, &g1), 0.0, scale, "g2'·g1");
        let r = Harmonizer::gh().weights(n1, n2, d);
        prop_assert!(r.conflict);
        let weighted = combine(r.w1, &g1, r.w2, &g2);
        for (k, (s, w)) in g1p.iter().zip(&g2p).map(|(a, b)| a + b).zip(&weighted).enumerate() {
            assert_close(s, *w, scale.sqrt(), &format!("component {k}"));
        }
        // The harmonized pair is no longer obtuse: (w1 g1)·(w2 g2) ... the projections' angle is 180° − θ.
        let cos_after = dot(&g1p, &g2p) / (dot(&g1p, &g1p).sqrt() * dot(&g2p, &g2p).sqrt());
        prop_assert!((cos_after + r.cos).abs() < 1e-6, "cos after {} vs -cos before {}", cos_after, -r.cos);
        let after = r.d_after.unwrap();
        assert_close(dot(&g1p, &g2p), after, scale, "g1'·g2' (telemetry's d_after)");
        prop_assert!(after >= 0.0);
    }

    /// Without a conflict every variant leaves both losses alone, exactly.
    #[test]
    fn without_conflict_weights_are_exactly_one((g1, g2) in vector_pair()) {
        let (n1, n2, d) = (dot(&g1, &g1), dot(&g2, &g2), dot(&g1, &g2));
        prop_assume!(d >= 0.0);
        for h in all_harmonizers() {
            let r = h.weights(n1, n2, d);
            prop_assert!(!r.conflict);
            prop_assert_eq!((r.w1, r.w2), (1.0, 1.0), "{}", h.label());
        }
    }

    /// Rotation rule: the rotated vectors are orthogonal, keep their norms, and deviate by
    /// φ1 = α(θ − 90°) and φ2 = (1 − α)(θ − 90°); their sum is w1·g1 + w2·g2.
    #[test]
    fn rotation_rule_rotates_to_orthogonal_with_the_alpha_split(
        (g1, g2) in vector_pair(),
        alpha in 0.0f64..=1.0,
    ) {
        let (n1, n2, d) = (dot(&g1, &g1), dot(&g2, &g2), dot(&g1, &g2));
        let (norm1, norm2) = (n1.sqrt(), n2.sqrt());
        let cos = d / (norm1 * norm2);
        prop_assume!(d < 0.0 && cos > -0.9999);
        let c = rotation_coefficients(norm1, norm2, cos, alpha);
        let r1 = combine(c.g1_from_g1, &g1, c.g1_from_g2, &g2);
        let r2 = combine(c.g2_from_g1, &g1, c.g2_from_g2, &g2);
        let scale = norm1 * norm2;
        assert_close(dot(&r1, &r2) / scale, 0.0, 1.0, "cos(g1'', g2'')");
        assert_close(dot(&r1, &r1).sqrt() / norm1, 1.0, 1.0, "|g1''|/|g1|");
        assert_close(dot(&r2, &r2).sqrt() / norm2, 1.0, 1.0, "|g2''|/|g2|");
        let theta = cos.acos();
        let deviation = theta - std::f64::consts::FRAC_PI_2;
        let angle = |u: &[f64], v: &[f64]| (dot(u, v) / (dot(u, u) * dot(v, v)).sqrt()).clamp(-1.0, 1.0).acos();
        prop_assert!((angle(&g1, &r1) - alpha * deviation).abs() < 1e-6);
        prop_assert!((angle(&g2, &r2) - (1.0 - alpha) * deviation).abs() < 1e-6);
        let h = Harmonizer::gh_plus_plus(alpha, GhppRule::Rotation).unwrap();
        let w = h.weights(n1, n2, d);
        prop_assert!(!w.clamped);
        prop_assert_eq!(w.d_after, Some(0.0));
        let weighted = combine(w.w1, &g1, w.w2, &g2);
        for (k, (s, t)) in r1.iter().zip(&r2).map(|(a, b)| a + b).zip(&weighted).enumerate() {
            prop_assert!((s - t).abs() < 1e-7 * (norm1 + norm2), "component {}: {} vs {}", k, s, t);
        }
    }

    /// The released rule is scale-free: the weights depend on the angle only.
    #[test]
    fn released_ghpp_ignores_gradient_scale((g1, g2) in vector_pair(), s1 in 0.01f64..100.0, s2 in 0.01f64..100.0) {
        let (n1, n2, d) = (dot(&g1, &g1), dot(&g2, &g2), dot(&g1, &g2));
        prop_assume!(d < 0.0);
        let h = Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap();
        let a = h.weights(n1, n2, d);
        let b = h.weights(n1 * s1 * s1, n2 * s2 * s2, d * s1 * s2);
        prop_assert!((a.w1 - b.w1).abs() < 1e-9 && (a.w2 - b.w2).abs() < 1e-9);
        prop_assert!(a.w1 >= 1.0 && a.w2 <= 1.0);
    }
}

/// GH++ as released, against its closed form evaluated from the angle itself (not from dot
/// products): w1 = 1 + 2 sin(α(θ−90°)/2), w2 = 1 − 2 sin((1−α)(θ−90°)/2).
#[test]
fn released_ghpp_equals_the_closed_form_on_the_grid() {
    for theta_deg in [100.0f64, 120.0, 150.0, 179.9] {
        for alpha in [0.0f64, 0.5, 1.0] {
            // Build g1, g2 at the angle θ with unequal norms.
            let t = theta_deg.to_radians();
            let g1 = [3.0, 0.0, 0.0];
            let g2 = [0.5 * t.cos(), 0.5 * t.sin(), 0.0];
            let (n1, n2, d) = (dot(&g1, &g1), dot(&g2, &g2), dot(&g1, &g2));
            let r = Harmonizer::gh_plus_plus(alpha, GhppRule::Released).unwrap().weights(n1, n2, d);
            let half_dev_rad = (theta_deg - 90.0).to_radians() / 2.0;
            let expected_w1 = 1.0 + 2.0 * (alpha * half_dev_rad).sin();
            let expected_w2 = 1.0 - 2.0 * ((1.0 - alpha) * half_dev_rad).sin();
            assert!(r.conflict && !r.clamped, "θ={theta_deg} α={alpha}: {r:?}");
            assert!((r.w1 - expected_w1).abs() < 1e-9, "θ={theta_deg} α={alpha}: w1 {} vs {expected_w1}", r.w1);
            assert!((r.w2 - expected_w2).abs() < 1e-9, "θ={theta_deg} α={alpha}: w2 {} vs {expected_w2}", r.w2);
        }
    }
    // Spot values by hand: θ=120°, α=0.5 → 1 ± 2 sin(7.5°); α=0 leaves g1 alone.
    let r = Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap().weights(1.0, 1.0, -0.5);
    assert!((r.w1 - 1.261_052_384_440_103).abs() < 1e-9 && (r.w2 - 0.738_947_615_559_897).abs() < 1e-9);
    let r = Harmonizer::gh_plus_plus(0.0, GhppRule::Released).unwrap().weights(1.0, 1.0, -0.5);
    assert_eq!(r.w1, 1.0);
}

#[test]
fn rotation_rule_is_finite_and_flagged_at_180_degrees() {
    for alpha in [0.0, 0.5, 1.0] {
        let h = Harmonizer::gh_plus_plus(alpha, GhppRule::Rotation).unwrap();
        let r = h.weights(4.0, 9.0, -6.0); // exactly antiparallel
        assert!(r.clamped, "{r:?}");
        assert!(r.w1.is_finite() && r.w2.is_finite(), "{r:?}");
    }
}
