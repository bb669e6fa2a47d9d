//! The byte layout of a segment: the plain-data header, the atomic control block, the attachment
//! slots and the region directory. `docs/design.md` draws the same layout; keep the two in step.
//!
//! ```text
//! offset 0      SegmentHeader   128 B  plain data (bytemuck Pod), written once by the creator
//! offset 128    ControlBlock    128 B  atomics: init state (stored last, Release), directory lock,
//!                                      region count, bump offset, counters
//! offset 256    Slot × max_attach, 32 B each: one per attached process (liveness)
//! then          RegionEntry × max_regions, 64 B each: the named-region directory
//! data_offset   (4096-aligned) regions, each 128-byte aligned, bump-allocated
//! ```
//!
//! Nothing here is trusted when read back: [`SegmentHeader::validate`] checks every field against
//! what this build would have written, and every offset or count read from the control block is
//! bounds-checked by its user before it is turned into an address.

use bytemuck::{Pod, Zeroable};
use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU32, AtomicU64};

/// The first eight bytes of every shmlane segment.
pub const MAGIC: [u8; 8] = *b"SHMLANE\0";
/// Bumped whenever the byte layout or a protocol on it changes incompatibly. 2: the region
/// directory lock holds the holder's owner tag (slot and generation), not its slot + 1; a slot
/// records its holder's pid namespace and uid (`Slot::ident`, formerly reserved); the
/// fingerprint encodes `CachePadded`'s size and alignment.
pub const LAYOUT_VERSION: u32 = 2;
/// Size of [`SegmentHeader`].
pub const HEADER_SIZE: usize = 128;
/// Offset of [`ControlBlock`].
pub const CONTROL_OFFSET: usize = HEADER_SIZE;
/// Size of [`ControlBlock`].
pub const CONTROL_SIZE: usize = 128;
/// Offset of the first attachment slot.
pub const SLOTS_OFFSET: usize = CONTROL_OFFSET + CONTROL_SIZE;
/// Size of one [`Slot`].
pub const SLOT_SIZE: usize = 32;
/// Size of one [`RegionEntry`].
pub const REGION_ENTRY_SIZE: usize = 64;
/// Longest region name, in bytes.
pub const REGION_NAME_MAX: usize = 32;
/// Alignment of the data area (one small page).
pub const DATA_ALIGN: usize = 4096;
/// Alignment of every region: two cache lines, because x86 prefetches lines in pairs (the same
/// reason crossbeam's `CachePadded` is 128 bytes there).
pub const REGION_ALIGN: usize = 128;
/// Most attachment slots a segment may have.
pub const MAX_ATTACH_LIMIT: u32 = 4096;
/// Most regions a segment may have.
pub const MAX_REGIONS_LIMIT: u32 = 4096;
/// The largest segment this library creates or accepts (1 TiB): anything larger is a typo or a
/// hostile header.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// `init_state` before the creator has finished.
pub const INIT_PENDING: u32 = 0;
/// `init_state` once the segment is fully built. A distinctive value, so that a zeroed or
/// random page is not mistaken for a ready one.
pub const INIT_READY: u32 = 0x5244_5921;

/// A slot nobody holds.
pub const SLOT_FREE: u32 = 0;
/// A slot held by an attached process (or left so by one that died).
pub const SLOT_ATTACHED: u32 = 1;

/// Which kind of object backs a segment; stored in the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `shm_open`, a file under /dev/shm.
    Posix = 1,
    /// `memfd_create`, sealed, passed over a Unix socket.
    Memfd = 2,
    /// A file at a path: a custom tmpfs or a hugetlbfs mount.
    File = 3,
    /// `MAP_SHARED | MAP_ANONYMOUS`, inherited across `fork`.
    Anonymous = 4,
    /// System V `shmget`/`shmat`.
    SysV = 5,
}

impl BackendKind {
    /// Decodes the header field.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Posix,
            2 => Self::Memfd,
            3 => Self::File,
            4 => Self::Anonymous,
            5 => Self::SysV,
            _ => return None,
        })
    }

    /// A short lowercase name, as `shmlane ls` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Posix => "posix",
            Self::Memfd => "memfd",
            Self::File => "file",
            Self::Anonymous => "anonymous",
            Self::SysV => "sysv",
        }
    }

    /// Whether the segment has a file descriptor, and so kernel-released lock liveness.
    pub fn has_fd(self) -> bool {
        matches!(self, Self::Posix | Self::Memfd | Self::File)
    }
}

/// The plain-data header at offset 0. Written by the creator before `init_state` is published
/// and never again; openers copy it out once ([`crate::Segment::header`]) and validate the copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// [`fingerprint()`]: cache-line size, pointer width, endianness, structure sizes.
    pub fingerprint: u64,
    /// Total bytes of the segment, header included.
    pub total_size: u64,
    /// Pid of the creating process.
    pub creator_pid: u32,
    /// Effective uid of the creating process.
    pub creator_uid: u32,
    /// Start time of the creating process (clock ticks since boot, /proc/PID/stat field 22), so
    /// that a recycled pid is not taken for the creator.
    pub creator_start_ticks: u64,
    /// Creation time, nanoseconds since the Unix epoch (informational only: nothing depends on
    /// wall-clock time).
    pub created_unix_ns: u64,
    /// [`BackendKind`] as `u32`.
    pub backend: u32,
    /// Number of attachment slots.
    pub max_attach: u32,
    /// Number of region directory entries.
    pub max_regions: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Offset of the slot table ([`SLOTS_OFFSET`]).
    pub slots_offset: u64,
    /// Offset of the region directory.
    pub regions_offset: u64,
    /// Offset of the data area (4096-aligned).
    pub data_offset: u64,
    /// Reserved, zero.
    pub reserved: [u64; 4],
}

const _: () = assert!(size_of::<SegmentHeader>() == HEADER_SIZE);

/// The atomic control block at [`CONTROL_OFFSET`].
#[repr(C)]
#[derive(Debug)]
pub struct ControlBlock {
    /// [`INIT_PENDING`] until the creator is done, then [`INIT_READY`] (stored last, Release).
    pub init_state: AtomicU32,
    /// 0 when free, else the holder's owner tag (`Segment::owner_tag`: slot + 1 and the slot's
    /// generation). Guards region creation.
    pub dir_lock: AtomicU32,
    /// Number of complete region directory entries (published with Release after the entry).
    pub region_count: AtomicU32,
    /// How many times a slot left by a dead process was taken over.
    pub unclean_detaches: AtomicU32,
    /// Next free data offset (bump allocator), only moved under `dir_lock`.
    pub bump: AtomicU64,
    /// Attachments ever made (statistics).
    pub attach_count: AtomicU64,
    _reserved: [u64; 12],
}

const _: () = assert!(size_of::<ControlBlock>() == CONTROL_SIZE);

/// One attachment slot: which process holds it and in which role. The slot's liveness is the
/// kernel lock on byte `SLOT_LOCK_BASE + index` of the segment's file (fd backends), or the pid
/// and start time stored here (fd-less backends).
#[repr(C)]
#[derive(Debug)]
pub struct Slot {
    /// [`SLOT_FREE`] or [`SLOT_ATTACHED`].
    pub state: AtomicU32,
    /// Holder's pid.
    pub pid: AtomicU32,
    /// Role tag chosen by the layer above (producer, consumer...).
    pub role: AtomicU32,
    /// Bumped at every claim, so a reader can tell a reused slot from the one it saw.
    pub generation: AtomicU32,
    /// Holder's start time in clock ticks since boot.
    pub start_ticks: AtomicU64,
    /// Holder's pid namespace (low 32 bits of its inode, 0 unknown) in the high half and its
    /// effective uid in the low half, so a reader can tell whether its /proc can judge the
    /// holder's pid (`sys::judge`). Written with `pid`.
    pub ident: AtomicU64,
}

const _: () = assert!(size_of::<Slot>() == SLOT_SIZE);

/// A region directory entry. Entries `0..region_count` are complete and never change again;
/// the entry at `region_count` may be half-written by a holder of `dir_lock`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct RegionEntry {
    /// Kind tag chosen by the layer above.
    pub kind: u32,
    /// Length of `name` in bytes.
    pub name_len: u32,
    /// Offset from the start of the segment.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Reserved, zero.
    pub reserved: u64,
    /// The name, `name_len` bytes of UTF-8, zero-padded.
    pub name: [u8; REGION_NAME_MAX],
}

const _: () = assert!(size_of::<RegionEntry>() == REGION_ENTRY_SIZE);

/// The lock byte every attached process holds a shared (read) lock on; a cleaner takes it
/// exclusively. Far beyond any segment size: locks need not lie inside the file.
pub const GATE_LOCK: i64 = 1 << 46;
/// Slot `i` is held by whoever holds the write lock on byte `SLOT_LOCK_BASE + i`.
pub const SLOT_LOCK_BASE: i64 = GATE_LOCK + 1;

/// The cache-line size this build pads shared indices to: the alignment of crossbeam's
/// `CachePadded`, which the rings use for every index two parties write (128 on x86-64 and
/// aarch64, 256 on s390x, 32 to 128 elsewhere).
pub const CACHE_LINE: usize = align_of::<CachePadded<u8>>();

/// Packs what two processes must agree on to share memory: the padding of shared indices
/// (size and alignment of `CachePadded<u64>`, whose `repr(C)` layout crossbeam-utils
/// guarantees from 0.8.22), pointer width, endianness and the sizes of the shared structures.
pub const fn fingerprint() -> u64 {
    let endian: u64 = if cfg!(target_endian = "little") { 1 } else { 2 };
    (size_of::<CachePadded<u64>>() as u64 / 8)
        | ((align_of::<CachePadded<u64>>() as u64 / 8) << 8)
        | ((usize::BITS as u64) << 16)
        | (endian << 24)
        | ((HEADER_SIZE as u64) << 32)
        | ((CONTROL_SIZE as u64 / 8) << 44)
        | ((SLOT_SIZE as u64) << 52)
        | ((REGION_ENTRY_SIZE as u64 / 8) << 58)
}

// The padding fits its byte of the fingerprint, and a padded index is one padding unit.
const _: () = assert!(size_of::<CachePadded<u64>>() / 8 < 256);
const _: () = assert!(align_of::<CachePadded<u64>>() / 8 < 256);
const _: () = assert!(size_of::<CachePadded<u64>>() == align_of::<CachePadded<u64>>());

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(v: u64, align: u64) -> Option<u64> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

/// Where the tables and the data area start for a given slot and region count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// Offset of the slot table.
    pub slots: u64,
    /// Offset of the region directory.
    pub regions: u64,
    /// Offset of the data area.
    pub data: u64,
}

impl Offsets {
    /// Computes the layout; the counts must be within the limits.
    pub const fn new(max_attach: u32, max_regions: u32) -> Self {
        let slots = SLOTS_OFFSET as u64;
        let regions = slots + max_attach as u64 * SLOT_SIZE as u64;
        let end = regions + max_regions as u64 * REGION_ENTRY_SIZE as u64;
        let data = match align_up(end, DATA_ALIGN as u64) {
            Some(d) => d,
            None => u64::MAX,
        };
        Self {
            slots,
            regions,
            data,
        }
    }
}

/// What is wrong with a header, for [`crate::OpenError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Not a shmlane segment.
    BadMagic,
    /// Another layout version.
    Version(u32),
    /// Another fingerprint (other architecture or build).
    Layout(u64),
    /// The header claims a size the object does not have.
    Size {
        /// What the header says.
        header: u64,
        /// What the object has.
        actual: u64,
    },
    /// A field is out of range or inconsistent.
    Corrupt(&'static str),
}

/// Copies a header out of arbitrary bytes (at least [`HEADER_SIZE`] of them).
///
/// # Panics
/// If `bytes` is shorter than a header.
pub fn read_header(bytes: &[u8]) -> SegmentHeader {
    bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE])
}

impl SegmentHeader {
    /// Checks every field against what this build would have written for an object of
    /// `actual_size` bytes.
    pub fn validate(&self, actual_size: u64) -> Result<(), HeaderProblem> {
        if self.magic != MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        if self.layout_version != LAYOUT_VERSION {
            return Err(HeaderProblem::Version(self.layout_version));
        }
        if self.fingerprint != fingerprint() || self.header_size as usize != HEADER_SIZE {
            return Err(HeaderProblem::Layout(self.fingerprint));
        }
        if self.total_size != actual_size {
            return Err(HeaderProblem::Size {
                header: self.total_size,
                actual: actual_size,
            });
        }
        if self.total_size > MAX_SEGMENT_SIZE {
            return Err(HeaderProblem::Corrupt("total size beyond 1 TiB"));
        }
        if BackendKind::from_u32(self.backend).is_none() {
            return Err(HeaderProblem::Corrupt("unknown backend"));
        }
        if self.max_attach == 0 || self.max_attach > MAX_ATTACH_LIMIT {
            return Err(HeaderProblem::Corrupt("attachment slot count out of range"));
        }
        if self.max_regions == 0 || self.max_regions > MAX_REGIONS_LIMIT {
            return Err(HeaderProblem::Corrupt("region count out of range"));
        }
        let o = Offsets::new(self.max_attach, self.max_regions);
        if self.slots_offset != o.slots
            || self.regions_offset != o.regions
            || self.data_offset != o.data
        {
            return Err(HeaderProblem::Corrupt("table offsets inconsistent"));
        }
        if self.data_offset > self.total_size {
            return Err(HeaderProblem::Corrupt("data area beyond the end"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_aligned_and_ordered() {
        let o = Offsets::new(64, 32);
        assert_eq!(o.slots, 256);
        assert_eq!(o.regions, 256 + 64 * 32);
        assert_eq!(o.data % DATA_ALIGN as u64, 0);
        assert!(o.data >= o.regions + 32 * 64);
    }

    #[test]
    fn fingerprint_encodes_structure_sizes() {
        let f = fingerprint();
        assert_eq!((f & 0xff) * 8, size_of::<CachePadded<u64>>() as u64);
        assert_eq!((f >> 8 & 0xff) * 8, align_of::<CachePadded<u64>>() as u64);
        assert_eq!((f >> 8 & 0xff) * 8, CACHE_LINE as u64);
        assert_eq!((f >> 16) & 0xff, u64::from(usize::BITS));
        assert_eq!((f >> 32) & 0xfff, HEADER_SIZE as u64);
    }

    /// Two builds whose `CachePadded` differ (another crossbeam-utils, another target) lay the
    /// rings out differently: their segments must refuse each other.
    #[test]
    fn a_segment_of_another_padding_is_a_layout_mismatch() {
        let o = Offsets::new(1, 1);
        let mut h = SegmentHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            fingerprint: fingerprint(),
            total_size: o.data,
            creator_pid: 1,
            creator_uid: 0,
            creator_start_ticks: 0,
            created_unix_ns: 0,
            backend: BackendKind::Posix as u32,
            max_attach: 1,
            max_regions: 1,
            flags: 0,
            slots_offset: o.slots,
            regions_offset: o.regions,
            data_offset: o.data,
            reserved: [0; 4],
        };
        assert_eq!(h.validate(o.data), Ok(()));
        for other in [64u64, 256] {
            // The same everything, padded to `other` bytes.
            h.fingerprint = (fingerprint() & !0xffff) | (other / 8) | ((other / 8) << 8);
            assert_eq!(
                h.validate(o.data),
                Err(HeaderProblem::Layout(h.fingerprint)),
                "{other}"
            );
        }
        // Size and alignment are both covered.
        h.fingerprint = fingerprint() ^ 1;
        assert!(h.validate(o.data).is_err());
        h.fingerprint = fingerprint() ^ 1 << 8;
        assert!(h.validate(o.data).is_err());
    }

    #[test]
    fn align_up_overflows_to_none() {
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(u64::MAX, 4096), None);
    }
}
