//! A count of the values read back from the device to the host, each of which makes the host
//! wait for the device's queue on CUDA (a sync). The harmonizer and the training loop note every
//! read they make, so benchmarks and tests can say how many a step costs (`bench-step` prints
//! them per step). Per thread: a step's reads are made by the thread running it, and tests
//! running side by side do not see each other's.

use std::cell::Cell;

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// Notes one read back from the device.
pub fn note() {
    READS.with(|r| r.set(r.get() + 1));
}

/// Reads this thread has noted so far.
pub fn count() -> u64 {
    READS.with(Cell::get)
}
