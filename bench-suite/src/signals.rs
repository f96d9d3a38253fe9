//! Signals while a grid runs: the first SIGTERM, SIGINT or SIGUSR1 stops the cell in training
//! cleanly (exit status 3, the cell left pending); a second SIGINT or SIGTERM ends the process at once.

use anyhow::{Context, Result};

/// The error of a run stopped by a signal (exit status 3: cells remain pending; a requeued or later
/// run finishes them).
#[derive(Debug)]
pub(crate) struct StoppedBySignal;

impl std::fmt::Display for StoppedBySignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by a signal; the cell in training was left pending (run again to finish the grid)")
    }
}

impl std::error::Error for StoppedBySignal {}

/// While the grid runs, SIGTERM, SIGINT and SIGUSR1 (Slurm's usual pre-timeout signal) set the
/// returned flag (the cell in training stops cleanly); a second SIGINT or SIGTERM ends the process
/// at once. A USR1 never counts as the first of two: `scancel` sends TERM to the worker while the
/// Slurm script forwards USR1 to it, in either order, and that must stay one clean stop. Once the
/// guard is dropped (the grid is over: reproduce-all goes on to bench-speed and the report), SIGINT
/// and SIGTERM end the process at once again.
pub(crate) fn stop_on_signals() -> Result<(std::sync::Arc<std::sync::atomic::AtomicBool>, GridSignals)> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let flag = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicBool::new(false));
    let grid_over = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Handlers run in the order registered: the shutdown checks see the flags as they were
        // before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, 130, grid_over.clone()).context("installing a signal handler")?;
        signal_hook::flag::register_conditional_shutdown(signal, 130, terminated.clone()).context("installing a signal handler")?;
        signal_hook::flag::register(signal, terminated.clone()).context("installing a signal handler")?;
        signal_hook::flag::register(signal, flag.clone()).context("installing a signal handler")?;
    }
    signal_hook::flag::register(SIGUSR1, flag.clone()).context("installing a signal handler")?;
    Ok((flag.clone(), GridSignals { grid_over, stop: flag }))
}

/// Dropped when the grid is over: signals end the process at once from then on, unless the grid
/// was stopped by one: the process is then on its way to exit status 3, and the TERM that `scancel`
/// sends beside the forwarded USR1 must not turn that into 130.
pub(crate) struct GridSignals {
    grid_over: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for GridSignals {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if !self.stop.load(Ordering::Relaxed) {
            self.grid_over.store(true, Ordering::Relaxed);
        }
    }
}
