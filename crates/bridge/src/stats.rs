//! The companion channel a route keeps beside its local channel (`shmlane::bridge_stats`):
//! counters other tools read, and the resume state a restarted bridge goes on from.

use shmlane::bridge_stats::{BridgeStats, companion_name};
use shmlane::{LatestWriter, UnlinkPolicy};

use crate::BridgeError;

/// The companion of one local channel: the counters in memory and the channel they are
/// written to.
pub(crate) struct Companion {
    pub(crate) now: BridgeStats,
    writer: LatestWriter<BridgeStats>,
    /// Held so the writer's segment stays mapped (and the bridge shows in `shmlane ls`).
    _ch: shmlane::Channel<BridgeStats>,
}

impl Companion {
    /// Opens (or creates, persistent) the companion of `channel` and reads what a previous
    /// bridge left there (a value of another layout is ignored: counts start from zero).
    pub(crate) fn open(channel: &str) -> Result<Self, BridgeError> {
        let name = companion_name(channel);
        let ch = shmlane::latest::<BridgeStats>(&name)
            .unlink(UnlinkPolicy::Never)
            .open_or_create()
            .map_err(|source| BridgeError::Channel {
                name: name.clone(),
                source,
            })?;
        let mut reader = ch.reader().map_err(|source| BridgeError::Channel {
            name: name.clone(),
            source,
        })?;
        let mut now = match reader.read() {
            Ok(Some((v, _))) if v.is_valid() => v,
            _ => BridgeStats::default(),
        };
        now.magic = BridgeStats::MAGIC;
        now.version = BridgeStats::VERSION;
        now.pid = u64::from(std::process::id());
        let writer = ch
            .writer()
            .map_err(|source| BridgeError::Channel { name, source })?;
        let mut c = Self {
            now,
            writer,
            _ch: ch,
        };
        c.save();
        Ok(c)
    }

    /// Publishes the counters (a latest-value write: no system call, never waits). A write
    /// refused (`Busy`: every slot held by writers that raced it) is left for the next one.
    pub(crate) fn save(&mut self) {
        let _ = self.writer.write(&self.now);
    }
}
