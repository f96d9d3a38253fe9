//! Source only: the backbone and a linear classifier trained on labelled source data. No
//! adaptation, nothing to harmonize; the lower bound every baseline is compared with.

use super::common::{apply_schedule, backward, GroupMultipliers, GroupedSgd, LrSchedule, Sgd};
use super::{Batch, HeadOutputs, Setup, StepContext, UdaMethod};
use crate::networks::named_variables;
use crate::networks::heads::LinearClassifier;
use crate::networks::init::LayerInit;
use crate::networks::Backbone;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub batch: usize,
    pub sgd: Sgd,
    pub lr_schedule: LrSchedule,
}

pub struct SourceOnly {
    config: Config,
    vs: nn::VarStore,
    iters_per_epoch: u64,
    backbone: Backbone,
    classifier: LinearClassifier,
    opt: GroupedSgd,
}

impl SourceOnly {
    pub fn new(config: Config, setup: &Setup) -> Result<Self> {
        let vs = nn::VarStore::new(setup.device);
        let backbone = Backbone::build(&(vs.root() / "backbone"), &setup.network, setup.dropout);
        let classifier = LinearClassifier::new(&(vs.root() / "classifier"), backbone.features(), setup.classes, LayerInit::PyTorchDefault);
        let opt = config.sgd.build(&vs, &GroupMultipliers::default())?;
        Ok(SourceOnly { config, vs, iters_per_epoch: setup.iters_per_epoch, backbone, classifier, opt })
    }
}

impl UdaMethod for SourceOnly {
    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<()> {
        apply_schedule(&mut [(&mut self.opt, self.config.sgd.lr, &self.config.lr_schedule)], ctx.iteration, self.iters_per_epoch);
        self.opt.zero_grad();
        let logits = self.classifier.forward(&self.backbone.forward_t(&batch.source, true));
        let loss = logits.cross_entropy_for_logits(&batch.labels);
        ctx.log_loss("cls", &loss);
        backward(&loss)?;
        self.opt.step();
        Ok(())
    }

    fn eval_heads(&self, images: &Tensor) -> HeadOutputs {
        tch::no_grad(|| vec![("c".to_owned(), self.classifier.forward(&self.backbone.forward_t(images, false)))])
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        named_variables(&[("model", &self.vs)])
    }

    fn learning_rates(&self) -> Vec<(String, f64)> {
        self.opt.learning_rates("model")
    }
}

/// Nothing is harmonized.
pub const PAIRS: &[super::PairDescription] = &[];

impl super::MethodSpec for Config {
    fn batch(&self) -> usize {
        self.batch
    }
    fn build(&self, setup: &Setup) -> Result<Box<dyn UdaMethod>> {
        Ok(Box::new(SourceOnly::new(self.clone(), setup)?))
    }
}
