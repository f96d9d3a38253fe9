//! What runs is what was asked: `run-one` keeps the protocol's epochs whatever `--iters` says,
//! refuses a run that would end inside CDAN's source-only warm-up, reports per pair what
//! trained, trains LeNet on your own 28×28 grey digit folders, says which flag fixes a missing
//! protocol, and prints its plan (`--dry-run`), compared here with expected text.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn suite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench-suite")).args(args).env_remove("GH_DATA_ROOT").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn lines(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Digit-like folders: 200 source and 100 target 28×28 grey PNGs in class folders 0-9.
fn digit_folders(dir: &Path) -> String {
    let (a, b) = (dir.join("mnist-like"), dir.join("usps-like"));
    baselines::data::synthetic::write_digit_folders(&a, 20, false, 1).unwrap();
    baselines::data::synthetic::write_digit_folders(&b, 10, true, 2).unwrap();
    format!("folder:{}->{}", a.display(), b.display())
}

fn cdan_on_folders(dir: &Path, task: &str, harmonizer: &str, extra: &[&str]) -> (Output, PathBuf) {
    let out = dir.join(format!("cdan-{harmonizer}"));
    let mut args = vec!["run-one", "--method", "cdan", "--harmonizer", harmonizer, "--task", task, "--protocol-of", "digits", "--device", "cpu", "--quiet"];
    args.extend_from_slice(&["--telemetry-every", "1", "--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    (suite(&args), out.join("run.jsonl"))
}

#[test]
fn cdan_gh_on_your_digit_folders_trains_lenet_past_the_warm_up_and_differs_from_none() {
    let dir = tempfile::tempdir().unwrap();
    let task = digit_folders(dir.path());
    // An epoch is max(200, 100) / 64 = 3 iterations, whatever --iters says; 30 iterations: the
    // first epoch source-only, then 27 adapted steps.
    let mut telemetry = Vec::new();
    for harmonizer in ["none", "gh"] {
        let (output, record) = cdan_on_folders(dir.path(), &task, harmonizer, &["--iters", "30", "--eval-every", "15"]);
        assert!(output.status.success(), "{}", text(&output));
        let said = text(&output);
        assert!(said.contains("network     LeNet, 28×28 grey"), "{said}");
        // libtorch's warnings ("[W... Warning: ...", e.g. 2.11's pin_memory deprecation) would
        // flood the progress display: none may be printed.
        assert!(!said.to_lowercase().contains("deprecat") && !said.contains("[W"), "a libtorch warning: {said}");
        let lines = lines(&record);
        let spec = &lines[0]["spec"];
        assert_eq!(spec["digits_input"], "grey28");
        assert_eq!((spec["schedule"]["iters_per_epoch"].as_u64(), spec["schedule"]["iterations"].as_u64()), (Some(3), Some(30)));
        let summary = lines.last().unwrap();
        assert_eq!(summary["status"], "completed", "{summary}");
        assert_eq!(summary["trained"], "as-asked");
        let pair = &summary["harmonization"]["transfer/cls"];
        assert_eq!(pair["formed_steps"], 27, "{pair}");
        if harmonizer == "gh" {
            assert!(pair["reweighted_steps"].as_u64().unwrap() > 0, "GH never changed a weight: {pair}");
            assert!(said.contains("pair transfer/cls: formed in 27 of 30 steps, reweighted by gh in"), "{said}");
        } else {
            assert_eq!(pair["reweighted_steps"], 0);
        }
        let last: Vec<f64> = lines.iter().filter(|l| l["event"] == "telemetry" && l["iteration"] == 29).map(|l| l["d"].as_f64().unwrap()).collect();
        assert_eq!(last.len(), 1, "one pair measured at the last iteration");
        telemetry.push(last[0]);
    }
    // Same initialisation and data order; GH's reweighted steps made another model.
    assert_ne!(telemetry[0], telemetry[1], "CDAN + GH trained the same model as CDAN alone");
}

#[test]
fn a_run_inside_the_warm_up_is_refused_and_a_shortened_warm_up_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let task = digit_folders(dir.path());
    let (output, record) = cdan_on_folders(dir.path(), &task, "gh", &["--iters", "3"]);
    assert!(!output.status.success());
    let err = text(&output);
    assert!(err.contains("first 1 epoch(s) (3 iterations") && err.contains("--iters 4") && err.contains("--set source_only_epochs=0"), "{err}");
    assert!(!record.exists(), "nothing trained, nothing written");
    let (output, record) = cdan_on_folders(dir.path(), &task, "gh", &["--iters", "3", "--set", "source_only_epochs=0"]);
    assert!(output.status.success(), "{}", text(&output));
    let lines = lines(&record);
    let deviations = lines[0]["context"]["deviations"].to_string();
    assert!(deviations.contains("source_only_epochs = 0 by --set (the protocol's: 1)"), "{deviations}");
    assert_eq!(lines.last().unwrap()["harmonization"]["transfer/cls"]["formed_steps"], 3);
}

#[test]
fn the_digits_task_refuses_500_iterations_of_cdan_before_reading_data() {
    // CDAN's digits epoch on M->U is 937 iterations, the first source-only: 500 would train
    // neither CDAN nor GH. The refusal comes before any data is read (none is here).
    let output = suite(&["run-one", "--method", "cdan", "--harmonizer", "gh", "--task", "M-U", "--split", "usps=test", "--iters", "500", "--data-root", "/nonexistent", "--device", "cpu"]);
    assert!(!output.status.success());
    let err = text(&output);
    assert!(err.contains("937 iterations at 937 per epoch") && err.contains("--iters 938") && err.contains("--iters 1437"), "{err}");
}

#[test]
fn source_only_on_images_without_a_protocol_names_the_flags_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let task = digit_folders(dir.path());
    let output = suite(&["run-one", "--method", "source-only", "--task", &task, "--device", "cpu"]);
    assert!(!output.status.success());
    let err = text(&output);
    assert!(err.contains("source-only has no office31 protocol") && err.contains("--protocol-of digits") && err.contains("--image-size 28") && err.contains("--image-size 36/32"), "{err}");
    // The fix it names works (as a plan).
    let output = suite(&["run-one", "--method", "source-only", "--task", &task, "--protocol-of", "digits", "--image-size", "28", "--dry-run", "--device", "cpu"]);
    assert!(output.status.success(), "{}", text(&output));
}

/// The plan text with this machine's specifics replaced: the temporary folder, the thread count.
fn normalised(text: &str, dir: &Path) -> String {
    let t = text.replace(&dir.display().to_string(), "<dir>");
    let re_threads = |s: &str| {
        let mut out = String::new();
        for line in s.lines() {
            let line = match line.find("cpu (") {
                Some(i) if line[i..].contains(" threads)") => format!("{}cpu (N threads)", &line[..i]),
                _ => line.to_owned(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    };
    re_threads(&t)
}

fn expected_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected")
}

#[test]
fn dry_run_plans_match_the_expected_text() {
    let dir = tempfile::tempdir().unwrap();
    let task = digit_folders(dir.path());
    let plans: [(&str, Vec<&str>); 3] = [
        ("plan_digits.txt", vec!["--method", "cdan", "--harmonizer", "gh", "--task", "M-U", "--split", "usps=test", "--iters", "1437"]),
        ("plan_office31.txt", vec!["--method", "mcd", "--harmonizer", "gh++", "--task", "office31:A-W", "--data-root", "/nonexistent"]),
        ("plan_folder.txt", vec!["--method", "cdan", "--harmonizer", "gh++", "--task", &task, "--protocol-of", "digits", "--iters", "33"]),
    ];
    let update = std::env::var_os("UPDATE_EXPECTED").is_some();
    for (name, args) in plans {
        let mut all = vec!["run-one", "--dry-run", "--device", "cpu"];
        all.extend(args);
        let output = suite(&all);
        assert!(output.status.success(), "{name}: {}", text(&output));
        let produced = normalised(&String::from_utf8_lossy(&output.stderr), dir.path());
        let file = expected_dir().join(name);
        if update {
            std::fs::create_dir_all(expected_dir()).unwrap();
            std::fs::write(&file, &produced).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("missing {}; run with UPDATE_EXPECTED=1", file.display()));
        assert!(produced == expected, "{name} differs from {}:\n--- produced\n{produced}\n--- expected\n{expected}", file.display());
        assert!(!dir.path().join("runs").exists(), "a dry run trains nothing");
    }
}
