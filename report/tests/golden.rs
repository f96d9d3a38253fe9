//! The report on committed records: tables byte-identical to the golden files, every chart
//! produced as PNG and SVG.

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

const TEXT_OUTPUTS: [&str; 8] = ["table_digits_last.tex", "table_digits_best.tex", "table_speed_digits.tex", "aggregates.csv", "index.md", "claims.md", "claims.csv", "claims.tex"];

#[test]
fn tables_match_the_golden_files_and_charts_are_drawn() {
    let out = tempfile::tempdir().unwrap();
    let g = report::generate_profile(&fixtures(), out.path(), "fixture").unwrap();
    assert_eq!((g.cells, g.missing), (32, 0));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for name in TEXT_OUTPUTS {
        let produced = std::fs::read_to_string(g.dir.join(name)).unwrap();
        let golden_file = golden().join(name);
        if update {
            std::fs::create_dir_all(golden()).unwrap();
            std::fs::write(&golden_file, &produced).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden_file).unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", golden_file.display()));
        assert!(produced == expected, "{name} differs from {}:\n--- produced\n{produced}\n--- expected\n{expected}", golden_file.display());
    }
    let mut charts = vec!["speed".to_owned(), "alpha_sensitivity".to_owned(), "claims".to_owned()];
    for task in ["M-U", "U-M"] {
        charts.push(format!("convergence_{task}"));
        for b in ["mcd", "dwl"] {
            charts.push(format!("inner_products_{b}_{task}"));
        }
    }
    for chart in charts {
        let png = std::fs::read(g.dir.join(format!("{chart}.png"))).unwrap_or_else(|_| panic!("{chart}.png missing"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000, "{chart}.png is not a drawn PNG");
        let svg = std::fs::read_to_string(g.dir.join(format!("{chart}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<rect") && svg.len() > 2_000, "{chart}.svg is not a drawn SVG");
    }
}

#[test]
fn tables_carry_paper_numbers_bold_bests_and_deviations() {
    let out = tempfile::tempdir().unwrap();
    let g = report::generate_profile(&fixtures(), out.path(), "fixture").unwrap();
    let table = std::fs::read_to_string(g.dir.join("table_digits_last.tex")).unwrap();
    // The paper's MCD+GH on M→U is 96.7 (Table III).
    let row = table.lines().find(|l| l.starts_with("MCD+GH &")).unwrap();
    assert!(row.contains("(96.7, "), "{row}");
    assert!(table.contains("\\textbf{"), "a best value per column is bold");
    assert!(table.contains("reduced schedule") && table.contains("head\\_hidden = 32"), "deviations in the caption");
    // The fixture's MCD+GH M→U seed 2 was timed under load (its timing.json): named, and left out of the speeds.
    let index = std::fs::read_to_string(g.dir.join("index.md")).unwrap();
    assert!(index.contains("timed under load (load average above the CPU count, or another bench-suite process running): 1 (M-U mcd gh seed 2)"), "{index}");
    // Two fixture cells record their libtorch, the rest predate the field: a pool of builds, said.
    assert!(index.contains("2 cell(s) on cpu (2 threads), suite 0.1.0, libtorch 2.11.0+cu130; 30 cell(s) on cpu (2 threads), suite 0.1.0, libtorch unrecorded (**mixed builds**"), "{index}");
    let speed = std::fs::read_to_string(g.dir.join("table_speed_digits.tex")).unwrap();
    assert!(speed.contains("1 cell(s) timed under load left out"), "{speed}");
    let best = std::fs::read_to_string(g.dir.join("table_digits_best.tex")).unwrap();
    assert!(best.contains("oracle selection"));
}

#[test]
fn unknown_profile_is_an_error_naming_the_fix() {
    let out = tempfile::tempdir().unwrap();
    let err = report::generate_profile(&fixtures(), out.path(), "nope").unwrap_err();
    assert!(format!("{err:#}").contains("bench-suite run --profile nope"));
}

/// Copies a folder tree (the fixture runs) so that a test can change one record.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_run_that_never_harmonized_is_marked_and_left_out_of_means_and_claims() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    copy_tree(&fixtures(), &runs);
    // M-U mcd gh seed 1: its summary now says the pair never formed.
    let done = runs.join("cells/f7f4c8559eb89073/done");
    let mut summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&done).unwrap()).unwrap();
    summary["trained"] = serde_json::json!("not-harmonized");
    std::fs::write(&done, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    let out = dir.path().join("out");
    let g = report::generate_profile(&runs, &out, "fixture").unwrap();
    let table = std::fs::read_to_string(g.dir.join("table_digits_last.tex")).unwrap();
    let row = table.lines().find(|l| l.starts_with("MCD+GH &")).unwrap();
    assert!(row.contains("$^{\\S1}$"), "{row}");
    assert!(table.contains("never trained the baseline's transfer loss or harmonized pair"), "{table}");
    let index = std::fs::read_to_string(g.dir.join("index.md")).unwrap();
    assert!(index.contains("(marked §, left out of the means and the claims): 1 (M-U mcd gh seed 1 (not-harmonized))"), "{index}");
    let csv = std::fs::read_to_string(g.dir.join("aggregates.csv")).unwrap();
    let line = csv.lines().find(|l| l.starts_with("digits,M-U,mcd,\"gh\",")).unwrap();
    // 2 runs, 1 completed with an accuracy, 0 diverged, 1 not trained.
    assert!(line.starts_with("digits,M-U,mcd,\"gh\",2,1,0,1,"), "{line}");
    let claims = std::fs::read_to_string(g.dir.join("claims.md")).unwrap();
    let golden_claims = std::fs::read_to_string(golden().join("claims.md")).unwrap();
    assert_ne!(claims, golden_claims, "the claims did not change when a run was left out");
}
