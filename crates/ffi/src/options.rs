//! The options builder: an opaque `shmlane_options` whose setters record what
//! `shmlane_bytes_open`/`shmlane_broadcast_open` apply to the Rust `Builder`.
//!
//! Every function here: the handle is used by one thread at a time; never blocks; no system
//! call; `shmlane_options_new` and `shmlane_options_backend` allocate.

use crate::handle::{self, Body, null};
use crate::status::{Fail, Res, SHMLANE_E_INVALID, SHMLANE_E_UNSUPPORTED, guard};
use core::ffi::c_char;
use shmlane::{
    Builder, Location, PeersLeave, RawBuilder, RawLatestBuilder, UnlinkPolicy, WaitStrategy, Wakes,
};
use std::ffi::CStr;
use std::path::PathBuf;

/// Opaque options for opening a channel; see `shmlane_options_new`.
#[derive(Debug)]
pub struct shmlane_options {
    _opaque: [u8; 0],
}

/// Backend: POSIX shared memory, `/dev/shm/<name>` (the default).
pub const SHMLANE_BACKEND_POSIX: i32 = 0;
/// Backend: an anonymous sealed memfd (the name is a label; only this process and its
/// children through inherited descriptors reach it).
pub const SHMLANE_BACKEND_MEMFD: i32 = 1;
/// Backend: a file at `path` (e.g. on a tmpfs).
pub const SHMLANE_BACKEND_FILE: i32 = 2;
/// Backend: a file at `path` on a hugetlbfs mount (huge pages); as `SHMLANE_BACKEND_FILE`.
pub const SHMLANE_BACKEND_HUGETLBFS: i32 = 3;

/// Wait strategy: spin (never sleeps, never a system call).
pub const SHMLANE_WAIT_BUSY_SPIN: i32 = 0;
/// Wait strategy: spin with backoff, then yield the CPU; never parks.
pub const SHMLANE_WAIT_SPIN_YIELD: i32 = 1;
/// Wait strategy: spin `spins` times, yield `yields` times, then park on the futex (default:
/// 2000 spins, 10 yields).
pub const SHMLANE_WAIT_SPIN_THEN_PARK: i32 = 2;
/// Wait strategy: park on the futex at once.
pub const SHMLANE_WAIT_PARK: i32 = 3;

/// When peers leave: wait for new ones (default for persistent channels).
pub const SHMLANE_PEERS_WAIT: i32 = 0;
/// When peers leave: `SHMLANE_E_DISCONNECTED` like a pipe (default with `LAST_DETACH`).
pub const SHMLANE_PEERS_DISCONNECT: i32 = 1;

/// Wake-ups: an endpoint's operations wake a peer that sleeps for them (the default).
pub const SHMLANE_WAKES_PEERS: i32 = 0;
/// Wake-ups: never; no operation of the channel's endpoints makes a system call (for a
/// real-time side). Their peers' blocking calls park at most 1 ms at a time instead.
pub const SHMLANE_WAKES_NEVER: i32 = 1;

/// Unlink policy: the channel persists until removed (`shmlane_remove`; the default).
pub const SHMLANE_UNLINK_NEVER: i32 = 0;
/// Unlink policy: the last handle to leave cleanly removes the name.
pub const SHMLANE_UNLINK_LAST_DETACH: i32 = 1;
/// Unlink policy: the creating handle removes the name when closed.
pub const SHMLANE_UNLINK_CREATOR_DROP: i32 = 2;

/// The body of [`Options::apply`] for any builder with the same setters (`Builder<T>`,
/// `RawBuilder`).
macro_rules! apply_to {
    ($self:ident, $name:ident, $b:ident) => {{
        let mut b = $b;
        let (name, o) = ($name, $self);
        if let Some(n) = o.capacity {
            b = b.capacity(n);
        }
        if let Some(n) = o.msg_size {
            b = b.msg_size(n);
        }
        b = match &o.backend {
            Backend::Posix => b,
            Backend::Memfd => b.location(Location::Memfd(name.to_owned())),
            Backend::File(p) => b.location(Location::File(p.clone())),
        };
        if let Some(w) = o.wait {
            b = b.wait(w);
        }
        if let Some(w) = o.wakes {
            b = b.wakes(w);
        }
        if let Some(m) = o.mode {
            b = b.mode(m);
        }
        if let Some(g) = o.group {
            b = b.group(g);
        }
        if let Some(p) = o.peers_leave {
            b = b.when_peers_leave(p);
        }
        if let Some(u) = o.unlink {
            b = b.unlink(u);
        }
        if let Some(c) = o.checksum {
            b = b.checksum(c);
        }
        if let Some(p) = o.populate {
            b = b.populate(p);
        }
        b.resume(o.resume).mlock(o.mlock)
    }};
}

#[derive(Debug, Clone)]
enum Backend {
    Posix,
    Memfd,
    File(PathBuf),
}

/// What the setters recorded (`None`: the Rust default).
#[derive(Debug, Clone)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent options, each set by its own function"
)]
pub(crate) struct Options {
    capacity: Option<u64>,
    msg_size: Option<u64>,
    backend: Backend,
    wait: Option<WaitStrategy>,
    wakes: Option<Wakes>,
    mode: Option<u32>,
    group: Option<u32>,
    peers_leave: Option<PeersLeave>,
    unlink: Option<UnlinkPolicy>,
    checksum: Option<bool>,
    resume: bool,
    populate: Option<bool>,
    mlock: bool,
}

impl Body for Options {
    const MAGIC: u64 = 0x5348_4c4e_4f50_5431; // "SHLNOPT1"
    const WHAT: &'static str = "options";
}

impl Default for Options {
    fn default() -> Self {
        Self {
            capacity: None,
            msg_size: None,
            backend: Backend::Posix,
            wait: None,
            wakes: None,
            mode: None,
            group: None,
            peers_leave: None,
            unlink: None,
            checksum: None,
            resume: false,
            populate: None,
            mlock: false,
        }
    }
}

impl Options {
    /// Applies the options to a builder for the channel `name`.
    pub(crate) fn apply<T: bytemuck::Pod + Send>(&self, name: &str, b: Builder<T>) -> Builder<T> {
        apply_to!(self, name, b)
    }

    /// Applies the options to a run-time (typed C) channel's builder, as [`Options::apply`].
    pub(crate) fn apply_raw(&self, name: &str, b: RawBuilder) -> RawBuilder {
        apply_to!(self, name, b)
    }

    /// Applies the options to a latest-value channel's builder (`capacity`: slots). The
    /// options a latest-value channel has not are refused, not ignored: `msg_size` other than
    /// `value_size` (`SHMLANE_E_INVALID`), `checksum` or `resume` on (`SHMLANE_E_UNSUPPORTED`).
    pub(crate) fn apply_latest(
        &self,
        name: &str,
        value_size: usize,
        mut b: RawLatestBuilder,
    ) -> Res<RawLatestBuilder> {
        if let Some(m) = self.msg_size.filter(|m| *m != value_size as u64) {
            return Err(invalid(format!(
                "shmlane_options_msg_size {m} differs from value_size {value_size}: a latest-value channel's largest value is its value_size (leave msg_size unset)"
            )));
        }
        if self.checksum == Some(true) || self.resume {
            return Err(Fail::new(
                SHMLANE_E_UNSUPPORTED,
                "latest-value channels have no checksum or resume option: leave shmlane_options_checksum and shmlane_options_resume off",
            ));
        }
        if let Some(n) = self.capacity {
            b = b.capacity(n);
        }
        b = match &self.backend {
            Backend::Posix => b,
            Backend::Memfd => b.location(Location::Memfd(name.to_owned())),
            Backend::File(p) => b.location(Location::File(p.clone())),
        };
        if let Some(w) = self.wait {
            b = b.wait(w);
        }
        if let Some(w) = self.wakes {
            b = b.wakes(w);
        }
        if let Some(m) = self.mode {
            b = b.mode(m);
        }
        if let Some(g) = self.group {
            b = b.group(g);
        }
        if let Some(p) = self.peers_leave {
            b = b.when_peers_leave(p);
        }
        if let Some(u) = self.unlink {
            b = b.unlink(u);
        }
        if let Some(p) = self.populate {
            b = b.populate(p);
        }
        Ok(b.mlock(self.mlock))
    }
}

fn invalid(what: String) -> Fail {
    Fail::new(SHMLANE_E_INVALID, what)
}

fn flag(yes: i32) -> bool {
    yes != 0
}

/// Runs `f` on the options handle `o`.
fn with(what: &str, o: *mut shmlane_options, f: impl FnOnce(&mut Options) -> Res) -> i32 {
    guard(what, || {
        // SAFETY: `o` is NULL or a handle from `shmlane_options_new` (the documented contract).
        let opts = unsafe { handle::get_mut::<Options, _>(o)? };
        f(opts)
    })
}

/// Creates an options object with every option at its default; `*out` receives it. Close it
/// with `shmlane_options_close` (opening a channel does not consume it).
///
/// Thread-safe; never blocks; allocates; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_new(out: *mut *mut shmlane_options) -> i32 {
    guard("shmlane_options_new", || {
        // SAFETY: `out` is NULL (checked) or valid for a write (the caller's contract).
        unsafe { handle::publish(out, Options::default()) }
    })
}

/// Frees the options. NULL is accepted (`SHMLANE_OK`); a closed one gives `SHMLANE_E_CLOSED`.
///
/// One thread at a time; never blocks; frees; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_close(o: *mut shmlane_options) -> i32 {
    // SAFETY: `o` is NULL or an options handle (the caller's contract).
    guard("shmlane_options_close", || unsafe {
        handle::close::<Options, _>(o)
    })
}

/// Capacity: bytes of ring for byte channels (a power of two), slots for broadcast channels
/// (a power of two). Unset: the Rust default; when opening, unset accepts any. The range is
/// checked when the channel is opened (`SHMLANE_E_INVALID`).
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_capacity(o: *mut shmlane_options, n: u64) -> i32 {
    with("shmlane_options_capacity", o, |opts| {
        opts.capacity = Some(n);
        Ok(())
    })
}

/// Largest message in bytes (broadcast channels; byte channels derive theirs from the
/// capacity). Checked when the channel is opened.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_msg_size(o: *mut shmlane_options, bytes: u64) -> i32 {
    with("shmlane_options_msg_size", o, |opts| {
        opts.msg_size = Some(bytes);
        Ok(())
    })
}

/// The backend: `SHMLANE_BACKEND_POSIX` (default; `path` ignored, may be NULL),
/// `SHMLANE_BACKEND_MEMFD` (`path` ignored), `SHMLANE_BACKEND_FILE` or
/// `SHMLANE_BACKEND_HUGETLBFS` (`path`: the file, NUL-terminated UTF-8, not NULL; the file
/// name follows the channel-name rules). Another value: `SHMLANE_E_INVALID`.
///
/// One thread at a time; never blocks; allocates (the path); no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_backend(
    o: *mut shmlane_options,
    backend: i32,
    path: *const c_char,
) -> i32 {
    with("shmlane_options_backend", o, |opts| {
        opts.backend = match backend {
            SHMLANE_BACKEND_POSIX => Backend::Posix,
            SHMLANE_BACKEND_MEMFD => Backend::Memfd,
            SHMLANE_BACKEND_FILE | SHMLANE_BACKEND_HUGETLBFS => {
                if path.is_null() {
                    return Err(null("path"));
                }
                // SAFETY: non-NULL; NUL-terminated by the caller's contract.
                let p = unsafe { CStr::from_ptr(path) };
                let p = p
                    .to_str()
                    .map_err(|_| invalid("the backend path is not UTF-8".into()))?;
                Backend::File(PathBuf::from(p))
            }
            n => return Err(invalid(format!("unknown backend {n}: use 0 to 3"))),
        };
        Ok(())
    })
}

/// The wait strategy of blocking calls: `SHMLANE_WAIT_BUSY_SPIN`, `_SPIN_YIELD`,
/// `_SPIN_THEN_PARK` (with `spins` and `yields`; ignored by the others) or `_PARK`.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_wait(
    o: *mut shmlane_options,
    strategy: i32,
    spins: u32,
    yields: u32,
) -> i32 {
    with("shmlane_options_wait", o, |opts| {
        opts.wait = Some(match strategy {
            SHMLANE_WAIT_BUSY_SPIN => WaitStrategy::BusySpin,
            SHMLANE_WAIT_SPIN_YIELD => WaitStrategy::SpinYield,
            SHMLANE_WAIT_SPIN_THEN_PARK => WaitStrategy::SpinThenPark { spins, yields },
            SHMLANE_WAIT_PARK => WaitStrategy::Park,
            n => return Err(invalid(format!("unknown wait strategy {n}: use 0 to 3"))),
        });
        Ok(())
    })
}

/// Whether the endpoints opened from the channel wake peers that sleep for them:
/// `SHMLANE_WAKES_PEERS` (default) or `SHMLANE_WAKES_NEVER` (the real-time side: its sends,
/// receives, claims and publishes never make a system call; while such an endpoint is
/// attached, its peers' blocking calls park at most 1 ms at a time and look again, so they
/// still see its progress within about 1 ms and keep their deadlines). Applies to every
/// endpoint opened from the channel handle.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_wakes(o: *mut shmlane_options, wakes: i32) -> i32 {
    with("shmlane_options_wakes", o, |opts| {
        opts.wakes = Some(match wakes {
            SHMLANE_WAKES_PEERS => Wakes::Peers,
            SHMLANE_WAKES_NEVER => Wakes::Never,
            n => return Err(invalid(format!("unknown wakes value {n}: use 0 or 1"))),
        });
        Ok(())
    })
}

/// Permission bits of a created channel (e.g. `0660`; default `0600`). Checked at creation.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_mode(o: *mut shmlane_options, mode: u32) -> i32 {
    with("shmlane_options_mode", o, |opts| {
        opts.mode = Some(mode);
        Ok(())
    })
}

/// The group a created channel is given.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_group(o: *mut shmlane_options, gid: u32) -> i32 {
    with("shmlane_options_group", o, |opts| {
        opts.group = Some(gid);
        Ok(())
    })
}

/// What endpoints do when their peers leave: `SHMLANE_PEERS_WAIT` or `SHMLANE_PEERS_DISCONNECT`.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_peers_leave(o: *mut shmlane_options, what: i32) -> i32 {
    with("shmlane_options_peers_leave", o, |opts| {
        opts.peers_leave = Some(match what {
            SHMLANE_PEERS_WAIT => PeersLeave::Wait,
            SHMLANE_PEERS_DISCONNECT => PeersLeave::Disconnect,
            n => {
                return Err(invalid(format!(
                    "unknown peers-leave value {n}: use 0 or 1"
                )));
            }
        });
        Ok(())
    })
}

/// When the channel's name is removed: `SHMLANE_UNLINK_NEVER` (default),
/// `SHMLANE_UNLINK_LAST_DETACH`, `SHMLANE_UNLINK_CREATOR_DROP`.
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_unlink(o: *mut shmlane_options, policy: i32) -> i32 {
    with("shmlane_options_unlink", o, |opts| {
        opts.unlink = Some(match policy {
            SHMLANE_UNLINK_NEVER => UnlinkPolicy::Never,
            SHMLANE_UNLINK_LAST_DETACH => UnlinkPolicy::LastDetach,
            SHMLANE_UNLINK_CREATOR_DROP => UnlinkPolicy::CreatorDrop,
            n => return Err(invalid(format!("unknown unlink policy {n}: use 0 to 2"))),
        });
        Ok(())
    })
}

/// Whether every message carries a CRC32C (nonzero: yes). A checksummed byte channel refuses
/// claims (`SHMLANE_E_CLAIM`).
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_checksum(o: *mut shmlane_options, yes: i32) -> i32 {
    with("shmlane_options_checksum", o, |opts| {
        opts.checksum = Some(flag(yes));
        Ok(())
    })
}

/// Whether opening a stale channel resumes it (delivers its unread messages) instead of
/// failing with `SHMLANE_E_STALE` (nonzero: yes).
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_resume(o: *mut shmlane_options, yes: i32) -> i32 {
    with("shmlane_options_resume", o, |opts| {
        opts.resume = flag(yes);
        Ok(())
    })
}

/// Whether the pages are touched at open (default yes: no page faults on the hot path).
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_populate(o: *mut shmlane_options, yes: i32) -> i32 {
    with("shmlane_options_populate", o, |opts| {
        opts.populate = Some(flag(yes));
        Ok(())
    })
}

/// Whether the pages are locked in memory (`mlock`, default no).
///
/// One thread at a time; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_options_mlock(o: *mut shmlane_options, yes: i32) -> i32 {
    with("shmlane_options_mlock", o, |opts| {
        opts.mlock = flag(yes);
        Ok(())
    })
}
