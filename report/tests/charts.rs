//! The charts of the golden fixture: no empty series, integer tick labels on iteration and count
//! axes (read back from the SVGs), a caption file per chart.

use std::collections::BTreeMap;
use std::path::Path;

/// (x, y, text-anchor, text) of every numeric text element of an SVG drawn by plotters.
fn numeric_labels(svg: &str) -> Vec<(String, String, String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        tag.find(&key).map(|i| tag[i + key.len()..].split('"').next().unwrap_or_default().to_owned()).unwrap_or_default()
    };
    svg.split("<text ")
        .skip(1)
        .filter_map(|chunk| {
            let (tag, rest) = chunk.split_once('>')?;
            let text = rest.split("</text>").next()?.trim().to_owned();
            text.parse::<f64>().ok()?;
            Some((attr(tag, "x"), attr(tag, "y"), attr(tag, "text-anchor"), text))
        })
        .collect()
}

/// Tick labels of the axes drawn along x (rows: same y, centred) or along y (columns: same x,
/// right-aligned), groups of at least three.
fn axes(svg: &str, along_x: bool) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (x, y, anchor, text) in numeric_labels(svg) {
        match (along_x, anchor.as_str()) {
            (true, "middle") => groups.entry(y).or_default().push(text),
            (false, "end") => groups.entry(x).or_default().push(text),
            _ => {}
        }
    }
    groups.into_values().filter(|g| g.len() >= 3).collect()
}

fn assert_integer_axes(path: &Path, along_x: bool) {
    let svg = std::fs::read_to_string(path).unwrap();
    let axes = axes(&svg, along_x);
    assert!(!axes.is_empty(), "{}: no tick labels found on the integer axis", path.display());
    for labels in axes {
        for l in &labels {
            assert!(!l.contains('.') && !l.contains('e'), "{}: integer axis with tick label {l:?} ({labels:?})", path.display());
        }
    }
}

#[test]
fn charts_have_data_integer_ticks_and_captions() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs");
    let out = tempfile::tempdir().unwrap();
    let g = report::generate_profile(&fixtures, out.path(), "fixture").unwrap();

    // Every series of every chart has points.
    let (records, _) = report::records::load_profile(&fixtures, "fixture").unwrap();
    let speeds = report::speed::speeds(None, &records);
    let series = report::charts::series_summary(&records, &speeds);
    for chart in ["speed", "alpha_sensitivity", "convergence_M-U", "inner_products_mcd_M-U"] {
        assert!(series.iter().any(|s| s.0 == chart), "no series for {chart}");
    }
    for (chart, label, points) in &series {
        assert!(*points > 0, "{chart}: series {label} is empty");
    }

    // Iterations (convergence, along x) and step counts (inner products, along y) are integers.
    for task in ["M-U", "U-M"] {
        assert_integer_axes(&g.dir.join(format!("convergence_{task}.svg")), true);
        for b in ["mcd", "dwl"] {
            assert_integer_axes(&g.dir.join(format!("inner_products_{b}_{task}.svg")), false);
        }
    }

    // A caption per chart, and the PNG at print size (300 dpi: 3.5 in or 7 in wide).
    for chart in ["speed", "alpha_sensitivity", "convergence_M-U", "inner_products_mcd_M-U", "claims"] {
        let caption = std::fs::read_to_string(g.dir.join(format!("{chart}.txt"))).unwrap();
        assert!(caption.contains("fixture") && caption.len() > 100, "{chart}.txt: {caption}");
        let png = std::fs::read(g.dir.join(format!("{chart}.png"))).unwrap();
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        assert!(width == report::charts::ONE_COLUMN || width == report::charts::TWO_COLUMNS, "{chart}.png is {width} px wide");
    }
}

#[test]
fn the_axis_check_catches_decimal_ticks() {
    let svg = r#"<text x="10" y="50" text-anchor="middle">0.0</text><text x="20" y="50" text-anchor="middle">100.0</text><text x="30" y="50" text-anchor="middle">200.0</text>"#;
    let axes = axes(svg, true);
    assert_eq!(axes, vec![vec!["0.0".to_owned(), "100.0".to_owned(), "200.0".to_owned()]]);
    assert!(axes[0].iter().any(|l| l.contains('.')));
}
