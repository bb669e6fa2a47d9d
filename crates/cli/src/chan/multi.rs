//! `shmlane recv A B C`: several channels received by one thread through `shmlane::Select`,
//! their messages interleaved as they come (fairly: a busy channel does not starve the others),
//! each line prefixed with its channel's name when asked (`--prefix`).
//!
//! Line and framed channels of the queue kinds (spsc, mpmc, bytes, broadcast). Lines from
//! different channels are never glued together: a sender's last line without a delimiter gets
//! one here. The command ends 0 when every channel has ended (its senders left and it is
//! drained), 3 when a sender of any channel died (with --follow: reported, and it goes on), 4
//! on --timeout, 6 when a sender failed; --count counts messages over all the channels.

use std::io::Write;

use bytemuck::Pod;
use shmlane::{PollSource, RecvError, Select, SelectError, TryRecvError};

use super::{
    ByteRecvError, CliError, Deadline, Duration, Ended, FAILED, Join, KindArg, LEN_MASK, Mode, Rx,
    Shape, bytes_unmark, elem_size, follow_past_death, is_bytes, open_byte_channel, open_channel,
    open_err, out_err, recv_timed_out, resolve, sender_failed, sig,
};

/// What one look at a channel found.
enum Got {
    /// A message, now in the buffer (written as a line ending in the delimiter, whether or
    /// not its sender ended it with one).
    Msg,
    /// The sender failed: its reason is in the buffer.
    Failed,
    Empty,
    /// Its blocking receive would report this (`Disconnected` ends the channel).
    Ended(RecvError),
    /// A broadcast subscriber fell behind and lost this many.
    Lapped(u64),
}

/// One channel of the command: its receiver, as a select source and as a taker of messages.
trait Feed {
    fn source(&mut self) -> &mut dyn PollSource;
    /// Takes one message into `buf` (emptied first).
    fn take(&mut self, buf: &mut Vec<u8>) -> Result<Got, String>;
}

struct Typed<E> {
    rx: Rx<E>,
    /// The largest message: the channel's, and never past the element.
    max: usize,
}

impl<E: Pod + Send> Feed for Typed<E> {
    fn source(&mut self) -> &mut dyn PollSource {
        match &mut self.rx {
            Rx::Spsc(c) => c,
            Rx::Mpmc(r) => r,
        }
    }

    fn take(&mut self, buf: &mut Vec<u8>) -> Result<Got, String> {
        buf.clear();
        let m = match self.rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => return Ok(Got::Empty),
            Err(TryRecvError::Disconnected) => return Ok(Got::Ended(RecvError::Disconnected)),
            Err(TryRecvError::Corrupt) => return Err("ring is corrupt".to_owned()),
        };
        let m = bytemuck::bytes_of(&m);
        let word = u32::from_le_bytes(m[..4].try_into().unwrap());
        let len = (word & LEN_MASK) as usize;
        let limit = if word & FAILED != 0 {
            m.len() - 4
        } else {
            self.max
        };
        if len > limit {
            return Err(format!(
                "ring is corrupt: a message says it has {len} bytes, more than the channel's message size of {}",
                self.max
            ));
        }
        buf.extend_from_slice(&m[4..4 + len]);
        self.rx.count_payload(len);
        Ok(if word & FAILED != 0 {
            Got::Failed
        } else {
            Got::Msg
        })
    }
}

struct Bytes {
    rx: Option<shmlane::ByteReceiver>,
    sub: Option<shmlane::Subscriber>,
    tmp: Vec<u8>,
    delim: u8,
}

impl Feed for Bytes {
    fn source(&mut self) -> &mut dyn PollSource {
        match (&mut self.rx, &mut self.sub) {
            (Some(rx), _) => rx,
            (None, Some(sub)) => sub,
            (None, None) => unreachable!("one of the two is set"),
        }
    }

    fn take(&mut self, buf: &mut Vec<u8>) -> Result<Got, String> {
        buf.clear();
        let r = match (&mut self.rx, &mut self.sub) {
            (Some(rx), _) => rx.try_recv(&mut self.tmp),
            (None, Some(sub)) => sub.try_recv(&mut self.tmp),
            (None, None) => unreachable!("one of the two is set"),
        };
        match r {
            Ok(n) => match bytes_unmark(&self.tmp[..n], self.delim) {
                Ok((line, _terminated)) => {
                    buf.extend_from_slice(line);
                    Ok(Got::Msg)
                }
                Err(reason) => {
                    buf.extend_from_slice(reason);
                    Ok(Got::Failed)
                }
            },
            Err(ByteRecvError::Empty) => Ok(Got::Empty),
            Err(ByteRecvError::Lapped { lost }) => Ok(Got::Lapped(lost)),
            Err(ByteRecvError::Disconnected) => Ok(Got::Ended(RecvError::Disconnected)),
            Err(ByteRecvError::PeerDied) => Ok(Got::Ended(RecvError::PeerDied)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Opens `name` as a feed (creating it as `wanted` says if it does not exist, as `recv` does).
fn open(name: &str, wanted: Shape, join: Join) -> Result<(Box<dyn Feed>, Shape), CliError> {
    let (shape, unlink) = resolve(name, wanted)?;
    if shape.kind == KindArg::Latest || shape.mode == Mode::Raw {
        return Err(CliError(format!(
            "channel {name} is {}: several channels are received together only as lines or frames of the queue kinds (spsc, mpmc, bytes, broadcast); receive it alone",
            if shape.kind == KindArg::Latest {
                "a latest-value channel"
            } else {
                "a --raw byte stream"
            }
        )));
    }
    if is_bytes(&shape) {
        let ch = open_byte_channel(name, &shape, unlink, join)?;
        let (rx, sub) = if shape.kind == KindArg::Broadcast {
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
        let feed = Bytes {
            rx,
            sub,
            tmp: vec![0; max],
            delim: shape.delim,
        };
        return Ok((Box::new(feed), shape));
    }
    with_elem!(elem_size(shape.msg_size), E, {
        let ch = open_channel::<E>(name, &shape, unlink, join)?;
        let rx = match shape.kind {
            KindArg::Spsc => Rx::Spsc(ch.consumer().map_err(|e| open_err(name, &e))?),
            KindArg::Mpmc => Rx::Mpmc(ch.receiver().map_err(|e| open_err(name, &e))?),
            _ => unreachable!("byte and latest kinds are handled above"),
        };
        let max = usize::try_from(shape.msg_size)
            .unwrap_or(usize::MAX)
            .min(size_of::<E>() - 4);
        Ok((Box::new(Typed { rx, max }) as Box<dyn Feed>, shape))
    })
}

/// The most messages taken from one channel before the others get a look (fairness within a
/// burst; `Select` rotates between calls).
const BURST: usize = 64;

/// `shmlane recv A B ...`: see the module docs.
pub(crate) fn recv(
    names: &[String],
    wanted: Shape,
    join: Join,
    count: Option<u64>,
    timeout: Option<Duration>,
    prefix: bool,
) -> Result<Ended, CliError> {
    if wanted.mode == Mode::Raw {
        return Err(CliError(
            "--raw is one byte stream from one channel; receive several channels as lines or frames (without --raw)".to_owned(),
        ));
    }
    if prefix && wanted.mode == Mode::Framed {
        return Err(CliError(
            "--prefix names the channel at the start of each line; with --framed there are no lines: leave one of them out".to_owned(),
        ));
    }
    let mut feeds = Vec::with_capacity(names.len());
    for name in names {
        let mut tries = 0;
        let (feed, shape) = loop {
            match open(name, wanted, join) {
                Err(CliError(m)) if m == super::RETRY && tries < 5 => tries += 1,
                r => break r?,
            }
        };
        feeds.push((name.as_str(), feed, shape));
    }
    let deadline = timeout.map(Deadline::after);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, sig::Stdout::until(deadline));
    let mut done = vec![false; feeds.len()];
    let mut sel = Select::new();
    let mut buf = Vec::new();
    let mut got = 0u64;
    let ended = loop {
        if let Some(s) = sig::caught() {
            break Ended::Signal(s);
        }
        if count.is_some_and(|c| got >= c) {
            break Ended::Ok;
        }
        if deadline.is_some_and(|d| d.is_past()) {
            break recv_timed_out(timeout, got);
        }
        if done.iter().all(|d| *d) {
            break Ended::Ok;
        }
        let ids: Vec<usize> = (0..feeds.len()).filter(|&i| !done[i]).collect();
        // About to wait: let the reader see what arrived so far.
        out.flush().map_err(|e| out_err(&e))?;
        let picked = sig::wait(deadline, true, |d| {
            let mut list: Vec<&mut dyn PollSource> = feeds
                .iter_mut()
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|((_, f, _), _)| f.source())
                .collect();
            match sel.wait(&mut list, Some(d)) {
                Err(SelectError::Timeout) => None,
                r => Some(r),
            }
        });
        let i = match picked {
            Ok(Ok(j)) => ids[j],
            Ok(Err(SelectError::Ended { index, reason })) => {
                let i = ids[index];
                if let Some(e) = ended_channel(feeds[i].0, reason, join, got, &mut out)? {
                    break e;
                }
                done[i] = reason == RecvError::Disconnected;
                continue;
            }
            Ok(Err(e)) => return Err(CliError(format!("recv: {e}"))),
            Err(sig::Stop::Timeout) => break recv_timed_out(timeout, got),
            Err(sig::Stop::Signal(s)) => break Ended::Signal(s),
        };
        let (name, feed, shape) = &mut feeds[i];
        let mut ctx = Ctx {
            out: &mut out,
            buf: &mut buf,
            got: &mut got,
            count,
            prefix,
            join,
        };
        if let Some(e) = ctx.drain(name, feed.as_mut(), shape, &mut done[i])? {
            break e;
        }
    };
    out.flush().map_err(|e| out_err(&e))?;
    Ok(ended)
}

/// What draining one channel needs of the command's state.
struct Ctx<'a> {
    out: &'a mut std::io::BufWriter<sig::Stdout>,
    buf: &'a mut Vec<u8>,
    got: &'a mut u64,
    count: Option<u64>,
    prefix: bool,
    join: Join,
}

impl Ctx<'_> {
    /// Takes up to `BURST` messages from one channel and writes them; `Some` ends the command;
    /// `done` is set when the channel ended.
    fn drain(
        &mut self,
        name: &str,
        feed: &mut dyn Feed,
        shape: &Shape,
        done: &mut bool,
    ) -> Result<Option<Ended>, CliError> {
        for _ in 0..BURST {
            if self.count.is_some_and(|c| *self.got >= c) {
                break;
            }
            let taken = feed.take(self.buf).map_err(|why| {
                CliError(format!(
                    "channel {name}: {why}; remove it (shmlane rm {name}) and send again"
                ))
            })?;
            match taken {
                Got::Msg => {
                    write_msg(self.out, name, shape, self.buf, self.prefix)?;
                    *self.got += 1;
                }
                Got::Failed => {
                    self.out.flush().map_err(|e| out_err(&e))?;
                    return Ok(Some(sender_failed(name, self.buf, *self.got)));
                }
                Got::Empty => break,
                Got::Lapped(lost) => {
                    self.out.flush().map_err(|e| out_err(&e))?;
                    eprintln!(
                        "shmlane: fell behind on {name} and lost {lost} messages; going on with the newest"
                    );
                }
                Got::Ended(reason) => {
                    let e = ended_channel(name, reason, self.join, *self.got, self.out)?;
                    *done = reason == RecvError::Disconnected;
                    return Ok(e);
                }
            }
        }
        Ok(None)
    }
}

/// A channel reported its end: `Disconnected` is that channel done (`None`: go on with the
/// others); a dead sender ends the command (with --follow: reported, and it goes on);
/// corruption is an error.
fn ended_channel(
    name: &str,
    reason: RecvError,
    join: Join,
    got: u64,
    out: &mut std::io::BufWriter<sig::Stdout>,
) -> Result<Option<Ended>, CliError> {
    match reason {
        RecvError::Disconnected | RecvError::Timeout => Ok(None),
        RecvError::PeerDied if join.follow => {
            out.flush().map_err(|e| out_err(&e))?;
            eprintln!("{}", follow_past_death(name, got));
            Ok(None)
        }
        RecvError::PeerDied => Ok(Some(Ended::PeerGone(format!(
            "peer gone: a sender of {name} died; {got} messages received"
        )))),
        RecvError::Corrupt => Err(CliError(format!(
            "channel {name}: ring is corrupt; remove it (shmlane rm {name}) and send again"
        ))),
    }
}

/// Writes one message: a frame, or a line (after `name: ` with --prefix) ending in the
/// delimiter (a message whose sender left it unterminated gets one: lines of different
/// channels are never glued).
fn write_msg(
    out: &mut std::io::BufWriter<sig::Stdout>,
    name: &str,
    shape: &Shape,
    msg: &[u8],
    prefix: bool,
) -> Result<(), CliError> {
    let body = msg;
    let r = if shape.mode == Mode::Framed {
        out.write_all(&(body.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(body))
    } else {
        (if prefix {
            out.write_all(name.as_bytes())
                .and_then(|()| out.write_all(b": "))
        } else {
            Ok(())
        })
        .and_then(|()| out.write_all(body))
        .and_then(|()| out.write_all(&[shape.delim]))
    };
    r.map_err(|e| out_err(&e))
}
