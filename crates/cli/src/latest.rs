//! `create`, `send` and `recv` on latest-value channels (`--kind latest`, the library's
//! `raw_latest`), and what `ls` and `stat` show of them.
//!
//! The channel holds one value of up to `--msg-size` bytes in `--capacity` slots. `send`
//! publishes each input line (without its delimiter) or frame as the new value, never waiting
//! for a reader; `recv` prints the current value, if one was ever written, then each new value
//! it sees, as a line (or a frame). A reader sees the newest value: values replaced while it
//! was not looking are skipped. The value is plain bytes (the channel's type record is
//! `bytes`), so the mode (lines, `-0`, `--framed`) is each command's own.

use std::{
    io::{BufRead, Write},
    time::Duration,
};

use shmlane::{ChannelStats, Deadline, LatestError, OpenError, UnlinkPolicy, WaitStrategy};
use shmlane_cli::{
    input::{FrameError, Frames, LineError, Lines},
    line::Mode,
};

use crate::{
    CliError,
    chan::{Ended, Join, Shape, open_err, out_err},
    sig::{self, Stop},
};

/// The largest value: 1 MiB (the library's `shmlane_ring::latest::MAX_VALUE_BYTES`).
pub const MAX_VALUE: u64 = 1 << 20;
/// The most slots (`shmlane_ring::latest::MAX_SLOTS`).
pub const MAX_SLOTS: u64 = 1 << 16;
/// How long `send` retries a write that finds every slot held (writers mid-write, or dead in
/// one) when no `--timeout` says otherwise, and `recv` a read that keeps racing writes.
const BUSY_PATIENCE: Duration = Duration::from_secs(1);

/// A latest-value channel found under `name` (from `shmlane::inspect`): one of byte values,
/// as `raw_latest` makes them, or an error naming what it holds.
pub fn check_existing(name: &str, st: &ChannelStats) -> Result<(), CliError> {
    match st.elem_type {
        Some(t) if t.name() == "bytes" && t.size() == 1 => Ok(()),
        Some(t) => Err(CliError(format!(
            "channel {name} is a latest-value channel of {t}, not of the byte values shmlane's commands send; use the program that made it, or another name"
        ))),
        None => Err(CliError(format!(
            "channel {name} has no element type record: remove it (shmlane rm {name}) and create it again"
        ))),
    }
}

/// The settings of a new latest-value channel, each with its range.
pub fn check_shape(name: &str, shape: &Shape) -> Result<(), CliError> {
    check_mode(name, shape.mode)?;
    if shape.msg_size == 0 || shape.msg_size > MAX_VALUE {
        return Err(CliError(format!(
            "--msg-size {} is out of range for a latest-value channel: its value is 1 to {MAX_VALUE} bytes",
            shape.msg_size
        )));
    }
    if !shape.capacity.is_power_of_two() || !(2..=MAX_SLOTS).contains(&shape.capacity) {
        return Err(CliError(format!(
            "--capacity {} is not a slot count of a latest-value channel: use a power of two from 2 to {MAX_SLOTS} (default 4)",
            shape.capacity
        )));
    }
    let bytes = builder(name, shape, UnlinkPolicy::Never, Join::default())
        .segment_size()
        .map_err(|e| open_err(name, &e))?;
    crate::shape::check_size(name, shape, bytes)
}

/// `--raw` is a byte stream in chunks: a value has no room for one.
fn check_mode(name: &str, mode: Mode) -> Result<(), CliError> {
    if mode == Mode::Raw {
        return Err(CliError(format!(
            "{name} is a latest-value channel: it holds one value, not a byte stream, so --raw does not apply; send lines (or --framed messages)"
        )));
    }
    Ok(())
}

fn builder(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
) -> shmlane::RawLatestBuilder {
    // `check_shape` (a new channel) or the segment (an existing one, at most `u32::MAX`: see
    // `chan::existing`) bounds the size.
    let b = shmlane::raw_latest(name, usize::try_from(shape.msg_size).unwrap_or(usize::MAX))
        .capacity(shape.capacity)
        .unlink(unlink)
        .mode(0o600)
        .wait(WaitStrategy::SpinThenPark {
            spins: 2000,
            yields: 10,
        });
    match join.trust_owner {
        Some(uid) => b.trust_owner(uid),
        None => b,
    }
}

/// Whether an existing channel's mode (`have`) refuses a command that asks for `wanted`'s:
/// any difference does, but on a latest-value channel, whose value is bytes that each
/// command reads or writes in its own mode (lines, `-0`, `--framed`).
pub fn mode_clash(have: &Shape, wanted: &Shape) -> bool {
    have.mode != wanted.mode && have.kind != shmlane_cli::args::KindArg::Latest
}

/// `shmlane create --kind latest`: a persistent channel.
pub fn create(
    name: &str,
    shape: &Shape,
    perms: shmlane_cli::share::PermArgs,
) -> Result<(), CliError> {
    check_shape(name, shape)?;
    let b = builder(name, shape, UnlinkPolicy::Never, Join::default()).mode(perms.mode);
    let b = match perms.group {
        Some(gid) => b.group(gid),
        None => b,
    };
    b.create().map_err(|e| open_err(name, &e))?;
    Ok(())
}

fn open(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
) -> Result<shmlane::RawLatestChannel, CliError> {
    check_mode(name, shape.mode)?;
    builder(name, shape, unlink, join)
        .open_or_create()
        .map_err(|e| match e {
            // Another command created the channel between our look and our open, with its
            // own shape: look again (as `chan::open_channel`).
            OpenError::Mismatch { .. } | OpenError::WrongType { .. }
                if unlink == UnlinkPolicy::LastDetach =>
            {
                CliError(crate::chan::RETRY.to_owned())
            }
            e => open_err(name, &e),
        })
}

/// The next input item (a line or a frame) into `item`: `Ok(true)`, `Ok(false)` at the end,
/// or how `send` ends.
enum Input<R> {
    Lines(Lines<R>),
    Frames(Frames<R>),
}

impl<R: BufRead> Input<R> {
    fn count(&self) -> u64 {
        match self {
            Self::Lines(l) => l.count(),
            Self::Frames(f) => f.count(),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::Lines(_) => "line",
            Self::Frames(_) => "frame",
        }
    }

    /// `Err(Ok(ended))`: a signal stopped the read; `Err(Err(e))`: the input failed.
    fn next_into(
        &mut self,
        item: &mut Vec<u8>,
        name: &str,
        version: u64,
    ) -> Result<bool, Result<Ended, CliError>> {
        let what = self.what();
        let next = self.count() + 1;
        let kept = || {
            if version == 0 {
                format!("{name} has no value yet")
            } else {
                format!("the value of {name} stays the last one published (version {version})")
            }
        };
        let io = |e: std::io::Error| match sig::caught() {
            Some(s) => Err(Ok(Ended::Signal(s))),
            None => Err(Err(CliError(format!(
                "reading stdin: {e}; {what} {next} and later were not published; {}",
                kept()
            )))),
        };
        // `has`: "more than 64 bytes" (a line is refused once it is longer), "100 bytes,
        // more than 64" (a frame says its length).
        let too_long = |n: u64, has: String| {
            Err(Err(CliError(format!(
                "{what} {n} has {has} (the value size of latest-value channel {name}); it and the {what}s after it were not published; {}; create the channel with a larger --msg-size (up to {MAX_VALUE})",
                kept()
            ))))
        };
        match self {
            Self::Lines(l) => match l.next_into(item) {
                Ok(more) => Ok(more),
                Err(LineError::TooLong { line, max, .. }) => {
                    too_long(line, format!("more than {max} bytes"))
                }
                Err(LineError::Io(e)) => io(e),
            },
            Self::Frames(f) => match f.next_into(item) {
                Ok(more) => Ok(more),
                Err(FrameError::TooLong { frame, len, max }) => {
                    too_long(frame, format!("{len} bytes, more than {max}"))
                }
                Err(FrameError::Truncated { frame, got, want }) => Err(Err(CliError(format!(
                    "the input ends inside frame {frame}: {got} of its {want} bytes (4-byte length included) are there; it was not published; {}",
                    kept()
                )))),
                Err(FrameError::Io(e)) => io(e),
            },
        }
    }
}

/// Publishes `value`, retrying while every slot is held (at most `timeout`, else
/// [`BUSY_PATIENCE`]).
fn publish(
    w: &mut shmlane::RawLatestWriter,
    name: &str,
    value: &[u8],
    timeout: Option<Duration>,
) -> Result<Result<u64, Stop>, CliError> {
    let deadline = Deadline::after(timeout.unwrap_or(BUSY_PATIENCE));
    loop {
        match w.write(value) {
            Ok(v) => return Ok(Ok(v)),
            Err(LatestError::Busy) if !deadline.is_past() => {
                if let Some(s) = sig::caught() {
                    return Ok(Err(Stop::Signal(s)));
                }
                sig::nap(Duration::from_micros(100));
            }
            Err(LatestError::Busy) if timeout.is_some() => return Ok(Err(Stop::Timeout)),
            Err(e) => return Err(CliError(format!("channel {name}: {e}"))),
        }
    }
}

/// `shmlane send` to a latest-value channel: each input line (`--framed`: frame) replaces the
/// value.
pub fn send(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
    timeout: Option<Duration>,
    input: &mut impl BufRead,
) -> Result<Ended, CliError> {
    let ch = open(name, shape, unlink, join)?;
    let mut w = ch.writer().map_err(|e| open_err(name, &e))?;
    let max = w.value_size();
    let mut input = if shape.mode == Mode::Framed {
        Input::Frames(Frames::new(input, max))
    } else {
        Input::Lines(Lines::with_delimiter(input, max, shape.delim))
    };
    let mut item = Vec::with_capacity(max.min(1 << 16));
    loop {
        match input.next_into(&mut item, name, w.version()) {
            Ok(true) => {}
            Ok(false) => break,
            Err(ended) => return ended,
        }
        match publish(&mut w, name, &item, timeout)? {
            Ok(_) => {}
            Err(Stop::Signal(s)) => return Ok(Ended::Signal(s)),
            Err(Stop::Timeout) => {
                return Ok(Ended::Timeout(format!(
                    "timed out after {:?}: every slot of {name} stayed held by other writers (mid-write, or dead in one); {} {} and later were not published; create the channel with more slots (--capacity)",
                    timeout.unwrap_or_default(),
                    input.what(),
                    input.count()
                )));
            }
        }
    }
    if unlink == UnlinkPolicy::LastDetach && w.version() != 0 && !reader_attached(name) {
        // This sender's channel goes with its last user: say so rather than lose it quietly.
        eprintln!(
            "shmlane: no reader is attached to {name}, which goes with its value when its last user leaves (`shmlane create {name} --kind latest` first keeps it)"
        );
    }
    Ok(Ended::Ok)
}

/// Whether a live process has `name` open for reading.
fn reader_attached(name: &str) -> bool {
    shmlane_segment::inspect_at(&shmlane_segment::Location::Posix(name.to_owned()))
        .ok()
        .flatten()
        .is_some_and(|info| {
            info.attached
                .iter()
                .any(|a| a.alive && a.role & shmlane::ROLE_RECEIVER != 0)
        })
}

/// `shmlane recv` of a latest-value channel: the current value, then each change, until
/// `count` values, the timeout or a signal.
pub fn recv(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    let ch = open(name, shape, unlink, join)?;
    let mut r = ch.reader().map_err(|e| open_err(name, &e))?;
    let mut buf = vec![0u8; r.value_size()];
    let deadline = timeout.map(Deadline::after);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, sig::Stdout::until(deadline));
    let mut got = 0u64;
    // Since when every read has found writes racing it (see `LatestError::Busy`).
    let mut busy_since: Option<std::time::Instant> = None;
    let timed_out = |got: u64| {
        Ended::Timeout(format!(
            "timed out after {:?} with {got} values received",
            timeout.unwrap_or_default()
        ))
    };
    let ended = loop {
        if let Some(s) = sig::caught() {
            break Ended::Signal(s);
        }
        if count.is_some_and(|c| got >= c) {
            break Ended::Ok;
        }
        if deadline.is_some_and(|d| d.is_past()) {
            break timed_out(got);
        }
        let read = match r.read_if_changed(&mut buf) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => {
                // About to wait: let the reader of the output see what came so far.
                out.flush().map_err(|e| out_err(&e))?;
                match sig::wait(deadline, true, |d| {
                    match r.wait_changed(&mut buf, Some(d)) {
                        Err(LatestError::Timeout) => None,
                        other => Some(other),
                    }
                }) {
                    Ok(v) => v,
                    Err(Stop::Timeout) => break timed_out(got),
                    Err(Stop::Signal(s)) => break Ended::Signal(s),
                }
            }
            Err(e) => Err(e),
        };
        let len = match read {
            Ok((len, _version)) => {
                busy_since = None;
                len
            }
            // Writes kept racing the copy: look again after a pause (the loop tests the
            // deadline and signals), and give up if it lasts: a segment whose newest slot
            // stays mid-write (overwritten, or a hostile writer) must not keep recv spinning.
            Err(LatestError::Busy) => {
                let since = *busy_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > BUSY_PATIENCE {
                    return Err(CliError(format!(
                        "channel {name}: {} (for {BUSY_PATIENCE:?})",
                        LatestError::Busy
                    )));
                }
                sig::nap(Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(CliError(format!("channel {name}: {e}"))),
        };
        // The library copied `len` bytes into `buf` (never more than it holds): checked
        // again here, where it is used.
        let value = buf.get(..len).ok_or_else(|| {
            CliError(format!(
                "channel {name}: a value of {len} bytes is longer than the channel's value size ({})",
                buf.len()
            ))
        })?;
        match shape.mode {
            Mode::Framed => out
                .write_all(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes())
                .and_then(|()| out.write_all(value)),
            _ => out
                .write_all(value)
                .and_then(|()| out.write_all(&[shape.delim])),
        }
        .map_err(|e| out_err(&e))?;
        got += 1;
    };
    out.flush().map_err(|e| out_err(&e))?;
    Ok(ended)
}

/// `ls`'s LEN column for a channel: messages queued, or a latest-value channel's version
/// (`v0`: never written).
pub fn shown_len(st: &ChannelStats) -> String {
    if st.kind == shmlane::Kind::Latest {
        format!("v{}", version(st))
    } else {
        st.len.to_string()
    }
}

/// A latest-value channel's current version (0: never written), as `shmlane::inspect` read
/// it: the second ring position.
pub fn version(st: &ChannelStats) -> u64 {
    st.positions.1
}

/// `stat`'s lines for a latest-value channel (in place of the ring's).
pub fn print_stat(st: &ChannelStats, senders: usize, receivers: usize, dead: usize) {
    println!(
        "channel   Latest, {} slots, values up to {} bytes",
        st.capacity, st.msg_size
    );
    match st.elem_type {
        Some(t) => println!("type      {t}"),
        None => println!("type      none recorded"),
    }
    let v = version(st);
    let dead = if dead > 0 {
        format!(" ({dead} attachments of processes that died)")
    } else {
        String::new()
    };
    if v == 0 {
        println!(
            "value     never written (version 0); {senders} writers, {receivers} readers attached{dead}"
        );
    } else {
        println!("value     version {v}; {senders} writers, {receivers} readers attached{dead}");
    }
    for (what, s) in [("written", st.sent), ("read", st.received)] {
        println!(
            "{what:<9} {} values, {} payload bytes, {} sleeps, {} wake-ups issued",
            s.messages, s.bytes, s.sleeps, s.wakeups
        );
    }
    println!(
        "never     {} writers never wake their readers (Wakes::Never)",
        st.never_waking.0
    );
}
