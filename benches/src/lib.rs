//! Shared helpers for shmlane's benchmarks: the criterion benches in `benches/` and the
//! cross-process harness behind `shmlane bench`.

pub mod chan;
pub mod inproc;
pub mod latest;
pub mod peers;
pub mod suite;
pub mod wait;
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

/// Number of online cores of the machine (not this thread's affinity mask, which the
/// harness narrows to one core by pinning).
pub fn cores() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}
