//! Mean ± std and n over seeds, per dataset × task × baseline × harmonizer (polars).

use crate::records::CellRecord;
use anyhow::Result;
use polars::prelude::*;

/// The aggregate of one table cell. Accuracies in percent; std over completed runs (n − 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub dataset: String,
    pub task: String,
    pub baseline: String,
    pub harmonizer: String,
    pub harmonizer_method: String,
    pub alpha: f64,
    pub runs: u32,
    pub completed: u32,
    pub diverged: u32,
    /// Runs that never trained the baseline's transfer loss or harmonized pair (excluded).
    pub not_trained: u32,
    pub final_mean: Option<f64>,
    pub final_std: Option<f64>,
    pub best_mean: Option<f64>,
    pub best_std: Option<f64>,
    pub seconds_per_epoch: Option<f64>,
    pub seconds_per_100_steps: Option<f64>,
    /// Of the baseline's main pair (alignment vs classification).
    pub conflict_rate: Option<f64>,
    pub mean_w1: Option<f64>,
    pub mean_w2: Option<f64>,
}

/// The pair whose conflicts the paper discusses (alignment vs classification).
pub fn main_pair(baseline: &str) -> &'static str {
    match baseline {
        "mcd" => "stepB",
        "dwl" => "balance",
        _ => "transfer/cls",
    }
}

pub fn aggregate(records: &[CellRecord]) -> Result<Vec<Aggregate>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let col_str = |f: fn(&CellRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
    let col_f64 = |f: &dyn Fn(&CellRecord) -> Option<f64>| records.iter().map(f).collect::<Vec<Option<f64>>>();
    let pair = |r: &CellRecord| r.pairs.get(main_pair(&r.baseline)).cloned();
    let df = df!(
        "dataset" => col_str(|r| &r.dataset),
        "task" => col_str(|r| &r.task),
        "baseline" => col_str(|r| &r.baseline),
        "harmonizer" => col_str(|r| &r.harmonizer),
        "method" => col_str(|r| &r.harmonizer_method),
        "alpha" => records.iter().map(|r| r.alpha).collect::<Vec<f64>>(),
        "diverged" => records.iter().map(|r| u32::from(r.diverged_at.is_some())).collect::<Vec<u32>>(),
        "not_trained" => records.iter().map(|r| u32::from(r.not_trained.is_some())).collect::<Vec<u32>>(),
        "final" => col_f64(&|r| r.final_accuracy),
        "best" => col_f64(&|r| r.best_accuracy),
        "sec_epoch" => col_f64(&|r| Some(r.seconds_per_epoch).filter(|v| v.is_finite())),
        "sec_100" => col_f64(&|r| Some(r.seconds_per_100_steps).filter(|v| v.is_finite())),
        "conflict" => col_f64(&|r| pair(r).and_then(|p| p.conflict_rate)),
        "w1" => col_f64(&|r| pair(r).and_then(|p| p.mean_w1)),
        "w2" => col_f64(&|r| pair(r).and_then(|p| p.mean_w2)),
    )?;
    let keys = [col("dataset"), col("task"), col("baseline"), col("harmonizer")];
    let out = df
        .lazy()
        .group_by(keys)
        .agg([
            col("method").first(),
            col("alpha").first(),
            len().alias("runs"),
            col("diverged").sum().alias("n_diverged"),
            col("not_trained").sum().alias("n_not_trained"),
            col("final").count().alias("completed"),
            col("final").mean().alias("final_mean"),
            col("final").std(1).alias("final_std"),
            col("best").mean().alias("best_mean"),
            col("best").std(1).alias("best_std"),
            col("sec_epoch").mean(),
            col("sec_100").mean(),
            col("conflict").mean(),
            col("w1").mean(),
            col("w2").mean(),
        ])
        .sort(["dataset", "task", "baseline", "harmonizer"], Default::default())
        .collect()?;
    let s = |name: &str| -> Result<Vec<String>> {
        Ok(out.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
    };
    let num = |name: &str| -> Result<Vec<Option<f64>>> {
        let c = out.column(name)?.cast(&DataType::Float64)?;
        Ok(c.f64()?.iter().collect())
    };
    let (dataset, task, baseline, harmonizer, method) = (s("dataset")?, s("task")?, s("baseline")?, s("harmonizer")?, s("method")?);
    let (alpha, runs, completed, diverged, not_trained) = (num("alpha")?, num("runs")?, num("completed")?, num("n_diverged")?, num("n_not_trained")?);
    let (fm, fs, bm, bs) = (num("final_mean")?, num("final_std")?, num("best_mean")?, num("best_std")?);
    let (se, s100, conflict, w1, w2) = (num("sec_epoch")?, num("sec_100")?, num("conflict")?, num("w1")?, num("w2")?);
    Ok((0..out.height())
        .map(|i| Aggregate {
            dataset: dataset[i].clone(),
            task: task[i].clone(),
            baseline: baseline[i].clone(),
            harmonizer: harmonizer[i].clone(),
            harmonizer_method: method[i].clone(),
            alpha: alpha[i].unwrap_or(0.5),
            runs: runs[i].unwrap_or(0.0) as u32,
            completed: completed[i].unwrap_or(0.0) as u32,
            diverged: diverged[i].unwrap_or(0.0) as u32,
            not_trained: not_trained[i].unwrap_or(0.0) as u32,
            final_mean: fm[i],
            final_std: fs[i],
            best_mean: bm[i],
            best_std: bs[i],
            seconds_per_epoch: se[i],
            seconds_per_100_steps: s100[i],
            conflict_rate: conflict[i],
            mean_w1: w1[i],
            mean_w2: w2[i],
        })
        .collect())
}
