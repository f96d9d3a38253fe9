//! LaTeX tables in the paper's layout: tasks as columns plus Avg, each baseline followed by its
//! +GH and +GH++ rows, best per column in bold, the paper's number and our difference beside ours.

use crate::aggregate::Aggregate;
use crate::paper::PaperResults;
use crate::speed::Speeds;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Which evaluation a table reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The model after the last iteration (no model selection).
    Last,
    /// The best evaluation on target test labels: oracle selection, as the released code reports.
    BestOracle,
}

impl Selection {
    pub fn slug(self) -> &'static str {
        match self {
            Selection::Last => "last",
            Selection::BestOracle => "best",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Selection::Last => "the model after the last iteration (no model selection)",
            Selection::BestOracle => "the best of all evaluations, chosen with the target test labels (oracle selection, as the released code reports)",
        }
    }

    fn of(self, a: &Aggregate) -> (Option<f64>, Option<f64>) {
        match self {
            Selection::Last => (a.final_mean, a.final_std),
            Selection::BestOracle => (a.best_mean, a.best_std),
        }
    }
}

/// The grid's lists in bench-suite/protocol.toml, which order the report's rows and colours.
#[derive(serde::Deserialize)]
struct GridLists {
    baselines: Vec<String>,
    harmonizers: Vec<String>,
}

fn grid_lists() -> &'static GridLists {
    static LISTS: std::sync::OnceLock<GridLists> = std::sync::OnceLock::new();
    LISTS.get_or_init(|| toml::from_str(include_str!("../../bench-suite/protocol.toml")).expect("bench-suite/protocol.toml has baselines and harmonizers lists"))
}

/// The baselines in table order: source-only, then the grid's `baselines` list of
/// bench-suite/protocol.toml (the paper's order), so a baseline added there gets its rows here.
pub fn baseline_order() -> &'static [String] {
    static ORDER: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ORDER.get_or_init(|| std::iter::once("source-only".to_owned()).chain(grid_lists().baselines.iter().cloned()).collect())
}

/// A baseline's place in [`baseline_order`] (unknown baselines after the known ones).
pub fn baseline_rank(baseline: &str) -> usize {
    let order = baseline_order();
    order.iter().position(|x| x == baseline).unwrap_or(order.len())
}

/// The harmonizers in row and colour order: the grid's `harmonizers` list of
/// bench-suite/protocol.toml (none, GH, GH++), so a harmonizer added there gets its place here.
pub fn harmonizer_order() -> &'static [String] {
    &grid_lists().harmonizers
}

/// A harmonizer label's place in [`harmonizer_order`] by its method (`gh++(rotation)` ranks with
/// `gh++`); unknown methods after the known ones.
pub fn harmonizer_rank(label: &str) -> usize {
    let method = label.split_once('(').map_or(label, |(m, _)| m);
    let order = harmonizer_order();
    order.iter().position(|x| x == method).unwrap_or(order.len())
}

/// Paper-style row name: CDAN, CDAN+GH, MCD+GH++ (α=0.25), GVB+GH (scope-only), ...
pub fn row_name(baseline: &str, harmonizer: &str) -> String {
    let base = match baseline {
        "source-only" => "Source only".to_owned(),
        b => b.to_ascii_uppercase(),
    };
    let (method, qualifiers) = match harmonizer.split_once('(') {
        Some((m, q)) => (m, Some(q.trim_end_matches(')'))),
        None => (harmonizer, None),
    };
    let mut name = match method {
        "none" => base,
        other => format!("{base}+{}", other.to_uppercase()),
    };
    if let Some(q) = qualifiers {
        name.push_str(&format!(" ({q})"));
    }
    name
}

/// Rows in the paper's order: baselines, each with none, gh, gh++ first, then variants.
pub fn ordered_rows(aggs: &[Aggregate]) -> Vec<(String, String)> {
    let mut rows: BTreeSet<(usize, usize, String, String)> = BTreeSet::new();
    for a in aggs {
        let b = baseline_rank(&a.baseline);
        // Variants (`gh++(α=0.25)`, `gh(scope-only)`) after the plain rows.
        let h = harmonizer_order().iter().position(|x| *x == a.harmonizer).unwrap_or(harmonizer_order().len());
        rows.insert((b, h, a.baseline.clone(), a.harmonizer.clone()));
    }
    rows.into_iter().map(|(_, _, b, h)| (b, h)).collect()
}

/// Escapes text for LaTeX and turns the few non-ASCII symbols we print into math.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '→' => out.push_str("$\\to$"),
            'α' => out.push_str("$\\alpha$"),
            '±' => out.push_str("$\\pm$"),
            '‡' => out.push_str("$\\ddagger$"),
            '×' => out.push_str("$\\times$"),
            _ => out.push(c),
        }
    }
    out
}

fn task_header(task: &str) -> String {
    escape(&task.replace('-', "→"))
}

fn signed(x: f64) -> String {
    if x < 0.0 {
        format!("$-${:.1}", -x)
    } else {
        format!("+{x:.1}")
    }
}

struct Cell {
    mean: Option<f64>,
    std: Option<f64>,
    paper: Option<f64>,
    diverged: u32,
    not_trained: u32,
    runs: u32,
}

fn render_cell(c: &Cell, bold: bool) -> String {
    let mut s = match c.mean {
        Some(m) => {
            let m = format!("{m:.1}");
            let m = if bold { format!("\\textbf{{{m}}}") } else { m };
            match c.std {
                Some(sd) => format!("{m}{{\\scriptsize$\\pm${sd:.1}}}"),
                None => m,
            }
        }
        None if c.runs > 0 && c.diverged == c.runs => "div.".to_owned(),
        None => "--".to_owned(),
    };
    if c.diverged > 0 && c.mean.is_some() {
        s.push_str(&format!("$^{{\\dagger{}}}$", c.diverged));
    }
    if c.not_trained > 0 {
        s.push_str(&format!("$^{{\\S{}}}$", c.not_trained));
    }
    match (c.mean, c.paper) {
        (Some(m), Some(p)) => s.push_str(&format!(" {{\\scriptsize({p:.1}, {})}}", signed(m - p))),
        (None, Some(p)) => s.push_str(&format!(" {{\\scriptsize({p:.1})}}")),
        _ => {}
    }
    s
}

/// One dataset's accuracy table.
pub fn accuracy_table(dataset: &str, selection: Selection, aggs: &[Aggregate], paper: &PaperResults, deviations: &[String], profile: &str) -> String {
    let aggs: Vec<&Aggregate> = aggs.iter().filter(|a| a.dataset == dataset).collect();
    let order = paper.task_order(dataset);
    let mut tasks: Vec<String> = order.iter().filter(|t| aggs.iter().any(|a| &a.task == *t)).cloned().collect();
    for a in &aggs {
        if !tasks.contains(&a.task) {
            tasks.push(a.task.clone());
        }
    }
    let owned: Vec<Aggregate> = aggs.iter().map(|a| (*a).clone()).collect();
    let rows = ordered_rows(&owned);
    // Avg‡ (Tables I and II): the mean without the paper's easiest tasks.
    let dagger = paper.avg_dagger_excludes(dataset);
    // cells[row][col], the last column is Avg over the table's tasks.
    let mut cells: Vec<Vec<Cell>> = Vec::new();
    for (baseline, harmonizer) in &rows {
        let mut row = Vec::new();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for t in &tasks {
            let a = aggs.iter().find(|a| &a.task == t && &a.baseline == baseline && &a.harmonizer == harmonizer);
            let (mean, std) = a.map(|a| selection.of(a)).unwrap_or((None, None));
            let p = paper.accuracy(dataset, baseline, harmonizer, t);
            ours.push(mean);
            theirs.push(p);
            row.push(Cell {
                mean,
                std,
                paper: p,
                diverged: a.map(|a| a.diverged).unwrap_or(0),
                not_trained: a.map(|a| a.not_trained).unwrap_or(0),
                runs: a.map(|a| a.runs).unwrap_or(0),
            });
        }
        let avg = |v: &[Option<f64>]| v.iter().copied().collect::<Option<Vec<f64>>>().map(|v| v.iter().sum::<f64>() / v.len() as f64);
        row.push(Cell { mean: avg(&ours), std: None, paper: avg(&theirs), diverged: 0, not_trained: 0, runs: 0 });
        if let Some(excluded) = dagger {
            let keep = |v: &[Option<f64>]| -> Vec<Option<f64>> { tasks.iter().zip(v).filter(|(t, _)| !excluded.contains(t)).map(|(_, x)| *x).collect() };
            row.push(Cell { mean: avg(&keep(&ours)), std: None, paper: avg(&keep(&theirs)), diverged: 0, not_trained: 0, runs: 0 });
        }
        cells.push(row);
    }
    let columns = tasks.len() + 1 + usize::from(dagger.is_some());
    let best: Vec<Option<f64>> = (0..columns)
        .map(|c| cells.iter().filter_map(|r| r[c].mean).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))))
        .collect();
    let ns: BTreeSet<u32> = aggs.iter().map(|a| a.runs).collect();
    let n_text = match ns.len() {
        0 => "no runs".to_owned(),
        1 => format!("$n = {}$ seed(s) per cell", ns.iter().next().unwrap()),
        _ => format!("$n$ from {} to {} seeds per cell", ns.iter().next().unwrap(), ns.iter().last().unwrap()),
    };
    let any_diverged = aggs.iter().any(|a| a.diverged > 0);
    let any_not_trained = aggs.iter().any(|a| a.not_trained > 0);
    let (table_id, title) = paper.table_of(dataset).unwrap_or_else(|| ("?".into(), dataset.into()));
    let mut out = String::new();
    let _ = writeln!(out, "% Generated by `report` from the runs of profile {profile}; do not edit by hand.");
    let _ = writeln!(out, "\\begin{{table}}[t]");
    let _ = writeln!(out, "\\centering");
    let mut caption = format!(
        "{}: target accuracy (\\%) of {}, mean{{\\scriptsize$\\pm$std}} over the runs that completed ({n_text}; std with $n-1$). \
         In brackets: the paper's Table~{table_id} and our difference. Best mean per column in bold. Avg is over the tasks shown.",
        escape(&title),
        selection.describe()
    );
    if let Some(excluded) = dagger {
        caption.push_str(&format!(
            " Avg$^\\ddagger$: over the tasks shown except {} (the paper does not define its Avg$^\\ddagger$; this reproduces all its rows).",
            excluded.iter().map(|t| task_header(t)).collect::<Vec<_>>().join(" and ")
        ));
    }
    if any_diverged {
        caption.push_str(" $\\dagger k$: $k$ runs diverged (excluded from the mean); div.: all diverged.");
    }
    if any_not_trained {
        caption.push_str(" $\\S k$: $k$ runs never trained the baseline's transfer loss or harmonized pair (not-adapted / not-harmonized; excluded from the mean and the claims).");
    }
    if !deviations.is_empty() {
        caption.push_str(" Deviations from the paper's protocol: ");
        caption.push_str(&deviations.iter().map(|d| escape(d)).collect::<Vec<_>>().join("; "));
        caption.push('.');
    }
    let _ = writeln!(out, "\\caption{{{caption}}}");
    let _ = writeln!(out, "\\label{{tab:{dataset}-{}}}", selection.slug());
    let _ = writeln!(out, "\\begin{{tabular}}{{l{}}}", "c".repeat(columns));
    let _ = writeln!(out, "\\toprule");
    let mut header: Vec<String> = tasks.iter().map(|t| task_header(t)).chain(std::iter::once("Avg".to_owned())).collect();
    if dagger.is_some() {
        header.push("Avg$^\\ddagger$".to_owned());
    }
    let _ = writeln!(out, "Method & {} \\\\", header.join(" & "));
    let _ = writeln!(out, "\\midrule");
    let mut last_baseline = None;
    for ((baseline, harmonizer), row) in rows.iter().zip(&cells) {
        if last_baseline.is_some() && last_baseline != Some(baseline) {
            let _ = writeln!(out, "\\midrule");
        }
        last_baseline = Some(baseline);
        let rendered: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| render_cell(cell, cell.mean.is_some() && cell.mean == best[c]))
            .collect();
        let _ = writeln!(out, "{} & {} \\\\", escape(&row_name(baseline, harmonizer)), rendered.join(" & "));
    }
    let _ = writeln!(out, "\\bottomrule");
    let _ = writeln!(out, "\\end{{tabular}}");
    let _ = writeln!(out, "\\end{{table}}");
    out
}

/// Table VI: training speed and accuracy, each baseline vs its harmonized variants. Speeds come
/// from `speeds` (bench-speed's record, or the cells not timed under load: the caption says which).
pub fn speed_table(dataset: &str, aggs: &[Aggregate], speeds: &Speeds, paper: &PaperResults, profile: &str) -> String {
    let aggs: Vec<&Aggregate> = aggs.iter().filter(|a| a.dataset == dataset && harmonizer_order().contains(&a.harmonizer)).collect();
    let order = paper.task_order(dataset);
    let tasks: Vec<String> = order.iter().filter(|t| aggs.iter().any(|a| &a.task == *t)).cloned().collect();
    let owned: Vec<Aggregate> = aggs.iter().map(|a| (*a).clone()).collect();
    let rows = ordered_rows(&owned);
    let mut out = String::new();
    let _ = writeln!(out, "% Generated by `report` from the runs of profile {profile}; do not edit by hand.");
    let _ = writeln!(out, "\\begin{{table}}[t]");
    let _ = writeln!(out, "\\centering");
    let paper_rows: Vec<String> = paper
        .speed
        .iter()
        .flat_map(|s| s.rows.iter())
        .map(|r| format!("{} {}: {:.5} s/epoch, {:.1}\\%", escape(&row_name(&r.baseline, &r.harmonizer)), task_header(&r.task), r.seconds_per_epoch, r.accuracy))
        .collect();
    let _ = writeln!(
        out,
        "\\caption{{Training speed and accuracy (\\%, last model, mean over completed runs) per baseline and harmonizer. \
         s/100: training seconds per 100 iterations, median (evaluation excluded); range: min--max; s/epoch: s/100 scaled to the run's epoch length; \
         $\\times$: time relative to the baseline without harmonization, median of paired ratios. {}. \
         The paper's Table~VI (its epochs, its machine): {}.}}",
        escape(&speeds.source.describe()),
        paper_rows.join("; ")
    );
    let _ = writeln!(out, "\\label{{tab:{dataset}-speed}}");
    let _ = writeln!(out, "\\begin{{tabular}}{{l{}}}", "rrrrr".repeat(tasks.len()));
    let _ = writeln!(out, "\\toprule");
    let group: Vec<String> = tasks.iter().map(|t| format!("\\multicolumn{{5}}{{c}}{{{}}}", task_header(t))).collect();
    let _ = writeln!(out, " & {} \\\\", group.join(" & "));
    let sub: Vec<&str> = tasks.iter().flat_map(|_| ["s/100", "range", "s/epoch", "$\\times$", "Acc."]).collect();
    let _ = writeln!(out, "Method & {} \\\\", sub.join(" & "));
    let _ = writeln!(out, "\\midrule");
    for (baseline, harmonizer) in &rows {
        let mut cols = Vec::new();
        for t in &tasks {
            let a = aggs.iter().find(|a| &a.task == t && &a.baseline == baseline && &a.harmonizer == harmonizer);
            let arm = speeds.find(t, baseline, harmonizer);
            let fmt = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "--".into());
            let median = arm.and_then(|x| x.median_seconds());
            // Iterations per epoch of the run's schedule, from the cell's own two timings.
            let per_epoch = a.and_then(|a| Some(a.seconds_per_epoch? / a.seconds_per_100_steps?));
            cols.push(fmt(median, 2));
            cols.push(arm.and_then(|x| crate::speed::min_max(&x.seconds_per_100)).map(|(l, h)| format!("{l:.2}--{h:.2}")).unwrap_or_else(|| "--".into()));
            cols.push(fmt(median.zip(per_epoch).map(|(m, k)| m * k), 2));
            cols.push(if harmonizer == "none" { "1".into() } else { fmt(arm.and_then(|x| x.median_ratio()), 2) });
            cols.push(fmt(a.and_then(|a| a.final_mean), 1));
        }
        let _ = writeln!(out, "{} & {} \\\\", escape(&row_name(baseline, harmonizer)), cols.join(" & "));
    }
    let _ = writeln!(out, "\\bottomrule");
    let _ = writeln!(out, "\\end{{tabular}}");
    let _ = writeln!(out, "\\end{{table}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_escapes() {
        assert_eq!(row_name("mcd", "gh++"), "MCD+GH++");
        assert_eq!(row_name("gvb", "gh(scope-only)"), "GVB+GH (scope-only)");
        assert_eq!(row_name("mcd", "gh++(α=0.25)"), "MCD+GH++ (α=0.25)");
        assert_eq!(escape("a_b 50% M→U α"), "a\\_b 50\\% M$\\to$U $\\alpha$");
        assert_eq!(signed(-1.25), "$-$1.2");
    }

    #[test]
    fn rows_follow_the_protocols_baseline_list() {
        let text = include_str!("../../bench-suite/protocol.toml");
        let grid: toml::Table = toml::from_str(text).unwrap();
        let listed: Vec<String> = grid["baselines"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert!(listed.len() >= 4, "{listed:?}");
        // Aggregates in reverse protocol order, an unknown baseline first: rows come out in the
        // protocol's order, source-only first, the unknown one last.
        let mut names = vec!["zzz-new".to_owned()];
        names.extend(listed.iter().rev().cloned());
        names.push("source-only".to_owned());
        let mut aggs = fixture_aggregates("digits", &["M-U".to_owned()]);
        let template = aggs.remove(0);
        aggs = names.iter().map(|n| Aggregate { baseline: n.clone(), harmonizer: "none".into(), ..template.clone() }).collect();
        let rows: Vec<String> = ordered_rows(&aggs).into_iter().map(|(b, _)| b).collect();
        let mut expected = vec!["source-only".to_owned()];
        expected.extend(listed);
        expected.push("zzz-new".to_owned());
        assert_eq!(rows, expected);
    }

    #[test]
    fn harmonizer_rows_follow_the_protocols_harmonizer_list() {
        let grid: toml::Table = toml::from_str(include_str!("../../bench-suite/protocol.toml")).unwrap();
        let listed: Vec<String> = grid["harmonizers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(harmonizer_order(), listed.as_slice());
        // Variants and unknown harmonizers after the listed ones, in each baseline's rows; a
        // variant ranks with its method for colours and grouping.
        let template = fixture_aggregates("digits", &["M-U".to_owned()]).remove(0);
        let mut labels = vec!["zz-new".to_owned(), "gh++(rotation)".to_owned()];
        labels.extend(listed.iter().rev().cloned());
        let aggs: Vec<Aggregate> = labels.iter().map(|h| Aggregate { harmonizer: h.clone(), ..template.clone() }).collect();
        let rows: Vec<String> = ordered_rows(&aggs).into_iter().map(|(_, h)| h).collect();
        let mut expected = listed.clone();
        expected.extend(["gh++(rotation)".to_owned(), "zz-new".to_owned()]);
        assert_eq!(rows, expected);
        assert_eq!(harmonizer_rank("gh++(rotation)"), harmonizer_rank("gh++"));
        assert_eq!(harmonizer_rank("zz-new"), listed.len());
        assert_eq!(row_name("cdan", "gh++(rotation)"), "CDAN+GH++ (rotation)");
        assert_eq!(row_name("cdan", "zz-new"), "CDAN+ZZ-NEW");
    }

    /// Aggregates of five seeds for every task of `dataset` and the CNN baselines x three
    /// harmonizers, with last-iteration accuracy `base + offset(task)`.
    fn fixture_aggregates(dataset: &str, tasks: &[String]) -> Vec<Aggregate> {
        let mut out = Vec::new();
        for (b, baseline) in ["cdan", "mcd", "dwl", "gvb"].iter().enumerate() {
            for (h, harmonizer) in ["none", "gh", "gh++"].iter().enumerate() {
                for (k, task) in tasks.iter().enumerate() {
                    let mean = 60.0 + b as f64 + 0.5 * h as f64 + k as f64;
                    out.push(Aggregate {
                        dataset: dataset.into(),
                        task: task.clone(),
                        baseline: (*baseline).into(),
                        harmonizer: (*harmonizer).into(),
                        harmonizer_method: (*harmonizer).into(),
                        alpha: 0.5,
                        runs: 5,
                        completed: 5,
                        diverged: 0,
                        not_trained: 0,
                        final_mean: Some(mean),
                        final_std: Some(0.4),
                        best_mean: Some(mean + 1.0),
                        best_std: Some(0.3),
                        seconds_per_epoch: None,
                        seconds_per_100_steps: None,
                        conflict_rate: None,
                        mean_w1: None,
                        mean_w2: None,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn image_tables_render_beside_the_papers_tables_i_ii_iv_and_v() {
        let paper = PaperResults::embedded().unwrap();
        for (dataset, id, tasks) in [("office31", "I", 6), ("officehome", "II", 12), ("visda2017", "IV", 1), ("domainnet", "V", 30)] {
            let order = paper.task_order(dataset);
            assert_eq!(order.len(), tasks, "{dataset}");
            let aggs = fixture_aggregates(dataset, &order);
            let table = accuracy_table(dataset, Selection::Last, &aggs, &paper, &[], "paper");
            assert!(table.contains(&format!("the paper's Table~{id} ")), "{dataset}: {table}");
            let header = table.lines().find(|l| l.starts_with("Method &")).unwrap();
            assert_eq!(header.contains("ddagger"), tasks == 6 || tasks == 12, "{dataset}: {header}");
            assert_eq!(table.lines().filter(|l| l.starts_with("CDAN") || l.starts_with("MCD") || l.starts_with("DWL") || l.starts_with("GVB")).count(), 12);
        }
        // Office-31 CDAN: A→W 94.1 in the paper, ours 60.0 (fixture); Avg of its per-task numbers 87.65 (it prints 87.7); Avg‡ over A→W, A→D,
        // W→A, D→A: ours (60 + 61 + 62 + 64) / 4 = 61.75, the paper's 81.8.
        let order = paper.task_order("office31");
        let table = accuracy_table("office31", Selection::Last, &fixture_aggregates("office31", &order), &paper, &[], "paper");
        let row = table.lines().find(|l| l.starts_with("CDAN &")).unwrap();
        let cells: Vec<&str> = row.trim_end_matches(" \\\\").split(" & ").collect();
        assert_eq!(cells.len(), 1 + 6 + 2, "{row}");
        assert!(cells[1].starts_with("60.0") && cells[1].contains("(94.1, "), "{row}");
        assert!(cells[7].starts_with("62.5") && cells[7].contains("(87.6, "), "{row}");
        assert!(cells[8].starts_with("61.8") && cells[8].contains("(81.8, "), "{row}");
        assert!(table.contains("except W$\\to$D and D$\\to$W"), "{table}");
    }
}
