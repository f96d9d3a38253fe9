//! tools/gpu-smoke.sh, the script of `cargo make gpu-bundle`, on a CPU machine: its setup checks
//! (no bundle, a PyTorch of another version, no CUDA) and its verdicts, with a stand-in bundle
//! whose `bench-suite` writes the run records it is told to, and a stand-in Python whose
//! `import torch` reports what each case needs. The real bundle on a real GPU is checked by hand
//! (docs/gpu.md), since the test machines have no GPU.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A bundle folder: the real script, a stand-in binary, real (tiny) data files with their sums.
/// `mode` says what the stand-in gets wrong: `diverged` (MCD's run), `not-harmonized` (CDAN's pair
/// never formed), `never-reweighted` (no run changed a weight), `nondeterministic` (the reruns'
/// accuracies differ), `libtorch-warns` (a deprecation warning on stderr), `bf16-ignored` (a run
/// asked for bf16 records none); `completed`: nothing.
fn stand_in_bundle(dir: &Path, mode: &str) -> PathBuf {
    let bundle = dir.join("gpu-bundle");
    std::fs::create_dir_all(bundle.join("bin")).unwrap();
    std::fs::copy(root().join("tools/gpu-smoke.sh"), bundle.join("gpu-smoke.sh")).unwrap();
    std::fs::write(bundle.join("MANIFEST"), "commit=abc123\nbuilt=2026-11-29T00:00:00Z\ntorch=2.11.0\n").unwrap();
    std::fs::copy(root().join("bench-suite/protocol.toml"), bundle.join("protocol.toml")).unwrap();
    // run-one: writes a summary line into --out/run.jsonl (diverged for MCD when asked).
    write_executable(
        &bundle.join("bin/bench-suite"),
        &format!(
            r#"#!/usr/bin/env bash
echo "stand-in bench-suite $*"
for a in "$@"; do
  if [ "$a" = run ]; then
    echo "run: profile smoke, 2 cell(s) pending under x; 2 worker(s): gpu 0 (8 thread(s)), gpu 0 (8 thread(s))"
    echo "run: 2 cell(s) published (0 diverged), 0 failed, 0 lost to other workers, in 3 s"
    exit 0
  fi
done
[ "$1" = run-one ] || exit 0
method= out= seed= precision=
while [ $# -gt 0 ]; do case "$1" in --method) method=$2; shift 2;; --out) out=$2; shift 2;; --seed) seed=$2; shift 2;; --precision) precision=$2; shift 2;; *) shift;; esac; done
mkdir -p "$out"
: > "$out/run.jsonl"
if [ "$precision" = bf16 ] && [ "{mode}" != bf16-ignored ]; then echo '{{"event":"config","context":{{"numerics":{{"precision":"bf16"}}}}}}' > "$out/run.jsonl"; fi
pairs='{{"p":{{"formed_steps":20,"reweighted_steps":7,"measured_steps":20}}}}'
[ "{mode}" = never-reweighted ] && pairs='{{"p":{{"formed_steps":20,"reweighted_steps":0,"measured_steps":20}}}}'
accuracy=0.5
[ "{mode}" = nondeterministic ] && [ "$seed" = 3 ] && accuracy=0.$RANDOM$RANDOM
if [ "{mode}" = libtorch-warns ]; then echo "[W1203 13:00:00.000000000 Context.cpp:80] Warning: The argument 'device' of Tensor.pin_memory() is deprecated." >&2; fi
if [ "$method" = mcd ] && [ "{mode}" = diverged ]; then
  echo '{{"event":"summary","status":"diverged","iteration":7,"reason":"loss is NaN","iterations":7,"final_accuracy":null,"seconds_per_100_steps":1.0}}' >> "$out/run.jsonl"
elif [ "$method" = cdan ] && [ "{mode}" = not-harmonized ]; then
  echo '{{"event":"summary","status":"completed","iterations":20,"final_accuracy":0.5,"seconds_per_100_steps":1.0,"harmonization":{{}},"trained":"not-harmonized"}}' >> "$out/run.jsonl"
else
  echo '{{"event":"summary","status":"completed","iterations":20,"final_accuracy":'$accuracy',"seconds_per_100_steps":1.0,"harmonization":'$pairs',"trained":"as-asked"}}' >> "$out/run.jsonl"
fi
"#
        ),
    );
    for (domain, name) in [("mnist", "train-images-idx3-ubyte"), ("mnist", "train-labels-idx1-ubyte")] {
        let folder = bundle.join("data").join(domain);
        std::fs::create_dir_all(&folder).unwrap();
        let raw = dir.join(name);
        std::fs::write(&raw, format!("{name} bytes")).unwrap();
        let gz = Command::new("gzip").arg("-c").arg(&raw).output().unwrap();
        std::fs::write(folder.join(format!("{name}.gz")), gz.stdout).unwrap();
    }
    std::fs::create_dir_all(bundle.join("data/usps")).unwrap();
    std::fs::write(bundle.join("data/usps/usps.t.bz2"), "usps bytes").unwrap();
    for domain in ["mnist", "usps"] {
        let names: &[&str] = if domain == "mnist" { &["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] } else { &["usps.t.bz2"] };
        let source = if domain == "mnist" { dir.to_path_buf() } else { bundle.join("data/usps") };
        let sums = Command::new("sha256sum").args(names).current_dir(source).output().unwrap();
        std::fs::write(bundle.join("data").join(domain).join("SHA256SUMS"), sums.stdout).unwrap();
    }
    bundle
}

/// A Python whose `-c` probe reports the given torch version and CUDA state; anything else goes to
/// the real python3 (the script's run-record check).
fn stand_in_python(dir: &Path, torch_version: &str, cuda: bool) -> PathBuf {
    let lib = dir.join("torch/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("libtorch_cpu.so"), "").unwrap();
    std::fs::write(lib.join("libtorch_cuda.so"), "").unwrap();
    let python = dir.join("python");
    write_executable(
        &python,
        &format!(
            "#!/usr/bin/env bash\nfor a in \"$@\"; do if [ \"$a\" = -c ]; then printf '%s\\n' {torch_version} {lib} {cuda} 13.0 'Stand-in GPU'; exit 0; fi; case \"$a\" in */images) mkdir -p \"$a\"; cat > /dev/null; exit 0;; esac; done\nexec python3 \"$@\"\n",
            lib = lib.display(),
            cuda = u8::from(cuda)
        ),
    );
    python
}

fn smoke(bundle: &Path, python: &Path, envs: &[(&str, &str)]) -> (Output, String) {
    let mut command = Command::new("bash");
    command.arg(bundle.join("gpu-smoke.sh")).env("PYTHON", python).env_remove("GH_SMOKE_DEVICE");
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, text)
}

#[test]
fn an_incomplete_bundle_says_how_to_rebuild_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("tools/gpu-smoke.sh"), dir.path().join("gpu-smoke.sh")).unwrap();
    let python = stand_in_python(dir.path(), "2.11.0", true);
    let (output, text) = smoke(dir.path(), &python, &[]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("cargo make gpu-bundle"), "{text}");
}

#[test]
fn another_torch_version_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "completed");
    let python = stand_in_python(dir.path(), "2.13.0", true);
    let (output, text) = smoke(&bundle, &python, &[]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("PyTorch is 2.13.0, the bundle was linked against 2.11.0"), "{text}");
    assert!(text.contains("pip install torch==2.11.0"), "{text}");
    assert!(!text.contains("stand-in bench-suite run-one"), "nothing runs after a refused setup: {text}");
}

#[test]
fn without_cuda_it_says_so_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "completed");
    let python = stand_in_python(dir.path(), "2.11.0", false);
    let (output, text) = smoke(&bundle, &python, &[]);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("no GPU on this machine"), "{text}");
    assert!(!text.contains("stand-in bench-suite run-one"), "{text}");
}

#[test]
fn every_step_runs_and_each_verdict_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "completed");
    let python = stand_in_python(dir.path(), "2.11.0", false);
    let (output, text) = smoke(&bundle, &python, &[("GH_SMOKE_DEVICE", "cpu"), ("GH_SMOKE_ITERS", "20")]);
    assert_eq!(output.status.code(), Some(0), "{text}");
    for step in ["bench-step LeNet", "cdan GH++ M-U 937+20 it", "mcd GH++ M-U 20 it", "ResNet-50 iteration", "image pipeline: CDAN, GVB, MCD, DWL", "grid on --device cpu --workers 2", "CDAN GH++ twice with --deterministic", "CDAN GH++ and SSRT with --precision bf16"] {
        let line = text.lines().find(|l| l.trim_start().starts_with(step) && l.trim_end().ends_with("ok"));
        assert!(line.is_some(), "no passing summary line for {step}: {text}");
    }
    // CDAN runs past its source-only epoch; each check reports the pair's harmonized steps.
    assert!(text.contains("run-one --method cdan --harmonizer gh++ --task M-U --split usps=test --iters 957"), "{text}");
    assert!(text.contains("completed 20 iterations, target accuracy 50.00 %") && text.contains("p formed in 20, reweighted in 7"), "{text}");
    assert!(text.contains("--device cpu") && text.contains("--batch 2"), "{text}");
    assert!(text.contains("all steps passed"), "{text}");
    assert!(text.contains("cdan, gvb, mcd, dwl, ssrt: completed with their pair formed") && text.contains("2 cells published by 2 workers"), "{text}");
    assert!(text.contains("identical records (1 lines"), "{text}");
    assert!(text.contains("--iters 957 --precision bf16") && text.contains("bf16 cdan: completed") && text.contains("bf16 ssrt: completed"), "{text}");
    for method in ["cdan", "gvb", "mcd", "dwl"] {
        assert!(text.contains(&format!("run-one --method {method} --harmonizer gh++ --task folder:")), "{method}: {text}");
    }
    assert!(text.contains("--method ssrt") && text.contains("pretrained = false"), "{text}");
}

/// Each of the new checks can fail: a weight never changed, reruns that differ, a libtorch
/// warning in a log, a bf16 run whose record does not say bf16.
#[test]
fn each_check_of_the_smoke_test_can_fail() {
    for (mode, step, reason) in [
        ("never-reweighted", "cdan GH++ M-U", "FAIL (GH++ never changed a weight"),
        ("nondeterministic", "CDAN GH++ twice with --deterministic", "FAIL (the two deterministic runs differ"),
        ("libtorch-warns", "cdan GH++ M-U", "FAIL (libtorch warned: [W1203"),
        ("bf16-ignored", "CDAN GH++ and SSRT with --precision bf16", "the record says precision none, not bf16"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bundle = stand_in_bundle(dir.path(), mode);
        let python = stand_in_python(dir.path(), "2.11.0", false);
        let (output, text) = smoke(&bundle, &python, &[("GH_SMOKE_DEVICE", "cpu"), ("GH_SMOKE_ITERS", "20")]);
        assert_eq!(output.status.code(), Some(1), "{mode}: {text}");
        let line = text.lines().find(|l| l.trim_start().starts_with(step) && l.contains("FAIL")).unwrap_or_else(|| panic!("{mode}: {text}"));
        assert!(line.contains(reason), "{mode}: {line}");
    }
}

/// A GPU the driver lists but PyTorch cannot use fails the smoke test (it used to pass as "no CUDA").
#[test]
fn a_gpu_that_pytorch_cannot_use_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "completed");
    let python = stand_in_python(dir.path(), "2.11.0", false);
    let bin = dir.path().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_executable(&bin.join("nvidia-smi"), "#!/usr/bin/env bash\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0000)'\n");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let (output, text) = smoke(&bundle, &python, &[("PATH", &path)]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("has a GPU (GPU 0: NVIDIA H200") && text.contains("cannot use it"), "{text}");
    assert!(!text.contains("stand-in bench-suite run-one"), "{text}");
}

#[test]
fn a_diverged_run_fails_the_smoke_test() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "diverged");
    let python = stand_in_python(dir.path(), "2.11.0", false);
    let (output, text) = smoke(&bundle, &python, &[("GH_SMOKE_DEVICE", "cpu"), ("GH_SMOKE_ITERS", "20")]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let mcd = text.lines().find(|l| l.trim_start().starts_with("mcd GH++ M-U")).unwrap_or_else(|| panic!("{text}"));
    assert!(mcd.contains("FAIL (status diverged: loss is NaN)"), "{mcd}");
    assert!(text.contains("FAILED"), "{text}");
}

#[test]
fn a_run_that_never_harmonized_fails_the_smoke_test() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "not-harmonized");
    let python = stand_in_python(dir.path(), "2.11.0", false);
    let (output, text) = smoke(&bundle, &python, &[("GH_SMOKE_DEVICE", "cpu"), ("GH_SMOKE_ITERS", "20")]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let cdan = text.lines().find(|l| l.trim_start().starts_with("cdan GH++ M-U")).unwrap_or_else(|| panic!("{text}"));
    assert!(cdan.contains("FAIL (trained: not-harmonized"), "{cdan}");
}

#[test]
fn damaged_data_is_caught_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = stand_in_bundle(dir.path(), "completed");
    std::fs::write(bundle.join("data/usps/usps.t.bz2"), "other bytes").unwrap();
    let python = stand_in_python(dir.path(), "2.11.0", false);
    let (output, text) = smoke(&bundle, &python, &[("GH_SMOKE_DEVICE", "cpu")]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("do not match their checksums"), "{text}");
    assert!(!text.contains("stand-in bench-suite run-one"), "{text}");
}
