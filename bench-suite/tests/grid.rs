//! The grid on a tiny profile over synthetic digits: plan, interrupted runs (in-process and a
//! killed process), resumption, sharding, and paired seeds.

use bench_suite::protocol::{Protocol, EMBEDDED};
use bench_suite::runner::{self, CellState, RunOptions, Runs};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TINY: &str = r#"
[profiles.tiny]
description = "two baselines, two harmonizers, one seed, a few iterations"
datasets = ["digits"]
tasks = ["M-U"]
baselines = ["cdan", "dwl"]
harmonizers = ["none", "gh++"]
seeds = [1]
telemetry_every = 2

[profiles.tiny.schedule.cdan]
iterations = 12
iters_per_epoch = 6
eval_every = 6

[profiles.tiny.schedule.dwl]
iterations = 4
iters_per_epoch = 2
eval_every = 2

[profiles.tiny.hyperparameters.cdan]
batch = 16
conditioning = { kind = "random", dim = 32 }
discriminator_hidden = 32

[profiles.tiny.hyperparameters.dwl]
batch = 8
source_steps = 1
balance_steps = 1
"#;

fn protocol() -> Protocol {
    Protocol::parse(&format!("{EMBEDDED}\n{TINY}"), "tiny test protocol").unwrap()
}

fn fake_data(dir: &Path) {
    baselines::data::synthetic::write_fake_digits_root(dir, 120, 60, 5).unwrap();
}

fn options(data: &Path) -> RunOptions {
    RunOptions::new(data, tch::Device::Cpu)
}

/// The entries of `<runs>/cells`, except the leases folder, which must be empty (no lease left).
fn cell_dirs(runs: &Path) -> Vec<String> {
    let leases = std::fs::read_dir(runs.join("cells/.leases")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leases, 0, "leases left behind");
    let mut names: Vec<String> = std::fs::read_dir(runs.join("cells"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".leases")
        .collect();
    names.sort();
    names
}

#[test]
fn plan_lists_cells_states_and_estimates() {
    let p = protocol();
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new(dir.path().join("runs"));
    let plan = runner::plan(&p, "tiny", &runs, tch::Device::Cpu, false).unwrap();
    assert_eq!(plan.cells.len(), 4);
    assert_eq!(plan.count(|s| *s == CellState::Pending), 4);
    assert!(plan.cells.iter().all(|c| c.estimate.is_some()), "cpu cost priors cover cdan and dwl");
    let text = runner::render_plan(&plan, &runs, None);
    assert!(text.contains("pending 4") && text.contains("digits/M-U") && text.contains("gh++"), "{text}");
    // Reduced schedules and changed hyperparameters are recorded as deviations.
    let cdan = plan.cells.iter().find(|c| c.info.baseline == "cdan").unwrap();
    assert!(cdan.info.deviations.iter().any(|d| d.contains("reduced schedule")), "{:?}", cdan.info.deviations);
    assert!(cdan.info.deviations.iter().any(|d| d.contains("batch = 16") && d.contains("64")), "{:?}", cdan.info.deviations);
    // The paper profile: every cell (CDAN, GVB, MCD, DWL, SSRT* and SSRT) is runnable with a CUDA
    // estimate marked as a prior (planned here on a CPU).
    let paper = runner::plan(&p, "paper", &runs, tch::Device::Cpu, false).unwrap();
    assert_eq!(paper.cells.len(), 52 * 6 * 3 * 5);
    for c in &paper.cells {
        assert!(!matches!(c.state, CellState::Unsupported(_)), "{} {} {}: {:?}", c.info.dataset, c.info.task, c.info.baseline, c.state);
        assert!(c.estimate.is_some_and(|e| e > 0.0) && !c.measured, "{} {} {}", c.info.dataset, c.info.task, c.info.baseline);
    }
    assert_eq!(paper.device_kind, "cuda");
    let text = runner::render_plan(&paper, &runs, None);
    assert!(text.contains("(prior)") && text.contains("est. cuda hours") && text.contains("domainnet") && text.contains("not runnable in this build 0"), "{text}");
    // An SSRT cell: ViT-B/16 with the released weights, RandomResizedCrop on both domains.
    let ssrt = paper.cells.iter().find(|c| c.info.dataset == "officehome" && c.info.baseline == "ssrt").unwrap();
    let spec = ssrt.info.spec.as_ref().unwrap();
    let vit = spec.method.vit_backbone().unwrap();
    assert!(vit.pretrained && vit.weights == baselines::networks::vit::VitWeights::In21kFtIn1k);
    let images = spec.images.unwrap();
    assert_eq!((images.source_crop, images.target_crop), (baselines::data::transform::TrainCrop::RandomResizedCrop, baselines::data::transform::TrainCrop::RandomResizedCrop));
    assert_eq!(spec.schedule.iterations, 20000);
    // SSRT*: the same protocol with the ImageNet-1K-only ViT, not recorded as a deviation.
    let star = paper.cells.iter().find(|c| c.info.dataset == "officehome" && c.info.baseline == "ssrt*").unwrap();
    let star_spec = star.info.spec.as_ref().unwrap();
    assert_eq!(star_spec.method.vit_backbone().unwrap().weights, baselines::networks::vit::VitWeights::In1k);
    assert_eq!(star_spec.schedule, spec.schedule);
    assert!(star.info.deviations.is_empty(), "{:?}", star.info.deviations);
    // A DomainNet MCD cell runs ResNet-101 with its image input.
    let mcd = paper.cells.iter().find(|c| c.info.dataset == "domainnet" && c.info.baseline == "mcd").unwrap();
    let spec = mcd.info.spec.as_ref().unwrap();
    assert_eq!(spec.method.image_backbone().unwrap().network.name(), "resnet101");
    assert_eq!(spec.images.unwrap().crop, 224);
}

#[test]
fn interrupted_grid_resumes_and_every_cell_exists_once() {
    let p = protocol();
    let dir = tempfile::tempdir().unwrap();
    fake_data(&dir.path().join("data"));
    let runs = Runs::new(dir.path().join("runs"));
    // First run stops after two cells (as if interrupted between cells).
    let mut first = options(&dir.path().join("data"));
    first.max_cells = Some(2);
    let r1 = runner::run(&p, "tiny", &runs, &first).unwrap();
    assert_eq!(r1.ran, 2);
    let done_first = cell_dirs(runs.root());
    // A cell killed mid-way leaves a temporary folder behind.
    std::fs::create_dir_all(runs.root().join("cells/.tmp-deadbeef-1")).unwrap();
    std::fs::write(runs.root().join("cells/.tmp-deadbeef-1/run.jsonl.partial"), "{}").unwrap();
    let mtimes: Vec<_> = done_first.iter().map(|d| std::fs::metadata(runs.root().join("cells").join(d).join("done")).unwrap().modified().unwrap()).collect();

    let r2 = runner::run(&p, "tiny", &runs, &options(&dir.path().join("data"))).unwrap();
    assert_eq!((r2.ran, r2.skipped_done, r2.restarted_incomplete), (2, 2, 1));
    let all = cell_dirs(runs.root());
    let plan = runner::plan(&p, "tiny", &runs, tch::Device::Cpu, false).unwrap();
    let mut expected: Vec<String> = plan.cells.iter().map(|c| c.info.hash.clone()).collect();
    expected.sort();
    assert_eq!(all, expected, "exactly one folder per cell, no temporaries");
    for (d, t) in done_first.iter().zip(mtimes) {
        assert_eq!(std::fs::metadata(runs.root().join("cells").join(d).join("done")).unwrap().modified().unwrap(), t, "done cell {d} was rerun");
    }
    for h in &expected {
        let record = std::fs::read_to_string(runs.root().join("cells").join(h).join("run.jsonl")).unwrap();
        assert!(record.lines().last().unwrap().contains("\"event\":\"summary\""));
        // The load when the cell was timed, at its start and end.
        let timing: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(runs.root().join("cells").join(h).join("timing.json")).unwrap()).unwrap();
        for key in ["load_start", "load_end"] {
            let snapshot: bench_suite::load::LoadSnapshot = serde_json::from_value(timing[key].clone()).unwrap();
            assert!(snapshot.logical_cpus >= 1 && snapshot.suite_processes >= 1, "{snapshot:?}");
        }
    }
    // Nothing left to do.
    let r3 = runner::run(&p, "tiny", &runs, &options(&dir.path().join("data"))).unwrap();
    assert_eq!((r3.ran, r3.skipped_done), (0, 4));
    assert!(runs.root().join("profiles/tiny.json").is_file());
}

#[test]
fn killed_process_loses_at_most_the_cell_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fake_data(&data);
    let protocol_file = dir.path().join("protocol.toml");
    std::fs::write(&protocol_file, format!("{EMBEDDED}\n{TINY}")).unwrap();
    let runs = dir.path().join("runs");
    let bin = env!("CARGO_BIN_EXE_bench-suite");
    let args = |cmd: &mut Command| {
        cmd.args(["--protocol", protocol_file.to_str().unwrap(), "run", "--profile", "tiny", "--device", "cpu", "--quiet"])
            .arg("--runs")
            .arg(&runs)
            .arg("--data-root")
            .arg(&data);
    };
    let mut cmd = Command::new(bin);
    args(&mut cmd);
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill it as soon as the first cell is published.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = std::fs::read_dir(runs.join("cells")).map(|d| d.flatten().filter(|e| e.path().join("done").is_file()).count()).unwrap_or(0);
        if done >= 1 || Instant::now() > deadline {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut again = Command::new(bin);
    args(&mut again);
    let out = again.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = cell_dirs(&runs);
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // The folder now holds tf32 cells: a bf16 run is refused before it trains anything.
    let held: record_schema::FolderNumerics = serde_json::from_str(&std::fs::read_to_string(runs.join("numerics.json")).unwrap()).unwrap();
    assert_eq!((held.precision.as_str(), held.deterministic), ("tf32", false));
    let mut bf16 = Command::new(bin);
    args(&mut bf16);
    let out = bf16.args(["--precision", "bf16"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--precision tf32") && err.contains("another --runs folder"), "{err}");
    assert_eq!(cell_dirs(&runs), names);
}

#[test]
fn a_runs_folder_keeps_the_numerics_of_its_first_run() {
    use baselines::numerics::{Numerics, Precision};
    let dir = tempfile::tempdir().unwrap();
    let bf16 = Numerics { precision: Precision::Bf16, deterministic: false };
    let fp32_det = Numerics { precision: Precision::Fp32, deterministic: true };
    // A new folder takes the first run's settings and keeps them.
    let fresh = Runs::new(dir.path().join("fresh"));
    fresh.adopt_numerics(bf16).unwrap();
    fresh.adopt_numerics(bf16).unwrap();
    let err = fresh.adopt_numerics(Numerics::default()).unwrap_err().to_string();
    assert!(err.contains("--precision bf16") && err.contains("asks for --precision tf32"), "{err}");
    assert!(fresh.adopt_numerics(fp32_det).unwrap_err().to_string().contains("asks for --precision fp32 --deterministic"));
    // A folder with cells from before numerics.json ran the defaults.
    let legacy = Runs::new(dir.path().join("legacy"));
    std::fs::create_dir_all(legacy.cell_dir("0123456789abcdef")).unwrap();
    assert!(legacy.adopt_numerics(bf16).is_err());
    assert!(!dir.path().join("legacy/numerics.json").exists(), "a refused run writes nothing");
    legacy.adopt_numerics(Numerics::default()).unwrap();
    assert!(dir.path().join("legacy/numerics.json").is_file());
    // A damaged record names its file.
    std::fs::write(dir.path().join("fresh/numerics.json"), "{").unwrap();
    assert!(fresh.adopt_numerics(bf16).unwrap_err().to_string().contains("fresh/numerics.json"));
}

#[test]
fn bench_speed_times_every_arm_in_interleaved_rounds() {
    use bench_suite::speed_bench::{self, SpeedBenchConfig, TaskSelection};
    let p = protocol();
    let dir = tempfile::tempdir().unwrap();
    fake_data(&dir.path().join("data"));
    let config = SpeedBenchConfig {
        profile: "tiny".into(),
        device: tch::Device::Cpu,
        data_root: dir.path().join("data"),
        drop_stand_ins: false,
        tasks: TaskSelection::All,
        rounds: 3,
        iterations_per_round: 2,
        warmup: 1,
    };
    let mut groups = Vec::new();
    let record = speed_bench::run(&p, &config, &mut |g| groups.push(g.to_owned())).unwrap();
    assert_eq!(groups.len(), 2, "one group per task x baseline: {groups:?}");
    assert_eq!(record.arms.len(), 4, "cdan and dwl x none and gh++");
    for arm in &record.arms {
        assert_eq!(arm.seconds_per_100.len(), 3, "{arm:?}");
        assert!(arm.seconds_per_100.iter().all(|s| s.is_finite() && *s > 0.0), "{arm:?}");
        if arm.harmonizer == "none" {
            assert!(arm.ratio_to_none.is_empty());
        } else {
            // Paired within each round with the same task and baseline's `none` arm.
            let none = record.arms.iter().find(|a| a.baseline == arm.baseline && a.harmonizer == "none").unwrap();
            let expected: Vec<f64> = arm.seconds_per_100.iter().zip(&none.seconds_per_100).map(|(x, y)| x / y).collect();
            assert_eq!(arm.ratio_to_none, expected);
        }
    }
    assert_eq!(record.arms.iter().find(|a| a.baseline == "cdan").unwrap().batch, 16, "the profile's hyperparameters");
    let runs = dir.path().join("runs");
    let path = speed_bench::write_record(&runs, &record).unwrap();
    assert_eq!(path, speed_bench::record_path(&runs, "tiny"));
    let back: speed_bench::SpeedRecord = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // JSON keeps every field; floats to within their last bits (serde_json's default parsing).
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(1.0));
    assert_eq!((back.profile.as_str(), back.rounds, back.arms.len()), ("tiny", 3, record.arms.len()));
    for (x, y) in back.arms.iter().zip(&record.arms) {
        assert_eq!((&x.task, &x.baseline, &x.harmonizer, x.batch), (&y.task, &y.baseline, &y.harmonizer, y.batch));
        assert!(close(&x.seconds_per_100, &y.seconds_per_100) && close(&x.ratio_to_none, &y.ratio_to_none), "{x:?} vs {y:?}");
    }
    assert_eq!(std::fs::read_dir(runs.join("bench-speed")).unwrap().count(), 1, "no temporary file left");
    assert!(speed_bench::render(&record).contains("cdan+gh++"));
    assert_eq!(record.numerics, None, "tf32 on the CPU changes nothing, so it is not recorded");
    // The binary with --precision bf16 times under autocast and records what was in force.
    let protocol_file = dir.path().join("protocol.toml");
    std::fs::write(&protocol_file, format!("{EMBEDDED}\n{TINY}")).unwrap();
    let bf16_runs = dir.path().join("bf16-runs");
    let out = Command::new(env!("CARGO_BIN_EXE_bench-suite"))
        .args(["--protocol", protocol_file.to_str().unwrap(), "bench-speed", "--profile", "tiny", "--device", "cpu", "--quiet", "--precision", "bf16"])
        .args(["--rounds", "2", "--iterations", "1", "--warmup", "0", "--tasks", "M-U"])
        .arg("--runs")
        .arg(&bf16_runs)
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(", bf16 precision)"), "{stdout}");
    let back: speed_bench::SpeedRecord = serde_json::from_str(&std::fs::read_to_string(speed_bench::record_path(&bf16_runs, "tiny")).unwrap()).unwrap();
    let numerics = back.numerics.expect("bf16 is recorded");
    assert_eq!((numerics["precision"].as_str(), numerics["deterministic"].as_bool()), (Some("bf16"), Some(false)), "{numerics}");
    // Bad requests name the fix.
    let err = speed_bench::run(&p, &SpeedBenchConfig { tasks: TaskSelection::Only(vec!["U-M".into()]), ..config.clone() }, &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("'U-M' is not in profile tiny"), "{err:#}");
    let err = speed_bench::run(&p, &SpeedBenchConfig { rounds: 1, ..config }, &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("--rounds"), "{err:#}");
}

#[test]
fn shards_partition_the_grid() {
    let p = protocol();
    let dir = tempfile::tempdir().unwrap();
    fake_data(&dir.path().join("data"));
    let runs = Runs::new(dir.path().join("runs"));
    let mut seen = 0;
    for i in 1..=3 {
        let mut o = options(&dir.path().join("data"));
        o.shard = Some((i, 3));
        seen += runner::run(&p, "tiny", &runs, &o).unwrap().ran;
    }
    assert_eq!(seen, 4);
    assert!(runner::parse_shard("0/3").is_err() && runner::parse_shard("4/3").is_err() && runner::parse_shard("2/3").is_ok());
}

#[test]
fn none_and_gh_plus_plus_of_a_seed_share_initialisation_and_data_order() {
    // Seeds derive from (task, seed) only: the first training batch and the initial evaluation
    // agree between harmonizers of one seed, and differ between seeds.
    let task = baselines::data::Task::parse("M-U").unwrap();
    let a = baselines::train::derive_seed(&task, 1, "init");
    assert_eq!(a, baselines::train::derive_seed(&task, 1, "init"));
    assert_ne!(a, baselines::train::derive_seed(&task, 2, "init"));
    let p = protocol();
    let cells = bench_suite::grid::cells(&p, "tiny").unwrap();
    let cdan: Vec<_> = cells.iter().filter(|c| c.baseline == "cdan").collect();
    let (none, ghpp) = (cdan[0].spec.as_ref().unwrap(), cdan[1].spec.as_ref().unwrap());
    assert_ne!(none.harmonizer, ghpp.harmonizer);
    assert_eq!((&none.task, none.seed), (&ghpp.task, ghpp.seed));
}

#[test]
fn digits_layout_matches_what_data_fetch_installs() {
    // The files the readers open are payload paths of data-fetch's manifest.
    let manifest = data_fetch::manifest::Manifest::embedded().unwrap();
    for domain in [baselines::data::Domain::Mnist, baselines::data::Domain::Usps, baselines::data::Domain::Svhn] {
        for split in [baselines::data::Split::Train, baselines::data::Split::Test] {
            let (images, labels) = domain.files(split);
            for path in [Some(images), labels].into_iter().flatten() {
                let (dataset, rel) = path.split_once('/').unwrap();
                let d = manifest.dataset(dataset).unwrap_or_else(|| panic!("{dataset} not in the manifest"));
                assert!(d.files.iter().any(|f| f.payload_path() == Some(rel)), "{path} is not installed by data-fetch");
            }
        }
    }
}

/// Writes synthetic digits for manual runs: `FAKE_DIGITS_ROOT=dir cargo make test -p bench-suite --test grid -- --ignored write_fake_digits`.
#[test]
#[ignore]
fn write_fake_digits() {
    let dir = std::env::var("FAKE_DIGITS_ROOT").expect("set FAKE_DIGITS_ROOT");
    baselines::data::synthetic::write_fake_digits_root(Path::new(&dir), 400, 200, 7).unwrap();
}
