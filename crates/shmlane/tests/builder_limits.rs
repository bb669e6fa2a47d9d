//! Builder settings at and past their limits give typed errors through `create`, `open` and
//! `open_or_create`, in debug and release builds alike (no overflow panic, no wrapped size,
//! nothing left behind).

use shmlane::{ConfigError, OpenError};
use shmlane_testkit::{Cleanup, unique};

fn config(r: Result<impl Sized, OpenError>) -> ConfigError {
    match r {
        Err(OpenError::Config { error, .. }) => error,
        Err(e) => panic!("another error than Config: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

fn gone(name: &str) -> bool {
    !std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

#[test]
fn capacity_u64_max_is_refused_by_create_and_open_or_create() {
    let name = unique("limits-cap");
    let _c = Cleanup(name.clone());
    let e = config(shmlane::spsc::<u64>(&name).capacity(u64::MAX).create());
    assert!(
        matches!(e, ConfigError::Capacity { capacity: u64::MAX, max, .. } if max == 1 << 40),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("power of two from 1 to 1099511627776"),
        "{e}"
    );
    let e = config(
        shmlane::mpmc::<u64>(&name)
            .capacity(u64::MAX)
            .open_or_create(),
    );
    assert!(matches!(e, ConfigError::Capacity { min: 2, .. }), "{e:?}");
    let e = config(shmlane::bytes(&name).capacity(u64::MAX).create());
    assert!(matches!(e, ConfigError::Capacity { min: 256, .. }), "{e:?}");
    // Below the minimum: an eighth of 8 bytes less the record header underflowed.
    let e = config(shmlane::bytes(&name).capacity(8).create());
    assert!(
        matches!(e, ConfigError::Capacity { capacity: 8, .. }),
        "{e:?}"
    );
    let e = config(shmlane::broadcast(&name).capacity(u64::MAX).create());
    assert!(matches!(e, ConfigError::Capacity { .. }), "{e:?}");
    assert!(gone(&name), "a refused create left a segment");
}

#[test]
fn broadcast_msg_size_u64_max_is_refused() {
    let name = unique("limits-msg");
    let _c = Cleanup(name.clone());
    let e = config(shmlane::broadcast(&name).msg_size(u64::MAX).create());
    assert!(
        matches!(
            e,
            ConfigError::MsgSize {
                msg_size: u64::MAX,
                max: 1_048_560,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("at most 1048560 bytes"), "{e}");
    // The largest message that fits a 1 MiB slot works end to end.
    let ch = shmlane::broadcast(&name)
        .capacity(2)
        .msg_size(1_048_560)
        .create()
        .unwrap();
    let mut tx = ch.publisher().unwrap();
    assert_eq!(tx.max_message(), 1_048_560);
    tx.send(&vec![7u8; 1_048_560]).unwrap();
}

#[test]
fn a_ring_too_large_for_any_memory_is_refused() {
    let name = unique("limits-large");
    let _c = Cleanup(name.clone());
    let e = config(
        shmlane::spsc::<[u64; 1024]>(&name)
            .capacity(1 << 40)
            .create(),
    );
    assert!(
        matches!(e, ConfigError::TooLarge { capacity, slot: 8192, .. } if capacity == 1 << 40),
        "{e:?}"
    );
    assert!(gone(&name));
}

#[test]
fn open_reports_a_bad_setting_as_such() {
    let name = unique("limits-open");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<u64>(&name).capacity(64).create().unwrap();
    let e = config(shmlane::spsc::<u64>(&name).capacity(u64::MAX).open());
    assert!(matches!(e, ConfigError::Capacity { .. }), "{e:?}");
    // A valid but different capacity is still a mismatch.
    assert!(matches!(
        shmlane::spsc::<u64>(&name).capacity(128).open(),
        Err(OpenError::Mismatch { .. })
    ));
    assert!(shmlane::spsc::<u64>(&name).open().is_ok());
}
