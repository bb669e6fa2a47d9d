//! A seccomp filter for the calling thread only: every system call but `exit`, `exit_group`
//! and `rt_sigreturn` raises SIGSYS, whose handler stores the call's number in a shared file
//! mapping the parent reads, and ends the process with [`TRAPPED`]. The same page carries one
//! word a filtered thread may report (`report_extra`, a plain store: no system call).

use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering};

/// The exit code of a process whose filtered thread made a system call.
pub const TRAPPED: i32 = 86;

/// Where the handler stores the trapped call's number (a `MAP_SHARED` file page).
static SLOT: AtomicPtr<AtomicI32> = AtomicPtr::new(core::ptr::null_mut());

/// Maps the first 4 bytes of the file at `path` (made by the parent, 4096 bytes) shared, for
/// the handler to write into.
pub fn map_report(path: &str) {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: a valid NUL-terminated path; the fd is closed below (the mapping stays).
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
    assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh shared mapping of one page of a file of 4096 bytes.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    // The page is touched now: the handler's store faults nothing in.
    let slot = p.cast::<AtomicI32>();
    // SAFETY: page-aligned, mapped for the life of the process.
    unsafe { (*slot).store(-1, Ordering::SeqCst) };
    SLOT.store(slot, Ordering::SeqCst);
}

/// Stores `v` at byte 8 of the report page (read by the parent as `u64`, native endian).
pub fn report_extra(v: u64) {
    let slot = SLOT.load(Ordering::SeqCst);
    assert!(!slot.is_null(), "map_report first");
    // SAFETY: byte 8 of the page mapped by `map_report` (never unmapped): page-aligned + 8,
    // so 8-aligned.
    #[allow(clippy::cast_ptr_alignment, reason = "page-aligned base, offset 8")]
    let word = unsafe { &*slot.cast::<u8>().add(8).cast::<AtomicU64>() };
    word.store(v, Ordering::SeqCst);
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // siginfo for SIGSYS (x86-64, asm-generic/siginfo.h): `_sigsys { void *_call_addr; int
    // _syscall; unsigned _arch; }` in the union at offset 16, so `si_syscall` is at 24.
    // SAFETY: the kernel's siginfo for this signal, at least 128 bytes.
    let nr = unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() };
    let slot = SLOT.load(Ordering::SeqCst);
    if !slot.is_null() {
        // SAFETY: the mapping made by `map_report`, never unmapped.
        unsafe { (*slot).store(nr, Ordering::SeqCst) };
    }
    // SAFETY: `_exit` is async-signal-safe and is `exit_group`, which the filter allows.
    unsafe { libc::_exit(TRAPPED) };
}

const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}
const fn jeq(k: u32, jt: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf: 0,
        k,
    }
}
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// Installs the SIGSYS handler, then the filter on the calling thread (no TSYNC: the other
/// threads of the process are not filtered). From its return on, any system call this thread
/// makes ends the process with [`TRAPPED`].
pub fn forbid_syscalls() {
    // SAFETY: a plain sigaction with an `extern "C"` handler of the SA_SIGINFO signature.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&raw mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSYS, &raw const sa, core::ptr::null_mut()),
            0
        );
    }
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // seccomp_data: nr at offset 0, arch at 4.
    let prog = [
        stmt(ld, 4),
        // Another ABI (x32, i386 int 0x80): trapped as well.
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        stmt(ret, libc::SECCOMP_RET_TRAP),
        stmt(ld, 0),
        jeq(libc::SYS_exit as u32, 3),
        jeq(libc::SYS_exit_group as u32, 2),
        jeq(libc::SYS_rt_sigreturn as u32, 1),
        stmt(ret, libc::SECCOMP_RET_TRAP),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp with valid arguments; `fprog` outlives the call (the kernel
    // copies the program).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &raw const fprog,
        );
        assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}
