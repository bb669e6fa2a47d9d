//! `shmlane record` and `shmlane replay` (docs/operations.md, "Record and replay"): a channel's
//! messages with their times to a file (`shmlane_cli::recfile`, versioned, a CRC per record),
//! and back into a channel with the original pacing or as fast as it takes them.
//!
//! The tap: a broadcast channel is recorded by a subscriber of its own, which disturbs no other
//! subscriber (it may be lapped like any: the messages it lost are counted, and their numbers
//! are missing from the file). A byte channel's messages go to one receiver, so recording one
//! takes them (`--take`: run the recorder instead of the receiver, and replay into the
//! receiver's channel later). Replay writes a broadcast or byte channel (created with the
//! recording's kind and message size if missing); into a byte channel it waits for room, so
//! nothing is lost; into a broadcast channel, as any publisher, it waits for no subscriber.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use shmlane::{ByteRecvError, Deadline, UnlinkPolicy};
use shmlane_cli::args::KindArg;
use shmlane_cli::recfile::{self, Header, KIND_BROADCAST, KIND_BYTES, Reader, Record, Speed};

use crate::chan::{self, Ended, Join, Shape};
use crate::{CliError, sig};

/// The kind of channel `name`, if it is one (read as `ls` reads it).
fn kind_of(name: &str) -> Option<shmlane::Kind> {
    let info =
        shmlane_segment::inspect_at(&shmlane_segment::Location::Posix(name.to_owned())).ok()??;
    shmlane::inspect(&info).map(|c| c.kind)
}

/// Where a recording reads.
enum Tap {
    Sub(shmlane::Subscriber),
    Take(shmlane::ByteReceiver),
}

/// The tap on channel `name` (its kind as the file records it, its largest message) and the
/// channel it holds open, or why the channel cannot be recorded.
fn open_tap(name: &str, take: bool) -> Result<(Tap, u32, u64, shmlane::Channel<u8>), CliError> {
    // The kind first: a typed channel of a Rust program gets this command's refusal, not
    // the one for lines `existing` would give.
    let refuse = |what: &str| {
        CliError(format!(
            "channel {name} is {what} channel: record taps broadcast channels (a subscriber disturbs no other) and, with --take, bytes channels"
        ))
    };
    match kind_of(name) {
        Some(shmlane::Kind::Spsc) => return Err(refuse("an spsc")),
        Some(shmlane::Kind::Mpmc) => return Err(refuse("an mpmc")),
        Some(shmlane::Kind::Latest) => return Err(refuse("a latest-value")),
        _ => {}
    }
    let Some((shape, keep)) = chan::existing(name)? else {
        return Err(CliError(format!(
            "no channel named {name}: record taps a channel that exists (`shmlane ls` lists them)"
        )));
    };
    let kind = match (shape.kind, take) {
        (KindArg::Broadcast, _) => KIND_BROADCAST,
        (KindArg::Bytes, true) => KIND_BYTES,
        (KindArg::Bytes, false) => {
            return Err(CliError(format!(
                "channel {name} is a bytes channel: its messages go to one receiver, so recording takes them from yours; give --take to record as its receiver (then replay the file into it for your receiver)"
            )));
        }
        (KindArg::Spsc, _) => return Err(refuse("an spsc")),
        (KindArg::Mpmc, _) => return Err(refuse("an mpmc")),
        (KindArg::Latest, _) => return Err(refuse("a latest-value")),
    };
    let unlink = if keep {
        UnlinkPolicy::LastDetach
    } else {
        UnlinkPolicy::Never
    };
    // Publishers may come and go: the recorder stays.
    let join = Join {
        follow: true,
        ..Join::default()
    };
    let ch = chan::open_byte_channel(name, &shape, unlink, join)?;
    let tap = if kind == KIND_BROADCAST {
        Tap::Sub(ch.subscriber().map_err(|e| chan::open_err(name, &e))?)
    } else {
        Tap::Take(ch.byte_receiver().map_err(|e| chan::open_err(name, &e))?)
    };
    // The largest message the endpoint takes (a bytes channel's header may say 0: any).
    let max = match &tap {
        Tap::Sub(s) => s.max_message(),
        Tap::Take(r) => r.max_message(),
    };
    Ok((tap, kind, max as u64, ch))
}

/// `shmlane record NAME --out FILE`: until `count` messages, `duration`, or a signal.
pub(crate) fn record(
    name: &str,
    out: &Path,
    take: bool,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<Ended, CliError> {
    let (mut tap, kind, msg_size, _ch) = open_tap(name, take)?;
    let file = std::fs::File::create(out)
        .map_err(|e| CliError(format!("creating {}: {e}", out.display())))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let werr = |e: std::io::Error| CliError(format!("writing {}: {e}", out.display()));
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    recfile::write_header(
        &mut w,
        &Header {
            kind,
            msg_size,
            start_ns,
            name: name.to_owned(),
        },
    )
    .map_err(werr)?;
    let t0 = Instant::now();
    let deadline = duration.map(Deadline::after);
    // In bounds: a channel's largest message, which its mapping holds.
    let mut buf = vec![0u8; msg_size as usize];
    let (mut got, mut lost, mut taken) = (0u64, 0u64, 0u64);
    let ended = loop {
        if count.is_some_and(|c| got >= c) {
            break Ended::Ok;
        }
        if let Some(s) = sig::caught() {
            break Ended::Signal(s);
        }
        if deadline.is_some_and(|d| d.is_past()) {
            break Ended::Ok;
        }
        let r = match &mut tap {
            Tap::Sub(s) => s.try_recv(&mut buf),
            Tap::Take(r) => r.try_recv(&mut buf),
        };
        let r = if r == Err(ByteRecvError::Empty) {
            // About to wait: what was recorded so far reaches the file.
            w.flush().map_err(werr)?;
            match sig::wait(deadline, false, |d| {
                let r = match &mut tap {
                    Tap::Sub(s) => s.recv(&mut buf, Some(d)),
                    Tap::Take(r) => r.recv(&mut buf, Some(d)),
                };
                match r {
                    Err(ByteRecvError::Timeout) => None,
                    r => Some(r),
                }
            }) {
                Ok(r) => r,
                Err(sig::Stop::Signal(s)) => break Ended::Signal(s),
                Err(sig::Stop::Timeout) => break Ended::Ok,
            }
        } else {
            r
        };
        match r {
            Ok(n) => {
                let seq = match &tap {
                    // The message just received: the one before the next.
                    Tap::Sub(s) => s.next_seq().wrapping_sub(1),
                    Tap::Take(_) => taken,
                };
                taken += 1;
                let t = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                recfile::write_record(&mut w, t, seq, &buf[..n]).map_err(werr)?;
                got += 1;
            }
            Err(ByteRecvError::Lapped { lost: l }) => lost += l,
            // Publishers that left or died: the recorder waits for the next (`--follow`).
            Err(ByteRecvError::Disconnected | ByteRecvError::PeerDied) => {
                sig::nap(Duration::from_millis(10));
            }
            Err(e) => return Err(CliError(format!("recording {name}: {e}"))),
        }
    };
    w.flush().map_err(werr)?;
    w.get_ref().sync_data().map_err(werr)?;
    eprintln!(
        "recorded {got} messages of {name} into {}{}",
        out.display(),
        if lost > 0 {
            format!(
                " ({lost} lost: the recorder was lapped; their numbers are missing from the file)"
            )
        } else {
            String::new()
        }
    );
    Ok(ended)
}

/// Where a replay writes.
enum Sink {
    Pub(shmlane::Publisher),
    Send(shmlane::ByteSender),
}

/// The channel `into` opened (created with the recording's kind and message size if
/// missing) to replay into, and the largest message it takes.
fn open_sink(into: &str, h: &Header) -> Result<(Sink, usize, shmlane::Channel<u8>), CliError> {
    if matches!(
        kind_of(into),
        Some(shmlane::Kind::Spsc | shmlane::Kind::Mpmc | shmlane::Kind::Latest)
    ) {
        return Err(CliError(format!(
            "channel {into} is not a broadcast or bytes channel: replay writes those (or creates one, named anew)"
        )));
    }
    let (shape, unlink) = if let Some((shape, keep)) = chan::existing(into)? {
        if !matches!(shape.kind, KindArg::Broadcast | KindArg::Bytes) {
            return Err(CliError(format!(
                "channel {into} is not a broadcast or bytes channel: replay writes those (or creates one, named anew)"
            )));
        }
        let unlink = if keep {
            UnlinkPolicy::LastDetach
        } else {
            UnlinkPolicy::Never
        };
        (shape, unlink)
    } else {
        // From the file: at most 1 GiB (`Reader::new` checked it) before a size is computed.
        {
            let kind = if h.kind == KIND_BROADCAST {
                KindArg::Broadcast
            } else {
                KindArg::Bytes
            };
            let msg_size = h.msg_size.max(1);
            let mut shape = Shape {
                kind,
                // Broadcast: 4096 slots, fewer for large messages (64 MiB of slots at most).
                capacity: ((64 << 20) / msg_size)
                    .clamp(16, 4096)
                    .next_power_of_two()
                    .min(4096),
                msg_size,
                given: crate::shape::Given::default(),
                mode: shmlane_cli::line::Mode::Lines,
                delim: b'\n',
            };
            if kind == KindArg::Bytes {
                shape.capacity = chan::bytes_capacity(&shape).max(1 << 20);
            }
            // The limits and the size guard `create` applies (over 1 GiB: refused).
            chan::check_shape(into, &shape)?;
            // Kept when replay ends: its messages are for a receiver that comes later.
            (shape, UnlinkPolicy::Never)
        }
    };
    let ch = chan::open_byte_channel(into, &shape, unlink, Join::default())?;
    let sink = if shape.kind == KindArg::Broadcast {
        Sink::Pub(ch.publisher().map_err(|e| chan::open_err(into, &e))?)
    } else {
        Sink::Send(ch.byte_sender().map_err(|e| chan::open_err(into, &e))?)
    };
    let max = match &sink {
        Sink::Pub(p) => p.max_message(),
        Sink::Send(s) => s.max_message(),
    };
    Ok((sink, max, ch))
}

/// `shmlane replay FILE --into NAME`.
pub(crate) fn replay(file: &Path, into: &str, speed: Speed) -> Result<Ended, CliError> {
    let f = std::fs::File::open(file)
        .map_err(|e| CliError(format!("opening {}: {e}", file.display())))?;
    let rerr = |e: recfile::ReadError| CliError(format!("{}: {e}", file.display()));
    let mut reader = Reader::new(std::io::BufReader::with_capacity(1 << 20, f)).map_err(rerr)?;
    let (mut sink, max, _ch) = open_sink(into, &reader.header)?;
    let t0 = Instant::now();
    let mut rec = Record {
        t_ns: 0,
        seq: 0,
        msg: Vec::new(),
    };
    let mut sent = 0u64;
    // The first record's time: the replay starts with it (not after the recorder's idle start).
    let mut first_t: Option<u64> = None;
    loop {
        if let Some(s) = sig::caught() {
            eprintln!("replayed {sent} messages into {into} before the signal");
            return Ok(Ended::Signal(s));
        }
        let at = reader.offset();
        match reader.next_into(&mut rec) {
            Ok(Some(())) => {}
            Ok(None) => break,
            Err(e) => {
                return Err(CliError(format!(
                    "replayed {sent} messages into {into}, then stopped: {}",
                    rerr(e).0
                )));
            }
        }
        if rec.msg.len() > max {
            return Err(CliError(format!(
                "replayed {sent} messages into {into}, then stopped: the record at byte offset {at} holds {} bytes, over the {max} bytes channel {into} takes (replay into a channel made for this recording: a new name)",
                rec.msg.len()
            )));
        }
        if let Speed::Times(f) = speed {
            // The schedule is absolute (from the first message): one late message delays no
            // other. The times come from the file: a schedule this machine's clock cannot
            // hold is an error, not a panic.
            let base = *first_t.get_or_insert(rec.t_ns);
            let due = Duration::try_from_secs_f64(
                Duration::from_nanos(rec.t_ns.saturating_sub(base)).as_secs_f64() / f,
            )
                .ok()
                .and_then(|d| t0.checked_add(d))
                .ok_or_else(|| {
                    CliError(format!(
                        "replayed {sent} messages into {into}, then stopped: the record at byte offset {at} is due {} s after the first, more than this machine can wait for",
                        rec.t_ns.saturating_sub(base) / 1_000_000_000
                    ))
                })?;
            pace(due);
            // A signal ends the wait early: the message is not sent ahead of its time.
            if let Some(s) = sig::caught() {
                eprintln!("replayed {sent} messages into {into} before the signal");
                return Ok(Ended::Signal(s));
            }
        }
        match &mut sink {
            Sink::Pub(p) => p
                .send(&rec.msg)
                .map_err(|e| CliError(format!("replaying into {into}: {e}")))?,
            Sink::Send(s) => {
                let msg = &rec.msg;
                match sig::wait(None, false, |d| match s.send(msg, Some(d)) {
                    Err(shmlane::ByteSendError::Timeout) => None,
                    r => Some(r),
                }) {
                    Ok(r) => r.map_err(|e| CliError(format!("replaying into {into}: {e}")))?,
                    Err(sig::Stop::Signal(sg)) => {
                        eprintln!("replayed {sent} messages into {into} before the signal");
                        return Ok(Ended::Signal(sg));
                    }
                    Err(sig::Stop::Timeout) => unreachable!("no deadline"),
                }
            }
        }
        sent += 1;
    }
    eprintln!("replayed {sent} messages into {into}");
    Ok(Ended::Ok)
}

/// Spin this long before each message's time (after a sleep until then).
const SPIN_WINDOW: Duration = Duration::from_millis(1);

/// Waits until `due`: sleeps until [`SPIN_WINDOW`] before it (a signal is looked at every
/// slice), then spins: a sleep's wake-up can be late by hundreds of µs on a busy machine;
/// the spin keeps each message within a few µs of its time, for at most a millisecond of CPU
/// a message.
fn pace(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > SPIN_WINDOW {
            if sig::caught().is_some() {
                return;
            }
            sig::nap(left.saturating_sub(SPIN_WINDOW));
        } else {
            std::hint::spin_loop();
        }
    }
}
