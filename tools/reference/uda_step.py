"""Independent PyTorch implementation of the training iterations of CDAN+E, GVB-GD, MCD and DWL on
the digits LeNet / DWL CNN, and of their image protocols on torchvision's ResNet-50 (bottleneck,
heads, parameter groups with learning-rate and weight-decay multipliers), with none / GH / GH++
(the released rule).

Written from docs/design/protocols.md, docs/design/harmonization.md and the paper, in plain
PyTorch (nn.Linear, nn.Conv2d, nn.BatchNorm*, torch.optim.SGD, F.cross_entropy, autograd), never
from the Rust code or the released code. The harmonized step is the released shape: one forward,
one autograd pass per loss to measure the scope, then one backward of the re-weighted total.

Used by baselines/tests/reference_steps.rs:

    python uda_step.py CASES_DIR

CASES_DIR holds one folder per case with
  case.json          {"method": <the Rust MethodConfig as JSON>, "harmonizer": {...},
                      "iterations": N, "iters_per_epoch": E, "classes": C, "save_after": [1, 3]}
  init.safetensors   the initial state named "<store>/<variable>" (parameters and batch-norm
                     running statistics) and the batch: "batch/source", "batch/labels",
                     "batch/target"
and receives
  after_<k>.safetensors   the state after k iterations
  records.json            per iteration: the logged losses and each harmonized pair's d, n1, n2,
                          w1, w2, in call order

Dropout is not modelled (the comparison runs with dropout off on both sides); everything else
runs in training mode as in a real run.
"""

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


# ----------------------------------------------------------------------------- harmonizer

def harmonizer_weights(h, n1, n2, d):
    """(w1, w2) of docs/design/harmonization.md from |g1|^2, |g2|^2 and g1.g2; 1, 1 without a conflict."""
    if h["method"] == "none" or not d < 0:
        return 1.0, 1.0
    if h["method"] == "gh":
        return 1.0 - d / n1, 1.0 - d / n2
    if h.get("rule", "released") != "released":
        raise SystemExit(f"reference: GH++ rule {h['rule']!r} is not implemented here")
    cos = max(-1.0, min(1.0, d / math.sqrt(n1 * n2)))
    theta = math.degrees(math.acos(cos))
    alpha = h["alpha"]
    w1 = 1.0 + 2.0 * math.sin(math.radians(alpha * (theta - 90.0) / 2.0))
    w2 = 1.0 - 2.0 * math.sin(math.radians((1.0 - alpha) * (theta - 90.0) / 2.0))
    return w1, w2


class Recorder:
    def __init__(self):
        self.losses = []
        self.pairs = []

    def loss(self, name, value):
        self.losses.append([name, float(value.detach())])


def harmonized_backward(h, pairs, rec):
    """pairs: [(L1, L2, c1, c2, scope parameters, label)]. Measures each pair over its scope (in
    float64), then backpropagates sum c1 w1 L1 + c2 w2 L2 through the whole graph."""
    total = 0.0
    for l1, l2, c1, c2, scope, label in pairs:
        flats = []
        for loss in (l1, l2):
            grads = torch.autograd.grad(loss, scope, retain_graph=True, allow_unused=True)
            flats.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double()
                                    for g, p in zip(grads, scope)]))
        g1, g2 = flats
        n1, n2, d = float(g1 @ g1), float(g2 @ g2), float(g1 @ g2)
        w1, w2 = harmonizer_weights(h, n1, n2, d)
        rec.pairs.append({"label": label, "d": d, "n1": n1, "n2": n2, "w1": w1, "w2": w2})
        total = total + c1 * w1 * l1 + c2 * w2 * l2
    total.backward()


# ----------------------------------------------------------------------------- shared pieces

class ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def grl(x, coeff):
    return ReverseGradient.apply(x, coeff)


def grl_coefficient(k, max_iter):
    """docs/design/protocols.md: c(k) = 2 / (1 + exp(-10 k / max_iter)) - 1."""
    return 2.0 / (1.0 + math.exp(-10.0 * k / max_iter)) - 1.0


def lr_factor(schedule, i, iters_per_epoch):
    kind = schedule["kind"]
    if kind == "fixed":
        return 1.0
    if kind == "inv":
        return (1.0 + schedule["gamma"] * i) ** (-schedule["power"])
    if kind == "epoch-step":
        epoch = i // iters_per_epoch + 1
        return schedule["gamma"] ** (epoch // schedule["every"])
    raise SystemExit(f"reference: unknown lr schedule {kind!r}")


def sgd(module, lr, momentum, weight_decay, nesterov=False):
    return torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def grouped_sgd(module, s, multipliers, is_backbone):
    """One SGD over `module` with two parameter groups: the pretrained backbone's parameters
    (names for which `is_backbone` holds) and the layers trained from scratch, each with its own
    learning-rate and weight-decay multiplier (docs/design/protocols.md: CDAN / GVB lr x1 and x10)."""
    lr_m = multipliers.get("lr", {"backbone": 1.0, "new_layers": 1.0})
    wd_m = multipliers.get("weight_decay", {"backbone": 1.0, "new_layers": 1.0})
    groups = []
    for part in ("backbone", "new_layers"):
        params = [p for n, p in module.named_parameters() if is_backbone(n) == (part == "backbone")]
        if params:
            groups.append({"params": params, "mult": lr_m[part], "weight_decay": s["weight_decay"] * wd_m[part]})
    return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"], nesterov=s["nesterov"])


def set_group_lr(opt, lr):
    for group in opt.param_groups:
        group["lr"] = lr * group.get("mult", 1.0)


def entropy(p):
    """-sum_k p_k log(p_k + 1e-5) per row (CDAN's and GVB's form)."""
    return -(p * torch.log(p + 1e-5)).sum(dim=1)


def weighted_domain_loss(per_sample, weights, ns):
    """Weights normalised within the source rows and within the target rows; the weighted sum
    divided by the (detached) total weight."""
    w_s, w_t = weights[:ns], weights[ns:]
    w = torch.cat([w_s / w_s.sum().detach(), w_t / w_t.sum().detach()])
    return (w * per_sample).sum() / w.sum().detach()


def domain_labels(ns, nt):
    return torch.cat([torch.ones(ns), torch.zeros(nt)])


# ----------------------------------------------------------------------------- networks

class LeNet(nn.Module):
    """docs/design/protocols.md, digits protocol: Conv 1->20 k5, MaxPool 2, ReLU, Conv 20->50 k5, (Dropout2d),
    MaxPool 2, ReLU, flatten 800, Linear 800->500, ReLU, (Dropout)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc = nn.Linear(800, 500)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.relu(self.fc(x.flatten(1)))


def image_backbone(cfg):
    """torchvision's ResNet (randomly initialised; its weights come from the Rust side) without
    its ImageNet classifier: pooled 2048-d features. None for the digits networks."""
    spec = cfg.get("backbone")
    if spec is None:
        return None
    import torchvision
    net = getattr(torchvision.models, spec["network"])(weights=None)
    net.fc = nn.Identity()
    return net


class Classifier(nn.Module):
    def __init__(self, features, classes):
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(x)


class Base(nn.Module):
    def __init__(self, **parts):
        super().__init__()
        for name, module in parts.items():
            setattr(self, name, module)


class Discriminator(nn.Module):
    """in-h-ReLU-(Drop)-h-ReLU-(Drop)-1, optionally with GVB's second output."""

    def __init__(self, inputs, hidden, bridge=False):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        if bridge:
            self.adversarial = nn.Linear(hidden, 1)
            self.bridge = nn.Linear(hidden, 1)
        else:
            self.out = nn.Linear(hidden, 1)

    def hidden(self, x):
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class TwoLayerHead(nn.Module):
    """MCD's F1/F2 (hidden h) and DWL's C/C1/C2 (hidden 100): Linear, BN, ReLU, Linear, BN, ReLU,
    Linear."""

    def __init__(self, inputs, hidden, classes):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.fc1(x)))
        x = F.relu(self.bn2(self.fc2(x)))
        return self.out(x)


class DwlCnn(nn.Module):
    """docs/design/protocols.md, DWL digits M<->U: Conv 1->32 k5, BN, ReLU, MaxPool 2; Conv 32->48 k5, BN, ReLU,
    MaxPool 2 (768)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 48, 5)
        self.bn2 = nn.BatchNorm2d(48)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return x.flatten(1)


class DwlDiscriminator(nn.Module):
    def __init__(self, inputs):
        super().__init__()
        self.fc1 = nn.Linear(inputs, 1024)
        self.fc2 = nn.Linear(1024, 1024)
        self.out = nn.Linear(1024, 1)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


class DwlImageHead(nn.Module):
    """docs/design/protocols-images.md §3, DWL's C/C1/C2 on images: Linear 2048->1024, BN, ReLU, Linear
    1024->C (no dropout)."""

    def __init__(self, inputs, classes):
        super().__init__()
        self.fc1 = nn.Linear(inputs, 1024)
        self.bn1 = nn.BatchNorm1d(1024)
        self.out = nn.Linear(1024, classes)

    def forward(self, x):
        return self.out(F.relu(self.bn1(self.fc1(x))))


class DwlImageDiscriminator(nn.Module):
    """docs/design/protocols-images.md §3: Linear 2048->1024, ReLU, (Dropout 0.5), Linear 1024->1 (logit)."""

    def __init__(self, inputs):
        super().__init__()
        self.fc1 = nn.Linear(inputs, 1024)
        self.out = nn.Linear(1024, 1)

    def forward(self, x):
        return self.out(F.relu(self.fc1(x)))


# ----------------------------------------------------------------------------- methods

class Method:
    """What the driver needs of a method: `stores` (name -> module), `step`, and the fixed
    (non-trainable, non-buffer) tensors it exchanges, none by default."""

    def load_fixed(self, state):
        pass

    def fixed(self):
        return {}


class Cdan(Method):
    """docs/design/protocols.md "CDAN" and "CDAN on digits"."""

    def __init__(self, cfg, classes, ipe):
        self.cfg, self.ipe = cfg, ipe
        resnet = image_backbone(cfg)
        backbone, features = (LeNet(), 500) if resnet is None else (resnet, 2048)
        parts = {"backbone": backbone}
        if cfg.get("bottleneck") is not None:
            # CDAN's image network: a linear bottleneck (no activation) before the classifier.
            parts["bottleneck"] = nn.Linear(features, cfg["bottleneck"])
            features = cfg["bottleneck"]
        parts["classifier"] = Classifier(features, classes)
        self.stores = {"base": Base(**parts)}
        cond = cfg["conditioning"]
        inputs = features * classes if cond["kind"] == "outer" else cond["dim"]
        self.stores["disc"] = Discriminator(inputs, cfg["discriminator_hidden"])
        s, m = cfg["sgd"], cfg.get("multipliers", {})
        self.opt_base = grouped_sgd(self.stores["base"], s, m, lambda n: n.startswith("backbone."))
        self.opt_disc = grouped_sgd(self.stores["disc"], s, m, lambda n: False)
        self.disc_forwards = 0
        self.random = None

    def load_fixed(self, state):
        if self.cfg["conditioning"]["kind"] == "random":
            self.random = (state["fixed/random_features"], state["fixed/random_probs"])

    def fixed(self):
        if self.random is None:
            return {}
        return {"fixed/random_features": self.random[0], "fixed/random_probs": self.random[1]}

    def step(self, i, batch, h, rec):
        c, base, disc = self.cfg, self.stores["base"], self.stores["disc"]
        set_group_lr(self.opt_base, c["sgd"]["lr"] * lr_factor(c["lr_schedule"], i, self.ipe))
        set_group_lr(self.opt_disc, c["sgd"]["lr"] * lr_factor(c["discriminator_lr_schedule"], i, self.ipe))
        self.opt_base.zero_grad()
        self.opt_disc.zero_grad()
        xs, ys, xt = batch
        ns = xs.shape[0]

        def features(x):
            f = base.backbone(x)
            return base.bottleneck(f) if hasattr(base, "bottleneck") else f

        if c["joint_forward"]:
            f = features(torch.cat([xs, xt]))
        else:
            f = torch.cat([features(xs), features(xt)])
        logits = base.classifier(f)
        cls = F.cross_entropy(logits[:ns], ys)
        rec.loss("cls", cls)
        if i // self.ipe < c["source_only_epochs"]:
            cls.backward()
            self.opt_base.step()
            return
        p = F.softmax(logits, dim=1)
        q = p.detach()
        if self.random is None:
            conditioned = torch.bmm(q.unsqueeze(2), f.unsqueeze(1)).reshape(f.shape[0], -1)
        else:
            rf, rp = self.random
            conditioned = (f @ rf) * (q @ rp) / math.sqrt(rf.shape[1])
        self.disc_forwards += 1
        x = grl(conditioned, grl_coefficient(self.disc_forwards, c["grl_max_iter"]))
        domain_prob = torch.sigmoid(disc.out(disc.hidden(x))).reshape(-1)
        weights = 1.0 + torch.exp(-grl(entropy(p), grl_coefficient(i, c["grl_max_iter"])))
        bce = F.binary_cross_entropy(domain_prob, domain_labels(ns, f.shape[0] - ns), reduction="none")
        transfer = weighted_domain_loss(bce, weights, ns)
        rec.loss("transfer", transfer)
        scope = list(base.parameters())
        harmonized_backward(h, [(transfer, cls, c["trade_off"], 1.0, scope, "transfer/cls")], rec)
        self.opt_base.step()
        self.opt_disc.step()


class Gvb(Method):
    """docs/design/protocols.md "GVB"."""

    def __init__(self, cfg, classes, ipe):
        self.cfg, self.ipe = cfg, ipe
        resnet = image_backbone(cfg)
        backbone, features = (LeNet(), 500) if resnet is None else (resnet, 2048)
        self.stores = {
            "base": Base(backbone=backbone, classifier=Classifier(features, classes), bridge=Classifier(features, classes)),
            "disc": Discriminator(classes, cfg["discriminator_hidden"], bridge=True),
        }
        s, m = cfg["sgd"], cfg.get("multipliers", {})
        self.opt_base = grouped_sgd(self.stores["base"], s, m, lambda n: n.startswith("backbone."))
        self.opt_disc = grouped_sgd(self.stores["disc"], s, m, lambda n: False)
        self.disc_forwards = 0

    def step(self, i, batch, h, rec):
        c, base, disc = self.cfg, self.stores["base"], self.stores["disc"]
        lr = c["sgd"]["lr"] * lr_factor(c["lr_schedule"], i, self.ipe)
        set_group_lr(self.opt_base, lr)
        set_group_lr(self.opt_disc, lr)
        self.opt_base.zero_grad()
        self.opt_disc.zero_grad()
        xs, ys, xt = batch
        ns = xs.shape[0]
        if c.get("joint_forward", True):
            f = base.backbone(torch.cat([xs, xt]))
            bridge = base.bridge(f)
            logits = base.classifier(f) - bridge
        else:
            # GVB's image code runs the whole base network on each domain's batch.
            fs, ft = base.backbone(xs), base.backbone(xt)
            bridge = torch.cat([base.bridge(fs), base.bridge(ft)])
            logits = torch.cat([base.classifier(fs), base.classifier(ft)]) - bridge
            f = torch.cat([fs, ft])
        p = F.softmax(logits, dim=1)
        cls = F.cross_entropy(logits[:ns], ys)
        self.disc_forwards += 1
        hidden = disc.hidden(grl(p, grl_coefficient(self.disc_forwards, c["grl_max_iter"])))
        adversarial, disc_bridge = disc.adversarial(hidden), disc.bridge(hidden)
        weights = torch.exp(-grl(entropy(p), grl_coefficient(i, c["grl_max_iter"])))
        prob = torch.sigmoid(adversarial - disc_bridge).reshape(-1)
        y = domain_labels(ns, f.shape[0] - ns)
        bce = -(y * torch.log(prob + 1e-8) + (1 - y) * torch.log(1 - prob + 1e-8))
        transfer = weighted_domain_loss(bce, weights, ns)
        gvbg = bridge.abs().mean()
        gvbd = disc_bridge.abs().mean()
        for name, value in [("cls", cls), ("transfer", transfer), ("gvbg", gvbg), ("gvbd", gvbd)]:
            rec.loss(name, value)
        scope = list(base.parameters())
        harmonized_backward(h, [
            (transfer, cls, c["trade_off"], 1.0, scope, "transfer/cls"),
            (gvbg, gvbd, c["gvbg_weight"], abs(c["gvbd_weight"]), scope, "gvbg/gvbd"),
        ], rec)
        self.opt_base.step()
        self.opt_disc.step()


def class_balance_entropy(p):
    """-mean_k log(mean_i p_ik + 1e-6)."""
    return -torch.log(p.mean(dim=0) + 1e-6).mean()


class Mcd(Method):
    """docs/design/protocols.md "MCD" (steps A, B harmonized, C x num_k)."""

    def __init__(self, cfg, classes, ipe):
        self.cfg = cfg
        hidden = cfg["head_hidden"]
        resnet = image_backbone(cfg)
        g, features = (LeNet(), 500) if resnet is None else (resnet, 2048)
        self.stores = {"G": g, "F1": TwoLayerHead(features, hidden, classes), "F2": TwoLayerHead(features, hidden, classes)}
        wd = cfg["weight_decay"]
        self.opt_g = sgd(self.stores["G"], cfg["lr"], cfg["momentum_generator"], wd)
        self.opt_f1 = sgd(self.stores["F1"], cfg["lr"], cfg["momentum_heads"], wd)
        self.opt_f2 = sgd(self.stores["F2"], cfg["lr"], cfg["momentum_heads"], wd)
        self.opts = [self.opt_g, self.opt_f1, self.opt_f2]

    def forward(self, batch):
        xs, ys, xt = batch
        ns = xs.shape[0]
        g = self.stores["G"](torch.cat([xs, xt]))
        y1, y2 = self.stores["F1"](g), self.stores["F2"](g)
        ce = F.cross_entropy(y1[:ns], ys) + F.cross_entropy(y2[:ns], ys)
        p1, p2 = F.softmax(y1[ns:], dim=1), F.softmax(y2[ns:], dim=1)
        ent = class_balance_entropy(p1) + class_balance_entropy(p2)
        discrepancy = (p1 - p2).abs().mean()
        return ce, ent, discrepancy

    def zero(self):
        for o in self.opts:
            o.zero_grad()

    def step(self, i, batch, h, rec):
        c = self.cfg
        self.zero()
        ce, ent, _ = self.forward(batch)
        (ce + c["entropy_weight"] * ent).backward()
        for o in self.opts:
            o.step()

        self.zero()
        ce, ent, discrepancy = self.forward(batch)
        l1 = ce + c["entropy_weight"] * ent
        l2 = -c["trade_off"] * discrepancy
        rec.loss("stepB_source", l1)
        rec.loss("stepB_discrepancy", discrepancy)
        harmonized_backward(h, [(l1, l2, 1.0, 1.0, list(self.stores["G"].parameters()), "stepB")], rec)
        self.opt_f1.step()
        self.opt_f2.step()

        for _ in range(c["num_k"]):
            self.zero()
            _, _, discrepancy = self.forward(batch)
            (c["trade_off"] * discrepancy).backward()
            self.opt_g.step()


def head_discrepancy(a, b):
    return (F.softmax(a, dim=1) - F.softmax(b, dim=1)).abs().mean()


class Dwl(Method):
    """docs/design/protocols.md "DWL" on the digits networks, with the balance weight T held at its initial
    value (it changes only at epoch ends, which three iterations do not reach)."""

    def __init__(self, cfg, classes, ipe):
        self.cfg = cfg
        resnet = image_backbone(cfg)
        if resnet is None:
            self.stores = {
                "G": DwlCnn(),
                "C": TwoLayerHead(768, 100, classes),
                "C1": TwoLayerHead(768, 100, classes),
                "C2": TwoLayerHead(768, 100, classes),
                "D": DwlDiscriminator(768),
            }
        else:
            self.stores = {
                "G": resnet,
                "C": DwlImageHead(2048, classes),
                "C1": DwlImageHead(2048, classes),
                "C2": DwlImageHead(2048, classes),
                "D": DwlImageDiscriminator(2048),
            }
        self.opt = {k: sgd(m, cfg["lr"], cfg["momentum"], cfg["weight_decay"]) for k, m in self.stores.items()}
        self.balance = cfg["initial_balance"]

    def zero(self, *names):
        for n in names:
            self.opt[n].zero_grad()

    def stepped(self, *names):
        for n in names:
            self.opt[n].step()

    def step(self, i, batch, h, rec):
        c, m = self.cfg, self.stores
        xs, ys, xt = batch
        for _ in range(c["source_steps"]):
            self.zero("G", "C")
            F.cross_entropy(m["C"](m["G"](xs)), ys).backward()
            self.stepped("G", "C")

        self.zero("D")
        fs = m["G"](xs).detach()
        ft = m["G"](xt).detach()
        d_s, d_t = m["D"](fs), m["D"](ft)
        d_loss = F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s)) + \
            F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t))
        d_loss.backward()
        self.stepped("D")

        self.zero("C", "C1", "C2")
        c_loss = F.cross_entropy(m["C"](fs), ys) + F.cross_entropy(m["C1"](fs), ys) + \
            F.cross_entropy(m["C2"](fs), ys) - head_discrepancy(m["C1"](ft), m["C2"](ft))
        c_loss.backward()
        self.stepped("C", "C1", "C2")

        t = self.balance
        for _ in range(c["balance_steps"]):
            self.zero("G", "C", "C1", "C2", "D")
            ft = m["G"](xt)
            d_t = m["D"](ft)
            adversarial = c["adversarial_weight"] * F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t))
            p, p1, p2 = m["C"](ft), m["C1"](ft), m["C2"](ft)
            agreement = head_discrepancy(p1, p2) + head_discrepancy(p, p1) + head_discrepancy(p, p2)
            rec.loss("balance_adversarial", adversarial)
            rec.loss("balance_discrepancy", agreement)
            harmonized_backward(h, [(adversarial, agreement, t, 1.0 - t, list(m["G"].parameters()), "balance")], rec)
            self.stepped("G")

        self.zero("G", "C")
        ft = m["G"](xt)
        logits = m["C"](ft)
        with torch.no_grad():
            m["C1"].eval()
            m["C2"].eval()
            ensemble = (F.softmax(logits, dim=1) + F.softmax(m["C1"](ft), dim=1) + F.softmax(m["C2"](ft), dim=1)) / 3
            m["C1"].train()
            m["C2"].train()
        confidence, pseudo = ensemble.max(dim=1)
        keep = confidence > c["pseudo_label_threshold"]
        if keep.any():
            loss = F.cross_entropy(logits[keep], pseudo[keep])
            rec.loss("pseudo_label", loss)
            loss.backward()
            self.stepped("G", "C")


METHODS = {"cdan": Cdan, "gvb": Gvb, "mcd": Mcd, "dwl": Dwl}


# ----------------------------------------------------------------------------- driver

def state_of(method):
    out = {}
    for store, module in method.stores.items():
        for name, tensor in module.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                out[f"{store}/{name}"] = tensor.detach().clone().contiguous()
    out.update({k: v.clone().contiguous() for k, v in method.fixed().items()})
    return out


def load_state(method, state):
    for store, module in method.stores.items():
        prefix = f"{store}/"
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        expected = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
        if set(own) != expected:
            raise SystemExit(f"reference: store {store}: names differ from the Rust state: "
                             f"only in Rust {sorted(set(own) - expected)}, only here {sorted(expected - set(own))}")
        module.load_state_dict(own, strict=False)
    method.load_fixed(state)


def run_case(folder):
    case = json.loads((folder / "case.json").read_text())
    cfg = case["method"]
    torch.manual_seed(0)  # nothing here draws random numbers; seeded anyway
    method = METHODS[cfg["method"]](cfg, case["classes"], case["iters_per_epoch"])
    state = load_file(str(folder / "init.safetensors"))
    load_state(method, state)
    batch = (state["batch/source"], state["batch/labels"], state["batch/target"])
    records = []
    for i in range(case["iterations"]):
        rec = Recorder()
        method.step(i, batch, case["harmonizer"], rec)
        records.append({"losses": rec.losses, "pairs": rec.pairs})
        if i + 1 in case["save_after"]:
            save_file(state_of(method), str(folder / f"after_{i + 1}.safetensors"))
    (folder / "records.json").write_text(json.dumps(records))


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cases = sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "case.json").exists())
    if not cases:
        raise SystemExit(f"reference: no case folders under {sys.argv[1]}")
    for folder in cases:
        run_case(folder)
        print(f"reference: {folder.name} done", flush=True)


if __name__ == "__main__":
    main()
