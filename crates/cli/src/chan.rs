//! `shmlane create`, `send` and `recv`: byte messages over channels.
//!
//! A message travels in a fixed-size ring element of `N` bytes (a power of two from 64 to
//! 64 KiB): a little-endian `u32` length, then the bytes. `N` is the smallest that holds the
//! channel's message size plus the length.

use std::{
    io::{BufRead, Write},
    time::Duration,
};

use shmlane::{
    ByteRecvError, ByteSendError, Deadline, OpenError, RecvError, SendError, TryRecvError,
    UnlinkPolicy, WaitStrategy,
};
use shmlane_segment::inspect_at as inspect_segment;

use crate::{
    CliError,
    sig::{self, Stop},
};
use shmlane_cli::{
    args::KindArg,
    input::{FrameError, Frames, LineError, Lines},
    line::{FAILED, LEN_MASK, Mode, UNTERMINATED},
};

/// Marks an open that lost a creation race: resolve the shape again.
pub(crate) const RETRY: &str = "\u{0}retry";

/// Runs `attempt` until it does not lose a creation race (a few times at most).
fn retrying(mut attempt: impl FnMut() -> Result<Ended, CliError>) -> Result<Ended, CliError> {
    for _ in 0..5 {
        match attempt() {
            Err(CliError(m)) if m == RETRY => {}
            other => return other,
        }
    }
    Err(CliError(
        "the channel kept changing shape while opening; try again".to_owned(),
    ))
}

/// Largest message size accepted (the 64 KiB element minus the length word).
pub const MAX_MSG: u64 = shmlane_cli::line::MAX_LINE;

/// What send and recv create when the channel does not exist.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub kind: KindArg,
    pub capacity: u64,
    pub msg_size: u64,
    /// Which of these the command line gave (an existing channel must match them).
    pub given: crate::shape::Given,
    /// What the messages carry (recorded in a typed channel's type name).
    pub mode: Mode,
    /// The line delimiter of this command's input or output (`-0`: NUL), for `Mode::Lines`.
    pub delim: u8,
}

/// How `send` or `recv` joins the channel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Join {
    /// Keep going when the senders leave, waiting for new ones (`recv --follow`):
    /// `PeersLeave::Wait`; else the command ends like a pipe once the peers it saw have left.
    pub follow: bool,
    /// Deliver the unread messages of a session in which a process died (`--resume`).
    pub resume: bool,
    /// Accept a channel owned by this user too (`--trust-owner`).
    pub trust_owner: Option<u32>,
}

impl Join {
    fn apply<T: bytemuck::Pod + Send>(self, b: shmlane::Builder<T>) -> shmlane::Builder<T> {
        let b = b
            .when_peers_leave(if self.follow {
                shmlane::PeersLeave::Wait
            } else {
                shmlane::PeersLeave::Disconnect
            })
            .resume(self.resume);
        match self.trust_owner {
            Some(uid) => b.trust_owner(uid),
            None => b,
        }
    }
}

/// Marks the one-line refusal of a stale channel (exit 5).
pub const STALE: &str = "\u{0}stale";

/// How a command ended, beyond success: the exit codes of the contract.
pub enum Ended {
    /// Exit 0.
    Ok,
    /// Exit 3: a peer process died.
    PeerGone(String),
    /// Exit 4: the timeout passed.
    Timeout(String),
    /// Exit 6: the sender reported that it failed (its input could not be read, ended inside
    /// a frame, held a line too long): what was received is incomplete.
    PeerFailed(String),
    /// Exit 128 + the signal: SIGINT, SIGTERM or SIGHUP asked the command to stop, or
    /// (SIGPIPE) its output was closed. Quiet: nothing more is printed.
    Signal(i32),
}

/// A failure that a signal (or a closed output) caused is the signal's exit, not an error.
fn after_signal(r: Result<Ended, CliError>) -> Result<Ended, CliError> {
    match r {
        Err(e) => sig::caught().map_or(Err(e), |s| Ok(Ended::Signal(s))),
        ok => ok,
    }
}

fn elem_size(msg_size: u64) -> u64 {
    shmlane_cli::line::line_elem_size(msg_size)
}

/// The shape of an existing channel, if `name` exists and is one.
pub(crate) fn existing(name: &str) -> Result<Option<(Shape, bool)>, CliError> {
    let info = match inspect_segment(&shmlane_segment::Location::Posix(name.to_owned())) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(CliError(shmlane_cli::share::unreadable(
                name,
                std::path::Path::new(&format!("/dev/shm/{name}")),
            )));
        }
        r => r,
    }
    .map_err(|e| CliError(format!("reading segment {name}: {e}")))?
    .ok_or_else(|| {
        CliError(format!(
            "segment {name} exists but is not a shmlane segment; pick another name"
        ))
    })?;
    if let Some(refusal) =
        shmlane_cli::share::truncated(name, std::path::Path::new(&format!("/dev/shm/{name}")))
    {
        return Err(CliError(refusal));
    }
    let st = shmlane::inspect(&info).ok_or_else(|| {
        CliError(format!(
            "segment {name} exists but is not a shmlane channel; pick another name or remove it (shmlane rm {name})"
        ))
    })?;
    // Read from shared memory: checked before any size is computed from it (an overwritten
    // header must give an error, not an overflow: review rev2).
    let limit = match st.kind {
        // Typed channels: the element size (the line limit is checked in `line_size`).
        shmlane::Kind::Spsc | shmlane::Kind::Mpmc => MAX_MSG + 4,
        shmlane::Kind::Bytes | shmlane::Kind::Broadcast | shmlane::Kind::Latest => {
            u64::from(u32::MAX)
        }
    };
    if st.msg_size == 0 && !matches!(st.kind, shmlane::Kind::Bytes | shmlane::Kind::Broadcast)
        || st.msg_size > limit
    {
        return Err(CliError(format!(
            "channel {name} says its messages have {} bytes, which shmlane's commands do not handle (at most {limit}); if no program made it so, its header was overwritten: remove it (shmlane rm {name})",
            st.msg_size
        )));
    }
    if st.kind == shmlane::Kind::Latest {
        crate::latest::check_existing(name, &st)?;
    }
    let mode = shmlane_cli::line::channel_mode(&st).map_or(Mode::Lines, |(m, _)| m);
    Ok(Some((
        Shape {
            mode,
            delim: b'\n',
            kind: match st.kind {
                shmlane::Kind::Spsc => KindArg::Spsc,
                shmlane::Kind::Mpmc => KindArg::Mpmc,
                shmlane::Kind::Bytes => KindArg::Bytes,
                shmlane::Kind::Broadcast => KindArg::Broadcast,
                shmlane::Kind::Latest => KindArg::Latest,
            },
            capacity: st.capacity,
            msg_size: match st.kind {
                // The line limit is in the type name (the element type decides the header's).
                shmlane::Kind::Spsc | shmlane::Kind::Mpmc => shmlane_cli::line::line_size(&st)
                    .ok_or_else(|| {
                        CliError(match st.elem_type {
                            Some(t) => format!(
                                "channel {name} holds {t}, not the lines shmlane's commands send; use the program that made it, or another name"
                            ),
                            None => format!(
                                "channel {name} has no element type record: it was made by an older shmlane; remove it (shmlane rm {name}) and create it again"
                            ),
                        })
                    })?,
                shmlane::Kind::Bytes | shmlane::Kind::Broadcast | shmlane::Kind::Latest => {
                    st.msg_size
                }
            },
            given: crate::shape::Given::default(),
        },
        st.remove_on_last_leave,
    )))
}

/// A byte channel's ring: `--capacity` bytes, grown to hold eight records of `--msg-size`.
pub fn bytes_capacity(shape: &Shape) -> u64 {
    shape
        .capacity
        .max(8 * (shape.msg_size + 8))
        .next_power_of_two()
        .max(256)
}

pub(crate) fn check_shape(name: &str, shape: &Shape) -> Result<(), CliError> {
    if shape.kind == KindArg::Latest {
        return crate::latest::check_shape(name, shape);
    }
    if shape.mode != Mode::Lines && matches!(shape.kind, KindArg::Bytes | KindArg::Broadcast) {
        return Err(CliError(format!(
            "{} need an spsc or mpmc channel (--kind spsc or mpmc), not {:?}",
            shape.mode.describe(),
            shape.kind
        )));
    }
    if shape.kind == KindArg::Bytes {
        if shape.msg_size == 0 || shape.msg_size > 1 << 27 || shape.capacity > 1 << 30 {
            return Err(CliError(format!(
                "--msg-size {} / --capacity {} out of range for a bytes channel: --msg-size is 1 to 134217728 bytes; --capacity is the ring's size in bytes, at most 1073741824 (grown to a power of two of at least 256 that holds eight records of --msg-size)",
                shape.msg_size, shape.capacity
            )));
        }
        return crate::shape::check_size(name, shape, reserved(name, shape)?);
    }
    if shape.msg_size == 0 || shape.msg_size > MAX_MSG {
        return Err(CliError(format!(
            "--msg-size {} is out of range: use 1..={MAX_MSG} bytes",
            shape.msg_size
        )));
    }
    if !shape.capacity.is_power_of_two() || shape.capacity < 2 || shape.capacity > 1 << 24 {
        return Err(CliError(format!(
            "--capacity {} must be a power of two between 2 and 16777216",
            shape.capacity
        )));
    }
    crate::shape::check_size(name, shape, reserved(name, shape)?)
}

/// Runs `$body` with `$t` bound to the element type for `$elem` bytes.
macro_rules! with_elem {
    ($elem:expr, $t:ident, $body:expr) => {
        match $elem {
            64 => {
                type $t = [u8; 64];
                $body
            }
            128 => {
                type $t = [u8; 128];
                $body
            }
            256 => {
                type $t = [u8; 256];
                $body
            }
            512 => {
                type $t = [u8; 512];
                $body
            }
            1024 => {
                type $t = [u8; 1024];
                $body
            }
            2048 => {
                type $t = [u8; 2048];
                $body
            }
            4096 => {
                type $t = [u8; 4096];
                $body
            }
            8192 => {
                type $t = [u8; 8192];
                $body
            }
            16384 => {
                type $t = [u8; 16384];
                $body
            }
            32768 => {
                type $t = [u8; 32768];
                $body
            }
            65536 => {
                type $t = [u8; 65536];
                $body
            }
            other => Err(CliError(format!("unsupported element size {other}"))),
        }
    };
}

pub(crate) fn open_err(name: &str, e: &OpenError) -> CliError {
    match e {
        // Names the channel, the dead process and both ways out already.
        OpenError::Stale { .. } => CliError(format!("{STALE}{e}")),
        // Most errors name the channel already: say it once (a name that only occurs in the
        // text, as `ring` in a ring error, is not naming it).
        e => CliError(shmlane_cli::errs::once(name, &e.to_string())),
    }
}

/// Opens (or, if `create`, creates) the channel with `shape`.
fn builder<T: bytemuck::Pod + Send>(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
) -> shmlane::Builder<T> {
    let b = match shape.kind {
        KindArg::Spsc => shmlane::spsc::<T>(name),
        KindArg::Mpmc => shmlane::mpmc::<T>(name),
        _ => unreachable!("byte and latest kinds use their own builders"),
    };
    join.apply(b.capacity(shape.capacity))
        .type_name(&shmlane_cli::line::mode_type(shape.mode, shape.msg_size))
        .unlink(unlink)
        // Implicit channels are pipe-like: what nobody read goes with them (reported by send).
        .keep_unread(false)
        .mode(0o600)
        .wait(if shape.mode == Mode::Raw {
            // A stream's three processes (its writer, send, recv) share the cores: a wait
            // sleeps at once instead of spinning on a core the others need.
            WaitStrategy::SpinThenPark {
                spins: 0,
                yields: 0,
            }
        } else {
            WaitStrategy::SpinThenPark {
                spins: 2000,
                yields: 10,
            }
        })
}

/// The builder of a byte or broadcast channel with `shape`.
fn byte_builder(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
) -> shmlane::Builder<u8> {
    let b = if shape.kind == KindArg::Bytes {
        shmlane::bytes(name).capacity(bytes_capacity(shape))
    } else {
        shmlane::broadcast(name)
            .capacity(shape.capacity)
            .msg_size(shape.msg_size)
    };
    join.apply(b)
        .unlink(unlink)
        // Implicit channels are pipe-like: what nobody read goes with them (reported by send).
        .keep_unread(false)
        .mode(0o600)
        .wait(WaitStrategy::SpinThenPark {
            spins: 2000,
            yields: 10,
        })
}

fn is_bytes(shape: &Shape) -> bool {
    matches!(shape.kind, KindArg::Bytes | KindArg::Broadcast)
}

/// The bytes a new channel of `shape` reserves, as the library computes them.
fn reserved(name: &str, shape: &Shape) -> Result<u64, CliError> {
    if is_bytes(shape) {
        return byte_builder(name, shape, UnlinkPolicy::Never, Join::default())
            .segment_size()
            .map_err(|e| open_err(name, &e));
    }
    with_elem!(elem_size(shape.msg_size), E, {
        builder::<E>(name, shape, UnlinkPolicy::Never, Join::default())
            .segment_size()
            .map_err(|e| open_err(name, &e))
    })
}

/// `shmlane create`: a persistent channel, with the permissions of `perms` (`--mode`,
/// `--group`: see `share`).
pub fn create(
    name: &str,
    shape: Shape,
    perms: shmlane_cli::share::PermArgs,
) -> Result<(), CliError> {
    fn with_perms<T: bytemuck::Pod + Send>(
        b: shmlane::Builder<T>,
        perms: shmlane_cli::share::PermArgs,
    ) -> shmlane::Builder<T> {
        let b = b.mode(perms.mode);
        match perms.group {
            Some(gid) => b.group(gid),
            None => b,
        }
    }
    check_shape(name, &shape)?;
    if is_bytes(&shape) {
        with_perms(
            byte_builder(name, &shape, UnlinkPolicy::Never, Join::default()),
            perms,
        )
        .create()
        .map_err(|e| open_err(name, &e))?;
        return Ok(());
    }
    with_elem!(elem_size(shape.msg_size), E, {
        with_perms(
            builder::<E>(name, &shape, UnlinkPolicy::Never, Join::default()),
            perms,
        )
        .create()
        .map_err(|e| open_err(name, &e))?;
        Ok(())
    })
}

/// The shape to use: the existing channel's, or `wanted` for a new one (which is then
/// removed when its last endpoint leaves cleanly).
fn resolve(name: &str, wanted: Shape) -> Result<(Shape, UnlinkPolicy), CliError> {
    match existing(name)? {
        Some((shape, _)) if crate::latest::mode_clash(&shape, &wanted) => Err(CliError(format!(
            "channel {name} carries {}, but this command was asked for {}: use the same mode on both sides ({}), or another name",
            shape.mode.describe(),
            wanted.mode.describe(),
            match shape.mode {
                Mode::Lines => "no --raw or --framed",
                Mode::Framed => "--framed",
                Mode::Raw => "--raw",
            }
        ))),
        Some((shape, keep)) => {
            crate::shape::check_matches(name, &shape, &wanted, bytes_capacity)?;
            Ok((
                Shape {
                    delim: wanted.delim,
                    // The same, but on a latest-value channel (see `mode_clash`).
                    mode: wanted.mode,
                    ..shape
                },
                if keep {
                    UnlinkPolicy::LastDetach
                } else {
                    UnlinkPolicy::Never
                },
            ))
        }
        None => {
            check_shape(name, &wanted)?;
            Ok((wanted, UnlinkPolicy::LastDetach))
        }
    }
}

fn open_channel<T: bytemuck::Pod + Send>(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
) -> Result<shmlane::Channel<T>, CliError> {
    // open_or_create even for a channel seen a moment ago: an implicit one may have been
    // removed by its last user since.
    builder::<T>(name, shape, unlink, join)
        .open_or_create()
        .map_err(|e| match e {
            // Another command created the channel between our look and our open, with its
            // own shape: look again and use that one.
            OpenError::Mismatch { .. } | OpenError::WrongType { .. }
                if unlink == UnlinkPolicy::LastDetach =>
            {
                CliError(RETRY.to_owned())
            }
            e => open_err(name, &e),
        })
}

enum Tx<T> {
    Spsc(shmlane::Producer<T>),
    Mpmc(shmlane::Sender<T>),
}

impl<T: bytemuck::Pod + Send> Tx<T> {
    /// Publishes this endpoint's statistics now.
    fn flush_stats(&mut self) {
        match self {
            Self::Spsc(p) => drop(p.stats()),
            Self::Mpmc(s) => drop(s.stats()),
        }
    }

    fn send(&mut self, v: T, d: Deadline) -> Result<(), SendError<T>> {
        match self {
            Self::Spsc(p) => p.send(v, Some(d)),
            Self::Mpmc(s) => s.send(v, Some(d)),
        }
    }

    /// The message just sent carried `bytes` of payload (`stat`'s `payload_bytes`).
    fn count_payload(&mut self, bytes: usize) {
        match self {
            Self::Spsc(p) => p.count_payload(bytes),
            Self::Mpmc(s) => s.count_payload(bytes),
        }
    }
}

enum Rx<T> {
    Spsc(shmlane::Consumer<T>),
    Mpmc(shmlane::Receiver<T>),
}

impl<T: bytemuck::Pod + Send> Rx<T> {
    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self {
            Self::Spsc(c) => c.try_recv(),
            Self::Mpmc(r) => r.try_recv(),
        }
    }
    fn recv(&mut self, d: Deadline) -> Result<T, RecvError> {
        match self {
            Self::Spsc(c) => c.recv(Some(d)),
            Self::Mpmc(r) => r.recv(Some(d)),
        }
    }

    /// The message just received carried `bytes` of payload (`stat`'s `payload_bytes`).
    fn count_payload(&mut self, bytes: usize) {
        match self {
            Self::Spsc(c) => c.count_payload(bytes),
            Self::Mpmc(r) => r.count_payload(bytes),
        }
    }
}

/// `shmlane send`: each stdin line (without its newline) is one message. `timeout` bounds
/// each wait for the channel: for room in the ring, and at the end for a receiver to take
/// the last lines.
pub fn send(
    name: &str,
    wanted: Shape,
    join: Join,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    let mut input = std::io::BufReader::with_capacity(1 << 16, sig::Stdin);
    after_signal(retrying(|| {
        send_once(name, wanted, join, timeout, &mut input)
    }))
}

fn send_once(
    name: &str,
    wanted: Shape,
    join: Join,
    timeout: Option<Duration>,
    input: &mut impl BufRead,
) -> Result<Ended, CliError> {
    let (shape, unlink) = resolve(name, wanted)?;
    if shape.kind == KindArg::Latest {
        return crate::latest::send(name, &shape, unlink, join, timeout, input);
    }
    if is_bytes(&shape) {
        return send_bytes(name, &shape, unlink, join, timeout, input);
    }
    if shape.mode == Mode::Raw {
        crate::stream::check_ring(name, shape.capacity)?;
        let ch = open_channel::<crate::stream::Chunk>(name, &shape, unlink, join)?;
        return crate::stream::send_raw(name, &ch, unlink, timeout);
    }
    with_elem!(elem_size(shape.msg_size), E, {
        let ch = open_channel::<E>(name, &shape, unlink, join)?;
        let mut tx = match shape.kind {
            KindArg::Spsc => Tx::Spsc(ch.producer().map_err(|e| open_err(name, &e))?),
            KindArg::Mpmc => Tx::Mpmc(ch.sender().map_err(|e| open_err(name, &e))?),
            _ => unreachable!("byte and latest kinds use their own send"),
        };
        let before = dead_receivers(name);
        let mut send_one = |line: &[u8], flags: u32| {
            let mut m: E = bytemuck::Zeroable::zeroed();
            m[..4].copy_from_slice(&(line.len() as u32 | flags).to_le_bytes());
            m[4..4 + line.len()].copy_from_slice(line);
            let deadline = timeout.map(Deadline::after);
            match sig::wait(deadline, false, |d| match tx.send(m, d) {
                Err(SendError::Timeout(_)) => None,
                r => Some(r),
            }) {
                Ok(Ok(())) => {
                    // Its own length, not the element's: `stat` counts the same payload bytes
                    // for every kind.
                    tx.count_payload(line.len());
                    Ok(Sent::Yes)
                }
                Ok(Err(SendError::PeerDied(_))) => Ok(Sent::PeerGone),
                Ok(Err(SendError::Timeout(_))) | Err(Stop::Timeout) => {
                    Ok(Sent::Stopped(Stop::Timeout))
                }
                Err(stop) => Ok(Sent::Stopped(stop)),
                Ok(Err(SendError::Disconnected(_))) => Err(receivers_left(name, unlink)),
                Ok(Err(e)) => Err(CliError(format!("channel {name}: {e}"))),
            }
        };
        let pumped = pump(
            &mut *input,
            shape.msg_size as usize,
            &shape,
            |line, flags| send_one(line, flags),
        )?;
        let failure = match pumped {
            Pumped::Done => None,
            // What was sent before still reaches the receivers (the linger below), then the
            // error is reported; the receiver is told first (it exits non-zero too).
            Pumped::Failed(why) => {
                // The whole element if need be (the receiver allows it for this message).
                let reason = failure_reason(&why, size_of::<E>() - 4);
                match send_one(&reason, FAILED)? {
                    Sent::Yes | Sent::Refused(_) => Some(CliError(why)),
                    Sent::PeerGone => {
                        return Ok(Ended::PeerGone(format!(
                            "peer gone: a receiver of {name} died; then: {why}"
                        )));
                    }
                    Sent::Stopped(stop) => {
                        return Ok(send_stopped(name, unlink, stop, timeout, 0));
                    }
                }
            }
            Pumped::PeerGone(n) => {
                return Ok(Ended::PeerGone(format!(
                    "peer gone: a receiver of {name} died; {}",
                    undelivered(name, n)
                )));
            }
            // Reported while this sender is still attached (the channel as it is now).
            Pumped::Stopped(stop, n) => return Ok(send_stopped(name, unlink, stop, timeout, n)),
        };
        // A channel this command created is removed when the last endpoint leaves: wait until
        // a receiver has taken everything, so leaving early loses nothing.
        tx.flush_stats();
        // After a failure: the mark of it, the last message, need not be taken first.
        let spare = u64::from(failure.is_some());
        let ended = linger(name, unlink, timeout, &before, spare);
        // The error replaces the linger's own report: say what it would have (lines that
        // no receiver took before the timeout stay queued).
        let left = failure
            .as_ref()
            .map_or_else(String::new, |_| unread_clause_past(name, unlink, spare));
        drop(tx);
        drop(ch);
        match failure {
            Some(CliError(e)) => Err(CliError(format!("{e}{left}"))),
            None => ended,
        }
    })
}

/// The channel as `send` leaves it: messages queued, and whether a live receiver is
/// attached (`None` if the channel cannot be read).
/// (`len`, a live receiver, a receiver that died and is not in `before`: the dead receivers
/// found when this sender attached, whose deaths are not its peers' to report.)
/// `len` is what [`Unread`] counts: messages, or for a bytes channel the bytes they take.
fn queued(name: &str, before: &[(u32, u32)]) -> Option<(Unread, bool, bool)> {
    let info = inspect_segment(&shmlane_segment::Location::Posix(name.to_owned())).ok()??;
    let st = shmlane::inspect(&info)?;
    let receivers = || {
        info.attached
            .iter()
            .filter(|a| a.role & shmlane::ROLE_RECEIVER != 0)
    };
    Some((
        Unread {
            len: st.len,
            bytes: st.kind == shmlane::Kind::Bytes,
        },
        receivers().any(|a| a.alive),
        receivers().any(|a| !a.alive && !before.contains(&(a.slot, a.pid))),
    ))
}

/// What a channel holds unread, as `shmlane::inspect` gives it: a number of messages, or for
/// a bytes channel the bytes its queued records take (its messages have no fixed size, so the
/// positions say only that). Displayed as such: "10 messages", "messages taking 160 bytes"
/// (a bytes channel's 10 short lines were reported as "160 messages").
#[derive(Clone, Copy, Debug)]
struct Unread {
    len: u64,
    bytes: bool,
}

impl Unread {
    fn is_empty(self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.bytes {
            write!(f, "messages taking {} bytes", self.len)
        } else {
            write!(f, "{} messages", self.len)
        }
    }
}

/// What a receiver's death cost, when line `n` could not be sent: the lines still in the ring
/// were not consumed either (it said "line 29500 and later" when the receiver had taken 28476).
fn undelivered(name: &str, n: u64) -> String {
    match queued(name, &[]) {
        Some((q, _, _)) if q.bytes && !q.is_empty() => format!(
            "line {n} and later were not sent, and the lines queued before it ({q}) were not delivered"
        ),
        // This sender's lines are the newest in the ring: the unread ones are its last.
        Some((q, _, _)) => format!(
            "line {} and later were not delivered",
            n.saturating_sub(q.len).max(1)
        ),
        None => format!("line {n} and later were not sent"),
    }
}

/// Whether a receiver of `name` has taken any message (the channel's statistics).
fn received_any(name: &str) -> bool {
    inspect_segment(&shmlane_segment::Location::Posix(name.to_owned()))
        .ok()
        .flatten()
        .and_then(|info| shmlane::inspect(&info))
        .is_some_and(|st| st.received.messages > 0)
}

/// The receivers found dead in `name`'s attachment table (slot, pid): deaths before this
/// sender attached, never blamed on its peers.
pub(crate) fn dead_receivers(name: &str) -> Vec<(u32, u32)> {
    let Ok(Some(info)) = inspect_segment(&shmlane_segment::Location::Posix(name.to_owned())) else {
        return Vec::new();
    };
    info.attached
        .iter()
        .filter(|a| a.role & shmlane::ROLE_RECEIVER != 0 && !a.alive)
        .map(|a| (a.slot, a.pid))
        .collect()
}

/// What becomes of the lines still queued when `send` stops early: a clause for its message.
pub(crate) fn unread_clause(name: &str, unlink: UnlinkPolicy) -> String {
    unread_clause_past(name, unlink, 0)
}

/// As `unread_clause`, after a failure whose mark (the last message sent) takes `spare` of
/// what is queued: the lines are counted without it.
pub(crate) fn unread_clause_past(name: &str, unlink: UnlinkPolicy, spare: u64) -> String {
    let queued = queued(name, &[]).map(|(n, a, d)| {
        (
            Unread {
                len: n.len.saturating_sub(spare),
                ..n
            },
            a,
            d,
        )
    });
    match queued {
        None => String::new(),
        Some((n, _, _)) if n.is_empty() => String::new(),
        Some((n, true, _)) => format!("; {n} still queued go to its receiver"),
        // An implicit channel is pipe-like (`keep_unread(false)`): the last to leave removes
        // it with what nobody read, so the next run on the name is a first run.
        Some((n, false, _)) if unlink == UnlinkPolicy::LastDetach => format!(
            "; {n} were not delivered: no receiver took them, and they go with the channel this command made (`shmlane create {name}` first keeps them for a later receiver)"
        ),
        // A created channel keeps them for its next receiver.
        Some((n, false, _)) => format!(
            "; {n} stay queued in {name} for its next receiver (`shmlane rm {name}` drops them)"
        ),
    }
}

/// `send`'s error when every receiver left (`recv | head -1`): what stays queued, and the fix.
pub(crate) fn receivers_left(name: &str, unlink: UnlinkPolicy) -> CliError {
    CliError(format!(
        "every receiver of {name} has left; the rest of the input was not sent{}",
        unread_clause(name, unlink)
    ))
}

/// How `send` ends when a signal or its timeout stops it at line `line`.
pub(crate) fn send_stopped(
    name: &str,
    unlink: UnlinkPolicy,
    stop: Stop,
    timeout: Option<Duration>,
    line: u64,
) -> Ended {
    match stop {
        Stop::Signal(s) => {
            // Quiet, unless lines stay behind with nobody to read them.
            let left = unread_clause(name, unlink);
            if left.contains("for its next receiver") || left.contains("were not delivered") {
                eprintln!("shmlane: interrupted{left}");
            }
            Ended::Signal(s)
        }
        Stop::Timeout => Ended::Timeout(format!(
            "timed out after {:?} waiting for room in {name} (is a receiver reading?); line {line} and later were not sent{}",
            timeout.unwrap_or_default(),
            unread_clause(name, unlink)
        )),
    }
}

/// Waits until the ring is drained (or no receiver can drain it any more), at most
/// `timeout`, stopping for a signal.
/// `spare`: what may stay queued when it is done (the mark of a failure, which a receiver that
/// stopped early, `recv --count`, need not take).
pub(crate) fn linger(
    name: &str,
    unlink: UnlinkPolicy,
    timeout: Option<Duration>,
    before: &[(u32, u32)],
    spare: u64,
) -> Result<Ended, CliError> {
    let deadline = timeout.map(Deadline::after);
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(s) = sig::caught() {
            return Ok(send_stopped(name, unlink, Stop::Signal(s), timeout, 0));
        }
        let Some((len, receivers_alive, receivers_dead)) = queued(name, before) else {
            return Ok(Ended::Ok);
        };
        // The mark of a failure may stay only once a receiver has been at work (one that
        // stopped early, `recv --count`); before, it waits for one like any message.
        if len.is_empty() || len.len <= spare && received_any(name) {
            return Ok(Ended::Ok);
        }
        if !receivers_alive && receivers_dead {
            return Ok(Ended::PeerGone(format!(
                "peer gone: a receiver of {name} died with {len} unread"
            )));
        }
        if deadline.is_some_and(|d| d.is_past()) {
            return Ok(Ended::Timeout(format!(
                "timed out after {:?} waiting for a receiver to take the last messages of {name}{}",
                timeout.unwrap_or_default(),
                unread_clause_past(name, unlink, spare)
            )));
        }
        // Back off to 50 ms: a sender waiting for a receiver that has not come yet idles.
        sig::nap(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `shmlane recv`: prints each message as a line.
pub fn recv(
    name: &str,
    wanted: Shape,
    join: Join,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    after_signal(retrying(|| recv_once(name, wanted, join, count, timeout))).or_else(
        |CliError(m)| match m.strip_prefix(OUT_TIMEOUT) {
            // `--timeout` bounds the whole command, writing its output too.
            Some(m) => Ok(Ended::Timeout(format!(
                "timed out after {:?}: {m}",
                timeout.unwrap_or_default()
            ))),
            None => Err(CliError(m)),
        },
    )
}

fn recv_once(
    name: &str,
    wanted: Shape,
    join: Join,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    let (shape, unlink) = resolve(name, wanted)?;
    if shape.kind == KindArg::Latest {
        return crate::latest::recv(name, &shape, unlink, join, count, timeout);
    }
    if is_bytes(&shape) {
        return recv_bytes(name, &shape, unlink, join, count, timeout);
    }
    if shape.mode == Mode::Raw {
        let ch = open_channel::<crate::stream::Chunk>(name, &shape, unlink, join)?;
        return crate::stream::recv_raw(name, &ch, join, timeout);
    }
    recv_typed(name, &shape, unlink, join, count, timeout)
}

/// `recv` of lines or frames from an spsc or mpmc channel.
fn recv_typed(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    with_elem!(elem_size(shape.msg_size), E, {
        let ch = open_channel::<E>(name, shape, unlink, join)?;
        let mut rx = match shape.kind {
            KindArg::Spsc => Rx::Spsc(ch.consumer().map_err(|e| open_err(name, &e))?),
            KindArg::Mpmc => Rx::Mpmc(ch.receiver().map_err(|e| open_err(name, &e))?),
            _ => unreachable!("byte and latest kinds use their own recv"),
        };
        let deadline = timeout.map(Deadline::after);
        let mut out = std::io::BufWriter::with_capacity(1 << 16, sig::Stdout::until(deadline));
        let mut got = 0u64;
        // The largest message: the channel's, and never past the element.
        let max = usize::try_from(shape.msg_size)
            .unwrap_or(usize::MAX)
            .min(size_of::<E>() - 4);
        // A delimiter owed to the last line written (see `write_typed`).
        let mut owed = false;
        let mut write = |out: &mut std::io::BufWriter<sig::Stdout>,
                         m: &E,
                         got: u64|
         -> Result<Option<Ended>, CliError> {
            let word = u32::from_le_bytes(m[..4].try_into().unwrap());
            let len = (word & LEN_MASK) as usize;
            // A failed sender's reason may take the whole element.
            let limit = if word & FAILED != 0 {
                size_of::<E>() - 4
            } else {
                max
            };
            if len > limit {
                // No sender writes this: the segment was overwritten (or a peer is hostile).
                return Err(CliError(format!(
                    "channel {name}: ring is corrupt: message {} says it has {len} bytes, more than the channel's message size of {max}; the segment was overwritten: remove it (shmlane rm {name}) and send again",
                    got + 1
                )));
            }
            write_typed(out, name, shape, word, &m[4..4 + len], got, &mut owed)
        };
        let ended = loop {
            if let Some(s) = sig::caught() {
                break Ended::Signal(s);
            }
            if count.is_some_and(|c| got >= c) {
                break Ended::Ok;
            }
            // Also while messages keep coming (the waits below look at it too).
            if deadline.is_some_and(|d| d.is_past()) {
                break recv_timed_out(timeout, got);
            }
            let m = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    // About to wait: let the reader see what arrived so far.
                    out.flush().map_err(|e| out_err(&e))?;
                    match sig::wait(deadline, true, |d| match rx.recv(d) {
                        Err(RecvError::Timeout) => None,
                        r => Some(r),
                    }) {
                        Ok(Ok(m)) => m,
                        Ok(Err(RecvError::Disconnected)) => break Ended::Ok,
                        Ok(Err(RecvError::PeerDied)) if join.follow => {
                            out.flush().map_err(|e| out_err(&e))?;
                            eprintln!("{}", follow_past_death(name, got));
                            continue;
                        }
                        Ok(Err(RecvError::PeerDied)) => {
                            break Ended::PeerGone(format!(
                                "peer gone: a sender of {name} died; {got} messages received"
                            ));
                        }
                        Ok(Err(RecvError::Timeout)) | Err(Stop::Timeout) => {
                            break Ended::Timeout(format!(
                                "timed out after {:?} with {got} messages received",
                                timeout.unwrap_or_default()
                            ));
                        }
                        Err(Stop::Signal(s)) => break Ended::Signal(s),
                        Ok(Err(RecvError::Corrupt)) => {
                            return Err(CliError(format!("channel {name}: ring is corrupt")));
                        }
                    }
                }
                Err(TryRecvError::Disconnected) => break Ended::Ok,
                Err(TryRecvError::Corrupt) => {
                    return Err(CliError(format!("channel {name}: ring is corrupt")));
                }
            };
            let failed = write(&mut out, &m, got)?;
            // The payload as the sender counted it (a length word already checked by `write`;
            // from our own copy of the element).
            rx.count_payload((u32::from_le_bytes(m[..4].try_into().unwrap()) & LEN_MASK) as usize);
            if let Some(failed) = failed {
                break failed;
            }
            got += 1;
        };
        out.flush().map_err(|e| out_err(&e))?;
        Ok(ended)
    })
}

/// Writes one message of a typed channel (`word`: its length word, checked) as `shape`'s mode
/// says: a frame, or a line with its delimiter unless the sender had none; the mark of a
/// failed sender ends `recv` (`Some`).
/// `owed`: the last line written was a sender's last line without a delimiter; a line that
/// still follows comes from another sender (on an mpmc channel, or a later sender), and gets
/// that delimiter first, so two senders' lines are not glued together.
fn write_typed(
    out: &mut std::io::BufWriter<sig::Stdout>,
    name: &str,
    shape: &Shape,
    word: u32,
    body: &[u8],
    got: u64,
    owed: &mut bool,
) -> Result<Option<Ended>, CliError> {
    if word & FAILED != 0 {
        out.flush().map_err(|e| out_err(&e))?;
        return Ok(Some(sender_failed(name, body, got)));
    }
    if std::mem::take(owed) {
        out.write_all(&[shape.delim]).map_err(|e| out_err(&e))?;
    }
    match shape.mode {
        Mode::Framed => out
            .write_all(&(body.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(body)),
        _ if word & UNTERMINATED != 0 => {
            *owed = true;
            out.write_all(body)
        }
        _ => out
            .write_all(body)
            .and_then(|()| out.write_all(&[shape.delim])),
    }
    .map_err(|e| out_err(&e))?;
    Ok(None)
}

/// A failed sender's reason as it fits in a message of `room` bytes: cut at a character
/// boundary with an ellipsis when it does not (its stderr has all of it).
pub(crate) fn failure_reason(why: &str, room: usize) -> Vec<u8> {
    if why.len() <= room {
        return why.as_bytes().to_vec();
    }
    let mut end = room.saturating_sub(3);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &why[..end]).into_bytes()
}

/// How `recv` ends when its sender reports that it failed.
pub(crate) fn sender_failed(name: &str, reason: &[u8], got: u64) -> Ended {
    Ended::PeerFailed(format!(
        "the sender of {name} failed: {}; {got} messages received before it (the output is incomplete)",
        String::from_utf8_lossy(reason)
    ))
}

/// Marks a write to the output that `recv --timeout` ended (its reader stopped reading).
const OUT_TIMEOUT: &str = "\u{0}out-timeout";

/// A failed write of `recv`'s output as an error; past `--timeout`, marked to end as a
/// timeout (exit 4, see `recv`).
pub(crate) fn out_err(e: &std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        CliError(format!(
            "{OUT_TIMEOUT}its output is not being read; the last messages received were not written"
        ))
    } else {
        CliError(format!("writing stdout: {e}"))
    }
}

/// `recv`'s timeout.
pub(crate) fn recv_timed_out(timeout: Option<Duration>, got: u64) -> Ended {
    Ended::Timeout(format!(
        "timed out after {:?} with {got} messages received",
        timeout.unwrap_or_default()
    ))
}

/// `recv --follow`'s note when a sender dies: the death is reported (the library reports each
/// once) and the command goes on waiting for the next sender, as after a clean leave (a
/// crashed feed handler is restarted like a redeployed one).
pub(crate) fn follow_past_death(name: &str, got: u64) -> String {
    format!(
        "shmlane: a sender of {name} died ({got} messages received so far); waiting for the next one (--follow)"
    )
}

/// Sends each input frame through `send`.
fn pump_frames(
    input: impl BufRead,
    max: usize,
    mut send: impl FnMut(&[u8], u32) -> Result<Sent, CliError>,
) -> Result<Pumped, CliError> {
    let mut frames = Frames::new(input, max);
    let mut msg = Vec::with_capacity(256);
    loop {
        match frames.next_into(&mut msg) {
            Ok(true) => {}
            Ok(false) => return Ok(Pumped::Done),
            Err(FrameError::TooLong { frame, len, max }) => {
                return Ok(Pumped::Failed(format!(
                    "frame {frame} says it has {len} bytes, more than {max} (the channel's largest message); it and the frames after it were not sent; create the channel with a larger --msg-size (up to {MAX_MSG})"
                )));
            }
            Err(FrameError::Truncated { frame, got, want }) => {
                return Ok(Pumped::Failed(format!(
                    "the input ends inside frame {frame}: {got} of its {want} bytes (4-byte length included) are there; it was not sent"
                )));
            }
            Err(FrameError::Io(e)) => return Ok(read_failed(&e, "frame", frames.count() + 1)),
        }
        if let Some(end) = after_send(send(&msg, 0)?, frames.count()) {
            return Ok(end);
        }
    }
}

/// How pumping ends when reading the input fails before item `next` (a line or a frame,
/// counting from 1): stopped if a signal interrupted the read, else failed.
fn read_failed(e: &std::io::Error, what: &str, next: u64) -> Pumped {
    if let Some(s) = sig::caught() {
        return Pumped::Stopped(Stop::Signal(s), next);
    }
    Pumped::Failed(format!(
        "reading stdin: {e}; {what} {next} and later were not sent"
    ))
}

/// How pumping ends after the send of item `count` (counting from 1), or `None` to go on.
fn after_send(sent: Sent, count: u64) -> Option<Pumped> {
    match sent {
        Sent::Yes => None,
        Sent::PeerGone => Some(Pumped::PeerGone(count)),
        Sent::Stopped(stop) => Some(Pumped::Stopped(stop, count)),
        Sent::Refused(why) => Some(Pumped::Failed(why)),
    }
}

/// How feeding the input lines to a channel ended.
enum Pumped {
    /// Every line was sent.
    Done,
    /// The input failed (a line too long, a frame cut short, a read error): the message says
    /// which; what came before it was sent.
    Failed(String),
    /// The receiver died; this line (counting from 1) and later ones were not delivered.
    PeerGone(u64),
    /// A signal or the timeout stopped the command; this line and later ones were not sent.
    Stopped(Stop, u64),
}

/// What became of one line.
enum Sent {
    /// It is in the channel.
    Yes,
    /// The receiver died.
    PeerGone,
    /// A signal or the timeout came first.
    Stopped(Stop),
    /// It cannot be sent (the reason): the sender fails, and tells its receiver.
    Refused(String),
}

/// Sends each input line (one message a line, at most `max` bytes; with `Mode::Framed` each
/// frame) through `send`, with the flags of its length word (`UNTERMINATED` for a last line
/// without its delimiter).
fn pump(
    input: impl BufRead,
    max: usize,
    shape: &Shape,
    mut send: impl FnMut(&[u8], u32) -> Result<Sent, CliError>,
) -> Result<Pumped, CliError> {
    if shape.mode == Mode::Framed {
        return pump_frames(input, max, send);
    }
    let mut lines = Lines::with_delimiter(input, max, shape.delim);
    let mut line = Vec::with_capacity(256);
    loop {
        match lines.next_into(&mut line) {
            Ok(true) => {}
            Ok(false) => return Ok(Pumped::Done),
            Err(LineError::TooLong { line: n, max, .. }) => {
                return Ok(Pumped::Failed(format!(
                    "line {n} has more than {max} bytes (the channel's largest message); it and the lines after it were not sent; create the channel with a larger --msg-size"
                )));
            }
            Err(LineError::Io(e)) => return Ok(read_failed(&e, "line", lines.count() + 1)),
        }
        let flags = if lines.terminated() { 0 } else { UNTERMINATED };
        if let Some(end) = after_send(send(&line, flags)?, lines.count()) {
            return Ok(end);
        }
    }
}

pub(crate) fn open_byte_channel(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
) -> Result<shmlane::Channel<u8>, CliError> {
    // An existing channel's shape (from `resolve`) gives back the same capacity.
    byte_builder(name, shape, unlink, join)
        .open_or_create()
        .map_err(|e| match e {
            OpenError::Mismatch { .. } | OpenError::WrongType { .. }
                if unlink == UnlinkPolicy::LastDetach =>
            {
                CliError(RETRY.to_owned())
            }
            e => open_err(name, &e),
        })
}

/// One line a message, to a bytes or broadcast channel.
fn send_bytes(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
    timeout: Option<Duration>,
    input: &mut impl BufRead,
) -> Result<Ended, CliError> {
    let ch = open_byte_channel(name, shape, unlink, join)?;
    let broadcast = shape.kind == KindArg::Broadcast;
    let (mut tx, mut publisher) = if broadcast {
        (None, Some(ch.publisher().map_err(|e| open_err(name, &e))?))
    } else {
        (
            Some(ch.byte_sender().map_err(|e| open_err(name, &e))?),
            None,
        )
    };
    let before = dead_receivers(name);
    let max = tx.as_ref().map_or_else(
        || {
            publisher
                .as_ref()
                .map_or(0, shmlane::Publisher::max_message)
        },
        shmlane::ByteSender::max_message,
    );
    let delim = shape.delim;
    let mut marked = Vec::new();
    let mut send_one = |line: &[u8], flags: u32| {
        if flags & UNTERMINATED != 0 && line.len() >= max {
            // A failure like a line too long: its receiver is told (it exits 6).
            return Ok(Sent::Refused(format!(
                "the last line has {} bytes and no delimiter after it: marking it so takes one byte more than the channel's largest message ({max}); end the input with a delimiter, or use a channel with a larger --capacity",
                line.len()
            )));
        }
        // A byte channel has no length word for the flags: see `bytes_message`.
        let line = bytes_message(&mut marked, line, flags, delim);
        let sent = match (&mut tx, &mut publisher) {
            (Some(tx), _) => sig::wait(timeout.map(Deadline::after), false, |d| {
                match tx.send(line, Some(d)) {
                    Err(ByteSendError::Timeout) => None,
                    r => Some(r),
                }
            }),
            // A publisher never waits.
            (None, Some(p)) => Ok(p.send(line)),
            (None, None) => unreachable!(),
        };
        match sent {
            Ok(Ok(())) => Ok(Sent::Yes),
            Ok(Err(ByteSendError::PeerDied)) => Ok(Sent::PeerGone),
            Ok(Err(ByteSendError::Timeout)) | Err(Stop::Timeout) => {
                Ok(Sent::Stopped(Stop::Timeout))
            }
            Err(stop) => Ok(Sent::Stopped(stop)),
            Ok(Err(ByteSendError::Disconnected)) => Err(receivers_left(name, unlink)),
            Ok(Err(e)) => Err(CliError(format!("channel {name}: {e}"))),
        }
    };
    let pumped = pump(input, max, shape, &mut send_one)?;
    // The ring bytes the mark of a failure takes (an 8-byte header, padded to 8).
    let mut spare = 0;
    let failure = match pumped {
        Pumped::Done => None,
        Pumped::Failed(why) => {
            let reason = failure_reason(&why, max.saturating_sub(1));
            spare = 8 + (reason.len() as u64 + 1).next_multiple_of(8);
            match send_one(&reason, FAILED)? {
                Sent::Yes | Sent::Refused(_) => Some(CliError(why)),
                Sent::PeerGone => {
                    return Ok(Ended::PeerGone(format!(
                        "peer gone: the receiver of {name} died; then: {why}"
                    )));
                }
                Sent::Stopped(stop) => return Ok(send_stopped(name, unlink, stop, timeout, 0)),
            }
        }
        Pumped::PeerGone(n) => {
            return Ok(Ended::PeerGone(format!(
                "peer gone: the receiver of {name} died; {}",
                undelivered(name, n)
            )));
        }
        Pumped::Stopped(stop, n) => return Ok(send_stopped(name, unlink, stop, timeout, n)),
    };
    let ended = if broadcast {
        // A broadcast waits for nobody: receivers that keep up got everything.
        let _ = publisher.as_mut().map(shmlane::Publisher::stats);
        Ended::Ok
    } else {
        let _ = tx.as_mut().map(shmlane::ByteSender::stats);
        linger(name, unlink, timeout, &before, spare)?
    };
    // As in `send_once`: the error says what stays queued.
    let left = failure
        .as_ref()
        .map_or_else(String::new, |_| unread_clause_past(name, unlink, spare));
    drop((tx, publisher, ch));
    match failure {
        Some(CliError(e)) => Err(CliError(format!("{e}{left}"))),
        None => Ok(ended),
    }
}

/// A line for a bytes or broadcast channel, whose messages have no room for flags: a line
/// never holds its delimiter, so a message that does is a marker. A line followed by its
/// delimiter is sent as is; the last line of an input without one is sent with the delimiter
/// after it (`abc` + `\n`: the receiver writes `abc` and no delimiter); a failed sender's
/// reason is sent after a delimiter (`\n` + reason, which does not end with one).
/// (Messages other programs send with the delimiter inside them are read the same way.)
fn bytes_message<'a>(buf: &'a mut Vec<u8>, line: &'a [u8], flags: u32, delim: u8) -> &'a [u8] {
    if flags == 0 {
        return line;
    }
    buf.clear();
    if flags & FAILED != 0 {
        buf.push(delim);
        buf.extend(line.iter().map(|&b| if b == delim { b' ' } else { b }));
        if buf.len() < 2 {
            buf.push(b'?');
        }
    } else {
        buf.extend_from_slice(line);
        buf.push(delim);
    }
    buf
}

/// What a message of a bytes or broadcast channel is (see `bytes_message`): a line (whether
/// to write the delimiter after it), or a failed sender's reason.
fn bytes_unmark(msg: &[u8], delim: u8) -> Result<(&[u8], bool), &[u8]> {
    match msg {
        [d, .., last] if *d == delim && *last != delim => Err(&msg[1..]),
        [line @ .., last] if *last == delim => Ok((line, false)),
        _ => Ok((msg, true)),
    }
}

/// Prints each message of a bytes or broadcast channel as a line.
fn recv_bytes(
    name: &str,
    shape: &Shape,
    unlink: UnlinkPolicy,
    join: Join,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    let ch = open_byte_channel(name, shape, unlink, join)?;
    let (mut rx, mut sub) = if shape.kind == KindArg::Broadcast {
        (None, Some(ch.subscriber().map_err(|e| open_err(name, &e))?))
    } else {
        (
            Some(ch.byte_receiver().map_err(|e| open_err(name, &e))?),
            None,
        )
    };
    let max = rx.as_ref().map_or_else(
        || sub.as_ref().map_or(0, shmlane::Subscriber::max_message),
        shmlane::ByteReceiver::max_message,
    );
    let mut buf = vec![0u8; max];
    // A delimiter owed to the last line written (see `write_typed`).
    let mut owed = false;
    let deadline = timeout.map(Deadline::after);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, sig::Stdout::until(deadline));
    let mut got = 0u64;
    let write_err = |e: std::io::Error| out_err(&e);
    let ended = loop {
        if let Some(s) = sig::caught() {
            break Ended::Signal(s);
        }
        if count.is_some_and(|c| got >= c) {
            break Ended::Ok;
        }
        // Also while messages keep coming (the waits below look at it too).
        if deadline.is_some_and(|d| d.is_past()) {
            break recv_timed_out(timeout, got);
        }
        let mut r = match (&mut rx, &mut sub) {
            (Some(rx), _) => rx.try_recv(&mut buf),
            (None, Some(s)) => s.try_recv(&mut buf),
            (None, None) => unreachable!(),
        };
        if r == Err(ByteRecvError::Empty) {
            // About to wait: let the reader see what arrived so far.
            out.flush().map_err(write_err)?;
            let waited = sig::wait(deadline, true, |d| {
                let r = match (&mut rx, &mut sub) {
                    (Some(rx), _) => rx.recv(&mut buf, Some(d)),
                    (None, Some(s)) => s.recv(&mut buf, Some(d)),
                    (None, None) => unreachable!(),
                };
                (r != Err(ByteRecvError::Timeout)).then_some(r)
            });
            r = match waited {
                Ok(r) => r,
                Err(Stop::Timeout) => Err(ByteRecvError::Timeout),
                Err(Stop::Signal(s)) => break Ended::Signal(s),
            };
        }
        match r {
            Ok(n) => {
                let (line, terminated) = match bytes_unmark(&buf[..n], shape.delim) {
                    Ok(l) => l,
                    Err(reason) => {
                        out.flush().map_err(write_err)?;
                        break sender_failed(name, reason, got);
                    }
                };
                // As in `write_typed`: a line after another sender's unterminated last line
                // gets that delimiter first.
                if std::mem::replace(&mut owed, !terminated) {
                    out.write_all(&[shape.delim]).map_err(write_err)?;
                }
                out.write_all(line)
                    .and_then(|()| {
                        if terminated {
                            out.write_all(&[shape.delim])
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(write_err)?;
                got += 1;
            }
            Err(ByteRecvError::Lapped { lost }) => {
                out.flush().map_err(write_err)?;
                eprintln!(
                    "shmlane: fell behind on {name} and lost {lost} messages; going on with the newest"
                );
            }
            Err(ByteRecvError::Disconnected) => break Ended::Ok,
            Err(ByteRecvError::PeerDied) if join.follow => {
                out.flush().map_err(write_err)?;
                eprintln!("{}", follow_past_death(name, got));
            }
            Err(ByteRecvError::PeerDied) => {
                break Ended::PeerGone(format!(
                    "peer gone: a sender of {name} died; {got} messages received"
                ));
            }
            Err(ByteRecvError::Timeout) => {
                break Ended::Timeout(format!(
                    "timed out after {:?} with {got} messages received",
                    timeout.unwrap_or_default()
                ));
            }
            Err(e) => return Err(CliError(format!("channel {name}: {e}"))),
        }
    };
    out.flush().map_err(write_err)?;
    Ok(ended)
}

mod multi;
pub(crate) use multi::recv as recv_many;
