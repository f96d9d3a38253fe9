//! claims.md (the table a person reads first), claims.csv and claims.tex.

use super::{dataset_name, ClaimType, Claim, Estimate, Outcome, Settings, Unit, Verdict};
use crate::latex::escape;
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn paper_text(c: &Claim) -> String {
    let unit = c.quantity.unit();
    match (c.kind, c.paper) {
        (ClaimType::Value, Some(p)) if c.tolerance > 0.0 => format!("{} ± {}", unit.format(p), unit.format(c.tolerance).trim_start_matches('+')),
        (_, Some(p)) => unit.format(p),
        (_, None) => format!("{} {}", if c.sign > 0.0 { ">" } else { "<" }, unit.format(unit.null()).trim_start_matches('+')),
    }
}

fn interval_text(unit: Unit, e: &Estimate) -> String {
    if e.lo.is_finite() && e.hi.is_finite() {
        format!("[{}, {}]", unit.format(e.lo), unit.format(e.hi))
    } else {
        "(one value: no interval)".to_owned()
    }
}

fn n_text(e: &Estimate) -> String {
    if e.n == e.units * e.min_seeds {
        format!("{}×{}", e.units, e.min_seeds)
    } else {
        format!("{} ({} units)", e.n, e.units)
    }
}

/// Distinct deviations of the checked claims, numbered in order of first appearance.
fn numbered_deviations(outcomes: &[Outcome]) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for o in outcomes {
        for d in &o.deviations {
            if !list.contains(d) {
                list.push(d.clone());
            }
        }
    }
    list
}

fn deviation_refs(o: &Outcome, list: &[String]) -> String {
    let mut refs: Vec<usize> = o.deviations.iter().filter_map(|d| list.iter().position(|x| x == d)).map(|i| i + 1).collect();
    refs.sort_unstable();
    refs.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}

pub fn counts(outcomes: &[Outcome]) -> BTreeMap<Verdict, usize> {
    let mut c = BTreeMap::new();
    for o in outcomes {
        *c.entry(o.verdict).or_insert(0) += 1;
    }
    c
}

fn summary_line(outcomes: &[Outcome]) -> String {
    let c = counts(outcomes);
    [Verdict::Reproduced, Verdict::NotReproduced, Verdict::Inconclusive, Verdict::NotRun]
        .iter()
        .map(|v| format!("{} {}", c.get(v).copied().unwrap_or(0), v.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checked claims as a markdown table (the part the README quotes), with the numbered deviations.
pub fn markdown_table(outcomes: &[Outcome]) -> String {
    let checked: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_some()).collect();
    let owned: Vec<Outcome> = checked.iter().map(|o| (*o).clone()).collect();
    let devs = numbered_deviations(&owned);
    let mut out = String::new();
    let _ = writeln!(out, "| Claim | Source | Paper | Ours, 95% interval | n | Verdict | Dev. |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for o in &checked {
        let e = o.estimate.as_ref().expect("checked");
        let unit = o.claim.quantity.unit();
        let _ = writeln!(
            out,
            "| `{}`: {} | {} | {} | {} {} ({}) | {} | **{}**: {} | {} |",
            o.claim.id,
            o.claim.statement.replace('|', "/"),
            o.claim.source,
            paper_text(&o.claim),
            unit.format(e.mean),
            interval_text(unit, e),
            e.method.short(),
            n_text(e),
            o.verdict.label(),
            o.reason,
            deviation_refs(o, &devs)
        );
    }
    if !devs.is_empty() {
        let _ = writeln!(out, "\nDeviations and coverage:\n");
        for (i, d) in devs.iter().enumerate() {
            let _ = writeln!(out, "{}. {d}", i + 1);
        }
    }
    out
}

/// `claims.md`: the table a person reads first.
pub fn markdown(outcomes: &[Outcome], profile: &str, settings: &Settings) -> String {
    let mut out = format!("# The paper's claims, checked on profile `{profile}`\n\n");
    let _ = writeln!(out, "{}.\n", summary_line(outcomes));
    let _ = writeln!(
        out,
        "Each quantity is computed per unit (a baseline × task, or a task) and seed; gains are paired by seed \
         (same initialisation and data order), last model. Intervals at {:.0}%: `t` = t interval over the seeds of \
         one unit; `boot` = percentile bootstrap over units and the seeds within them ({} resamples, where a claim \
         averages several units). n = units × seeds. Verdicts: fewer than {} seeds per unit (unless the claim sets its own minimum) → inconclusive; a \
         directional claim is *reproduced* when the interval excludes 0 (1× for ratios) on the paper's side, *not \
         reproduced* when it excludes the paper's value and the estimate has the other sign; a value claim is \
         reproduced when the interval meets the paper's value ± its tolerance, inconclusive when the interval is \
         too wide. Intervals of shares of steps are clipped to [0%, 100%]. Claims and rules: `report/paper_claims.toml`.\n",
        100.0 * settings.confidence,
        settings.bootstrap_resamples,
        settings.min_seeds
    );
    if outcomes.iter().any(|o| o.estimate.is_some()) {
        out.push_str(&markdown_table(outcomes));
    } else {
        let _ = writeln!(out, "No claim has cells in this profile.");
    }
    let not_run: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_none()).collect();
    if !not_run.is_empty() {
        let _ = writeln!(out, "\n## Not run in this profile ({})\n", not_run.len());
        let mut by_dataset: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for o in &not_run {
            by_dataset.entry(o.claim.quantity.dataset()).or_default().push(o.claim.id.as_str());
        }
        for (d, ids) in by_dataset {
            let _ = writeln!(out, "- {}: {}", dataset_name(d), ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "));
        }
    }
    let mut notes: Vec<(String, Vec<&str>)> = Vec::new();
    for o in outcomes {
        for n in &o.claim.notes {
            match notes.iter_mut().find(|(x, _)| x == n) {
                Some((_, ids)) => ids.push(&o.claim.id),
                None => notes.push((n.clone(), vec![&o.claim.id])),
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\n## Notes on the paper's statements\n");
        for (n, ids) in notes {
            let shown: Vec<String> = ids.iter().take(3).map(|i| format!("`{i}`")).collect();
            let more = if ids.len() > 3 { format!(" and {} more", ids.len() - 3) } else { String::new() };
            let _ = writeln!(out, "- {n} ({}{more})", shown.join(", "));
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `claims.csv`: every claim, checked or not.
pub fn csv(outcomes: &[Outcome]) -> String {
    let mut out = String::from("id,source,type,unit,paper,tolerance,estimate,lo,hi,n,units,min_seeds,method,verdict,reason,deviations\n");
    let num = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| format!("{x:.6}")).unwrap_or_default();
    for o in outcomes {
        let e = o.estimate.as_ref();
        let fields = [
            o.claim.id.clone(),
            o.claim.source.clone(),
            match o.claim.kind {
                ClaimType::Directional => "directional".into(),
                ClaimType::Value => "value".into(),
            },
            o.claim.quantity.unit().key().to_owned(),
            num(o.claim.paper),
            num(Some(o.claim.tolerance)),
            num(e.map(|e| e.mean)),
            num(e.map(|e| e.lo)),
            num(e.map(|e| e.hi)),
            e.map(|e| e.n.to_string()).unwrap_or_default(),
            e.map(|e| e.units.to_string()).unwrap_or_default(),
            e.map(|e| e.min_seeds.to_string()).unwrap_or_default(),
            e.map(|e| e.method.describe()).unwrap_or_default(),
            o.verdict.label().to_owned(),
            o.reason.clone(),
            o.deviations.join(" | "),
        ];
        let _ = writeln!(out, "{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
    }
    out
}

/// `claims.tex`: the checked claims as a booktabs table.
pub fn latex(outcomes: &[Outcome], profile: &str, settings: &Settings) -> String {
    let checked: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_some()).collect();
    let owned: Vec<Outcome> = checked.iter().map(|o| (*o).clone()).collect();
    let devs = numbered_deviations(&owned);
    let mut out = String::new();
    let _ = writeln!(out, "% Generated by `report` from the runs of profile {profile}; do not edit by hand.");
    let _ = writeln!(out, "\\begin{{table*}}[t]");
    let _ = writeln!(out, "\\centering\\small");
    let dev_text: Vec<String> = devs.iter().enumerate().map(|(i, d)| format!("({}) {}", i + 1, escape(d))).collect();
    let _ = writeln!(
        out,
        "\\caption{{The paper's claims checked on our runs ({}). Estimates with {:.0}\\% intervals: t over seeds (one unit) or a bootstrap over units and seeds; n = units $\\times$ seeds. Not run here: {} claims (claims.md). Deviations: {}}}",
        escape(&summary_line(outcomes)),
        100.0 * settings.confidence,
        outcomes.len() - checked.len(),
        if dev_text.is_empty() { "none.".to_owned() } else { dev_text.join("; ") }
    );
    let _ = writeln!(out, "\\label{{tab:claims}}");
    let _ = writeln!(out, "\\begin{{tabular}}{{p{{6.2cm}}lllllc}}");
    let _ = writeln!(out, "\\toprule");
    let _ = writeln!(out, "Claim & Source & Paper & Ours & 95\\% interval & n & Verdict \\\\");
    let _ = writeln!(out, "\\midrule");
    for o in &checked {
        let e = o.estimate.as_ref().expect("checked");
        let unit = o.claim.quantity.unit();
        let refs = deviation_refs(o, &devs);
        let refs = if refs.is_empty() { String::new() } else { format!("$^{{{refs}}}$") };
        let _ = writeln!(
            out,
            "{} & {} & {} & {} & {} & {} & {}{} \\\\",
            escape(&o.claim.statement),
            escape(&o.claim.source),
            escape(&paper_text(&o.claim)),
            escape(&unit.format(e.mean)),
            escape(&interval_text(unit, e)),
            escape(&n_text(e)),
            escape(o.verdict.label()),
            refs
        );
    }
    let _ = writeln!(out, "\\bottomrule");
    let _ = writeln!(out, "\\end{{tabular}}");
    let _ = writeln!(out, "\\end{{table*}}");
    out
}


/// The README's headline table for a profile: per baseline × task × harmonizer, the paper's
/// accuracy, ours (mean ± std over seeds, last model), the paired gain over the baseline with
/// its 95% interval and the verdict of the per-task gain claim (where one exists), and the
/// median wall time of a cell's training. Rows in the paper's table order. A harmonizer run by a
/// non-default rule (`gh++(rotation)`) is shown with the paper's value of its method. Below the
/// table: the other claims the records test, and each rule variant against the default rule.
pub fn headline(outcomes: &[Outcome], aggs: &[crate::aggregate::Aggregate], records: &[crate::records::CellRecord], paper: &crate::paper::PaperResults, profile: &str, confidence: f64) -> String {
    use super::Quantity;
    let mut out = String::new();
    let _ = writeln!(out, "| Method | Task | Paper | Ours (mean ± std, n) | Gain over the baseline, 95% interval | Verdict | Training per cell (median, range) |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let mut rows: Vec<&crate::aggregate::Aggregate> = aggs.iter().collect();
    rows.sort_by_key(|a| {
        let task = paper.task_order(&a.dataset).iter().position(|t| *t == a.task).unwrap_or(usize::MAX);
        let h = crate::latex::harmonizer_order().iter().position(|h| *h == a.harmonizer).unwrap_or(usize::MAX);
        (a.dataset.clone(), a.baseline.clone(), task, h, a.harmonizer.clone())
    });
    let mut in_table: Vec<&str> = Vec::new();
    for a in rows {
        let paper_value = paper.accuracy(&a.dataset, &a.baseline, default_rule_of(&a.harmonizer).unwrap_or(&a.harmonizer), &a.task).map_or("–".to_owned(), |v| format!("{v:.1}"));
        let ours = match (a.final_mean, a.final_std) {
            (Some(m), Some(s)) => format!("{m:.2} ± {s:.2} ({})", a.completed),
            (Some(m), None) => format!("{m:.2} ({})", a.completed),
            _ => format!("– ({} run, {} diverged)", a.runs, a.diverged),
        };
        let claim = outcomes.iter().find(|o| match &o.claim.quantity {
            Quantity::Gain { dataset, tasks: super::Tasks::List(t), baselines, harmonizer, against } => {
                dataset == &a.dataset && t.len() == 1 && t[0] == a.task && baselines.len() == 1 && baselines[0] == a.baseline && harmonizer == &a.harmonizer && against == "none"
            }
            _ => false,
        });
        if let Some(o) = claim {
            in_table.push(o.claim.id.as_str());
        }
        let (gain, verdict) = match claim {
            Some(o) => match &o.estimate {
                Some(e) => (format!("{} {} (paper {})", Unit::Points.format(e.mean), interval_text(Unit::Points, e), paper_text(&o.claim)), format!("**{}**", o.verdict.label())),
                None => ("–".to_owned(), o.verdict.label().to_owned()),
            },
            None => ("".to_owned(), "".to_owned()),
        };
        let cells: Vec<&crate::records::CellRecord> =
            records.iter().filter(|r| r.dataset == a.dataset && r.task == a.task && r.baseline == a.baseline && r.harmonizer == a.harmonizer).collect();
        // Cells that shared the machine (load above the CPU count, or another suite process) are
        // left out of the times, as of every speed figure.
        let loaded = cells.iter().filter(|r| r.timing_loaded == Some(true)).count();
        let mut seconds: Vec<f64> = cells.iter().filter(|r| r.timing_loaded != Some(true)).map(|r| r.train_seconds).filter(|s| s.is_finite() && *s > 0.0).collect();
        seconds.sort_by(f64::total_cmp);
        let mut time = match seconds.as_slice() {
            [] => "–".to_owned(),
            s => format!("{:.1} min ({:.1}–{:.1}, n={})", s[s.len() / 2] / 60.0, s[0] / 60.0, s[s.len() - 1] / 60.0, s.len()),
        };
        if loaded > 0 {
            time.push_str(&format!("; {loaded} timed under load left out"));
        }
        let _ = writeln!(out, "| {} | {} | {paper_value} | {ours} | {gain} | {verdict} | {time} |", crate::latex::row_name(&a.baseline, &a.harmonizer), a.task.replace('-', "→"));
    }
    let _ = writeln!(out, "\nProfile `{profile}`: {} finished cell(s). Accuracies: last model on the target test split, %. Gains paired by seed; verdicts from report/paper_claims.toml.", records.len());
    out.push_str(&other_claims(outcomes, &in_table, confidence));
    out.push_str(&rule_variants(aggs, records, confidence));
    out
}

/// The claims the records test that the headline's table does not show, each with its verdict.
fn other_claims(outcomes: &[Outcome], in_table: &[&str], confidence: f64) -> String {
    let mut out = String::new();
    let others: Vec<&Outcome> = outcomes.iter().filter(|o| o.estimate.is_some() && !in_table.contains(&o.claim.id.as_str())).collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nThe other claims these records test ({:.0}% intervals; n = units × seeds; the report's claims.md has the rules):\n", confidence * 100.0);
        for o in others {
            let e = o.estimate.as_ref().expect("filtered");
            let unit = o.claim.quantity.unit();
            let _ = writeln!(
                out,
                "- {} ({}): paper {}, ours {} {}, n = {}: **{}**{}",
                o.claim.statement,
                o.claim.source,
                paper_text(&o.claim),
                unit.format(e.mean),
                interval_text(unit, e),
                n_text(e),
                o.verdict.label(),
                o.deviations.iter().filter(|d| d.starts_with("covers ")).map(|d| format!(" ({})", short_coverage(d))).collect::<String>()
            );
        }
    }
    out
}

/// Each rule variant (`gh++(rotation)`) against its method's default rule, on the seeds both ran.
fn rule_variants(aggs: &[crate::aggregate::Aggregate], records: &[crate::records::CellRecord], confidence: f64) -> String {
    let mut out = String::new();
    let accuracy = |h: &str, a: &crate::aggregate::Aggregate, seed: u64| {
        records
            .iter()
            .find(|r| r.dataset == a.dataset && r.task == a.task && r.baseline == a.baseline && r.harmonizer == h && r.seed == seed && r.diverged_at.is_none())
            .and_then(|r| r.final_accuracy)
    };
    let mut variants = Vec::new();
    for a in aggs {
        let Some(default) = default_rule_of(&a.harmonizer) else { continue };
        let mut seeds: Vec<u64> = records.iter().filter(|r| r.dataset == a.dataset && r.task == a.task && r.baseline == a.baseline && r.harmonizer == a.harmonizer).map(|r| r.seed).collect();
        seeds.sort_unstable();
        let diffs: Vec<f64> = seeds.iter().filter_map(|&s| Some(accuracy(&a.harmonizer, a, s)? - accuracy(default, a, s)?)).collect();
        if diffs.is_empty() {
            continue;
        }
        let (m, lo, hi) = super::stats::t_interval(&diffs, confidence);
        let interval = if lo.is_finite() { format!(" [{}, {}]", Unit::Points.format(lo), Unit::Points.format(hi)) } else { String::new() };
        variants.push(format!(
            "- {} − {} on {}: {}{interval} points ({} seed(s))",
            crate::latex::row_name(&a.baseline, &a.harmonizer),
            crate::latex::row_name(&a.baseline, default),
            a.task.replace('-', "→"),
            Unit::Points.format(m),
            diffs.len(),
        ));
    }
    if !variants.is_empty() {
        let _ = writeln!(
            out,
            "\nGH++ (rotation) is GH++ as Sec. 3.5 constructs it (both gradients rotated to 90°); the GH++ rows use the released code's scalar rule, which produced the paper's numbers. The Paper column of a rotation row is the paper's GH++. Rotation against released, paired by seed ({:.0}% t interval):\n",
            confidence * 100.0
        );
        for v in variants {
            let _ = writeln!(out, "{v}");
        }
    }
    out
}

/// A coverage note with its list of units not run, when that list is short (three or fewer).
fn short_coverage(note: &str) -> &str {
    match note.split_once("; not run: ") {
        Some((covers, missing)) if missing.split(", ").count() > 3 => covers,
        _ => note,
    }
}

/// The default rule's label of a harmonizer run by another rule: `gh++(rotation)` → `gh++`.
fn default_rule_of(harmonizer: &str) -> Option<&str> {
    harmonizer.strip_suffix("(rotation)")
}
