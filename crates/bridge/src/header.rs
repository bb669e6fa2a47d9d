//! The header every bridged message carries on the wire (docs/bridge.md, "Header"): 32 bytes,
//! little-endian, before the message's bytes.
//!
//! ```text
//! offset size field
//!      0    2 magic    0x4253 ("SB")
//!      2    1 version  1
//!      3    1 flags    bit 0: heartbeat (no message; `seq` is the next number)
//!      4    4 reserved 0
//!      8    8 origin   the exporting bridge's id for this channel (stable across restarts)
//!     16    8 epoch    the stream's epoch: numbers restart only with a new one
//!     24    8 seq      the message's number in its origin's stream
//! ```
//!
//! Everything read from a received header is checked here, once: a short payload, another
//! magic, another version or unknown flags is an error (the message is dropped and counted as
//! malformed), never a panic.

/// Bytes of the header.
pub const LEN: usize = 32;
/// The header's first two bytes.
pub const MAGIC: u16 = 0x4253;
/// The layout's version.
pub const VERSION: u8 = 1;
/// Flag: a heartbeat, no message; `seq` is the number the next message will get.
pub const HEARTBEAT: u8 = 1;

/// A bridged message's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The exporting bridge's id for the channel (see `Route` in lib.rs).
    pub origin: u64,
    /// The stream's epoch.
    pub epoch: u64,
    /// The message's number (a heartbeat: the next one's).
    pub seq: u64,
    /// Heartbeat (no message).
    pub heartbeat: bool,
}

/// Why a received payload is not a bridged message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than the header.
    #[error("{0} bytes, shorter than the 32-byte bridge header")]
    Short(usize),
    /// Another magic: not from a shmlane bridge.
    #[error("no shmlane bridge header (magic {0:#06x})")]
    Magic(u16),
    /// Another version of the header.
    #[error("bridge header version {0}, this bridge reads version 1")]
    Version(u8),
    /// Unknown flag bits, or a heartbeat that carries a message.
    #[error("bridge header flags {0:#04x} not understood")]
    Flags(u8),
}

impl Header {
    /// Writes the header into `out`'s first [`LEN`] bytes.
    ///
    /// # Panics
    /// If `out` is shorter than [`LEN`] (the bridge's own buffers never are).
    pub fn write(&self, out: &mut [u8]) {
        let out = &mut out[..LEN];
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        out[2] = VERSION;
        out[3] = if self.heartbeat { HEARTBEAT } else { 0 };
        out[4..8].fill(0);
        out[8..16].copy_from_slice(&self.origin.to_le_bytes());
        out[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        out[24..32].copy_from_slice(&self.seq.to_le_bytes());
    }

    /// Splits a received payload into its header and message.
    pub fn read(payload: &[u8]) -> Result<(Self, &[u8]), HeaderError> {
        let Some((h, msg)) = payload.split_first_chunk::<LEN>() else {
            return Err(HeaderError::Short(payload.len()));
        };
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let magic = u16::from_le_bytes([h[0], h[1]]);
        if magic != MAGIC {
            return Err(HeaderError::Magic(magic));
        }
        if h[2] != VERSION {
            return Err(HeaderError::Version(h[2]));
        }
        let flags = h[3];
        if flags & !HEARTBEAT != 0 || (flags & HEARTBEAT != 0 && !msg.is_empty()) {
            return Err(HeaderError::Flags(flags));
        }
        Ok((
            Self {
                origin: word(8),
                epoch: word(16),
                seq: word(24),
                heartbeat: flags & HEARTBEAT != 0,
            },
            msg,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let h = Header {
            origin: 0x0102_0304_0506_0708,
            epoch: 9,
            seq: u64::MAX,
            heartbeat: false,
        };
        let mut buf = vec![0u8; LEN + 3];
        h.write(&mut buf);
        buf[LEN..].copy_from_slice(b"abc");
        assert_eq!(Header::read(&buf), Ok((h, &b"abc"[..])));
        assert_eq!(Header::read(&buf[..31]), Err(HeaderError::Short(31)));
        let mut bad = buf.clone();
        bad[0] = 0;
        assert!(matches!(Header::read(&bad), Err(HeaderError::Magic(_))));
        let mut bad = buf.clone();
        bad[2] = 2;
        assert_eq!(Header::read(&bad), Err(HeaderError::Version(2)));
        let mut bad = buf.clone();
        bad[3] = 4;
        assert_eq!(Header::read(&bad), Err(HeaderError::Flags(4)));
        // A heartbeat carries no message.
        let mut bad = buf.clone();
        bad[3] = HEARTBEAT;
        assert_eq!(Header::read(&bad), Err(HeaderError::Flags(HEARTBEAT)));
        let hb = Header {
            heartbeat: true,
            ..h
        };
        hb.write(&mut buf);
        assert_eq!(Header::read(&buf[..LEN]), Ok((hb, &b""[..])));
    }

    /// Any bytes: an error or a header, never a panic.
    #[test]
    fn any_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000usize {
            let len = n % 80;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = Header::read(&bytes);
        }
    }
}
