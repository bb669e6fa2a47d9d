//! `shmlane send --raw` and `recv --raw`: a byte stream, byte for byte, over an spsc channel of
//! 64 KiB chunks (a little-endian `u32` word, the chunk's length and flags as for lines, then
//! the bytes). The sender sends what each read of its input gives (up to a chunk: a slow,
//! interactive input is not held back to fill one); the receiver takes every chunk the ring
//! holds at once (up to `BATCH`) and writes each with one write. A sender that fails (its input
//! cannot be read) sends a last chunk flagged `FAILED` with the reason, so its receiver exits
//! non-zero instead of ending as if the stream were complete. So does a sender stopped by a
//! signal; data never takes the ring's last free slot (`KEPT`), so that mark always finds room
//! at once, whatever the receiver is doing (stopped, blocked on its own output).

use std::time::Duration;

use shmlane::{Deadline, RecvError, SendError, UnlinkPolicy};
use shmlane_cli::line::{FAILED, LEN_MASK};

use crate::{
    CliError,
    chan::{
        Ended, Join, dead_receivers, follow_past_death, linger, open_err, out_err, receivers_left,
        recv_timed_out, send_stopped, sender_failed, unread_clause,
    },
    sig::{self, Stop},
};

/// The element of a raw channel: a 64 KiB chunk.
pub type Chunk = [u8; 65536];

/// Bytes of data a chunk holds (after its length word).
pub const DATA: usize = 65536 - 4;

/// Chunks in a raw channel's ring: 4 MiB.
pub const CHUNKS: u64 = 64;

/// Chunks the receiver takes from the ring at once.
const BATCH: usize = 16;

/// Free slots the sender's data never takes: room for the mark of a failure or an interruption,
/// which then never waits (the sender is the channel's only producer: nobody else takes it).
const KEPT: usize = 1;

/// A raw channel's ring must hold more than the slot the sender keeps (`KEPT`) for its mark:
/// one of a single chunk (made by a program: `--raw` takes no `--capacity`) could not promise
/// that an incomplete stream is marked (review rev17: the mark was dropped and the receiver
/// exited 0 with a cut stream), so `send --raw` refuses it.
pub fn check_ring(name: &str, capacity: u64) -> Result<(), CliError> {
    if capacity > KEPT as u64 {
        return Ok(());
    }
    Err(CliError(format!(
        "channel {name} holds {capacity} chunk, but a raw stream needs at least {} (one stays free for the mark of a stream cut short): remove it (shmlane rm {name}) and let `send --raw` make it",
        KEPT + 1
    )))
}

/// `send --raw`: stdin, as it comes, into the channel.
pub fn send_raw(
    name: &str,
    ch: &shmlane::Channel<Chunk>,
    unlink: UnlinkPolicy,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    let mut tx = ch.producer().map_err(|e| open_err(name, &e))?;
    let before = dead_receivers(name);
    let mut chunk: Box<Chunk> = vec![0u8; 65536]
        .into_boxed_slice()
        .try_into()
        .expect("65536 bytes");
    let mut stdin = sig::Stdin;
    // A pipe on stdin holds 1 MiB instead of 64 KiB (if the system allows): its writer
    // (`cat`) blocks, and switches to us, 16 times less often. Best effort.
    // SAFETY: fcntl on our own descriptor; F_SETPIPE_SZ fails harmlessly on a non-pipe.
    let _ = unsafe { libc::fcntl(0, libc::F_SETPIPE_SZ, 1 << 20) };
    let mut sent = 0u64;
    let failure = loop {
        // Straight into a free slot when there is one past the kept one (read(2) into the
        // ring: no copy of ours); into `chunk`, then a send that waits for room, when not.
        let read = if tx.free() <= KEPT {
            std::io::Read::read(&mut stdin, &mut chunk[4..])
                .inspect(|&n| chunk[..4].copy_from_slice(&(n as u32).to_le_bytes()))
        } else {
            // Free slots are only ever added to by the receiver: this one stays free.
            let mut w = tx
                .write_chunk(1)
                .map_err(|e| CliError(format!("channel {name}: ring is corrupt: {e}")))?;
            {
                let [(slot, _), _] = w.as_mut_ptrs();
                let slot = slot.cast::<u8>();
                // SAFETY: the slot is reserved for this chunk until its commit: 65536 bytes,
                // of which the 65532 after the length word are read into; no reference to the
                // ring is made.
                let r = unsafe { stdin.read_into(slot.add(4), DATA) };
                match r {
                    Ok(n) if n > 0 => {
                        let word = (n as u32).to_le_bytes();
                        // SAFETY: the slot's first 4 bytes, reserved as above.
                        unsafe { std::ptr::copy_nonoverlapping(word.as_ptr(), slot, 4) };
                        w.commit_all();
                        tx.notify(1);
                        // The chunk's bytes, not the 64 KiB element (`stat`'s payload bytes).
                        tx.count_payload(n);
                        sent += n as u64;
                        continue;
                    }
                    // Nothing read: the chunk is dropped uncommitted (the slot stays free).
                    other => other,
                }
            }
        };
        let n = match read {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Some(s) = sig::caught() {
                    return Ok(interrupted(
                        name, unlink, &mut tx, &mut chunk, s, sent, timeout,
                    ));
                }
                break Some(format!(
                    "reading stdin: {e}; the {sent} bytes before were sent, nothing after"
                ));
            }
        };
        match put(name, unlink, &mut tx, &chunk, KEPT, timeout)? {
            Sent::Yes => {
                // The chunk's bytes, not the 64 KiB element (`stat`'s payload bytes).
                tx.count_payload(n);
                sent += n as u64;
            }
            Sent::Ended(Ended::Signal(s)) => {
                return Ok(interrupted(
                    name, unlink, &mut tx, &mut chunk, s, sent, timeout,
                ));
            }
            Sent::Ended(e @ Ended::Timeout(_)) => {
                // Stopped mid-stream: the receiver is told, as for a signal (review rev17: it
                // drained the ring and exited 0 with a cut stream). Into the kept slot, no wait
                // (the timeout is over).
                let why = format!(
                    "timed out after {:?} waiting for room after {sent} bytes; the rest of its input was not sent (the stream is incomplete)",
                    timeout.unwrap_or_default()
                );
                mark(&mut tx, &mut chunk, &why, None);
                return Ok(e);
            }
            Sent::Ended(e) => return Ok(e),
        }
    };
    if let Some(why) = &failure {
        let reason = crate::chan::failure_reason(why, DATA);
        chunk[..4].copy_from_slice(&(reason.len() as u32 | FAILED).to_le_bytes());
        chunk[4..4 + reason.len()].copy_from_slice(&reason);
        // Into the kept slot (no wait), unless another sender left the ring full.
        match put(name, unlink, &mut tx, &chunk, 0, timeout)? {
            Sent::Yes => tx.count_payload(reason.len()),
            Sent::Ended(e) => return Ok(e),
        }
    }
    // Everything is in the ring: stay until a receiver has taken it (see `linger`).
    let _ = tx.stats();
    let spare = u64::from(failure.is_some());
    let ended = linger(name, unlink, timeout, &before, spare);
    match failure {
        Some(why) => Err(CliError(format!(
            "{why}{}",
            crate::chan::unread_clause_past(name, unlink, spare)
        ))),
        None => ended,
    }
}

/// A sender stopped by a signal before the end of its input: its receiver is told that the
/// stream is incomplete (a `FAILED` chunk, so it does not end with exit 0 as if the stream were
/// whole). The mark goes into the slot the data never takes (`KEPT`), at once, whatever the
/// receiver is doing; only a ring another sender left full (its own failure mark, which ends
/// the receiver anyway, or an older `shmlane`) makes it wait, briefly. Then the command ends as
/// any interrupted `send` (exit 128 + the signal).
fn interrupted(
    name: &str,
    unlink: UnlinkPolicy,
    tx: &mut shmlane::Producer<Chunk>,
    chunk: &mut Chunk,
    signal: i32,
    sent: u64,
    timeout: Option<Duration>,
) -> Ended {
    let what = nix::sys::signal::Signal::try_from(signal).map_or("a signal", |s| s.as_str());
    let reason = format!(
        "interrupted by {what} after {sent} bytes; the rest of its input was not sent (the stream is incomplete)"
    );
    // Not a wait for the user (no signal stops it): it returns by its deadline whatever the
    // receiver does; a dead or absent receiver only means nobody is told.
    mark(tx, chunk, &reason, Some(MARK_WAIT));
    send_stopped(name, unlink, Stop::Signal(signal), timeout, 0)
}

/// Sends the mark of a stream that stopped short (`why`): into the kept slot at once, or, when
/// it is taken (a ring another sender left full), waiting up to `wait` for room.
fn mark(tx: &mut shmlane::Producer<Chunk>, chunk: &mut Chunk, why: &str, wait: Option<Duration>) {
    let reason = crate::chan::failure_reason(why, DATA);
    chunk[..4].copy_from_slice(&(reason.len() as u32 | FAILED).to_le_bytes());
    chunk[4..4 + reason.len()].copy_from_slice(&reason);
    let sent = match tx.try_send(*chunk) {
        Ok(()) => true,
        Err(_) => wait.is_some_and(|w| tx.send(*chunk, Some(Deadline::after(w))).is_ok()),
    };
    if sent {
        tx.count_payload(reason.len());
    }
}

/// How long an interrupted sender waits for room for its mark when the kept slot is taken (a
/// ring another sender left full).
const MARK_WAIT: Duration = Duration::from_millis(500);

/// What became of one chunk.
enum Sent {
    Yes,
    /// The command ends so (the receiver died, a signal, the timeout).
    Ended(Ended),
}

/// Puts `chunk` in the ring, leaving `keep` slots free: straight into a free slot (one copy), or
/// when there is none past `keep` by a send that waits for room (in slices, stopping for a
/// signal or the timeout). The caller counts its payload (`count_payload`) when it is sent.
fn put(
    name: &str,
    unlink: UnlinkPolicy,
    tx: &mut shmlane::Producer<Chunk>,
    chunk: &Chunk,
    keep: usize,
    timeout: Option<Duration>,
) -> Result<Sent, CliError> {
    if tx.free() > keep
        && let Ok(mut w) = tx.write_chunk(1)
    {
        w.copy_from_slice(std::slice::from_ref(chunk));
        w.commit_all();
        tx.notify(1);
        return Ok(Sent::Yes);
    }
    let deadline = timeout.map(Deadline::after);
    match sig::wait(deadline, false, |d| {
        match tx.send_keeping(*chunk, keep, Some(d)) {
            Err(SendError::Timeout(_)) => None,
            r => Some(r),
        }
    }) {
        Ok(Ok(())) => Ok(Sent::Yes),
        Ok(Err(SendError::PeerDied(_))) => Ok(Sent::Ended(Ended::PeerGone(format!(
            "peer gone: the receiver of {name} died; the rest of the stream was not delivered"
        )))),
        Ok(Err(SendError::Timeout(_))) | Err(Stop::Timeout) => {
            Ok(Sent::Ended(Ended::Timeout(format!(
                "timed out after {:?} waiting for room in {name} (is a receiver reading?); the rest of the stream was not sent{}",
                timeout.unwrap_or_default(),
                unread_clause(name, unlink)
            ))))
        }
        Err(stop) => Ok(Sent::Ended(send_stopped(name, unlink, stop, timeout, 0))),
        Ok(Err(SendError::Disconnected(_))) => Err(receivers_left(name, unlink)),
        Ok(Err(e)) => Err(CliError(format!("channel {name}: {e}"))),
    }
}

/// Writes the chunk at `elem` (its length word, checked, then its bytes) to `out`; the mark of
/// a failed sender ends `recv` (`Some`). Also returns the chunk's payload length (checked), for
/// `stat`'s payload bytes. The chunk may be in the ring, which another process
/// maps: it is read through the pointer only (the length word copied out once, then used).
///
/// # Safety
/// `elem` must be valid for reads of a whole chunk (65536 bytes) for the call.
unsafe fn emit(
    out: &mut sig::Stdout,
    name: &str,
    elem: *const u8,
    got: u64,
) -> Result<(usize, Option<Ended>), CliError> {
    let mut w = [0u8; 4];
    // SAFETY: the first 4 bytes of the chunk (caller's promise); `w` is ours.
    unsafe { std::ptr::copy_nonoverlapping(elem, w.as_mut_ptr(), 4) };
    let word = u32::from_le_bytes(w);
    let len = (word & LEN_MASK) as usize;
    if len > DATA {
        return Err(CliError(format!(
            "channel {name}: ring is corrupt: chunk {} says it has {len} bytes, more than {DATA}; the segment was overwritten: remove it (shmlane rm {name}) and send again",
            got + 1
        )));
    }
    // SAFETY: `4 + len <= 65536`, checked above: within the chunk.
    let data = unsafe { elem.add(4) };
    if word & FAILED != 0 {
        let mut reason = vec![0u8; len];
        // SAFETY: as above; `reason` is ours, `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(data, reason.as_mut_ptr(), len) };
        return Ok((len, Some(sender_failed(name, &reason, got))));
    }
    // SAFETY: as above.
    unsafe { out.write_all_from(data, len) }.map_err(|e| out_err(&e))?;
    Ok((len, None))
}

/// `recv --raw`: the stream, to stdout.
pub fn recv_raw(
    name: &str,
    ch: &shmlane::Channel<Chunk>,
    join: Join,
    timeout: Option<Duration>,
) -> Result<Ended, CliError> {
    let mut rx = ch.consumer().map_err(|e| open_err(name, &e))?;
    let deadline = timeout.map(Deadline::after);
    let mut out = sig::Stdout::until(deadline);
    // Chunks received so far (for the messages).
    let mut got = 0u64;
    let ended = loop {
        if let Some(s) = sig::caught() {
            break Ended::Signal(s);
        }
        if deadline.is_some_and(|d| d.is_past()) {
            break recv_timed_out(timeout, got);
        }
        let ready = rx.len().min(BATCH);
        if ready > 0 {
            // Written straight from the ring (write(2) from the slots: no copy of ours), then
            // given back.
            let c = rx
                .read_chunk(ready)
                .map_err(|e| CliError(format!("channel {name}: ring is corrupt: {e}")))?;
            let mut failed = None;
            // Each chunk's payload, counted once the batch is given back.
            let mut lens = [0usize; BATCH];
            let mut n = 0;
            'runs: for (first, k) in c.as_ptrs() {
                for i in 0..k {
                    // SAFETY: element `i` of a run of `k` borrowed elements: in the ring,
                    // published, not given back before `c` is committed below.
                    let elem = unsafe { first.add(i) }.cast::<u8>();
                    // SAFETY: as above; the whole element is readable for the call.
                    let (len, f) = unsafe { emit(&mut out, name, elem, got) }?;
                    lens[n] = len;
                    n += 1;
                    failed = f;
                    if failed.is_some() {
                        break 'runs;
                    }
                    got += 1;
                }
            }
            c.commit_all();
            rx.notify(ready);
            for &len in &lens[..n] {
                rx.count_payload(len);
            }
            if let Some(f) = failed {
                break f;
            }
            continue;
        }
        let m = match sig::wait(deadline, true, |d| match rx.recv(Some(d)) {
            Err(RecvError::Timeout) => None,
            r => Some(r),
        }) {
            Ok(Ok(m)) => m,
            Ok(Err(RecvError::Disconnected)) => break Ended::Ok,
            Ok(Err(RecvError::PeerDied)) if join.follow => {
                eprintln!("{}", follow_past_death(name, got));
                continue;
            }
            Ok(Err(RecvError::PeerDied)) => {
                break Ended::PeerGone(format!(
                    "peer gone: the sender of {name} died; the stream is incomplete ({got} chunks received)"
                ));
            }
            Ok(Err(RecvError::Timeout)) | Err(Stop::Timeout) => {
                break recv_timed_out(timeout, got);
            }
            Err(Stop::Signal(s)) => break Ended::Signal(s),
            Ok(Err(RecvError::Corrupt)) => {
                return Err(CliError(format!("channel {name}: ring is corrupt")));
            }
        };
        // SAFETY: `m` is our own copy of the element.
        let (len, failed) = unsafe { emit(&mut out, name, m.as_ptr(), got) }?;
        rx.count_payload(len);
        if let Some(f) = failed {
            break f;
        }
        got += 1;
    };
    Ok(ended)
}
