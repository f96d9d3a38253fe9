//! The machine's load when a timing is taken: load averages and how many suite processes ran.
//! Recorded beside every grid cell's timing and every speed benchmark, so the report can tell a
//! timing of the method from a timing of a neighbour.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSnapshot {
    /// The kernel's 1- and 5-minute load averages (runnable threads).
    pub load_1min: f64,
    pub load_5min: f64,
    pub logical_cpus: usize,
    /// `bench-suite` processes on this machine, this one included.
    pub suite_processes: usize,
    /// When it was taken (absent, read as 0, in records from before it was recorded).
    #[serde(default)]
    pub unix_time: u64,
}

impl LoadSnapshot {
    pub fn now() -> LoadSnapshot {
        let mut avg = [f64::NAN; 3];
        // SAFETY: getloadavg writes at most `nelem` doubles into the buffer it is given.
        let n = unsafe { libc::getloadavg(avg.as_mut_ptr(), 3) };
        if n < 2 {
            avg = [f64::NAN; 3];
        }
        LoadSnapshot {
            load_1min: avg[0],
            load_5min: avg[1],
            logical_cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            suite_processes: suite_processes(),
            unix_time: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        }
    }

    /// More runnable threads than CPUs, or another suite process running: a timing taken now
    /// measures the neighbours too. The one rule for taking timings and for reading them.
    pub fn is_loaded(&self) -> bool {
        self.load_1min > self.logical_cpus as f64 + 0.5 || self.suite_processes > 1
    }

    /// Both load averages, for a terminal.
    pub fn describe(&self) -> String {
        format!("load {:.2} (1 min) / {:.2} (5 min) on {} CPUs, {} bench-suite process(es)", self.load_1min, self.load_5min, self.logical_cpus, self.suite_processes)
    }

    /// The 1-minute load only, for the report's one-line provenance.
    pub fn describe_short(&self) -> String {
        format!("load {:.2} on {} CPUs, {} suite process(es)", self.load_1min, self.logical_cpus, self.suite_processes)
    }
}

/// Processes named `bench-suite` (Linux /proc; 1, this one, where /proc cannot be read).
fn suite_processes() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 1 };
    let count = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "bench-suite"))
        .count();
    count.max(1)
}
