//! Export: a local channel read by the bridge (as a broadcast subscriber, or as the receiver of
//! a byte channel) and published on a Zenoh key expression, each message behind its header.
//!
//! Numbering (docs/bridge.md, "Loss, order and restarts"):
//! - broadcast: a message's number is its sequence number in the channel (the subscriber's
//!   `try_recv_seq`), so messages the subscriber lost to laps, and messages published while no
//!   bridge ran (a restarted bridge subscribes from the newest), are gaps importers count;
//! - bytes: the bridge numbers the messages it takes, and before each take records in the
//!   companion the number the message after it will get: a bridge killed between taking and
//!   publishing restarts one number further, so the message it took is counted lost (killed
//!   after the record but before the take, one message too many is counted: over by at most
//!   one per restart, never under).

use std::time::{Duration, Instant};

use shmlane::{
    ByteReceiver, ByteRecvError, ElemError, RawConsumer, RawReceiver, Subscriber, TryRecvError,
};
use zenoh::Wait;
use zenoh::pubsub::Publisher;

use crate::header::{self, Header};
use crate::stats::Companion;
use crate::{BridgeError, Policy};

/// Where an export reads.
pub(crate) enum Source {
    Bytes(ByteReceiver),
    Broadcast(Subscriber),
    /// An SPSC channel's consumer: each message one element.
    Spsc(RawConsumer),
    /// An MPMC channel's receiver.
    Mpmc(RawReceiver),
}

/// One export route.
pub(crate) struct Export {
    pub(crate) channel: String,
    pub(crate) source: Source,
    pub(crate) publisher: Publisher<'static>,
    pub(crate) policy: Policy,
    pub(crate) origin: u64,
    pub(crate) epoch: u64,
    /// Bytes: the number the next message gets.
    pub(crate) next: u64,
    /// Header then message: room for the channel's largest.
    pub(crate) buf: Vec<u8>,
    pub(crate) stats: Companion,
    pub(crate) last_beat: Instant,
    /// Whether a subscriber matched at the last look (`block`: nothing is taken before one).
    pub(crate) matched: bool,
    pub(crate) last_match_check: Instant,
}

/// Most messages an export forwards in one turn before the others get theirs.
const BATCH: usize = 256;

/// How often a `block` export looks whether a subscriber matches its key.
const MATCH_CHECK: Duration = Duration::from_millis(20);

impl Export {
    /// Whether this export may take messages now: `drop` always; `block` once a subscriber
    /// matches its key (before that, a taken message would go nowhere; the local senders wait
    /// instead, which is what `block` promises). Looked at again while matched too: when the
    /// importer goes (its host or bridge died), a `block` export waits again.
    pub(crate) fn may_take(&mut self) -> Result<bool, BridgeError> {
        if self.policy == Policy::Drop {
            return Ok(true);
        }
        if self.last_match_check.elapsed() >= MATCH_CHECK {
            self.last_match_check = Instant::now();
            self.matched = self
                .publisher
                .matching_status()
                .wait()
                .map_err(|e| BridgeError::Zenoh(e.to_string()))?
                .matching();
        }
        Ok(self.matched)
    }

    /// Forwards what the channel holds (up to a batch). Returns how many were forwarded.
    pub(crate) fn pump(&mut self) -> Result<usize, BridgeError> {
        let mut sent = 0;
        let r = self.pump_batch(&mut sent);
        // The counters once per batch (a byte channel's resume state was kept before each
        // take already): the next number, no message in hand.
        if !matches!(self.source, Source::Broadcast(_)) {
            self.stats.now.export_next = self.next;
        }
        self.stats.save();
        r.map(|()| sent)
    }

    fn pump_batch(&mut self, sent: &mut usize) -> Result<(), BridgeError> {
        while *sent < BATCH {
            let (n, seq) = match &mut self.source {
                Source::Broadcast(s) => match s.try_recv_seq(&mut self.buf[header::LEN..]) {
                    Ok(got) => got,
                    Err(ByteRecvError::Lapped { lost }) => {
                        // Their numbers are skipped: importers count them as lost too.
                        self.stats.now.lapped += lost;
                        continue;
                    }
                    Err(e) => return self.ended(e),
                },
                src => {
                    // Kept before the take (see the module docs): one write per message, which
                    // also carries the counters so far.
                    // Saturating: the number comes from the companion, which any local
                    // process may have written (u64::MAX is never sent: importers refuse it).
                    self.stats.now.export_next = self.next.saturating_add(1);
                    self.stats.save();
                    let out = &mut self.buf[header::LEN..];
                    let took = match src {
                        Source::Bytes(r) => r.try_recv(out),
                        Source::Spsc(r) => raw(r.try_recv(out), out.len()),
                        Source::Mpmc(r) => raw(r.try_recv(out), out.len()),
                        Source::Broadcast(_) => unreachable!("matched above"),
                    };
                    match took {
                        Ok(n) => {
                            let seq = self.next;
                            // Now equal to the number kept: nothing to write after the publish.
                            self.next = self.next.saturating_add(1);
                            (n, seq)
                        }
                        Err(e) => return self.ended(e),
                    }
                }
            };
            Header {
                origin: self.origin,
                epoch: self.epoch,
                seq,
                heartbeat: false,
            }
            .write(&mut self.buf);
            self.publisher
                .put(&self.buf[..header::LEN + n])
                .wait()
                .map_err(|e| BridgeError::Zenoh(e.to_string()))?;
            self.stats.now.exported += 1;
            *sent += 1;
        }
        Ok(())
    }

    /// A receive that found nothing, or an end: `Empty` is nothing to do; a publisher or
    /// sender that died or left is waited for (the channel is persistent: it may come back);
    /// a corrupt channel ends the bridge.
    fn ended(&mut self, e: ByteRecvError) -> Result<(), BridgeError> {
        match e {
            ByteRecvError::Empty
            | ByteRecvError::Disconnected
            | ByteRecvError::PeerDied
            | ByteRecvError::Timeout => Ok(()),
            other => Err(BridgeError::Local {
                channel: self.channel.clone(),
                what: other.to_string(),
            }),
        }
    }

    /// The number the next message will get.
    fn next_seq(&self) -> u64 {
        match &self.source {
            Source::Broadcast(s) => s.next_seq(),
            _ => self.next,
        }
    }

    /// Publishes a heartbeat if one is due: the number the next message will get, so an
    /// importer counts the messages lost at the end of a stream (after the last one it saw).
    pub(crate) fn beat(&mut self, every: Duration) -> Result<(), BridgeError> {
        if self.last_beat.elapsed() < every {
            return Ok(());
        }
        self.last_beat = Instant::now();
        let mut hb = [0u8; header::LEN];
        Header {
            origin: self.origin,
            epoch: self.epoch,
            seq: self.next_seq(),
            heartbeat: true,
        }
        .write(&mut hb);
        self.publisher
            .put(&hb[..])
            .wait()
            .map_err(|e| BridgeError::Zenoh(e.to_string()))
    }

    /// The source as a `Select` sees it.
    pub(crate) fn poll_source(&mut self) -> &mut dyn shmlane::PollSource {
        match &mut self.source {
            Source::Broadcast(s) => s,
            Source::Bytes(r) => r,
            Source::Spsc(r) => r,
            Source::Mpmc(r) => r,
        }
    }
}

/// A fixed-size channel's receive as a byte channel's: the element's length, or the same error
/// (the buffer is the element's size: `Length` cannot happen).
fn raw(r: Result<(), ElemError<TryRecvError>>, size: usize) -> Result<usize, ByteRecvError> {
    match r {
        Ok(()) => Ok(size),
        Err(ElemError::Channel(TryRecvError::Empty)) => Err(ByteRecvError::Empty),
        Err(ElemError::Channel(TryRecvError::Disconnected)) => Err(ByteRecvError::Disconnected),
        Err(ElemError::Channel(TryRecvError::Corrupt) | ElemError::Length { .. }) => Err(
            ByteRecvError::Corrupt("the ring's positions are impossible"),
        ),
    }
}
