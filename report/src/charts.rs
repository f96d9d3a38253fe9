//! Charts (plotters), each written as PNG and SVG: training speed, α sensitivity (Fig. 14),
//! gradient inner products before/after harmonization (Figs. 2 and 12), convergence (Fig. 9).

use crate::aggregate::{main_pair, Aggregate};
use crate::claims::{Outcome, Unit, Verdict};
use crate::latex::{ordered_rows, row_name, BASELINE_ORDER};
use crate::records::CellRecord;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans (no system fonts needed).
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

const PALETTE: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(255, 127, 14), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

fn harmonizer_color(h: &str) -> RGBColor {
    match h {
        "none" => PALETTE[0],
        "gh" => PALETTE[1],
        "gh++" => PALETTE[2],
        _ => PALETTE[3],
    }
}

/// Draws `draw` into `<base>.png` and `<base>.svg`.
macro_rules! both_formats {
    ($base:expr, $size:expr, $draw:ident, $($arg:expr),*) => {{
        let png = $base.with_extension("png");
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            $draw(&root, $($arg),*)?;
            root.present().map_err(plot_err)?;
        }
        let svg = $base.with_extension("svg");
        {
            let root = SVGBackend::new(&svg, $size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            $draw(&root, $($arg),*)?;
            root.present().map_err(plot_err)?;
        }
        vec![png, svg]
    }};
}

// ------------------------------------------------------------------ training speed

struct SpeedData {
    baselines: Vec<String>,
    /// (baseline index, harmonizer, seconds per 100 iterations averaged over tasks).
    bars: Vec<(usize, String, f64)>,
}

fn speed_data(aggs: &[Aggregate]) -> Option<SpeedData> {
    let mut per: BTreeMap<(usize, String), Vec<f64>> = BTreeMap::new();
    let mut baselines: Vec<String> = Vec::new();
    for (b, h) in ordered_rows(aggs) {
        if !["none", "gh", "gh++"].contains(&h.as_str()) {
            continue;
        }
        if !baselines.contains(&b) {
            baselines.push(b.clone());
        }
        let bi = baselines.iter().position(|x| *x == b).unwrap();
        for a in aggs.iter().filter(|a| a.baseline == b && a.harmonizer == h) {
            if let Some(s) = a.seconds_per_100_steps {
                per.entry((bi, h.clone())).or_default().push(s);
            }
        }
    }
    let bars: Vec<(usize, String, f64)> = per.into_iter().map(|((b, h), v)| (b, h, v.iter().sum::<f64>() / v.len() as f64)).collect();
    (!bars.is_empty()).then_some(SpeedData { baselines, bars })
}

fn draw_speed<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &SpeedData, subtitle: &str) -> Result<()> {
    let ymax = data.bars.iter().map(|b| b.2).fold(0.0, f64::max) * 1.15;
    let n = data.baselines.len();
    let names: Vec<String> = data.baselines.iter().map(|b| row_name(b, "none")).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Training speed ({subtitle})"), (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax.max(1e-9))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1))
        .x_label_formatter(&|x| names.get(x.round().max(0.0) as usize).filter(|_| (x - x.round()).abs() < 1e-6).cloned().unwrap_or_default())
        .y_desc("training seconds per 100 iterations")
        .label_style((FONT, 13))
        .draw()
        .map_err(plot_err)?;
    let width = 0.26;
    for (k, h) in ["none", "gh", "gh++"].iter().enumerate() {
        let color = harmonizer_color(h);
        let offset = (k as f64 - 1.0) * width;
        let bars: Vec<(f64, f64)> = data.bars.iter().filter(|b| b.1 == *h).map(|b| (b.0 as f64 + offset, b.2)).collect();
        if bars.is_empty() {
            continue;
        }
        chart
            .draw_series(bars.iter().map(|&(x, y)| Rectangle::new([(x - width / 2.0, 0.0), (x + width / 2.0, y)], color.filled())))
            .map_err(plot_err)?
            .label(if *h == "none" { "baseline".to_owned() } else { h.to_uppercase() })
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).label_font((FONT, 13)).draw().map_err(plot_err)?;
    Ok(())
}

// ------------------------------------------------------------------ alpha sensitivity

struct AlphaData {
    /// (series label, points (α, accuracy %)).
    series: Vec<(String, Vec<(f64, f64)>)>,
}

fn alpha_data(aggs: &[Aggregate]) -> Option<AlphaData> {
    let mut per: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for a in aggs.iter().filter(|a| a.harmonizer_method == "gh++" && !a.harmonizer.contains("rotation") && !a.harmonizer.contains("scope-only")) {
        if let Some(m) = a.final_mean {
            per.entry((a.baseline.clone(), a.task.clone())).or_default().push((a.alpha, m));
        }
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = per
        .into_iter()
        .filter(|(_, pts)| pts.len() >= 2)
        .map(|((b, t), mut pts)| {
            pts.sort_by(|x, y| x.0.total_cmp(&y.0));
            (format!("{} {}", row_name(&b, "gh++"), t.replace('-', "→")), pts)
        })
        .collect();
    (!series.is_empty()).then_some(AlphaData { series })
}

fn draw_alpha<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &AlphaData, subtitle: &str) -> Result<()> {
    let (lo, hi) = data.series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    let pad = ((hi - lo) * 0.15).max(1.0);
    let mut chart = ChartBuilder::on(root)
        .caption(format!("GH++ sensitivity to α ({subtitle})"), (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.05f64..1.05, (lo - pad)..(hi + pad))
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc("α").y_desc("target accuracy (%), last model").label_style((FONT, 13)).draw().map_err(plot_err)?;
    for (k, (label, pts)) in data.series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(plot_err)?.label(label.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(plot_err)?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).label_font((FONT, 13)).draw().map_err(plot_err)?;
    Ok(())
}

// ------------------------------------------------------------------ inner products

struct Histogram {
    title: String,
    values: Vec<f64>,
}

struct InnerProducts {
    title: String,
    panels: Vec<Histogram>,
}

fn inner_product_data(records: &[CellRecord], baseline: &str, task: &str) -> Option<InnerProducts> {
    let pair = main_pair(baseline);
    let pick = |h: &str| -> Vec<&crate::records::Telemetry> {
        records
            .iter()
            .filter(|r| r.baseline == baseline && r.task == task && r.harmonizer == h)
            .flat_map(|r| r.telemetry.iter().filter(|t| t.pair == pair && t.d.is_finite()))
            .collect()
    };
    let conflict = |v: &[f64]| if v.is_empty() { 0.0 } else { 100.0 * v.iter().filter(|d| **d < 0.0).count() as f64 / v.len() as f64 };
    let mut panels = Vec::new();
    let plain: Vec<f64> = pick("none").iter().map(|t| t.d).collect();
    if !plain.is_empty() {
        panels.push(Histogram { title: format!("{} (no GH): {:.0}% obtuse", row_name(baseline, "none"), conflict(&plain)), values: plain });
    }
    let gh = pick("gh");
    if !gh.is_empty() {
        let before: Vec<f64> = gh.iter().map(|t| t.d).collect();
        let after: Vec<f64> = gh.iter().filter_map(|t| t.d_after).filter(|v| v.is_finite()).collect();
        panels.push(Histogram { title: format!("+GH, before: {:.0}% obtuse", conflict(&before)), values: before });
        panels.push(Histogram { title: format!("+GH, after: {:.0}% obtuse", conflict(&after)), values: after });
    }
    (!panels.is_empty()).then(|| InnerProducts {
        title: format!("Inner products g1·g2 of the harmonized pair ({}, {})", row_name(baseline, "none"), task.replace('-', "→")),
        panels,
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn draw_inner_products<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &InnerProducts) -> Result<()> {
    let titled = root.titled(&data.title, (FONT, 18)).map_err(plot_err)?;
    let areas = titled.split_evenly((1, data.panels.len()));
    for (area, panel) in areas.iter().zip(&data.panels) {
        let mut v = panel.values.clone();
        v.sort_by(f64::total_cmp);
        // Range: 2nd to 98th percentile, symmetric about 0; the tails go to the edge bins.
        let m = quantile(&v, 0.02).abs().max(quantile(&v, 0.98).abs()).max(1e-12);
        let bins = 30usize;
        let mut counts = vec![0u32; bins];
        for x in &v {
            let k = (((x + m) / (2.0 * m)) * bins as f64).floor().clamp(0.0, (bins - 1) as f64) as usize;
            counts[k] += 1;
        }
        let ymax = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT, 14))
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(-m..m, 0f64..ymax.max(1.0))
            .map_err(plot_err)?;
        chart.configure_mesh().x_labels(5).x_label_formatter(&|x| format!("{x:.1e}")).y_desc("steps").label_style((FONT, 11)).draw().map_err(plot_err)?;
        let w = 2.0 * m / bins as f64;
        chart
            .draw_series(counts.iter().enumerate().map(|(k, &c)| {
                let x0 = -m + k as f64 * w;
                let color = if x0 + w / 2.0 < 0.0 { PALETTE[1] } else { PALETTE[0] };
                Rectangle::new([(x0, 0.0), (x0 + w, c as f64)], color.mix(0.8).filled())
            }))
            .map_err(plot_err)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ convergence

struct Convergence {
    title: String,
    /// Per baseline: per harmonizer, (iteration, mean target error %).
    panels: Vec<(String, Vec<(String, Vec<(f64, f64)>)>)>,
}

fn convergence_data(records: &[CellRecord], task: &str) -> Option<Convergence> {
    let mut panels = Vec::new();
    for b in BASELINE_ORDER {
        let mut series = Vec::new();
        for h in ["none", "gh", "gh++"] {
            let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for r in records.iter().filter(|r| r.baseline == b && r.task == task && r.harmonizer == h && r.diverged_at.is_none()) {
                for &(i, a) in &r.evaluations {
                    at.entry(i).or_default().push(100.0 - a);
                }
            }
            if !at.is_empty() {
                series.push((h.to_owned(), at.into_iter().map(|(i, e)| (i as f64, e.iter().sum::<f64>() / e.len() as f64)).collect()));
            }
        }
        if !series.is_empty() {
            panels.push((row_name(b, "none"), series));
        }
    }
    (!panels.is_empty()).then(|| Convergence { title: format!("Target test error vs iteration, {} (mean over seeds)", task.replace('-', "→")), panels })
}

fn draw_convergence<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Convergence) -> Result<()> {
    let titled = root.titled(&data.title, (FONT, 18)).map_err(plot_err)?;
    let cols = data.panels.len().min(2);
    let rows = data.panels.len().div_ceil(cols);
    let areas = titled.split_evenly((rows, cols));
    for (area, (name, series)) in areas.iter().zip(&data.panels) {
        let xmax = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).fold(1.0, f64::max);
        let ymax = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(name, (FONT, 14))
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax.min(100.0))
            .map_err(plot_err)?;
        chart.configure_mesh().x_desc("iteration").y_desc("error (%)").label_style((FONT, 11)).draw().map_err(plot_err)?;
        for (h, pts) in series {
            let color = harmonizer_color(h);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(if h == "none" { "baseline".to_owned() } else { h.to_uppercase() })
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .label_font((FONT, 11))
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ all charts

/// Writes every chart the data allows into `out`; returns the files written.
pub fn write_all(out: &Path, records: &[CellRecord], aggs: &[Aggregate], subtitle: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let mut files = Vec::new();
    if let Some(d) = speed_data(aggs) {
        files.extend(both_formats!(out.join("speed"), (900, 520), draw_speed, &d, subtitle));
    }
    if let Some(d) = alpha_data(aggs) {
        files.extend(both_formats!(out.join("alpha_sensitivity"), (900, 520), draw_alpha, &d, subtitle));
    }
    let mut tasks: Vec<String> = records.iter().map(|r| r.task.clone()).collect();
    tasks.sort();
    tasks.dedup();
    for task in &tasks {
        for b in BASELINE_ORDER {
            if let Some(d) = inner_product_data(records, b, task) {
                let base = out.join(format!("inner_products_{b}_{task}"));
                let width = 380 * d.panels.len() as u32 + 40;
                files.extend(both_formats!(base, (width, 380), draw_inner_products, &d));
            }
        }
        if let Some(d) = convergence_data(records, task) {
            let rows = d.panels.len().div_ceil(d.panels.len().min(2)) as u32;
            files.extend(both_formats!(out.join(format!("convergence_{task}")), (1000, 80 + 340 * rows), draw_convergence, &d));
        }
    }
    Ok(files)
}

// ------------------------------------------------------------------ claims (forest plot)

/// Okabe–Ito colours (colour-blind safe) for the verdicts.
fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::Reproduced => RGBColor(0, 114, 178),
        Verdict::NotReproduced => RGBColor(213, 94, 0),
        _ => RGBColor(110, 110, 110),
    }
}

/// One panel per unit: its checked claims, top to bottom in file order.
fn forest_panels(outcomes: &[Outcome]) -> Vec<(Unit, Vec<&Outcome>)> {
    let mut panels: BTreeMap<Unit, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.estimate.is_some()) {
        panels.entry(o.claim.quantity.unit()).or_default().push(o);
    }
    panels.into_iter().collect()
}

/// A tick label without needless decimals ("20", "0.5", "-0.04").
fn tidy(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        return format!("{:.0}", x.round() + 0.0);
    }
    if x.abs() < 1e-3 {
        return format!("{x:.1e}");
    }
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

const FOREST_ROW: u32 = 26;
const FOREST_PANEL_EXTRA: u32 = 78;

fn draw_forest<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, panels: &[(Unit, Vec<&Outcome>)], subtitle: &str) -> Result<()> {
    let titled = root.titled(&format!("The paper's claims: our estimates and 95% intervals ({subtitle})"), (FONT, 18)).map_err(plot_err)?;
    let (legend, body) = titled.split_vertically(24);
    legend
        .draw_text(
            "interval colour: blue reproduced, vermilion not reproduced, grey inconclusive; black tick: the paper's value (shaded: its tolerance)",
            &(FONT, 12).into_text_style(&legend),
            (12, 4),
        )
        .map_err(plot_err)?;
    let heights: Vec<u32> = panels.iter().map(|(_, rows)| rows.len() as u32 * FOREST_ROW + FOREST_PANEL_EXTRA).collect();
    let mut breaks = Vec::new();
    let mut y = 0;
    for h in &heights[..heights.len().saturating_sub(1)] {
        y += *h as i32;
        breaks.push(y);
    }
    let areas = body.split_by_breakpoints(Vec::<i32>::new(), breaks);
    for (area, (unit, rows)) in areas.iter().zip(panels) {
        let n = rows.len();
        let mut xs: Vec<f64> = vec![unit.null()];
        for o in rows {
            let e = o.estimate.as_ref().expect("checked");
            xs.extend([e.mean, e.lo, e.hi].into_iter().filter(|v| v.is_finite()));
            if let Some(p) = o.claim.paper {
                xs.extend([p - o.claim.tolerance, p + o.claim.tolerance]);
            }
        }
        let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let pad = ((hi - lo) * 0.06).max(1e-9);
        let (x0, x1) = (lo - pad, hi + pad);
        let labels: Vec<String> = rows.iter().map(|o| o.claim.id.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(250)
            .build_cartesian_2d(x0..x1, -0.5f64..(n as f64 - 0.5))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .y_labels(n)
            .y_label_formatter(&|y| {
                let k = y.round();
                if (y - k).abs() > 1e-6 || k < 0.0 {
                    return String::new();
                }
                labels.get(n.saturating_sub(1 + k as usize)).cloned().unwrap_or_default()
            })
            .x_label_formatter(&|x| tidy(*x))
            .x_desc(unit.axis())
            .label_style((FONT, 12))
            .draw()
            .map_err(plot_err)?;
        chart.draw_series(std::iter::once(PathElement::new(vec![(unit.null(), -0.5), (unit.null(), n as f64 - 0.5)], BLACK.mix(0.35).stroke_width(1)))).map_err(plot_err)?;
        for (i, o) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let e = o.estimate.as_ref().expect("checked");
            let color = verdict_color(o.verdict);
            if let Some(p) = o.claim.paper {
                if o.claim.tolerance > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new([(p - o.claim.tolerance, y - 0.32), (p + o.claim.tolerance, y + 0.32)], BLACK.mix(0.08).filled()))).map_err(plot_err)?;
                }
                chart.draw_series(std::iter::once(PathElement::new(vec![(p, y - 0.34), (p, y + 0.34)], BLACK.stroke_width(2)))).map_err(plot_err)?;
            }
            let (l, h) = (if e.lo.is_finite() { e.lo } else { x0 }, if e.hi.is_finite() { e.hi } else { x1 });
            chart.draw_series(std::iter::once(PathElement::new(vec![(l, y), (h, y)], color.stroke_width(3)))).map_err(plot_err)?;
            chart.draw_series(std::iter::once(Circle::new((e.mean, y), 5, color.filled()))).map_err(plot_err)?;
        }
    }
    Ok(())
}

/// `claims.png` / `claims.svg`: a forest plot of every checked claim (nothing when none has cells).
pub fn write_forest(out: &Path, outcomes: &[Outcome], subtitle: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let panels = forest_panels(outcomes);
    if panels.is_empty() {
        return Ok(Vec::new());
    }
    let height = 60 + panels.iter().map(|(_, r)| r.len() as u32 * FOREST_ROW + FOREST_PANEL_EXTRA).sum::<u32>();
    Ok(both_formats!(out.join("claims"), (1100, height), draw_forest, &panels, subtitle))
}
