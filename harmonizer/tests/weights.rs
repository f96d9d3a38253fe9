//! The harmonizer's weights through its public API: GH and GH++ (released and rotation rules)
//! against docs/design/harmonization.md's formulas, values and checks; names and errors.

use harmonizer::*;

#[test]
fn alpha_outside_unit_interval_is_rejected_with_its_value() {
    for alpha in [-0.1, 1.5, f64::NAN] {
        let err = Harmonizer::gh_plus_plus(alpha, GhppRule::Released).unwrap_err();
        assert!(err.to_string().contains("[0, 1]"), "{err}");
    }
    assert!(Harmonizer::gh_plus_plus(0.0, GhppRule::Rotation).is_ok());
    assert!(Harmonizer::gh_plus_plus(1.0, GhppRule::Released).is_ok());
}

#[test]
fn serialized_config_is_validated() {
    let ok: Harmonizer =
        serde_json::from_str(r#"{"method":"gh++","rule":"rotation","alpha":0.25}"#).unwrap();
    assert_eq!(ok.label(), "gh++(rotation,α=0.25)");
    let scoped: Harmonizer = serde_json::from_str(r#"{"method":"gh","outside_scope":"scope-only"}"#).unwrap();
    assert_eq!(scoped.label(), "gh(scope-only)");
    let bad = serde_json::from_str::<Harmonizer>(r#"{"method":"gh++","alpha":2.0}"#);
    assert!(bad.unwrap_err().to_string().contains("[0, 1]"));
    let unknown = serde_json::from_str::<Harmonizer>(r#"{"method":"gh","alfa":0.5}"#);
    assert!(unknown.is_err());
}

#[test]
fn parses_method_and_rule_names() {
    assert_eq!("GH++".parse::<Method>().unwrap(), Method::GhPlusPlus);
    assert_eq!("none".parse::<Method>().unwrap(), Method::None);
    assert!("gh+".parse::<Method>().unwrap_err().to_string().contains("none, gh, gh++"));
    assert_eq!("rotation".parse::<GhppRule>().unwrap(), GhppRule::Rotation);
    assert_eq!("scope-only".parse::<OutsideScope>().unwrap(), OutsideScope::ScopeOnly);
    assert_eq!("reweighted".parse::<OutsideScope>().unwrap(), OutsideScope::Reweighted);
    assert!("scope_only".parse::<OutsideScope>().unwrap_err().to_string().contains("reweighted"));
}

#[test]
fn released_ghpp_at_180_degrees_matches_the_design_note() {
    let h = Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap();
    let r = h.weights(1.0, 1.0, -1.0);
    assert!((r.w1 - 1.765_366_864_730_18).abs() < 1e-9, "{r:?}");
    assert!((r.w2 - 0.234_633_135_269_82).abs() < 1e-9, "{r:?}");
    assert!(!r.clamped);
}

#[test]
fn rounding_past_minus_one_is_clamped_and_flagged() {
    let h = Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap();
    let r = h.weights(1.0, 1.0, -1.000_000_1);
    assert!(r.clamped && r.w1.is_finite() && r.w2.is_finite());
    let rot = Harmonizer::gh_plus_plus(0.5, GhppRule::Rotation).unwrap();
    let r = rot.weights(4.0, 1.0, -2.0);
    assert!(r.clamped && r.w1.is_finite() && r.w2.is_finite(), "{r:?}");
}

#[test]
fn zero_gradients_are_not_conflicts() {
    for h in [Harmonizer::gh(), Harmonizer::gh_plus_plus(0.5, GhppRule::Rotation).unwrap()] {
        let r = h.weights(0.0, 3.0, 0.0);
        assert_eq!((r.w1, r.w2, r.conflict), (1.0, 1.0, false));
    }
}

#[test]
fn none_measures_but_never_reweights() {
    let r = Harmonizer::none().weights(1.0, 1.0, -0.5);
    assert!(r.conflict);
    assert_eq!((r.w1, r.w2), (1.0, 1.0));
}

#[test]
fn summary_counts_conflicts_and_mean_weights() {
    let mut s = HarmonizationSummary::default();
    let gh = Harmonizer::gh();
    s.add(&gh.weights(1.0, 1.0, 0.5));
    s.add(&gh.weights(1.0, 4.0, -1.0));
    s.add(&gh.weights(1.0, 4.0, -1.0));
    assert_eq!(s.conflict_rate(), Some(2.0 / 3.0));
    assert_eq!(s.mean_weights_in_conflict(), Some((2.0, 1.25)));
}
