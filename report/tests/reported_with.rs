//! A profile whose manifest says `reported_with = P` (an arm run into P's runs folder) joins P's
//! report: its cells are aggregated, claimed and headlined with P's, and it gets no report of
//! its own while P's manifest is there. A rule variant (`gh++(rotation)`) is headlined with the
//! paper's value of its method and its paired difference from the default rule.

use std::fs;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

/// The fixture's cells in a temporary runs folder, its α = 0 GH++ cells relabelled as the rotation
/// rule's and listed in a manifest of their own, `arm`, reported with `main` (the other cells).
fn split_runs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&fs::read_to_string(fixtures().join("profiles/fixture.json")).unwrap()).unwrap();
    let (mut main, mut arm) = (Vec::new(), Vec::new());
    for cell in manifest["cells"].as_array().unwrap() {
        let hash = cell["hash"].as_str().unwrap();
        let from = fixtures().join("cells").join(hash);
        let to = dir.path().join("cells").join(hash);
        fs::create_dir_all(&to).unwrap();
        for e in fs::read_dir(&from).unwrap().flatten() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        let mut cell = cell.clone();
        if cell["harmonizer"] == "gh++(α=0)" {
            cell["harmonizer"] = "gh++(rotation)".into();
            let mut info: serde_json::Value = serde_json::from_str(&fs::read_to_string(to.join("cell.json")).unwrap()).unwrap();
            info["harmonizer"] = "gh++(rotation)".into();
            fs::write(to.join("cell.json"), serde_json::to_string_pretty(&info).unwrap()).unwrap();
            arm.push(cell);
        } else {
            main.push(cell);
        }
    }
    fs::create_dir_all(dir.path().join("profiles")).unwrap();
    let write = |name: &str, value: serde_json::Value| fs::write(dir.path().join("profiles").join(format!("{name}.json")), serde_json::to_string_pretty(&value).unwrap()).unwrap();
    write("main", serde_json::json!({ "profile": "main", "cells": main }));
    write("arm", serde_json::json!({ "profile": "arm", "reported_with": "main", "cells": arm }));
    dir
}

#[test]
fn an_arm_reported_with_a_profile_joins_its_report() {
    let runs = split_runs();
    assert_eq!(report::records::profiles(runs.path()).unwrap(), vec!["main".to_owned()], "the arm gets no report of its own");
    assert_eq!(report::records::reported_with(runs.path(), "main").unwrap(), vec!["arm".to_owned()]);
    let out = tempfile::tempdir().unwrap();
    let g = report::generate_profile(runs.path(), out.path(), "main").unwrap();
    assert_eq!((g.cells, g.missing), (32, 0), "the main profile's 24 cells and the arm's 8");
    let index = fs::read_to_string(g.dir.join("index.md")).unwrap();
    assert!(index.contains("Includes the cells of `arm` (`reported_with = \"main\"` in its manifest)"), "{index}");
    let aggregates = fs::read_to_string(g.dir.join("aggregates.csv")).unwrap();
    assert!(aggregates.contains("digits,M-U,mcd,\"gh++(rotation)\",2,2,"), "{aggregates}");

    // The headline: the paper's GH++ value on the rotation row, and rotation − released paired by seed.
    let headline = fs::read_to_string(g.dir.join("headline.md")).unwrap();
    let paper = report::paper::PaperResults::embedded().unwrap();
    let ghpp = paper.accuracy("digits", "mcd", "gh++", "U-M").unwrap();
    let row = headline.lines().find(|l| l.starts_with("| MCD+GH++ (rotation) | U→M |")).unwrap_or_else(|| panic!("{headline}"));
    assert!(row.starts_with(&format!("| MCD+GH++ (rotation) | U→M | {ghpp:.1} |")), "{row}");
    let (records, _) = report::records::load_profile(runs.path(), "main").unwrap();
    let acc = |h: &str, seed: u64| records.iter().find(|r| r.task == "U-M" && r.baseline == "mcd" && r.harmonizer == h && r.seed == seed).unwrap().final_accuracy.unwrap();
    let diff = ((acc("gh++(rotation)", 1) - acc("gh++", 1)) + (acc("gh++(rotation)", 2) - acc("gh++", 2))) / 2.0;
    assert!(diff.abs() > 0.5, "the fixture's rotation arm differs from the released rule on U→M");
    let line = format!("- MCD+GH++ (rotation) − MCD+GH++ on U→M: {diff:+.2} [");
    assert!(headline.contains(&line) && headline.contains("Rotation against released, paired by seed (95% t interval)"), "no {line:?} in\n{headline}");

    // Reported on its own, the arm holds its 8 cells; without the main manifest it is listed.
    let g = report::generate_profile(runs.path(), out.path(), "arm").unwrap();
    assert_eq!(g.cells, 8);
    fs::remove_file(runs.path().join("profiles/main.json")).unwrap();
    assert_eq!(report::records::profiles(runs.path()).unwrap(), vec!["arm".to_owned()]);
}
