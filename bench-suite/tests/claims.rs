//! Cell claims (bench-suite/src/claim.rs): exclusive, taken over only when stale (a dead process
//! of this host at once, another host's after the timeout), lost claims noticed by their owner.

use bench_suite::claim::{ClaimTiming, Claims, Worker};
use std::path::Path;
use std::time::{Duration, SystemTime};

fn worker(owner: &str, host: &str, pid: u32) -> Worker {
    Worker { owner: owner.to_owned(), host: host.to_owned(), pid, pid_start: bench_suite::claim::process_start(pid) }
}

fn timing(heartbeat_ms: u64, timeout_ms: u64) -> ClaimTiming {
    ClaimTiming { heartbeat: Duration::from_millis(heartbeat_ms), timeout: Duration::from_millis(timeout_ms) }
}

fn journal(runs: &Path) -> String {
    std::fs::read_to_string(runs.join("claims.log")).unwrap_or_default()
}

fn age_claim(runs: &Path, hash: &str, by: Duration) {
    let path = runs.join("cells/.claims").join(format!("{hash}.claim"));
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
fn a_live_claim_is_exclusive_and_released_claims_are_free_again() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let host = bench_suite::claim::hostname();
    let a = Claims::new(dir.path(), worker("a", &host, me), ClaimTiming::default()).unwrap();
    let b = Claims::new(dir.path(), worker("b", &host, me), ClaimTiming::default()).unwrap();
    let held = a.try_claim("cell1", "cell one").unwrap().expect("a free cell is claimed");
    assert!(b.try_claim("cell1", "cell one").unwrap().is_none(), "a live claim is not taken");
    assert!(b.try_claim("cell2", "cell two").unwrap().is_some(), "another cell is free");
    assert!(held.is_held());
    held.release("published");
    assert!(b.try_claim("cell1", "cell one").unwrap().is_some(), "a released cell can be claimed");
    let log = journal(dir.path());
    assert_eq!(log.lines().filter(|l| l.contains(" cell1 claimed")).count(), 2, "{log}");
    assert!(log.lines().any(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" a cell1 published")), "{log}");
}

#[test]
fn a_dead_process_of_this_host_loses_its_claim_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = bench_suite::claim::hostname();
    let dead = dead_pid();
    let gone = Claims::new(dir.path(), Worker { owner: "gone".into(), host: host.clone(), pid: dead, pid_start: None }, ClaimTiming::default()).unwrap();
    let claim = gone.try_claim("cell1", "cell one").unwrap().unwrap();
    std::mem::forget(claim); // as after SIGKILL: the claim file stays
    let next = Claims::new(dir.path(), worker("next", &host, std::process::id()), ClaimTiming::default()).unwrap();
    let view = next.view("cell1").unwrap();
    assert_eq!(view.stale, Some(bench_suite::claim::PROCESS_GONE));
    assert!(next.try_claim("cell1", "cell one").unwrap().is_some(), "taken over without waiting for the timeout");
    let log = journal(dir.path());
    assert!(log.contains(&format!("next cell1 took-over gone (pid {dead} on {host}): its process is gone")), "{log}");
}

#[test]
fn another_hosts_claim_is_taken_over_only_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let far = Claims::new(dir.path(), worker("far", "some-other-node", 1), timing(50, 400)).unwrap();
    let claim = far.try_claim("cell1", "cell one").unwrap().unwrap();
    std::mem::forget(claim);
    let near = Claims::new(dir.path(), worker("near", &bench_suite::claim::hostname(), std::process::id()), timing(50, 400)).unwrap();
    // Its pid may not exist here, but it ran on another host: only its heartbeat counts.
    assert!(near.try_claim("cell1", "cell one").unwrap().is_none(), "fresh: not stale");
    age_claim(dir.path(), "cell1", Duration::from_millis(800));
    assert_eq!(near.view("cell1").unwrap().stale, Some(bench_suite::claim::NO_HEARTBEAT));
    assert!(near.try_claim("cell1", "cell one").unwrap().is_some());
    assert!(journal(dir.path()).contains("took-over far (pid 1 on some-other-node): no heartbeat within the timeout"));
}

#[test]
fn heartbeats_keep_a_claim_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let host = bench_suite::claim::hostname();
    let owner = Claims::new(dir.path(), worker("owner", "remote-host", me), timing(40, 300)).unwrap();
    let held = owner.try_claim("cell1", "cell one").unwrap().unwrap();
    age_claim(dir.path(), "cell1", Duration::from_millis(600));
    std::thread::sleep(Duration::from_millis(200));
    let other = Claims::new(dir.path(), worker("other", &host, me), timing(40, 300)).unwrap();
    assert!(other.view("cell1").unwrap().heartbeat_age < 0.3, "the heartbeat renewed the claim");
    assert!(other.try_claim("cell1", "cell one").unwrap().is_none());
    held.release("published");
}

#[test]
fn an_owner_learns_that_its_claim_was_taken_and_leaves_the_new_claim_alone() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let host = bench_suite::claim::hostname();
    let first = Claims::new(dir.path(), worker("first", &host, me), timing(40, 300)).unwrap();
    let held = first.try_claim("cell1", "cell one").unwrap().unwrap();
    let lost = held.lost_flag();
    // As if it had stalled past the timeout and another worker had taken over.
    std::fs::remove_file(dir.path().join("cells/.claims/cell1.claim")).unwrap();
    let second = Claims::new(dir.path(), worker("second", &host, me), timing(40, 300)).unwrap();
    let new_claim = second.try_claim("cell1", "cell one").unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !lost.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(std::time::Instant::now() < deadline, "the heartbeat never noticed the lost claim");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!held.is_held());
    held.release("discarded");
    assert!(new_claim.is_held(), "releasing a lost claim must not remove the new owner's");
    assert!(journal(dir.path()).contains("first cell1 lost"));
}
