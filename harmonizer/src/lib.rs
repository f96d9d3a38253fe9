//! Gradient harmonization: GH and GH++ (paper sections 3.3–3.6; docs/design/harmonization.md),
//! for any training step with two losses in tch. `examples/own_training.rs` shows a whole loop.
//!
//! Every variant ends as a re-weighted loss `w1·L1 + w2·L2` with constant weights, so the
//! harmonizer itself is a pure function of three numbers measured on the scope's gradients:
//! `n1 = g1·g1`, `n2 = g2·g2`, `d = g1·g2`. This module holds that function; [`autograd`] holds
//! the libtorch glue that measures the numbers and writes the harmonized gradients.
//!
//! A *conflict* is `d < 0` (strictly). Without one every variant returns `w1 = w2 = 1`.

pub mod autograd;
pub mod host_reads;
pub mod on_device;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The harmonizer families of the paper, plus `none` (the baseline as published).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "gh")]
    Gh,
    #[serde(rename = "gh++")]
    GhPlusPlus,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::None, Method::Gh, Method::GhPlusPlus];

    pub fn name(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Gh => "gh",
            Method::GhPlusPlus => "gh++",
        }
    }

    /// Whether the method reads α and a [`GhppRule`] (GH++); the others ignore both, so a grid
    /// builds one harmonizer of them however many α a profile lists.
    pub fn takes_alpha_and_rule(self) -> bool {
        self == Method::GhPlusPlus
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = HarmonizerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Method::None),
            "gh" => Ok(Method::Gh),
            "gh++" | "ghpp" | "gh-plus-plus" => Ok(Method::GhPlusPlus),
            _ => Err(HarmonizerError::UnknownMethod(s.to_owned())),
        }
    }
}

/// How GH++ turns the angle into weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GhppRule {
    /// The authors' released scalar rule (it produced the paper's numbers): scale-free chords
    /// `w1 = 1 + 2 sin(α(θ−90°)/2)`, `w2 = 1 − 2 sin((1−α)(θ−90°)/2)`.
    #[default]
    Released,
    /// The paper's geometric intent: rotate g1 by `α(θ−90°)` and g2 by `(1−α)(θ−90°)` towards
    /// each other inside their plane, norms kept, so that they end exactly orthogonal.
    Rotation,
}

impl GhppRule {
    pub fn name(self) -> &'static str {
        match self {
            GhppRule::Released => "released",
            GhppRule::Rotation => "rotation",
        }
    }
}

impl std::str::FromStr for GhppRule {
    type Err = HarmonizerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "released" => Ok(GhppRule::Released),
            "rotation" => Ok(GhppRule::Rotation),
            _ => Err(HarmonizerError::UnknownRule(s.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HarmonizerError {
    #[error("GH++ alpha must lie in [0, 1], got {0} (alpha splits the deviation θ−90° between the two gradients; the paper uses 0.5)")]
    AlphaOutOfRange(f64),
    #[error("unknown harmonizer '{0}': expected one of {known}", known = Method::ALL.map(Method::name).join(", "))]
    UnknownMethod(String),
    #[error("unknown GH++ rule '{0}': expected released (the authors' code, default) or rotation")]
    UnknownRule(String),
    #[error("unknown outside-scope treatment '{0}': expected reweighted (as released, default) or scope-only (this project's variant)")]
    UnknownOutsideScope(String),
}

/// What the parameters outside the scope receive.
///
/// The scope gives the weights; the released code then backpropagates `w1·L1 + w2·L2` through the
/// whole model (the paper's "equivalent model"), so heads and discriminators outside the scope are
/// re-weighted too. For MCD that is the whole effect of harmonizing: its step B updates only the
/// heads. GH's weights are unbounded when one gradient is much smaller than the other
/// (`w1 = 1 + |cos θ|·|g2|/|g1|`), which the re-weighting passes on to those heads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutsideScope {
    /// As released: every parameter gets `c1·w1·G1 + c2·w2·G2`.
    #[default]
    Reweighted,
    /// This project's variant: only the scope is harmonized; parameters outside it get the plain
    /// `c1·G1 + c2·G2`. A deviation from the paper, labelled `scope-only` wherever it is used.
    ScopeOnly,
}

impl std::str::FromStr for OutsideScope {
    type Err = HarmonizerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reweighted" => Ok(OutsideScope::Reweighted),
            "scope-only" => Ok(OutsideScope::ScopeOnly),
            _ => Err(HarmonizerError::UnknownOutsideScope(s.to_owned())),
        }
    }
}

/// Smallest `1 + cos θ` the rotation rule divides by (θ ≈ 179.99°). Beyond it the plane of g1 and
/// g2 is numerically undefined; the angle is clamped and the step's record says so.
pub const ROTATION_COS_MARGIN: f64 = 1.5e-8;

/// A validated harmonizer configuration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HarmonizerConfig", into = "HarmonizerConfig")]
pub struct Harmonizer {
    method: Method,
    rule: GhppRule,
    alpha: f64,
    outside_scope: OutsideScope,
}

/// The serialized form of a [`Harmonizer`]; validated on the way in.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarmonizerConfig {
    pub method: Method,
    #[serde(default)]
    pub rule: GhppRule,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub outside_scope: OutsideScope,
}

fn default_alpha() -> f64 {
    Harmonizer::DEFAULT_ALPHA
}

impl TryFrom<HarmonizerConfig> for Harmonizer {
    type Error = HarmonizerError;
    fn try_from(c: HarmonizerConfig) -> Result<Self, Self::Error> {
        Ok(Harmonizer::new(c.method, c.alpha, c.rule)?.with_outside_scope(c.outside_scope))
    }
}

impl From<Harmonizer> for HarmonizerConfig {
    fn from(h: Harmonizer) -> Self {
        HarmonizerConfig { method: h.method, rule: h.rule, alpha: h.alpha, outside_scope: h.outside_scope }
    }
}

impl Harmonizer {
    /// The paper's α for GH++ (section 4.2).
    pub const DEFAULT_ALPHA: f64 = 0.5;

    /// Validates α even where the method ignores it, so a mistyped value never passes silently.
    pub fn new(method: Method, alpha: f64, rule: GhppRule) -> Result<Self, HarmonizerError> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(HarmonizerError::AlphaOutOfRange(alpha));
        }
        Ok(Harmonizer { method, rule, alpha, outside_scope: OutsideScope::Reweighted })
    }

    pub fn none() -> Self {
        Harmonizer { method: Method::None, rule: GhppRule::Released, alpha: Self::DEFAULT_ALPHA, outside_scope: OutsideScope::Reweighted }
    }

    pub fn gh() -> Self {
        Harmonizer { method: Method::Gh, ..Self::none() }
    }

    pub fn with_outside_scope(mut self, outside_scope: OutsideScope) -> Self {
        self.outside_scope = outside_scope;
        self
    }

    pub fn outside_scope(&self) -> OutsideScope {
        self.outside_scope
    }

    pub fn gh_plus_plus(alpha: f64, rule: GhppRule) -> Result<Self, HarmonizerError> {
        Self::new(Method::GhPlusPlus, alpha, rule)
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn rule(&self) -> GhppRule {
        self.rule
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Short label for tables and logs: `none`, `gh`, `gh++`, `gh++(rotation,α=0.25)`,
    /// `gh(scope-only)`. The paper's variants carry no qualifier.
    pub fn label(&self) -> String {
        let mut qualifiers = Vec::new();
        if self.method.takes_alpha_and_rule() {
            if self.rule != GhppRule::Released {
                qualifiers.push(self.rule.name().to_owned());
            }
            if self.alpha != Self::DEFAULT_ALPHA {
                qualifiers.push(format!("α={}", self.alpha));
            }
        }
        if self.method != Method::None && self.outside_scope == OutsideScope::ScopeOnly {
            qualifiers.push("scope-only".to_owned());
        }
        if qualifiers.is_empty() {
            self.method.name().to_owned()
        } else {
            format!("{}({})", self.method.name(), qualifiers.join(","))
        }
    }

    /// The pure harmonizer: `(n1, n2, d) -> (w1, w2)` with the step's telemetry.
    ///
    /// `n1 = g1·g1`, `n2 = g2·g2`, `d = g1·g2` over the scope. Non-finite inputs give weights 1
    /// (the training loop reports non-finite losses itself).
    pub fn weights(&self, n1: f64, n2: f64, d: f64) -> Harmonization {
        let norm1 = n1.max(0.0).sqrt();
        let norm2 = n2.max(0.0).sqrt();
        let cos_measured = if norm1 > 0.0 && norm2 > 0.0 { d / (norm1 * norm2) } else { 0.0 };
        let conflict = d < 0.0 && norm1 > 0.0 && norm2 > 0.0;
        let floor = match (self.method, self.rule) {
            (Method::GhPlusPlus, GhppRule::Rotation) => -1.0 + ROTATION_COS_MARGIN,
            _ => -1.0,
        };
        let cos = cos_measured.clamp(floor, 1.0);
        let mut record = Harmonization {
            d,
            cos,
            norm1,
            norm2,
            conflict,
            w1: 1.0,
            w2: 1.0,
            clamped: cos != cos_measured && cos_measured.is_finite(),
            d_after: Some(d),
        };
        if !conflict {
            return record;
        }
        record.d_after = match (self.method, self.rule) {
            (Method::None, _) => Some(d),
            (Method::Gh, _) => Some(-d * (1.0 - cos * cos)),
            (Method::GhPlusPlus, GhppRule::Rotation) => Some(0.0),
            (Method::GhPlusPlus, GhppRule::Released) => None,
        };
        let (w1, w2) = match (self.method, self.rule) {
            (Method::None, _) => (1.0, 1.0),
            (Method::Gh, _) => (1.0 - d / n1, 1.0 - d / n2),
            (Method::GhPlusPlus, GhppRule::Released) => released_ghpp_weights(cos, self.alpha),
            (Method::GhPlusPlus, GhppRule::Rotation) => {
                rotation_coefficients(norm1, norm2, cos, self.alpha).weights()
            }
        };
        record.w1 = w1;
        record.w2 = w2;
        record
    }
}

impl fmt::Display for Harmonizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The released GH++ weights for a conflicting pair with cosine `cos` (in [-1, 0)).
fn released_ghpp_weights(cos: f64, alpha: f64) -> (f64, f64) {
    let deviation_deg = cos.acos().to_degrees() - 90.0;
    let w1 = 1.0 + 2.0 * (alpha * deviation_deg / 2.0).to_radians().sin();
    let w2 = 1.0 - 2.0 * ((1.0 - alpha) * deviation_deg / 2.0).to_radians().sin();
    (w1, w2)
}

/// The rotated pair of the rotation rule as combinations of the originals:
/// `g1'' = a·g1 + b·g2`, `g2'' = c·g1 + e·g2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RotationCoefficients {
    pub g1_from_g1: f64,
    pub g1_from_g2: f64,
    pub g2_from_g1: f64,
    pub g2_from_g2: f64,
}

impl RotationCoefficients {
    /// `g1'' + g2'' = w1·g1 + w2·g2`.
    pub fn weights(&self) -> (f64, f64) {
        (self.g1_from_g1 + self.g2_from_g1, self.g1_from_g2 + self.g2_from_g2)
    }
}

/// Rotates g1 towards g2 by `φ1 = α(θ−90°)` and g2 towards g1 by `φ2 = (1−α)(θ−90°)` in their plane
/// (spherical interpolation of the unit vectors, norms kept). `cos` must be clamped away from −1.
pub fn rotation_coefficients(norm1: f64, norm2: f64, cos: f64, alpha: f64) -> RotationCoefficients {
    let theta = cos.acos();
    let deviation = theta - std::f64::consts::FRAC_PI_2;
    let (phi1, phi2) = (alpha * deviation, (1.0 - alpha) * deviation);
    let sin_theta = theta.sin();
    RotationCoefficients {
        g1_from_g1: (theta - phi1).sin() / sin_theta,
        g1_from_g2: (norm1 / norm2) * phi1.sin() / sin_theta,
        g2_from_g1: (norm2 / norm1) * phi2.sin() / sin_theta,
        g2_from_g2: (theta - phi2).sin() / sin_theta,
    }
}

/// One harmonized pair at one step: what was measured and what was applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Harmonization {
    /// `g1·g2` over the scope.
    pub d: f64,
    /// cos θ after clamping (see `clamped`).
    pub cos: f64,
    /// |g1| and |g2| over the scope.
    pub norm1: f64,
    pub norm2: f64,
    /// `d < 0`.
    pub conflict: bool,
    pub w1: f64,
    pub w2: f64,
    /// cos θ had to be clamped (rounding past ±1, or the rotation rule's margin near 180°).
    pub clamped: bool,
    /// The inner product of the two harmonized gradients (the paper's Fig. 12, "after"): `d`
    /// without a conflict or harmonizer; GH's `g1'·g2' = −d(1 − cos²θ)`; 0 for GH++ by rotation
    /// (exactly orthogonal); none for GH++ as released, which defines only the sum of the two.
    pub d_after: Option<f64>,
}

/// Running counts over a run's harmonized steps, for summaries (conflict rate, mean weights).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HarmonizationSummary {
    pub measured_steps: u64,
    pub conflicts: u64,
    pub clamps: u64,
    pub sum_w1_conflict: f64,
    pub sum_w2_conflict: f64,
    pub sum_cos: f64,
}

impl HarmonizationSummary {
    pub fn add(&mut self, h: &Harmonization) {
        self.measured_steps += 1;
        self.sum_cos += h.cos;
        if h.clamped {
            self.clamps += 1;
        }
        if h.conflict {
            self.conflicts += 1;
            self.sum_w1_conflict += h.w1;
            self.sum_w2_conflict += h.w2;
        }
    }

    /// Adds another summary's counts (of other steps of the same pair).
    pub fn merge(&mut self, other: &HarmonizationSummary) {
        self.measured_steps += other.measured_steps;
        self.conflicts += other.conflicts;
        self.clamps += other.clamps;
        self.sum_w1_conflict += other.sum_w1_conflict;
        self.sum_w2_conflict += other.sum_w2_conflict;
        self.sum_cos += other.sum_cos;
    }

    /// Fraction of measured steps with `d < 0`; `None` before any measurement.
    pub fn conflict_rate(&self) -> Option<f64> {
        (self.measured_steps > 0).then(|| self.conflicts as f64 / self.measured_steps as f64)
    }

    /// Mean (w1, w2) over conflicting steps; `None` without conflicts.
    pub fn mean_weights_in_conflict(&self) -> Option<(f64, f64)> {
        (self.conflicts > 0).then(|| {
            let n = self.conflicts as f64;
            (self.sum_w1_conflict / n, self.sum_w2_conflict / n)
        })
    }
}
