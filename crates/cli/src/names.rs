//! Segment names on the command line: every subcommand checks its NAME while parsing its
//! arguments, before anything touches the filesystem (`stat ../../x` read a file outside the
//! shared-memory directory, `send ../../path` opened one). A bad name is a usage error (exit 2)
//! whose message says what a valid name is; the rule is the segment layer's
//! ([`shmlane_segment::validate_name`]), so the command and the library agree.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
};

use clap::{builder::TypedValueParser, error::ErrorKind};
use shmlane_segment::{Location, NAME_RULE, validate_name};

/// Checks a segment name given as an argument (any bytes): `Ok` with the name, or the
/// message of the usage error.
pub fn check(raw: &OsStr) -> Result<String, String> {
    let Some(name) = raw.to_str() else {
        return Err(format!(
            "invalid segment name {:?}: it is not UTF-8; {NAME_RULE}",
            raw.to_string_lossy()
        ));
    };
    validate_name(name)
        .map(|()| name.to_owned())
        .map_err(|reason| format!("invalid segment name {name:?}: {reason}; {NAME_RULE}"))
}

/// The clap value parser of every NAME argument.
#[derive(Clone, Copy, Debug)]
pub struct NameParser;

impl TypedValueParser for NameParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        check(value).map_err(|m| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{m}\n")).with_cmd(cmd)
        })
    }
}

/// Where the segment `name` lives: `/dev/shm` (POSIX), or the file `dir/name`.
pub fn location(name: &str, dir: Option<&Path>) -> Location {
    match dir {
        Some(d) => Location::File(d.join(name)),
        None => Location::Posix(name.to_owned()),
    }
}

/// The path of the segment `name` (already checked by [`NameParser`]).
pub fn path(name: &str, dir: Option<&Path>) -> PathBuf {
    location(name, dir)
        .path()
        .expect("named locations have a path")
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        let long = "a".repeat(300);
        for bad in [
            "..",
            ".",
            "",
            "../../x",
            "a/b",
            "/etc/passwd",
            ".hidden",
            &long,
            "a b",
        ] {
            let e = check(OsStr::new(bad)).unwrap_err();
            assert!(e.contains(NAME_RULE), "{bad:?}: {e}");
        }
        let e = check(OsStr::from_bytes(b"q\xff")).unwrap_err();
        assert!(e.contains("not UTF-8") && e.contains(NAME_RULE), "{e}");
        for good in ["q", "a.b", "A_b-9", &"z".repeat(200)] {
            assert_eq!(check(OsStr::new(good)).as_deref(), Ok(good));
        }
    }
}
