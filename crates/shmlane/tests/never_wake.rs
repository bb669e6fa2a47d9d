//! Never-waking endpoints (`Wakes::Never`): the real-time side makes no wake-up (no futex
//! call: its side's `wakeups` statistic stays 0) even while its peer sleeps in a blocking call,
//! and that peer still sees its progress within `NEVER_WAKE_POLL` plus scheduling, because
//! every blocking wait reads the header's count of never-waking peers and parks at most 1 ms
//! per slice while it is not 0. Without the count the peer would park for its liveness slice
//! (`PEER_CHECK`, 50 ms) and see the progress up to 50 ms late.
//!
//! The bound checked: over `ROUNDS` rounds in which the never-waking side frees a slot (or
//! sends a message) 110 ms after the peer blocked, the time from that operation to the peer's
//! blocked call returning is `NEVER_WAKE_POLL` plus the scheduler's delay: on a quiet machine
//! every round takes about 1 ms or less; with 50 ms slices every round would take about 40 ms
//! (110 ms is 10 ms past a slice boundary). Asserted: at least `FAST_ROUNDS` of the rounds within
//! `BOUND` (20 ms), which a machine loaded to the point of 10-50 ms scheduling delays still
//! passes (some rounds get the CPU at once) and 50 ms slices never do.

use std::{
    os::unix::fs::FileExt,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use shmlane::{Deadline, NEVER_WAKE_POLL, RecvError, SendError, UnlinkPolicy, WaitStrategy, Wakes};
use shmlane_testkit::{Cleanup, unique};

const ROUNDS: usize = 9;
const GAP: Duration = Duration::from_millis(110);
const BOUND: Duration = Duration::from_millis(20);
const FAST_ROUNDS: usize = 2;

/// A deadline for calls that must succeed: far past any bound, so a hang fails the test.
#[allow(
    clippy::unnecessary_wraps,
    reason = "passed where the calls take an Option"
)]
fn long() -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(5)))
}

/// Offset of the channel header in the segment file.
fn chan_at(name: &str) -> u64 {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    info.regions
        .iter()
        .find(|r| r.name == "chan")
        .unwrap()
        .offset
}

/// The header's never-waking count of a side (0 senders, 1 receivers): bytes 80 and 88.
fn never_word(name: &str, side: u64) -> u64 {
    let f = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, chan_at(name) + 80 + 8 * side)
        .unwrap();
    u64::from_ne_bytes(b)
}

fn set_never_word(name: &str, side: u64, v: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&v.to_ne_bytes(), chan_at(name) + 80 + 8 * side)
        .unwrap();
}

/// `ROUNDS` times: waits `GAP` (the peer blocks meanwhile), runs `op` (the never-waking side
/// frees a slot or sends), then waits for the peer's report that its blocked call returned.
/// Returns the delays, sorted.
fn delays(done: &mpsc::Receiver<Instant>, mut op: impl FnMut(usize)) -> Vec<Duration> {
    let mut out = Vec::new();
    for r in 0..ROUNDS {
        thread::sleep(GAP);
        let at = Instant::now();
        op(r);
        let back = done
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocked peer never returned");
        out.push(back.saturating_duration_since(at));
    }
    out.sort();
    out
}

/// `d` sorted: at least `FAST_ROUNDS` delays within `BOUND`.
fn check_delays(what: &str, d: &[Duration]) {
    eprintln!("{what}: delays {d:?} (median {:?})", d[d.len() / 2]);
    assert!(
        d[FAST_ROUNDS - 1] < BOUND,
        "{what}: the blocked peer saw the never-waking side's progress late: fewer than \
         {FAST_ROUNDS} of {} rounds within {BOUND:?}: {d:?}",
        d.len()
    );
}

#[test]
fn a_full_ring_sender_sees_a_never_waking_consumer_free_slots() {
    let name = unique("never-full");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(4)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    rx.set_wakes(Wakes::Never);
    assert_eq!(never_word(&name, 1), 1);
    let mut tx = ch.producer().unwrap();
    for i in 0..4 {
        tx.try_send(i).unwrap();
    }
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        for i in 4..4 + ROUNDS as u64 {
            tx.send(i, long()).unwrap();
            report.send(Instant::now()).unwrap();
        }
        tx
    });
    let d = delays(&done, |r| assert_eq!(rx.try_recv().unwrap(), r as u64));
    let mut tx = t.join().unwrap();
    check_delays("send on a full ring", &d);
    assert!(
        tx.stats().sleeps >= ROUNDS as u64,
        "the sender never blocked"
    );
    assert_eq!(
        rx.stats().wakeups,
        0,
        "the never-waking consumer woke its peer"
    );
}

#[test]
fn an_empty_ring_receiver_sees_a_never_waking_producer_send() {
    let name = unique("never-empty");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(4)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    tx.set_wakes(Wakes::Never);
    assert_eq!((never_word(&name, 0), never_word(&name, 1)), (1, 0));
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        for i in 0..ROUNDS as u64 {
            assert_eq!(rx.recv(long()).unwrap(), i);
            report.send(Instant::now()).unwrap();
        }
        rx
    });
    let d = delays(&done, |r| tx.try_send(r as u64).unwrap());
    let mut rx = t.join().unwrap();
    check_delays("recv on an empty ring", &d);
    assert!(
        rx.stats().sleeps >= ROUNDS as u64,
        "the receiver never blocked"
    );
    assert_eq!(
        tx.stats().wakeups,
        0,
        "the never-waking producer woke its peer"
    );
}

#[test]
fn byte_channels_both_ways() {
    let name = unique("never-bytes");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .capacity(256)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    // A never-waking sender, a receiver blocked in recv.
    let mut rx = ch.byte_receiver().unwrap();
    let mut tx = ch.byte_sender().unwrap();
    tx.set_wakes(Wakes::Never);
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for i in 0..ROUNDS {
            let n = rx.recv(&mut buf, long()).unwrap();
            assert_eq!(&buf[..n], format!("m{i}").as_bytes());
            report.send(Instant::now()).unwrap();
        }
        rx
    });
    let d = delays(&done, |r| tx.try_send(format!("m{r}").as_bytes()).unwrap());
    let mut rx = t.join().unwrap();
    check_delays("byte recv", &d);
    assert_eq!(tx.stats().wakeups, 0);
    tx.set_wakes(Wakes::Peers);
    assert_eq!(never_word(&name, 0), 0);

    // A never-waking receiver, a sender blocked in send (its claim) on a full ring.
    rx.set_wakes(Wakes::Never);
    let msg = vec![7u8; tx.max_message()];
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        for _ in 0..ROUNDS {
            // Full (a record ring may free space in larger steps than one record), then
            // the measured send, which blocks.
            while tx.try_send(&msg).is_ok() {}
            tx.send(&msg, long()).unwrap();
            report.send(Instant::now()).unwrap();
        }
        tx
    });
    let mut buf = [0u8; 256];
    let d = delays(&done, |_| assert!(rx.try_recv(&mut buf).unwrap() > 0));
    let mut tx = t.join().unwrap();
    check_delays("byte send on a full ring", &d);
    assert!(tx.stats().sleeps >= ROUNDS as u64);
    assert_eq!(rx.stats().wakeups, 0);
}

#[test]
fn a_subscriber_sees_a_never_waking_publisher() {
    let name = unique("never-bcast");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .capacity(16)
        .msg_size(32)
        .unlink(UnlinkPolicy::CreatorDrop)
        .wakes(Wakes::Never)
        .create()
        .unwrap();
    let mut publisher = ch.publisher().unwrap();
    // The builder's default counted it; a subscriber is made by a handle that wakes.
    assert_eq!(never_word(&name, 0), 1);
    let sub_ch = shmlane::broadcast(&name).open().unwrap();
    let mut sub = sub_ch.subscriber().unwrap();
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        let mut buf = [0u8; 32];
        for i in 0..ROUNDS {
            let n = sub.recv(&mut buf, long()).unwrap();
            assert_eq!(&buf[..n], format!("b{i}").as_bytes());
            report.send(Instant::now()).unwrap();
        }
        sub
    });
    let d = delays(&done, |r| {
        publisher.send(format!("b{r}").as_bytes()).unwrap();
    });
    let mut sub = t.join().unwrap();
    check_delays("subscriber recv", &d);
    assert!(sub.stats().sleeps >= ROUNDS as u64);
    assert_eq!(publisher.stats().wakeups, 0);
    drop(publisher);
    assert_eq!(
        never_word(&name, 0),
        0,
        "a dropped never-waking publisher stays counted"
    );
}

/// Deadlines hold beside a never-waking peer, and beside a hostile count: a count nobody
/// holds (`u64::MAX`, as a hostile process could write) only shortens the slices, a zeroed
/// count beside a never-waking peer only lengthens them to the liveness slice (50 ms).
#[test]
fn deadlines_hold_and_a_hostile_count_only_changes_the_slice() {
    let name = unique("never-deadline");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(2)
        .unlink(UnlinkPolicy::CreatorDrop)
        .wakes(Wakes::Never)
        .create()
        .unwrap();
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    assert_eq!((never_word(&name, 0), never_word(&name, 1)), (1, 1));
    let within = |what: &str, t: Instant, want: Duration| {
        let took = t.elapsed();
        assert!(
            took >= want && took < want + Duration::from_millis(150),
            "{what}: {took:?} for a {want:?} deadline"
        );
    };
    let d = Duration::from_millis(100);
    // Empty ring, a never-waking producer: recv times out by its deadline.
    let t = Instant::now();
    assert!(matches!(
        rx.recv(Some(Deadline::after(d))),
        Err(RecvError::Timeout)
    ));
    within("recv", t, d);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    let t = Instant::now();
    assert!(matches!(
        tx.send(3, Some(Deadline::after(d))),
        Err(SendError::Timeout(3))
    ));
    within("send", t, d);
    // Hostile: every count set to u64::MAX while both sides wake.
    tx.set_wakes(Wakes::Peers);
    rx.set_wakes(Wakes::Peers);
    set_never_word(&name, 0, u64::MAX);
    set_never_word(&name, 1, u64::MAX);
    let t = Instant::now();
    assert!(matches!(
        tx.send(3, Some(Deadline::after(d))),
        Err(SendError::Timeout(3))
    ));
    within("send beside a hostile count", t, d);
    let t2 = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        assert_eq!(rx.try_recv().unwrap(), 1);
        rx
    });
    tx.send(3, long()).unwrap();
    let mut rx = t2.join().unwrap();
    // Hostile the other way: the count zeroed under a never-waking consumer. The blocked
    // sender parks for its 50 ms liveness slices and still gets through.
    rx.set_wakes(Wakes::Never);
    set_never_word(&name, 1, 0);
    let t2 = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        assert_eq!(rx.try_recv().unwrap(), 2);
        rx
    });
    let t = Instant::now();
    tx.send(4, long()).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    t2.join().unwrap();
}

/// Switching at run time: the count follows `set_wakes` and the endpoint's drop; back on
/// `Peers` the endpoint wakes its blocked peer again (its `wakeups` count moves).
#[test]
fn switching_back_and_dropping_update_the_count() {
    let name = unique("never-switch");
    let _c = Cleanup(name.clone());
    // `Park`: the blocked sender is a registered sleeper when the slot frees (see the seccomp
    // test).
    let ch = shmlane::spsc::<u64>(&name)
        .wait(WaitStrategy::Park)
        .capacity(1)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    assert_eq!(never_word(&name, 1), 0);
    rx.set_wakes(Wakes::Never);
    rx.set_wakes(Wakes::Never); // twice: counted once
    assert_eq!(never_word(&name, 1), 1);
    rx.set_wakes(Wakes::Peers);
    assert_eq!(never_word(&name, 1), 0);
    rx.set_wakes(Wakes::Peers);
    assert_eq!(
        never_word(&name, 1),
        0,
        "a second switch back took the count below"
    );
    // Back on `Peers`: freeing a slot while the sender sleeps issues a wake-up.
    tx.try_send(0).unwrap();
    let t = thread::spawn(move || {
        tx.send(1, long()).unwrap();
        tx
    });
    thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.try_recv().unwrap(), 0);
    let tx = t.join().unwrap();
    assert_eq!(
        rx.stats().wakeups,
        1,
        "a waking consumer did not wake its sleeping peer"
    );
    // Dropped while never-waking: the count goes back to 0.
    rx.set_wakes(Wakes::Never);
    assert_eq!(never_word(&name, 1), 1);
    drop(rx);
    assert_eq!(never_word(&name, 1), 0);
    drop(tx);
    // A handle's default, then a switch to `Peers`, then a drop.
    let ch2 = shmlane::spsc::<u64>(&name)
        .wakes(Wakes::Never)
        .open()
        .unwrap();
    let mut tx = ch2.producer().unwrap();
    assert_eq!(never_word(&name, 0), 1);
    tx.set_wakes(Wakes::Peers);
    drop(tx);
    assert_eq!(never_word(&name, 0), 0);
    assert_eq!(NEVER_WAKE_POLL, Duration::from_millis(1));
}

/// poll(2) on `fd` for POLLIN, `ms` milliseconds: the number of ready descriptors (0 or 1).
fn poll_in(fd: &impl std::os::fd::AsRawFd, ms: i32) -> i32 {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&raw mut p, 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n
}

/// The pollable receiver (`RecvPoll`): its watcher looks at the ring every `NEVER_WAKE_POLL`
/// while a never-waking sender is attached, so an armed descriptor turns readable within a few
/// milliseconds of a send that woke nobody (else at its 50 ms peer check).
#[test]
fn an_armed_poll_descriptor_sees_a_never_waking_sender() {
    let name = unique("never-poll");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    tx.set_wakes(Wakes::Never);
    let mut p = shmlane::RecvPoll::new(&rx).unwrap();
    let mut d = Vec::new();
    for i in 0..ROUNDS as u64 {
        assert_eq!(p.rearm(&mut rx).unwrap(), shmlane::Armed::Waiting);
        assert_eq!(poll_in(&p, 0), 0, "readable while empty");
        // 10 ms into the watcher's 50 ms peer-check slice: without the never-waking count
        // it would see the message about 40 ms late.
        thread::sleep(Duration::from_millis(10));
        let at = Instant::now();
        tx.try_send(i).unwrap();
        assert_eq!(poll_in(&p, 5000), 1, "never readable");
        d.push(at.elapsed());
        assert_eq!(rx.try_recv().unwrap(), i);
    }
    d.sort();
    check_delays("armed poll descriptor", &d);
    assert_eq!(tx.stats().wakeups, 0);
}

/// A peer already parked for its long slice (50 ms, no never-waking peer when it parked) when
/// the consumer switches to `Never`: the switch's one notify ends that park, so the freed slot
/// is still seen within `NEVER_WAKE_POLL`, not at the end of the 50 ms slice.
#[test]
fn switching_to_never_under_a_parked_peer_loses_no_wake_up() {
    let name = unique("never-switch-parked");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(1)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    tx.try_send(0).unwrap();
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        for i in 1..=ROUNDS as u64 {
            tx.send(i, long()).unwrap();
            report.send(Instant::now()).unwrap();
        }
    });
    let d = delays(&done, |r| {
        rx.set_wakes(Wakes::Never);
        assert_eq!(rx.try_recv().unwrap(), r as u64);
        rx.set_wakes(Wakes::Peers);
    });
    t.join().unwrap();
    check_delays("send parked before the switch", &d);
}

/// A latest-value reader in `wait_changed` sees a never-waking writer's new value within the
/// short slice; the writer issued no wake-up (the senders' `wakeups` in the header, as
/// `shmlane stat` reads it, after the writer's drop published its statistics).
#[test]
fn a_latest_reader_sees_a_never_waking_writer() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Params {
        step: u64,
        gain: f32,
        pan: f32,
    }
    let name = unique("never-latest");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Params>(&name)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut w = ch.writer().unwrap();
    w.set_wakes(Wakes::Never);
    assert_eq!(never_word(&name, 0), 1);
    let mut r = ch.reader().unwrap();
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || {
        for i in 0..ROUNDS {
            let (v, _) = r.wait_changed(long()).unwrap();
            assert_eq!(v.step, i as u64);
            report.send(Instant::now()).unwrap();
        }
    });
    let d = delays(&done, |i| {
        w.write(&Params {
            step: i as u64,
            gain: 0.5,
            pan: 0.0,
        })
        .unwrap();
    });
    t.join().unwrap();
    check_delays("latest wait_changed", &d);
    drop(w);
    assert_eq!(never_word(&name, 0), 0);
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let st = shmlane::inspect(&info).unwrap();
    assert_eq!(st.sent.messages, ROUNDS as u64);
    assert_eq!(
        st.sent.wakeups, 0,
        "the never-waking writer woke its reader"
    );
}

/// The syscall-level proof: the consumer's thread runs under a seccomp filter that traps every
/// system call but the sleeps it paces itself with (and `rt_sigreturn`, for the trap handler to
/// return). With `Wakes::Never` its `try_recv`s, each freeing a slot for a producer asleep in
/// `send` on the full ring, make no system call at all; the control run with `Wakes::Peers`
/// traps `futex` (the wake-up), so the filter does see what it must.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "BPF instruction fields: small constants and x86_64 syscall numbers"
)]
mod seccomp {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

    /// System calls trapped, and the number of the last one.
    pub static TRAPPED: AtomicU64 = AtomicU64::new(0);
    pub static LAST_NR: AtomicI64 = AtomicI64::new(-1);

    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }

    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }

    /// SIGSYS handler: counts (atomics only: async-signal-safe). The trapped call is skipped.
    extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo; for SIGSYS its `_sigsys._syscall` (an int)
        // is at byte 24 on x86_64 (si_signo, si_errno, si_code, padding, `_call_addr`).
        let nr = unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() };
        // ORDERING: Relaxed; counters read after the thread said it is done (Release/Acquire
        // on `DONE` below orders them).
        LAST_NR.store(i64::from(nr), Ordering::Relaxed);
        // ORDERING: as above.
        TRAPPED.fetch_add(1, Ordering::Relaxed);
    }

    /// Installs the SIGSYS handler (process-wide) and, on the calling thread only, a filter
    /// trapping every syscall but the sleeps, `rt_sigreturn` and the exits.
    pub fn trap_all_syscalls_on_this_thread() {
        // SAFETY: a zeroed sigaction is valid; the handler only touches atomics.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            assert_eq!(
                libc::sigaction(libc::SIGSYS, &raw const sa, core::ptr::null_mut()),
                0
            );
        }
        let allowed = [
            libc::SYS_rt_sigreturn,
            libc::SYS_nanosleep,
            libc::SYS_clock_nanosleep,
            libc::SYS_exit,
            libc::SYS_exit_group,
        ];
        let stmt = |code: u32, k: u32| SockFilter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        // Load the syscall number (offset 0 of `seccomp_data`).
        let mut prog = vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0)];
        for nr in allowed {
            prog.push(SockFilter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: nr as u32,
            });
            prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
        }
        prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_TRAP));
        let fprog = SockFprog {
            len: prog.len() as u16,
            filter: prog.as_ptr(),
        };
        // SAFETY: prctl with valid arguments; `fprog` and `prog` outlive the call (the kernel
        // copies the program).
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const fprog
                ),
                0,
                "seccomp: {}",
                std::io::Error::last_os_error()
            );
        }
        // The filter holds from here on: no allocation (malloc may `mmap`), no std locks.
        std::mem::forget(prog);
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_never_waking_consumer_makes_no_syscall_while_its_producer_sleeps() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    const MSGS: u64 = 40; // under the 64 after which statistics are flushed (a clock read)
    for wakes in [Wakes::Never, Wakes::Peers] {
        let name = unique("never-seccomp");
        let _c = Cleanup(name.clone());
        // `Park`: the producer registers as a sleeper at once when the ring is full (a spinning
        // or yielding one needs no wake, and the control would see none on a loaded machine).
        let ch = shmlane::spsc::<u64>(&name)
            .wait(WaitStrategy::Park)
            .capacity(2)
            .unlink(UnlinkPolicy::CreatorDrop)
            .create()
            .unwrap();
        let mut rx = ch.consumer().unwrap();
        rx.set_wakes(wakes);
        let mut tx = ch.producer().unwrap();
        tx.try_send(0).unwrap();
        tx.try_send(1).unwrap();
        let producer = thread::spawn(move || {
            for i in 2..MSGS {
                tx.send(i, long()).unwrap();
            }
            tx
        });
        seccomp::TRAPPED.store(0, Ordering::Relaxed);
        let done = Arc::new(AtomicBool::new(false));
        let (done2, bad) = (
            done.clone(),
            Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
        );
        let bad2 = bad.clone();
        // Never joined: a thread under the filter cannot exit cleanly (thread exit makes
        // trapped calls); it sleeps until the test process ends.
        thread::spawn(move || {
            seccomp::trap_all_syscalls_on_this_thread();
            let (mut wrong, mut got) = (0u64, 0u64);
            // Until every message arrived (bounded: 20 s of turns). The producer parks on the
            // full ring between turns; in the control run its wake-ups are trapped (skipped),
            // so it moves at its 50 ms liveness slices.
            for _ in 0..20_000 {
                if got == MSGS {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
                if let Ok(v) = rx.try_recv() {
                    wrong += u64::from(v != got);
                    got += 1;
                }
            }
            wrong += MSGS - got;
            // ORDERING: Release; pairs with the Acquire load below: the counters and `wrong`.
            bad2.store(wrong, Ordering::Relaxed);
            done2.store(true, Ordering::Release);
            let _keep = rx;
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        });
        let t = Instant::now();
        // ORDERING: Acquire; pairs with the Release store above.
        while !done.load(Ordering::Acquire) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{wakes:?}: the consumer hung"
            );
            thread::sleep(Duration::from_millis(5));
        }
        let mut tx = producer.join().unwrap();
        assert_eq!(
            bad.load(Ordering::Relaxed),
            0,
            "{wakes:?}: messages out of order"
        );
        let trapped = seccomp::TRAPPED.load(Ordering::Relaxed);
        let nr = seccomp::LAST_NR.load(Ordering::Relaxed);
        eprintln!("{wakes:?}: {trapped} system calls trapped (last nr {nr})");
        assert!(
            tx.stats().sleeps > 0,
            "the producer never slept: nothing proven"
        );
        match wakes {
            Wakes::Never => assert_eq!(
                trapped, 0,
                "the never-waking consumer made {trapped} system calls (last nr {nr})"
            ),
            Wakes::Peers => {
                assert!(
                    tx.stats().sleeps > 0,
                    "the producer never slept: no control"
                );
                assert!(
                    trapped > 0,
                    "the filter saw no wake-up from a waking consumer"
                );
                assert_eq!(nr, libc::SYS_futex);
            }
        }
    }
}

/// The audio example (examples/audio_blocks.rs) as a smoke test: 1 s with a busy host (asleep
/// in `send` on the full ring every period): its never-waking consumer made no futex wake and
/// its callbacks no allocation (the example's own guard, exit status 2 otherwise). `cargo test`
/// builds examples beside the tests; a run that built only this test skips it (said on stderr).
#[test]
fn the_audio_example_makes_no_wake_and_no_allocation() {
    let exe = std::env::current_exe().unwrap();
    let Some(example) = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("audio_blocks"))
        .filter(|p| p.exists())
    else {
        eprintln!("examples/audio_blocks not built (cargo test without --test filters builds it)");
        return;
    };
    let out = std::process::Command::new(&example)
        .args(["1", "--busy"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the example failed: {}", out.status);
    assert!(
        text.contains("consumer futex wakes: 0;"),
        "the never-waking consumer woke its host"
    );
    assert!(text.contains("allocations inside callbacks: 0 "));
    assert!(text.contains("consumer Never"));
}
