//! `--precision bf16`: bfloat16 autocast of the forward passes, on the CPU as on CUDA. The scope
//! casts what PyTorch's autocast casts and is suspended for backward passes; every baseline
//! trains under it to a result that learns, from the same first-step losses as float32 (to
//! bfloat16's precision), which then differ: autocast was in force.
//! Its own test binary: the precision is process-wide.

use baselines::data::synthetic::easy_task;
use baselines::data::DigitsFormat;
use baselines::harmonizer::{GhppRule, Harmonizer};
use baselines::methods::ssrt::SafeTrainingMode;
use baselines::methods::MethodConfig;
use baselines::numerics::{self, AutocastScope, Numerics, Precision};
use baselines::train::{run, RunObserver, RunSpec, RunStatus, RunSummary, Schedule};
use tch::{nn, nn::Module, Device, Kind, Tensor};

mod tiny;

/// The precision and libtorch's random generator are process-wide: one test at a time.
static PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_scope_casts_matmuls_keeps_losses_float32_and_is_suspended_for_backward() {
    let _one = PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = nn::linear(vs.root(), 8, 4, Default::default());
    let x = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
    assert_eq!(layer.forward(&x).kind(), Kind::Float, "no autocast outside a scope");
    {
        let _bf16 = AutocastScope::bf16(Device::Cpu).unwrap();
        assert!(numerics::enabled(false) && !numerics::enabled(true));
        let y = layer.forward(&x);
        assert_eq!(y.kind(), Kind::BFloat16, "linear runs in bfloat16");
        // As torch.autocast("cpu", dtype=torch.bfloat16) gives in PyTorch 2.11: cross-entropy
        // on the float32 list, softmax (without a dtype) not on the CPU's.
        let targets = Tensor::from_slice(&[0i64, 1, 3]);
        let loss = y.cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0);
        assert_eq!(loss.kind(), Kind::Float, "cross-entropy is on autocast's float32 list");
        assert_eq!(y.softmax(1, None).kind(), Kind::BFloat16);
        {
            let _off = AutocastScope::suspend().unwrap();
            assert!(!numerics::enabled(false));
            assert_eq!(layer.forward(&x).kind(), Kind::Float, "suspended: float32");
            loss.backward();
        }
        assert!(numerics::enabled(false), "the suspension ends with its scope");
        assert_eq!(layer.forward(&x).kind(), Kind::BFloat16);
    }
    assert!(!numerics::enabled(false), "the scope restores the state it found");
    for (name, g) in vs.variables().iter().map(|(n, v)| (n.clone(), v.grad())) {
        assert_eq!(g.kind(), Kind::Float, "{name}: gradients of float32 parameters stay float32");
        assert!(bool::try_from(g.isfinite().all()).unwrap() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}");
    }
    // Only bf16 asks the training loop for a scope.
    Numerics::default().apply().unwrap();
    assert!(AutocastScope::for_forward(Device::Cpu).unwrap().is_none());
    Numerics { precision: Precision::Bf16, deterministic: false }.apply().unwrap();
    assert!(AutocastScope::for_forward(Device::Cpu).unwrap().is_some());
    Numerics::default().apply().unwrap();
}

/// The losses of every telemetry step, by name.
#[derive(Default)]
struct Losses(Vec<Vec<(String, f64)>>);

impl RunObserver for Losses {
    fn telemetry(&mut self, _: u64, _: &[(String, baselines::harmonizer::Harmonization)], losses: &[(String, f64)]) -> anyhow::Result<()> {
        self.0.push(losses.to_vec());
        Ok(())
    }
}

fn train(spec: &RunSpec, precision: Precision, data: &baselines::data::TaskData) -> (RunSummary, Losses) {
    Numerics { precision, deterministic: false }.apply().unwrap();
    let mut losses = Losses::default();
    let summary = run(spec, data, Device::Cpu, &mut losses);
    Numerics::default().apply().unwrap();
    (summary.unwrap(), losses)
}

#[test]
fn every_baseline_trains_under_bf16_from_the_float32_losses() {
    let _one = PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let digits = easy_task(400, 200, DigitsFormat::Grey28, Device::Cpu, 11);
    let small = easy_task(120, 60, DigitsFormat::Grey28, Device::Cpu, 5);
    let cnn = Schedule { iterations: 40, iters_per_epoch: 20, eval_every: 20 };
    let mut runs: Vec<(RunSpec, &baselines::data::TaskData, bool)> = Vec::new();
    for config in tiny::configs() {
        let h = if config.name().harmonizes() { Harmonizer::gh_plus_plus(0.5, GhppRule::Released).unwrap() } else { Harmonizer::none() };
        runs.push((tiny::spec(config, h, cnn.clone()), &digits, true));
    }
    // SSRT's tiny ViT (attention, layer norm, GELU) for a few steps: too few to learn.
    let vit = Schedule { iterations: 8, iters_per_epoch: 4, eval_every: 4 };
    runs.push((tiny::spec(MethodConfig::Ssrt(tiny::ssrt(SafeTrainingMode::RampOnly)), Harmonizer::gh(), vit), &small, false));
    for (spec, data, learns) in &runs {
        let what = format!("{} + {}", spec.method.name(), spec.harmonizer.label());
        // float32 for the first few steps only (same initialisation, data order and schedules:
        // none of them depends on the number of iterations; a run must go 2 steps past a
        // warm-up); tests/methods.rs shows it learns.
        let steps = (spec.method.warmup_epochs() * spec.schedule.iters_per_epoch + 2).max(4);
        let short = RunSpec { schedule: Schedule { iterations: steps, ..spec.schedule.clone() }, ..spec.clone() };
        let (_, fp32_losses) = train(&short, Precision::Fp32, data);
        let (bf16, bf16_losses) = train(spec, Precision::Bf16, data);
        assert_eq!(bf16.status, RunStatus::Completed, "{what}: {bf16:?}");
        assert_eq!(bf16.iterations, spec.schedule.iterations, "{what}");
        if *learns {
            let b = bf16.best_accuracy_oracle.unwrap();
            assert!(b > 0.35, "{what}: best target accuracy under bf16 {b} (chance 0.10)");
        }
        // Same initialisation and first batch: the first step's losses agree to bfloat16's
        // precision (8 bits of mantissa, about 0.4 % per rounding)...
        let (first32, first16) = (&fp32_losses.0[0], &bf16_losses.0[0]);
        assert_eq!(first32.iter().map(|l| &l.0).collect::<Vec<_>>(), first16.iter().map(|l| &l.0).collect::<Vec<_>>(), "{what}");
        for ((name, a), (_, b)) in first32.iter().zip(first16) {
            assert!(b.is_finite() && (a - b).abs() <= 0.05 * a.abs().max(0.05), "{what}: first-step {name}: fp32 {a}, bf16 {b}");
        }
        // ...and are not all identical over those steps: the forward passes ran in bfloat16.
        let all = |l: &Losses| l.0.iter().flatten().map(|(_, v)| *v).collect::<Vec<f64>>();
        let (a, b) = (all(&fp32_losses), all(&bf16_losses));
        assert!(a.len() >= 2 && a[..] != b[..a.len()], "{what}: bf16 changed nothing in {a:?}: autocast was not in force");
    }
}
