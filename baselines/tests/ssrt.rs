//! SSRT on a tiny ViT (depth 2, width 32) over the easy synthetic digits pair: none / GH / GH++
//! train to complete records; the reversal's counter advances on evaluation forwards too; the
//! `restore` variant of safe training restores the weights of the last window boundary and the
//! released (`ramp-only`) one does not; parameter groups and learning rates as released.

use baselines::data::synthetic::easy_task;
use baselines::data::{DigitsFormat, DigitsTask};
use baselines::harmonizer::{GhppRule, Harmonizer};
use baselines::methods::ssrt::{self, SafeTrainingMode, Ssrt};
use baselines::methods::{BackwardPath, MethodConfig, Setup, StepContext, UdaMethod, Batch};
use baselines::networks::{Dropout, Network};
use baselines::train::{run, NoObserver, RunSpec, RunStatus, Schedule};
use tch::{Device, Tensor};

mod tiny;

static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(mode: SafeTrainingMode) -> ssrt::Config {
    tiny::ssrt(mode)
}

fn setup(c: &ssrt::Config) -> Setup {
    Setup { device: Device::Cpu, network: Network::Vit { backbone: c.vit, weights: None }, classes: 10, source_digits: None, iters_per_epoch: 4, dropout: Dropout::On }
}

#[test]
fn ssrt_trains_without_and_with_gh_and_gh_plus_plus_to_complete_records() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let data = easy_task(120, 60, DigitsFormat::Grey28, Device::Cpu, 5);
    for harmonizer in [Harmonizer::none(), Harmonizer::gh(), Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap()] {
        let spec = RunSpec {
            task: DigitsTask::parse("mnist-usps").unwrap().into(),
            images: None,
        digits_input: None,
            seed: 1,
            method: MethodConfig::Ssrt(config(SafeTrainingMode::RampOnly)),
            harmonizer,
            schedule: Schedule { iterations: 8, iters_per_epoch: 4, eval_every: 4 },
            stand_ins: Default::default(),
            telemetry_every: 2,
            backward: BackwardPath::TwoPass,
            requested_deviations: Vec::new(),
        };
        let summary = run(&spec, &data, Device::Cpu, &mut NoObserver).unwrap();
        assert_eq!(summary.status, RunStatus::Completed, "{}: {summary:?}", harmonizer.label());
        assert_eq!(summary.iterations, 8);
        assert!(summary.final_accuracy.is_some_and(|a| (0.0..=1.0).contains(&a)));
        let pair = &summary.harmonization["cls/adaptation"];
        assert!(pair.measured_steps > 0, "{}: the pair was measured", harmonizer.label());
    }
}

#[test]
fn the_reversal_counter_advances_on_training_and_evaluation_forwards() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let c = config(SafeTrainingMode::RampOnly);
    let mut m = Ssrt::new(c.clone(), &setup(&c)).unwrap();
    assert_eq!(m.grl_coefficient(0), 0.0);
    assert!((m.grl_coefficient(1000) - 0.0462117).abs() < 1e-6, "{}", m.grl_coefficient(1000));
    let images = Tensor::randn([4, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
    let _ = m.eval_heads(&images);
    let _ = m.eval_heads(&images);
    assert_eq!(m.forwards(), 2, "each evaluation forward advances the counter");
    let batch = Batch { source: images.shallow_clone(), labels: Tensor::from_slice(&[0i64, 1, 2, 3]), target: images.shallow_clone() };
    let mut ctx = StepContext::new(Harmonizer::none(), BackwardPath::TwoPass);
    ctx.begin(0, true);
    m.train_step(&mut ctx, &batch).unwrap();
    assert_eq!(m.forwards(), 3);
    let names: Vec<&str> = ctx.losses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cls", "domain", "sr", "ramp"]);
    assert_eq!(ctx.losses[3].1, 0.0, "the ramp starts at 0");
}

#[test]
fn the_restore_variant_restores_the_boundary_weights_and_the_released_one_does_not() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let images = Tensor::randn([4, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
    let batch = Batch { source: images.shallow_clone(), labels: Tensor::from_slice(&[0i64, 1, 2, 3]), target: images.shallow_clone() };
    for (mode, restores) in [(SafeTrainingMode::Restore, true), (SafeTrainingMode::RampOnly, false)] {
        tch::manual_seed(0);
        let c = config(mode);
        let mut m = Ssrt::new(c.clone(), &setup(&c)).unwrap();
        let mut ctx = StepContext::new(Harmonizer::none(), BackwardPath::TwoPass);
        let at_boundary: Vec<(String, Tensor)> = m.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
        for i in 0..4 {
            ctx.begin(i, false);
            m.train_step(&mut ctx, &batch).unwrap();
        }
        // A drop was flagged in the window 0..3: the restore happens at the start of iteration 4.
        m.safe_training().restore_pending = true;
        m.begin_iteration(4);
        let same = m.state().iter().zip(&at_boundary).all(|((_, now), (_, then))| now.equal(then));
        assert_eq!(same, restores, "{mode:?}");
        assert!(!m.safe_training().restore_pending);
    }
}

#[test]
fn learning_rates_follow_the_groups_backbone_times_0_1() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let c = config(SafeTrainingMode::RampOnly);
    let mut m = Ssrt::new(c.clone(), &setup(&c)).unwrap();
    let images = Tensor::randn([2, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
    let batch = Batch { source: images.shallow_clone(), labels: Tensor::from_slice(&[0i64, 1]), target: images.shallow_clone() };
    let mut ctx = StepContext::new(Harmonizer::none(), BackwardPath::TwoPass);
    ctx.begin(10, false);
    m.train_step(&mut ctx, &batch).unwrap();
    let schedule = (1.0f64 + 0.001 * 10.0).powf(-0.75);
    for (name, lr) in m.learning_rates() {
        let expected = if name.starts_with("model/backbone.") { 0.1 } else { 1.0 } * 0.01 * schedule;
        assert!((lr - expected).abs() < 1e-12, "{name}: {lr} vs {expected}");
    }
    // sr_layers beyond the ViT's depth are refused, naming the layer.
    let mut bad = c.clone();
    bad.sr_layers = vec![0, 8];
    let err = Ssrt::new(bad.clone(), &setup(&bad)).err().unwrap().to_string();
    assert!(err.contains("sr_layers holds 8"), "{err}");
}

#[test]
fn a_pretrained_vit_without_its_weights_names_the_fetch() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = config(SafeTrainingMode::RampOnly);
    c.vit.pretrained = true;
    let data = easy_task(20, 10, DigitsFormat::Grey28, Device::Cpu, 5);
    let spec = RunSpec {
        task: DigitsTask::parse("mnist-usps").unwrap().into(),
        images: None,
        digits_input: None,
        seed: 1,
        method: MethodConfig::Ssrt(c),
        harmonizer: Harmonizer::none(),
        schedule: Schedule { iterations: 1, iters_per_epoch: 1, eval_every: 1 },
        stand_ins: Default::default(),
        telemetry_every: 2,
        backward: BackwardPath::TwoPass,
        requested_deviations: Vec::new(),
    };
    let err = format!("{:#}", run(&spec, &data, Device::Cpu, &mut NoObserver).unwrap_err());
    assert!(err.contains("data-fetch fetch vit-b16-in21k-ft-in1k"), "{err}");
}
