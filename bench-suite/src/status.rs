//! `bench-suite status`: what every cell of a profile is doing in a runs folder, read from the cell
//! folders, the failure files and the leases (nothing is changed).

use crate::lease::{LeaseTiming, LeaseView, Leases};
use crate::protocol::Protocol;
use crate::runner::{self, CellState, Runs};
use anyhow::Result;
use std::collections::HashMap;
use std::fmt::Write;
use tch::Device;

/// A cell's state as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    Done,
    /// A live worker holds its lease.
    Running,
    /// Leaseed by a worker that stopped beating: the next worker to reach it takes it over.
    StaleLease(&'static str),
    Failed(String),
    Pending,
    Unsupported,
}

/// Every cell of the profile with its activity and lease (if any).
pub fn cells(protocol: &Protocol, profile: &str, runs: &Runs, device: Device, drop_stand_ins: bool, timing: LeaseTiming) -> Result<Vec<(runner::PlannedCell, Activity, Option<LeaseView>)>> {
    let plan = runner::plan(protocol, profile, runs, device, drop_stand_ins)?;
    let leases: HashMap<String, LeaseView> = Leases::reader(runs.root(), timing).all().into_iter().map(|v| (v.hash.clone(), v)).collect();
    Ok(plan
        .cells
        .into_iter()
        .map(|cell| {
            let lease = leases.get(&cell.info.hash).cloned();
            let activity = match (&cell.state, &lease) {
                (CellState::Done, _) => Activity::Done,
                (CellState::Unsupported(_), _) => Activity::Unsupported,
                (_, Some(c)) => c.stale.map_or(Activity::Running, Activity::StaleLease),
                (CellState::Failed(e), None) => Activity::Failed(e.clone()),
                (CellState::Pending, None) => Activity::Pending,
            };
            (cell, activity, lease)
        })
        .collect())
}

pub fn render(protocol: &Protocol, profile: &str, runs: &Runs, device: Device, drop_stand_ins: bool, timing: LeaseTiming, list_pending: bool) -> Result<String> {
    let cells = cells(protocol, profile, runs, device, drop_stand_ins, timing)?;
    let count = |f: &dyn Fn(&Activity) -> bool| cells.iter().filter(|(_, a, _)| f(a)).count();
    let mut out = String::new();
    let now = crate::lease::now_unix();
    writeln!(out, "profile {profile} — {} cells under {}", cells.len(), runs.root().display())?;
    writeln!(
        out,
        "  done {}, running {}, stale leases {}, failed {}, pending {}, not runnable in this build {}",
        count(&|a| *a == Activity::Done),
        count(&|a| *a == Activity::Running),
        count(&|a| matches!(a, Activity::StaleLease(_))),
        count(&|a| matches!(a, Activity::Failed(_))),
        count(&|a| *a == Activity::Pending),
        count(&|a| *a == Activity::Unsupported),
    )?;
    let lease_line = |c: &LeaseView| match &c.record {
        Some(r) => format!("{} pid {}, since {} ago, last heartbeat {} ago", r.host, r.pid, runner::human_duration(now - r.since), runner::human_duration(c.heartbeat_age)),
        None => format!("unreadable lease, last written {} ago", runner::human_duration(c.heartbeat_age)),
    };
    let section = |out: &mut String, title: &str, rows: Vec<String>| -> std::fmt::Result {
        if !rows.is_empty() {
            writeln!(out, "\n{title}")?;
            for r in rows {
                writeln!(out, "  {r}")?;
            }
        }
        Ok(())
    };
    let running = cells.iter().filter(|(_, a, _)| *a == Activity::Running).map(|(c, _, v)| format!("{}  {}  [{}]", c.info.label(), v.as_ref().map(lease_line).unwrap_or_default(), c.info.hash)).collect();
    section(&mut out, "running:", running)?;
    let stale = cells
        .iter()
        .filter_map(|(c, a, v)| match a {
            Activity::StaleLease(why) => Some(format!("{}  {} ({why}; the next worker takes it over)  [{}]", c.info.label(), v.as_ref().map(lease_line).unwrap_or_default(), c.info.hash)),
            _ => None,
        })
        .collect();
    section(&mut out, "stale leases:", stale)?;
    let failed = cells
        .iter()
        .filter_map(|(c, a, _)| match a {
            Activity::Failed(e) => Some(format!("{}: {e}  [{}]", c.info.label(), c.info.hash)),
            _ => None,
        })
        .collect();
    section(&mut out, "failed (retried by the next run):", failed)?;
    let pending: Vec<String> = cells.iter().filter(|(_, a, _)| *a == Activity::Pending).map(|(c, _, _)| format!("{}  [{}]", c.info.label(), c.info.hash)).collect();
    let shown = if list_pending { pending.len() } else { pending.len().min(10) };
    let more = pending.len() - shown;
    let mut rows: Vec<String> = pending.into_iter().take(shown).collect();
    if more > 0 {
        rows.push(format!("... and {more} more (--all lists them)"));
    }
    section(&mut out, "pending:", rows)?;
    Ok(out)
}
