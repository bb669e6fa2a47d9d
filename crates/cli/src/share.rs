//! Sharing a channel between users: `create --mode --group` and `--trust-owner` on the
//! commands that open a channel (issue 17). The rules themselves are the segment layer's
//! (`SegmentBuilder::mode`, `group`, `trust_owner`); this module parses the arguments.

use std::{
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

use nix::unistd::{Group, User};
use shmlane_segment::layout::{HEADER_SIZE, MAGIC, SegmentHeader};

/// `shmlane create`'s permissions for the segment.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct PermArgs {
    /// Permission bits of the segment, in octal (0600: only you; 0660 with --group: you and
    /// that group). Modes other users could write (o+w), the setuid, setgid and sticky bits,
    /// and modes without rw for you (0) are refused.
    #[arg(long, value_parser = parse_mode, default_value = "0600")]
    pub mode: u32,
    /// Group of the segment (a name or a numeric gid; you must belong to it unless root).
    /// Users of that group open the channel with `--trust-owner YOUR-USER`.
    #[arg(long, value_parser = parse_group)]
    pub group: Option<u32>,
}

/// `--trust-owner` for the commands that open a channel.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct TrustArgs {
    /// Accept a channel owned by this user (a name or a numeric uid) as well as your own.
    /// Without it a channel owned by another user is refused: its owner (and whoever the
    /// owner let write it) could change it under you. A channel every user may write is
    /// refused whatever is trusted.
    #[arg(long = "trust-owner", value_name = "USER", value_parser = parse_user)]
    pub trust_owner: Option<u32>,
}

/// An octal mode: `0660`, `660` or `0o660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "{s:?} is not an octal mode: use e.g. 0600 (only you) or 0660 (you and --group)"
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|e| format!("{s:?}: {e}"))
}

/// A user name, or a numeric uid (used as given: it need not be in the user database).
pub fn parse_user(s: &str) -> Result<u32, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("uid {s} is out of range: at most {}", u32::MAX));
    }
    match User::from_name(s) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!(
            "no user named {s:?}: give a user name from `getent passwd` or a numeric uid"
        )),
        Err(e) => Err(format!("looking up user {s:?}: {e}")),
    }
}

/// A group name, or a numeric gid.
pub fn parse_group(s: &str) -> Result<u32, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("gid {s} is out of range: at most {}", u32::MAX));
    }
    match Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!(
            "no group named {s:?}: give a group name from `getent group` or a numeric gid"
        )),
        Err(e) => Err(format!("looking up group {s:?}: {e}")),
    }
}

/// The refusal of a segment this user may not read (`EACCES` opening it): who owns it, its
/// mode, and how it can be shared, instead of a bare "Permission denied" (review revn).
pub fn unreadable(name: &str, path: &Path) -> String {
    // One wording for every refusal of this kind (`errs::denied`: owner, group, mode, the way on).
    crate::errs::denied(
        name,
        path,
        &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    )
}

/// The refusal of a shmlane segment whose file is smaller than its header says (another
/// process shrank it: touching the lost pages would raise SIGBUS), or `None`. Reads the
/// header with `pread`, maps nothing; the same message as opening it gives
/// (`OpenError::Truncated`).
pub fn truncated(name: &str, path: &Path) -> Option<String> {
    // As `inspect` opens it: a FIFO put in its place must not block us, nor a link lead
    // elsewhere (review revn).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let actual = meta.len();
    let mut buf = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut buf, 0).ok()?;
    let h: SegmentHeader = bytemuck::pod_read_unaligned(&buf[..size_of::<SegmentHeader>()]);
    (h.magic == MAGIC && h.total_size > actual).then(|| {
        shmlane_segment::OpenError::Truncated {
            name: name.to_owned(),
            recorded: h.total_size,
            actual,
        }
        .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        for bad in ["", "0o", "rw-rw----", "0680", "-1", "777777"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn users_and_groups_by_name_or_number() {
        assert_eq!(parse_user("root"), Ok(0));
        assert_eq!(parse_user("65534"), Ok(65534));
        assert_eq!(parse_group("0"), Ok(0));
        assert_eq!(parse_group("root"), Ok(0));
        assert!(parse_user("no-such-user-shmlane").is_err());
        assert!(parse_group("no-such-group-shmlane").is_err());
        assert!(parse_user("99999999999").is_err());
    }
}
