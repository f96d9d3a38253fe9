//! Initialisation parity with PyTorch (networks/init.rs): each rule gives the reference bounds and
//! standard deviations, batch norm starts as `nn.BatchNorm*d` does, every layer of every digits
//! network uses the rule its baseline's code uses, and a fresh LeNet classifier starts at a
//! cross-entropy near ln 10.
//!
//! Statistical checks: a uniform U(±b) has standard deviation b/sqrt(3); with n draws the sample
//! standard deviation's relative spread is about 1/sqrt(2n) (uniform: 0.45/sqrt(n)). Tolerances
//! are stated per check and are at least 5 such spreads wide.

use baselines::data::DigitsFormat;
use baselines::methods::{cdan, common::LrSchedule, common::Sgd, dwl, gvb, mcd, MethodConfig, Setup};
use baselines::networks::heads::LinearClassifier;
use baselines::networks::init::{batch_norm1d, batch_norm2d, conv2d, linear, LayerInit};
use baselines::networks::lenet::LeNet;
use baselines::networks::Dropout;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn stats(t: &Tensor) -> (f64, f64, f64, i64) {
    let t = t.detach().to_kind(Kind::Double);
    let std = if t.numel() > 1 { t.std(true).double_value(&[]) } else { 0.0 };
    (t.mean(Kind::Double).double_value(&[]), std, t.abs().max().double_value(&[]), t.numel() as i64)
}

/// Checks a tensor drawn from the rule's weight (or bias) distribution.
fn assert_uniform(what: &str, t: &Tensor, bound: f64, std_tolerance: f64) {
    let (mean, std, max, n) = stats(t);
    assert!(max <= bound * (1.0 + 1e-6), "{what}: max |w| = {max} exceeds the bound {bound}");
    assert!(max >= bound * 0.9, "{what}: max |w| = {max} far inside the bound {bound} (n = {n})");
    let expected = bound / 3f64.sqrt();
    assert!((std / expected - 1.0).abs() < std_tolerance, "{what}: std {std} vs U(±{bound})'s {expected} (n = {n})");
    assert!(mean.abs() < 5.0 * expected / (n as f64).sqrt(), "{what}: mean {mean} (n = {n})");
}

fn assert_normal(what: &str, t: &Tensor, std_expected: f64, std_tolerance: f64) {
    let (mean, std, _, n) = stats(t);
    assert!((std / std_expected - 1.0).abs() < std_tolerance, "{what}: std {std} vs {std_expected} (n = {n})");
    assert!(mean.abs() < 5.0 * std_expected / (n as f64).sqrt(), "{what}: mean {mean} (n = {n})");
}

fn assert_constant(what: &str, t: &Tensor, value: f64) {
    let (_, _, _, n) = stats(t);
    // In the tensor's own precision: 0.1 is not exact in float32.
    let off = (t.detach() - value).abs().max().double_value(&[]);
    assert!(off == 0.0, "{what}: not all {n} values equal {value} (off by up to {off})");
}

#[test]
fn pytorch_default_linear_and_conv_have_the_reference_bounds() {
    let _rng = torch_rng();
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    // Linear 800 -> 500 (LeNet's fc): 400,000 weights, 500 biases; bound 1/sqrt(800).
    let fc = linear(vs.root() / "fc", 800, 500, LayerInit::PyTorchDefault);
    let b = 1.0 / 800f64.sqrt();
    assert_uniform("Linear 800->500 weight", &fc.ws, b, 0.01);
    assert_uniform("Linear 800->500 bias", fc.bs.as_ref().unwrap(), b, 0.15);
    // Conv 20 -> 50, k5 (LeNet's conv2): fan_in 500; 25,000 weights, 50 biases.
    let conv = conv2d(vs.root() / "conv", 20, 50, 5, 1, 0, LayerInit::PyTorchDefault);
    let b = 1.0 / 500f64.sqrt();
    assert_eq!(conv.ws.size(), [50, 20, 5, 5]);
    assert_uniform("Conv 20->50 k5 weight", &conv.ws, b, 0.03);
    // tch's own default for conv biases is 0: PyTorch's is U(±1/sqrt(fan_in)).
    let bias = conv.bs.as_ref().unwrap();
    let (_, _, max, _) = stats(bias);
    assert!(max > 0.0 && max <= b, "Conv bias: max |b| = {max}, expected within (0, {b}]");
    // Conv 1 -> 20 k5 (LeNet's conv1): fan_in 25, bound 0.2; 500 weights.
    let conv = conv2d(vs.root() / "conv1", 1, 20, 5, 1, 0, LayerInit::PyTorchDefault);
    assert_uniform("Conv 1->20 k5 weight", &conv.ws, 0.2, 0.15);
}

#[test]
fn xavier_kaiming_and_explicit_normal_rules_have_the_reference_spread() {
    let _rng = torch_rng();
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    // CDAN's discriminator layer 5000 -> 500: xavier_normal std sqrt(2 / 5500), zero bias.
    let x = linear(vs.root() / "x", 5000, 500, LayerInit::XavierNormal);
    assert_normal("xavier_normal 5000->500", &x.ws, (2.0 / 5500f64).sqrt(), 0.01);
    assert_constant("xavier bias", x.bs.as_ref().unwrap(), 0.0);
    // GVB's heads 500 -> 10 and discriminator 1024 -> 1024: kaiming_normal std sqrt(2 / fan_in).
    let k = linear(vs.root() / "k", 1024, 1024, LayerInit::KaimingNormal);
    assert_normal("kaiming_normal 1024->1024", &k.ws, (2.0 / 1024f64).sqrt(), 0.01);
    assert_constant("kaiming bias", k.bs.as_ref().unwrap(), 0.0);
    let k = linear(vs.root() / "k10", 500, 10, LayerInit::KaimingNormal);
    assert_normal("kaiming_normal 500->10", &k.ws, (2.0 / 500f64).sqrt(), 0.1);
    // SSRT's bottleneck N(0, 0.005) with bias 0.1.
    let n = linear(vs.root() / "n", 768, 1024, LayerInit::Normal { std: 0.005, bias: 0.1 });
    assert_normal("normal(0, 0.005)", &n.ws, 0.005, 0.01);
    assert_constant("normal bias", n.bs.as_ref().unwrap(), 0.1);
    // A conv with xavier counts the receptive field in both fans: 20*25 in, 50*25 out.
    let c = conv2d(vs.root() / "c", 20, 50, 5, 1, 0, LayerInit::XavierNormal);
    assert_normal("xavier conv", &c.ws, (2.0 / (500.0 + 1250.0f64)).sqrt(), 0.03);
}

#[test]
fn batch_norm_starts_and_updates_as_pytorch_does() {
    let _rng = torch_rng();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let bn1 = batch_norm1d(vs.root() / "bn1", 100);
    let bn2 = batch_norm2d(vs.root() / "bn2", 32);
    for (what, bn) in [("BatchNorm1d", &bn1), ("BatchNorm2d", &bn2)] {
        // tch's default weight is U(0, 1); PyTorch's is 1.
        assert_constant(&format!("{what} weight"), bn.ws.as_ref().unwrap(), 1.0);
        assert_constant(&format!("{what} bias"), bn.bs.as_ref().unwrap(), 0.0);
        assert_constant(&format!("{what} running_mean"), &bn.running_mean, 0.0);
        assert_constant(&format!("{what} running_var"), &bn.running_var, 1.0);
    }
    // eps 1e-5 and momentum 0.1: a training forward normalises with the biased batch variance and
    // moves the running statistics 10% towards the batch's (unbiased) ones.
    let x = Tensor::randn([64, 100], (Kind::Float, Device::Cpu)) * 3.0 + 2.0;
    let y = bn1.forward_t(&x, true);
    let mean = x.mean_dim(0, false, Kind::Float);
    let var = x.var_dim(0, false, false);
    let expected = (&x - &mean) / (&var + 1e-5).sqrt();
    assert!(y.allclose(&expected, 1e-4, 1e-4, false), "batch-norm output differs from (x - mean) / sqrt(var + 1e-5)");
    assert!(bn1.running_mean.allclose(&(&mean * 0.1), 1e-5, 1e-6, false), "running mean is not 0.1 * batch mean");
    let unbiased = x.var_dim(0, true, false);
    assert!(bn1.running_var.allclose(&(unbiased * 0.1 + 0.9), 1e-5, 1e-6, false), "running var is not 0.9 + 0.1 * batch var");
}

#[test]
fn a_fresh_lenet_classifier_starts_near_ln_10() {
    let _rng = torch_rng();
    let mut losses = Vec::new();
    for seed in 0..5 {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = LeNet::new(&(vs.root() / "backbone"), Dropout::On);
        let classifier = LinearClassifier::new(&(vs.root() / "classifier"), LeNet::FEATURES, 10, LayerInit::PyTorchDefault);
        // Random "digits" in the normalised pixel range [-1, 1], random labels.
        let x = Tensor::rand([512, 1, 28, 28], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let y = Tensor::randint(10, [512], (Kind::Int64, Device::Cpu));
        losses.push(classifier.forward(&net.forward_t(&x, true)).cross_entropy_for_logits(&y).double_value(&[]));
    }
    let ln10 = 10f64.ln();
    for l in &losses {
        // With tch's default init this was about 6.7.
        assert!((l - ln10).abs() < 0.1, "initial cross-entropy {l} is not near ln 10 = {ln10:.3} (all seeds: {losses:?})");
    }
}

/// The rule each trainable weight of the digits baselines must follow, by store/layer prefix.
fn expected_rule(method: &str, name: &str) -> LayerInit {
    match method {
        "cdan" if name.starts_with("disc/") => LayerInit::XavierNormal,
        "gvb" if name.starts_with("disc/") || name.starts_with("base/classifier.") || name.starts_with("base/bridge.") => LayerInit::KaimingNormal,
        _ => LayerInit::PyTorchDefault,
    }
}

#[test]
fn every_layer_of_every_digits_baseline_uses_its_reference_rule() {
    let _rng = torch_rng();
    tch::manual_seed(4);
    let sgd = Sgd { lr: 0.01, momentum: 0.9, weight_decay: 5e-4, nesterov: false };
    let configs = [
        MethodConfig::Cdan(cdan::Config {
            batch: 64,
            sgd: sgd.clone(),
            lr_schedule: LrSchedule::Fixed,
            discriminator_lr_schedule: LrSchedule::Fixed,
            trade_off: 1.0,
            conditioning: cdan::Conditioning::Outer,
            discriminator_hidden: 500,
            grl_max_iter: 10000,
            source_only_epochs: 1,
            joint_forward: true,
            backbone: None, bottleneck: None, multipliers: Default::default(),
        }),
        MethodConfig::Gvb(gvb::Config { batch: 64, sgd, lr_schedule: LrSchedule::Fixed, trade_off: 1.0, gvbg_weight: 1.0, gvbd_weight: 1.0, discriminator_hidden: 1024, grl_max_iter: 10000, joint_forward: true, backbone: None, multipliers: Default::default(), }),
        MethodConfig::Mcd(mcd::Config { batch: 128, lr: 0.01, momentum_generator: 0.0, momentum_heads: 0.9, weight_decay: 5e-4, trade_off: 0.3, entropy_weight: 0.03, num_k: 4, head_hidden: 1024, backbone: None, }),
        MethodConfig::Dwl(dwl::Config { batch: 32, lr: 0.001, momentum: 0.9, weight_decay: 5e-4, source_steps: 8, balance_steps: 8, adversarial_weight: 0.2, pseudo_label_threshold: 0.9, initial_balance: 0.5, backbone: None, }),
    ];
    let mut checked = 0;
    for format in [DigitsFormat::Grey28, DigitsFormat::Rgb32] {
        let setup = Setup { device: Device::Cpu, network: baselines::networks::Network::Digits(format), classes: 10, source_digits: None, iters_per_epoch: 100, dropout: Dropout::On };
        for config in &configs {
            let method = config.build(&setup).unwrap();
            let name = config.name().name();
            for (var, t) in method.state() {
                let what = format!("{name} ({format:?}) {var} {:?}", t.size());
                if var.ends_with(".running_mean") {
                    assert_constant(&what, &t, 0.0);
                    continue;
                }
                if var.ends_with(".running_var") {
                    assert_constant(&what, &t, 1.0);
                    continue;
                }
                let dims = t.size();
                let is_bn = dims.len() == 1 && (var.contains("bn") || var.contains("fc_bn"));
                if is_bn {
                    assert_constant(&what, &t, if var.ends_with(".weight") { 1.0 } else { 0.0 });
                    continue;
                }
                let rule = expected_rule(name, &var);
                // Fans of the layer this tensor belongs to: weights carry them; a bias takes its
                // weight's.
                let weight = if var.ends_with(".bias") { method.state().into_iter().find(|(n, _)| *n == var.replace(".bias", ".weight")).unwrap().1 } else { t.shallow_clone() };
                let w = weight.size();
                let field: i64 = w.iter().skip(2).product();
                let (fan_in, fan_out) = (w[1] * field, w[0] * field);
                let (_, _, max, n) = stats(&t);
                match (rule, var.ends_with(".bias")) {
                    (LayerInit::PyTorchDefault, _) => {
                        let bound = 1.0 / (fan_in as f64).sqrt();
                        assert!(max <= bound * (1.0 + 1e-6) && max > 0.0, "{what}: max |w| = {max}, PyTorch's bound is {bound}");
                        if n >= 2000 {
                            assert_uniform(&what, &t, bound, 0.1);
                        }
                    }
                    (LayerInit::XavierNormal, false) if n >= 2000 => assert_normal(&what, &t, (2.0 / (fan_in + fan_out) as f64).sqrt(), 0.1),
                    (LayerInit::KaimingNormal, false) if n >= 2000 => assert_normal(&what, &t, (2.0 / fan_in as f64).sqrt(), 0.1),
                    (LayerInit::XavierNormal | LayerInit::KaimingNormal, true) => assert_constant(&what, &t, 0.0),
                    _ => {}
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 80, "only {checked} tensors checked");
}

#[test]
fn resnet_initialises_as_torchvision() {
    // torchvision's ResNet: convolutions kaiming_normal_(mode="fan_out", nonlinearity="relu"),
    // i.e. std sqrt(2 / (out_channels · k²)), no bias; batch norm weight 1, bias 0.
    let _rng = torch_rng();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = baselines::networks::resnet::ResNet::new(&vs.root(), baselines::networks::resnet::Depth::Resnet50);
    let vars = vs.variables();
    // conv1: 64 × 3 × 7 × 7 (9,408 weights), fan_out 64·49.
    assert_normal("resnet conv1", &vars["conv1.weight"], (2.0 / (64.0 * 49.0f64)).sqrt(), 0.05);
    // layer3.0.conv2: 256 × 256 × 3 × 3 (589,824 weights), fan_out 256·9.
    assert_normal("resnet layer3.0.conv2", &vars["layer3.0.conv2.weight"], (2.0 / (256.0 * 9.0f64)).sqrt(), 0.01);
    assert!(!vars.contains_key("conv1.bias"), "torchvision's ResNet convolutions have no bias");
    assert_constant("resnet bn1 weight", &vars["bn1.weight"], 1.0);
    assert_constant("resnet layer4.2.bn3 bias", &vars["layer4.2.bn3.bias"], 0.0);
    assert_constant("resnet bn1 running_var", &vars["bn1.running_var"], 1.0);
}
