//! The element type of the typed channels the commands make: a line of up to `msg_size` bytes
//! (a little-endian `u32` length, then the bytes) in a `[u8; N]` element. The channel records
//! it as its type name (`shmlane-cli line of up to 100 bytes`), so the commands (and peers in
//! other languages) find the line limit there; a typed channel made by another program is not
//! taken for one of lines.

use shmlane::{ChannelStats, Kind};

const SUFFIX: &str = " bytes";

/// What the messages of a channel made by the commands carry: the mode `send` and `recv` must
/// both use, recorded in the type name (`shmlane-cli line of up to 100 bytes`, `shmlane-cli
/// frame of up to 100 bytes`, `shmlane-cli raw chunk of up to 65532 bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One message a line (text mode, the default; `-0`: NUL-terminated).
    Lines,
    /// Messages read and written as a 4-byte little-endian length and the bytes (`--framed`).
    Framed,
    /// A byte stream in chunks, boundaries not kept (`--raw`).
    Raw,
}

impl Mode {
    /// The word of the type name: `line`, `frame`, `raw chunk`.
    fn word(self) -> &'static str {
        match self {
            Self::Lines => "line",
            Self::Framed => "frame",
            Self::Raw => "raw chunk",
        }
    }

    /// How the commands name it to the user.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Lines => "lines (text mode)",
            Self::Framed => "length-prefixed messages (--framed)",
            Self::Raw => "a raw byte stream (--raw)",
        }
    }
}

/// The element's length word: the message's length in the low bits, and two flags.
pub const LEN_MASK: u32 = 0x3fff_ffff;
/// Flag of the length word: this line had no delimiter after it in the input (the last line of
/// an input that does not end with one): the receiver writes none after it.
pub const UNTERMINATED: u32 = 1 << 31;
/// Flag of the length word: the sender failed (its input could not be read, a frame was cut
/// short, a line was too long); the message is its reason, the last one it sends.
pub const FAILED: u32 = 1 << 30;

/// The type name of lines of up to `msg_size` bytes.
pub fn line_type(msg_size: u64) -> String {
    mode_type(Mode::Lines, msg_size)
}

/// The type name of `mode`'s messages of up to `msg_size` bytes.
pub fn mode_type(mode: Mode, msg_size: u64) -> String {
    format!("shmlane-cli {} of up to {msg_size}{SUFFIX}", mode.word())
}

/// Largest line limit: a 64 KiB element less the length word.
pub const MAX_LINE: u64 = 65536 - 4;

/// The element size of lines of up to `msg_size` bytes (`1..=MAX_LINE`): the power of two of
/// at least 64 bytes that holds them and their length.
pub fn line_elem_size(msg_size: u64) -> u64 {
    (msg_size + 4).next_power_of_two().max(64)
}

/// The line limit a typed channel records, if it holds the commands' lines: its record must be
/// exactly the one the commands write for that limit (the name spelled as `line_type` spells
/// it, the element size `line_elem_size`, alignment 1), so opening it as lines then opens it;
/// anything else is another program's type. The name is read from shared memory: a hostile
/// one is only not a line type.
pub fn line_size(st: &ChannelStats) -> Option<u64> {
    channel_mode(st).map(|(_, n)| n)
}

/// The mode and message limit a typed channel records, if the commands made it (see
/// `line_size`).
pub fn channel_mode(st: &ChannelStats) -> Option<(Mode, u64)> {
    let ty = st.elem_type?;
    let name = ty.name();
    let rest = name.strip_prefix("shmlane-cli ")?;
    let mode = [Mode::Lines, Mode::Framed, Mode::Raw]
        .into_iter()
        .find(|m| rest.starts_with(m.word()) && rest[m.word().len()..].starts_with(" of up to "))?;
    let n: u64 = rest[mode.word().len()..]
        .strip_prefix(" of up to ")?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()?;
    let canonical = (1..=MAX_LINE).contains(&n) && name == mode_type(mode, n);
    let size = line_elem_size(n);
    (canonical && ty.align() == 1 && ty.size() == size && st.elem_size == size).then_some((mode, n))
}

/// The largest message to show for a channel: the line limit of the commands' typed channels,
/// the header's `msg_size` otherwise.
pub fn shown_msg_size(st: &ChannelStats) -> u64 {
    match st.kind {
        Kind::Spsc | Kind::Mpmc => line_size(st).unwrap_or(st.msg_size),
        Kind::Bytes | Kind::Broadcast | Kind::Latest => st.msg_size,
    }
}
