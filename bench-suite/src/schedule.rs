//! A protocol's schedule as the protocol file states it: how long a run trains, how long an
//! epoch is, when it is evaluated. Most protocols give fixed iteration counts (an MCD epoch is
//! 2,500 iterations whatever the data); CDAN's digits script counts epochs of the data, as many
//! batches as the longer training set holds (`max(len(source), len(target)) / batch`, drop_last),
//! so the same protocol on your own folders has epochs of their size. Resolving gives the run's
//! [`Schedule`]; `run-one --iters` changes the length of a run, never the epoch.

use anyhow::{bail, Result};
use baselines::data::TrainSizes;
use baselines::train::Schedule;
use serde::Deserialize;

/// How many iterations an epoch has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochLength {
    Iterations(u64),
    /// `"longer-domain"`: the batches of the longer of the two training sets, drop_last.
    LongerDomain,
}

impl<'de> Deserialize<'de> for EpochLength {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::Integer(n) if n > 0 => Ok(EpochLength::Iterations(n as u64)),
            toml::Value::String(s) if s == "longer-domain" => Ok(EpochLength::LongerDomain),
            other => Err(D::Error::custom(format!(
                "iters_per_epoch = {other}: expected a positive number of iterations or \"longer-domain\" \
                 (max(len(source), len(target)) / batch, drop_last)"
            ))),
        }
    }
}

/// A `[schedule.<dataset>.<baseline>]` entry: a length in iterations or in epochs, an epoch
/// length, an evaluation interval in iterations or in epochs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    #[serde(default)]
    pub iterations: Option<u64>,
    #[serde(default)]
    pub epochs: Option<u64>,
    pub iters_per_epoch: EpochLength,
    #[serde(default)]
    pub eval_every: Option<u64>,
    #[serde(default)]
    pub eval_every_epochs: Option<u64>,
}

impl ScheduleRule {
    pub fn validate(&self) -> Result<()> {
        match (self.iterations, self.epochs) {
            (Some(n), None) | (None, Some(n)) if n > 0 => {}
            (Some(_), Some(_)) => bail!("give either iterations or epochs, not both"),
            _ => bail!("needs a positive `iterations` or `epochs`"),
        }
        match (self.eval_every, self.eval_every_epochs) {
            (Some(n), None) | (None, Some(n)) if n > 0 => {}
            (Some(_), Some(_)) => bail!("give either eval_every or eval_every_epochs, not both"),
            _ => bail!("needs a positive `eval_every` or `eval_every_epochs`"),
        }
        Ok(())
    }

    /// Whether the epoch depends on the training sets' sizes.
    pub fn needs_sizes(&self) -> bool {
        self.iters_per_epoch == EpochLength::LongerDomain
    }

    /// How the epoch is made, in words (the plan block).
    pub fn epoch_rule(&self, batch: usize) -> String {
        match self.iters_per_epoch {
            EpochLength::Iterations(n) => format!("{n} iterations (fixed by the protocol)"),
            EpochLength::LongerDomain => format!("max(len(source), len(target)) / {batch}, drop_last (the protocol's data epoch)"),
        }
    }

    /// The run's schedule at `batch` images per domain over training sets of `sizes` (needed
    /// only where the epoch is the data's).
    pub fn resolve(&self, batch: usize, sizes: Option<TrainSizes>) -> Result<Schedule> {
        let iters_per_epoch = match self.iters_per_epoch {
            EpochLength::Iterations(n) => n,
            EpochLength::LongerDomain => {
                let Some(sizes) = sizes else {
                    bail!("this protocol's epoch is max(len(source), len(target)) / batch: the training sets' sizes are needed (the data could not be read)")
                };
                let longer = sizes.source.max(sizes.target);
                if longer < batch {
                    bail!("the training sets ({} source, {} target images) hold less than one batch of {batch}: an epoch would have no iteration (lower the batch with --set batch=N)", sizes.source, sizes.target);
                }
                (longer / batch) as u64
            }
        };
        Ok(Schedule {
            iterations: self.iterations.unwrap_or_else(|| self.epochs.unwrap_or(1) * iters_per_epoch),
            iters_per_epoch,
            eval_every: self.eval_every.unwrap_or_else(|| self.eval_every_epochs.unwrap_or(1) * iters_per_epoch),
        })
    }
}

impl From<Schedule> for ScheduleRule {
    fn from(s: Schedule) -> Self {
        ScheduleRule { iterations: Some(s.iterations), epochs: None, iters_per_epoch: EpochLength::Iterations(s.iters_per_epoch), eval_every: Some(s.eval_every), eval_every_epochs: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScheduleRule> {
        let rule: ScheduleRule = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        rule.validate()?;
        Ok(rule)
    }

    #[test]
    fn a_data_epoch_is_the_longer_domain_in_whole_batches() {
        let rule = parse("epochs = 10\niters_per_epoch = \"longer-domain\"\neval_every_epochs = 1").unwrap();
        assert!(rule.needs_sizes());
        // CDAN's digits script on M->U: floor(60000 / 64) = 937, 10 epochs.
        let s = rule.resolve(64, Some(TrainSizes { source: 60_000, target: 2_007 })).unwrap();
        assert_eq!((s.iterations, s.iters_per_epoch, s.eval_every), (9370, 937, 937));
        // Your own folders: 3,000 source and 1,800 target images, batch 64: 46 per epoch.
        let s = rule.resolve(64, Some(TrainSizes { source: 1_800, target: 3_000 })).unwrap();
        assert_eq!((s.iterations, s.iters_per_epoch), (460, 46));
        assert!(rule.resolve(64, None).unwrap_err().to_string().contains("sizes are needed"));
        assert!(rule.resolve(64, Some(TrainSizes { source: 10, target: 20 })).unwrap_err().to_string().contains("--set batch"));
    }

    #[test]
    fn fixed_schedules_ignore_the_data_and_bad_entries_are_named() {
        let rule = parse("iterations = 50000\niters_per_epoch = 2500\neval_every = 2500").unwrap();
        assert!(!rule.needs_sizes());
        assert_eq!(rule.resolve(128, None).unwrap(), Schedule { iterations: 50_000, iters_per_epoch: 2500, eval_every: 2500 });
        assert!(parse("iterations = 5\nepochs = 2\niters_per_epoch = 2\neval_every = 1").unwrap_err().to_string().contains("not both"));
        assert!(parse("iters_per_epoch = 2\neval_every = 1").unwrap_err().to_string().contains("iterations"));
        let err = parse("iterations = 5\niters_per_epoch = \"longest\"\neval_every = 1").unwrap_err().to_string();
        assert!(err.contains("longer-domain"), "{err}");
    }
}
