"""A randomly initialised timm ViT and its outputs, for baselines/tests/vit_parity.rs.

Usage: vit_export.py OUT_DIR

Writes, for ViT-B/16 (timm's vit_base_patch16_224, SSRT's configuration: no dropout, drop-path 0)
and a tiny ViT (patch 16 at 64 pixels, depth 2, width 64, 4 heads, MLP 128):
  OUT_DIR/<name>.safetensors      the state dict (timm's names, ImageNet head included),
  OUT_DIR/<name>_io.safetensors   x (2x3xHxW), a fixed weighting w of the features, the features
                                  (CLS token after the final norm) in eval and train mode, and the
                                  gradient of sum(w * train features) with respect to
                                  blocks.0.attn.qkv.weight and pos_embed.
The weights are timm's own initialisation, then every LayerNorm's affine parameters and the
biases are randomised so that none is the identity.
"""

import sys

import timm
import torch
from safetensors.torch import save_file


def features(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


def export(model, image, name, out):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{out}/{name}.safetensors")
    width = model.embed_dim
    x = torch.randn(2, 3, image, image)
    w = torch.randn(2, width)
    model.eval()
    with torch.no_grad():
        eval_features = features(model, x)
    model.train()
    train_features = features(model, x)
    (w * train_features).sum().backward()
    io = {
        "x": x,
        "w": w,
        "eval_features": eval_features,
        "train_features": train_features.detach(),
        "grad_qkv0": model.blocks[0].attn.qkv.weight.grad.detach().clone(),
        "grad_pos_embed": model.pos_embed.grad.detach().clone(),
    }
    save_file({k: v.contiguous() for k, v in io.items()}, f"{out}/{name}_io.safetensors")


def main(out):
    torch.manual_seed(0)
    common = dict(pretrained=False, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
    export(timm.create_model("vit_base_patch16_224", **common), 224, "vit_b16", out)
    tiny = timm.create_model("vit_base_patch16_224", img_size=64, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, **common)
    export(tiny, 64, "vit_tiny", out)


if __name__ == "__main__":
    main(sys.argv[1])
