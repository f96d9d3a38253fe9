//! Small versions of every baseline for CPU tests (narrow heads, small batches), shared by the
//! test binaries that train them.
#![allow(dead_code)]

use baselines::methods::common::{GroupMultipliers, LrSchedule, Multipliers, Sgd};
use baselines::methods::ssrt::{self, SafeTrainingConfig, SafeTrainingMode};
use baselines::data::DigitsTask;
use baselines::harmonizer::Harmonizer;
use baselines::methods::{cdan, dwl, gvb, mcd, source_only, BackwardPath, MethodConfig};
use baselines::train::{RunSpec, Schedule};
use baselines::networks::vit::{VitBackbone, VitConfig, VitWeights};

pub fn sgd(lr: f64) -> Sgd {
    Sgd { lr, momentum: 0.9, weight_decay: 5e-4, nesterov: false }
}

/// Small versions of every baseline (narrow heads, small batches) for CPU tests.
pub fn configs() -> Vec<MethodConfig> {
    vec![
        MethodConfig::SourceOnly(source_only::Config { batch: 32, sgd: sgd(0.01), lr_schedule: LrSchedule::Fixed }),
        MethodConfig::Cdan(cdan::Config {
            batch: 32,
            sgd: sgd(0.01),
            lr_schedule: LrSchedule::EpochStep { every: 2, gamma: 0.5 },
            discriminator_lr_schedule: LrSchedule::Fixed,
            trade_off: 1.0,
            conditioning: cdan::Conditioning::Random { dim: 64 },
            discriminator_hidden: 64,
            grl_max_iter: 10000,
            source_only_epochs: 1,
            joint_forward: true,
            backbone: None, bottleneck: None, multipliers: Default::default(),
        }),
        MethodConfig::Mcd(mcd::Config {
            batch: 32,
            lr: 0.02,
            momentum_generator: 0.0,
            momentum_heads: 0.9,
            weight_decay: 5e-4,
            trade_off: 0.3,
            entropy_weight: 0.03,
            num_k: 2,
            head_hidden: 64,
            backbone: None,
        }),
        MethodConfig::Dwl(dwl::Config {
            batch: 16,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            source_steps: 2,
            balance_steps: 2,
            adversarial_weight: 0.2,
            pseudo_label_threshold: 0.9,
            initial_balance: 0.5,
            backbone: None,
        }),
        MethodConfig::Gvb(gvb::Config {
            batch: 32,
            sgd: sgd(0.01),
            lr_schedule: LrSchedule::Inv { gamma: 0.001, power: 0.75 },
            trade_off: 1.0,
            gvbg_weight: 1.0,
            gvbd_weight: 1.0,
            discriminator_hidden: 64,
            grl_max_iter: 10000,
            joint_forward: true, backbone: None, multipliers: Default::default(),
        }),
    ]
}

/// A tiny SSRT (ViT depth 2, width 32, 32×32 input) with safe training in `mode`.
pub fn ssrt(mode: SafeTrainingMode) -> ssrt::Config {
    ssrt::Config {
        batch: 8,
        sgd: Sgd { lr: 0.01, momentum: 0.9, weight_decay: 5e-4, nesterov: true },
        lr_schedule: LrSchedule::Inv { gamma: 0.001, power: 0.75 },
        multipliers: GroupMultipliers { lr: Multipliers { backbone: 0.1, new_layers: 1.0 }, weight_decay: Multipliers::default() },
        bottleneck: 32,
        sr_alpha: 0.2,
        sr_layers: vec![0, 1],
        sr_loss_weight: 0.2,
        sr_epsilon: 0.4,
        sr_loss_p: 0.5,
        domain_loss_weight: 1.0,
        safe_training: SafeTrainingConfig { enabled: true, window: 4, scales: 2, mode },
        grl_high: 0.1,
        grl_max_iter: 1000.0,
        vit: VitBackbone { weights: VitWeights::In21kFtIn1k, pretrained: false, config: VitConfig { image: 32, patch: 16, width: 32, depth: 2, heads: 2, mlp: 64 } },
    }
}

/// A run of `method` on the digits task M→U, seed 3, telemetry every 2nd step (synthetic data in
/// the tests: the task names the networks' input format).
pub fn spec(method: MethodConfig, harmonizer: Harmonizer, schedule: Schedule) -> RunSpec {
    RunSpec {
        task: DigitsTask::parse("mnist-usps").unwrap().into(),
        images: None,
        digits_input: None,
        seed: 3,
        method,
        harmonizer,
        schedule,
        stand_ins: Default::default(),
        telemetry_every: 2,
        backward: BackwardPath::TwoPass,
        requested_deviations: Vec::new(),
    }
}
