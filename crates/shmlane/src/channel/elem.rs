//! The element type record: region `type` of every channel (docs/design.md, "Channels").
//!
//! ```text
//! region "type" (TYPE_SIZE = 256 bytes; words are native-endian u64, written once at creation)
//!   0   element size in bytes           8   element alignment in bytes
//!   16  FNV-1a 64 hash of the full name (UTF-8 bytes)
//!   24  length of the full name in bytes
//!   32  the name's first 112 bytes, zero-padded (bytes 32..144)
//! ```
//!
//! Two records are the same type when all 18 words are equal: size, alignment, the full name's
//! length and hash, and its first 112 bytes. Byte and broadcast-byte channels record `bytes`
//! (size 1, alignment 1).

use core::fmt;
use std::borrow::Cow;

use super::{AtomicU64, Ordering};

/// Region kind tag of the type record.
pub(crate) const REGION_TYPE: u32 = 0x5459;
/// Bytes of the type region.
pub(crate) const TYPE_SIZE: u64 = 256;
/// Bytes of the name stored in the record (longer names are told apart by length and hash).
pub const TYPE_NAME_STORED: usize = 112;
/// Words of the record that identify the type.
pub(crate) const TYPE_WORDS: usize = 4 + TYPE_NAME_STORED / 8;

/// The type name byte and broadcast-byte channels record.
pub(crate) const BYTES_TYPE: &str = "bytes";

/// The element type a channel holds, as recorded at its creation: size, alignment and a name
/// the user controls ([`Builder::type_name`](crate::Builder::type_name); by default
/// `core::any::type_name::<T>()`). `Display` gives e.g. `u64 (8 bytes, align 8)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ElemType {
    size: u64,
    align: u64,
    hash: u64,
    len: u64,
    prefix: [u8; TYPE_NAME_STORED],
}

/// FNV-1a, 64 bits, of `bytes`: the hash the type record keeps of the full name (simple to
/// compute from C or Python: offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl ElemType {
    /// The record of an element named `name` of `size` bytes aligned to `align`.
    pub(crate) fn new(name: &str, size: u64, align: u64) -> Self {
        let mut prefix = [0u8; TYPE_NAME_STORED];
        let n = name.len().min(TYPE_NAME_STORED);
        prefix[..n].copy_from_slice(&name.as_bytes()[..n]);
        Self {
            size,
            align,
            hash: fnv1a64(name.as_bytes()),
            len: name.len() as u64,
            prefix,
        }
    }

    /// The record's words, in region order.
    pub(crate) fn to_words(self) -> [u64; TYPE_WORDS] {
        core::array::from_fn(|i| match i {
            0 => self.size,
            1 => self.align,
            2 => self.hash,
            3 => self.len,
            _ => {
                let at = (i - 4) * 8;
                u64::from_ne_bytes(self.prefix[at..at + 8].try_into().unwrap_or([0; 8]))
            }
        })
    }

    /// The record the words say (any words: read from shared memory, used only to compare
    /// and to print).
    pub(crate) fn from_words(w: &[u64; TYPE_WORDS]) -> Self {
        let mut prefix = [0u8; TYPE_NAME_STORED];
        for (chunk, word) in prefix.chunks_exact_mut(8).zip(&w[4..]) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        Self {
            size: w[0],
            align: w[1],
            hash: w[2],
            len: w[3],
            prefix,
        }
    }

    /// Size of an element in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Alignment of an element in bytes.
    pub fn align(&self) -> u64 {
        self.align
    }

    /// FNV-1a 64 hash of the full name ([`fnv1a64`]).
    pub fn name_hash(&self) -> u64 {
        self.hash
    }

    /// Length of the full name in bytes.
    pub fn name_len(&self) -> u64 {
        self.len
    }

    /// The name as recorded: its first 112 bytes (invalid UTF-8 replaced), followed by `…`
    /// if the full name is longer.
    pub fn name(&self) -> Cow<'_, str> {
        let n = usize::try_from(self.len).map_or(TYPE_NAME_STORED, |l| l.min(TYPE_NAME_STORED));
        let s = String::from_utf8_lossy(&self.prefix[..n]);
        if self.len > TYPE_NAME_STORED as u64 {
            Cow::Owned(format!("{s}…"))
        } else {
            s
        }
    }
}

impl ElemType {
    /// Why the record contradicts itself, if it does: no shmlane writes such a record (a
    /// name is non-empty UTF-8, hashed and measured as stored, zero-padded; an alignment is a
    /// power of two dividing the size), so it was overwritten. Any words: checks only.
    pub(crate) fn damage(&self) -> Option<&'static str> {
        if self.align == 0 || !self.align.is_power_of_two() {
            return Some("the alignment is not a power of two");
        }
        if self.size % self.align != 0 {
            return Some("the size is not a multiple of the alignment");
        }
        if self.len == 0 {
            return Some("the name is empty");
        }
        let stored =
            usize::try_from(self.len).map_or(TYPE_NAME_STORED, |l| l.min(TYPE_NAME_STORED));
        if self.prefix[stored..].iter().any(|&b| b != 0) {
            return Some("bytes past the name are not zero");
        }
        match core::str::from_utf8(&self.prefix[..stored]) {
            Ok(_) => {}
            // A long name is cut at 112 bytes, maybe inside a character.
            Err(e) if e.error_len().is_none() && self.len > TYPE_NAME_STORED as u64 => {}
            Err(_) => return Some("the name is not UTF-8"),
        }
        if self.len <= TYPE_NAME_STORED as u64 && fnv1a64(&self.prefix[..stored]) != self.hash {
            return Some("the name's hash is not the hash of the name");
        }
        None
    }

    /// The record with its name's length and hash: tells apart names that show the same
    /// (longer than the stored 112 bytes and equal in them).
    pub(crate) fn detailed(&self) -> String {
        format!(
            "{} ({} bytes, align {}; name of {} bytes, hash {:#018x})",
            self.name(),
            self.size,
            self.align,
            self.len,
            self.hash
        )
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} bytes, align {})",
            self.name(),
            self.size,
            self.align
        )
    }
}

impl fmt::Debug for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElemType")
            .field("name", &self.name())
            .field("size", &self.size)
            .field("align", &self.align)
            .field("name_len", &self.len)
            .field("name_hash", &format_args!("{:#018x}", self.hash))
            .finish_non_exhaustive()
    }
}

/// Reads the type record's words.
///
/// # Safety
/// `at` must be 8-byte aligned and valid for reads of `TYPE_WORDS` words, which others access
/// only atomically.
pub(crate) unsafe fn read_words(at: *mut u8) -> [u64; TYPE_WORDS] {
    core::array::from_fn(|i| {
        // SAFETY: in bounds and aligned (caller); a shared word, so read atomically.
        let w = unsafe { &*at.cast::<AtomicU64>().add(i) };
        // ORDERING: Relaxed; written once before the segment was published (the segment's
        // open Acquire-loads init_state); compared and printed only.
        w.load(Ordering::Relaxed)
    })
}

/// Writes the type record's words into a fresh region.
///
/// # Safety
/// As for [`read_words`], and nobody else sees the region yet.
pub(crate) unsafe fn write_words(at: *mut u8, ty: &ElemType) {
    for (i, word) in ty.to_words().into_iter().enumerate() {
        // SAFETY: in bounds and aligned (caller).
        let w = unsafe { &*at.cast::<AtomicU64>().add(i) };
        // ORDERING: Relaxed; published by the segment's init_state Release.
        w.store(word, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_long_names_keep_length_and_hash() {
        let t = ElemType::new("u64", 8, 8);
        assert_eq!(ElemType::from_words(&t.to_words()), t);
        assert_eq!(t.to_string(), "u64 (8 bytes, align 8)");
        let long = "x".repeat(300);
        let l = ElemType::new(&long, 8, 8);
        assert_eq!(ElemType::from_words(&l.to_words()), l);
        assert_eq!(l.name_len(), 300);
        assert_eq!(l.name(), format!("{}…", "x".repeat(112)));
        // FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn hostile_words_print_without_panicking() {
        let mut w = [u64::MAX; TYPE_WORDS];
        w[3] = u64::MAX;
        let t = ElemType::from_words(&w);
        assert!(t.name().ends_with('…'));
        w[3] = 3;
        assert_eq!(ElemType::from_words(&w).name().chars().count(), 3);
    }
}
