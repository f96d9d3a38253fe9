//! bench-iteration on the digits protocol: the baseline's real step on the task's own input
//! format (what a digits cell's time split is compared with).

use baselines::harmonizer::Harmonizer;
use baselines::methods::MethodName;
use bench_suite::iteration_bench::{render, run, IterationBenchConfig};
use bench_suite::protocol::Protocol;
use tch::Device;

#[test]
fn digits_iterations_run_cdans_step_on_lenet_inputs() {
    let protocol = Protocol::embedded().unwrap();
    let config = IterationBenchConfig {
        device: Device::Cpu,
        dataset: "digits".into(),
        baselines: vec![MethodName::Cdan],
        harmonizers: vec![Harmonizer::none(), Harmonizer::gh()],
        batch: Some(8),
        image_side: 224,
        warmup: 1,
        iterations: 2,
    };
    let timings = run(&protocol, &config).unwrap();
    assert_eq!(timings.len(), 2);
    for t in &timings {
        assert_eq!((t.backbone.as_str(), t.input.as_str(), t.batch, t.seconds.len()), ("lenet", "1x28x28", 8, 2), "{t:?}");
        assert!(t.seconds.iter().all(|s| *s > 0.0));
    }
    // run() refuses timings whose steps never formed the harmonized pair: with CDAN's
    // source-only first epoch that was every timed step before the benchmark started past it.
    let text = render(&config, &timings);
    assert!(text.contains("median ms/it"), "{text}");
    assert!(text.contains("digits protocol, random 1x28x28 inputs") && text.contains("cdan      gh"), "{text}");
}
