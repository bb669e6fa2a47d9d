//! The peer rows of `shmlane bench --peers`: what users weigh shmlane against, measured in the
//! same run and with the same timing as the raw rows of [`crate::xproc`].
//!
//! - `iceoryx2-pubsub`: iceoryx2 publish-subscribe between two forked processes (cores 0 and 1),
//!   the payload written into a loaned sample by the sender and copied out by the receiver.
//! - `iceoryx2-event`: iceoryx2 events, a blocking round trip (beside `shmlane-spsc-park`).
//! - `rtrb-inproc`, `arrayqueue-inproc`: the in-process anchors, two threads of one
//!   process on cores 0 and 1, 8-byte items (the cases of [`crate::inproc`]).
//!
//! The iceoryx2 rows need the `peers` feature (which builds iceoryx2); without it [`ENABLED`] is
//! false and the command refuses `--peers`. Every peer row carries the version of the crate it
//! measures ([`version`]), taken from `Cargo.lock` when this crate is built (`build.rs`).

use std::{sync::Barrier, time::Duration, time::Instant};

use crossbeam_utils::CachePadded;

use crate::pin;

#[cfg(feature = "peers")]
mod ice;

/// Whether this build has the peer rows (the `peers` feature).
pub const ENABLED: bool = cfg!(feature = "peers");

/// iceoryx2 publish-subscribe, two processes.
pub const ICEORYX2_PUBSUB: &str = "iceoryx2-pubsub";
/// iceoryx2 events, two processes, blocking.
pub const ICEORYX2_EVENT: &str = "iceoryx2-event";
/// rtrb, two threads of one process.
pub const RTRB: &str = "rtrb-inproc";
/// crossbeam's `ArrayQueue`, two threads of one process.
pub const ARRAYQUEUE: &str = "arrayqueue-inproc";

/// The peer rows, with the names of the JSON contract.
pub const TRANSPORTS: &[&str] = &[ICEORYX2_PUBSUB, ICEORYX2_EVENT, RTRB, ARRAYQUEUE];

/// What `shmlane bench --peers` says when this build lacks the feature.
pub const NOT_BUILT: &str = "this shmlane was built without the peer rows: build it with the \
     `peers` feature, e.g. `cargo run --release -p shmlane-cli --features peers -- bench --peers`";

/// The peer rows a run measures: all of them when `peers` was asked for and built in, none
/// otherwise.
pub fn rows(peers: bool) -> &'static [&'static str] {
    if peers && ENABLED { TRANSPORTS } else { &[] }
}

/// Whether `transport` is a peer row.
pub fn is_peer(transport: &str) -> bool {
    TRANSPORTS.contains(&transport)
}

/// Whether `transport` is an in-process anchor (counted as the fast shared-memory rows are:
/// a few hundred thousand 8-byte items take well under a millisecond in one process).
pub fn in_process(transport: &str) -> bool {
    transport == RTRB || transport == ARRAYQUEUE
}

/// The crate and version a peer row measures, e.g. `iceoryx2 0.10.0`; `None` for shmlane's
/// own rows and the references.
pub fn version(transport: &str) -> Option<&'static str> {
    match transport {
        ICEORYX2_PUBSUB | ICEORYX2_EVENT => {
            Some(concat!("iceoryx2 ", env!("SHMLANE_PEER_VERSION_ICEORYX2")))
        }
        RTRB => Some(concat!("rtrb ", env!("SHMLANE_PEER_VERSION_RTRB"))),
        ARRAYQUEUE => Some(concat!(
            "crossbeam-queue ",
            env!("SHMLANE_PEER_VERSION_CROSSBEAM_QUEUE")
        )),
        _ => None,
    }
}

/// Checks `--only` against `--peers`: a peer row named without `--peers` is an error (the run
/// would otherwise measure nothing for it).
///
/// # Errors
/// A message naming the row and saying to add `--peers`.
pub fn check_only(only: &[String], peers: bool) -> Result<(), String> {
    match only.iter().find(|t| is_peer(t)) {
        Some(t) if !peers => Err(format!("{t} is a peer row: add --peers")),
        _ => Ok(()),
    }
}

/// Whether the peer row has a round-trip figure at `size` (events carry no payload, only an
/// 8-byte event id; the in-process anchors move 8-byte items).
pub fn has_rtt(transport: &str, size: usize) -> bool {
    transport == ICEORYX2_PUBSUB || size == 8
}

/// Whether the peer row has a streaming figure at `size`.
pub fn has_throughput(transport: &str, size: usize) -> bool {
    match transport {
        ICEORYX2_PUBSUB => true,
        RTRB | ARRAYQUEUE => size == 8,
        _ => false,
    }
}

/// Round trips of `size`-byte messages through the peer row; per-round-trip nanoseconds,
/// timed as [`crate::xproc::rtt`] times them.
pub fn rtt(transport: &str, size: usize, n: u64, same_core: bool) -> Vec<u64> {
    // The in-process anchors move 8-byte items ([`has_rtt`]).
    #[cfg(not(feature = "peers"))]
    let _ = size;
    let other = usize::from(!same_core);
    match transport {
        #[cfg(feature = "peers")]
        ICEORYX2_PUBSUB => ice::pubsub_rtt(size, n, other),
        #[cfg(feature = "peers")]
        ICEORYX2_EVENT => ice::event_rtt(n, other),
        RTRB => rtrb_rtt(n, other),
        ARRAYQUEUE => arrayqueue_rtt(n, other),
        t => panic!("no peer row {t} in this build ({NOT_BUILT})"),
    }
}

/// Streams `n` messages of `size` bytes through the peer row; the time until the receiver had
/// the last one.
pub fn throughput(transport: &str, size: usize, n: u64, same_core: bool) -> Duration {
    // Only the iceoryx2 row streams other sizes and honours `same_core`.
    #[cfg(not(feature = "peers"))]
    let _ = (size, same_core);
    match transport {
        #[cfg(feature = "peers")]
        ICEORYX2_PUBSUB => ice::pubsub_throughput(size, n, usize::from(!same_core)),
        // The criterion cases, as `cargo bench --bench rings` runs them (cores 0 and 1).
        RTRB => crate::inproc::spsc_u64_rtrb(n),
        ARRAYQUEUE => crate::inproc::mpmc_u64_1p1c_crossbeam_arrayqueue(n),
        t => panic!("no peer row {t} in this build ({NOT_BUILT})"),
    }
}

/// Capacity of the in-process queues, as in [`crate::inproc`].
const CAP: usize = 4096;

/// rtrb ping-pong: two rings of `u64`, each handle on its own cache lines (as in
/// `inproc::pingpong_rtt_u64_rtrb`).
fn rtrb_rtt(n: u64, other: usize) -> Vec<u64> {
    let (p1, c1) = rtrb::RingBuffer::<u64>::new(CAP);
    let (p2, c2) = rtrb::RingBuffer::<u64>::new(CAP);
    let (mut p1, mut c1) = (CachePadded::new(p1), CachePadded::new(c1));
    let (mut p2, mut c2) = (CachePadded::new(p2), CachePadded::new(c2));
    timed_ping_pong(
        n,
        other,
        (move |v| p1.push(v).is_ok(), move || c2.pop().ok()),
        (move |v| p2.push(v).is_ok(), move || c1.pop().ok()),
    )
}

/// `ArrayQueue` ping-pong: two queues of `u64`, each thread owning an `Arc` clone of both.
fn arrayqueue_rtt(n: u64, other: usize) -> Vec<u64> {
    use crossbeam_queue::ArrayQueue;
    use std::sync::Arc;
    let (there, back) = (
        Arc::new(ArrayQueue::<u64>::new(CAP)),
        Arc::new(ArrayQueue::<u64>::new(CAP)),
    );
    let (there2, back2) = (there.clone(), back.clone());
    timed_ping_pong(
        n,
        other,
        (move |v| there.push(v).is_ok(), move || back.pop()),
        (move |v| back2.push(v).is_ok(), move || there2.pop()),
    )
}

/// Round trips between this thread (core 0) and an echo thread (core `other`): send `i`, wait
/// for it to come back, each round trip timed on its own as the two-process rows are.
fn timed_ping_pong<S, R, ES, ER>(n: u64, other: usize, here: (S, R), echo: (ES, ER)) -> Vec<u64>
where
    S: FnMut(u64) -> bool,
    R: FnMut() -> Option<u64>,
    ES: FnMut(u64) -> bool + Send,
    ER: FnMut() -> Option<u64> + Send,
{
    let ready = Barrier::new(2);
    let ((mut send, mut recv), (mut echo_send, mut echo_recv)) = (here, echo);
    std::thread::scope(|s| {
        let ready = &ready;
        s.spawn(move || {
            pin(other);
            ready.wait();
            for _ in 0..n {
                let v = loop {
                    if let Some(v) = echo_recv() {
                        break v;
                    }
                    core::hint::spin_loop();
                };
                while !echo_send(v) {
                    core::hint::spin_loop();
                }
            }
        });
        pin(0);
        ready.wait();
        let mut times = Vec::with_capacity(n as usize);
        for i in 0..n {
            let t0 = Instant::now();
            while !send(i) {
                core::hint::spin_loop();
            }
            let v = loop {
                if let Some(v) = recv() {
                    break v;
                }
                core::hint::spin_loop();
            };
            times.push(t0.elapsed().as_nanos() as u64);
            assert_eq!(v, i, "echo out of order");
        }
        times
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_are_disjoint_from_the_raw_rows() {
        for t in TRANSPORTS {
            assert!(!crate::xproc::TRANSPORTS.contains(t), "{t}");
            assert!(version(t).is_some(), "{t} has no version");
        }
        assert_eq!(version("shmlane-spsc-spin"), None);
    }

    #[test]
    fn versions_come_from_the_lock_file() {
        for t in TRANSPORTS {
            let v = version(t).unwrap();
            let (name, ver) = v.split_once(' ').unwrap();
            assert!(!name.is_empty());
            // major.minor.patch, digits: not "unknown".
            let parts: Vec<&str> = ver.split('.').collect();
            assert_eq!(parts.len(), 3, "{v}");
            assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{v}");
        }
    }

    #[test]
    fn rows_only_with_the_feature_and_the_flag() {
        assert!(rows(false).is_empty());
        assert_eq!(rows(true).is_empty(), !ENABLED);
    }

    #[test]
    fn only_a_peer_row_needs_peers() {
        let only = vec!["pipe".to_owned(), RTRB.to_owned()];
        let e = check_only(&only, false).unwrap_err();
        assert!(e.contains("rtrb-inproc") && e.contains("--peers"), "{e}");
        assert!(check_only(&only, true).is_ok());
        assert!(check_only(&["pipe".to_owned()], false).is_ok());
    }

    /// A tiny run of every peer row through the suite: records with samples, sane figures,
    /// and the JSON rows carrying their versions. (The iceoryx2 rows fork; all of them run in
    /// this one test, so no other test of this process uses iceoryx2 at the same time.)
    #[cfg(feature = "peers")]
    #[test]
    fn suite_runs_every_peer_row_with_its_version() {
        use crate::suite::{Level, Options, json, run, table};
        let mut opts = Options::new(Level::Quick);
        opts.peers = true;
        opts.only = TRANSPORTS.iter().map(|t| (*t).to_owned()).collect();
        opts.sizes = vec![8, 65536];
        let recs = run(&opts);
        let mut want = vec![
            (ICEORYX2_PUBSUB, "rtt", 8),
            (ICEORYX2_PUBSUB, "rtt", 65536),
            (ICEORYX2_PUBSUB, "throughput", 8),
            (ICEORYX2_PUBSUB, "throughput", 65536),
            (ICEORYX2_EVENT, "rtt", 8),
            (RTRB, "rtt", 8),
            (RTRB, "throughput", 8),
            (ARRAYQUEUE, "rtt", 8),
            (ARRAYQUEUE, "throughput", 8),
        ];
        let mut got: Vec<(&str, &str, usize)> = recs
            .iter()
            .map(|r| (r.transport, r.metric, r.msg_size))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        for r in &recs {
            assert!(r.samples > 0, "{r:?}");
            if let Some(s) = r.rtt {
                assert!(s.p50 > 0 && s.p50 <= s.p99 && s.p99 <= s.max, "{r:?}");
            }
            if let Some(m) = r.msgs_per_s {
                assert!(m.is_finite() && m > 0.0, "{r:?}");
            }
        }
        let doc = json(&recs);
        for rec in doc["records"].as_array().unwrap() {
            let t = rec["transport"].as_str().unwrap();
            assert_eq!(rec["version"].as_str(), version(t), "{rec}");
            assert!(rec["samples"].as_u64().unwrap() > 0, "{rec}");
        }
        assert!(doc["records"][0]["version"].as_str().unwrap().contains(' '));
        let text = table(&recs);
        assert!(text.contains(version(ICEORYX2_PUBSUB).unwrap()), "{text}");
        assert!(text.contains(version(RTRB).unwrap()), "{text}");
    }

    #[test]
    fn in_process_anchors_run() {
        for t in [RTRB, ARRAYQUEUE] {
            let times = rtt(t, 8, 200, false);
            assert_eq!(times.len(), 200, "{t}");
            assert!(times.iter().all(|&ns| ns > 0), "{t}");
            assert!(throughput(t, 8, 10_000, false) > Duration::ZERO, "{t}");
        }
    }
}
