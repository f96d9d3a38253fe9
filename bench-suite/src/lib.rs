//! Library behind the `bench-suite` binary: the protocol file, grid expansion, executing a run,
//! and the step benchmark.

pub mod lease;
pub mod execute;
pub mod grid;
pub mod input_bench;
pub mod iteration_bench;
pub mod load;
pub mod numerics_args;
pub mod protocol;
pub mod run_one;
pub mod runner;
pub mod schedule;
pub mod slurm;
pub mod speed_bench;
pub mod status;
pub mod step_bench;
pub mod workers;
