//! End to end on a synthetic three-class image task (your own folders): `run-one` reads both
//! folders, decodes JPEG and PNG through the image pipeline (with the decoded cache), trains a
//! source-only DTN on 32×32 crops and must beat chance on the target.

use std::path::Path;
use std::process::Command;

fn summary(record: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(record).unwrap();
    let last = text.lines().last().unwrap();
    serde_json::from_str(last).unwrap()
}

#[test]
fn a_short_source_only_run_on_your_own_folders_beats_chance() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("photos"), dir.path().join("sketches"));
    baselines::data::synthetic::write_image_folders(&a, 3, 40, 48, 40, false, 1).unwrap();
    baselines::data::synthetic::write_image_folders(&b, 3, 30, 40, 48, true, 2).unwrap();
    let out = dir.path().join("run");
    let started = std::time::Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_bench-suite"))
        .args(["run-one", "--method", "source-only", "--quiet", "--device", "cpu", "--image-size", "36/32", "--workers", "2"])
        .args(["--iters", "60", "--eval-every", "30", "--set", "batch=16"])
        .arg("--task")
        .arg(format!("folder:{}->{}", a.display(), b.display()))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--data-root")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    eprintln!("synthetic end-to-end run: {:.1} s wall (run-one, 60 iterations, batch 16, 2 workers)", started.elapsed().as_secs_f64());
    let s = summary(&out.join("run.jsonl"));
    let acc = s["final_accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "target accuracy {acc} is not clearly above chance (1/3)");
    let config: serde_json::Value = serde_json::from_str(std::fs::read_to_string(out.join("run.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    assert!(config["spec"]["task"].as_str().unwrap().starts_with("folder:"));
    assert_eq!(config["spec"]["images"]["crop"], 32);
    assert!(config["context"]["target_test"].as_str().unwrap().contains("90 images"));
    // The libtorch it ran with is recorded (the venv's, pinned by setup), and no CUDA on CPU.
    assert!(config["context"]["libtorch"].as_str().is_some_and(|l| l.starts_with("2.11.0")), "{}", config["context"]);
    assert!(config["context"]["cuda"].is_null());
    // The decoded cache was built once per list (source, target).
    let caches = std::fs::read_dir(dir.path().join("cache")).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "ghdc")).count();
    assert_eq!(caches, 2);
}

#[test]
fn folders_with_different_classes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    baselines::data::synthetic::write_image_folders(&a, 3, 2, 16, 16, false, 1).unwrap();
    baselines::data::synthetic::write_image_folders(&b, 2, 2, 16, 16, true, 2).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bench-suite"))
        .args(["run-one", "--method", "source-only", "--quiet", "--device", "cpu", "--image-size", "36/32", "--iters", "2"])
        .arg("--task")
        .arg(format!("folder:{}->{}", a.display(), b.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("same class subfolders") && err.contains("class_c"), "{err}");
}

