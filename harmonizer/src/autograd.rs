//! The libtorch side of harmonization: per-loss gradients, dot products over a scope, and the
//! harmonized gradient written into every parameter's `.grad`.
//!
//! Two paths give the same gradients (docs/design/harmonization.md, "a cheaper one"):
//! - [`backward_two_pass`], the default: one backward per loss, keeping every parameter's gradient
//!   of each loss, then `grad_p += c1·w1·G1_p + c2·w2·G2_p`. Backward is linear, so nothing else
//!   is needed.
//! - [`backward_three_pass_reference`], shaped like the released code: two backward passes to
//!   measure the scope, then a third backward of the re-weighted loss. Kept for tests and
//!   benchmarks only.
//!
//! Both *accumulate* into `.grad`, like `Tensor::backward`: zero the gradients before the step,
//! and add further terms by including them as `unharmonized` (or by calling `backward` on them).

use crate::on_device::DeviceWeights;
use crate::{Harmonization, Harmonizer, OutsideScope};
use std::borrow::Borrow;
use tch::nn::VarStore;
use tch::{Kind, TchError, Tensor};

/// Every variable of several stores (parameters and buffers such as batch-norm running
/// statistics), named `<label>/<variable path>` and sorted by name within each store, so the order
/// never depends on hash iteration.
pub fn named_variables(stores: &[(&str, &VarStore)]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (label, vs) in stores {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(vars.into_iter().map(|(name, t)| (format!("{label}/{name}"), t)));
    }
    out
}

/// The trainable parameters of a training step, in a fixed (named) order.
pub struct Parameters {
    names: Vec<String>,
    tensors: Vec<Tensor>,
}

impl Parameters {
    /// Trainable variables of several stores, named `<label>/<variable path>` and sorted by name
    /// within each store so the order never depends on hash iteration.
    pub fn from_stores(stores: &[(&str, &VarStore)]) -> Self {
        let (names, tensors) = named_variables(stores).into_iter().filter(|(_, t)| t.requires_grad()).unzip();
        Parameters { names, tensors }
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// The parameters whose names start with one of `prefixes` (e.g. `"G/"` for a whole store).
    pub fn scope(&self, name: &str, prefixes: &[&str]) -> Result<Scope, TchError> {
        let members: Vec<usize> = (0..self.names.len())
            .filter(|&i| prefixes.iter().any(|p| self.names[i].starts_with(p)))
            .collect();
        if members.is_empty() {
            return Err(TchError::Kind(format!(
                "scope '{name}' matches no trainable parameter (prefixes {prefixes:?}; parameters \
                 are named like '{}')",
                self.names.first().map(String::as_str).unwrap_or("<none>")
            )));
        }
        Ok(Scope { name: name.to_owned(), members })
    }

    /// Zeroes every existing gradient in place (keeps `.grad` allocated, unlike libtorch's
    /// optimizer `zero_grad`, which drops it).
    pub fn zero_grad(&self) {
        for t in &self.tensors {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
}

/// A named subset of [`Parameters`] whose flattened gradients give the dot products.
#[derive(Clone, Debug)]
pub struct Scope {
    name: String,
    members: Vec<usize>,
}

impl Scope {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn members(&self) -> &[usize] {
        &self.members
    }
}

/// Two losses to harmonize, in the baseline's order (GH++ as released is not symmetric), with the
/// coefficients some baselines apply after harmonizing: `c1·w1·L1 + c2·w2·L2`.
pub struct LossPair<'a> {
    pub l1: &'a Tensor,
    pub l2: &'a Tensor,
    pub c1: f64,
    pub c2: f64,
    pub scope: &'a Scope,
}

impl<'a> LossPair<'a> {
    pub fn new(l1: &'a Tensor, l2: &'a Tensor, scope: &'a Scope) -> Self {
        LossPair { l1, l2, c1: 1.0, c2: 1.0, scope }
    }

    pub fn with_coefficients(mut self, c1: f64, c2: f64) -> Self {
        self.c1 = c1;
        self.c2 = c2;
        self
    }
}

/// Everything one backward step differentiates: harmonized pairs plus the step's other terms.
pub struct StepLosses<'a> {
    pub pairs: Vec<LossPair<'a>>,
    /// The sum of the step's terms that no pair harmonizes (added with weight 1), if any.
    pub unharmonized: Option<&'a Tensor>,
}

/// The default path: two backward passes per pair. Returns one record per pair (the weights are
/// computed on the host: one device sync per pair; see [`backward_two_pass_on_device`]).
pub fn backward_two_pass(
    harmonizer: &Harmonizer,
    params: &Parameters,
    losses: &StepLosses,
) -> Result<Vec<Harmonization>, TchError> {
    backward_two_pass_with(harmonizer, params, losses, |dots, pair| {
        let record = weights_on_host(harmonizer, dots)?;
        Ok(((Factor::Number(pair.c1 * record.w1), Factor::Number(pair.c2 * record.w2)), record))
    })
}

/// [`backward_two_pass`] with the weights computed where the gradients are
/// ([`Harmonizer::weights_on_device`]): nothing is read back, so on CUDA the step queues its
/// work without waiting. Read a pair's record with [`crate::on_device::DeviceWeights::to_host`]
/// only when it is needed (telemetry steps).
pub fn backward_two_pass_on_device(
    harmonizer: &Harmonizer,
    params: &Parameters,
    losses: &StepLosses,
) -> Result<Vec<DeviceWeights>, TchError> {
    backward_two_pass_with(harmonizer, params, losses, |dots, pair| {
        let w = harmonizer.weights_on_device(dots)?;
        Ok(((Factor::Tensor(w.w1().f_mul_scalar(pair.c1)?), Factor::Tensor(w.w2().f_mul_scalar(pair.c2)?)), w))
    })
}

/// The two-pass step, with `weigh` turning a pair's `[n1, n2, d]` (on the device) into the
/// factors of its two harmonized terms and the pair's record `W`.
fn backward_two_pass_with<W>(
    harmonizer: &Harmonizer,
    params: &Parameters,
    losses: &StepLosses,
    weigh: impl Fn(&Tensor, &LossPair) -> Result<((Factor, Factor), W), TchError>,
) -> Result<Vec<W>, TchError> {
    let passes = 2 * losses.pairs.len();
    let mut pass = 0;
    let mut combined: Vec<Option<Tensor>> = (0..params.len()).map(|_| None).collect();
    let mut records = Vec::with_capacity(losses.pairs.len());
    for pair in &losses.pairs {
        pass += 2;
        let keep_graph = pass < passes || losses.unharmonized.is_some();
        let g1 = gradients(pair.l1, params.tensors(), true)?;
        let g2 = gradients(pair.l2, params.tensors(), keep_graph)?;
        let dots = scope_dot_products(&g1, &g2, pair.scope, pair.l1.device())?;
        // The factors of the harmonized terms: numbers, or 0-dim device tensors.
        let (harmonized, weights) = weigh(&dots, pair)?;
        let plain = (Factor::Number(pair.c1), Factor::Number(pair.c2));
        let mut in_scope = vec![harmonizer.outside_scope() == OutsideScope::Reweighted; params.len()];
        for &i in &pair.scope.members {
            in_scope[i] = true;
        }
        for ((slot, (a, b)), reweight) in combined.iter_mut().zip(g1.into_iter().zip(g2)).zip(in_scope) {
            let (k1, k2) = if reweight { (&harmonized.0, &harmonized.1) } else { (&plain.0, &plain.1) };
            for (g, k) in [a.map(|a| (a, k1)), b.map(|b| (b, k2))].into_iter().flatten() {
                let scaled = k.scale(&g)?;
                *slot = Some(match slot.take() {
                    Some(acc) => acc.f_add(&scaled)?,
                    None => scaled,
                });
            }
        }
        records.push(weights);
    }
    accumulate_into_grads(params.tensors(), combined)?;
    if let Some(other) = losses.unharmonized {
        other.f_backward()?;
    }
    Ok(records)
}

/// [`Harmonizer::weights`] of `dots = [n1, n2, d]`, read back from the device (a sync on CUDA).
fn weights_on_host(harmonizer: &Harmonizer, dots: &Tensor) -> Result<Harmonization, TchError> {
    crate::host_reads::note();
    let v = Vec::<f64>::try_from(dots.f_to_device(tch::Device::Cpu)?)?;
    Ok(harmonizer.weights(v[0], v[1], v[2]))
}

/// A gradient's factor: `g·k` with `k` a number or a 0-dim double tensor on g's device (the same
/// product: libtorch casts either to g's float type first).
enum Factor {
    Number(f64),
    Tensor(Tensor),
}

impl Factor {
    fn scale(&self, g: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Factor::Number(k) => g.f_mul_scalar(*k),
            Factor::Tensor(k) => g.f_mul(k),
        }
    }
}

/// The released code's shape: per pair, backward L1 and L2 to measure the scope; then a third
/// backward of `Σ (c1·w1·L1 + c2·w2·L2) + unharmonized`. Reference for tests and benchmarks; it can only
/// express the released re-weighting of every parameter.
pub fn backward_three_pass_reference(
    harmonizer: &Harmonizer,
    params: &Parameters,
    losses: &StepLosses,
) -> Result<Vec<Harmonization>, TchError> {
    if harmonizer.outside_scope() != OutsideScope::Reweighted {
        return Err(TchError::Kind(
            "the three-pass reference re-weights every parameter (the released shape); a scope-only harmonizer needs the two-pass path".into(),
        ));
    }
    let mut records = Vec::with_capacity(losses.pairs.len());
    let mut total: Option<Tensor> = losses.unharmonized.map(|e| e.shallow_clone());
    for pair in &losses.pairs {
        let scope: Vec<&Tensor> = pair.scope.members.iter().map(|&i| &params.tensors()[i]).collect();
        let g1 = gradients(pair.l1, &scope, true)?;
        let g2 = gradients(pair.l2, &scope, true)?;
        let all: Scope = Scope { name: pair.scope.name.clone(), members: (0..scope.len()).collect() };
        let dots = scope_dot_products(&g1, &g2, &all, pair.l1.device())?;
        let record = weights_on_host(harmonizer, &dots)?;
        let weighted = pair
            .l1
            .f_mul_scalar(pair.c1 * record.w1)?
            .f_add(&pair.l2.f_mul_scalar(pair.c2 * record.w2)?)?;
        total = Some(match total {
            Some(t) => t.f_add(&weighted)?,
            None => weighted,
        });
        records.push(record);
    }
    if let Some(total) = total {
        total.f_backward()?;
    }
    Ok(records)
}

/// One backward of `Σ (c1·L1 + c2·L2) + unharmonized`: the unharmonized step, when nothing is measured.
pub fn backward_plain(losses: &StepLosses) -> Result<(), TchError> {
    let mut total: Option<Tensor> = losses.unharmonized.map(|e| e.shallow_clone());
    for pair in &losses.pairs {
        let sum = pair.l1.f_mul_scalar(pair.c1)?.f_add(&pair.l2.f_mul_scalar(pair.c2)?)?;
        total = Some(match total {
            Some(t) => t.f_add(&sum)?,
            None => sum,
        });
    }
    if let Some(total) = total {
        total.f_backward()?;
    }
    Ok(())
}

/// d loss / d input for each input, without touching `.grad`; `None` where the loss does not
/// depend on the input.
fn gradients<T: Borrow<Tensor>>(
    loss: &Tensor,
    inputs: &[T],
    keep_graph: bool,
) -> Result<Vec<Option<Tensor>>, TchError> {
    if !loss.requires_grad() {
        return Ok(inputs.iter().map(|_| None).collect());
    }
    let grads = Tensor::f_run_backward(&[loss], inputs, keep_graph, false)?;
    Ok(grads.into_iter().map(|g| g.defined().then_some(g)).collect())
}

/// `[n1, n2, d]` over the scope's members, summed in double precision on the gradients' device
/// (`device`: where a scope without gradients puts its zeros).
fn scope_dot_products(
    g1: &[Option<Tensor>],
    g2: &[Option<Tensor>],
    scope: &Scope,
    device: tch::Device,
) -> Result<Tensor, TchError> {
    let mut sums: [Option<Tensor>; 3] = [None, None, None];
    for &i in &scope.members {
        let (a, b) = (&g1[i], &g2[i]);
        let mut terms = Vec::with_capacity(3);
        if let Some(a) = a {
            terms.push((0, a.f_square()?.f_sum(Kind::Double)?));
        }
        if let Some(b) = b {
            terms.push((1, b.f_square()?.f_sum(Kind::Double)?));
        }
        if let (Some(a), Some(b)) = (a, b) {
            terms.push((2, a.f_mul(b)?.f_sum(Kind::Double)?));
        }
        for (k, t) in terms {
            sums[k] = Some(match sums[k].take() {
                Some(s) => s.f_add(&t)?,
                None => t,
            });
        }
    }
    let stacked: Vec<Tensor> = sums.into_iter().map(|s| s.unwrap_or_else(|| Tensor::zeros([], (Kind::Double, device)))).collect();
    Tensor::f_stack(&stacked, 0)
}

/// `grad_p += g_p` for every parameter with a gradient. Parameters whose `.grad` is not allocated
/// yet (libtorch's optimizers drop it in `zero_grad`) get it through a tiny surrogate backward:
/// `d/dp Σ <p, g_p> = g_p` exactly, at the cost of one element-wise product per parameter.
fn accumulate_into_grads(params: &[Tensor], grads: Vec<Option<Tensor>>) -> Result<(), TchError> {
    let mut surrogate: Option<Tensor> = None;
    for (p, g) in params.iter().zip(grads) {
        let Some(g) = g else { continue };
        let mut existing = p.grad();
        if existing.defined() {
            let _ = tch::no_grad(|| existing.f_add_(&g))?;
        } else {
            let term = p.f_mul(&g.detach())?.f_sum(p.kind())?;
            surrogate = Some(match surrogate {
                Some(s) => s.f_add(&term)?,
                None => term,
            });
        }
    }
    if let Some(s) = surrogate {
        s.f_backward()?;
    }
    Ok(())
}
