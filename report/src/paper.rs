//! The paper's reported numbers (`report/paper_results.toml`, embedded).

use anyhow::{Context, Result};
use serde::Deserialize;

pub const EMBEDDED: &str = include_str!("../paper_results.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperResults {
    pub table: Vec<Table>,
    pub matrix: Vec<Matrix>,
    pub speed: Vec<Speed>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub id: String,
    pub dataset: String,
    pub title: String,
    pub columns: Vec<String>,
    /// Tasks left out of the paper's Avg‡ column (Tables I and II), where it has one.
    #[serde(default)]
    pub avg_dagger_excludes: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub name: String,
    pub baseline: String,
    pub harmonizer: String,
    pub values: Vec<f64>,
}

/// DomainNet's source × target matrices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub id: String,
    pub dataset: String,
    pub title: String,
    pub labels: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRow {
    pub name: String,
    pub baseline: String,
    pub harmonizer: String,
    pub values: Vec<Vec<f64>>,
}

/// Table VI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Speed {
    pub id: String,
    pub dataset: String,
    pub title: String,
    pub rows: Vec<SpeedRow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedRow {
    pub task: String,
    pub baseline: String,
    pub harmonizer: String,
    pub seconds_per_epoch: f64,
    pub accuracy: f64,
}

impl PaperResults {
    pub fn embedded() -> Result<PaperResults> {
        toml::from_str(EMBEDDED).context("report/paper_results.toml (embedded)")
    }

    /// The paper's accuracy for a baseline, harmonizer and task (`M-U`, `clp-inf`, ...).
    pub fn accuracy(&self, dataset: &str, baseline: &str, harmonizer: &str, task: &str) -> Option<f64> {
        if let Some(t) = self.table.iter().find(|t| t.dataset == dataset) {
            let col = t.columns.iter().position(|c| c == task)?;
            let row = t.rows.iter().find(|r| r.baseline == baseline && r.harmonizer == harmonizer)?;
            return row.values.get(col).copied().filter(|v| v.is_finite());
        }
        let m = self.matrix.iter().find(|m| m.dataset == dataset)?;
        let (s, t) = task.split_once('-')?;
        let (i, j) = (m.labels.iter().position(|l| l == s)?, m.labels.iter().position(|l| l == t)?);
        let row = m.rows.iter().find(|r| r.baseline == baseline && r.harmonizer == harmonizer)?;
        row.values.get(i)?.get(j).copied().filter(|v| v.is_finite())
    }

    /// Table id and title of a dataset's table.
    pub fn table_of(&self, dataset: &str) -> Option<(String, String)> {
        self.table
            .iter()
            .find(|t| t.dataset == dataset)
            .map(|t| (t.id.clone(), t.title.clone()))
            .or_else(|| self.matrix.iter().find(|m| m.dataset == dataset).map(|m| (m.id.clone(), m.title.clone())))
    }

    /// The tasks the paper's Avg‡ leaves out, for a dataset whose table has an Avg‡ column.
    pub fn avg_dagger_excludes(&self, dataset: &str) -> Option<&[String]> {
        self.table.iter().find(|t| t.dataset == dataset && !t.avg_dagger_excludes.is_empty()).map(|t| t.avg_dagger_excludes.as_slice())
    }

    /// The paper's task order for a dataset.
    pub fn task_order(&self, dataset: &str) -> Vec<String> {
        if let Some(t) = self.table.iter().find(|t| t.dataset == dataset) {
            return t.columns.iter().filter(|c| !c.starts_with("Avg")).cloned().collect();
        }
        let Some(m) = self.matrix.iter().find(|m| m.dataset == dataset) else { return Vec::new() };
        let doms: Vec<&String> = m.labels.iter().filter(|l| *l != "Avg").collect();
        doms.iter().flat_map(|s| doms.iter().filter(move |t| t != &s).map(move |t| format!("{s}-{t}"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avg_dagger_as_reconstructed_reproduces_every_row() {
        let p = PaperResults::embedded().unwrap();
        for dataset in ["office31", "officehome"] {
            let t = p.table.iter().find(|t| t.dataset == dataset).unwrap();
            let excluded = p.avg_dagger_excludes(dataset).unwrap();
            let kept: Vec<usize> = t.columns.iter().enumerate().filter(|(_, c)| !c.starts_with("Avg") && !excluded.contains(c)).map(|(i, _)| i).collect();
            let dagger = t.columns.iter().position(|c| c == "Avg‡").unwrap();
            for r in &t.rows {
                let mean = kept.iter().map(|&i| r.values[i]).sum::<f64>() / kept.len() as f64;
                assert!((mean - r.values[dagger]).abs() <= 0.06, "{dataset} {}: {mean} vs {}", r.name, r.values[dagger]);
            }
        }
        assert!(p.avg_dagger_excludes("visda2017").is_none());
    }

    #[test]
    fn transcription_holds_the_six_tables() {
        let p = PaperResults::embedded().unwrap();
        assert_eq!(p.table.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["I", "II", "III", "IV"]);
        assert_eq!(p.matrix[0].id, "V");
        assert_eq!(p.speed[0].id, "VI");
        assert_eq!(p.accuracy("digits", "mcd", "gh", "M-U"), Some(96.7));
        assert_eq!(p.accuracy("office31", "cdan", "gh++", "W-A"), Some(73.3));
        assert_eq!(p.accuracy("domainnet", "mcd", "none", "clp-inf"), Some(14.2));
        assert_eq!(p.accuracy("domainnet", "mcd", "none", "clp-clp"), None);
        assert_eq!(p.accuracy("visda2017", "dwl", "gh++", "Syn-Real"), Some(77.9));
        assert_eq!(p.task_order("domainnet").len(), 30);
        assert_eq!(p.task_order("digits"), ["M-U", "U-M", "S-M"]);
        // Every table row has one value per column.
        for t in &p.table {
            for r in &t.rows {
                assert_eq!(r.values.len(), t.columns.len(), "{} {}", t.id, r.name);
            }
        }
    }
}
