//! Import: messages from a Zenoh key expression written into a local channel (as its
//! broadcast publisher, or as a sender of a byte channel), after their headers are checked:
//! gaps counted as lost, duplicates and this bridge's own messages dropped and counted.
//!
//! Runs in the Zenoh session's subscriber callback (its receive task): with `drop` it never
//! blocks there; with `block` a full byte channel makes it wait for room, which holds up the
//! session's receive path for everything that link carries (docs/bridge.md, "Back-pressure").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shmlane::{
    ByteSendError, ByteSender, Deadline, ElemError, Publisher, RawProducer, RawSender, SendError,
};

use crate::Policy;
use crate::header::Header;
use crate::stats::Companion;

/// Where an import writes (one per route, built once: its size does not matter).
#[allow(
    clippy::large_enum_variant,
    reason = "one per route, never moved on the hot path"
)]
pub(crate) enum Sink {
    Bytes(ByteSender),
    Broadcast(Publisher),
    /// An SPSC channel's producer: each message must be exactly one element.
    Spsc(RawProducer),
    /// An MPMC channel's sender.
    Mpmc(RawSender),
}

/// A stream being followed: the next number expected from an origin in an epoch.
#[derive(Clone, Copy, Debug)]
struct Follow {
    origin: u64,
    epoch: u64,
    next: u64,
}

/// One import route.
pub(crate) struct Import {
    pub(crate) sink: Sink,
    pub(crate) policy: Policy,
    /// The channel's largest message.
    pub(crate) max: usize,
    /// This bridge's export origins: a message from one came back (a loop).
    pub(crate) own: Vec<u64>,
    follows: Vec<Follow>,
    pub(crate) stats: Companion,
    /// A copy of the counters for [`Bridge::stats`](crate::Bridge::stats), which must not wait
    /// for a callback blocked on a full channel (the route's own lock).
    pub(crate) shown: Arc<std::sync::Mutex<shmlane::bridge_stats::BridgeStats>>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Set by `Bridge::stop`: payloads after it are not this run's to count.
    pub(crate) closed: bool,
}

/// Most origins followed at once; past it the first followed is forgotten (a message from it
/// later starts a new follow, as a late joiner's would).
const MAX_FOLLOWS: usize = 64;

/// How long a `block` write waits for room before it looks at the stop flag again.
const BLOCK_SLICE: Duration = Duration::from_millis(100);

impl Import {
    pub(crate) fn new(
        sink: Sink,
        policy: Policy,
        max: usize,
        own: Vec<u64>,
        stats: Companion,
        stop: Arc<AtomicBool>,
    ) -> Self {
        // The stream a previous bridge followed into this channel, from its companion: its
        // numbers go on, so messages sent while no bridge ran are counted as lost.
        let s = &stats.now;
        let follows = if s.origin != 0 {
            vec![Follow {
                origin: s.origin,
                epoch: s.epoch,
                next: s.import_next,
            }]
        } else {
            Vec::new()
        };
        let shown = Arc::new(std::sync::Mutex::new(stats.now));
        Self {
            sink,
            policy,
            max,
            own,
            follows,
            stats,
            shown,
            stop,
            closed: false,
        }
    }

    /// One payload from the key expression.
    pub(crate) fn on_payload(&mut self, payload: &[u8]) {
        if self.closed {
            return;
        }
        let Ok((h, msg)) = Header::read(payload) else {
            self.stats.now.malformed += 1;
            self.save();
            return;
        };
        // A message numbered u64::MAX has no number after it: no exporter gets there (2^64
        // messages), so a broken or hostile peer sent it. Malformed, as a bad header is.
        if !h.heartbeat && h.seq == u64::MAX {
            self.stats.now.malformed += 1;
            self.save();
            return;
        }
        if self.own.contains(&h.origin) {
            self.stats.now.looped += 1;
            self.save();
            return;
        }
        if self.admit(&h) {
            self.deliver(msg);
        }
        self.save();
    }

    /// Publishes the counters: to the companion, and to the copy `Bridge::stats` reads.
    fn save(&mut self) {
        self.stats.save();
        *self
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.stats.now;
    }

    /// Applies the header's number to its origin's stream: whether the message is delivered
    /// (new), with a gap before it counted as lost; a heartbeat only counts the gap.
    fn admit(&mut self, h: &Header) -> bool {
        let i = if let Some(i) = self.follows.iter().position(|f| f.origin == h.origin) {
            i
        } else {
            // A stream not followed yet: from here on (a late joiner misses nothing it could
            // have had).
            if self.follows.len() == MAX_FOLLOWS {
                self.follows.remove(0);
            }
            self.follows.push(Follow {
                origin: h.origin,
                epoch: h.epoch,
                next: h.seq,
            });
            self.follows.len() - 1
        };
        let f = &mut self.follows[i];
        if h.epoch != f.epoch {
            // The exporter restarted: numbers that go on count the gap; numbers that start
            // over (its channel made anew) start a new stream.
            f.epoch = h.epoch;
            if h.seq < f.next {
                f.next = h.seq;
            }
        }
        let fresh = if h.seq < f.next {
            if !h.heartbeat {
                self.stats.now.duplicates += 1;
            }
            false
        } else {
            // Any numbers may arrive (a hostile or broken peer): the count saturates, never
            // panics or wraps; a message's number is below u64::MAX (`on_payload`).
            self.stats.now.lost = self.stats.now.lost.saturating_add(h.seq - f.next);
            f.next = h.seq + u64::from(!h.heartbeat);
            !h.heartbeat
        };
        let f = *f;
        self.stats.now.origin = f.origin;
        self.stats.now.epoch = f.epoch;
        self.stats.now.import_next = f.next;
        fresh
    }

    /// Writes one message into the channel, by the route's policy.
    fn deliver(&mut self, msg: &[u8]) {
        // A fixed-size channel takes exactly its element's size.
        let fixed = matches!(self.sink, Sink::Spsc(_) | Sink::Mpmc(_));
        if msg.len() > self.max || (fixed && msg.len() != self.max) {
            self.stats.now.dropped_too_large += 1;
            return;
        }
        let stop = &self.stop;
        let ok = match &mut self.sink {
            // A broadcast publisher never waits (slow subscribers are lapped, and count it).
            Sink::Broadcast(p) => p.send(msg).is_ok(),
            Sink::Spsc(p) => write_fixed(self.policy, stop, p, msg),
            Sink::Mpmc(p) => write_fixed(self.policy, stop, p, msg),
            Sink::Bytes(s) => match self.policy {
                Policy::Drop => s.try_send(msg).is_ok(),
                Policy::Block => loop {
                    // ORDERING: Relaxed; a flag only, nothing published with it (the bridge
                    // is stopping: one more try, no wait).
                    if stop.load(Ordering::Relaxed) {
                        break s.try_send(msg).is_ok();
                    }
                    match s.send(msg, Some(Deadline::after(BLOCK_SLICE))) {
                        Ok(()) => break true,
                        Err(ByteSendError::Timeout) => {}
                        Err(_) => break false,
                    }
                },
            },
        };
        if ok {
            self.stats.now.imported += 1;
        } else {
            self.stats.now.dropped_full += 1;
        }
    }
}

/// The writing end of a fixed-size channel (SPSC producer, MPMC sender).
trait Fixed {
    fn try_put(&mut self, msg: &[u8]) -> bool;
    fn put(&mut self, msg: &[u8], d: Option<Deadline>) -> Result<(), ElemError<SendError<()>>>;
}

impl Fixed for RawProducer {
    fn try_put(&mut self, msg: &[u8]) -> bool {
        self.try_send(msg).is_ok()
    }
    fn put(&mut self, msg: &[u8], d: Option<Deadline>) -> Result<(), ElemError<SendError<()>>> {
        self.send(msg, d)
    }
}

impl Fixed for RawSender {
    fn try_put(&mut self, msg: &[u8]) -> bool {
        self.try_send(msg).is_ok()
    }
    fn put(&mut self, msg: &[u8], d: Option<Deadline>) -> Result<(), ElemError<SendError<()>>> {
        self.send(msg, d)
    }
}

/// A fixed-size channel's write by the policy: `drop` tries once, `block` waits for room in
/// slices (giving up, as the byte channels' do, once the bridge stops).
fn write_fixed(policy: Policy, stop: &AtomicBool, s: &mut impl Fixed, msg: &[u8]) -> bool {
    match policy {
        Policy::Drop => s.try_put(msg),
        Policy::Block => loop {
            // ORDERING: Relaxed; a flag only.
            if stop.load(Ordering::Relaxed) {
                break s.try_put(msg);
            }
            match s.put(msg, Some(Deadline::after(BLOCK_SLICE))) {
                Ok(()) => break true,
                Err(ElemError::Channel(SendError::Timeout(()))) => {}
                Err(_) => break false,
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::LEN;

    fn payload(origin: u64, epoch: u64, seq: u64, msg: Option<&[u8]>) -> Vec<u8> {
        let mut p = vec![0u8; LEN];
        Header {
            origin,
            epoch,
            seq,
            heartbeat: msg.is_none(),
        }
        .write(&mut p);
        p.extend_from_slice(msg.unwrap_or_default());
        p
    }

    /// The numbering rules, one case each: in order, a gap, a duplicate, a heartbeat's gap, an
    /// exporter restarted (new epoch, numbers go on: the gap counted; numbers start over: a
    /// new stream), this bridge's own origin (a loop), a malformed header, a second origin
    /// followed on its own, a message too large, a full channel under `drop`.
    #[test]
    fn gaps_duplicates_loops_and_restarts_are_counted() {
        let name = format!("shmlane-test-{}-imp-unit", std::process::id());
        let ch = shmlane::bytes(&name)
            .capacity(4096)
            .unlink(shmlane::UnlinkPolicy::Never)
            .create()
            .unwrap();
        let mut rx = ch.byte_receiver().unwrap();
        let tx = ch.byte_sender().unwrap();
        let max = 100;
        let stats = Companion::open(&name).unwrap();
        let own = 77;
        let mut imp = Import::new(
            Sink::Bytes(tx),
            Policy::Drop,
            max,
            vec![own],
            stats,
            Arc::new(AtomicBool::new(false)),
        );
        let mut got = Vec::new();
        let mut buf = [0u8; 128];
        let mut step = |imp: &mut Import, p: Vec<u8>| {
            imp.on_payload(&p);
            while let Ok(n) = rx.try_recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            let s = imp.stats.now;
            (s.imported, s.lost, s.duplicates, s.looped, s.malformed)
        };
        // A stream joined at 10: nothing before it is lost.
        assert_eq!(
            step(&mut imp, payload(1, 5, 10, Some(b"a"))),
            (1, 0, 0, 0, 0)
        );
        assert_eq!(
            step(&mut imp, payload(1, 5, 11, Some(b"b"))),
            (2, 0, 0, 0, 0)
        );
        // 12 and 13 missing.
        assert_eq!(
            step(&mut imp, payload(1, 5, 14, Some(b"c"))),
            (3, 2, 0, 0, 0)
        );
        // 11 again: a duplicate, not delivered.
        assert_eq!(
            step(&mut imp, payload(1, 5, 11, Some(b"b"))),
            (3, 2, 1, 0, 0)
        );
        // A heartbeat saying 17 comes next: 15 and 16 lost.
        assert_eq!(step(&mut imp, payload(1, 5, 17, None)), (3, 4, 1, 0, 0));
        // The exporter restarted (epoch 6) and went on at 20: 17..19 lost.
        assert_eq!(
            step(&mut imp, payload(1, 6, 20, Some(b"d"))),
            (4, 7, 1, 0, 0)
        );
        // Restarted again with its numbers from 0 (its channel made anew): a new stream.
        assert_eq!(
            step(&mut imp, payload(1, 7, 0, Some(b"e"))),
            (5, 7, 1, 0, 0)
        );
        // This bridge's own message come back: dropped as a loop.
        assert_eq!(
            step(&mut imp, payload(own, 1, 0, Some(b"x"))),
            (5, 7, 1, 1, 0)
        );
        // Not a bridge's payload.
        assert_eq!(
            step(&mut imp, b"garbage, no header".to_vec()),
            (5, 7, 1, 1, 1)
        );
        // Another origin, followed on its own from where it joined.
        assert_eq!(
            step(&mut imp, payload(2, 1, 1000, Some(b"f"))),
            (6, 7, 1, 1, 1)
        );
        assert_eq!(
            step(&mut imp, payload(1, 7, 1, Some(b"g"))),
            (7, 7, 1, 1, 1)
        );
        // Larger than the channel takes: a counted drop; the stream goes on.
        let big = vec![9u8; max + 1];
        step(&mut imp, payload(1, 7, 2, Some(&big)));
        assert_eq!(imp.stats.now.dropped_too_large, 1);
        assert_eq!(
            step(&mut imp, payload(1, 7, 3, Some(b"h"))),
            (8, 7, 1, 1, 1)
        );
        let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];
        assert_eq!(got, want);
        // `drop` into a full channel: counted, never waiting.
        let mut seq = 4;
        while imp.stats.now.dropped_full == 0 {
            imp.on_payload(&payload(1, 7, seq, Some(&[1u8; 64])));
            seq += 1;
            assert!(seq < 1000, "never full");
        }
        let s = imp.stats.now;
        assert_eq!(s.imported + s.dropped_full, 8 + seq - 4);
        drop(imp);
        for n in [name.clone(), shmlane::bridge_stats::companion_name(&name)] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }

    /// Numbers from the network at the end of the range (a hostile or broken peer): counted,
    /// never a panic (the subscriber callback runs in Zenoh's receive task) or a wrap.
    #[test]
    fn numbers_at_the_end_of_the_range_never_panic_or_wrap() {
        let name = format!("shmlane-test-{}-imp-max", std::process::id());
        let ch = shmlane::bytes(&name)
            .capacity(4096)
            .unlink(shmlane::UnlinkPolicy::Never)
            .create()
            .unwrap();
        let mut rx = ch.byte_receiver().unwrap();
        let stats = Companion::open(&name).unwrap();
        let mut imp = Import::new(
            Sink::Bytes(ch.byte_sender().unwrap()),
            Policy::Drop,
            100,
            vec![],
            stats,
            Arc::new(AtomicBool::new(false)),
        );
        let mut buf = [0u8; 128];
        imp.on_payload(&payload(1, 1, 0, Some(b"a")));
        // A message numbered u64::MAX (no number after it): malformed.
        imp.on_payload(&payload(1, 1, u64::MAX, Some(b"b")));
        assert_eq!(imp.stats.now.malformed, 1);
        // A heartbeat saying u64::MAX comes next: the gap counted; anything lower is old.
        imp.on_payload(&payload(1, 1, u64::MAX, None));
        imp.on_payload(&payload(1, 1, u64::MAX - 1, Some(b"b")));
        let s = imp.stats.now;
        assert_eq!((s.imported, s.lost, s.duplicates), (1, u64::MAX - 1, 1));
        // A second origin's gap on top: the count stays at its largest, never wraps.
        imp.on_payload(&payload(2, 1, 0, Some(b"c")));
        imp.on_payload(&payload(2, 1, 10, Some(b"d")));
        assert_eq!((imp.stats.now.imported, imp.stats.now.lost), (3, u64::MAX));
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [b"a", b"c", b"d"]);
        drop(imp);
        for n in [name.clone(), shmlane::bridge_stats::companion_name(&name)] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}
