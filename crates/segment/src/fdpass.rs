//! Passing a memfd segment's descriptor to another process over a Unix socket (`SCM_RIGHTS`).

use std::{
    io::{self, IoSlice, IoSliceMut},
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Sends `fd` over a connected Unix socket, with one byte of payload.
///
/// ```no_run
/// use std::os::unix::net::UnixStream;
/// use shmlane_segment::{Segment, send_fd, recv_fd};
/// let (a, b) = UnixStream::pair()?;
/// let seg = Segment::memfd("audio").size(1 << 16).create()?;
/// send_fd(&a, seg.fd().unwrap())?;
/// let peer = Segment::from_memfd(recv_fd(&b)?, 0)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"S")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map(drop)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Receives a descriptor sent with [`send_fd`]. Any extra descriptors are closed.
pub fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for c in msg
        .cmsgs()
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just installed these descriptors in our table; nothing
                // else owns them.
                received.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    let mut it = received.into_iter();
    it.next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no descriptor in message"))
}
