//! Messages of the `shmlane` command that name a channel once and say what to do (issue 17):
//! a segment the caller may not read, the library's errors with or without the channel's name,
//! and what `stat` counts as a side's bytes.

use std::{os::unix::fs::MetadataExt, path::Path};

/// Whether `msg` names the channel or segment `name` ("channel NAME", "segment NAME",
/// "segment named NAME", each followed by something that cannot continue a name). A name that
/// merely occurs in the text does not count: a channel called `ring` is not named by
/// "ring: region does not hold a shmlane ring".
pub fn names_it(msg: &str, name: &str) -> bool {
    ["channel ", "segment ", "segment named "]
        .iter()
        .any(|lead| {
            let pat = format!("{lead}{name}");
            msg.match_indices(&pat).any(|(at, _)| {
                let mut rest = msg[at + pat.len()..].chars();
                match rest.next() {
                    None => true,
                    // A full stop ends a sentence; a dot followed by a name character continues
                    // the name (`a` is not named by "channel a.b").
                    Some('.') => !rest
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                    Some(c) => !(c.is_ascii_alphanumeric() || "_-".contains(c)),
                }
            })
        })
}

/// `msg` naming the channel `name` exactly once: as it is if it names it, else with the
/// `channel NAME: ` prefix.
pub fn once(name: &str, msg: &str) -> String {
    if names_it(msg, name) {
        msg.to_owned()
    } else {
        format!("channel {name}: {msg}")
    }
}

fn user(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// The refusal when the file of segment `name` at `path` cannot be read (`EACCES`): who owns
/// it, its mode, and the two ways on (the owner shares it with a group, or run as the owner).
/// It was a bare "reading segment X: Permission denied (os error 13)".
pub fn denied(name: &str, path: &Path, e: &std::io::Error) -> String {
    let me = nix::unistd::geteuid().as_raw();
    // The link itself, never what it points at (a name in the directory is what was refused).
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return format!(
            "segment {name}: permission denied ({e}); you (uid {me}) may not read it: ask its owner to share it (`shmlane create {name} --mode 0660 --group GROUP`), or run as its owner"
        );
    };
    let owner = match nix::unistd::User::from_uid(m.uid().into()) {
        Ok(Some(u)) => u.name,
        _ => m.uid().to_string(),
    };
    let group = match nix::unistd::Group::from_gid(m.gid().into()) {
        Ok(Some(g)) => format!("group {} ({})", m.gid(), g.name),
        _ => format!("group {}", m.gid()),
    };
    format!(
        "segment {name} belongs to {}, {group}, mode {:04o}, which does not let you ({}) read it: ask its owner to share it with a group you are in (`shmlane create {name} --mode 0660 --group GROUP`, then use it with --trust-owner {owner}), or run as {owner}",
        user(m.uid()),
        m.mode() & 0o7777,
        user(me),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_counts_only_where_a_message_names_the_channel() {
        assert!(names_it("channel q: its consumer is held", "q"));
        assert!(names_it("segment q already exists", "q"));
        assert!(names_it("no segment named q", "q"));
        assert!(names_it("remove it first (channel q)", "q"));
        assert!(names_it("segment q.", "q"));
        assert!(!names_it(
            "ring: region does not hold a shmlane ring",
            "ring"
        ));
        assert!(!names_it("channel qq: x", "q"));
        assert!(!names_it("channel q.b: x", "q"));
        assert!(!names_it("channel q-b: x", "q"));
        assert_eq!(
            once("ring", "ring: region does not hold a shmlane ring"),
            "channel ring: ring: region does not hold a shmlane ring"
        );
        assert_eq!(once("q", "segment q is corrupt"), "segment q is corrupt");
    }
}
