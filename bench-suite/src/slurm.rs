//! `bench-suite launch slurm`: writes an sbatch job-array script from a template file and submits
//! it. Each array task is a worker (`bench-suite run`) that leases pending cells until none is
//! left; a task stopped by Slurm (time limit, scancel) leaves its cell pending, and `--requeue`
//! puts the task back in the queue. Launching again submits work only for what is still pending.

use crate::protocol::Protocol;
use crate::runner::{self, CellState, Runs};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The template shipped with the suite (bench-suite/templates/slurm-array.sbatch).
pub const TEMPLATE: &str = include_str!("../templates/slurm-array.sbatch");

#[derive(clap::Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Profile of the protocol file
    #[arg(long)]
    pub profile: String,
    /// Runs folder, on a filesystem every node sees (NFS is fine)
    #[arg(long, env = "GH_RUNS", default_value = "runs")]
    pub runs: PathBuf,
    /// Data root, as every node sees it
    #[arg(long, env = "GH_DATA_ROOT", default_value = "data")]
    pub data_root: PathBuf,
    #[arg(long)]
    pub partition: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub qos: Option<String>,
    /// Time limit of each array task (Slurm's format, e.g. 12:00:00 or 2-00:00:00)
    #[arg(long, default_value = "24:00:00")]
    pub time: String,
    /// GPUs per array task (0: CPU-only tasks); with several, the task runs one worker per GPU
    #[arg(long, default_value_t = 1)]
    pub gpus_per_task: u32,
    #[arg(long, default_value_t = 8)]
    pub cpus_per_task: u32,
    /// Memory per array task (Slurm's format)
    #[arg(long, default_value = "32G")]
    pub mem: String,
    /// Array tasks, i.e. workers (default: the pending cells, at most 64; never more than them)
    #[arg(long)]
    pub workers: Option<usize>,
    /// Worker processes inside each task (per GPU when it has GPUs), e.g. 4 for the digits networks
    #[arg(long, default_value_t = 1)]
    pub workers_per_task: usize,
    /// At most this many array tasks at once (sbatch --array=...%N)
    #[arg(long)]
    pub array_parallelism: Option<usize>,
    /// Put a task stopped before its cells were done (time limit) back in the queue
    #[arg(long)]
    pub requeue: bool,
    /// Seconds before the time limit at which Slurm asks the worker to stop its cell
    #[arg(long, default_value_t = 300)]
    pub signal_before: u32,
    /// A lease without heartbeat for this long is taken over (seconds; --claim-timeout in older
    /// builds, still accepted)
    #[arg(long, alias = "claim-timeout", default_value_t = 300.0)]
    pub lease_timeout: f64,
    /// Ignore the profile's split stand-ins
    #[arg(long)]
    pub no_stand_ins: bool,
    /// The sbatch template (default: the built-in bench-suite/templates/slurm-array.sbatch)
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// The bench-suite binary as the nodes see it (default: this one's absolute path)
    #[arg(long)]
    pub bench_suite: Option<PathBuf>,
    /// The sbatch command
    #[arg(long, default_value = "sbatch")]
    pub sbatch: String,
    /// Write the script and print it, submit nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Fills `{{name}}` placeholders; every placeholder must have a value.
pub fn render_template(template: &str, values: &BTreeMap<&str, String>, origin: &str) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").with_context(|| format!("{origin}: '{{{{' without a closing '}}}}'"))?;
        let name = after[..close].trim();
        let line = template[..template.len() - rest.len() + open].matches('\n').count() + 1;
        let value = values.get(name).with_context(|| {
            format!("{origin}, line {line}: unknown placeholder {{{{{name}}}}}; known: {}", values.keys().map(|k| format!("{{{{{k}}}}}")).collect::<Vec<_>>().join(", "))
        })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir().context("reading the current folder")?.join(path))
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The sbatch script for the pending cells, and how many array tasks it has (None: nothing pending).
pub fn script(protocol: &Protocol, protocol_file: Option<&Path>, args: &SlurmArgs) -> Result<Option<(String, usize, usize)>> {
    if args.workers == Some(0) || args.workers_per_task == 0 || args.array_parallelism == Some(0) {
        bail!("--workers, --workers-per-task and --array-parallelism must be at least 1");
    }
    if args.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    if !protocol.profiles.contains_key(&args.profile) {
        bail!("unknown profile '{}'; the protocol has: {}", args.profile, protocol.profiles.keys().cloned().collect::<Vec<_>>().join(", "));
    }
    let runs = Runs::new(&args.runs);
    let plan = runner::plan(protocol, &args.profile, &runs, tch::Device::Cpu, args.no_stand_ins)?;
    let pending = plan.count(|s| matches!(s, CellState::Pending | CellState::Failed(_)));
    if pending == 0 {
        return Ok(None);
    }
    let tasks = args.workers.unwrap_or(pending.min(64)).min(pending);
    let array = match args.array_parallelism {
        Some(n) => format!("0-{}%{n}", tasks - 1),
        None => format!("0-{}", tasks - 1),
    };
    let exe = match &args.bench_suite {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().context("locating this executable")?,
    };
    let runs_dir = absolute(&args.runs)?;
    let mut command: Vec<String> = vec![exe.display().to_string()];
    if let Some(p) = protocol_file {
        command.extend(["--protocol".into(), absolute(p)?.display().to_string()]);
    }
    command.extend(["run".into(), "--profile".into(), args.profile.clone(), "--runs".into(), runs_dir.display().to_string()]);
    command.extend(["--data-root".into(), absolute(&args.data_root)?.display().to_string(), "--quiet".into()]);
    command.extend(["--lease-timeout".into(), args.lease_timeout.to_string()]);
    if args.no_stand_ins {
        command.push("--no-stand-ins".into());
    }
    let threads_each = (args.cpus_per_task as usize / (args.workers_per_task * args.gpus_per_task.max(1) as usize)).max(1);
    match args.gpus_per_task {
        0 => command.extend(["--device".into(), "cpu".into()]),
        1 if args.workers_per_task == 1 => command.extend(["--device".into(), "cuda".into()]),
        _ => command.extend(["--gpus".into(), "all".into()]),
    }
    if args.workers_per_task > 1 {
        command.extend(["--workers".into(), args.workers_per_task.to_string()]);
    }
    command.extend(["--threads".into(), threads_each.to_string()]);
    let mut options = Vec::new();
    for (flag, value) in [("partition", &args.partition), ("account", &args.account), ("qos", &args.qos)] {
        if let Some(v) = value {
            options.push(format!("#SBATCH --{flag}={v}"));
        }
    }
    if args.gpus_per_task > 0 {
        options.push(format!("#SBATCH --gpus-per-task={}", args.gpus_per_task));
    }
    options.push(if args.requeue { "#SBATCH --requeue".to_owned() } else { "#SBATCH --no-requeue".to_owned() });
    let log_dir = runs_dir.join("slurm").join("logs");
    let values: BTreeMap<&str, String> = BTreeMap::from([
        ("job_name", format!("gh-{}", args.profile)),
        ("array", array),
        ("time", args.time.clone()),
        ("cpus_per_task", args.cpus_per_task.to_string()),
        ("mem", args.mem.clone()),
        ("log_dir", log_dir.display().to_string()),
        ("signal_before", args.signal_before.to_string()),
        ("sbatch_options", options.join("\n")),
        ("requeue", u8::from(args.requeue).to_string()),
        ("worker_command", command.iter().map(|c| quote(c)).collect::<Vec<_>>().join(" ")),
        ("profile", args.profile.clone()),
        ("runs", runs_dir.display().to_string()),
    ]);
    let (template, origin) = match &args.template {
        Some(path) => (std::fs::read_to_string(path).with_context(|| format!("reading the template {}", path.display()))?, path.display().to_string()),
        None => (TEMPLATE.to_owned(), "bench-suite/templates/slurm-array.sbatch".to_owned()),
    };
    Ok(Some((render_template(&template, &values, &origin)?, tasks, pending)))
}

/// Writes the script under `<runs>/slurm/`, submits it (unless --dry-run), prints what to do next.
pub fn launch(protocol: &Protocol, protocol_file: Option<&Path>, args: &SlurmArgs) -> Result<()> {
    let Some((text, tasks, pending)) = script(protocol, protocol_file, args)? else {
        println!("launch slurm: no cell of profile {} is pending under {}: nothing to submit", args.profile, args.runs.display());
        return Ok(());
    };
    let dir = absolute(&args.runs)?.join("slurm");
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.join("logs").display()))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let path = dir.join(format!("{}-{stamp}.sbatch", args.profile));
    let tmp = path.with_extension("sbatch.partial");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!("launch slurm: {pending} pending cell(s) of profile {}, {tasks} array task(s); script {}", args.profile, path.display());
    if args.dry_run {
        println!("--dry-run: not submitted. The script:\n\n{text}");
        return Ok(());
    }
    let output = Command::new(&args.sbatch)
        .arg("--parsable")
        .arg(&path)
        .output()
        .with_context(|| format!("running '{}' (is Slurm installed here? --sbatch names another command)", args.sbatch))?;
    if !output.status.success() {
        bail!("{} refused {}: {}", args.sbatch, path.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let job = String::from_utf8_lossy(&output.stdout).trim().split(';').next().unwrap_or("").to_owned();
    if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        bail!("{} printed no job id: '{}'", args.sbatch, String::from_utf8_lossy(&output.stdout).trim());
    }
    println!("submitted job {job}; logs: {}/logs/{job}_<task>.out", dir.display());
    println!("follow it: squeue -j {job}   and   bench-suite status --profile {} --runs {}", args.profile, args.runs.display());
    println!("JOB_ID={job}");
    Ok(())
}
