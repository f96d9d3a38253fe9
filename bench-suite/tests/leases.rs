//! Cell leases (bench-suite/src/lease.rs): exclusive, taken over only when stale (a dead process
//! of this host at once, another host's after the timeout), lost leases noticed by their owner.

use bench_suite::lease::{LeaseTiming, Leases, Worker};
use std::path::Path;
use std::time::{Duration, SystemTime};

fn worker(owner: &str, host: &str, pid: u32) -> Worker {
    Worker { owner: owner.to_owned(), host: host.to_owned(), pid, pid_start: bench_suite::lease::process_start(pid) }
}

fn timing(heartbeat_ms: u64, timeout_ms: u64) -> LeaseTiming {
    LeaseTiming { heartbeat: Duration::from_millis(heartbeat_ms), timeout: Duration::from_millis(timeout_ms) }
}

fn journal(runs: &Path) -> String {
    std::fs::read_to_string(runs.join("leases.log")).unwrap_or_default()
}

fn age_lease(runs: &Path, hash: &str, by: Duration) {
    let path = runs.join("cells/.leases").join(format!("{hash}.lease"));
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

/// A pid of this host that no longer runs.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_live_lease_is_exclusive_and_released_leases_are_free_again() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let host = bench_suite::lease::hostname();
    let a = Leases::new(dir.path(), worker("a", &host, me), LeaseTiming::default()).unwrap();
    let b = Leases::new(dir.path(), worker("b", &host, me), LeaseTiming::default()).unwrap();
    let held = a.try_lease("cell1", "cell one").unwrap().expect("a free cell is leased");
    assert!(b.try_lease("cell1", "cell one").unwrap().is_none(), "a live lease is not taken");
    assert!(b.try_lease("cell2", "cell two").unwrap().is_some(), "another cell is free");
    assert!(held.is_held());
    held.release("published");
    assert!(b.try_lease("cell1", "cell one").unwrap().is_some(), "a released cell can be leased");
    let log = journal(dir.path());
    assert_eq!(log.lines().filter(|l| l.contains(" cell1 leased")).count(), 2, "{log}");
    assert!(log.lines().any(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" a cell1 published")), "{log}");
}

#[test]
fn a_dead_process_of_this_host_loses_its_lease_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = bench_suite::lease::hostname();
    let dead = dead_pid();
    let gone = Leases::new(dir.path(), Worker { owner: "gone".into(), host: host.clone(), pid: dead, pid_start: None }, LeaseTiming::default()).unwrap();
    let lease = gone.try_lease("cell1", "cell one").unwrap().unwrap();
    std::mem::forget(lease); // as after SIGKILL: the lease file stays
    let next = Leases::new(dir.path(), worker("next", &host, std::process::id()), LeaseTiming::default()).unwrap();
    let view = next.view("cell1").unwrap();
    assert_eq!(view.stale, Some(bench_suite::lease::PROCESS_GONE));
    assert!(next.try_lease("cell1", "cell one").unwrap().is_some(), "taken over without waiting for the timeout");
    let log = journal(dir.path());
    assert!(log.contains(&format!("next cell1 took-over gone (pid {dead} on {host}): its process is gone")), "{log}");
}

#[test]
fn another_hosts_lease_is_taken_over_only_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let far = Leases::new(dir.path(), worker("far", "some-other-node", 1), timing(50, 400)).unwrap();
    let lease = far.try_lease("cell1", "cell one").unwrap().unwrap();
    std::mem::forget(lease);
    let near = Leases::new(dir.path(), worker("near", &bench_suite::lease::hostname(), std::process::id()), timing(50, 400)).unwrap();
    // Its pid may not exist here, but it ran on another host: only its heartbeat counts.
    assert!(near.try_lease("cell1", "cell one").unwrap().is_none(), "fresh: not stale");
    age_lease(dir.path(), "cell1", Duration::from_millis(800));
    assert_eq!(near.view("cell1").unwrap().stale, Some(bench_suite::lease::NO_HEARTBEAT));
    assert!(near.try_lease("cell1", "cell one").unwrap().is_some());
    assert!(journal(dir.path()).contains("took-over far (pid 1 on some-other-node): no heartbeat within the timeout"));
}

#[test]
fn heartbeats_keep_a_lease_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let host = bench_suite::lease::hostname();
    let owner = Leases::new(dir.path(), worker("owner", "remote-host", me), timing(40, 300)).unwrap();
    let held = owner.try_lease("cell1", "cell one").unwrap().unwrap();
    age_lease(dir.path(), "cell1", Duration::from_millis(600));
    std::thread::sleep(Duration::from_millis(200));
    let other = Leases::new(dir.path(), worker("other", &host, me), timing(40, 300)).unwrap();
    assert!(other.view("cell1").unwrap().heartbeat_age < 0.3, "the heartbeat renewed the lease");
    assert!(other.try_lease("cell1", "cell one").unwrap().is_none());
    held.release("published");
}

#[test]
fn an_owner_learns_that_its_lease_was_taken_and_leaves_the_new_lease_alone() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let host = bench_suite::lease::hostname();
    let first = Leases::new(dir.path(), worker("first", &host, me), timing(40, 300)).unwrap();
    let held = first.try_lease("cell1", "cell one").unwrap().unwrap();
    let lost = held.lost_flag();
    // As if it had stalled past the timeout and another worker had taken over.
    std::fs::remove_file(dir.path().join("cells/.leases/cell1.lease")).unwrap();
    let second = Leases::new(dir.path(), worker("second", &host, me), timing(40, 300)).unwrap();
    let new_lease = second.try_lease("cell1", "cell one").unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lost.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(std::time::Instant::now() < deadline, "the heartbeat never noticed the lost lease");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!held.is_held());
    held.release("discarded");
    assert!(new_lease.is_held(), "releasing a lost lease must not remove the new owner's");
    assert!(journal(dir.path()).contains("first cell1 lost"));
}

/// Writes a lock file as builds before the rename did: `cells/.claims/<hash>.claim`, same JSON.
fn older_builds_lock(runs: &Path, hash: &str, host: &str, pid: u32) -> std::path::PathBuf {
    let dir = runs.join("cells").join(bench_suite::lease::OLDER_BUILDS_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{hash}.claim"));
    let record = format!(r#"{{"owner":"old","host":"{host}","pid":{pid},"pid_start":null,"since":1.0,"label":"digits/M-U cdan gh seed 5"}}"#);
    std::fs::write(&path, record).unwrap();
    path
}

#[test]
fn a_live_worker_of_an_older_build_stops_this_one_and_its_stale_files_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let host = bench_suite::lease::hostname();
    let me = std::process::id();
    // A live older worker (this test process stands in for it): refused, naming it and the fix.
    let path = older_builds_lock(dir.path(), "abc", &host, me);
    let err = format!("{:#}", Leases::new(dir.path(), worker("new", &host, me), LeaseTiming::default()).err().expect("refused beside a live older worker"));
    assert!(err.contains("cells/.claims/abc.claim") && err.contains(&format!("pid {me} on {host}")) && err.contains("Let that worker finish"), "{err}");
    assert!(!dir.path().join("cells/.leases").exists(), "nothing created when refused");
    // Its process gone: ignored.
    std::fs::remove_file(&path).unwrap();
    older_builds_lock(dir.path(), "abc", &host, dead_pid());
    assert!(Leases::new(dir.path(), worker("new", &host, me), LeaseTiming::default()).is_ok());
    // Another host's, silent past the timeout: ignored; within it: refused.
    let other = older_builds_lock(dir.path(), "def", "another-host", 1);
    assert!(Leases::new(dir.path(), worker("new", &host, me), timing(100, 60_000)).is_err());
    std::fs::OpenOptions::new().write(true).open(&other).unwrap().set_modified(SystemTime::now() - Duration::from_secs(120)).unwrap();
    assert!(Leases::new(dir.path(), worker("new", &host, me), timing(100, 60_000)).is_ok());
}
