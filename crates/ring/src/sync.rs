//! The one place this crate names atomics, `UnsafeCell` and spin hints: std's in normal
//! builds, loom's under `RUSTFLAGS="--cfg loom"` (crossbeam's `primitive` module and tokio's
//! `loom` module follow the same pattern).
//!
//! Under loom every spin loop yields (`spin_hint`), or the model would explore an unbounded
//! number of spins. Orderings that a loom model must be able to catch being weakened are named
//! constants here, switched by `--cfg shmlane_weaken="..."` (see `.ci/loom-mutants`).

#![allow(dead_code)]

#[cfg(not(loom))]
mod imp {
    pub(crate) use core::sync::atomic::{AtomicU64, Ordering, fence};

    /// `UnsafeCell` with loom's closure API; `repr(transparent)`, so an array of cells has the
    /// layout of an array of `T` (what the chunk slices rely on).
    #[repr(transparent)]
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(core::cell::UnsafeCell::new(v))
        }
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// A pause inside a spin loop.
    pub(crate) fn spin_hint() {
        core::hint::spin_loop();
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::{
        cell::UnsafeCell,
        sync::atomic::{AtomicU64, Ordering, fence},
    };

    /// Under loom a spin loop must yield so the model can schedule the other thread.
    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;

/// Keeps the compiler from moving memory accesses across it (no CPU fence): for an order that
/// matters only to whoever looks after this process died, e.g. at a SIGKILL (a process is
/// stopped between two instructions; the stores before that point all land, none after).
/// The same in loom builds: a thread's own program order needs no modelling.
pub(crate) use core::sync::atomic::compiler_fence;

use core::sync::atomic::Ordering as O;

/// SPSC: the producer publishes its tail. Release: pairs with `SPSC_TAIL_LOAD`.
pub(crate) const SPSC_TAIL_STORE: O = if cfg!(shmlane_weaken = "spsc_tail_store") {
    O::Relaxed
} else {
    O::Release
};
/// SPSC: the consumer reads the tail. Acquire: pairs with `SPSC_TAIL_STORE`.
pub(crate) const SPSC_TAIL_LOAD: O = if cfg!(shmlane_weaken = "spsc_tail_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// SPSC: the consumer publishes its head. Release: pairs with the producer's Acquire load of
/// the head, so the consumer's reads of a slot happen-before the producer reuses it.
pub(crate) const SPSC_HEAD_STORE: O = if cfg!(shmlane_weaken = "spsc_head_store") {
    O::Relaxed
} else {
    O::Release
};
/// SPSC: the producer refreshes its cached head. Acquire: pairs with `SPSC_HEAD_STORE`.
pub(crate) const SPSC_HEAD_LOAD: O = if cfg!(shmlane_weaken = "spsc_head_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// MPMC: a slot's sequence is published after its value is written or read. Release.
pub(crate) const MPMC_SEQ_STORE: O = if cfg!(shmlane_weaken = "mpmc_seq_store") {
    O::Relaxed
} else {
    O::Release
};
/// MPMC: a slot's sequence is read before its value. Acquire.
pub(crate) const MPMC_SEQ_LOAD: O = if cfg!(shmlane_weaken = "mpmc_seq_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// MPMC: a producer's CAS on `enq`. Release: pairs with the Acquire load of `enq` in a
/// consumer's `recover`, so a consumer that sees `enq` past `p` also sees the intent that the
/// producer which took `p` published before its CAS (later CASes continue the release sequence).
pub(crate) const MPMC_ENQ_CAS: O = if cfg!(shmlane_weaken = "mpmc_enq_cas") {
    O::Relaxed
} else {
    O::Release
};
/// MPMC: a consumer's CAS on `deq`. Release: pairs with the Acquire load of `deq` in a
/// producer's `recover`, as `MPMC_ENQ_CAS` for the other side.
pub(crate) const MPMC_DEQ_CAS: O = if cfg!(shmlane_weaken = "mpmc_deq_cas") {
    O::Relaxed
} else {
    O::Release
};
/// Stamped SPSC: a slot's stamp is published after its value is written or read. Release.
pub(crate) const STAMPED_SEQ_STORE: O = if cfg!(shmlane_weaken = "stamped_seq_store") {
    O::Relaxed
} else {
    O::Release
};
/// Stamped SPSC: a slot's stamp is read before its value. Acquire.
pub(crate) const STAMPED_SEQ_LOAD: O = if cfg!(shmlane_weaken = "stamped_seq_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// Record ring: a producer commits a record with a CAS of its header. Release: pairs with
/// `RECORD_HDR_LOAD`, so the payload written before is visible to the consumer.
pub(crate) const RECORD_COMMIT: O = if cfg!(shmlane_weaken = "record_commit") {
    O::Relaxed
} else {
    O::Release
};
/// Record ring: a producer's CAS on the tail. Release: pairs with the consumer's Acquire load
/// of the tail in `unblock`, so a consumer that sees the tail past a position also sees the
/// claim intent every producer that took it published before its CAS.
pub(crate) const RECORD_TAIL_CAS: O = if cfg!(shmlane_weaken = "record_tail_cas") {
    O::Relaxed
} else {
    O::Release
};
/// Record ring: a producer clears its claim intent after writing its header. Release: pairs
/// with the consumer's Acquire load of the intent in a forced unblock, so a consumer that
/// finds the intent cleared also finds the header, and its padding stops there.
pub(crate) const RECORD_INTENT_CLEAR: O = if cfg!(shmlane_weaken = "record_intent_clear") {
    O::Relaxed
} else {
    O::Release
};
/// Record ring: a producer whose claim the consumer skipped while it lived (a fence) lets the
/// space go with a CAS of the padding header, after its last payload write. Release: pairs with
/// the consumer's Acquire header load before it zeroes and gives the space back, so the
/// producer's late writes happen-before the zeroing and the next producer's writes.
pub(crate) const RECORD_FENCE_RELEASE: O = if cfg!(shmlane_weaken = "record_fence_release") {
    O::Relaxed
} else {
    O::Release
};
/// Record ring: the consumer gives space back by publishing its release position (`head`)
/// after reading and zeroing what lies before it. Release: pairs with `RECORD_HEAD_LOAD`, so
/// its reads and zeroing happen-before a producer's writes into the space it takes again.
pub(crate) const RECORD_HEAD_STORE: O = if cfg!(shmlane_weaken = "record_head_store") {
    O::Relaxed
} else {
    O::Release
};
/// Record ring: a producer whose cached `head` leaves no room reloads it before claiming the
/// space given back. Acquire: pairs with `RECORD_HEAD_STORE`.
pub(crate) const RECORD_HEAD_LOAD: O = if cfg!(shmlane_weaken = "record_head_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// Record ring: the consumer reads a record's header before its payload. Acquire.
pub(crate) const RECORD_HDR_LOAD: O = if cfg!(shmlane_weaken = "record_hdr_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// Broadcast: the producer marks a slot complete after writing it. Release: pairs with
/// `BCAST_STAMP_LOAD`, so a reader that sees the stamp sees the message.
pub(crate) const BCAST_DONE_STORE: O = if cfg!(shmlane_weaken = "bcast_done_store") {
    O::Relaxed
} else {
    O::Release
};
/// Broadcast: a reader reads a slot's stamp before the message. Acquire.
pub(crate) const BCAST_STAMP_LOAD: O = if cfg!(shmlane_weaken = "bcast_stamp_load") {
    O::Relaxed
} else {
    O::Acquire
};
/// Broadcast cursor table: a reader completes its claim of an entry (owner word "held") after
/// storing its cursor there. Release: pairs with the producer's Acquire owner load in the
/// scan, so a scan that sees the entry held sees this cursor, not the previous holder's.
pub(crate) const BCAST_CURSOR_CLAIM: O = if cfg!(shmlane_weaken = "bcast_cursor_claim") {
    O::Relaxed
} else {
    O::Release
};

/// Broadcast: the producer's Release fence between marking a slot busy and overwriting its
/// message. Pairs with `bcast_reader_fence`: a reader whose copy saw any overwritten word then
/// sees the busy stamp (or a later one) and discards the copy.
pub(crate) fn bcast_writer_fence() {
    if !cfg!(shmlane_weaken = "bcast_writer_fence") {
        fence(O::Release);
    }
}

/// Broadcast: the reader's Acquire fence between copying a message and reading the stamp
/// again. Pairs with `bcast_writer_fence`.
pub(crate) fn bcast_reader_fence() {
    if !cfg!(shmlane_weaken = "bcast_reader_fence") {
        fence(O::Acquire);
    }
}

/// Latest value: a writer publishes its version with `latest.fetch_max` after the done store
/// (and a writer helping a dead one publishes that one's complete value). Release: pairs with
/// `LATEST_LOAD`, so a reader sent to the slot finds it done and its words written: this pair
/// alone orders them for the reader (the done store and the reader's first seq load are
/// Relaxed, see `latest.rs`).
pub(crate) const LATEST_PUBLISH: O = if cfg!(shmlane_weaken = "latest_publish") {
    O::Relaxed
} else {
    O::Release
};
/// Latest value: a reader loads `latest` before the slot it names. Acquire: pairs with
/// `LATEST_PUBLISH`.
pub(crate) const LATEST_LOAD: O = if cfg!(shmlane_weaken = "latest_load") {
    O::Relaxed
} else {
    O::Acquire
};

/// Latest value: the writer's Release fence between claiming a slot (odd seq) and storing the
/// value. Pairs with `latest_reader_fence`: a reader whose copy saw any stored word then sees
/// the odd seq (or a later one) and discards the copy.
pub(crate) fn latest_writer_fence() {
    if !cfg!(shmlane_weaken = "latest_writer_fence") {
        fence(O::Release);
    }
}

/// Latest value: the reader's Acquire fence between copying a value and loading the seq
/// again. Pairs with `latest_writer_fence`.
pub(crate) fn latest_reader_fence() {
    if !cfg!(shmlane_weaken = "latest_reader_fence") {
        fence(O::Acquire);
    }
}
