//! `--kind`, `--capacity`, `--msg-size` and `--yes`: the defaults of a channel a command
//! creates, what was given on the command line (an existing channel must match it: the flags
//! were silently ignored on main), and the size a new channel reserves (over 1 GiB only with
//! `--yes`).

use shmlane_cli::args::{KindArg, ShapeArgs};

use crate::{CliError, chan::Shape};

/// The default capacity of a typed or broadcast channel: 2048 messages. With the default
/// 256-byte lines (512-byte elements) that is a 1 MiB ring: room for bursts of thousands of
/// lines, while a Docker container's 64 MiB /dev/shm still holds dozens of channels (65536
/// messages took 32 MiB on main, half of it).
pub const DEFAULT_CAPACITY: u64 = 2048;
/// The default ring of a bytes channel: 1 MiB (lines up to 128 KiB).
pub const DEFAULT_BYTES_CAPACITY: u64 = 1 << 20;
/// The default slots of a latest-value channel (as the library's): a writer finds a free one
/// at once unless three others are mid-write.
pub const DEFAULT_LATEST_SLOTS: u64 = 4;
/// The default largest message.
pub const DEFAULT_MSG_SIZE: u64 = 256;
/// A channel that reserves more than this asks for `--yes`.
pub const LARGE: u64 = 1 << 30;

/// Which of `--kind`, `--capacity`, `--msg-size` were given.
#[allow(clippy::struct_excessive_bools)] // Four flags of the command line, not a state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub kind: bool,
    pub capacity: bool,
    pub msg_size: bool,
    /// `--yes`: a channel over [`LARGE`] may be created.
    pub yes: bool,
}

impl From<ShapeArgs> for Shape {
    fn from(a: ShapeArgs) -> Self {
        let kind = a.kind.unwrap_or(KindArg::Spsc);
        Self {
            kind,
            capacity: a.capacity.unwrap_or(match kind {
                KindArg::Bytes => DEFAULT_BYTES_CAPACITY,
                KindArg::Latest => DEFAULT_LATEST_SLOTS,
                _ => DEFAULT_CAPACITY,
            }),
            msg_size: a.msg_size.unwrap_or(DEFAULT_MSG_SIZE),
            given: Given {
                kind: a.kind.is_some(),
                capacity: a.capacity.is_some(),
                msg_size: a.msg_size.is_some(),
                yes: a.yes,
            },
            mode: shmlane_cli::line::Mode::Lines,
            delim: b'\n',
        }
    }
}

fn kind_name(k: KindArg) -> &'static str {
    match k {
        KindArg::Spsc => "spsc",
        KindArg::Mpmc => "mpmc",
        KindArg::Bytes => "bytes",
        KindArg::Broadcast => "broadcast",
        KindArg::Latest => "latest",
    }
}

/// An existing channel `have` used with the flags of `wanted`: an error naming each given flag
/// that does not match (on main they were silently ignored).
pub fn check_matches(
    name: &str,
    have: &Shape,
    wanted: &Shape,
    ring_bytes: impl Fn(&Shape) -> u64,
) -> Result<(), CliError> {
    let g = wanted.given;
    let mut wrong = Vec::new();
    if g.kind && wanted.kind != have.kind {
        wrong.push(format!("--kind {}", kind_name(wanted.kind)));
    }
    let bytes = have.kind == KindArg::Bytes;
    if g.capacity {
        // A bytes channel's --capacity is grown to a power of two as at creation.
        let asked = if bytes {
            ring_bytes(&Shape {
                msg_size: if g.msg_size { wanted.msg_size } else { 1 },
                ..*wanted
            })
        } else {
            wanted.capacity
        };
        if asked != have.capacity {
            wrong.push(format!("--capacity {}", wanted.capacity));
        }
    }
    // Bytes, broadcast and latest channels take any message up to their largest; typed ones
    // have one line limit (their element type).
    let any_up_to = bytes || matches!(have.kind, KindArg::Broadcast | KindArg::Latest);
    if g.msg_size
        && (wanted.msg_size > have.msg_size || !any_up_to && wanted.msg_size != have.msg_size)
    {
        wrong.push(format!("--msg-size {}", wanted.msg_size));
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let msg = if bytes {
        format!(
            "a ring of {} bytes, messages up to {} bytes",
            have.capacity, have.msg_size
        )
    } else if have.kind == KindArg::Latest {
        format!(
            "{} slots, values up to {} bytes",
            have.capacity, have.msg_size
        )
    } else {
        format!(
            "capacity {}, messages up to {} bytes",
            have.capacity, have.msg_size
        )
    };
    Err(CliError(format!(
        "channel {name} exists as {} ({msg}), so {} does not apply: leave the flag out to use the channel as it is, or remove it (`shmlane rm {name}`) and create it again",
        kind_name(have.kind),
        wrong.join(" ")
    )))
}

/// `n` bytes for people.
fn human(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n >= 1 << 30 {
        let tenths = (u128::from(n) * 10 + (1 << 29)) >> 30;
        format!("{}.{} GiB", tenths / 10, tenths % 10)
    } else {
        format!("{} MiB", n.div_ceil(MIB))
    }
}

/// A new channel of `bytes` reserved bytes: refused over [`LARGE`] without `--yes`, with what
/// it would take.
pub fn check_size(name: &str, shape: &Shape, bytes: u64) -> Result<(), CliError> {
    if bytes <= LARGE || shape.given.yes {
        return Ok(());
    }
    Err(CliError(format!(
        "channel {name} would reserve {} of shared memory (--capacity {} with --msg-size {}); add --yes to create it anyway, or ask for less",
        human(bytes),
        shape.capacity,
        shape.msg_size
    )))
}
