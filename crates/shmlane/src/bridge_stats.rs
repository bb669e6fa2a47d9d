//! What a bridge (`shmlane-bridge`, docs/bridge.md) records about a local channel it serves,
//! where the machine's other tools can read it: a latest-value channel beside the channel,
//! named [`companion_name`]`(channel)`, holding one [`BridgeStats`]. The bridge writes it as it
//! goes (its writer attached while it runs, so `shmlane ls` shows the bridge's process on it);
//! `shmlane stat CHANNEL` prints it. It outlives the bridge: a restarted bridge reads it to go
//! on counting (and to number an export's messages after the last it sent), so a gap across a
//! restart is reported, never hidden.
//!
//! The layout is this struct's, little-endian `u64` words (a latest-value channel of
//! `size_of::<BridgeStats>()` bytes); word 0 is [`BridgeStats::MAGIC`]. A value whose magic or
//! version differs is not a bridge's and is ignored (a restarted bridge starts from zero).

use bytemuck::{Pod, Zeroable};

/// The companion channel of `channel`: `channel` + `.bridge`.
pub fn companion_name(channel: &str) -> String {
    format!("{channel}.bridge")
}

/// A bridge's counters and resume state for one local channel (see the module docs). Counts
/// are totals since the companion was created, across bridge restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BridgeStats {
    /// [`Self::MAGIC`] in a bridge's value.
    pub magic: u64,
    /// [`Self::VERSION`].
    pub version: u64,
    /// The process of the bridge that last wrote this value.
    pub pid: u64,
    /// Export: messages read from this channel and published.
    pub exported: u64,
    /// Export: messages this channel's subscriber lost to laps before the bridge read them
    /// (their numbers are skipped on the wire, so importers count them as lost too).
    pub lapped: u64,
    /// Export: the number the next message published from this channel gets (resume state).
    pub export_next: u64,
    /// Import: messages delivered into this channel.
    pub imported: u64,
    /// Import: messages missing from the numbers received (a gap: lost on the way, dropped by
    /// a sender's `drop` policy, published while no bridge ran).
    pub lost: u64,
    /// Import: messages received twice (same origin, epoch and number), delivered once.
    pub duplicates: u64,
    /// Import: messages the `drop` policy dropped because this channel was full.
    pub dropped_full: u64,
    /// Import: messages larger than this channel takes, dropped.
    pub dropped_too_large: u64,
    /// Import: this bridge's own messages that came back, dropped (loop prevention).
    pub looped: u64,
    /// Import: messages without a valid bridge header, dropped.
    pub malformed: u64,
    /// Import: the origin whose numbers are being followed (resume state).
    pub origin: u64,
    /// Import: that origin's epoch.
    pub epoch: u64,
    /// Import: the number expected next from that origin.
    pub import_next: u64,
}

impl BridgeStats {
    /// Word 0 of a bridge's value: "SHMLBRDG" as a little-endian `u64`.
    pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMLBRDG");
    /// The layout's version.
    pub const VERSION: u64 = 1;

    /// Whether this value was written by a bridge of this layout.
    pub fn is_valid(&self) -> bool {
        self.magic == Self::MAGIC && self.version == Self::VERSION
    }
}

/// The counters on one line, as `shmlane-bridge` and `shmlane stat` print them.
impl core::fmt::Display for BridgeStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "exported {}, lapped {}; imported {}, lost {}, duplicates {}, dropped (full) {}, dropped (too large) {}, looped {}, malformed {}",
            self.exported,
            self.lapped,
            self.imported,
            self.lost,
            self.duplicates,
            self.dropped_full,
            self.dropped_too_large,
            self.looped,
            self.malformed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_sixteen_words() {
        assert_eq!(size_of::<BridgeStats>(), 16 * 8);
        assert!(!BridgeStats::default().is_valid());
    }
}
