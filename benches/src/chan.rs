//! The channel rows of `shmlane bench`: the public `shmlane` channel API, used as its examples
//! use it (a builder, the parent creates the channel by name before the fork, the child opens
//! it by name), timed exactly like the raw-ring rows of [`crate::xproc`] (same jobs, same
//! sizes, same pinning); and `naive-shm-ring`, the reference a user would write by hand.
//!
//! - `shmlane-chan-spsc-spin`: SPSC channels of `[u8; N]`, `WaitStrategy::BusySpin`,
//!   `try_send` / `try_recv` in a spin loop (what a busy-polling user writes; the raw
//!   `shmlane-spsc-spin` row spins the same way).
//! - `shmlane-chan-spsc-spinpark`, `shmlane-chan-spsc-park`: the blocking `send` / `recv`
//!   with the default `SpinThenPark` and with `Park`, a deadline per measurement (as the
//!   pingpong example passes one; computed once, so no clock read per message).
//! - `shmlane-chan-mpmc`: an MPMC channel of `[u8; N]`, `try_send` / `try_recv` spinning.
//! - `shmlane-chan-bytes`: a byte channel (records of any length up to `msg_size`),
//!   `try_send(&[u8])` / `try_recv(&mut [u8])` spinning.
//! - `shmlane-chan-broadcast`: a broadcast channel, one publisher and one subscriber per
//!   direction, `send` / `try_recv` spinning; round trips only (a publisher never waits for
//!   its subscribers, so a streaming figure would be the publisher's alone, with losses).
//! - `naive-shm-ring`: the simplest correct SPSC ring by hand: head and tail words in shared
//!   memory on their own cache lines, each side reading the other's word at every step, one
//!   message copied in and out per step, busy-polling. The floor the channel rows should not
//!   fall far below.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane::{Channel, Deadline, UnlinkPolicy, WaitStrategy};
use shmlane_wake::sys::monotonic_ns;

use crate::xproc::{Drain, Echo, Job, Ping, Rx, Shm, Stream, Tx, forked, spsc_capacity};

/// The channel rows and the naive reference, in table order.
pub const TRANSPORTS: &[&str] = &[
    "shmlane-chan-spsc-spin",
    "shmlane-chan-spsc-spinpark",
    "shmlane-chan-spsc-park",
    "shmlane-chan-mpmc",
    "shmlane-chan-bytes",
    "shmlane-chan-broadcast",
    "naive-shm-ring",
];

/// Whether this module measures `transport`.
pub fn handles(transport: &str) -> bool {
    TRANSPORTS.contains(&transport) || PARTS.contains(&transport)
}

/// Not rows of the table: the steps from the raw ring to the SPSC channel, measured by the
/// `chan_parts` example (`benches/examples/chan_parts.rs`) to say what the channel's extra
/// nanoseconds are. `part-stamped` is the `shmlane-spsc-spin` row's ring; `-notify` adds the
/// producer's `Event::notify` after each message (a SeqCst fence and a load, what lets the
/// consumer park at any moment); `part-tail` is `SpscRing`, the shared-tail ring under the
/// SPSC channel (contiguous slots: the chunk and slice APIs); `shmlane-chan-spsc-spin` adds
/// the rest of the channel (statistics, liveness on an empty or full ring, both notifies).
///
/// `-nofence`: the notify's load without its fence (not sound alone: what an asymmetric
/// barrier, the waiter's `membarrier` before it parks, would leave on the producer's side).
pub const PARTS: &[&str] = &[
    "part-stamped",
    "part-stamped-notify",
    "part-stamped-nofence",
    "part-tail",
    "part-tail-notify",
    "part-tail-nofence",
];

/// Whether `transport` (one of [`TRANSPORTS`]) has a streaming figure: not the parking rows
/// (as for the raw ring) and not broadcast (see the module docs).
pub fn has_throughput(transport: &str) -> bool {
    !matches!(
        transport,
        "shmlane-chan-spsc-spinpark" | "shmlane-chan-spsc-park" | "shmlane-chan-broadcast"
    )
}

/// How long any one measurement may take before the harness gives up (a lost message would
/// otherwise spin for ever).
const LIMIT: Duration = Duration::from_secs(60);

/// Failed tries between two looks at the clock in the spin loops.
const SPINS_PER_CHECK: u32 = 1 << 16;

/// Spins until `f` gives a value, panicking after [`LIMIT`].
#[inline]
fn spin<V>(what: &str, mut f: impl FnMut() -> Option<V>) -> V {
    let mut tries = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        if let Some(v) = f() {
            return v;
        }
        core::hint::spin_loop();
        tries = tries.wrapping_add(1);
        if tries % SPINS_PER_CHECK == 0 {
            let t0 = *since.get_or_insert_with(Instant::now);
            assert!(t0.elapsed() < LIMIT, "{what}: no progress in {LIMIT:?}");
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Spsc(WaitStrategy),
    Mpmc,
    Bytes,
    Broadcast,
    Naive,
    /// The decomposition of the SPSC channel's cost ([`PARTS`]): the raw stamped ring, or the
    /// shared-tail ring the channel is made of, with or without the producer's notify.
    Stamped {
        notify: Notify,
    },
    Tail {
        notify: Notify,
    },
}

/// What the producer of a [`PARTS`] ring does after each message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Notify {
    /// Nothing (the raw rows).
    No,
    /// `Event::notify`: a SeqCst fence and a load of the sleeper count.
    Fence,
    /// The load of the sleeper count alone, no fence: not a sound protocol by itself, the
    /// producer's side of an asymmetric barrier (the waiter would issue the heavy one before
    /// it parks); measured as the most such a design could win.
    LoadOnly,
}

/// After a message of a [`PARTS`] ring.
#[inline]
fn after_send(ev: Option<&(shmlane_wake::Event, Notify)>) {
    match ev {
        Some((ev, Notify::Fence)) => {
            ev.notify();
        }
        Some((ev, Notify::LoadOnly)) if ev.sleepers() != 0 => {
            ev.notify();
        }
        _ => {}
    }
}

fn kind(transport: &str) -> Kind {
    match transport {
        "shmlane-chan-spsc-spin" => Kind::Spsc(WaitStrategy::BusySpin),
        "shmlane-chan-spsc-spinpark" => Kind::Spsc(WaitStrategy::default()),
        "shmlane-chan-spsc-park" => Kind::Spsc(WaitStrategy::Park),
        "shmlane-chan-mpmc" => Kind::Mpmc,
        "shmlane-chan-bytes" => Kind::Bytes,
        "shmlane-chan-broadcast" => Kind::Broadcast,
        "naive-shm-ring" => Kind::Naive,
        "part-stamped" => Kind::Stamped { notify: Notify::No },
        "part-stamped-notify" => Kind::Stamped {
            notify: Notify::Fence,
        },
        "part-stamped-nofence" => Kind::Stamped {
            notify: Notify::LoadOnly,
        },
        "part-tail" => Kind::Tail { notify: Notify::No },
        "part-tail-notify" => Kind::Tail {
            notify: Notify::Fence,
        },
        "part-tail-nofence" => Kind::Tail {
            notify: Notify::LoadOnly,
        },
        other => panic!("no channel transport {other}"),
    }
}

/// The two channel names of one measurement ("ab": parent to child, "ba": back).
struct Names {
    ab: String,
    ba: String,
}

impl Names {
    fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // ORDERING: Relaxed; a process-local counter for unique names.
        let k = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("shmlane-bench-{}-{k}", std::process::id());
        Self {
            ab: format!("{base}-ab"),
            ba: format!("{base}-ba"),
        }
    }

    fn dirs(&self, parent: bool) -> (&str, &str) {
        if parent {
            (&self.ab, &self.ba)
        } else {
            (&self.ba, &self.ab)
        }
    }
}

/// The row's channel names go with the row (review rev18): a child that failed (or was killed
/// when the parent's side failed) dies attached, and a channel with a dead attachment or unread
/// messages keeps its name (`UnlinkPolicy::LastDetach`), so a failed row left two segments in
/// /dev/shm. Dropped after the channels (`measure` makes the names first) and after the child
/// was reaped; the names are this process's own.
impl Drop for Names {
    fn drop(&mut self) {
        for n in [&self.ab, &self.ba] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

/// Messages (or, for byte channels, bytes) each channel holds: as the raw rings, 4096
/// messages or 4 MiB of them, whichever is less.
fn capacity(size: usize) -> u64 {
    spsc_capacity(size)
}

/// The channels the parent creates before the fork (both directions), kept open by it.
enum Made<const N: usize> {
    Typed(Channel<[u8; N]>, Channel<[u8; N]>),
    Raw(Channel<u8>, Channel<u8>),
    None,
}

fn typed<const N: usize>(k: Kind, name: &str) -> shmlane::Builder<[u8; N]>
where
    [u8; N]: bytemuck::Pod,
{
    let b = match k {
        Kind::Spsc(_) => shmlane::spsc::<[u8; N]>(name),
        _ => shmlane::mpmc::<[u8; N]>(name),
    };
    let strategy = match k {
        Kind::Spsc(s) => s,
        _ => WaitStrategy::BusySpin,
    };
    b.wait(strategy)
}

fn raw(k: Kind, name: &str, size: usize) -> shmlane::Builder<u8> {
    match k {
        // A byte ring of 4 MiB (or 4096 messages of 64 B and less, with their headers).
        Kind::Bytes => shmlane::bytes(name)
            .capacity((capacity(size) * (size as u64 + 8)).next_power_of_two())
            .msg_size(size as u64),
        _ => shmlane::broadcast(name)
            .capacity(capacity(size))
            .msg_size(size as u64),
    }
    .wait(WaitStrategy::BusySpin)
}

fn create<const N: usize>(k: Kind, names: &Names) -> Made<N>
where
    [u8; N]: bytemuck::Pod,
{
    let fresh = |b: shmlane::Builder<[u8; N]>| {
        b.capacity(capacity(N))
            .populate(true)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create channel")
    };
    let fresh_raw = |b: shmlane::Builder<u8>| {
        b.populate(true)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create channel")
    };
    match k {
        Kind::Spsc(_) | Kind::Mpmc => Made::Typed(
            fresh(typed::<N>(k, &names.ab)),
            fresh(typed::<N>(k, &names.ba)),
        ),
        Kind::Bytes | Kind::Broadcast => Made::Raw(
            fresh_raw(raw(k, &names.ab, N)),
            fresh_raw(raw(k, &names.ba, N)),
        ),
        Kind::Naive | Kind::Stamped { .. } | Kind::Tail { .. } => Made::None,
    }
}

/// SPSC channel endpoints. `deadline: None`: `try_*` in a spin loop; `Some`: the blocking
/// calls with that deadline.
struct SpscTx<const N: usize>(shmlane::Producer<[u8; N]>, Option<Deadline>);
struct SpscRx<const N: usize>(shmlane::Consumer<[u8; N]>, Option<Deadline>);

impl<const N: usize> Tx for SpscTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let v: [u8; N] = msg.try_into().expect("message size");
        if let Some(d) = self.1 {
            self.0.send(v, Some(d)).expect("channel send");
            return;
        }
        spin("spsc channel send", || match self.0.try_send(v) {
            Ok(()) => Some(()),
            Err(shmlane::TrySendError::Full(_)) => None,
            Err(e) => panic!("spsc channel send: {e}"),
        });
    }
}
impl<const N: usize> Rx for SpscRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let v = if let Some(d) = self.1 {
            self.0.recv(Some(d)).expect("channel recv")
        } else {
            spin("spsc channel recv", || match self.0.try_recv() {
                Ok(v) => Some(v),
                Err(shmlane::TryRecvError::Empty) => None,
                Err(e) => panic!("spsc channel recv: {e}"),
            })
        };
        msg.copy_from_slice(&v);
    }
}

struct MpmcTx<const N: usize>(shmlane::Sender<[u8; N]>);
struct MpmcRx<const N: usize>(shmlane::Receiver<[u8; N]>);

impl<const N: usize> Tx for MpmcTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let v: [u8; N] = msg.try_into().expect("message size");
        spin("mpmc channel send", || match self.0.try_send(v) {
            Ok(()) => Some(()),
            Err(shmlane::TrySendError::Full(_)) => None,
            Err(e) => panic!("mpmc channel send: {e}"),
        });
    }
}
impl<const N: usize> Rx for MpmcRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let v = spin("mpmc channel recv", || match self.0.try_recv() {
            Ok(v) => Some(v),
            Err(shmlane::TryRecvError::Empty) => None,
            Err(e) => panic!("mpmc channel recv: {e}"),
        });
        msg.copy_from_slice(&v);
    }
}

struct BytesTx(shmlane::ByteSender);
struct BytesRx(shmlane::ByteReceiver);

impl Tx for BytesTx {
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        spin("byte channel send", || match self.0.try_send(msg) {
            Ok(()) => Some(()),
            Err(shmlane::ByteSendError::Full) => None,
            Err(e) => panic!("byte channel send: {e}"),
        });
    }
}
impl Rx for BytesRx {
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let n = spin("byte channel recv", || match self.0.try_recv(msg) {
            Ok(n) => Some(n),
            Err(shmlane::ByteRecvError::Empty) => None,
            Err(e) => panic!("byte channel recv: {e}"),
        });
        assert_eq!(n, msg.len(), "byte channel: message length");
    }
}

struct CastTx(shmlane::Publisher);
struct CastRx(shmlane::Subscriber);

impl Tx for CastTx {
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg).expect("broadcast send");
    }
}
impl Rx for CastRx {
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let n = spin("broadcast recv", || match self.0.try_recv(msg) {
            Ok(n) => Some(n),
            Err(shmlane::ByteRecvError::Empty) => None,
            Err(e) => panic!("broadcast recv: {e}"),
        });
        assert_eq!(n, msg.len(), "broadcast: message length");
    }
}

/// The raw stamped ring (as the `shmlane-spsc-spin` row), `notify`: after each message.
struct StampedTx<const N: usize> {
    p: shmlane_ring::StampedProducer<[u8; N]>,
    ev: Option<(shmlane_wake::Event, Notify)>,
}
struct StampedRx<const N: usize>(shmlane_ring::StampedConsumer<[u8; N]>);

impl<const N: usize> Tx for StampedTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let v: &[u8; N] = msg.try_into().expect("message size");
        spin("stamped send", || self.p.push_ref(v).ok());
        after_send(self.ev.as_ref());
    }
}
impl<const N: usize> Rx for StampedRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let dst: &mut [u8; N] = msg.try_into().expect("message size");
        spin("stamped recv", || self.0.pop_into(dst).ok());
    }
}

/// The shared-tail ring under the SPSC channel, `push` / `pop` by value as the channel does.
struct TailTx<const N: usize> {
    p: shmlane_ring::Producer<[u8; N]>,
    ev: Option<(shmlane_wake::Event, Notify)>,
}
struct TailRx<const N: usize>(shmlane_ring::Consumer<[u8; N]>);

impl<const N: usize> Tx for TailTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let v: [u8; N] = msg.try_into().expect("message size");
        spin("tail send", || self.p.push(v).ok());
        after_send(self.ev.as_ref());
    }
}
impl<const N: usize> Rx for TailRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let v = spin("tail recv", || self.0.pop().ok());
        msg.copy_from_slice(&v);
    }
}

/// Lays out both directions' rings of a [`PARTS`] measurement (before the fork).
fn parts_init<const N: usize>(k: Kind, shm: &Shm)
where
    [u8; N]: bytemuck::Pod,
{
    for dir in ["ab", "ba"] {
        let (p, l) = shm.region(&format!("ring-{dir}"));
        if matches!(k, Kind::Stamped { .. }) {
            // SAFETY: not yet shared (before the fork).
            unsafe { shmlane_ring::StampedRing::<[u8; N]>::init(p, l, capacity(N), 0) }
                .expect("stamped init");
        } else {
            // SAFETY: as above.
            unsafe { shmlane_ring::SpscRing::<[u8; N]>::init(p, l, capacity(N), 0) }
                .expect("spsc init");
        }
    }
}

/// Runs `job` on a [`PARTS`] ring pair (`parent`: produces on "ab", consumes on "ba").
fn with_part_endpoints<const N: usize, J: Job>(k: Kind, shm: &Shm, parent: bool, job: J) -> J::Out
where
    [u8; N]: bytemuck::Pod,
{
    let (out, inn) = if parent { ("ab", "ba") } else { ("ba", "ab") };
    let (po, lo) = shm.region(&format!("ring-{out}"));
    let (pi, li) = shm.region(&format!("ring-{inn}"));
    let owner = if parent { 1 } else { 2 };
    let alive = |_: u64| true;
    match k {
        Kind::Stamped { notify } => {
            // SAFETY: the rings live as long as the segment, which outlives the endpoints;
            // each direction has one producer and one consumer.
            let (p, c) = unsafe {
                (
                    shmlane_ring::StampedRing::<[u8; N]>::producer(po, lo, owner, &alive)
                        .expect("producer"),
                    shmlane_ring::StampedRing::<[u8; N]>::consumer(pi, li, owner, &alive)
                        .expect("consumer"),
                )
            };
            let ev = (notify != Notify::No).then(|| (shm.event(&format!("ev-{out}")), notify));
            job.run(StampedTx::<N> { p, ev }, StampedRx::<N>(c))
        }
        Kind::Tail { notify } => {
            // SAFETY: as above.
            let (p, c) = unsafe {
                (
                    shmlane_ring::SpscRing::<[u8; N]>::producer(po, lo, owner, &alive)
                        .expect("producer"),
                    shmlane_ring::SpscRing::<[u8; N]>::consumer(pi, li, owner, &alive)
                        .expect("consumer"),
                )
            };
            let ev = (notify != Notify::No).then(|| (shm.event(&format!("ev-{out}")), notify));
            job.run(TailTx::<N> { p, ev }, TailRx::<N>(c))
        }
        _ => unreachable!("not a part"),
    }
}

/// The naive ring's layout in a region: the consumer's head at 0, the producer's tail at 128
/// (each on its own pair of cache lines), the slots from 256.
const NAIVE_SLOTS_AT: usize = 256;

struct NaiveRing {
    head: *const AtomicU64,
    tail: *const AtomicU64,
    slots: *mut u8,
    cap: u64,
    size: usize,
    /// This side's own position (the producer's tail or the consumer's head).
    mine: u64,
}

impl NaiveRing {
    fn new(region: (*mut u8, usize), size: usize) -> Self {
        let cap = capacity(size);
        assert!(
            NAIVE_SLOTS_AT + cap as usize * size <= region.1,
            "naive ring fits"
        );
        let p = region.0;
        Self {
            head: p.cast(),
            // SAFETY: offsets inside the region (checked above), 8-byte aligned.
            tail: unsafe { p.add(128) }.cast(),
            // SAFETY: as above.
            slots: unsafe { p.add(NAIVE_SLOTS_AT) },
            cap,
            size,
            mine: 0,
        }
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: an aligned word inside the region, which outlives the ring; atomics only.
        unsafe { &*self.head }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as in `head`.
        unsafe { &*self.tail }
    }

    fn slot(&self, pos: u64) -> *mut u8 {
        // SAFETY: `pos % cap` < cap slots of `size` bytes inside the region (checked in `new`).
        unsafe { self.slots.add((pos % self.cap) as usize * self.size) }
    }
}

struct NaiveTx(NaiveRing);
struct NaiveRx(NaiveRing);

impl Tx for NaiveTx {
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let r = &mut self.0;
        let t = r.mine;
        // ORDERING: Acquire; pairs with the consumer's Release store of `head`: the slot it
        // freed is read out before this side writes it again.
        spin("naive ring send", || {
            (t - r.head().load(Ordering::Acquire) < r.cap).then_some(())
        });
        // SAFETY: the slot is free (the consumer's head is past it); both benchmark
        // processes are ours and follow this protocol; `msg` has `size` bytes.
        unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), r.slot(t), r.size) };
        r.mine = t + 1;
        // ORDERING: Release; pairs with the consumer's Acquire load: the copy is visible
        // before the new tail.
        r.tail().store(t + 1, Ordering::Release);
    }
}
impl Rx for NaiveRx {
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let r = &mut self.0;
        let h = r.mine;
        // ORDERING: Acquire; pairs with the producer's Release store of `tail`.
        spin("naive ring recv", || {
            (r.tail().load(Ordering::Acquire) != h).then_some(())
        });
        // SAFETY: the slot holds a published message the producer leaves alone until `head`
        // passes it; `msg` has `size` bytes.
        unsafe { core::ptr::copy_nonoverlapping(r.slot(h), msg.as_mut_ptr(), r.size) };
        r.mine = h + 1;
        // ORDERING: Release; pairs with the producer's Acquire load of `head`.
        r.head().store(h + 1, Ordering::Release);
    }
}

/// Runs `job` with this side's endpoints (`parent`: sends on "ab", receives on "ba"). The
/// parent uses the channels it created (`made`); the child opens them by name.
fn with_endpoints<const N: usize, J: Job>(
    k: Kind,
    names: &Names,
    made: &Made<N>,
    shm: &Shm,
    parent: bool,
    job: J,
) -> J::Out
where
    [u8; N]: bytemuck::Pod,
{
    if matches!(k, Kind::Stamped { .. } | Kind::Tail { .. }) {
        return with_part_endpoints::<N, J>(k, shm, parent, job);
    }
    let (out, inn) = names.dirs(parent);
    let open = |name: &str| typed::<N>(k, name).open().expect("open channel");
    let open_raw = |name: &str| raw(k, name, N).open().expect("open channel");
    let (o, i);
    let (to, ti) = match (parent, made) {
        (true, Made::Typed(ab, ba)) => (ab, ba),
        (false, Made::Typed(..)) => {
            (o, i) = (open(out), open(inn));
            (&o, &i)
        }
        _ => {
            return with_raw_endpoints(k, (out, inn), made, shm, parent, N, &open_raw, job);
        }
    };
    if let Kind::Spsc(s) = k {
        let d = (s != WaitStrategy::BusySpin).then(|| Deadline::after(LIMIT));
        let tx = SpscTx::<N>(to.producer().expect("producer"), d);
        let rx = SpscRx::<N>(ti.consumer().expect("consumer"), d);
        return job.run(tx, rx);
    }
    let tx = MpmcTx::<N>(to.sender().expect("sender"));
    let rx = MpmcRx::<N>(ti.receiver().expect("receiver"));
    job.run(tx, rx)
}

#[allow(clippy::too_many_arguments)]
fn with_raw_endpoints<const N: usize, J: Job>(
    k: Kind,
    (out, inn): (&str, &str),
    made: &Made<N>,
    shm: &Shm,
    parent: bool,
    size: usize,
    open: &dyn Fn(&str) -> Channel<u8>,
    job: J,
) -> J::Out {
    if k == Kind::Naive {
        let (ro, ri) = if parent { ("ab", "ba") } else { ("ba", "ab") };
        let tx = NaiveTx(NaiveRing::new(shm.region(&format!("ring-{ro}")), size));
        let rx = NaiveRx(NaiveRing::new(shm.region(&format!("ring-{ri}")), size));
        return job.run(tx, rx);
    }
    let (o, i);
    let (to, ti) = if let (true, Made::Raw(ab, ba)) = (parent, made) {
        (ab, ba)
    } else {
        (o, i) = (open(out), open(inn));
        (&o, &i)
    };
    if k == Kind::Bytes {
        let tx = BytesTx(to.byte_sender().expect("byte sender"));
        let rx = BytesRx(ti.byte_receiver().expect("byte receiver"));
        return job.run(tx, rx);
    }
    // Subscribe first: a subscriber starts at the newest message, so each side's subscriber
    // is attached before its peer publishes (the parent waits for the child's below).
    let rx = CastRx(ti.subscriber().expect("subscriber"));
    let mut publisher = to.publisher().expect("publisher");
    if parent {
        publisher
            .wait_for_peer(Some(Deadline::after(LIMIT)))
            .expect("a subscriber in the child");
    }
    job.run(CastTx(publisher), rx)
}

/// The parent's side of a streaming measurement: the start time, then the job.
struct Started<'a, J> {
    start: &'a AtomicU64,
    job: J,
}
impl<J: Job> Job for Started<'_, J> {
    type Out = J::Out;
    fn run<T: Tx, R: Rx>(self, tx: T, rx: R) -> J::Out {
        // ORDERING: Release; pairs with the child's Acquire load.
        self.start.store(monotonic_ns(), Ordering::Release);
        self.job.run(tx, rx)
    }
}

/// The child's side: endpoints open, wait for the start, run the job, store the time taken.
struct Timed<'a, J> {
    start: &'a AtomicU64,
    took: &'a AtomicU64,
    job: J,
}
impl<J: Job<Out = ()>> Job for Timed<'_, J> {
    type Out = ();
    fn run<T: Tx, R: Rx>(self, tx: T, rx: R) {
        // ORDERING: Acquire; pairs with the parent's Release store of the start time.
        spin("stream start", || {
            (self.start.load(Ordering::Acquire) != 0).then_some(())
        });
        self.job.run(tx, rx);
        let end = monotonic_ns();
        // ORDERING: Release; pairs with the parent's Acquire load.
        self.took
            .store(end - self.start.load(Ordering::Relaxed), Ordering::Release);
    }
}

/// What one measurement measures.
enum Metric {
    Rtt,
    Stream,
}

enum Out {
    Rtt(Vec<u64>),
    Took(Duration),
}

fn measure<const N: usize>(transport: &str, n: u64, same_core: bool, metric: &Metric) -> Out
where
    [u8; N]: bytemuck::Pod,
{
    let k = kind(transport);
    let shm = Shm::new();
    let names = Names::new();
    let made = create::<N>(k, &names);
    if k == Kind::Naive {
        for dir in ["ab", "ba"] {
            let (p, l) = shm.region(&format!("ring-{dir}"));
            // SAFETY: not yet shared (before the fork); the region has `l` bytes.
            unsafe { core::ptr::write_bytes(p, 0, l.min(NAIVE_SLOTS_AT)) };
        }
    }
    if matches!(k, Kind::Stamped { .. } | Kind::Tail { .. }) {
        parts_init::<N>(k, &shm);
    }
    let size = N;
    let child_core = usize::from(!same_core);
    match metric {
        Metric::Rtt => Out::Rtt(forked(
            &shm,
            child_core,
            || with_endpoints(k, &names, &made, &shm, false, Echo { size, n }),
            || with_endpoints(k, &names, &made, &shm, true, Ping { size, n }),
        )),
        Metric::Stream => {
            let (start, took) = (shm.word(0), shm.word(1));
            forked(
                &shm,
                child_core,
                || {
                    let job = Timed {
                        start,
                        took,
                        job: Drain { size, n },
                    };
                    with_endpoints(k, &names, &made, &shm, false, job);
                },
                || {
                    let job = Started {
                        start,
                        job: Stream { size, n },
                    };
                    with_endpoints(k, &names, &made, &shm, true, job);
                    // Pairs with the child's Release store.
                    let ns = crate::xproc::await_child_word(took, Duration::from_micros(50));
                    Out::Took(Duration::from_nanos(ns))
                },
            )
        }
    }
}

fn by_size(transport: &str, size: usize, n: u64, same_core: bool, metric: &Metric) -> Out {
    match size {
        8 => measure::<8>(transport, n, same_core, metric),
        64 => measure::<64>(transport, n, same_core, metric),
        1024 => measure::<1024>(transport, n, same_core, metric),
        65536 => measure::<65536>(transport, n, same_core, metric),
        other => panic!("no {transport} row for {other}-byte messages"),
    }
}

/// Round trips of `size`-byte messages through `transport`; per-round-trip nanoseconds.
pub fn rtt(transport: &str, size: usize, n: u64, same_core: bool) -> Vec<u64> {
    match by_size(transport, size, n, same_core, &Metric::Rtt) {
        Out::Rtt(t) => t,
        Out::Took(_) => unreachable!("round trips give times"),
    }
}

/// Streams `n` messages of `size` bytes from the parent to the child; the time until the
/// child had the last one.
pub fn throughput(transport: &str, size: usize, n: u64, same_core: bool) -> Duration {
    match by_size(transport, size, n, same_core, &Metric::Stream) {
        Out::Took(d) => d,
        Out::Rtt(_) => unreachable!("streaming gives a time"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Kind, Names, create, with_endpoints};
    use crate::xproc::{Job, Rx, Shm, Tx, forked};
    use shmlane::WaitStrategy;

    /// A child waiting, its endpoints open, for a message that never comes.
    struct Hang;
    impl Job for Hang {
        type Out = ();
        fn run<T: Tx, R: Rx>(self, _: T, _: R) {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// Review rev18: a channel row that failed in the parent leaves no segment in /dev/shm:
    /// its child, killed, dies attached, and `LastDetach` then keeps both channels' names.
    #[test]
    fn a_failed_channel_row_leaves_no_segment() {
        let _one = crate::xproc::tests::one_fork_at_a_time();
        let shm = Shm::new();
        let k = Kind::Spsc(WaitStrategy::BusySpin);
        let names = Names::new();
        let paths = [&names.ab, &names.ba].map(|n| format!("/dev/shm/{n}"));
        let made = create::<8>(k, &names);
        assert!(std::path::Path::new(&paths[0]).exists());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            forked(
                &shm,
                0,
                || with_endpoints(k, &names, &made, &shm, false, Hang),
                || {
                    // Until the child has attached to both.
                    let attached = |p: &str| {
                        shmlane_segment::inspect(std::path::Path::new(p))
                            .ok()
                            .flatten()
                            .map_or(0, |i| i.attached.len())
                    };
                    while attached(&paths[0]) < 2 || attached(&paths[1]) < 2 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    panic!("the row failed in the parent");
                },
            );
        }));
        assert!(r.is_err());
        drop(made);
        drop(names);
        let left: Vec<&String> = paths
            .iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .collect();
        assert!(left.is_empty(), "{left:?} left behind");
    }
}
