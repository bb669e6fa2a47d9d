//! Named regions: the directory (entries published by a Release store of the count), the bump
//! allocator, and the directory lock that serialises region creation across processes and
//! across threads of one handle.

use std::{
    marker::PhantomData,
    ptr::NonNull,
    thread,
    time::{Duration, Instant},
};

use crate::{
    error::RegionError,
    layout::{Offsets, REGION_ALIGN, REGION_ENTRY_SIZE, REGION_NAME_MAX, RegionEntry, align_up},
    segment::{Region, RegionInfo, Segment},
    sync::{AtomicU32, Ordering},
    sys,
};

/// Validates a region entry copied out of shared memory.
pub(crate) fn check_entry(
    e: &RegionEntry,
    data_offset: u64,
    total: u64,
) -> Result<RegionInfo, RegionError> {
    let n = e.name_len as usize;
    if n == 0 || n > REGION_NAME_MAX {
        return Err(RegionError::Corrupt("region name length out of range"));
    }
    let name = std::str::from_utf8(&e.name[..n])
        .map_err(|_| RegionError::Corrupt("region name is not UTF-8"))?;
    if e.offset < data_offset || e.offset % REGION_ALIGN as u64 != 0 {
        return Err(RegionError::Corrupt("region offset misplaced"));
    }
    match e.offset.checked_add(e.size) {
        Some(end) if end <= total => {}
        _ => return Err(RegionError::Corrupt("region extends past the segment")),
    }
    Ok(RegionInfo {
        name: name.to_owned(),
        offset: e.offset,
        size: e.size,
        kind: e.kind,
    })
}

impl Segment {
    fn entry_ptr(&self, i: u32) -> *mut RegionEntry {
        let o = Offsets::new(self.max_attach, self.max_regions);
        // SAFETY: callers pass `i < max_regions`; the directory lies below data_offset <= len.
        unsafe {
            self.base()
                .add(o.regions as usize + i as usize * REGION_ENTRY_SIZE)
                .cast()
        }
    }

    fn read_entry(&self, i: u32) -> RegionEntry {
        // SAFETY: `i < max_regions` (callers check against the validated count); copied out
        // with a volatile read because other processes may write the directory.
        unsafe { self.entry_ptr(i).read_volatile() }
    }

    fn region_count(&self) -> Result<u32, RegionError> {
        // ORDERING: Acquire; pairs with the Release store in `region` that publishes each
        // entry, so entries below the count are complete.
        let n = self.control().region_count.load(Ordering::Acquire);
        if n > self.max_regions {
            return Err(RegionError::Corrupt("region count beyond the directory"));
        }
        Ok(n)
    }

    /// Every region in the directory, validated.
    pub fn regions(&self) -> Result<Vec<RegionInfo>, RegionError> {
        let n = self.region_count()?;
        (0..n)
            .map(|i| check_entry(&self.read_entry(i), self.data_offset, self.len as u64))
            .collect()
    }

    fn to_region(&self, info: RegionInfo) -> Region<'_> {
        Region {
            // SAFETY: `check_entry` proved offset + size <= len, so the pointer is in bounds
            // (and non-null, being inside a mapping).
            ptr: unsafe { NonNull::new_unchecked(self.base().add(info.offset as usize)) },
            len: info.size as usize,
            offset: info.offset,
            kind: info.kind,
            name: info.name,
            _segment: PhantomData,
        }
    }

    /// Finds an existing region.
    pub fn find_region(&self, name: &str) -> Result<Region<'_>, RegionError> {
        self.regions()?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| self.to_region(r))
            .ok_or_else(|| RegionError::NotFound(name.to_owned()))
    }

    /// Gets the region `name`, creating it (zeroed, 128-byte aligned) if it does not exist.
    /// An existing region with another size or kind is an error.
    pub fn region(&self, name: &str, size: u64, kind: u32) -> Result<Region<'_>, RegionError> {
        if name.is_empty()
            || name.len() > REGION_NAME_MAX
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(RegionError::InvalidName(name.to_owned()));
        }
        let check = |r: RegionInfo| {
            if r.size != size {
                return Err(RegionError::SizeMismatch {
                    name: name.to_owned(),
                    existing: r.size,
                    requested: size,
                });
            }
            if r.kind != kind {
                return Err(RegionError::KindMismatch {
                    name: name.to_owned(),
                    existing: r.kind,
                    requested: kind,
                });
            }
            Ok(self.to_region(r))
        };
        if let Some(r) = self.regions()?.into_iter().find(|r| r.name == name) {
            return check(r);
        }
        let _guard = self.lock_directory()?;
        // Someone may have created it while we waited for the lock.
        if let Some(r) = self.regions()?.into_iter().find(|r| r.name == name) {
            return check(r);
        }
        let count = self.region_count()?;
        if count >= self.max_regions {
            return Err(RegionError::DirectoryFull {
                max: self.max_regions,
            });
        }
        let total = self.len as u64;
        // ORDERING: Relaxed; `bump` is only written under the directory lock, whose Acquire
        // in `lock_directory` pairs with the previous holder's Release unlock.
        let bump = self.control().bump.load(Ordering::Relaxed);
        if bump < self.data_offset || bump > total {
            return Err(RegionError::Corrupt("bump offset out of range"));
        }
        let offset = align_up(bump, REGION_ALIGN as u64).unwrap_or(u64::MAX);
        let available = total.saturating_sub(offset);
        if size > available {
            return Err(RegionError::NoSpace {
                name: name.to_owned(),
                requested: size,
                available,
            });
        }
        let mut entry = RegionEntry {
            kind,
            name_len: name.len() as u32,
            offset,
            size,
            reserved: 0,
            name: [0; REGION_NAME_MAX],
        };
        entry.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: the new region [offset, offset + size) is in bounds (checked above) and
        // unused: nobody has been handed it. Zero it so every region starts zeroed even when
        // a dead holder left bytes behind.
        unsafe { std::ptr::write_bytes(self.base().add(offset as usize), 0, size as usize) };
        // SAFETY: `count < max_regions`; the entry at `count` is not yet published, and only
        // the directory-lock holder writes it.
        unsafe { self.entry_ptr(count).write_volatile(entry) };
        // ORDERING: Relaxed; published by the Release store of region_count below.
        self.control().bump.store(offset + size, Ordering::Relaxed);
        // ORDERING: Release; pairs with the Acquire load in `region_count`: the entry and the
        // zeroed region happen-before any reader that sees the new count.
        self.control()
            .region_count
            .store(count + 1, Ordering::Release);
        Ok(self.to_region(RegionInfo {
            name: name.to_owned(),
            offset,
            size,
            kind,
        }))
    }

    /// Takes the region directory lock, stealing it from a holder that is dead.
    ///
    /// The token in the shared word is this attachment's [`owner_tag`](Self::owner_tag): the
    /// slot *and* the generation it was claimed at. Threads of this handle first take turns on
    /// the handle's own `dir_local` flag, so while one holds it no other thread of this
    /// attachment holds (or is taking) the shared lock: the shared word showing our own token
    /// then can only have been left by a dead holder (an earlier holder of our slot whose
    /// generation matches ours modulo 2^11, or a hostile write), and is taken over. Any other
    /// token is waited for while [`tag_alive`](Self::tag_alive) says its attachment lives; a
    /// dead predecessor in our slot has another generation, so it is dead.
    fn lock_directory(&self) -> Result<DirGuard<'_>, RegionError> {
        let deadline = Instant::now() + DIR_LOCK_TIMEOUT;
        let me = self.owner_tag();
        if me == 0 {
            return Err(RegionError::NotAttached);
        }
        // ORDERING: Acquire on success; pairs with the Release store in `LocalTurn::drop`,
        // so the previous thread's region writes are visible (they are also published through
        // the shared lock below).
        while self
            .dir_local
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if Instant::now() >= deadline {
                return Err(RegionError::Busy);
            }
            thread::sleep(Duration::from_micros(100));
        }
        let local = LocalTurn {
            flag: &self.dir_local,
        };
        let lock = &self.control().dir_lock;
        loop {
            // ORDERING: Acquire on success; pairs with the Release store in DirGuard::drop,
            // so the previous holder's entry and bump writes are visible.
            match lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(DirGuard {
                        lock,
                        _local: local,
                    });
                }
                Err(holder) => {
                    let dead = if holder == me {
                        // No thread of this handle holds it (we hold `dir_local`), unless
                        // this is a child after `fork` that has not called `after_fork`: the
                        // token is then the parent's, which may be inside `region()`.
                        self.owner_pid == sys::getpid()
                    } else {
                        !self.tag_alive(holder)
                    };
                    // ORDERING: Acquire; as above, when taking over from a dead holder.
                    if dead
                        && lock
                            .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        return Ok(DirGuard {
                            lock,
                            _local: local,
                        });
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(RegionError::Busy);
            }
            thread::sleep(Duration::from_micros(100));
        }
    }
}

/// How long `region()` waits for the directory lock before `Busy`.
const DIR_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// This handle's turn at the directory lock (the `dir_local` flag), released on drop.
struct LocalTurn<'a> {
    flag: &'a AtomicU32,
}

impl Drop for LocalTurn<'_> {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the Acquire CAS in `lock_directory`.
        self.flag.store(0, Ordering::Release);
    }
}

struct DirGuard<'a> {
    lock: &'a AtomicU32,
    // Dropped after `lock` is released (fields drop after `Drop::drop`), so another thread of
    // this handle never finds the shared word holding our token while it has the turn.
    _local: LocalTurn<'a>,
}

impl Drop for DirGuard<'_> {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the Acquire CAS in `lock_directory`.
        self.lock.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{segment::UnlinkPolicy, slots::TAG_SLOT_BITS};

    fn dirlock_segment(label: &str) -> Segment {
        Segment::posix(format!("shmlane-test-{}-{label}", std::process::id()))
            .size(64 * 1024)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create")
    }

    fn set_dir_lock(seg: &Segment, v: u32) {
        // ORDERING: Relaxed; a test setting up the lock word before anyone uses it.
        seg.control().dir_lock.store(v, Ordering::Relaxed);
    }

    /// A process that died holding the region directory lock, whose slot this process was then
    /// given: the lock word holds our slot at the dead holder's generation, which is not ours.
    /// It is stale, so adding a region succeeds at once instead of waiting 2 s for `Busy`
    /// (found by the segment_open fuzz target: such inputs took 4 s each).
    #[test]
    fn a_directory_lock_left_by_a_dead_predecessor_of_our_slot_is_taken_over() {
        let seg = dirlock_segment("dirlock-pred");
        let tag = seg.owner_tag();
        let predecessor = tag.wrapping_sub(1 << TAG_SLOT_BITS) & ((1 << 24) - 1);
        assert_eq!(predecessor & 0x1fff, seg.slot() + 1, "same slot");
        assert_ne!(predecessor, tag, "another generation");
        set_dir_lock(&seg, predecessor);
        let t0 = Instant::now();
        assert!(seg.region("after", 64, 1).is_ok());
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "waited for a dead holder"
        );
        // ORDERING: Relaxed; single-threaded test.
        assert_eq!(
            seg.control().dir_lock.load(Ordering::Relaxed),
            0,
            "released"
        );
    }

    /// The lock word holding our exact token while no thread of this handle is in `region()`:
    /// left by an earlier holder of our slot whose generation matched ours (modulo 2^11), or
    /// written by a hostile peer. Nobody of ours holds it (threads take turns before taking the
    /// shared lock), so it is taken over at once.
    #[test]
    fn a_directory_lock_left_under_our_own_token_is_taken_over() {
        let seg = dirlock_segment("dirlock-own");
        set_dir_lock(&seg, seg.owner_tag());
        let t0 = Instant::now();
        assert!(seg.region("after", 64, 1).is_ok());
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "waited for ourselves"
        );
        // ORDERING: Relaxed; single-threaded test.
        assert_eq!(
            seg.control().dir_lock.load(Ordering::Relaxed),
            0,
            "released"
        );
    }

    /// A lock held by another live attachment (a second handle of this same process) is waited
    /// for, not taken: `region()` returns only once the holder lets go.
    #[test]
    fn a_directory_lock_held_by_another_live_attachment_is_waited_for() {
        let seg = dirlock_segment("dirlock-live");
        let other = Segment::at(seg.location().clone()).open().expect("open");
        assert_ne!(other.slot(), seg.slot());
        set_dir_lock(&seg, other.owner_tag());
        let hold = Duration::from_millis(300);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(hold);
                // ORDERING: Release; as `DirGuard::drop`.
                other.control().dir_lock.store(0, Ordering::Release);
            });
            assert!(seg.region("after", 64, 1).is_ok());
            assert!(t0.elapsed() >= hold, "took a live holder's lock");
        });
    }
}
