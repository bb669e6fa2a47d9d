//! The recording file of `shmlane record` and `shmlane replay`, version 1 (docs/operations.md,
//! "Record and replay"). All integers little-endian.
//!
//! ```text
//! file header (40 bytes, then the channel's name):
//!   0  magic      8   b"SHMLREC\0"
//!   8  version    4   1
//!  12  kind       4   the recorded channel's kind: 3 bytes, 4 broadcast
//!  16  msg_size   8   the channel's largest message
//!  24  start_ns   8   wall clock (UNIX epoch, ns) when recording began
//!  32  name_len   4   bytes of the name that follows (at most 255)
//!  36  crc        4   CRC32C of bytes 0..36 and the name
//!  40  name       name_len bytes (UTF-8)
//! records, each (24 bytes, then the message):
//!   0  len        4   the message's length
//!   4  crc        4   CRC32C of bytes 8..24 and the message (after `len`'s 4 bytes: see below)
//!   8  t_ns       8   when the recorder took the message, ns after recording began (monotonic)
//!  16  seq        8   the message's number in the channel (a gap: messages the recorder lost)
//!  24  message    len bytes
//! ```
//!
//! A record's CRC covers its `len` too: it is the CRC32C of `len`'s 4 bytes, then bytes 8..24,
//! then the message, so a flipped length is caught as surely as a flipped byte. A reader stops
//! at the first record that is cut short or whose CRC does not match, naming its offset;
//! everything before it was valid.

use std::io::{self, Read, Write};

/// The file's magic bytes.
pub const MAGIC: [u8; 8] = *b"SHMLREC\0";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the file header before the name.
pub const HEADER_LEN: usize = 40;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 24;
/// The longest name a header holds.
pub const MAX_NAME: usize = 255;
/// The largest message a record may claim (a 1 GiB bound: a corrupt length never makes the
/// reader allocate more).
pub const MAX_MESSAGE: u64 = 1 << 30;

/// The recorded channel's kind, as the header stores it.
pub const KIND_BYTES: u32 = 3;
/// See [`KIND_BYTES`].
pub const KIND_BROADCAST: u32 = 4;

/// The file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`KIND_BYTES`] or [`KIND_BROADCAST`].
    pub kind: u32,
    /// The recorded channel's largest message.
    pub msg_size: u64,
    /// Wall-clock start of the recording, ns since the UNIX epoch.
    pub start_ns: u64,
    /// The recorded channel's name.
    pub name: String,
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// ns after the recording began.
    pub t_ns: u64,
    /// The message's number in the channel.
    pub seq: u64,
    /// The message.
    pub msg: Vec<u8>,
}

/// Why a file cannot be read (further): each names the byte offset where it went wrong.
#[derive(Debug)]
pub enum ReadError {
    /// Not a recording: the first bytes are not the magic.
    NotARecording,
    /// A version this code does not read.
    Version(u32),
    /// The file header is damaged (its CRC does not match, or a field is impossible).
    BadHeader(&'static str),
    /// The file ends inside the header or a record that starts at `offset`.
    Truncated { offset: u64 },
    /// The record at `offset` is damaged (its CRC does not match, or its length is impossible).
    Corrupt { offset: u64, what: &'static str },
    /// The file could not be read.
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotARecording => {
                write!(f, "not a shmlane recording (no SHMLREC magic at offset 0)")
            }
            Self::Version(v) => write!(
                f,
                "a recording of version {v}; this shmlane reads version {VERSION} (use the shmlane that wrote it)"
            ),
            Self::BadHeader(what) => write!(f, "the recording's header is damaged: {what}"),
            Self::Truncated { offset } => write!(
                f,
                "the recording is cut short in the record at byte offset {offset} (everything before it is intact)"
            ),
            Self::Corrupt { offset, what } => write!(
                f,
                "the record at byte offset {offset} is damaged: {what} (everything before it is intact)"
            ),
            Self::Io(e) => write!(f, "reading the recording: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

fn crc_header(fixed: &[u8], name: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(fixed), name)
}

fn crc_record(head: &[u8; RECORD_HEADER], msg: &[u8]) -> u32 {
    let c = crc32c::crc32c(&head[0..4]);
    let c = crc32c::crc32c_append(c, &head[8..24]);
    crc32c::crc32c_append(c, msg)
}

/// Writes the file header.
pub fn write_header(w: &mut impl Write, h: &Header) -> io::Result<()> {
    let name = h.name.as_bytes();
    if name.len() > MAX_NAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "channel name longer than 255 bytes",
        ));
    }
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&h.kind.to_le_bytes());
    b[16..24].copy_from_slice(&h.msg_size.to_le_bytes());
    b[24..32].copy_from_slice(&h.start_ns.to_le_bytes());
    b[32..36].copy_from_slice(&(name.len() as u32).to_le_bytes());
    let crc = crc_header(&b[0..36], name);
    b[36..40].copy_from_slice(&crc.to_le_bytes());
    w.write_all(&b)?;
    w.write_all(name)
}

/// Writes one record.
pub fn write_record(w: &mut impl Write, t_ns: u64, seq: u64, msg: &[u8]) -> io::Result<()> {
    let len = u32::try_from(msg.len())
        .ok()
        .filter(|&l| u64::from(l) <= MAX_MESSAGE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message over 1 GiB"))?;
    let mut h = [0u8; RECORD_HEADER];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&t_ns.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc_record(&h, msg);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    w.write_all(&h)?;
    w.write_all(msg)
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the input ended first (having read some
/// or none: `got` says how many).
fn read_full(r: &mut impl Read, buf: &mut [u8], got: &mut usize) -> io::Result<bool> {
    *got = 0;
    while *got < buf.len() {
        match r.read(&mut buf[*got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => *got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads a recording: its header first, then its records one at a time.
pub struct Reader<R> {
    r: R,
    /// The offset of the next record.
    offset: u64,
    /// The header.
    pub header: Header,
}

impl<R> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("offset", &self.offset)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the file header.
    pub fn new(mut r: R) -> Result<Self, ReadError> {
        let mut b = [0u8; HEADER_LEN];
        let mut got = 0;
        let full = read_full(&mut r, &mut b, &mut got).map_err(ReadError::Io)?;
        if got >= 8 && b[0..8] != MAGIC || got < 8 && b[..got] != MAGIC[..got] {
            return Err(ReadError::NotARecording);
        }
        if !full {
            return Err(ReadError::Truncated { offset: 0 });
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let version = u32_at(8);
        if version != VERSION {
            return Err(ReadError::Version(version));
        }
        let name_len = u32_at(32) as usize;
        if name_len > MAX_NAME {
            return Err(ReadError::BadHeader("a name longer than 255 bytes"));
        }
        let mut name = vec![0u8; name_len];
        if !read_full(&mut r, &mut name, &mut got).map_err(ReadError::Io)? {
            return Err(ReadError::Truncated { offset: 0 });
        }
        if crc_header(&b[0..36], &name) != u32_at(36) {
            return Err(ReadError::BadHeader("its checksum does not match"));
        }
        let kind = u32_at(12);
        if kind != KIND_BYTES && kind != KIND_BROADCAST {
            return Err(ReadError::BadHeader("an unknown channel kind"));
        }
        if u64_at(16) > MAX_MESSAGE {
            return Err(ReadError::BadHeader("a largest message over 1 GiB"));
        }
        let name = String::from_utf8(name).map_err(|_| ReadError::BadHeader("a name not UTF-8"))?;
        Ok(Self {
            r,
            offset: (HEADER_LEN + name_len) as u64,
            header: Header {
                kind,
                msg_size: u64_at(16),
                start_ns: u64_at(24),
                name,
            },
        })
    }

    /// The byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record (`Ok(None)` at a clean end of the file), read into `rec` (its buffer
    /// reused).
    pub fn next_into(&mut self, rec: &mut Record) -> Result<Option<()>, ReadError> {
        let at = self.offset;
        let mut h = [0u8; RECORD_HEADER];
        let mut got = 0;
        if !read_full(&mut self.r, &mut h, &mut got).map_err(ReadError::Io)? {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ReadError::Truncated { offset: at })
            };
        }
        let len = u64::from(u32::from_le_bytes(h[0..4].try_into().unwrap_or([0; 4])));
        if len > self.header.msg_size {
            return Err(ReadError::Corrupt {
                offset: at,
                what: "a length over the recorded channel's largest message",
            });
        }
        // Read as it comes: a length cut short or damaged costs no allocation beyond the
        // bytes the file has.
        rec.msg.clear();
        let n = (&mut self.r)
            .take(len)
            .read_to_end(&mut rec.msg)
            .map_err(ReadError::Io)?;
        if n as u64 != len {
            return Err(ReadError::Truncated { offset: at });
        }
        let crc = u32::from_le_bytes(h[4..8].try_into().unwrap_or([0; 4]));
        if crc_record(&h, &rec.msg) != crc {
            return Err(ReadError::Corrupt {
                offset: at,
                what: "its checksum does not match",
            });
        }
        rec.t_ns = u64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8]));
        rec.seq = u64::from_le_bytes(h[16..24].try_into().unwrap_or([0; 8]));
        self.offset = at + RECORD_HEADER as u64 + len;
        Ok(Some(()))
    }
}

/// How fast `replay` sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the channel takes them.
    Max,
    /// The recorded gaps divided by this factor (1.0: the original pacing).
    Times(f64),
}

/// The slowest replay factor (a thousandth of the recorded pace).
pub const MIN_SPEED: f64 = 0.001;
/// The fastest factor short of `max`.
pub const MAX_SPEED: f64 = 1_000_000.0;

/// Parses `max`, `1x`, `2x`, `0.5x` (factors from [`MIN_SPEED`] to [`MAX_SPEED`]).
pub fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    s.strip_suffix('x')
        .and_then(|f| f.parse::<f64>().ok())
        .filter(|f| (MIN_SPEED..=MAX_SPEED).contains(f))
        .map(Speed::Times)
        .ok_or_else(|| {
            format!(
                "{s:?} is not a speed: give max, or a factor from {MIN_SPEED}x to {MAX_SPEED}x such as 1x, 2x, 0.5x"
            )
        })
}

/// Fuzz entry point: reads `data` as a recording to its end or its first error; every record
/// read lies within the file and the offsets only grow.
#[doc(hidden)]
pub fn fuzz_read(data: &[u8]) {
    let Ok(mut r) = Reader::new(data) else { return };
    let mut rec = Record {
        t_ns: 0,
        seq: 0,
        msg: Vec::new(),
    };
    let mut last = r.offset();
    while let Ok(Some(())) = r.next_into(&mut rec) {
        assert!(r.offset() > last && r.offset() <= data.len() as u64);
        assert!(rec.msg.len() as u64 <= r.header.msg_size);
        last = r.offset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut f = Vec::new();
        write_header(
            &mut f,
            &Header {
                kind: KIND_BROADCAST,
                msg_size: 64,
                start_ns: 7,
                name: "ticks".into(),
            },
        )
        .unwrap();
        for i in 0..10u64 {
            write_record(&mut f, i * 1000, i, &vec![i as u8; i as usize]).unwrap();
        }
        f
    }

    fn read_all(f: &[u8]) -> (Vec<Record>, Option<ReadError>) {
        let mut r = match Reader::new(f) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        loop {
            let mut rec = Record {
                t_ns: 0,
                seq: 0,
                msg: Vec::new(),
            };
            match r.next_into(&mut rec) {
                Ok(Some(())) => out.push(rec),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn round_trip() {
        let (recs, err) = read_all(&sample());
        assert!(err.is_none());
        assert_eq!(recs.len(), 10);
        assert_eq!(recs[3].msg, vec![3u8; 3]);
        assert_eq!((recs[9].t_ns, recs[9].seq), (9000, 9));
    }

    /// Record `k` starts at this offset (header 40 + "ticks").
    fn offset_of(k: u64) -> u64 {
        45 + (0..k).map(|i| 24 + i).sum::<u64>()
    }

    #[test]
    fn every_cut_and_every_flip_is_caught_at_its_record() {
        let f = sample();
        let end = f.len() as u64;
        for cut in 45..end {
            let (recs, err) = read_all(&f[..cut as usize]);
            // The records wholly before the cut, then the one it cuts.
            let whole = (0..10).take_while(|&k| offset_of(k + 1) <= cut).count() as u64;
            assert_eq!(recs.len() as u64, whole, "cut at {cut}");
            match err {
                None => assert_eq!(offset_of(whole), cut, "a clean end only between records"),
                Some(ReadError::Truncated { offset }) => assert_eq!(offset, offset_of(whole)),
                Some(e) => panic!("cut at {cut}: {e}"),
            }
        }
        for byte in 45..end {
            for bit in 0..8 {
                let mut g = f.clone();
                g[byte as usize] ^= 1 << bit;
                let (recs, err) = read_all(&g);
                let k = (0..10).take_while(|&k| offset_of(k + 1) <= byte).count() as u64;
                assert_eq!(recs.len() as u64, k, "flip at {byte}.{bit}");
                match err {
                    Some(ReadError::Corrupt { offset, .. } | ReadError::Truncated { offset }) => {
                        assert_eq!(offset, offset_of(k), "flip at {byte}.{bit}");
                    }
                    other => panic!("flip at {byte}.{bit}: {other:?}"),
                }
            }
        }
        // The header: any flip is refused before a record is read.
        for byte in 0..45 {
            let mut g = f.clone();
            g[byte] ^= 0x10;
            let (recs, err) = read_all(&g);
            assert!(recs.is_empty() && err.is_some(), "header flip at {byte}");
        }
    }
}
