//! Charts (plotters), each written as PNG (300 dpi, one- or two-column width) and SVG, with a
//! caption file (`<chart>.txt`: what is plotted, n, the spread shown, the deviations): training
//! speed, α sensitivity (Fig. 14), gradient inner products before/after harmonization (Figs. 2
//! and 12), convergence (Fig. 9), and the forest plot of the paper's claims.
//!
//! Style: one colour-blind-safe palette (Okabe–Ito) with baseline / GH / GH++ the same colours in
//! every chart; a light grid; legends in a strip above the data; integer tick labels on iteration
//! and count axes; the spread over seeds (min–max) as bands on curves and error bars on bars.

use crate::aggregate::main_pair;
use crate::claims::{Outcome, Unit, Verdict};
use crate::latex::{baseline_order, baseline_rank, harmonizer_order, row_name};
use crate::records::CellRecord;
use crate::speed::{min_max, median, Speeds};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
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

// ------------------------------------------------------------------ style

/// PNGs are drawn for print at 300 dpi: one column 3.5 in, two columns 7 in.
const DPI: f64 = 300.0;
pub const ONE_COLUMN: u32 = 1050;
pub const TWO_COLUMNS: u32 = 2100;

/// Points to pixels at the print resolution.
fn pt(points: f64) -> u32 {
    (points * DPI / 72.0).round() as u32
}

fn title_font() -> (&'static str, u32) {
    (FONT, pt(9.0))
}
fn label_font() -> (&'static str, u32) {
    (FONT, pt(8.0))
}
fn tick_font() -> (&'static str, u32) {
    (FONT, pt(7.0))
}

/// Okabe–Ito: blue, vermilion, bluish green, orange, sky blue, reddish purple, yellow, black.
const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Baseline / GH / GH++ in every chart.
/// (The grid's harmonizers list orders the colours: the first three keep their colours when one
/// is added; variants and unknown labels share the next.)
pub fn harmonizer_color(h: &str) -> RGBColor {
    let known = crate::latex::harmonizer_order().iter().position(|x| x == h);
    OKABE_ITO[known.unwrap_or(crate::latex::harmonizer_order().len()).min(OKABE_ITO.len() - 1)]
}

fn harmonizer_name(h: &str) -> String {
    if h == "none" {
        "baseline".to_owned()
    } else {
        h.to_uppercase()
    }
}

/// Light grid: no minor lines, faint major lines.
fn grid_style() -> (RGBAColor, RGBAColor) {
    (BLACK.mix(0.0), BLACK.mix(0.12))
}

/// The chart's area inside a small page margin (the title's ascenders, the last tick label).
fn page<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> DrawingArea<DB, Shift> {
    root.margin(pt(3.0), pt(2.0), pt(2.0), pt(8.0))
}

/// A tick label without needless decimals ("20", "0.5", "-0.04", "2.5e-4").
pub fn tidy(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        return format!("{:.0}", x.round() + 0.0);
    }
    if x.abs() < 1e-3 {
        return format!("{x:.1e}");
    }
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[derive(Clone, Copy)]
enum Mark {
    Line,
    Box,
}

/// A legend drawn in its own strip (outside the data), items left to right.
fn legend_strip<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, items: &[(String, RGBColor, Mark)]) -> Result<()> {
    let style = tick_font().into_text_style(area);
    let (w, h) = area.dim_in_pixel();
    let sample = pt(14.0) as i32;
    let gap = pt(10.0) as i32;
    let widths: Vec<i32> = items.iter().map(|(label, _, _)| sample + pt(3.0) as i32 + area.estimate_text_size(label, &style).map(|s| s.0 as i32).unwrap_or(0)).collect();
    let total: i32 = widths.iter().sum::<i32>() + gap * (items.len() as i32 - 1).max(0);
    let mut x = ((w as i32 - total) / 2).max(pt(4.0) as i32);
    let y = h as i32 / 2;
    for ((label, color, mark), width) in items.iter().zip(&widths) {
        match mark {
            Mark::Line => area.draw(&PathElement::new(vec![(x, y), (x + sample, y)], color.stroke_width(pt(1.2)))).map_err(plot_err)?,
            Mark::Box => area.draw(&Rectangle::new([(x, y - sample / 3), (x + sample, y + sample / 3)], color.filled())).map_err(plot_err)?,
        }
        area.draw_text(label, &style.pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Left, plotters::style::text_anchor::VPos::Center)), (x + sample + pt(3.0) as i32, y)).map_err(plot_err)?;
        x += width + gap;
    }
    Ok(())
}

/// Draws `draw` into `<base>.png` and `<base>.svg`, and writes `<base>.txt` (the caption).
macro_rules! chart_files {
    ($base:expr, $caption:expr, $size:expr, $draw:ident, $($arg:expr),*) => {{
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
        let txt = $base.with_extension("txt");
        std::fs::write(&txt, $caption).map_err(|e| anyhow!("writing {}: {e}", txt.display()))?;
        vec![png, svg, txt]
    }};
}

/// The profile's deviations that apply to these records, as one sentence for a caption.
fn deviations_sentence<'a>(records: impl Iterator<Item = &'a CellRecord>) -> String {
    let d: BTreeSet<&str> = records.flat_map(|r| r.deviations.iter().map(String::as_str)).collect();
    if d.is_empty() {
        "Deviations: none recorded.".to_owned()
    } else {
        format!("Deviations: {}.", d.into_iter().collect::<Vec<_>>().join("; "))
    }
}

fn arrow(task: &str) -> String {
    task.replace('-', "→")
}

// ------------------------------------------------------------------ training speed

pub struct SpeedBar {
    pub baseline: usize,
    pub harmonizer: String,
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

pub struct SpeedData {
    pub baselines: Vec<String>,
    pub bars: Vec<SpeedBar>,
    pub tasks: Vec<String>,
}

/// Per baseline × harmonizer: the median of its timings pooled over tasks, and their range.
pub fn speed_data(speeds: &Speeds) -> Option<SpeedData> {
    // The paper's baseline order; baselines it does not know after them.
    let mut baselines: Vec<String> = speeds.arms.iter().map(|a| a.baseline.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    baselines.sort_by_key(|b| baseline_rank(b));
    let mut bars = Vec::new();
    for (bi, b) in baselines.iter().enumerate() {
        for h in harmonizer_order().iter().map(String::as_str) {
            let v: Vec<f64> = speeds.arms.iter().filter(|a| &a.baseline == b && a.harmonizer == h).flat_map(|a| a.seconds_per_100.iter().copied()).collect();
            if let (Some(m), Some((lo, hi))) = (median(&v), min_max(&v)) {
                bars.push(SpeedBar { baseline: bi, harmonizer: h.to_owned(), median: m, lo, hi, n: v.len() });
            }
        }
    }
    let tasks: BTreeSet<String> = speeds.arms.iter().map(|a| arrow(&a.task)).collect();
    (!bars.is_empty()).then(|| SpeedData { baselines, bars, tasks: tasks.into_iter().collect() })
}

fn draw_speed<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &SpeedData, subtitle: &str) -> Result<()> {
    let root = page(root);
    let titled = root.titled(&format!("Training speed ({subtitle})"), title_font()).map_err(plot_err)?;
    let (legend, body) = titled.split_vertically(pt(14.0));
    legend_strip(&legend, &harmonizer_order().iter().map(|h| (harmonizer_name(h), harmonizer_color(h), Mark::Box)).collect::<Vec<_>>())?;
    let ymax = data.bars.iter().map(|b| b.hi).fold(0.0, f64::max) * 1.08;
    let n = data.baselines.len();
    let names: Vec<String> = data.baselines.iter().map(|b| row_name(b, "none")).collect();
    let (light, bold) = grid_style();
    let mut chart = ChartBuilder::on(&body)
        .margin(pt(4.0))
        .x_label_area_size(pt(14.0))
        .y_label_area_size(pt(26.0))
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax.max(1e-9))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(light)
        .bold_line_style(bold)
        .x_labels(n.max(1))
        .x_label_formatter(&|x| names.get(x.round().max(0.0) as usize).filter(|_| (x - x.round()).abs() < 1e-6).cloned().unwrap_or_default())
        .y_label_formatter(&|y| tidy(*y))
        .y_desc("seconds per 100 iterations")
        .axis_desc_style(label_font())
        .label_style(tick_font())
        .draw()
        .map_err(plot_err)?;
    // The harmonizers' bars side by side, centred on the baseline (0.26 wide each for three).
    let count = harmonizer_order().len().max(1) as f64;
    let width = 0.78 / count;
    for (k, h) in harmonizer_order().iter().enumerate() {
        let color = harmonizer_color(h);
        let offset = (k as f64 - (count - 1.0) / 2.0) * width;
        for b in data.bars.iter().filter(|b| b.harmonizer == *h) {
            let x = b.baseline as f64 + offset;
            chart.draw_series(std::iter::once(Rectangle::new([(x - width / 2.0, 0.0), (x + width / 2.0, b.median)], color.filled()))).map_err(plot_err)?;
            if b.hi > b.lo {
                let cap = width / 6.0;
                let style = BLACK.stroke_width(pt(0.5));
                chart.draw_series(std::iter::once(PathElement::new(vec![(x, b.lo), (x, b.hi)], style))).map_err(plot_err)?;
                chart.draw_series([(b.lo), (b.hi)].map(|y| PathElement::new(vec![(x - cap, y), (x + cap, y)], style))).map_err(plot_err)?;
            }
        }
    }
    Ok(())
}

fn speed_caption(data: &SpeedData, speeds: &Speeds, records: &[CellRecord], profile: &str) -> String {
    let n: Vec<String> = data.bars.iter().map(|b| format!("{} {}", row_name(&data.baselines[b.baseline], &b.harmonizer), b.n)).collect();
    format!(
        "Training speed, profile {profile}: seconds per 100 training iterations (evaluation excluded) of each baseline without harmonization and with GH and GH++; bars: median of the timings pooled over the tasks {}; error bars: min-max. n per bar: {}. {}. {}\n",
        data.tasks.join(", "),
        n.join(", "),
        speeds.source.describe(),
        deviations_sentence(records.iter())
    )
}

// ------------------------------------------------------------------ alpha sensitivity

pub struct AlphaSeries {
    pub label: String,
    /// (α, mean, min, max) of the last model's accuracy over seeds.
    pub points: Vec<(f64, f64, f64, f64)>,
    pub seeds: usize,
}

/// GH++ (released rule) accuracy per α, per baseline × task, where at least two α ran.
pub fn alpha_data(records: &[CellRecord]) -> Vec<AlphaSeries> {
    let mut per: BTreeMap<(String, String), BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.harmonizer_method == "gh++" && (r.harmonizer == "gh++" || r.harmonizer.strip_prefix("gh++(α=").is_some_and(|q| !q.contains(',')))) {
        if let Some(a) = r.final_accuracy.filter(|_| r.diverged_at.is_none()) {
            per.entry((r.baseline.clone(), r.task.clone())).or_default().entry(r.alpha.to_bits()).or_default().push(a);
        }
    }
    per.into_iter()
        .filter(|(_, by)| by.len() >= 2)
        .map(|((b, t), by)| {
            let mut points: Vec<(f64, f64, f64, f64)> = by
                .iter()
                .map(|(a, v)| {
                    let (lo, hi) = min_max(v).expect("non-empty");
                    (f64::from_bits(*a), v.iter().sum::<f64>() / v.len() as f64, lo, hi)
                })
                .collect();
            points.sort_by(|x, y| x.0.total_cmp(&y.0));
            let seeds = by.values().map(Vec::len).min().unwrap_or(0);
            AlphaSeries { label: format!("{} {}", row_name(&b, "gh++"), arrow(&t)), points, seeds }
        })
        .collect()
}

fn draw_alpha<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &[AlphaSeries], subtitle: &str) -> Result<()> {
    let root = page(root);
    let titled = root.titled(&format!("GH++ sensitivity to α ({subtitle})"), title_font()).map_err(plot_err)?;
    let rows = data.len().div_ceil(3);
    let (legend, body) = titled.split_vertically(pt(11.0) * rows as u32 + pt(3.0));
    let legend_rows = legend.split_evenly((rows, 1));
    for (r, area) in legend_rows.iter().enumerate() {
        let items: Vec<(String, RGBColor, Mark)> = data.iter().enumerate().skip(3 * r).take(3).map(|(k, s)| (s.label.clone(), OKABE_ITO[k % OKABE_ITO.len()], Mark::Line)).collect();
        legend_strip(area, &items)?;
    }
    let (lo, hi) = data.iter().flat_map(|s| s.points.iter().flat_map(|p| [p.2, p.3])).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    let pad = ((hi - lo) * 0.1).max(0.5);
    let (light, bold) = grid_style();
    let mut chart = ChartBuilder::on(&body)
        .margin(pt(4.0))
        .x_label_area_size(pt(18.0))
        .y_label_area_size(pt(22.0))
        .build_cartesian_2d(-0.05f64..1.05, (lo - pad)..(hi + pad))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .light_line_style(light)
        .bold_line_style(bold)
        .x_label_formatter(&|x| tidy(*x))
        .y_label_formatter(&|y| tidy(*y))
        .x_desc("α")
        .y_desc("target accuracy (%), last model")
        .axis_desc_style(label_font())
        .label_style(tick_font())
        .draw()
        .map_err(plot_err)?;
    for (k, s) in data.iter().enumerate() {
        let color = OKABE_ITO[k % OKABE_ITO.len()];
        let mut outline: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.3)).collect();
        outline.extend(s.points.iter().rev().map(|p| (p.0, p.2)));
        chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled()))).map_err(plot_err)?;
        chart.draw_series(LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), color.stroke_width(pt(1.2)))).map_err(plot_err)?;
        chart.draw_series(s.points.iter().map(|p| Circle::new((p.0, p.1), pt(2.0), color.filled()))).map_err(plot_err)?;
    }
    Ok(())
}

fn alpha_caption(data: &[AlphaSeries], records: &[CellRecord], profile: &str) -> String {
    let n: Vec<String> = data.iter().map(|s| format!("{} {} seed(s) per α", s.label, s.seeds)).collect();
    format!(
        "GH++ sensitivity to α (the paper's Fig. 14), profile {profile}: target accuracy of the last model against α; lines: mean over seeds; bands: min-max over seeds. n: {}. {}\n",
        n.join(", "),
        deviations_sentence(records.iter().filter(|r| r.harmonizer_method == "gh++"))
    )
}

// ------------------------------------------------------------------ inner products

pub struct Histogram {
    pub title: String,
    pub values: Vec<f64>,
}

pub struct InnerProducts {
    pub title: String,
    pub panels: Vec<Histogram>,
    pub runs: usize,
}

pub fn inner_product_data(records: &[CellRecord], baseline: &str, task: &str) -> Option<InnerProducts> {
    let pair = main_pair(baseline);
    let runs_of = |h: &str| records.iter().filter(|r| r.baseline == baseline && r.task == task && r.harmonizer == h).collect::<Vec<_>>();
    let pick = |h: &str| -> Vec<&crate::records::Telemetry> { runs_of(h).into_iter().flat_map(|r| r.telemetry.iter().filter(|t| t.pair == pair && t.d.is_finite())).collect() };
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
        if !after.is_empty() {
            panels.push(Histogram { title: format!("+GH, after: {:.0}% obtuse", conflict(&after)), values: after });
        }
    }
    let runs = runs_of("none").len() + runs_of("gh").len();
    (!panels.is_empty()).then(|| InnerProducts {
        title: format!("Inner products g1·g2 of the harmonized pair ({}, {})", row_name(baseline, "none"), arrow(task)),
        panels,
        runs,
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn draw_inner_products<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &InnerProducts) -> Result<()> {
    let root = page(root);
    let titled = root.titled(&data.title, title_font()).map_err(plot_err)?;
    let (legend, body) = titled.split_vertically(pt(12.0));
    legend_strip(&legend, &[("acute (g1·g2 ≥ 0)".to_owned(), OKABE_ITO[0], Mark::Box), ("obtuse (conflict)".to_owned(), OKABE_ITO[1], Mark::Box)])?;
    let areas = body.split_evenly((1, data.panels.len()));
    let (light, bold) = grid_style();
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
        let ymax = (*counts.iter().max().unwrap_or(&1) as f64 * 1.1).ceil() as u32;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, label_font())
            .margin(pt(4.0))
            .x_label_area_size(pt(18.0))
            .y_label_area_size(pt(20.0))
            .build_cartesian_2d(-m..m, 0u32..ymax.max(2))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(light)
            .bold_line_style(bold)
            .x_labels(5)
            .y_labels(6)
            .x_label_formatter(&|x| if *x == 0.0 { "0".to_owned() } else { format!("{x:.1e}") })
            .x_desc("g1·g2")
            .y_desc("steps")
            .axis_desc_style(label_font())
            .label_style(tick_font())
            .draw()
            .map_err(plot_err)?;
        let w = 2.0 * m / bins as f64;
        chart
            .draw_series(counts.iter().enumerate().map(|(k, &c)| {
                let x0 = -m + k as f64 * w;
                let color = if x0 + w / 2.0 < 0.0 { OKABE_ITO[1] } else { OKABE_ITO[0] };
                Rectangle::new([(x0, 0u32), (x0 + w, c)], color.mix(0.85).filled())
            }))
            .map_err(plot_err)?;
    }
    Ok(())
}

fn inner_products_caption(data: &InnerProducts, records: &[CellRecord], baseline: &str, task: &str, profile: &str) -> String {
    let n: Vec<String> = data.panels.iter().map(|p| format!("{}: {} steps", p.title, p.values.len())).collect();
    format!(
        "Inner products g1·g2 of {}'s harmonized pair ({}) on {}, profile {profile} (the paper's Figs. 2 and 12): histograms over the measured steps of all seeds ({} runs), without GH, and with GH before and after harmonizing; 30 bins over the 2nd-98th percentile range, symmetric about 0 (the tails fall into the edge bins). {}. {}\n",
        row_name(baseline, "none"),
        main_pair(baseline),
        arrow(task),
        data.runs,
        n.join("; "),
        deviations_sentence(records.iter().filter(|r| r.baseline == baseline && r.task == task))
    )
}

// ------------------------------------------------------------------ convergence

pub struct Curve {
    pub harmonizer: String,
    /// (iteration, mean, min, max) of the target error (%) over seeds.
    pub points: Vec<(u64, f64, f64, f64)>,
    pub seeds: usize,
}

pub struct Convergence {
    pub title: String,
    /// Per baseline: its curves.
    pub panels: Vec<(String, Vec<Curve>)>,
}

pub fn convergence_data(records: &[CellRecord], task: &str) -> Option<Convergence> {
    let mut panels = Vec::new();
    for b in baseline_order().iter().map(String::as_str) {
        let mut curves = Vec::new();
        for h in harmonizer_order().iter().map(String::as_str) {
            let runs: Vec<&CellRecord> = records.iter().filter(|r| r.baseline == b && r.task == task && r.harmonizer == h && r.diverged_at.is_none()).collect();
            let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for r in &runs {
                for &(i, a) in &r.evaluations {
                    at.entry(i).or_default().push(100.0 - a);
                }
            }
            if !at.is_empty() {
                let points = at
                    .into_iter()
                    .map(|(i, e)| {
                        let (lo, hi) = min_max(&e).expect("non-empty");
                        (i, e.iter().sum::<f64>() / e.len() as f64, lo, hi)
                    })
                    .collect();
                curves.push(Curve { harmonizer: h.to_owned(), points, seeds: runs.len() });
            }
        }
        if !curves.is_empty() {
            panels.push((row_name(b, "none"), curves));
        }
    }
    (!panels.is_empty()).then(|| Convergence { title: format!("Target test error against iterations, {}", arrow(task)), panels })
}

fn draw_convergence<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &Convergence) -> Result<()> {
    let root = page(root);
    let titled = root.titled(&data.title, title_font()).map_err(plot_err)?;
    let (legend, body) = titled.split_vertically(pt(12.0));
    legend_strip(&legend, &harmonizer_order().iter().map(|h| (format!("{} (mean; band: min-max over seeds)", harmonizer_name(h)), harmonizer_color(h), Mark::Line)).collect::<Vec<_>>())?;
    let cols = data.panels.len().min(2);
    let rows = data.panels.len().div_ceil(cols);
    let areas = body.split_evenly((rows, cols));
    let (light, bold) = grid_style();
    for (area, (name, curves)) in areas.iter().zip(&data.panels) {
        let xmax = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).max().unwrap_or(1).max(1);
        let ymax = curves.iter().flat_map(|c| c.points.iter().map(|p| p.3)).fold(1.0, f64::max) * 1.08;
        let mut chart = ChartBuilder::on(area)
            .caption(name, label_font())
            .margin(pt(4.0))
            .x_label_area_size(pt(18.0))
            .y_label_area_size(pt(20.0))
            .build_cartesian_2d(0u64..xmax, 0f64..ymax.min(100.0))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(light)
            .bold_line_style(bold)
            .x_labels(6)
            .y_label_formatter(&|y| tidy(*y))
            .x_desc("iteration")
            .y_desc("target error (%)")
            .axis_desc_style(label_font())
            .label_style(tick_font())
            .draw()
            .map_err(plot_err)?;
        for c in curves {
            let color = harmonizer_color(&c.harmonizer);
            if c.points.len() >= 2 {
                let mut outline: Vec<(u64, f64)> = c.points.iter().map(|p| (p.0, p.3)).collect();
                outline.extend(c.points.iter().rev().map(|p| (p.0, p.2)));
                chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.15).filled()))).map_err(plot_err)?;
            }
            chart.draw_series(LineSeries::new(c.points.iter().map(|p| (p.0, p.1)), color.stroke_width(pt(1.0)))).map_err(plot_err)?;
        }
    }
    Ok(())
}

fn convergence_caption(data: &Convergence, records: &[CellRecord], task: &str, profile: &str) -> String {
    let n: Vec<String> = data.panels.iter().flat_map(|(b, curves)| curves.iter().map(move |c| format!("{} {} {}", b, harmonizer_name(&c.harmonizer), c.seeds))).collect();
    format!(
        "Convergence on {} (the paper's Fig. 9), profile {profile}: target test error (%) of the model at each evaluation against training iterations, per baseline without harmonization and with GH and GH++; lines: mean over seeds; bands: min-max over seeds (diverged runs left out). Seeds per curve: {}. {}\n",
        arrow(task),
        n.join(", "),
        deviations_sentence(records.iter().filter(|r| r.task == task))
    )
}

// ------------------------------------------------------------------ claims (forest plot)

/// The verdict colours (Okabe–Ito): blue reproduced, vermilion not reproduced, grey otherwise.
fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::Reproduced => OKABE_ITO[0],
        Verdict::NotReproduced => OKABE_ITO[1],
        _ => RGBColor(120, 120, 120),
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

fn forest_row() -> u32 {
    pt(11.0)
}
fn forest_panel_extra() -> u32 {
    pt(30.0)
}

fn draw_forest<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, panels: &[(Unit, Vec<&Outcome>)], subtitle: &str) -> Result<()> {
    let root = page(root);
    let titled = root.titled(&format!("The paper's claims: our estimates and 95% intervals ({subtitle})"), title_font()).map_err(plot_err)?;
    let (legend, body) = titled.split_vertically(pt(12.0));
    legend_strip(
        &legend,
        &[
            ("reproduced".to_owned(), verdict_color(Verdict::Reproduced), Mark::Line),
            ("not reproduced".to_owned(), verdict_color(Verdict::NotReproduced), Mark::Line),
            ("inconclusive".to_owned(), verdict_color(Verdict::Inconclusive), Mark::Line),
            ("the paper's value (shaded: its tolerance)".to_owned(), BLACK, Mark::Box),
        ],
    )?;
    let heights: Vec<u32> = panels.iter().map(|(_, rows)| rows.len() as u32 * forest_row() + forest_panel_extra()).collect();
    let mut breaks = Vec::new();
    let mut y = 0;
    for h in &heights[..heights.len().saturating_sub(1)] {
        y += *h as i32;
        breaks.push(y);
    }
    let areas = body.split_by_breakpoints(Vec::<i32>::new(), breaks);
    let (light, bold) = grid_style();
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
            .margin(pt(4.0))
            .x_label_area_size(pt(18.0))
            .y_label_area_size(pt(100.0))
            .build_cartesian_2d(x0..x1, -0.5f64..(n as f64 - 0.5))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(light)
            .bold_line_style(bold)
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
            .axis_desc_style(label_font())
            .label_style(tick_font())
            .draw()
            .map_err(plot_err)?;
        chart.draw_series(std::iter::once(PathElement::new(vec![(unit.null(), -0.5), (unit.null(), n as f64 - 0.5)], BLACK.mix(0.35).stroke_width(pt(0.4))))).map_err(plot_err)?;
        for (i, o) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let e = o.estimate.as_ref().expect("checked");
            let color = verdict_color(o.verdict);
            if let Some(p) = o.claim.paper {
                if o.claim.tolerance > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new([(p - o.claim.tolerance, y - 0.32), (p + o.claim.tolerance, y + 0.32)], BLACK.mix(0.08).filled()))).map_err(plot_err)?;
                }
                chart.draw_series(std::iter::once(PathElement::new(vec![(p, y - 0.34), (p, y + 0.34)], BLACK.stroke_width(pt(0.8))))).map_err(plot_err)?;
            }
            let (l, h) = (if e.lo.is_finite() { e.lo } else { x0 }, if e.hi.is_finite() { e.hi } else { x1 });
            chart.draw_series(std::iter::once(PathElement::new(vec![(l, y), (h, y)], color.stroke_width(pt(1.2))))).map_err(plot_err)?;
            chart.draw_series(std::iter::once(Circle::new((e.mean, y), pt(2.2), color.filled()))).map_err(plot_err)?;
        }
    }
    Ok(())
}

/// `claims.png` / `.svg` / `.txt`: a forest plot of every checked claim (nothing when none has cells).
pub fn write_forest(out: &Path, outcomes: &[Outcome], subtitle: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let panels = forest_panels(outcomes);
    if panels.is_empty() {
        return Ok(Vec::new());
    }
    let height = pt(26.0) + panels.iter().map(|(_, r)| r.len() as u32 * forest_row() + forest_panel_extra()).sum::<u32>();
    let checked: usize = panels.iter().map(|(_, r)| r.len()).sum();
    let caption = format!(
        "The paper's claims checked on profile {subtitle} ({checked} with cells in this profile; claims.md lists the rest): per claim our estimate (dot) and 95% interval (line), coloured by verdict, and the paper's value (black tick; shaded: the tolerance of a value claim). One panel per unit of measure. Intervals, n and the deviations behind each claim: claims.md.\n"
    );
    Ok(chart_files!(out.join("claims"), caption, (TWO_COLUMNS, height), draw_forest, &panels, subtitle))
}

// ------------------------------------------------------------------ all charts

/// Every series each chart of these records would draw, with its number of points (the test
/// checks that none is empty).
pub fn series_summary(records: &[CellRecord], speeds: &Speeds) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    if let Some(d) = speed_data(speeds) {
        for b in &d.bars {
            out.push(("speed".to_owned(), format!("{} {}", d.baselines[b.baseline], b.harmonizer), b.n));
        }
    }
    for s in alpha_data(records) {
        out.push(("alpha_sensitivity".to_owned(), s.label.clone(), s.points.len()));
    }
    for task in tasks_of(records) {
        for b in baseline_order().iter().map(String::as_str) {
            if let Some(d) = inner_product_data(records, b, &task) {
                for p in &d.panels {
                    out.push((format!("inner_products_{b}_{task}"), p.title.clone(), p.values.len()));
                }
            }
        }
        if let Some(d) = convergence_data(records, &task) {
            for (b, curves) in &d.panels {
                for c in curves {
                    out.push((format!("convergence_{task}"), format!("{b} {}", c.harmonizer), c.points.len()));
                }
            }
        }
    }
    out
}

fn tasks_of(records: &[CellRecord]) -> Vec<String> {
    let tasks: BTreeSet<String> = records.iter().map(|r| r.task.clone()).collect();
    tasks.into_iter().collect()
}

/// Writes every chart the data allows into `out`; returns the files written.
pub fn write_all(out: &Path, records: &[CellRecord], speeds: &Speeds, profile: &str) -> Result<Vec<PathBuf>> {
    fonts();
    let mut files = Vec::new();
    if let Some(d) = speed_data(speeds) {
        let caption = speed_caption(&d, speeds, records, profile);
        files.extend(chart_files!(out.join("speed"), caption, (ONE_COLUMN, pt(180.0)), draw_speed, &d, profile));
    }
    let alpha = alpha_data(records);
    if !alpha.is_empty() {
        let caption = alpha_caption(&alpha, records, profile);
        files.extend(chart_files!(out.join("alpha_sensitivity"), caption, (ONE_COLUMN, pt(200.0)), draw_alpha, &alpha, profile));
    }
    for task in tasks_of(records) {
        for b in baseline_order().iter().map(String::as_str) {
            if let Some(d) = inner_product_data(records, b, &task) {
                let caption = inner_products_caption(&d, records, b, &task, profile);
                files.extend(chart_files!(out.join(format!("inner_products_{b}_{task}")), caption, (TWO_COLUMNS, pt(150.0)), draw_inner_products, &d));
            }
        }
        if let Some(d) = convergence_data(records, &task) {
            let rows = d.panels.len().div_ceil(d.panels.len().min(2)) as u32;
            let caption = convergence_caption(&d, records, &task, profile);
            files.extend(chart_files!(out.join(format!("convergence_{task}")), caption, (TWO_COLUMNS, pt(30.0) + pt(150.0) * rows), draw_convergence, &d));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_tick_labels() {
        assert_eq!(tidy(100.0), "100");
        assert_eq!(tidy(-20.0), "-20");
        assert_eq!(tidy(0.5), "0.5");
        assert_eq!(tidy(-0.04), "-0.04");
        assert_eq!(tidy(0.00025), "2.5e-4");
        assert_eq!(tidy(-0.0), "0");
    }
}
