//! The latest-value rows of `shmlane bench` (`shmlane::raw_latest`, `shmlane::latest`):
//!
//! - `shmlane-chan-latest` (cross-process, round trips only): two byte latest-value channels
//!   of `size`-byte values, created by name by the parent before the fork and opened by name in
//!   the child, as the channel rows of [`crate::chan`]. The parent writes a value (version v)
//!   on "ab"; the child spins on `read_if_changed` until it returns a new version, and writes
//!   the value back on "ba"; the parent spins on `read_if_changed` of "ba" until the reply.
//!   Timed as every round trip of [`crate::xproc`] (same jobs, pinning and sizes), so it stands
//!   beside `shmlane-chan-spsc-spin` in the same run. No streaming figure: a latest value is
//!   replaced, not queued (a reader skips what it did not see), so a rate would count nothing.
//! - [`ops`]: what one call costs, single-threaded, 8-byte values: a latest channel's `write`,
//!   `read` of an unchanged value and `read_if_changed` finding none, beside an SPSC channel's
//!   `try_send`, `try_recv` and `try_recv` on an empty ring, interleaved in the same rounds.

// Counts and nanosecond figures are far below 2^52.
#![allow(clippy::cast_precision_loss)]

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane::{Deadline, UnlinkPolicy, WaitStrategy};

use crate::{
    suite::Level,
    xproc::{Echo, Job, Ping, Rx, Shm, Tx, forked},
};

/// The cross-process row.
pub const TRANSPORT: &str = "shmlane-chan-latest";

/// How long a spin waits for the peer's value before the measurement gives up.
const LIMIT: Duration = Duration::from_secs(60);

/// Whether this module measures `transport`.
pub fn handles(transport: &str) -> bool {
    transport == TRANSPORT
}

/// Segment names of one measurement, removed with it (a failed row leaves nothing behind).
struct Names {
    ab: String,
    ba: String,
}

impl Names {
    fn new(what: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // ORDERING: Relaxed; a process-local counter for unique names.
        let k = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("shmlane-bench-{what}-{}-{k}", std::process::id());
        Self {
            ab: format!("{base}-ab"),
            ba: format!("{base}-ba"),
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for n in [&self.ab, &self.ba] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

fn builder(name: &str, size: usize) -> shmlane::RawLatestBuilder {
    shmlane::raw_latest(name, size).wait(WaitStrategy::BusySpin)
}

struct LatestTx(shmlane::RawLatestWriter);
struct LatestRx(shmlane::RawLatestReader);

impl Tx for LatestTx {
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        self.0.write(msg).expect("latest write");
    }
}

impl Rx for LatestRx {
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let mut tries = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            match self.0.read_if_changed(msg) {
                Ok(Some((n, _))) => {
                    assert_eq!(n, msg.len(), "latest: value length");
                    return;
                }
                Ok(None) | Err(shmlane::LatestError::Busy) => {}
                Err(e) => panic!("latest read: {e}"),
            }
            core::hint::spin_loop();
            tries = tries.wrapping_add(1);
            if tries % (1 << 16) == 0 {
                let t0 = *since.get_or_insert_with(Instant::now);
                assert!(
                    t0.elapsed() < LIMIT,
                    "latest recv: no new value in {LIMIT:?}"
                );
            }
        }
    }
}

/// Runs `job` with this side's writer and reader (`parent`: writes "ab", reads "ba").
fn with_endpoints<J: Job>(
    names: &Names,
    made: Option<&(shmlane::RawLatestChannel, shmlane::RawLatestChannel)>,
    size: usize,
    job: J,
) -> J::Out {
    let opened;
    let (to, from) = if let Some((ab, ba)) = made {
        (ab, ba)
    } else {
        let open = |n: &str| builder(n, size).open().expect("open latest channel");
        opened = (open(&names.ba), open(&names.ab));
        (&opened.0, &opened.1)
    };
    // The reader first: it starts at version 0, so the peer's first value is a change.
    let rx = LatestRx(from.reader().expect("latest reader"));
    let tx = LatestTx(to.writer().expect("latest writer"));
    job.run(tx, rx)
}

/// Round trips of `size`-byte values (see the module docs); per-round-trip nanoseconds.
pub fn rtt(transport: &str, size: usize, n: u64, same_core: bool) -> Vec<u64> {
    assert!(handles(transport), "no latest transport {transport}");
    let shm = Shm::new();
    let names = Names::new("latest");
    let fresh = |name: &str| {
        builder(name, size)
            .populate(true)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create latest channel")
    };
    let made = (fresh(&names.ab), fresh(&names.ba));
    let ready = shm.word(0);
    forked(
        &shm,
        usize::from(!same_core),
        || {
            with_endpoints(&names, None, size, Attached(ready, Echo { size, n }));
        },
        || {
            // Until the child's reader is attached: a value written before it would be the
            // one it starts from, not a change.
            let deadline = Deadline::after(LIMIT);
            // ORDERING: Acquire; pairs with the child's Release store in `Attached`.
            while ready.load(Ordering::Acquire) == 0 {
                assert!(!deadline.is_past(), "the child never attached");
                core::hint::spin_loop();
            }
            with_endpoints(&names, Some(&made), size, Ping { size, n })
        },
    )
}

/// The child's job, after it says that its endpoints are open.
struct Attached<'a, J>(&'a AtomicU64, J);

impl<J: Job> Job for Attached<'_, J> {
    type Out = J::Out;
    fn run<T: Tx, R: Rx>(self, tx: T, rx: R) -> J::Out {
        // ORDERING: Release; pairs with the parent's Acquire load before its first write.
        self.0.store(1, Ordering::Release);
        self.1.run(tx, rx)
    }
}

/// One call measured by [`ops`].
#[derive(Clone, Debug)]
pub struct Op {
    /// What is called, as the table names it.
    pub name: &'static str,
    /// Nanoseconds per call in each round.
    pub per_round: Vec<f64>,
}

/// The calls of [`ops`], in table order.
pub const OPS: &[&str] = &[
    "spsc try_send",
    "spsc try_recv",
    "spsc try_recv (empty)",
    "latest write",
    "latest read (unchanged)",
    "latest read_if_changed (unchanged)",
];

/// Within-round ratios shown under the table: (name, numerator, denominator).
pub const OP_RATIOS: &[(&str, &str, &str)] = &[
    ("write / try_send", "latest write", "spsc try_send"),
    (
        "read / try_recv",
        "latest read (unchanged)",
        "spsc try_recv",
    ),
    (
        "read_if_changed / try_recv (empty)",
        "latest read_if_changed (unchanged)",
        "spsc try_recv (empty)",
    ),
];

/// Calls per measurement: batches of the SPSC ring's capacity (so `try_send` always finds
/// room and `try_recv` a message).
const BATCH: u64 = 1024;

/// Single-thread call costs, ns per call, 8-byte values: each of [`OPS`] in every round, the
/// order reversed every other round (rounds as the suite's at `level`).
pub fn ops(level: Level) -> Vec<Op> {
    let (rounds, batches) = match level {
        Level::Quick => (1, 50),
        Level::Default => (6, 200),
        Level::Full => (15, 400),
    };
    crate::pin(0);
    let names = Names::new("ops");
    let spsc = shmlane::spsc::<u64>(&names.ab)
        .capacity(BATCH)
        .wait(WaitStrategy::BusySpin)
        .unlink(UnlinkPolicy::LastDetach)
        .populate(true)
        .create()
        .expect("create spsc channel");
    let (mut p, mut c) = (
        spsc.producer().expect("producer"),
        spsc.consumer().expect("consumer"),
    );
    let latest = shmlane::latest::<u64>(&names.ba)
        .unlink(UnlinkPolicy::LastDetach)
        .populate(true)
        .create()
        .expect("create latest channel");
    let (mut w, mut r) = (
        latest.writer().expect("writer"),
        latest.reader().expect("reader"),
    );
    w.write(&7).expect("latest write");
    let mut out: Vec<Op> = OPS
        .iter()
        .map(|&name| Op {
            name,
            per_round: Vec::new(),
        })
        .collect();
    // Warm-up: the first calls pay for page faults and cold caches (a quick run's single
    // round measured a write at 190 ns instead of 36).
    for _ in 0..=batches / 10 {
        for i in 0..OPS.len() {
            time_op(i, &mut p, &mut c, &mut w, &mut r);
        }
    }
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..OPS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut ns = [0u128; 6];
        for _ in 0..batches {
            for &i in &order {
                ns[i] += time_op(i, &mut p, &mut c, &mut w, &mut r).as_nanos();
            }
        }
        for (op, total) in out.iter_mut().zip(ns) {
            op.per_round.push(total as f64 / (batches * BATCH) as f64);
        }
    }
    drop((p, c, w, r, spsc, latest));
    out
}

/// Call `i` of [`OPS`], [`BATCH`] times, after its untimed preparation: the time the calls
/// took.
fn time_op(
    i: usize,
    p: &mut shmlane::Producer<u64>,
    c: &mut shmlane::Consumer<u64>,
    w: &mut shmlane::LatestWriter<u64>,
    r: &mut shmlane::LatestReader<u64>,
) -> Duration {
    // The SPSC ring: empty before `try_send` and `try_recv (empty)`, full before `try_recv`.
    if i <= 2 {
        while c.try_recv().is_ok() {}
    }
    if i == 1 {
        for k in 0..BATCH {
            p.try_send(k).expect("room");
        }
    }
    if i == 5 {
        // Up to date with the newest value.
        let _ = r.read_if_changed().expect("latest read");
    }
    let t0 = Instant::now();
    match i {
        0 => {
            for k in 0..BATCH {
                p.try_send(black_box(k)).expect("room");
            }
        }
        1 => {
            for _ in 0..BATCH {
                black_box(c.try_recv().expect("a message"));
            }
        }
        2 => {
            for _ in 0..BATCH {
                black_box(c.try_recv().is_err());
            }
        }
        3 => {
            for k in 0..BATCH {
                black_box(w.write(black_box(&k)).expect("latest write"));
            }
        }
        4 => {
            for _ in 0..BATCH {
                black_box(r.read().expect("latest read"));
            }
        }
        _ => {
            for _ in 0..BATCH {
                black_box(r.read_if_changed().expect("latest read").is_none());
            }
        }
    }
    t0.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn find<'a>(ops: &'a [Op], name: &str) -> Option<&'a Op> {
    ops.iter().find(|o| o.name == name)
}

/// Each ratio of [`OP_RATIOS`] within each round, and their median.
pub fn op_ratios(ops: &[Op]) -> Vec<(&'static str, f64)> {
    OP_RATIOS
        .iter()
        .filter_map(|&(name, a, b)| {
            let (a, b) = (find(ops, a)?, find(ops, b)?);
            let per: Vec<f64> = a
                .per_round
                .iter()
                .zip(&b.per_round)
                .map(|(x, y)| x / y)
                .collect();
            Some((name, median(per)))
        })
        .collect()
}

/// The table of [`ops`].
pub fn ops_table(ops: &[Op]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let rounds = ops.first().map_or(0, |o| o.per_round.len());
    let _ = writeln!(
        s,
        "\nSingle-thread call costs, 8-byte values, one thread on core 0: ns per call, median of {rounds} rounds (each round: every call, interleaved)"
    );
    let _ = writeln!(s, "{:<36} {:>8}  per round", "call", "ns");
    for o in ops {
        let rounds: Vec<String> = o.per_round.iter().map(|v| format!("{v:.1}")).collect();
        let _ = writeln!(
            s,
            "{:<36} {:>8.1}  {}",
            o.name,
            median(o.per_round.clone()),
            rounds.join(" ")
        );
    }
    for (name, r) in op_ratios(ops) {
        let _ = writeln!(s, "{name:<36} {r:>8.2}  (within each round, median)");
    }
    s
}

/// The JSON of [`ops`]: each call's median and rounds, and the ratios.
pub fn ops_json(ops: &[Op]) -> serde_json::Value {
    serde_json::json!({
        "calls": ops.iter().map(|o| serde_json::json!({
            "call": o.name,
            "ns_per_call": median(o.per_round.clone()),
            "per_round": o.per_round,
        })).collect::<Vec<_>>(),
        "ratios": op_ratios(ops).into_iter().map(|(n, r)| serde_json::json!({"name": n, "median": r})).collect::<Vec<_>>(),
    })
}
