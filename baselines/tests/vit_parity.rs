//! ViT against timm: randomly initialised timm ViTs (ViT-B/16 as SSRT configures it, and a tiny
//! one), exported by tools/reference/vit_export.py with their LayerNorm and bias parameters
//! randomised, load strictly into ours and give the same features (CLS token after the final
//! norm) in eval and train mode and the same gradients of a fixed weighting of the features with
//! respect to the first block's qkv weight and the position embedding.

mod support;
use baselines::networks::vit::{Vit, VitConfig};
use std::collections::BTreeMap;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

/// Relative to the largest magnitude. With the same fused attention kernel as timm
/// (scaled_dot_product_attention) the outputs and gradients are bitwise timm's on this machine;
/// 1e-6 leaves room for another CPU's kernels (the explicit softmax(q kᵀ / √d) v that this
/// replaced differed by up to about 1e-5).
const TOLERANCE: f64 = 1e-6;

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12)
}

fn check(dir: &std::path::Path, name: &str, config: VitConfig) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Vit::new(&vs.root(), config);
    Vit::load_strict(&mut vs, "", &dir.join(format!("{name}.safetensors"))).unwrap();
    let io: BTreeMap<String, Tensor> = Tensor::read_safetensors(dir.join(format!("{name}_io.safetensors"))).unwrap().into_iter().collect();
    let eval = tch::no_grad(|| net.forward_t(&io["x"], false));
    let train = net.forward_t(&io["x"], true);
    (&io["w"] * &train).sum(tch::Kind::Float).backward();
    let vars = vs.variables();
    let errors = [
        ("eval features", rel_err(&eval, &io["eval_features"])),
        ("train features", rel_err(&train, &io["train_features"])),
        ("blocks.0.attn.qkv.weight gradient", rel_err(&vars["blocks.0.attn.qkv.weight"].grad(), &io["grad_qkv0"])),
        ("pos_embed gradient", rel_err(&vars["pos_embed"].grad(), &io["grad_pos_embed"])),
    ];
    eprintln!("{name} vs timm: {}", errors.iter().map(|(what, e)| format!("{what} {e:.2e}")).collect::<Vec<_>>().join(", "));
    for (what, e) in errors {
        assert!(e <= TOLERANCE, "{name}: {what} differs from timm's by {e:.2e} (> {TOLERANCE:e})");
    }
    // The comparison can fail: an unloaded network (our own initialisation) is far off.
    let fresh = Vit::new(&nn::VarStore::new(Device::Cpu).root(), config);
    let e_fresh = tch::no_grad(|| rel_err(&fresh.forward_t(&io["x"], false), &io["eval_features"]));
    assert!(e_fresh > 0.1, "an unloaded network matched: {e_fresh}");
}

#[test]
fn vit_b16_and_a_tiny_vit_match_timm() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(support::python())
        .arg(support::workspace().join("tools/reference/vit_export.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "tools/reference/vit_export.py failed (is timm installed in .venv? `cargo make setup` installs it)");
    check(dir.path(), "vit_tiny", VitConfig { image: 64, patch: 16, width: 64, depth: 2, heads: 4, mlp: 128 });
    check(dir.path(), "vit_b16", VitConfig::B16);
    // timm's keys and shapes, one for one (the ImageNet head aside).
    let theirs: BTreeMap<String, Vec<i64>> = Tensor::read_safetensors(dir.path().join("vit_b16.safetensors"))
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("head."))
        .map(|(k, v)| (k, v.size()))
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = Vit::new(&vs.root(), VitConfig::B16);
    let ours: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn strict_loading_rejects_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = VitConfig { image: 32, patch: 16, width: 16, depth: 1, heads: 2, mlp: 32 };
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = Vit::new(&vs.root(), config);
    let tensors: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(k, _)| k != "blocks.0.mlp.fc2.bias").collect();
    let path = dir.path().join("w.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let mut target = nn::VarStore::new(Device::Cpu);
    let _ = Vit::new(&target.root(), config);
    let err = Vit::load_strict(&mut target, "", &path).unwrap_err().to_string();
    assert!(err.contains("'blocks.0.mlp.fc2.bias' is missing"), "{err}");
}
