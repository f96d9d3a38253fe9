//! ResNet-50 against torchvision: a randomly initialised torchvision ResNet-50 (batch-norm
//! statistics randomised) exported by tools/reference/resnet_export.py loads strictly and gives the
//! same pooled features in eval and train mode and the same conv1 gradient (relative error ≤ 1e-4);
//! ResNet-101 has torchvision's keys and shapes and the same eval-mode features; strict loading
//! names what is wrong.

mod support;
use baselines::networks::resnet::{load_strict, Depth, ResNet};
use std::collections::BTreeMap;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

const TOLERANCE: f64 = 1e-4;

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12)
}

fn export() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(support::python())
        .arg(support::workspace().join("tools/reference/resnet_export.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "tools/reference/resnet_export.py failed");
    dir
}

#[test]
fn resnet50_and_resnet101_match_torchvision() {
    let dir = export();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), Depth::Resnet50);
    load_strict(&mut vs, "", &dir.path().join("resnet50.safetensors")).unwrap();
    let io: BTreeMap<String, Tensor> = Tensor::read_safetensors(dir.path().join("io.safetensors")).unwrap().into_iter().collect();
    let eval = tch::no_grad(|| net.forward_t(&io["x"], false));
    let e_eval = rel_err(&eval, &io["eval_features"]);
    let train = net.forward_t(&io["x"], true);
    let e_train = rel_err(&train, &io["train_features"]);
    (&io["w"] * &train).sum(tch::Kind::Float).backward();
    let grad = vs.variables()["conv1.weight"].grad();
    let e_grad = rel_err(&grad, &io["grad_conv1"]);
    eprintln!("ResNet-50 vs torchvision: eval features {e_eval:.2e}, train features {e_train:.2e}, conv1 gradient {e_grad:.2e}");
    assert!(e_eval <= TOLERANCE && e_train <= TOLERANCE && e_grad <= TOLERANCE);
    // The comparison can fail: our own initialisation (not loaded) is far from torchvision's weights.
    let fresh = ResNet::new(&nn::VarStore::new(Device::Cpu).root(), Depth::Resnet50);
    let e_fresh = tch::no_grad(|| rel_err(&fresh.forward_t(&io["x"], false), &io["eval_features"]));
    assert!(e_fresh > 0.1, "an unloaded network matched: {e_fresh}");

    let shapes: BTreeMap<String, Vec<i64>> = serde_json::from_str(&std::fs::read_to_string(dir.path().join("resnet101_shapes.json")).unwrap()).unwrap();
    let mut vs101 = nn::VarStore::new(Device::Cpu);
    let net101 = ResNet::new(&vs101.root(), Depth::Resnet101);
    let ours: BTreeMap<String, Vec<i64>> = vs101.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    let theirs: BTreeMap<String, Vec<i64>> =
        shapes.into_iter().filter(|(k, _)| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked")).collect();
    assert_eq!(ours, theirs);
    load_strict(&mut vs101, "", &dir.path().join("resnet101.safetensors")).unwrap();
    let e101 = tch::no_grad(|| rel_err(&net101.forward_t(&io["x"], false), &io["eval_features_101"]));
    eprintln!("ResNet-101 vs torchvision: eval features {e101:.2e}");
    assert!(e101 <= TOLERANCE);
}

#[test]
fn strict_loading_names_the_missing_the_misshapen_and_the_unexpected_key() {
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = ResNet::new(&vs.root(), Depth::Resnet50);
        vs
    };
    let good: Vec<(String, Tensor)> = make().variables().into_iter().collect();
    let write = |name: &str, tensors: Vec<(String, Tensor)>| {
        let path = dir.path().join(name);
        Tensor::write_safetensors(&tensors, &path).unwrap();
        path
    };
    let missing = write("missing.safetensors", good.iter().filter(|(k, _)| k != "layer2.1.bn2.running_var").map(|(k, v)| (k.clone(), v.shallow_clone())).collect());
    let mut shaped: Vec<(String, Tensor)> = good.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    shaped.iter_mut().find(|(k, _)| k == "conv1.weight").unwrap().1 = Tensor::zeros([64, 3, 3, 3], (tch::Kind::Float, Device::Cpu));
    let shaped = write("shape.safetensors", shaped);
    let mut extra: Vec<(String, Tensor)> = good.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    extra.push(("layer5.0.conv1.weight".into(), Tensor::zeros([1], (tch::Kind::Float, Device::Cpu))));
    extra.push(("fc.weight".into(), Tensor::zeros([1000, 2048], (tch::Kind::Float, Device::Cpu))));
    let extra = write("extra.safetensors", extra);
    let err = |path: &std::path::Path| format!("{:#}", load_strict(&mut make(), "", path).unwrap_err());
    let e = err(&missing);
    assert!(e.contains("missing.safetensors") && e.contains("'layer2.1.bn2.running_var' is missing") && e.contains("[128]"), "{e}");
    let e = err(&shaped);
    assert!(e.contains("'conv1.weight' has shape [64, 3, 3, 3], the network expects [64, 3, 7, 7]"), "{e}");
    let e = err(&extra);
    assert!(e.contains("unexpected key 'layer5.0.conv1.weight'"), "{e}");
}
