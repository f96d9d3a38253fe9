//! Times one training step three ways on a LeNet digits model, a ResNet-50 or a ViT-B/16 with a DANN-style
//! domain loss: the plain step (one backward of the summed loss), the released code's three-pass
//! GH step and this project's two-pass GH step. Prints per-step times and ratios to the plain step.
//!
//! Inputs are random tensors of the backbone's input shape: the step's cost does not depend on
//! pixel values. Source and target go through the feature extractor separately, as CDAN's code
//! does. The ResNet-50 and the ViT are randomly initialised (the cost does not depend on the
//! weights either).

use anyhow::{Context, Result};
use baselines::harmonizer::autograd::{
    backward_plain, backward_three_pass_reference, backward_two_pass, backward_two_pass_on_device, LossPair, Parameters,
    Scope, StepLosses,
};
use baselines::harmonizer::Harmonizer;
use baselines::networks::grl::reverse_gradient;
use baselines::networks::heads::{DomainDiscriminator, LinearClassifier};
use baselines::networks::init::LayerInit;
use baselines::networks::lenet::LeNet;
use baselines::networks::resnet::{Depth, ResNet};
use baselines::networks::vit::{Vit, VitConfig};
use baselines::networks::Dropout;
use std::time::Instant;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

#[derive(Clone, Debug)]
pub struct StepBenchConfig {
    pub device: Device,
    pub backbone: StepBackbone,
    /// Input side for ResNet-50 (224 in the image protocols).
    pub image_side: i64,
    pub batch_per_domain: i64,
    pub harmonizer: Harmonizer,
    pub warmup_steps: usize,
    pub rounds: usize,
    pub steps_per_round: usize,
    pub seed: i64,
}

/// The feature extractor of the benchmarked model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StepBackbone {
    /// LeNet on 1×28×28 digits (500 features); target: two-pass ≤ 1.6x plain.
    Lenet,
    /// torchvision's ResNet-50 on 3×S×S images (2048 features); target: two-pass ≤ 1.7x plain.
    Resnet50,
    /// timm's ViT-B/16 (SSRT's backbone) on 3×S×S images, S a multiple of 16 (768 features);
    /// target: two-pass ≤ 1.7x plain.
    VitB16,
}

impl StepBackbone {
    pub fn target_ratio(self) -> f64 {
        match self {
            StepBackbone::Lenet => 1.6,
            StepBackbone::Resnet50 | StepBackbone::VitB16 => 1.7,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Plain,
    ThreePass,
    TwoPass,
    TwoPassOnDevice,
}

impl StepKind {
    pub const ALL: [StepKind; 4] = [StepKind::Plain, StepKind::ThreePass, StepKind::TwoPass, StepKind::TwoPassOnDevice];

    pub fn label(self) -> &'static str {
        match self {
            StepKind::Plain => "plain step (1 backward, no harmonization)",
            StepKind::ThreePass => "three-pass step (released code's shape)",
            StepKind::TwoPass => "two-pass step, weights on the host",
            StepKind::TwoPassOnDevice => "two-pass step, weights on the device",
        }
    }
}

/// Median over rounds of the mean seconds per step, for each step kind.
#[derive(Clone, Debug)]
pub struct StepBenchResult {
    pub seconds_per_step: Vec<(StepKind, f64)>,
    /// Values read back from the device per step (each a sync on CUDA), by kind.
    pub host_reads_per_step: Vec<(StepKind, f64)>,
    pub conflict_steps: usize,
    pub measured_steps: usize,
}

impl StepBenchResult {
    pub fn seconds(&self, kind: StepKind) -> f64 {
        self.seconds_per_step.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s).unwrap_or(f64::NAN)
    }

    pub fn ratio_to_plain(&self, kind: StepKind) -> f64 {
        self.seconds(kind) / self.seconds(StepKind::Plain)
    }
}

struct DannModel {
    /// Owns the variables the modules and optimizers use.
    _stores: [nn::VarStore; 3],
    features: Box<dyn ModuleT>,
    classifier: LinearClassifier,
    discriminator: DomainDiscriminator,
    params: Parameters,
    scope: Scope,
    optimizers: Vec<nn::Optimizer>,
}

impl DannModel {
    fn new(device: Device, backbone: StepBackbone, image_side: i64) -> Result<Self> {
        let stores = [nn::VarStore::new(device), nn::VarStore::new(device), nn::VarStore::new(device)];
        let (features, dim): (Box<dyn ModuleT>, i64) = match backbone {
            StepBackbone::Lenet => (Box::new(LeNet::new(&stores[0].root(), Dropout::On)), LeNet::FEATURES),
            StepBackbone::Resnet50 => (Box::new(ResNet::new(&stores[0].root(), Depth::Resnet50)), ResNet::FEATURES),
            StepBackbone::VitB16 => {
                anyhow::ensure!(image_side > 0 && image_side % 16 == 0, "--image-side {image_side}: ViT-B/16 needs a multiple of 16 (224 in SSRT)");
                let config = VitConfig { image: image_side, ..VitConfig::B16 };
                (Box::new(Vit::new(&stores[0].root(), config)), config.width)
            }
        };
        let classifier = LinearClassifier::new(&stores[1].root(), dim, 10, LayerInit::PyTorchDefault);
        let discriminator = DomainDiscriminator::new(&stores[2].root(), dim, 500, LayerInit::XavierNormal, Dropout::On);
        let params =
            Parameters::from_stores(&[("G", &stores[0]), ("C", &stores[1]), ("D", &stores[2])]);
        let scope = params.scope("feature extractor", &["G/"])?;
        let optimizers = stores
            .iter()
            .map(|vs| nn::Sgd { momentum: 0.9, ..Default::default() }.build(vs, 0.01))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DannModel { _stores: stores, features, classifier, discriminator, params, scope, optimizers })
    }

    /// Forward pass: (L_transfer, L_cls), the pair in CDAN's order.
    fn losses(&self, batch: &Batch) -> (Tensor, Tensor) {
        let fs = self.features.forward_t(&batch.source, true);
        let ft = self.features.forward_t(&batch.target, true);
        let cls = self.classifier.forward(&fs).cross_entropy_for_logits(&batch.labels);
        let both = Tensor::cat(&[&fs, &ft], 0);
        let logits = self.discriminator.forward_t(&reverse_gradient(&both, 1.0), true);
        let transfer = logits.squeeze_dim(1).binary_cross_entropy_with_logits::<Tensor>(
            &batch.domains,
            None,
            None,
            Reduction::Mean,
        );
        (transfer, cls)
    }

    /// One step; returns whether the measured pair conflicted (None for the plain step).
    fn step(&mut self, kind: StepKind, harmonizer: &Harmonizer, batch: &Batch) -> Result<Option<bool>> {
        for opt in &mut self.optimizers {
            opt.zero_grad();
        }
        let (transfer, cls) = self.losses(batch);
        let losses = StepLosses {
            pairs: vec![LossPair::new(&transfer, &cls, &self.scope)],
            unharmonized: None,
        };
        let conflict = match kind {
            StepKind::Plain => {
                backward_plain(&losses)?;
                None
            }
            StepKind::ThreePass => {
                Some(backward_three_pass_reference(harmonizer, &self.params, &losses)?[0].conflict)
            }
            StepKind::TwoPass => Some(backward_two_pass(harmonizer, &self.params, &losses)?[0].conflict),
            StepKind::TwoPassOnDevice => {
                // Nothing read back: the conflict count is the host path's business.
                backward_two_pass_on_device(harmonizer, &self.params, &losses)?;
                None
            }
        };
        for opt in &mut self.optimizers {
            opt.step();
        }
        Ok(conflict)
    }
}

struct Batch {
    source: Tensor,
    labels: Tensor,
    target: Tensor,
    domains: Tensor,
}

impl Batch {
    fn random(n: i64, shape: [i64; 3], device: Device) -> Self {
        let opts = (Kind::Float, device);
        let [c, h, w] = shape;
        Batch {
            source: Tensor::randn([n, c, h, w], opts),
            labels: Tensor::randint(10, [n], (Kind::Int64, device)),
            target: Tensor::randn([n, c, h, w], opts),
            domains: Tensor::cat(&[Tensor::ones([n], opts), Tensor::zeros([n], opts)], 0),
        }
    }
}

/// Runs the benchmark. Each kind trains its own copy of the model from the same initialisation;
/// rounds interleave the kinds so that drift in machine load hits all of them alike.
pub fn run(config: &StepBenchConfig) -> Result<StepBenchResult> {
    tch::manual_seed(config.seed);
    let shape = match config.backbone {
        StepBackbone::Lenet => [1, 28, 28],
        StepBackbone::Resnet50 | StepBackbone::VitB16 => [3, config.image_side, config.image_side],
    };
    let batch = Batch::random(config.batch_per_domain, shape, config.device);
    let mut models = Vec::new();
    for _ in StepKind::ALL {
        tch::manual_seed(config.seed);
        models.push(DannModel::new(config.device, config.backbone, config.image_side).context("building the DANN model")?);
    }
    let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); StepKind::ALL.len()];
    let mut reads = vec![0u64; StepKind::ALL.len()];
    let (mut conflicts, mut measured) = (0, 0);
    for (k, kind) in StepKind::ALL.into_iter().enumerate() {
        for _ in 0..config.warmup_steps {
            models[k].step(kind, &config.harmonizer, &batch)?;
        }
    }
    for _ in 0..config.rounds {
        for (k, kind) in StepKind::ALL.into_iter().enumerate() {
            baselines::device::synchronize(config.device);
            let reads_before = baselines::harmonizer::host_reads::count();
            let start = Instant::now();
            for _ in 0..config.steps_per_round {
                if let Some(c) = models[k].step(kind, &config.harmonizer, &batch)? {
                    measured += 1;
                    conflicts += usize::from(c);
                }
            }
            baselines::device::synchronize(config.device);
            per_round[k].push(start.elapsed().as_secs_f64() / config.steps_per_round as f64);
            reads[k] += baselines::harmonizer::host_reads::count() - reads_before;
        }
    }
    let seconds_per_step = StepKind::ALL
        .into_iter()
        .zip(per_round)
        .map(|(kind, mut times)| {
            times.sort_by(f64::total_cmp);
            (kind, times[times.len() / 2])
        })
        .collect();
    let steps = (config.rounds * config.steps_per_round).max(1) as f64;
    let host_reads_per_step = StepKind::ALL.into_iter().zip(reads).map(|(kind, n)| (kind, n as f64 / steps)).collect();
    Ok(StepBenchResult { seconds_per_step, host_reads_per_step, conflict_steps: conflicts, measured_steps: measured })
}

/// The report printed by `bench-suite bench-step`.
pub fn render(config: &StepBenchConfig, result: &StepBenchResult) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "step benchmark: {m}, DANN-style domain loss (GRL + 500-500-1 discriminator), \
         batch {b} source + {b} target\nharmonizer {h}, device {d}, median of {r} rounds x {s} steps \
         (after {w} warm-up steps per kind)\n\n",
        m = match config.backbone {
            StepBackbone::Lenet => "LeNet digits model (1x28x28)".to_owned(),
            StepBackbone::Resnet50 => format!("ResNet-50 ({}x{} RGB, randomly initialised)", config.image_side, config.image_side),
            StepBackbone::VitB16 => format!("ViT-B/16 ({}x{} RGB, randomly initialised)", config.image_side, config.image_side),
        },
        b = config.batch_per_domain,
        h = config.harmonizer.label(),
        d = baselines::device::describe(config.device),
        r = config.rounds,
        s = config.steps_per_round,
        w = config.warmup_steps,
    ));
    out.push_str(&format!("{:<45} {:>10} {:>14} {:>16}\n", "step", "ms/step", "x plain step", "host reads/step"));
    for kind in StepKind::ALL {
        let reads = result.host_reads_per_step.iter().find(|(k, _)| *k == kind).map_or(f64::NAN, |(_, r)| *r);
        out.push_str(&format!(
            "{:<45} {:>10.2} {:>14.2} {:>16.2}\n",
            kind.label(),
            result.seconds(kind) * 1e3,
            result.ratio_to_plain(kind),
            reads
        ));
    }
    out.push_str("(a host read waits for the device's queue on CUDA: a sync; training on CUDA takes the device path)\n");
    let two = result.ratio_to_plain(StepKind::TwoPass);
    out.push_str(&format!(
        "\ntwo-pass / three-pass: {:.2}; target two-pass <= {}x plain: {} ({:.2}x)\n",
        result.seconds(StepKind::TwoPass) / result.seconds(StepKind::ThreePass),
        config.backbone.target_ratio(),
        if two <= config.backbone.target_ratio() { "met" } else { "NOT met" },
        two
    ));
    out.push_str(&format!(
        "harmonized steps with a conflict (d < 0): {} of {}\n",
        result.conflict_steps, result.measured_steps
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every backbone builds and runs all four step kinds (tiny inputs: this checks the plumbing,
    /// not the speed, which `bench-suite bench-step` measures).
    #[test]
    fn every_backbone_runs_the_four_steps() {
        for (backbone, side) in [(StepBackbone::Lenet, 28), (StepBackbone::VitB16, 32)] {
            let config = StepBenchConfig {
                device: Device::Cpu,
                backbone,
                image_side: side,
                batch_per_domain: 2,
                harmonizer: Harmonizer::gh(),
                warmup_steps: 0,
                rounds: 1,
                steps_per_round: 1,
                seed: 0,
            };
            let result = run(&config).unwrap();
            assert_eq!(result.measured_steps, 2, "{backbone:?}: the two harmonized kinds measured one step each");
            for kind in StepKind::ALL {
                assert!(result.seconds(kind).is_finite() && result.seconds(kind) > 0.0, "{backbone:?} {kind:?}");
            }
            assert!(render(&config, &result).contains("two-pass / three-pass"));
            let reads: Vec<f64> = result.host_reads_per_step.iter().map(|(_, r)| *r).collect();
            assert_eq!(reads, [0.0, 1.0, 1.0, 0.0], "{backbone:?}: host reads per step of plain, three-pass, two-pass on the host, on the device");
        }
        let bad = StepBenchConfig { device: Device::Cpu, backbone: StepBackbone::VitB16, image_side: 30, batch_per_domain: 1, harmonizer: Harmonizer::gh(), warmup_steps: 0, rounds: 1, steps_per_round: 1, seed: 0 };
        assert!(format!("{:#}", run(&bad).unwrap_err()).contains("multiple of 16"));
    }
}
