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

/// The line limit a typed channel records, if it holds the commands' lines (checked against
/// its element size: the name is read from shared memory).
pub fn line_size(st: &ChannelStats) -> Option<u64> {
    let ty = st.elem_type?;
    let name = ty.name();
    let n: u64 = name
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()?;
    (n.checked_add(4)? <= ty.size() && ty.size() == st.elem_size).then_some(n)
}

/// The largest message to show for a channel: the line limit of the commands' typed channels,
/// the header's `msg_size` otherwise.
pub fn shown_msg_size(st: &ChannelStats) -> u64 {
    match st.kind {
        Kind::Spsc | Kind::Mpmc => line_size(st).unwrap_or(st.msg_size),
        Kind::Bytes | Kind::Broadcast => st.msg_size,
    }
}
