//! The element type of the typed channels the commands make: a line of up to `msg_size` bytes
//! (a little-endian `u32` length, then the bytes) in a `[u8; N]` element. The channel records
//! it as its type name (`shmlane-cli line of up to 100 bytes`), so the commands (and peers in
//! other languages) find the line limit there; a typed channel made by another program is not
//! taken for one of lines.

use shmlane::{ChannelStats, Kind};

const PREFIX: &str = "shmlane-cli line of up to ";
const SUFFIX: &str = " bytes";

/// The type name of lines of up to `msg_size` bytes.
pub fn line_type(msg_size: u64) -> String {
    format!("{PREFIX}{msg_size}{SUFFIX}")
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
    let ty = st.elem_type?;
    let name = ty.name();
    let n: u64 = name
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()?;
    let canonical = (1..=MAX_LINE).contains(&n) && name == line_type(n);
    let size = line_elem_size(n);
    (canonical && ty.align() == 1 && ty.size() == size && st.elem_size == size).then_some(n)
}

/// The largest message to show for a channel: the line limit of the commands' typed channels,
/// the header's `msg_size` otherwise.
pub fn shown_msg_size(st: &ChannelStats) -> u64 {
    match st.kind {
        Kind::Spsc | Kind::Mpmc => line_size(st).unwrap_or(st.msg_size),
        Kind::Bytes | Kind::Broadcast => st.msg_size,
    }
}
