//! The waiting rows of `shmlane bench` (issue 21), round trips of 8-byte messages between two
//! processes, beside `shmlane-chan-spsc-park`, `eventfd` and `pipe` in the same run:
//!
//! - `shmlane-chan-async`: each side receives through an `AsyncReceiver` on a current-thread
//!   tokio runtime (`recv().await`, woken by an io_uring futex wait; one `block_on` per
//!   message) and sends with `try_send`. SPSC channels of `u64`, created by name by the parent
//!   before the fork, opened by name in the child.
//! - `shmlane-chan-select16`: 16 SPSC channels each way; each message goes on the next channel
//!   in turn, and the receiving side waits with one `Select` over its 16 receivers (no spin:
//!   `spins(0)`, so it parks in `futex_waitv` as the park row parks in `futex`).
//!
//! Both park on every message (the peer answers only after the wait began), so they are
//! compared with the parking rows; no streaming figure.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use shmlane::{
    Consumer, Deadline, PollSource, Producer, Select, UnlinkPolicy, asynch::AsyncReceiver,
};

use crate::xproc::{Echo, Job, Ping, Rx, Shm, Tx, forked};

/// The rows of this module.
pub const TRANSPORTS: &[&str] = &["shmlane-chan-async", "shmlane-chan-select16"];

/// Whether this module measures `transport`.
pub fn handles(transport: &str) -> bool {
    TRANSPORTS.contains(&transport)
}

/// Channels each way of the select row.
const FAN: usize = 16;

/// How long one receive may wait before the measurement gives up.
const LIMIT: Duration = Duration::from_secs(60);

/// Segment names of one measurement ("ab": parent to child), removed with it.
struct Names {
    ab: Vec<String>,
    ba: Vec<String>,
}

impl Names {
    fn new(count: usize) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // ORDERING: Relaxed; a process-local counter for unique names.
        let k = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("shmlane-bench-wait-{}-{k}", std::process::id());
        Self {
            ab: (0..count).map(|i| format!("{base}-ab{i}")).collect(),
            ba: (0..count).map(|i| format!("{base}-ba{i}")).collect(),
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for n in self.ab.iter().chain(&self.ba) {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

fn builder(name: &str) -> shmlane::Builder<u64> {
    shmlane::spsc::<u64>(name).capacity(64)
}

/// Sends each message on the next of its channels.
struct Fan {
    txs: Vec<Producer<u64>>,
    next: usize,
}

impl Tx for Fan {
    fn send(&mut self, msg: &[u8]) {
        let v = u64::from_le_bytes(msg[..8].try_into().expect("8-byte messages"));
        let k = self.next;
        self.next = (k + 1) % self.txs.len();
        self.txs[k]
            .try_send(v)
            .expect("a ring of 64 never fills here");
    }
}

/// The async receiver and its runtime.
struct AsyncRx {
    rt: tokio::runtime::Runtime,
    rx: AsyncReceiver<Consumer<u64>>,
}

impl Rx for AsyncRx {
    fn recv(&mut self, msg: &mut [u8]) {
        let v = self
            .rt
            .block_on(async {
                tokio::time::timeout(LIMIT, self.rx.recv())
                    .await
                    .expect("async recv: nothing in 60 s")
            })
            .expect("async recv");
        msg[..8].copy_from_slice(&v.to_le_bytes());
    }
}

/// One select over the receivers, then the message from the one it names.
struct SelectRx {
    sel: Select,
    rxs: Vec<Consumer<u64>>,
}

impl Rx for SelectRx {
    fn recv(&mut self, msg: &mut [u8]) {
        let mut list: Vec<&mut dyn PollSource> = self
            .rxs
            .iter_mut()
            .map(|r| r as &mut dyn PollSource)
            .collect();
        let i = self
            .sel
            .wait(&mut list, Some(Deadline::after(LIMIT)))
            .expect("select");
        let v = self.rxs[i].try_recv().expect("the select named it");
        msg[..8].copy_from_slice(&v.to_le_bytes());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `job` with this side's endpoints (`parent`: sends on "ab", receives on "ba").
fn with_endpoints<J: Job>(transport: &str, names: &Names, parent: bool, job: J) -> J::Out {
    let (to, from) = if parent {
        (&names.ab, &names.ba)
    } else {
        (&names.ba, &names.ab)
    };
    let open = |n: &String| builder(n).open().expect("open channel");
    let (tos, froms): (Vec<_>, Vec<_>) = (
        to.iter().map(open).collect(),
        from.iter().map(open).collect(),
    );
    let rxs: Vec<_> = froms
        .iter()
        .map(|c| c.consumer().expect("consumer"))
        .collect();
    let tx = Fan {
        txs: tos
            .iter()
            .map(|c| c.producer().expect("producer"))
            .collect(),
        next: 0,
    };
    if transport == "shmlane-chan-async" {
        let rt = runtime();
        let rx = {
            let _in = rt.enter();
            AsyncReceiver::new(rxs.into_iter().next().expect("one channel")).expect("async")
        };
        job.run(tx, AsyncRx { rt, rx })
    } else {
        job.run(
            tx,
            SelectRx {
                sel: Select::new().spins(0),
                rxs,
            },
        )
    }
}

/// Round trips of 8-byte messages (see the module docs); per-round-trip nanoseconds.
pub fn rtt(transport: &str, size: usize, n: u64, same_core: bool) -> Vec<u64> {
    assert!(handles(transport), "no waiting transport {transport}");
    assert_eq!(size, 8, "{transport} carries 8-byte messages");
    let shm = Shm::new();
    let names = Names::new(if transport == "shmlane-chan-async" {
        1
    } else {
        FAN
    });
    let made: Vec<_> = names
        .ab
        .iter()
        .chain(&names.ba)
        .map(|n| {
            builder(n)
                .unlink(UnlinkPolicy::LastDetach)
                .create()
                .expect("create channel")
        })
        .collect();
    let out = forked(
        &shm,
        usize::from(!same_core),
        || with_endpoints(transport, &names, false, Echo { size, n }),
        || with_endpoints(transport, &names, true, Ping { size, n }),
    );
    drop(made);
    out
}
