//! timm's Vision Transformer (ViT-B/16 for SSRT, and smaller ones for tests), with timm's
//! parameter names so that its safetensors state dicts load by name: `patch_embed.proj`,
//! `cls_token`, `pos_embed`, `blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`,
//! `norm`. Pre-norm blocks with LayerNorm eps 1e-6, qkv bias, exact GELU, no dropout or drop-path
//! (SSRT's configuration); the feature is the CLS token after the final norm. timm's ImageNet
//! `head` is not part of the backbone (its keys are dropped when loading, as SSRT never uses it).
//!
//! The forward pass is exposed in pieces ([`Vit::embed`], [`Vit::block`], [`Vit::head`]) because
//! SSRT perturbs the token sequence entering a chosen block.
//!
//! Initialisation (used only when no weights are loaded): timm's `init_weights_vit_timm`, i.e.
//! Linear weights N(0, 0.02) (timm truncates at ±2, i.e. 100 standard deviations: the same
//! distribution) with zero bias, `pos_embed` N(0, 0.02), `cls_token` N(0, 1e-6), the patch
//! convolution and the LayerNorms as PyTorch constructs them.

use super::init::{conv2d, linear, LayerInit};
use anyhow::Result;
use std::path::Path;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A ViT's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub image: i64,
    pub patch: i64,
    pub width: i64,
    pub depth: i64,
    pub heads: i64,
    pub mlp: i64,
}

impl VitConfig {
    /// ViT-B/16 at 224: 12 blocks, 12 heads, width 768, MLP 3072.
    pub const B16: VitConfig = VitConfig { image: 224, patch: 16, width: 768, depth: 12, heads: 12, mlp: 3072 };

    /// Tokens per image: the patches and the CLS token.
    pub fn tokens(&self) -> i64 {
        (self.image / self.patch).pow(2) + 1
    }
}

pub const LAYER_NORM_EPS: f64 = 1e-6;

/// Which pretrained ViT-B/16 a configuration starts from (data-fetch lays both out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VitWeights {
    /// timm `vit_base_patch16_224.augreg_in21k_ft_in1k`: the released SSRT's weights (SSRT rows).
    In21kFtIn1k,
    /// timm `vit_base_patch16_224.augreg_in1k`: ImageNet-1K only (SSRT* rows; our choice, the
    /// paper does not name its variant).
    In1k,
}

impl VitWeights {
    /// The data-fetch dataset that holds the file.
    pub fn dataset(self) -> &'static str {
        match self {
            VitWeights::In21kFtIn1k => "vit-b16-in21k-ft-in1k",
            VitWeights::In1k => "vit-b16-in1k",
        }
    }

    /// `<data root>/<dataset>/<timm tag>.safetensors`.
    pub fn file(self, data_root: &Path) -> std::path::PathBuf {
        let tag = match self {
            VitWeights::In21kFtIn1k => "vit_base_patch16_224.augreg_in21k_ft_in1k",
            VitWeights::In1k => "vit_base_patch16_224.augreg_in1k",
        };
        data_root.join(self.dataset()).join(format!("{tag}.safetensors"))
    }
}

/// The ViT of a method configuration: `vit = { weights = "in21k-ft-in1k", pretrained = true }`
/// (ViT-B/16), or a smaller `config` (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitBackbone {
    pub weights: VitWeights,
    pub pretrained: bool,
    #[serde(default = "b16", skip_serializing_if = "is_b16")]
    pub config: VitConfig,
}

fn b16() -> VitConfig {
    VitConfig::B16
}

fn is_b16(c: &VitConfig) -> bool {
    *c == VitConfig::B16
}

fn layer_norm(p: nn::Path, width: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![width], nn::LayerNormConfig { eps: LAYER_NORM_EPS, ..Default::default() })
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl Block {
    fn new(p: nn::Path, c: &VitConfig) -> Block {
        let w = c.width;
        let timm = LayerInit::Normal { std: 0.02, bias: 0.0 };
        Block {
            norm1: layer_norm(&p / "norm1", w),
            qkv: linear(&p / "attn" / "qkv", w, 3 * w, timm),
            proj: linear(&p / "attn" / "proj", w, w, timm),
            norm2: layer_norm(&p / "norm2", w),
            fc1: linear(&p / "mlp" / "fc1", w, c.mlp, timm),
            fc2: linear(&p / "mlp" / "fc2", c.mlp, w, timm),
            heads: c.heads,
        }
    }

    /// Multi-head self-attention over B×N×D tokens: softmax(q kᵀ / sqrt(head dim)) v through
    /// libtorch's fused scaled_dot_product_attention, as timm's `Attention` (fused_attn) runs it
    /// (flash or memory-efficient kernels on CUDA; no B×heads×N×N weights kept for backward).
    fn attention(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("B×N×D tokens");
        let head = d / self.heads;
        let qkv = x.apply(&self.qkv).reshape([b, n, 3, self.heads, head]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let out = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false);
        out.transpose(1, 2).reshape([b, n, d]).apply(&self.proj)
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attention(&x.apply(&self.norm1));
        let mlp = x.apply(&self.norm2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        x + mlp
    }
}

#[derive(Debug)]
pub struct Vit {
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    config: VitConfig,
}

impl Vit {
    pub fn new(p: &nn::Path, config: VitConfig) -> Vit {
        let c = config;
        let patch_embed = conv2d(p / "patch_embed" / "proj", 3, c.width, c.patch, c.patch, 0, LayerInit::PyTorchDefault);
        let cls_token = p.var("cls_token", &[1, 1, c.width], nn::Init::Randn { mean: 0.0, stdev: 1e-6 });
        let pos_embed = p.var("pos_embed", &[1, c.tokens(), c.width], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let blocks = (0..c.depth).map(|i| Block::new(p / "blocks" / i.to_string(), &c)).collect();
        Vit { patch_embed, cls_token, pos_embed, blocks, norm: layer_norm(p / "norm", c.width), config }
    }

    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    pub fn features(&self) -> i64 {
        self.config.width
    }

    /// B×3×H×W normalised images → B×N×D tokens entering block 0 (patches, CLS first, positions).
    pub fn embed(&self, images: &Tensor) -> Tensor {
        let patches = images.apply(&self.patch_embed).flatten(2, -1).transpose(1, 2);
        let b = patches.size()[0];
        Tensor::cat(&[self.cls_token.expand([b, -1, -1], true), patches], 1) + &self.pos_embed
    }

    /// Block `i` applied to tokens.
    pub fn block(&self, i: usize, tokens: &Tensor) -> Tensor {
        self.blocks[i].forward(tokens)
    }

    /// Tokens leaving the last block → the CLS token after the final norm (B×D).
    pub fn head(&self, tokens: &Tensor) -> Tensor {
        tokens.apply(&self.norm).select(1, 0)
    }

    /// Copies timm's safetensors state dict into the variables of `vs` under `prefix`, strictly
    /// (timm's ImageNet `head` is dropped).
    pub fn load_strict(vs: &mut nn::VarStore, prefix: &str, path: &Path) -> Result<()> {
        super::load_safetensors_strict(vs, prefix, path, |key| key == "head.weight" || key == "head.bias")
    }
}

impl ModuleT for Vit {
    /// B×3×H×W normalised images → B×D features. No dropout: train and eval are the same.
    fn forward_t(&self, images: &Tensor, _train: bool) -> Tensor {
        let mut tokens = self.embed(images);
        for i in 0..self.blocks.len() {
            tokens = self.block(i, &tokens);
        }
        self.head(&tokens)
    }
}
