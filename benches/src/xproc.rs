//! The cross-process harness behind `shmlane bench`: two forked processes pinned to cores 0
//! and 1 (or both on core 0), every transport and message size in the same run.
//!
//! - Round trips (`rtt`): the parent sends a message of `size` bytes, the child copies it out
//!   and sends it back; each round trip is timed and recorded in an HDR histogram.
//! - Streaming (`throughput`): the parent sends `n` messages, the child receives them; messages
//!   and bytes per second from the child's last receive.
//!
//! Every shared-memory transport lives in an anonymous segment created (and pre-faulted)
//! before the fork. The hardware limits: `hw-cacheline` (one 8-byte word per direction on its
//! own cache line, the least any shared-memory round trip can cost) and `memcpy` (one thread
//! copying the same messages into a 64 MiB buffer, larger than the last-level cache).

use std::{
    hint::black_box,
    io::{Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane_ring::{MpmcRing, SpscRing, StampedRing};
use shmlane_segment::Segment;
use shmlane_wake::{EVENT_SIZE, Event, WaitStrategy, sys::monotonic_ns};

use crate::{pin, wakeup::Summary};

/// Transports, with the names of the JSON contract.
pub const TRANSPORTS: &[&str] = &[
    "hw-cacheline",
    "shmlane-spsc-spin",
    "shmlane-spsc-spinpark",
    "shmlane-spsc-park",
    "shmlane-spsc-chunk",
    "shmlane-mpmc-spin",
    // The channel API and the hand-written reference ring (`crate::chan`).
    "shmlane-chan-spsc-spin",
    "shmlane-chan-spsc-spinpark",
    "shmlane-chan-spsc-park",
    "shmlane-chan-mpmc",
    "shmlane-chan-bytes",
    "shmlane-chan-broadcast",
    // The latest-value round trip (`crate::latest`).
    "shmlane-chan-latest",
    // Waiting on a channel from a tokio task and on 16 channels with `Select` (`crate::wait`).
    "shmlane-chan-async",
    "shmlane-chan-select16",
    "naive-shm-ring",
    "pipe",
    "uds-stream",
    "uds-seqpacket",
    "eventfd",
    "memcpy",
];

/// Message sizes measured.
pub const SIZES: &[usize] = &[8, 64, 1024, 65536];

/// Whether `transport` has a round-trip figure (memcpy and the chunk API are throughput-only;
/// the hardware ping-pong carries 8 bytes).
pub fn has_rtt(transport: &str, size: usize) -> bool {
    match transport {
        "memcpy" | "shmlane-spsc-chunk" => false,
        "hw-cacheline" | "shmlane-chan-async" | "shmlane-chan-select16" => size == 8,
        _ => true,
    }
}

/// Whether `transport` has a streaming figure.
pub fn has_throughput(transport: &str) -> bool {
    if crate::chan::handles(transport) {
        return crate::chan::has_throughput(transport);
    }
    if crate::latest::handles(transport) || crate::wait::handles(transport) {
        return false;
    }
    !matches!(
        transport,
        "hw-cacheline" | "shmlane-spsc-park" | "shmlane-spsc-spinpark" | "eventfd"
    )
}

/// Slot bytes of each direction's ring region (64 messages of 64 KiB).
const RING: u64 = 1 << 22;
/// Streaming messages fit this many times in the byte ring at 64 KiB.
const BUF: usize = 65536;
/// Most messages one zero-copy chunk takes (`shmlane-spsc-chunk`).
const CHUNK_MAX: u64 = 256;
/// Most bytes one zero-copy chunk takes, a page (large messages: one per chunk, so the reader
/// works on one while the writer fills the next).
const CHUNK_BYTES: u64 = 4096;

/// Shared memory for one measurement: two byte rings, two events, two buffers, two words.
pub(crate) struct Shm {
    seg: Segment,
}

impl Shm {
    pub(crate) fn new() -> Self {
        let seg = Segment::anonymous()
            .size(12 << 20)
            .populate(true)
            .create_with(|s| {
                for dir in ["ab", "ba"] {
                    // Laid out per measurement by `ring_init` (the stamped ring needs room
                    // for a stamp per element).
                    s.region(
                        &format!("ring-{dir}"),
                        SpscRing::<u8>::required_size(RING + 65536) as u64,
                        1,
                    )?;
                    let e = s.region(&format!("ev-{dir}"), EVENT_SIZE as u64, 2)?;
                    // SAFETY: as above.
                    unsafe { Event::init(e.as_ptr(), e.len()) }.expect("event");
                    s.region(&format!("buf-{dir}"), BUF as u64, 3)?;
                }
                s.region("words", 384, 4)?;
                Ok::<_, shmlane_segment::RegionError>(())
            })
            .expect("anonymous segment");
        Self { seg }
    }

    pub(crate) fn region(&self, name: &str) -> (*mut u8, usize) {
        let r = self.seg.find_region(name).expect("region");
        (r.as_ptr(), r.len())
    }

    pub(crate) fn event(&self, name: &str) -> Event {
        let (p, l) = self.region(name);
        // SAFETY: the region lives as long as `self.seg`, which outlives the handle.
        unsafe { Event::attach(p, l) }.expect("event")
    }

    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        let (p, _) = self.region("words");
        // SAFETY: offset i*128 < 384 inside the region (i <= 2), aligned, atomics only.
        unsafe { AtomicU64::from_ptr(p.add(i * 128).cast()) }
    }
}

/// A one-direction sender and receiver of `size`-byte messages.
pub(crate) trait Tx {
    fn send(&mut self, msg: &[u8]);
}
pub(crate) trait Rx {
    fn recv(&mut self, msg: &mut [u8]);
}

struct FdTx(OwnedFd);
struct FdRx(OwnedFd);

fn file(fd: &OwnedFd) -> std::mem::ManuallyDrop<std::fs::File> {
    // SAFETY: borrows a descriptor we own; ManuallyDrop keeps it from being closed.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) })
}

impl Tx for FdTx {
    fn send(&mut self, msg: &[u8]) {
        file(&self.0).write_all(msg).expect("write");
    }
}
impl Rx for FdRx {
    fn recv(&mut self, msg: &mut [u8]) {
        file(&self.0).read_exact(msg).expect("read");
    }
}

/// Seqpacket: one send, one receive per message (whole messages).
struct SeqTx(UnixStream);
struct SeqRx(UnixStream);
impl Tx for SeqTx {
    fn send(&mut self, msg: &[u8]) {
        // SAFETY: sends from a valid buffer on a socket we own.
        let n = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        assert_eq!(n, msg.len() as isize, "seqpacket send");
    }
}
impl Rx for SeqRx {
    fn recv(&mut self, msg: &mut [u8]) {
        // SAFETY: receives into a valid buffer from a socket we own.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len(), 0) };
        assert_eq!(n, msg.len() as isize, "seqpacket recv");
    }
}

fn seqpacket_pair() -> (UnixStream, UnixStream) {
    let mut fds = [0; 2];
    // SAFETY: a valid out array of two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair(SOCK_SEQPACKET)");
    // SAFETY: fresh descriptors nothing else owns. (UnixStream is only a handle for the fd.)
    unsafe {
        (
            UnixStream::from_raw_fd(fds[0]),
            UnixStream::from_raw_fd(fds[1]),
        )
    }
}

/// eventfd plus a shared buffer: copy in, then count up the eventfd; the reader blocks on it.
struct EvTx {
    fd: OwnedFd,
    buf: (*mut u8, usize),
}
struct EvRx {
    fd: OwnedFd,
    buf: (*mut u8, usize),
}
impl Tx for EvTx {
    fn send(&mut self, msg: &[u8]) {
        assert!(msg.len() <= self.buf.1);
        // SAFETY: the buffer region holds msg.len() bytes; the reader reads it only after the
        // eventfd count (a syscall, a full barrier) announces it.
        unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), self.buf.0, msg.len()) };
        file(&self.fd)
            .write_all(&1u64.to_ne_bytes())
            .expect("eventfd write");
    }
}
impl Rx for EvRx {
    fn recv(&mut self, msg: &mut [u8]) {
        let mut b = [0u8; 8];
        file(&self.fd).read_exact(&mut b).expect("eventfd read");
        // SAFETY: as in `send`; the writer waits for our reply before writing again.
        unsafe { core::ptr::copy_nonoverlapping(self.buf.0, msg.as_mut_ptr(), msg.len()) };
    }
}

/// shmlane's stamped SPSC ring of `[u8; N]` elements, one message per element (`N` = the
/// message size), as a user moving fixed-size messages one at a time would use it.
struct SpscTx<const N: usize> {
    p: shmlane_ring::StampedProducer<[u8; N]>,
    ev: Event,
    notify: bool,
}
struct SpscRx<const N: usize> {
    c: shmlane_ring::StampedConsumer<[u8; N]>,
    ev: Event,
    strategy: WaitStrategy,
}
impl<const N: usize> Tx for SpscTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let v: &[u8; N] = msg.try_into().expect("message size");
        while self.p.push_ref(v).is_err() {
            core::hint::spin_loop();
        }
        // A consumer that may park needs the notify (a fence and a load when it is awake);
        // a busy-spinning pair skips it.
        if self.notify {
            self.ev.notify();
        }
    }
}
impl<const N: usize> Rx for SpscRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let c = &mut self.c;
        if self.strategy != WaitStrategy::BusySpin {
            self.ev.wait(&self.strategy, None, || !c.is_empty());
        }
        let dst: &mut [u8; N] = msg.try_into().expect("message size");
        while self.c.pop_into(dst).is_err() {
            core::hint::spin_loop();
        }
    }
}

/// shmlane MPMC ring of `[u8; N]` elements, one message per element (`N` = the message size),
/// copied in and out in place (`push_ref` / `pop_into`, one copy each, as the SPSC rows). The
/// by-value `push(T)` / `pop()` with a message built on the stack copied a 64 KiB message
/// seven times per side (3x the SPSC round trip here, 10x on a slow AMD EPYC VM state:
/// docs/benchmarks.md, "Large messages").
struct MpmcTx<const N: usize>(shmlane_ring::Sender<[u8; N]>);
struct MpmcRx<const N: usize>(shmlane_ring::Receiver<[u8; N]>);
impl<const N: usize> Tx for MpmcTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let v: &[u8; N] = msg.try_into().expect("message size");
        while self.0.push_ref(v).is_err() {
            core::hint::spin_loop();
        }
    }
}
impl<const N: usize> Rx for MpmcRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    #[inline]
    fn recv(&mut self, msg: &mut [u8]) {
        let dst: &mut [u8; N] = msg.try_into().expect("message size");
        while self.0.pop_into(dst).is_err() {
            core::hint::spin_loop();
        }
    }
}

/// The hardware limit: one word per direction, each on its own cache line.
struct WordTx<'a>(&'a AtomicU64, u64);
struct WordRx<'a>(&'a AtomicU64, u64);
impl Tx for WordTx<'_> {
    fn send(&mut self, _msg: &[u8]) {
        self.1 += 1;
        // ORDERING: Release; pairs with the reader's Acquire load.
        self.0.store(self.1, Ordering::Release);
    }
}
impl Rx for WordRx<'_> {
    fn recv(&mut self, _msg: &mut [u8]) {
        self.1 += 1;
        // ORDERING: Acquire; pairs with the writer's Release store.
        while self.0.load(Ordering::Acquire) != self.1 {
            core::hint::spin_loop();
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    // Room for a whole 64 KiB message (the default pipe buffer is exactly 64 KiB).
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    (r, w)
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain syscall; checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Everything one measurement needs, made before the fork.
struct Setup {
    shm: Shm,
    fds: Vec<OwnedFd>,
    socks: Vec<UnixStream>,
}

fn setup(transport: &str) -> Setup {
    let shm = Shm::new();
    let (mut fds, mut socks) = (Vec::new(), Vec::new());
    match transport {
        "pipe" => {
            let (r1, w1) = pipe();
            let (r2, w2) = pipe();
            fds.extend([r1, w1, r2, w2]);
        }
        "uds-stream" => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            socks.extend([a, b]);
        }
        "uds-seqpacket" => {
            let (a, b) = seqpacket_pair();
            socks.extend([a, b]);
        }
        "eventfd" => fds.extend([eventfd(), eventfd()]),
        _ => {}
    }
    Setup { shm, fds, socks }
}

fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.try_clone().expect("dup")
}

fn strategy_of(transport: &str) -> WaitStrategy {
    match transport {
        "shmlane-spsc-park" => WaitStrategy::Park,
        "shmlane-spsc-spinpark" => WaitStrategy::default(),
        _ => WaitStrategy::BusySpin,
    }
}

/// Work done with one side's sender and receiver, monomorphised for each transport's types
/// (a virtual call per message would cost more than a shared-memory message).
pub(crate) trait Job {
    type Out;
    fn run<T: Tx, R: Rx>(self, tx: T, rx: R) -> Self::Out;
}

impl Tx for Box<dyn Tx + '_> {
    fn send(&mut self, msg: &[u8]) {
        (**self).send(msg);
    }
}
impl Rx for Box<dyn Rx + '_> {
    fn recv(&mut self, msg: &mut [u8]) {
        (**self).recv(msg);
    }
}

/// Runs `job` with this side's sender and receiver (`parent`: sends on "ab", receives on
/// "ba"). The rings were initialised before the fork ([`ring_init`]).
fn with_endpoints<J: Job>(s: &Setup, transport: &str, size: usize, parent: bool, job: J) -> J::Out {
    let (out, inn) = if parent { ("ab", "ba") } else { ("ba", "ab") };
    match transport {
        "hw-cacheline" => {
            let (wo, wi) = if parent { (0, 1) } else { (1, 0) };
            job.run(WordTx(s.shm.word(wo), 0), WordRx(s.shm.word(wi), 0))
        }
        t if t.starts_with("shmlane-spsc") => {
            macro_rules! spsc {
                ($n:literal) => {{
                    let (po, lo) = s.shm.region(&format!("ring-{out}"));
                    let (pi, li) = s.shm.region(&format!("ring-{inn}"));
                    let owner = if parent { 1 } else { 2 };
                    let alive = |_: u64| true;
                    // SAFETY: the rings live as long as the segment, which outlives the
                    // endpoints; each direction has one producer and one consumer.
                    let (p, c) = unsafe {
                        (
                            StampedRing::<[u8; $n]>::producer(po, lo, owner, &alive)
                                .expect("producer"),
                            StampedRing::<[u8; $n]>::consumer(pi, li, owner, &alive)
                                .expect("consumer"),
                        )
                    };
                    job.run(
                        SpscTx::<$n> {
                            p,
                            ev: s.shm.event(&format!("ev-{out}")),
                            notify: strategy_of(transport) != WaitStrategy::BusySpin,
                        },
                        SpscRx::<$n> {
                            c,
                            ev: s.shm.event(&format!("ev-{inn}")),
                            strategy: strategy_of(transport),
                        },
                    )
                }};
            }
            match size {
                8 => spsc!(8),
                64 => spsc!(64),
                1024 => spsc!(1024),
                65536 => spsc!(65536),
                other => panic!("no SPSC ring for {other}-byte messages"),
            }
        }
        "shmlane-mpmc-spin" => {
            macro_rules! mpmc {
                ($n:literal) => {{
                    let (po, lo) = s.shm.region(&format!("ring-{out}"));
                    let (pi, li) = s.shm.region(&format!("ring-{inn}"));
                    // SAFETY: as for the SPSC endpoints.
                    let (tx, rx) = unsafe {
                        (
                            MpmcRing::<[u8; $n]>::sender(po, lo).expect("sender"),
                            MpmcRing::<[u8; $n]>::receiver(pi, li).expect("receiver"),
                        )
                    };
                    job.run(MpmcTx::<$n>(tx), MpmcRx::<$n>(rx))
                }};
            }
            match size {
                8 => mpmc!(8),
                64 => mpmc!(64),
                1024 => mpmc!(1024),
                65536 => mpmc!(65536),
                other => panic!("no MPMC ring for {other}-byte messages"),
            }
        }
        _ => {
            let (tx, rx) = kernel_endpoints(s, transport, parent, out, inn);
            job.run(tx, rx)
        }
    }
}

/// The kernel transports (a virtual call is noise next to a syscall).
fn kernel_endpoints<'a>(
    s: &'a Setup,
    transport: &str,
    parent: bool,
    out: &str,
    inn: &str,
) -> (Box<dyn Tx + 'a>, Box<dyn Rx + 'a>) {
    match transport {
        "pipe" => {
            let (r, w) = if parent { (2, 1) } else { (0, 3) };
            (
                Box::new(FdTx(dup(&s.fds[w]))),
                Box::new(FdRx(dup(&s.fds[r]))),
            )
        }
        "uds-stream" => {
            let sock = &s.socks[usize::from(!parent)];
            let fd = OwnedFd::from(sock.try_clone().expect("dup socket"));
            (Box::new(FdTx(dup(&fd))), Box::new(FdRx(fd)))
        }
        "uds-seqpacket" => {
            let sock = &s.socks[usize::from(!parent)];
            (
                Box::new(SeqTx(sock.try_clone().expect("dup"))),
                Box::new(SeqRx(sock.try_clone().expect("dup"))),
            )
        }
        "eventfd" => {
            let (fo, fi) = if parent { (0, 1) } else { (1, 0) };
            (
                Box::new(EvTx {
                    fd: dup(&s.fds[fo]),
                    buf: s.shm.region(&format!("buf-{out}")),
                }),
                Box::new(EvRx {
                    fd: dup(&s.fds[fi]),
                    buf: s.shm.region(&format!("buf-{inn}")),
                }),
            )
        }
        other => panic!("no endpoints for {other}"),
    }
}

/// Elements of `n` bytes per SPSC ring: 4096, or what fits the 4 MiB of slots (64 at 64 KiB:
/// a ring larger than L2 lets large messages reach the reader through the shared L3 instead of
/// one probe of the writer's L2 per cache line, 3–4x the bandwidth on this machine).
pub(crate) const fn spsc_capacity(n: usize) -> u64 {
    let fit = (RING as usize / n) as u64;
    if fit < 4096 { fit } else { 4096 }
}

/// Lays out both directions' rings for `transport` and `size` (before the fork): the stamped
/// SPSC ring for the copying transports, the contiguous SPSC ring for the chunk API.
fn ring_init(s: &Setup, transport: &str, size: usize) {
    fn go<const N: usize>(p: *mut u8, l: usize, chunk: bool)
    where
        [u8; N]: bytemuck::Pod,
    {
        let cap = spsc_capacity(N);
        // SAFETY: not yet shared (called before the fork).
        unsafe {
            if chunk {
                SpscRing::<[u8; N]>::init(p, l, cap, 0)
            } else {
                StampedRing::<[u8; N]>::init(p, l, cap, 0)
            }
        }
        .expect("spsc init");
    }
    if transport == "shmlane-mpmc-spin" {
        mpmc_init(s, size);
        return;
    }
    if !transport.starts_with("shmlane-spsc") {
        return;
    }
    let chunk = transport == "shmlane-spsc-chunk";
    for dir in ["ab", "ba"] {
        let (p, l) = s.shm.region(&format!("ring-{dir}"));
        match size {
            8 => go::<8>(p, l, chunk),
            64 => go::<64>(p, l, chunk),
            1024 => go::<1024>(p, l, chunk),
            65536 => go::<65536>(p, l, chunk),
            other => panic!("no SPSC ring for {other}-byte messages"),
        }
    }
}

/// MPMC rings: 4096 elements, or the largest power of two that fits the region.
fn mpmc_init(s: &Setup, size: usize) {
    fn go<const N: usize>(p: *mut u8, l: usize)
    where
        [u8; N]: bytemuck::Pod,
    {
        let mut cap = 4096;
        while MpmcRing::<[u8; N]>::required_size(cap) > l {
            cap /= 2;
        }
        // SAFETY: not yet shared (called before the fork).
        unsafe { MpmcRing::<[u8; N]>::init(p, l, cap, 0) }.expect("mpmc init");
    }
    for dir in ["ab", "ba"] {
        let (p, l) = s.shm.region(&format!("ring-{dir}"));
        match size {
            8 => go::<8>(p, l),
            64 => go::<64>(p, l),
            1024 => go::<1024>(p, l),
            _ => go::<65536>(p, l),
        }
    }
}

/// Forks; the child maps every page of the segment (a child starts with none of a shared
/// mapping's pages mapped), runs `child` pinned to `child_core` and `_exit`s; the parent runs
/// `parent` pinned to core 0, then reaps the child.
///
/// A failed row leaves nothing behind (review rev18): a child that panics ends there with
/// status 101 (its panic never unwinds through the caller's frames, whose destructors belong
/// to the parent), and the parent then panics too, naming it; a parent that panics kills and
/// reaps its child before the panic goes on, and a parent process that dies takes its child
/// with it (`PR_SET_PDEATHSIG`). Before, either side's failure left the other waiting, a raw
/// ring's child spinning for ever.
pub(crate) fn forked<R>(
    shm: &Shm,
    child_core: usize,
    child: impl FnOnce(),
    parent: impl FnOnce() -> R,
) -> R {
    /// Kills and reaps the child unless disarmed (the parent's side unwinding).
    struct Reap(Option<nix::unistd::Pid>);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
        }
    }
    let parent_pid = std::process::id();
    // SAFETY: the harness is single-threaded when it forks; the child only runs `child` on
    // inherited memory and descriptors, then `_exit`s without running destructors.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            // A parent that died before the line above sent no signal.
            if std::os::unix::process::parent_id() != parent_pid {
                // SAFETY: always safe.
                unsafe { libc::_exit(101) };
            }
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pin(child_core);
                shm.seg.prefault();
                child();
            }))
            .is_ok();
            // SAFETY: always safe; no destructors run in the forked child.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let mut reap = Reap(Some(child));
            pin(0);
            let outer = CHILD.with(|c| c.replace(Some(child)));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(parent));
            CHILD.with(|c| c.set(outer));
            let r = r.unwrap_or_else(|e| std::panic::resume_unwind(e));
            // The child ends with its last message; one that does not within the harness's
            // limit is stuck (the guard kills and reaps it as the panic goes on).
            let t0 = Instant::now();
            let status = loop {
                match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                    .expect("waitpid")
                {
                    nix::sys::wait::WaitStatus::StillAlive => {
                        assert!(
                            t0.elapsed() < CHILD_LIMIT,
                            "the measurement's child process did not end within {CHILD_LIMIT:?}"
                        );
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    status => break status,
                }
            };
            reap.0 = None;
            assert!(
                matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
                "the measurement's child process failed ({status:?}; its message is above)"
            );
            r
        }
    }
}

/// How long a measurement's child may take to end once the parent's side is done.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

thread_local! {
    /// The child of the [`forked`] call running on this thread (parent side), if any.
    static CHILD: core::cell::Cell<Option<nix::unistd::Pid>> = const { core::cell::Cell::new(None) };
}

/// Whether the child of the running [`forked`] call has ended (it is left to be reaped).
fn child_ended() -> bool {
    let Some(pid) = CHILD.with(core::cell::Cell::get) else {
        return false;
    };
    // SAFETY: all-zero is a valid `siginfo_t`; waitid only writes it.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: a valid pointer to `info`; WNOWAIT leaves the child to `forked`'s waitpid.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid.as_raw() as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: filled in by waitid for a child that ended, zero otherwise.
    r == 0 && unsafe { info.si_pid() } != 0
}

/// The parent's wait for a word its child sets (ready, the streaming time), sleeping `pause`
/// between looks; panics if the child ended without setting it (review rev18: a child that
/// failed left the parent sleeping here for ever).
pub(crate) fn await_child_word(word: &AtomicU64, pause: Duration) -> u64 {
    let mut since_check = Duration::ZERO;
    loop {
        // ORDERING: Acquire; pairs with the child's Release store of the word.
        let v = word.load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        if since_check >= Duration::from_millis(10) {
            since_check = Duration::ZERO;
            // One more look: the child may have set it just before it ended.
            assert!(
                !child_ended() || word.load(Ordering::Acquire) != 0,
                "the measurement's child process ended without its figure (its message is above)"
            );
        }
        std::thread::sleep(pause);
        since_check += pause;
    }
}

/// The child's side of a round trip: receive, send back, `n` times.
pub(crate) struct Echo {
    pub(crate) size: usize,
    pub(crate) n: u64,
}
impl Job for Echo {
    type Out = ();
    fn run<T: Tx, R: Rx>(self, mut tx: T, mut rx: R) {
        let mut buf = vec![0u8; self.size];
        for _ in 0..self.n {
            rx.recv(&mut buf);
            tx.send(&buf);
        }
    }
}

/// The parent's side of a round trip: send, wait for the echo, time it.
pub(crate) struct Ping {
    pub(crate) size: usize,
    pub(crate) n: u64,
}
impl Job for Ping {
    type Out = Vec<u64>;
    fn run<T: Tx, R: Rx>(self, mut tx: T, mut rx: R) -> Vec<u64> {
        let msg = vec![0x5au8; self.size];
        let mut back = vec![0u8; self.size];
        let mut times = Vec::with_capacity(self.n as usize);
        for _ in 0..self.n {
            let t0 = Instant::now();
            tx.send(&msg);
            rx.recv(&mut back);
            times.push(t0.elapsed().as_nanos() as u64);
        }
        black_box(&back);
        times
    }
}

/// Round trips of `size`-byte messages; returns per-round-trip nanoseconds.
pub fn rtt(transport: &str, size: usize, n: u64, same_core: bool) -> Vec<u64> {
    if crate::chan::handles(transport) {
        return crate::chan::rtt(transport, size, n, same_core);
    }
    if crate::latest::handles(transport) {
        return crate::latest::rtt(transport, size, n, same_core);
    }
    if crate::wait::handles(transport) {
        return crate::wait::rtt(transport, size, n, same_core);
    }
    let s = setup(transport);
    ring_init(&s, transport, size);
    forked(
        &s.shm,
        usize::from(!same_core),
        || with_endpoints(&s, transport, size, false, Echo { size, n }),
        || with_endpoints(&s, transport, size, true, Ping { size, n }),
    )
}

/// The streaming sender: `n` messages as fast as the transport takes them.
pub(crate) struct Stream {
    pub(crate) size: usize,
    pub(crate) n: u64,
}
impl Job for Stream {
    type Out = ();
    fn run<T: Tx, R: Rx>(self, mut tx: T, _rx: R) {
        let msg = vec![0x5au8; self.size];
        for _ in 0..self.n {
            tx.send(&msg);
        }
    }
}

/// The streaming receiver.
pub(crate) struct Drain {
    pub(crate) size: usize,
    pub(crate) n: u64,
}
impl Job for Drain {
    type Out = ();
    fn run<T: Tx, R: Rx>(self, _tx: T, mut rx: R) {
        let mut buf = vec![0u8; self.size];
        for _ in 0..self.n {
            rx.recv(&mut buf);
        }
        black_box(&buf);
    }
}

/// Streams `n` messages of `size` bytes from the parent to the child; returns the elapsed
/// time until the child had the last one (measured in the child, sent back through a word).
/// The clock starts once the child is ready (forked, pinned, its pages mapped): before that
/// handshake the child's start-up, 4–7 ms here, was timed too, a large part of a short
/// (`--quick`) measurement.
pub fn throughput(transport: &str, size: usize, n: u64, same_core: bool) -> Duration {
    if transport == "memcpy" {
        return memcpy(size, n);
    }
    if crate::chan::handles(transport) {
        return crate::chan::throughput(transport, size, n, same_core);
    }
    let s = setup(transport);
    ring_init(&s, transport, size);
    let start = s.shm.word(0);
    let took = s.shm.word(1);
    let ready = s.shm.word(2);
    let chunk = transport == "shmlane-spsc-chunk";
    forked(
        &s.shm,
        usize::from(!same_core),
        || {
            // ORDERING: Release; pairs with the parent's Acquire load before it starts the clock.
            ready.store(1, Ordering::Release);
            // ORDERING: Acquire; pairs with the parent's Release store of the start time.
            while start.load(Ordering::Acquire) == 0 {
                core::hint::spin_loop();
            }
            if chunk {
                chunk_consume(&s, size, n);
            } else {
                with_endpoints(&s, transport, size, false, Drain { size, n });
            }
            let end = monotonic_ns();
            // ORDERING: Release; pairs with the parent's Acquire load.
            took.store(end - start.load(Ordering::Relaxed), Ordering::Release);
        },
        || {
            // Pairs with the child's Release store of `ready`. Sleeps, not spins: with
            // `--same-core` the child needs this core to get ready.
            await_child_word(ready, Duration::from_micros(20));
            // ORDERING: Release; pairs with the child's Acquire load.
            start.store(monotonic_ns(), Ordering::Release);
            if chunk {
                chunk_produce(&s, size, n);
            } else {
                with_endpoints(&s, transport, size, true, Stream { size, n });
            }
            // Pairs with the child's Release store.
            Duration::from_nanos(await_child_word(took, Duration::from_micros(50)))
        },
    )
}

/// The zero-copy producer: fills messages in place in the ring (the "ab" SPSC ring of
/// `[u8; size]` elements), as many per chunk as there is room for, up to `CHUNK_MAX`: what a
/// producer with messages ready (an audio block, a burst of quotes) does with the chunk API.
/// One chunk, one position store.
fn chunk_produce(s: &Setup, size: usize, n: u64) {
    fn go<const N: usize>(s: &Setup, n: u64)
    where
        [u8; N]: bytemuck::Pod,
    {
        let (p, l) = s.shm.region("ring-ab");
        // SAFETY: as in `with_endpoints`; nobody else attaches to "ring-ab" here.
        let mut prod =
            unsafe { SpscRing::<[u8; N]>::producer(p, l, 3, &|_| true) }.expect("producer");
        let mut i = 0u64;
        while i < n {
            let mut w = match prod.write_chunk(chunk_want(n - i, N)) {
                Ok(w) => w,
                Err(e) => match room(e) {
                    0 => {
                        core::hint::spin_loop();
                        continue;
                    }
                    k => prod.write_chunk(k).expect("room just seen"),
                },
            };
            // SAFETY: both benchmark processes are ours and cooperate: no one else touches the
            // reserved slots while the slices live.
            let (a, b) = unsafe { w.as_mut_slices() };
            for m in a.iter_mut().chain(b.iter_mut()) {
                m.fill(i as u8);
                i += 1;
            }
            w.commit_all();
        }
    }
    match size {
        8 => go::<8>(s, n),
        64 => go::<64>(s, n),
        1024 => go::<1024>(s, n),
        _ => go::<65536>(s, n),
    }
}

/// Messages of `size` bytes asked for per chunk: what is left, at most `CHUNK_MAX` and at
/// most `CHUNK_BYTES` (at least one).
fn chunk_want(left: u64, size: usize) -> usize {
    left.min(CHUNK_MAX).min((CHUNK_BYTES / size as u64).max(1)) as usize
}

/// How many slots a chunk can take now, after the full chunk asked for was refused.
fn room(e: shmlane_ring::ChunkError) -> usize {
    match e {
        shmlane_ring::ChunkError::TooFewSlots(k) => k,
        e @ shmlane_ring::ChunkError::Corrupt => panic!("ring: {e}"),
    }
}

/// The zero-copy consumer: reads each message in place (one byte per cache line), as many as
/// are there (up to `CHUNK_MAX`) per chunk.
fn chunk_consume(s: &Setup, size: usize, n: u64) {
    fn go<const N: usize>(s: &Setup, n: u64)
    where
        [u8; N]: bytemuck::Pod,
    {
        let (p, l) = s.shm.region("ring-ab");
        // SAFETY: as in `chunk_produce`.
        let mut cons =
            unsafe { SpscRing::<[u8; N]>::consumer(p, l, 4, &|_| true) }.expect("consumer");
        let mut sum = 0u64;
        let mut i = 0u64;
        while i < n {
            let r = match cons.read_chunk(chunk_want(n - i, N)) {
                Ok(r) => r,
                Err(e) => match room(e) {
                    0 => {
                        core::hint::spin_loop();
                        continue;
                    }
                    k => cons.read_chunk(k).expect("elements just seen"),
                },
            };
            let k = r.len();
            // SAFETY: as in `chunk_produce`: the producer process is ours and leaves the
            // borrowed slots alone until we commit.
            let (a, b) = unsafe { r.as_slices() };
            for m in a.iter().chain(b.iter()) {
                for x in m.iter().step_by(64) {
                    sum = sum.wrapping_add(u64::from(*x));
                }
            }
            i += k as u64;
            r.commit_all();
        }
        black_box(sum);
    }
    match size {
        8 => go::<8>(s, n),
        64 => go::<64>(s, n),
        1024 => go::<1024>(s, n),
        _ => go::<65536>(s, n),
    }
}

/// One thread copying `n` messages of `size` bytes into a 64 MiB buffer, cyclically: the
/// destination is larger than the last-level cache (32 MiB on this machine kind), so this is
/// the bandwidth of copying to memory, what a transport's bulk figure is measured against.
fn memcpy(size: usize, n: u64) -> Duration {
    fn go<const N: usize>(n: u64) -> Duration {
        pin(0);
        let src = [0x5au8; N];
        let mut dst = vec![0u8; 64 << 20];
        let slots = dst.len() / N;
        // Fault the destination in first: nothing timed pays for first touches.
        dst.fill(1);
        let t0 = Instant::now();
        let mut at = 0;
        for _ in 0..n {
            dst[at * N..(at + 1) * N].copy_from_slice(&src);
            at += 1;
            if at == slots {
                at = 0;
            }
        }
        black_box(&dst);
        t0.elapsed()
    }
    match size {
        8 => go::<8>(n),
        64 => go::<64>(n),
        1024 => go::<1024>(n),
        _ => go::<65536>(n),
    }
}

/// One round's figure of a record, with the hardware cache-line ping-pong measured just
/// before it (the VM's state at that moment: 110 ns fast, 430–490 ns slow on the AMD EPYC host).
#[derive(Clone, Copy, Debug)]
pub struct RoundFigure {
    /// This round's percentiles (rtt).
    pub rtt: Option<Summary>,
    /// This round's messages per second (throughput).
    pub msgs_per_s: Option<f64>,
    /// p50 of the `hw-cacheline` ping-pong measured just before (None on a one-core machine).
    pub hw_p50_ns: Option<u64>,
}

/// One measurement, as in the JSON contract.
#[derive(Clone, Debug)]
pub struct Record {
    /// Transport name.
    pub transport: &'static str,
    /// `rtt` or `throughput`.
    pub metric: &'static str,
    /// Message size in bytes.
    pub msg_size: usize,
    /// Round trips or messages measured.
    pub samples: u64,
    /// Percentiles (rtt).
    pub rtt: Option<Summary>,
    /// Messages per second (throughput): the median of the rounds' rates.
    pub msgs_per_s: Option<f64>,
    /// Each round's figure and the hardware ping-pong beside it, in round order.
    pub rounds: Vec<RoundFigure>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{Shm, forked};
    use std::{
        panic::{AssertUnwindSafe, catch_unwind},
        sync::atomic::Ordering,
        time::{Duration, Instant},
    };

    /// Forking tests one at a time: a fork while another test thread holds a lock the
    /// child's panic needs (the backtrace printer's, with RUST_BACKTRACE set) left the child
    /// hung in its panic hook.
    pub(crate) static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub(crate) fn one_fork_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        FORKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether process `pid` still exists (a zombie counts: not reaped).
    fn exists(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    /// Review rev18: a row whose parent side panics (a failed send, a spin limit) must not
    /// leave its child behind: on b50a81c the child, waiting for a message that never comes,
    /// kept running (a raw ring's child spins for ever at 100 % of a core).
    #[test]
    fn a_panicking_parent_leaves_no_child_behind() {
        let _one = one_fork_at_a_time();
        let shm = Shm::new();
        let pid = shm.word(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            forked(
                &shm,
                0,
                || {
                    // ORDERING: Relaxed; the parent only reads the number.
                    pid.store(u64::from(std::process::id()), Ordering::Relaxed);
                    // A child waiting for its peer's next message.
                    loop {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                },
                || {
                    // ORDERING: Relaxed; as above.
                    while pid.load(Ordering::Relaxed) == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    panic!("the row failed in the parent");
                },
            )
        }));
        assert!(r.is_err());
        let child = i32::try_from(pid.load(Ordering::Relaxed)).unwrap();
        let left = exists(child);
        if left {
            // Clean up what the harness left.
            // SAFETY: our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
        }
        assert!(!left, "child {child} still there after the parent's panic");
    }

    /// Review rev18: a child that panics must end there, with its failure reported to the
    /// parent; on b50a81c its panic unwound through the caller's frames in the child (running
    /// the parent's destructors there: a channel's, the segment's) and the parent's `forked`
    /// returned as if the row had run.
    #[test]
    fn a_panicking_child_runs_no_parent_code_and_fails_the_row() {
        struct Guard<'a>(&'a std::sync::atomic::AtomicU64, u32);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if std::process::id() != self.1 {
                    // ORDERING: Relaxed; read after the child was reaped.
                    self.0.store(1, Ordering::Relaxed);
                }
            }
        }
        let _one = one_fork_at_a_time();
        let shm = Shm::new();
        let ran = shm.word(2);
        let t0 = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _g = Guard(ran, std::process::id());
            forked(&shm, 0, || panic!("the row failed in the child"), || 5)
        }));
        // ORDERING: Relaxed; the child was reaped.
        let ran = ran.load(Ordering::Relaxed);
        assert_eq!(ran, 0, "the child ran the caller's destructors");
        assert!(r.is_err(), "the parent did not notice its child failed");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    /// Review rev18: a parent waiting for its child's figure (the streaming time) stops when
    /// the child failed instead of sleeping for ever (b50a81c: the loop never ended).
    #[test]
    fn a_parent_waiting_for_a_failed_childs_figure_stops() {
        let _one = one_fork_at_a_time();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let shm = Shm::new();
            let took = shm.word(1);
            let r = catch_unwind(AssertUnwindSafe(|| {
                forked(
                    &shm,
                    0,
                    || panic!("the child's receive failed"),
                    || super::await_child_word(took, Duration::from_micros(50)),
                )
            }));
            done.send(r.is_err()).unwrap();
        });
        let failed = wait.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            failed,
            Ok(true),
            "the parent still waits (or returned a figure)"
        );
    }
}
