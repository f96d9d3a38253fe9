//! GH / GH++ in your own training loop: a tiny two-task model (a shared feature layer, a classifier
//! and a domain head behind gradient reversal) trained on random data, with the step's two losses
//! harmonized over the shared layer. Run it: `cargo run -p harmonizer --example own_training`.
//! (`harmonizer/tests/example.rs` runs it as a test.)

use harmonizer::autograd::{backward_two_pass, LossPair, Parameters, StepLosses};
use harmonizer::{GhppRule, Harmonizer, HarmonizationSummary, Method};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    // The shared parameters ("feat") are the scope whose two gradients are harmonized.
    let features = nn::seq().add(nn::linear(&root / "feat", 16, 32, Default::default())).add_fn(|x| x.relu());
    let classifier = nn::linear(&root / "cls", 32, 3, Default::default());
    let domain_head = nn::linear(&root / "dom", 32, 1, Default::default());
    let mut optimizer = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.05)?;

    // Every trainable variable, in a fixed order; the scope is the shared feature layer.
    let params = Parameters::from_stores(&[("net", &vs)]);
    let scope = params.scope("shared features", &["net/feat"])?;
    let harmonizer = Harmonizer::new(Method::GhPlusPlus, 0.5, GhppRule::Released)?;
    let mut summary = HarmonizationSummary::default();

    for step in 0..50 {
        let (source, labels) = (Tensor::randn([32, 16], (Kind::Float, Device::Cpu)), Tensor::randint(3, [32], (Kind::Int64, Device::Cpu)));
        let target = Tensor::randn([32, 16], (Kind::Float, Device::Cpu)) + 0.5;
        let (fs, ft) = (features.forward(&source), features.forward(&target));
        // L1: the alignment loss, a domain classifier on gradient-reversed shared features.
        let domains = Tensor::cat(&[Tensor::ones([32], (Kind::Float, Device::Cpu)), Tensor::zeros([32], (Kind::Float, Device::Cpu))], 0);
        let both = Tensor::cat(&[&fs, &ft], 0);
        let reversed = &both.detach() * 2.0 - &both; // forward: the features; backward: −gradient
        let transfer = domain_head.forward(&reversed).squeeze_dim(1).binary_cross_entropy_with_logits::<Tensor>(&domains, None, None, Reduction::Mean);
        // L2: the classification loss on the source.
        let classification = classifier.forward(&fs).cross_entropy_for_logits(&labels);

        optimizer.zero_grad();
        // Instead of (transfer + classification).backward():
        let losses = StepLosses { pairs: vec![LossPair::new(&transfer, &classification, &scope)], unharmonized: None };
        let records = backward_two_pass(&harmonizer, &params, &losses)?;
        optimizer.step();
        summary.add(&records[0]);
        if step % 10 == 0 {
            let h = &records[0];
            println!("step {step:2}: cos {:+.3}, conflict {}, w1 {:.3}, w2 {:.3}", h.cos, h.conflict, h.w1, h.w2);
        }
    }
    println!("{} steps, {} with a conflict; mean w1/w2 in conflict: {:?}", summary.measured_steps, summary.conflicts, summary.mean_weights_in_conflict());
    Ok(())
}
