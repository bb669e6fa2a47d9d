//! The iceoryx2 rows: publish-subscribe and events between two forked processes, used as the
//! crate's own examples use it (a node, a service by name, ports from the service's builders,
//! `loan_slice_uninit` / `write_from_slice` / `send`, `receive`).
//!
//! Configuration: iceoryx2's defaults (no config file, `ipc::Service`, default quality of
//! service) except where a row cannot work without a setting, each said where it is set:
//! the publisher's `initial_max_slice_len` (the message size: a `[u8]` payload needs its
//! length), and for streaming `enable_safe_overflow(false)` (the default overwrites the oldest
//! unread sample, which would drop messages instead of measuring them; with it off, a publisher
//! that finds the subscriber's buffer full waits, iceoryx2's default `RetryUntilDelivered`).
//! The subscriber buffer stays at its default of 2: 16, 256 and 4096 gave the same streaming
//! rate within noise here (2026-11-28, 8 B and 1 KiB).
//!
//! Each process makes its own node and ports after the fork (nothing of iceoryx2 crosses the
//! fork), under service names unique to this measurement; the parent creates the services, the
//! child opens them, and both sides' ports exist before the first message (two pipes sequence
//! the setup; a side that fails closes its pipe, and the other stops with its message instead
//! of waiting forever). Everything is dropped, and iceoryx2's files removed, before the child
//! exits.

use std::{
    cell::Cell,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use iceoryx2::prelude::*;
use shmlane_wake::sys::monotonic_ns;

use crate::xproc::{Shm, forked};

/// Service names unique to one measurement of this process.
fn names(kind: &str) -> (String, String) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed; only uniqueness matters.
    let k = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = format!("shmlane-bench/{}/{k}/{kind}", std::process::id());
    (format!("{base}/ab"), format!("{base}/ba"))
}

/// Two pipes that sequence the setup of the two processes: "to child" (read end 0, write
/// end 1) and "to parent" (read end 2, write end 3). Each side drops the other side's ends, so
/// that a side that fails before its byte closes the pipe and the other reads EOF.
struct Gates([Cell<Option<OwnedFd>>; 4]);

impl Gates {
    fn new() -> Self {
        let (a, b) = nix::unistd::pipe().expect("pipe");
        let (c, d) = nix::unistd::pipe().expect("pipe");
        Self([a, b, c, d].map(|fd| Cell::new(Some(fd))))
    }

    fn raw(&self, i: usize) -> RawFd {
        let fd = self.0[i].take().expect("gate end");
        let raw = fd.as_raw_fd();
        self.0[i].set(Some(fd));
        raw
    }

    /// The child's (wait, signal) ends; drops the parent's.
    fn child(&self) -> (RawFd, RawFd) {
        drop((self.0[1].take(), self.0[2].take()));
        (self.raw(0), self.raw(3))
    }

    /// The parent's (wait, signal) ends; drops the child's.
    fn parent(&self) -> (RawFd, RawFd) {
        drop((self.0[0].take(), self.0[3].take()));
        (self.raw(2), self.raw(1))
    }

    /// One byte to the other side.
    fn open(fd: RawFd) {
        // SAFETY: writes one byte from a valid buffer to a pipe end `Gates` owns.
        let n = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
        assert_eq!(n, 1, "gate write");
    }

    /// Waits for the other side's byte; panics with `what` if the other side closed its end
    /// (it failed, and said why on stderr).
    fn wait(fd: RawFd, what: &str) {
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into a valid buffer from a pipe end `Gates` owns.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        assert_eq!(
            n, 1,
            "{what}: the other process failed (its message is above)"
        );
    }
}

/// Runs `f` in the child; a panic (an iceoryx2 error) ends the child with status 101 after its
/// message, closing its gate so the parent stops too. The child is killed if the thread that
/// forked it ends (a parent that panicked mid-measurement would otherwise leave it blocked in
/// `blocking_wait` or polling `receive` forever).
fn child_side(f: impl FnOnce()) {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        // SAFETY: always safe; no destructors run in the forked child.
        unsafe { libc::_exit(101) };
    }
}

fn node() -> Node<ipc::Service> {
    // iceoryx2 warns on stderr that it found no config file and uses its defaults, which is
    // what this harness wants; errors still show. (Logging only: no effect on the ports.)
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node")
}

/// The parent's node; it first removes what dead nodes left behind (a run killed
/// mid-measurement leaves its node's files and shared memory), outside any timing.
fn parent_node() -> Node<ipc::Service> {
    let node = node();
    let _ = node.try_cleanup_dead_nodes();
    node
}

fn service_name(s: &str) -> ServiceName {
    s.try_into().expect("iceoryx2 service name")
}

type PubSub =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>;

/// The publish-subscribe service `name`: created by the parent, opened by the child.
fn pubsub_service(node: &Node<ipc::Service>, name: &str, create: bool, stream: bool) -> PubSub {
    let b = node
        .service_builder(&service_name(name))
        .publish_subscribe::<[u8]>();
    // Streaming: no overwriting of unread samples (module docs).
    let b = if stream {
        b.enable_safe_overflow(false)
    } else {
        b
    };
    if create {
        b.create().expect("iceoryx2 publish-subscribe service")
    } else {
        b.open().expect("iceoryx2 publish-subscribe service (open)")
    }
}

type Publisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
type Subscriber = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;

fn publisher(s: &PubSub, size: usize) -> Publisher {
    s.publisher_builder()
        // A `[u8]` payload needs its largest length.
        .initial_max_slice_len(size)
        .create()
        .expect("iceoryx2 publisher")
}

fn subscriber(s: &PubSub) -> Subscriber {
    s.subscriber_builder()
        .create()
        .expect("iceoryx2 subscriber")
}

/// Writes `msg` into a loaned sample and sends it.
#[inline]
fn send(p: &Publisher, msg: &[u8]) {
    let sample = p.loan_slice_uninit(msg.len()).expect("iceoryx2 loan");
    sample.write_from_slice(msg).send().expect("iceoryx2 send");
}

/// Busy-polls for the next sample and copies its payload into `buf`.
#[inline]
fn recv(s: &Subscriber, buf: &mut [u8]) {
    loop {
        if let Some(sample) = s.receive().expect("iceoryx2 receive") {
            buf.copy_from_slice(sample.payload());
            return;
        }
        core::hint::spin_loop();
    }
}

/// Publish-subscribe round trips of `size`-byte messages: the parent (core 0) publishes on
/// "ab", the child (core `other`) copies each sample out and publishes it back on "ba".
pub(super) fn pubsub_rtt(size: usize, n: u64, other: usize) -> Vec<u64> {
    let (ab, ba) = names("pubsub");
    let gates = Gates::new();
    let shm = Shm::new();
    forked(
        &shm,
        other,
        || {
            child_side(|| {
                let (wait, done) = gates.child();
                Gates::wait(wait, "iceoryx2 services");
                let node = node();
                let (sab, sba) = (
                    pubsub_service(&node, &ab, false, false),
                    pubsub_service(&node, &ba, false, false),
                );
                let (sub, publ) = (subscriber(&sab), publisher(&sba, size));
                Gates::open(done);
                let mut buf = vec![0u8; size];
                for _ in 0..n {
                    recv(&sub, &mut buf);
                    send(&publ, &buf);
                }
            });
        },
        || {
            let (wait, go) = gates.parent();
            let node = parent_node();
            let (sab, sba) = (
                pubsub_service(&node, &ab, true, false),
                pubsub_service(&node, &ba, true, false),
            );
            let (publ, sub) = (publisher(&sab, size), subscriber(&sba));
            Gates::open(go);
            Gates::wait(wait, "iceoryx2 publish-subscribe echo");
            let msg = vec![0x5au8; size];
            let mut back = vec![0u8; size];
            let mut times = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let t0 = Instant::now();
                send(&publ, &msg);
                recv(&sub, &mut back);
                times.push(t0.elapsed().as_nanos() as u64);
            }
            assert_eq!(back, msg, "iceoryx2 echo changed the payload");
            times
        },
    )
}

/// Publish-subscribe streaming: the parent publishes `n` messages on "ab", the child receives
/// and copies out each; the time from the parent's start to the child's last receive.
pub(super) fn pubsub_throughput(size: usize, n: u64, other: usize) -> Duration {
    let (ab, _) = names("stream");
    let gates = Gates::new();
    let shm = Shm::new();
    let (start, took) = (shm.word(0), shm.word(1));
    forked(
        &shm,
        other,
        || {
            child_side(|| {
                let (wait, done) = gates.child();
                Gates::wait(wait, "iceoryx2 service");
                let node = node();
                let sub = subscriber(&pubsub_service(&node, &ab, false, true));
                Gates::open(done);
                let mut buf = vec![0u8; size];
                // ORDERING: Acquire; pairs with the parent's Release store of the start time.
                while start.load(Ordering::Acquire) == 0 {
                    core::hint::spin_loop();
                }
                for _ in 0..n {
                    recv(&sub, &mut buf);
                }
                std::hint::black_box(&buf);
                let end = monotonic_ns();
                // ORDERING: Release; pairs with the parent's Acquire load.
                took.store(end - start.load(Ordering::Relaxed), Ordering::Release);
            });
        },
        || {
            let (wait, go) = gates.parent();
            let node = parent_node();
            let service = pubsub_service(&node, &ab, true, true);
            let publ = publisher(&service, size);
            Gates::open(go);
            Gates::wait(wait, "iceoryx2 subscriber");
            let msg = vec![0x5au8; size];
            // ORDERING: Release; pairs with the child's Acquire load.
            start.store(monotonic_ns(), Ordering::Release);
            for _ in 0..n {
                send(&publ, &msg);
            }
            // Stops if the child ended without its figure (review rev18, F4).
            Duration::from_nanos(crate::xproc::await_child_word(
                took,
                Duration::from_micros(50),
            ))
        },
    )
}

type EventService = iceoryx2::service::port_factory::event::PortFactory<ipc::Service>;

fn event_service(node: &Node<ipc::Service>, name: &str, create: bool) -> EventService {
    let b = node.service_builder(&service_name(name)).event();
    if create {
        b.create().expect("iceoryx2 event service")
    } else {
        b.open().expect("iceoryx2 event service (open)")
    }
}

type Notifier = iceoryx2::port::notifier::Notifier<ipc::Service>;
type Listener = iceoryx2::port::listener::Listener<ipc::Service>;

/// The event id of round trip `i`: 1 to 200 (the default largest id is 255).
fn event_id(i: u64) -> usize {
    1 + (i % 200) as usize
}

/// Blocks until the next event and returns its id.
fn wait_event(l: &Listener) -> usize {
    let mut got = None;
    while got.is_none() {
        l.blocking_wait(|a| got = Some(a.id.as_value()))
            .expect("iceoryx2 wait");
    }
    got.expect("an event")
}

fn notify(nf: &Notifier, id: usize) {
    let reached = nf
        .notify_with_custom_event_id(EventId::new(id))
        .expect("iceoryx2 notify");
    assert_eq!(reached, 1, "iceoryx2 notify reached {reached} listeners");
}

/// Event round trips: the parent (core 0) notifies on "ab" with the round trip's id and blocks
/// on "ba"; the child blocks on "ab" and notifies back with the id it got (the 8 bytes an
/// event carries, checked on return).
pub(super) fn event_rtt(n: u64, other: usize) -> Vec<u64> {
    let (ab, ba) = names("event");
    let gates = Gates::new();
    let shm = Shm::new();
    forked(
        &shm,
        other,
        || {
            child_side(|| {
                let (wait, done) = gates.child();
                Gates::wait(wait, "iceoryx2 event services");
                let node = node();
                let (sab, sba) = (
                    event_service(&node, &ab, false),
                    event_service(&node, &ba, false),
                );
                let listener = sab.listener_builder().create().expect("listener");
                let notifier = sba.notifier_builder().create().expect("notifier");
                Gates::open(done);
                for _ in 0..n {
                    let id = wait_event(&listener);
                    notify(&notifier, id);
                }
            });
        },
        || {
            let (wait, go) = gates.parent();
            let node = parent_node();
            let (sab, sba) = (
                event_service(&node, &ab, true),
                event_service(&node, &ba, true),
            );
            let notifier = sab.notifier_builder().create().expect("notifier");
            let listener = sba.listener_builder().create().expect("listener");
            Gates::open(go);
            Gates::wait(wait, "iceoryx2 event echo");
            let mut times = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t0 = Instant::now();
                notify(&notifier, event_id(i));
                let back = wait_event(&listener);
                times.push(t0.elapsed().as_nanos() as u64);
                assert_eq!(back, event_id(i), "iceoryx2 event id changed");
            }
            times
        },
    )
}
