//! The image protocols' parameter groups: after a training step at iteration i, every trainable
//! variable's optimiser group has the schedule's learning rate times its multiplier (CDAN and GVB:
//! x1 on the ResNet, x10 on the bottleneck, classifier, bridge and discriminator; MCD and DWL: one
//! fixed rate). Randomly initialised ResNet-50 on 32×32 inputs (small, stated).

use baselines::harmonizer::Harmonizer;
use baselines::methods::common::{GroupMultipliers, LrSchedule, Multipliers, Sgd};
use baselines::methods::{cdan, dwl, gvb, mcd, BackwardPath, Batch, MethodConfig, Setup, StepContext};
use baselines::networks::resnet::Depth;
use baselines::networks::{Dropout, ImageBackbone, Network};
use tch::{Device, Kind, Tensor};

const BACKBONE: ImageBackbone = ImageBackbone { network: Depth::Resnet50, pretrained: false };

fn image_configs() -> Vec<MethodConfig> {
    let sgd = Sgd { lr: 0.001, momentum: 0.9, weight_decay: 0.001, nesterov: true };
    let inv = LrSchedule::Inv { gamma: 0.001, power: 0.75 };
    let tenfold = GroupMultipliers { lr: Multipliers { backbone: 1.0, new_layers: 10.0 }, weight_decay: Multipliers::default() };
    vec![
        MethodConfig::Cdan(cdan::Config {
            batch: 2,
            sgd: sgd.clone(),
            lr_schedule: inv,
            discriminator_lr_schedule: inv,
            trade_off: 1.0,
            conditioning: cdan::Conditioning::Random { dim: 64 },
            discriminator_hidden: 32,
            grl_max_iter: 10000,
            source_only_epochs: 0,
            joint_forward: false,
            backbone: Some(BACKBONE),
            bottleneck: Some(16),
            multipliers: tenfold,
        }),
        MethodConfig::Gvb(gvb::Config {
            batch: 2,
            sgd,
            lr_schedule: inv,
            trade_off: 1.0,
            gvbg_weight: 1.0,
            gvbd_weight: 1.0,
            discriminator_hidden: 32,
            grl_max_iter: 10000,
            joint_forward: false,
            backbone: Some(BACKBONE),
            multipliers: tenfold,
        }),
        MethodConfig::Mcd(mcd::Config {
            batch: 2,
            lr: 0.001,
            momentum_generator: 0.0,
            momentum_heads: 0.9,
            weight_decay: 5e-4,
            trade_off: 10.0,
            entropy_weight: 0.01,
            num_k: 1,
            head_hidden: 16,
            backbone: Some(BACKBONE),
        }),
        MethodConfig::Dwl(dwl::Config {
            batch: 2,
            lr: 0.001,
            momentum: 0.9,
            weight_decay: 5e-4,
            source_steps: 1,
            balance_steps: 1,
            adversarial_weight: 0.2,
            pseudo_label_threshold: 0.9,
            initial_balance: 0.5,
            backbone: Some(BACKBONE),
        }),
    ]
}

#[test]
fn each_group_gets_its_multiplied_rate_after_a_schedule_step() {
    let setup = Setup {
        device: Device::Cpu,
        network: Network::Image { backbone: BACKBONE, weights: None },
        classes: 3,
        source_digits: None,
        iters_per_epoch: 100,
        dropout: Dropout::On,
    };
    let iteration = 1000;
    let factor = 2f64.powf(-0.75);
    for config in image_configs() {
        tch::manual_seed(0);
        let mut method = config.build(&setup).unwrap();
        let mut ctx = StepContext::new(Harmonizer::gh(), BackwardPath::TwoPass);
        ctx.begin(iteration, false);
        let batch = Batch {
            source: Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
            labels: Tensor::from_slice(&[0i64, 2]),
            target: Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
        };
        method.train_step(&mut ctx, &batch).unwrap();
        let rates = method.learning_rates();
        let trainable: usize = rates.len();
        assert!(trainable > 160, "{}: {trainable} variables", config.name());
        for (name, lr) in &rates {
            let is_backbone = name.starts_with("base/backbone.") || name.starts_with("G/");
            let expected = match config.name().name() {
                "cdan" | "gvb" => 0.001 * factor * if is_backbone { 1.0 } else { 10.0 },
                _ => 0.001,
            };
            assert!((lr - expected).abs() < 1e-12, "{} {name}: lr {lr}, expected {expected}", config.name());
        }
        // Both groups are present where the protocol has multipliers.
        if matches!(config.name().name(), "cdan" | "gvb") {
            assert!(rates.iter().any(|(n, _)| n.starts_with("base/backbone.conv1")));
            assert!(rates.iter().any(|(n, _)| n.starts_with("disc/")));
            assert!(rates.iter().any(|(n, _)| n.starts_with("base/classifier")));
        }
    }
}
