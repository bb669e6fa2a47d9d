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

use shmlane::{ByteSendError, ByteSender, Deadline, Publisher};

use crate::Policy;
use crate::header::Header;
use crate::stats::Companion;

/// Where an import writes.
pub(crate) enum Sink {
    Bytes(ByteSender),
    Broadcast(Publisher),
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
    pub(crate) stop: Arc<AtomicBool>,
}

/// Most origins followed at once; past it the longest-unheard is forgotten (a message from it
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
        Self {
            sink,
            policy,
            max,
            own,
            follows,
            stats,
            stop,
        }
    }

    /// One payload from the key expression.
    pub(crate) fn on_payload(&mut self, payload: &[u8]) {
        let Ok((h, msg)) = Header::read(payload) else {
            self.stats.now.malformed += 1;
            self.stats.save();
            return;
        };
        if self.own.contains(&h.origin) {
            self.stats.now.looped += 1;
            self.stats.save();
            return;
        }
        if self.admit(&h) {
            self.deliver(msg);
        }
        self.stats.save();
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
            self.stats.now.lost += h.seq - f.next;
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
        if msg.len() > self.max {
            self.stats.now.dropped_too_large += 1;
            return;
        }
        let ok = match &mut self.sink {
            // A broadcast publisher never waits (slow subscribers are lapped, and count it).
            Sink::Broadcast(p) => p.send(msg).is_ok(),
            Sink::Bytes(s) => match self.policy {
                Policy::Drop => s.try_send(msg).is_ok(),
                Policy::Block => loop {
                    match s.send(msg, Some(Deadline::after(BLOCK_SLICE))) {
                        Ok(()) => break true,
                        Err(ByteSendError::Timeout) if !self.stop.load(Ordering::Relaxed) => {
                            // ORDERING: Relaxed; a flag only, nothing published with it.
                        }
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
