//! Shared helpers for shmlane's benchmarks (the criterion benches in `benches/` and, with
//! issue 6, the cross-process harness).

pub mod inproc;
pub mod suite;
pub mod wakeup;
pub mod xproc;

use nix::{sched::CpuSet, unistd::Pid};

/// Pins the calling thread to `core` if the machine has it; returns whether it did. Benchmarks
/// pin the two sides of a queue to different cores so runs are comparable.
pub fn pin(core: usize) -> bool {
    let mut set = CpuSet::new();
    if set.set(core).is_err() {
        return false;
    }
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// Number of cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
