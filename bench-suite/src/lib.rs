//! Library behind the `bench-suite` binary.

pub mod step_bench;
