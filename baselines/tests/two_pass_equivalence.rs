//! The two-pass harmonized step gives the same gradient as the released three-pass step, for every
//! parameter, on a small network with a gradient-reversal layer and heads outside the scope.

use baselines::harmonizer::autograd::{
    backward_plain, backward_three_pass_reference, backward_two_pass, LossPair, Parameters,
    StepLosses,
};
use baselines::harmonizer::{GhppRule, Harmonization, Harmonizer};
use baselines::networks::grl::reverse_gradient;
use tch::nn::{self, Module, ModuleT};

/// libtorch's random generator (initialisation, dropout) is global to the process: tests that
/// depend on it take this lock so that parallel test threads do not interleave their draws.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}
use tch::{Device, Kind, Reduction, Tensor};

struct Net {
    features: nn::Sequential,
    classifier: nn::Linear,
    discriminator: nn::Linear,
    bridge: nn::Linear,
    params: Parameters,
    _stores: Vec<nn::VarStore>,
}

impl Net {
    fn new(seed: i64) -> Net {
        tch::manual_seed(seed);
        let (g, c, d) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let features = nn::seq()
            .add(nn::conv2d(g.root() / "conv", 1, 4, 3, Default::default()))
            .add_fn(|x| x.relu().flatten(1, -1))
            .add(nn::linear(g.root() / "fc", 4 * 6 * 6, 16, Default::default()))
            .add_fn(|x| x.tanh());
        let classifier = nn::linear(c.root() / "cls", 16, 5, Default::default());
        let bridge = nn::linear(c.root() / "bridge", 16, 5, Default::default());
        let discriminator = nn::linear(d.root() / "disc", 16, 1, Default::default());
        let params = Parameters::from_stores(&[("G", &g), ("C", &c), ("D", &d)]);
        Net { features, classifier, discriminator, bridge, params, _stores: vec![g, c, d] }
    }

    /// (transfer loss through the GRL, source cross-entropy, a bridge-magnitude term) on a fixed
    /// batch; dropout masks come from the seed so both paths see the same forward.
    fn losses(&self, seed: i64) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(1000 + seed);
        let x = Tensor::randn([12, 1, 8, 8], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(5, [6], (Kind::Int64, Device::Cpu));
        let f = self.features.forward_t(&x, true).dropout(0.3, true);
        let cls = self.classifier.forward(&f.narrow(0, 0, 6)).cross_entropy_for_logits(&labels);
        let domains = Tensor::cat(&[Tensor::ones([6], (Kind::Float, Device::Cpu)), Tensor::zeros([6], (Kind::Float, Device::Cpu))], 0);
        let transfer = self
            .discriminator
            .forward(&reverse_gradient(&f, 0.8))
            .squeeze_dim(1)
            .binary_cross_entropy_with_logits::<Tensor>(&domains, None, None, Reduction::Mean);
        let bridge = self.bridge.forward(&f).abs().mean(Kind::Float);
        (transfer, cls, bridge)
    }

    fn grads(&self) -> Vec<Tensor> {
        self.params.tensors().iter().map(|p| {
            let g = p.grad();
            if g.defined() { g.copy() } else { p.zeros_like() }
        }).collect()
    }
}

type Path = fn(&Harmonizer, &Parameters, &StepLosses) -> Result<Vec<Harmonization>, tch::TchError>;

/// Runs one step of `path` on a fresh copy of the seed's network and returns all gradients.
fn step(path: Path, h: &Harmonizer, seed: i64, two_pairs: bool) -> (Vec<Tensor>, Vec<Harmonization>, Vec<String>) {
    let net = Net::new(seed);
    let (transfer, cls, bridge) = net.losses(seed);
    let scope = net.params.scope("features", &["G/"]).unwrap();
    let mut pairs = vec![LossPair::new(&transfer, &cls, &scope).with_coefficients(1.7, 1.0)];
    let bridge_scaled = &bridge * 0.5;
    if two_pairs {
        pairs.push(LossPair::new(&bridge, &bridge_scaled, &scope));
    }
    let extra = &cls * 0.1;
    let records = path(h, &net.params, &StepLosses { pairs, unharmonized: Some(&extra) }).unwrap();
    (net.grads(), records, net.params.names().to_vec())
}

fn max_relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    diff / scale
}

#[test]
fn two_pass_equals_three_pass_for_every_parameter() {
    let _rng = torch_rng();
    let harmonizers = [
        Harmonizer::none(),
        Harmonizer::gh(),
        Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap(),
        Harmonizer::gh_plus_plus(0.3, GhppRule::Rotation).unwrap(),
    ];
    let mut conflicts_checked = 0;
    let mut agreements_checked = 0;
    for seed in 0..12 {
        for two_pairs in [false, true] {
            for h in &harmonizers {
                let (reference, r_records, names) = step(backward_three_pass_reference, h, seed, two_pairs);
                let (fast, f_records, _) = step(backward_two_pass, h, seed, two_pairs);
                assert_eq!(r_records.len(), f_records.len());
                for (a, b) in r_records.iter().zip(&f_records) {
                    assert_eq!(a.conflict, b.conflict);
                    assert!((a.w1 - b.w1).abs() < 1e-9 && (a.w2 - b.w2).abs() < 1e-9, "{a:?} vs {b:?}");
                }
                conflicts_checked += usize::from(r_records[0].conflict && h.label() != "none");
                agreements_checked += usize::from(!r_records[0].conflict);
                for ((name, r), f) in names.iter().zip(&reference).zip(&fast) {
                    let err = max_relative_error(f, r);
                    assert!(err < 1e-5, "{} seed {seed} two_pairs {two_pairs}: parameter {name} differs, relative error {err:e}", h.label());
                }
            }
        }
    }
    // The comparison must have covered real harmonization, not only w = 1.
    assert!(conflicts_checked >= 4, "only {conflicts_checked} conflicting cases checked");
    assert!(agreements_checked >= 4, "only {agreements_checked} non-conflicting cases checked");
}

#[test]
fn heads_outside_the_scope_are_rescaled_too() {
    let _rng = torch_rng();
    // GH changes the gradient of the discriminator (outside the scope) by w1, like the third
    // backward of the released code: compare against the plain step on a conflicting seed.
    let h = Harmonizer::gh();
    for seed in 0..40 {
        let (harmonized, records, names) = step(backward_two_pass, &h, seed, false);
        if !records[0].conflict {
            continue;
        }
        let net = Net::new(seed);
        let (transfer, cls, _) = net.losses(seed);
        let scope = net.params.scope("features", &["G/"]).unwrap();
        let extra = &cls * 0.1;
        backward_plain(&StepLosses { pairs: vec![LossPair::new(&transfer, &cls, &scope).with_coefficients(1.7, 1.0)], unharmonized: Some(&extra) }).unwrap();
        let plain = net.grads();
        let disc = names.iter().position(|n| n.starts_with("D/")).unwrap();
        let ratio = harmonized[disc].sum(Kind::Double).double_value(&[]) / plain[disc].sum(Kind::Double).double_value(&[]);
        assert!((ratio - records[0].w1).abs() < 1e-4, "discriminator gradient scaled by {ratio}, expected w1 = {}", records[0].w1);
        return;
    }
    panic!("no conflicting seed found in 40 tries");
}

#[test]
fn existing_gradients_are_accumulated_not_overwritten() {
    let _rng = torch_rng();
    let h = Harmonizer::gh();
    let net = Net::new(3);
    let scope = net.params.scope("features", &["G/"]).unwrap();
    // A gradient already present from an earlier term of the step.
    let (_, cls, _) = net.losses(3);
    (&cls * 2.0).backward();
    let before = net.grads();
    let (transfer, cls, _) = net.losses(3);
    backward_two_pass(&h, &net.params, &StepLosses { pairs: vec![LossPair::new(&transfer, &cls, &scope)], unharmonized: None }).unwrap();
    let after = net.grads();
    let (alone, _, _) = step_without_extra(&h, 3);
    for ((b, a), s) in before.iter().zip(&after).zip(&alone) {
        assert!(max_relative_error(&(a - b), s) < 1e-5);
    }
}

fn step_without_extra(h: &Harmonizer, seed: i64) -> (Vec<Tensor>, Vec<Harmonization>, Vec<String>) {
    let net = Net::new(seed);
    let (transfer, cls, _) = net.losses(seed);
    let scope = net.params.scope("features", &["G/"]).unwrap();
    let records = backward_two_pass(h, &net.params, &StepLosses { pairs: vec![LossPair::new(&transfer, &cls, &scope)], unharmonized: None }).unwrap();
    (net.grads(), records, net.params.names().to_vec())
}

#[test]
fn unknown_scope_prefix_is_an_error_naming_the_scope() {
    let _rng = torch_rng();
    let net = Net::new(0);
    let err = net.params.scope("backbone", &["B/"]).unwrap_err().to_string();
    assert!(err.contains("backbone") && err.contains("G/"), "{err}");
}

#[test]
fn scope_only_harmonizes_the_scope_and_leaves_heads_plain() {
    let _rng = torch_rng();
    use baselines::harmonizer::OutsideScope;
    let scoped_gh = Harmonizer::gh().with_outside_scope(OutsideScope::ScopeOnly);
    for seed in 0..40 {
        let (scoped, records, names) = step_without_extra(&scoped_gh, seed);
        if !records[0].conflict {
            continue;
        }
        let (reweighted, _, _) = step_without_extra(&Harmonizer::gh(), seed);
        let (plain, _, _) = step_without_extra(&Harmonizer::none(), seed);
        for (i, name) in names.iter().enumerate() {
            let expected = if name.starts_with("G/") { &reweighted[i] } else { &plain[i] };
            let err = max_relative_error(&scoped[i], expected);
            assert!(err < 1e-5, "{name}: relative error {err:e} (inside the scope: GH's weights; outside: plain)");
        }
        // Under a conflict the harmonized scope gradient differs from the plain one.
        let g = names.iter().position(|n| n.starts_with("G/")).unwrap();
        assert!(max_relative_error(&scoped[g], &plain[g]) > 1e-4, "scope gradient was not harmonized");
        let net = Net::new(seed);
        let err = backward_three_pass_reference(&scoped_gh, &net.params, &StepLosses { pairs: vec![], unharmonized: None }).unwrap_err();
        assert!(err.to_string().contains("two-pass"));
        return;
    }
    panic!("no conflicting seed found in 40 tries");
}
