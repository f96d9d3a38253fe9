"""A randomly initialised torchvision ResNet and its outputs, for baselines/tests/resnet_parity.rs.

Usage: resnet_export.py OUT_DIR

Writes OUT_DIR/resnet50.safetensors (the state dict, classifier and num_batches_tracked included,
batch-norm statistics and affine parameters randomised so that eval mode is not the identity),
OUT_DIR/io.safetensors (input x 2x3x64x64, a fixed weighting w of the 2048 features, the pooled
features in eval mode and in train mode (batch statistics), and the gradient of sum(w * train
features) with respect to conv1.weight), OUT_DIR/resnet101_shapes.json (every state-dict key of
torchvision's ResNet-101 with its shape), and OUT_DIR/resnet101.safetensors with its eval-mode
features of the same x in io.safetensors ("eval_features_101").
"""

import json
import sys

import torch
import torchvision
from safetensors.torch import save_file


def features(model, x):
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    return trunk(x).flatten(1)


def randomise_batch_norm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)


def main(out):
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    randomise_batch_norm(model)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{out}/resnet50.safetensors")
    x = torch.randn(2, 3, 64, 64)
    w = torch.randn(2, 2048)
    model.eval()
    with torch.no_grad():
        eval_features = features(model, x)
    model.train()
    train_features = features(model, x)
    (w * train_features).sum().backward()
    deep = torchvision.models.resnet101(weights=None)
    randomise_batch_norm(deep)
    save_file({k: v.detach().clone().contiguous() for k, v in deep.state_dict().items()}, f"{out}/resnet101.safetensors")
    deep.eval()
    with torch.no_grad():
        eval_features_101 = features(deep, x)
    io = {
        "eval_features_101": eval_features_101,
        "x": x,
        "w": w,
        "eval_features": eval_features,
        "train_features": train_features.detach(),
        "grad_conv1": model.conv1.weight.grad.detach().clone(),
    }
    save_file({k: v.contiguous() for k, v in io.items()}, f"{out}/io.safetensors")
    shapes = {k: list(v.shape) for k, v in torchvision.models.resnet101(weights=None).state_dict().items()}
    json.dump(shapes, open(f"{out}/resnet101_shapes.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
