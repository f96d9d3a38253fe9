//! Several workers on one machine: `bench-suite run --workers N` or `--gpus all|0,1,3` starts one
//! worker process per slot (per GPU: it sees only that GPU, through CUDA_VISIBLE_DEVICES), divides
//! the CPU threads among them, and shows their progress together. The workers divide the cells by
//! leasing them (lease.rs), exactly as Slurm array tasks do.

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// One worker process to start.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Shown beside its progress: "gpu 1", "worker 2", "gpu 0 #2".
    pub label: String,
    /// CUDA_VISIBLE_DEVICES for this worker (None: inherit).
    pub visible_gpu: Option<String>,
    /// `--device` of the worker.
    pub device: String,
    pub threads: usize,
}

/// The slots for `--gpus` (None: no GPUs) and `--workers` (per GPU with `--gpus`), with `cores`
/// CPU threads divided among them (at least one each). `visible` is this process's
/// CUDA_VISIBLE_DEVICES (a Slurm allocation sets it): GPU indices count within it.
pub fn slots(gpus: Option<&[usize]>, visible: Option<&str>, workers: usize, device: &str, cores: usize) -> Result<Vec<Slot>> {
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let mut slots = Vec::new();
    match gpus {
        Some([]) => bail!("--gpus: no GPU to run on"),
        Some(gpus) => {
            let inherited: Option<Vec<&str>> = visible.map(|v| v.split(',').map(str::trim).filter(|x| !x.is_empty()).collect());
            for &g in gpus {
                let id = match &inherited {
                    Some(list) => list.get(g).map(|s| s.to_string()).with_context(|| format!("GPU {g} is not among CUDA_VISIBLE_DEVICES={}", visible.unwrap_or("")))?,
                    None => g.to_string(),
                };
                for w in 0..workers {
                    let label = if workers == 1 { format!("gpu {g}") } else { format!("gpu {g} #{}", w + 1) };
                    slots.push(Slot { label, visible_gpu: Some(id.clone()), device: "cuda".into(), threads: 0 });
                }
            }
        }
        None => {
            for w in 0..workers {
                slots.push(Slot { label: format!("worker {}", w + 1), visible_gpu: None, device: device.to_owned(), threads: 0 });
            }
        }
    }
    let each = (cores / slots.len()).max(1);
    for s in &mut slots {
        s.threads = each;
    }
    Ok(slots)
}

/// `all` (every CUDA device libtorch sees) or a comma-separated list of indices.
pub fn parse_gpus(text: &str, available: usize) -> Result<Vec<usize>> {
    if text.trim() == "all" {
        if available == 0 {
            bail!("--gpus all: libtorch sees no CUDA device on this machine (use --workers N to run several CPU workers)");
        }
        return Ok((0..available).collect());
    }
    let mut gpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let g: usize = part.parse().with_context(|| format!("--gpus '{text}': '{part}' is not a GPU index (expected all or e.g. 0,1,3)"))?;
        if g >= available {
            bail!("--gpus '{text}': GPU {g} does not exist (libtorch sees {available} CUDA device(s): 0..{})", available.saturating_sub(1));
        }
        if !gpus.contains(&g) {
            gpus.push(g);
        }
    }
    if gpus.is_empty() {
        bail!("--gpus '{text}': no GPU index given (expected all or e.g. 0,1,3)");
    }
    Ok(gpus)
}

/// What the workers did, summed over their final reports.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ran: u64,
    pub failed: u64,
    pub diverged: u64,
    pub lost: u64,
    /// Workers that exited with an error (not counting stops by a signal).
    pub crashed: Vec<String>,
    pub stopped: bool,
}

enum Message {
    Line(usize, String),
    Exited,
}

/// Starts one worker per slot: `exe` with `args` plus `--device`, `--threads`, `--events`; shows
/// their progress; forwards a stop (SIGTERM / SIGINT on this process) to them; waits for all.
pub fn supervise(exe: &Path, args: &[String], slots: &[Slot], show_progress: bool, shutdown: Arc<AtomicBool>) -> Result<Outcome> {
    let multi = MultiProgress::new();
    if !show_progress {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:25}] {pos}/{len} it {msg}").expect("valid template").progress_chars("=> ");
    let (tx, rx) = mpsc::channel::<Message>();
    let mut children: Vec<Child> = Vec::new();
    let mut bars: Vec<ProgressBar> = Vec::new();
    for (k, slot) in slots.iter().enumerate() {
        let mut command = Command::new(exe);
        command.args(args).args(["--device", &slot.device, "--threads", &slot.threads.to_string(), "--events", "--quiet"]);
        if let Some(g) = &slot.visible_gpu {
            command.env("CUDA_VISIBLE_DEVICES", g);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = command.spawn().with_context(|| format!("starting worker {} ({})", slot.label, exe.display()))?;
        for stream in [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>)].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(Message::Line(k, line));
                }
            });
        }
        let bar = multi.add(ProgressBar::new(1));
        bar.set_style(style.clone());
        bar.set_prefix(slot.label.clone());
        bar.set_message("starting");
        bars.push(bar);
        children.push(child);
    }
    // One waiter per child reports its exit.
    let mut waiters = Vec::new();
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    for mut child in children {
        let tx = tx.clone();
        waiters.push(std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(Message::Exited);
            status
        }));
    }
    drop(tx);
    let mut outcome = Outcome::default();
    let mut running = slots.len();
    let mut forwarded = false;
    let mut stopped_by_signal = vec![false; slots.len()];
    while running > 0 {
        if shutdown.load(Ordering::Relaxed) && !forwarded {
            forwarded = true;
            multi.suspend(|| eprintln!("run: stopping the workers (each leaves its cell pending)"));
            for &pid in &pids {
                // SAFETY: sending a signal to our own child's pid.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Line(k, line)) => match serde_json::from_str::<Value>(&line) {
                Ok(event) if event.get("event").is_some() => handle_event(&bars[k], &slots[k], &event, &mut outcome, &mut stopped_by_signal[k], &multi),
                _ => multi.suspend(|| eprintln!("[{}] {line}", slots[k].label)),
            },
            Ok(Message::Exited) => running -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for (k, waiter) in waiters.into_iter().enumerate() {
        let status = waiter.join().expect("waiter thread").with_context(|| format!("waiting for worker {}", slots[k].label))?;
        bars[k].finish_and_clear();
        if !status.success() && !stopped_by_signal[k] {
            outcome.crashed.push(format!("{} ({status})", slots[k].label));
        }
    }
    outcome.stopped = stopped_by_signal.iter().any(|&s| s) || shutdown.load(Ordering::Relaxed);
    Ok(outcome)
}

fn handle_event(bar: &ProgressBar, slot: &Slot, event: &Value, outcome: &mut Outcome, stopped: &mut bool, multi: &MultiProgress) {
    let get = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let num = |k: &str| event.get(k).and_then(Value::as_u64).unwrap_or(0);
    match get("event").as_str() {
        "cell-start" => {
            bar.set_length(num("iterations").max(1));
            bar.set_position(0);
            bar.set_message(get("label"));
        }
        "progress" => bar.set_position(num("iteration")),
        "cell-end" => {
            let line = format!("[{}] {}: {}", slot.label, get("outcome"), get("label"));
            match get("outcome").as_str() {
                "published" => outcome.ran += 1,
                "diverged" => {
                    outcome.ran += 1;
                    outcome.diverged += 1;
                }
                "failed" => outcome.failed += 1,
                "lost" => outcome.lost += 1,
                _ => {}
            }
            multi.suspend(|| eprintln!("{line}{}", event.get("error").and_then(Value::as_str).map(|e| format!(" — {e}")).unwrap_or_default()));
            bar.set_message("leasing the next cell");
        }
        "stopped" => {
            *stopped = true;
            bar.set_message("stopped");
        }
        "idle" => bar.set_message("nothing left to lease"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_parse_all_lists_and_refuse_what_does_not_exist() {
        assert_eq!(parse_gpus("all", 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_gpus("0, 2,2", 3).unwrap(), vec![0, 2]);
        assert!(parse_gpus("all", 0).unwrap_err().to_string().contains("sees no CUDA device"));
        assert!(parse_gpus("3", 3).unwrap_err().to_string().contains("GPU 3 does not exist"));
        assert!(parse_gpus("x", 3).unwrap_err().to_string().contains("'x' is not a GPU index"));
        assert!(parse_gpus(",", 3).is_err());
    }

    #[test]
    fn slots_give_each_worker_its_gpu_and_a_share_of_the_cores() {
        let s = slots(Some(&[0, 1]), None, 2, "cpu", 16).unwrap();
        let view: Vec<(&str, Option<&str>, &str, usize)> = s.iter().map(|s| (s.label.as_str(), s.visible_gpu.as_deref(), s.device.as_str(), s.threads)).collect();
        assert_eq!(view, vec![("gpu 0 #1", Some("0"), "cuda", 4), ("gpu 0 #2", Some("0"), "cuda", 4), ("gpu 1 #1", Some("1"), "cuda", 4), ("gpu 1 #2", Some("1"), "cuda", 4)]);
        // Inside an allocation (CUDA_VISIBLE_DEVICES=4,6), GPU 1 is physical device 6.
        let s = slots(Some(&[1]), Some("4,6"), 1, "cpu", 8).unwrap();
        assert_eq!((s[0].label.as_str(), s[0].visible_gpu.as_deref(), s[0].threads), ("gpu 1", Some("6"), 8));
        assert!(slots(Some(&[2]), Some("4,6"), 1, "cpu", 8).is_err());
        // CPU workers: at least one thread each.
        let s = slots(None, None, 3, "cpu", 2).unwrap();
        assert!(s.iter().all(|s| s.threads == 1 && s.visible_gpu.is_none() && s.device == "cpu"));
        assert!(slots(None, None, 0, "cpu", 2).is_err());
    }
}
