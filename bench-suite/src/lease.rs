//! Cell leases: how any number of workers (processes on one machine, Slurm array tasks on many
//! machines sharing a filesystem, NFS included) divide a grid's cells without training one twice.
//!
//! ```text
//! <runs>/cells/.leases/<hash>.lease   who trains the cell now (JSON: owner, host, pid, since)
//! <runs>/leases.log                   one line per lease event (leased, taken over, lost, ...)
//! ```
//!
//! - A lease is an exclusive create (`O_CREAT | O_EXCL`, atomic on local filesystems and NFSv3+),
//!   never a lock: nothing depends on flock, which NFS does not always honour.
//! - The owner renews a heartbeat (the lease file's modification time) every few seconds while the
//!   cell trains. A lease is stale when its heartbeat is older than the timeout, or at once when
//!   its owner ran on this host and that process is gone (pid and start time checked). A stale
//!   lease is taken over: renamed aside (only one renamer succeeds), then leased afresh.
//! - Each heartbeat also reads the lease back: a worker whose lease was taken over (it stalled past
//!   the timeout) or removed learns it within one interval and stops that cell without publishing.
//! - Publishing stays the grid's atomic rename of a complete folder onto the cell's name, which
//!   fails when the cell already exists: a cell is published exactly once, whatever happens.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a lease is stale: its owner ran on this host and is gone.
pub const PROCESS_GONE: &str = "its process is gone";
/// Why a lease is stale: no heartbeat within the timeout.
pub const NO_HEARTBEAT: &str = "no heartbeat within the timeout";

/// What a lease file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Unique per worker process: host, pid and a random part.
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (/proc/<pid>/stat), to tell a reused pid.
    pub pid_start: Option<u64>,
    /// Unix seconds when the lease was made.
    pub since: f64,
    /// What the cell is (for `bench-suite status`).
    #[serde(default)]
    pub label: String,
}

/// A lease as `status` sees it.
#[derive(Debug, Clone)]
pub struct LeaseView {
    pub hash: String,
    /// None: the file is being written (or was left empty by a crash).
    pub record: Option<LeaseRecord>,
    /// Seconds since the last heartbeat.
    pub heartbeat_age: f64,
    pub stale: Option<&'static str>,
}

/// This worker's identity.
#[derive(Debug, Clone)]
pub struct Worker {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub pid_start: Option<u64>,
}

impl Worker {
    pub fn this_process() -> Worker {
        let host = hostname();
        let pid = std::process::id();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        Worker { owner: format!("{host}:{pid}:{nanos:08x}"), host, pid, pid_start: process_start(pid) }
    }
}

/// Lease settings: how often the owner renews its heartbeat, and when a silent lease is stale.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub heartbeat: Duration,
    pub timeout: Duration,
}

impl Default for LeaseTiming {
    /// A heartbeat every 15 s; stale after 5 minutes without one (20 missed beats: a loaded NFS
    /// server or a paused VM does not make a live worker lose its cell).
    fn default() -> Self {
        LeaseTiming { heartbeat: Duration::from_secs(15), timeout: Duration::from_secs(300) }
    }
}

pub struct Leases {
    dir: PathBuf,
    log: PathBuf,
    worker: Worker,
    timing: LeaseTiming,
}

/// A held lease; its heartbeat thread runs until `release` (or drop).
pub struct Lease {
    path: PathBuf,
    owner: String,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Journal>>,
    hash: String,
}

struct Journal {
    path: PathBuf,
    owner: String,
}

impl Journal {
    /// One line per event, appended (O_APPEND: lines from many workers do not interleave).
    fn write(&self, hash: &str, event: &str) {
        let line = format!("{:.3} {} {} {}\n", now_unix(), self.owner, hash, event);
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&self.path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

impl Leases {
    pub fn new(runs_root: &Path, worker: Worker, timing: LeaseTiming) -> Result<Leases> {
        refuse_beside_older_workers(runs_root, &worker, timing)?;
        let dir = runs_root.join("cells").join(".leases");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Leases { dir, log: runs_root.join("leases.log"), worker, timing })
    }

    /// Only reads (for `status`): does not create the folder.
    pub fn reader(runs_root: &Path, timing: LeaseTiming) -> Leases {
        Leases { dir: runs_root.join("cells").join(".leases"), log: runs_root.join("leases.log"), worker: Worker::this_process(), timing }
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.lease"))
    }

    fn journal(&self) -> Journal {
        Journal { path: self.log.clone(), owner: self.worker.owner.clone() }
    }

    /// Leases the cell, taking over a stale lease; None when a live worker holds it.
    pub fn try_lease(&self, hash: &str, label: &str) -> Result<Option<Lease>> {
        let path = self.path(hash);
        for _attempt in 0..3 {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let record = LeaseRecord {
                        owner: self.worker.owner.clone(),
                        host: self.worker.host.clone(),
                        pid: self.worker.pid,
                        pid_start: self.worker.pid_start,
                        since: now_unix(),
                        label: label.to_owned(),
                    };
                    file.write_all(serde_json::to_string(&record)?.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
                    file.sync_all().ok();
                    let journal = self.journal();
                    journal.write(hash, &format!("leased {label}"));
                    return Ok(Some(self.start_heartbeat(hash, path, journal)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let view = match self.view(hash) {
                        Some(v) => v,
                        None => continue, // released between our create and our read: try again
                    };
                    let Some(why) = view.stale else { return Ok(None) };
                    self.take_over(hash, &path, &view, why)?;
                }
                Err(e) => return Err(e).with_context(|| format!("leasing {}", path.display())),
            }
        }
        Ok(None)
    }

    /// Moves a stale lease aside so that it can be leased again. Only one worker's rename
    /// succeeds; if what it moved turns out to be a fresh lease (renewed or re-made after we looked),
    /// it is put back with a hard link, which fails rather than overwrite a newer lease.
    fn take_over(&self, hash: &str, path: &Path, judged: &LeaseView, why: &str) -> Result<()> {
        let aside = self.dir.join(format!("{hash}.lease.taken-{}", owner_tag(&self.worker.owner)));
        match fs::rename(path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("taking over {}", path.display())),
        }
        let moved = read_record(&aside).map(|r| r.owner);
        let same_lease = moved == judged.record.as_ref().map(|r| r.owner.clone());
        let renewed = why != PROCESS_GONE && heartbeat_age(&aside).is_some_and(|age| age <= self.timing.timeout.as_secs_f64());
        if !same_lease || renewed {
            // Not the lease we judged stale, or its owner came back: put it back where it was.
            let _ = fs::hard_link(&aside, path);
            let _ = fs::remove_file(&aside);
            return Ok(());
        }
        let _ = fs::remove_file(&aside);
        let previous = judged.record.as_ref().map(|r| format!("{} (pid {} on {})", r.owner, r.pid, r.host)).unwrap_or_else(|| "an unreadable lease".into());
        self.journal().write(hash, &format!("took-over {previous}: {why}"));
        Ok(())
    }

    fn start_heartbeat(&self, hash: &str, path: PathBuf, journal: Journal) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let journal = Arc::new(Mutex::new(journal));
        let (t_path, t_lost, t_stop, t_owner, t_journal, t_hash) = (path.clone(), lost.clone(), stop.clone(), self.worker.owner.clone(), journal.clone(), hash.to_owned());
        let interval = self.timing.heartbeat;
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(50).min(interval);
            let mut waited = Duration::ZERO;
            while !t_stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited < interval {
                    continue;
                }
                waited = Duration::ZERO;
                if read_record(&t_path).map(|r| r.owner) != Some(t_owner.clone()) {
                    t_lost.store(true, Ordering::Relaxed);
                    t_journal.lock().unwrap().write(&t_hash, "lost (taken over or removed while training): stopping the cell");
                    return;
                }
                if let Ok(f) = fs::OpenOptions::new().write(true).open(&t_path) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
        });
        Lease { path, owner: self.worker.owner.clone(), lost, stop, thread: Some(thread), log: journal, hash: hash.to_owned() }
    }

    /// The lease on a cell, if any, and whether it is stale.
    pub fn view(&self, hash: &str) -> Option<LeaseView> {
        let path = self.path(hash);
        let age = heartbeat_age(&path)?;
        let record = read_record(&path);
        let stale = staleness(record.as_ref(), age, &self.worker, self.timing);
        Some(LeaseView { hash: hash.to_owned(), record, heartbeat_age: age, stale })
    }

    /// Every lease file (for `status`).
    pub fn all(&self) -> Vec<LeaseView> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut views: Vec<LeaseView> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".lease")).map(str::to_owned))
            .filter_map(|hash| self.view(&hash))
            .collect();
        views.sort_by(|a, b| a.hash.cmp(&b.hash));
        views
    }

    /// Removes the cell's lease if it is (still) stale.
    pub fn remove_stale(&self, hash: &str) {
        if let Some(view) = self.view(hash).filter(|v| v.stale.is_some()) {
            let _ = fs::remove_file(self.path(hash));
            let owner = view.record.map(|r| r.owner).unwrap_or_else(|| "an unreadable lease".into());
            self.journal().write(hash, &format!("removed the stale lease of {owner} on a published cell"));
        }
    }

    /// Whether a live lease on the cell belongs to the worker whose [`owner_tag`] is `tag`.
    pub fn held_by_owner_tag(&self, hash: &str, tag: &str) -> bool {
        self.view(hash).is_some_and(|v| v.stale.is_none() && v.record.is_some_and(|r| owner_tag(&r.owner) == tag))
    }
}

impl Lease {
    /// Set by the heartbeat thread when the lease was taken over or removed.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Reads the lease back: still ours?
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::Relaxed) && read_record(&self.path).map(|r| r.owner) == Some(self.owner.clone())
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Writes an event about this cell to the leases journal.
    pub fn note(&self, event: &str) {
        self.log.lock().unwrap().write(&self.hash, event);
    }

    /// Stops the heartbeat and removes the lease if it is still ours.
    pub fn release(mut self, event: &str) {
        self.give_up();
        self.note(event);
    }

    /// Stops the heartbeat and removes the lease file if it is still ours (once).
    fn give_up(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(t) = self.thread.take() else { return };
        let _ = t.join();
        if self.is_held() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.give_up();
    }
}

/// Why a lease file (its record, if readable, and its heartbeat's age in seconds) no longer
/// holds its cell, as `worker` sees it; None while its owner counts as alive.
fn staleness(record: Option<&LeaseRecord>, age: f64, worker: &Worker, timing: LeaseTiming) -> Option<&'static str> {
    match record {
        Some(r) if r.host == worker.host && !process_alive(r.pid, r.pid_start) => Some(PROCESS_GONE),
        _ if age > timing.timeout.as_secs_f64() => Some(NO_HEARTBEAT),
        _ => None,
    }
}

/// Where builds before the rename kept their leases (then called claims): `<runs>/cells/.claims/<hash>.claim`,
/// with the same JSON as a [`LeaseRecord`].
pub const OLDER_BUILDS_DIR: &str = ".claims";

/// A worker of an older build training in this runs folder holds its cell in [`OLDER_BUILDS_DIR`],
/// which this build does not read: running beside it could train that cell twice, so refuse,
/// saying which worker and what to do. Its stale files (no heartbeat within the timeout, or a
/// process of this host that is gone) are ignored.
fn refuse_beside_older_workers(runs_root: &Path, worker: &Worker, timing: LeaseTiming) -> Result<()> {
    let dir = runs_root.join("cells").join(OLDER_BUILDS_DIR);
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(hash) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".claim")) else { continue };
        let Some(age) = heartbeat_age(&path) else { continue };
        let record = read_record(&path);
        if staleness(record.as_ref(), age, worker, timing).is_some() {
            continue;
        }
        let who = record.map(|r| format!("{} (pid {} on {})", r.label, r.pid, r.host)).unwrap_or_else(|| "an unreadable record".into());
        anyhow::bail!(
            "{}: a worker of an older bench-suite build is training cell {hash}, {who}, last heartbeat {age:.0} s ago. \
             That build keeps its cell locks in cells/{OLDER_BUILDS_DIR}/, which this one does not read (it uses cells/.leases/), \
             so the two could train one cell twice. Let that worker finish or stop it, or run the same build as it; \
             its file stops counting once it has had no heartbeat for --lease-timeout ({} s).",
            path.display(),
            timing.timeout.as_secs_f64()
        );
    }
    Ok(())
}

fn read_record(path: &Path) -> Option<LeaseRecord> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

fn heartbeat_age(path: &Path) -> Option<f64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    // A lease renewed on a host whose clock runs ahead looks younger than 0: count it as fresh.
    Some(SystemTime::now().duration_since(modified).map(|d| d.as_secs_f64()).unwrap_or(0.0))
}

pub fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// An owner as it may appear in a file name.
pub fn owner_tag(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(h) = std::str::from_utf8(&buf[..end]) {
            if !h.is_empty() {
                return h.to_owned();
            }
        }
    }
    "unknown-host".to_owned()
}

/// Start time of a process in clock ticks since boot (Linux); None elsewhere.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process of this host still runs (and is the same process, when its start is known).
pub fn process_alive(pid: u32, start: Option<u64>) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid_t, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    match (start, process_start(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}
