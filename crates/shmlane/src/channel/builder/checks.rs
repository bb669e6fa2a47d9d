//! A builder's settings checked for its kind, and the geometry computed once from them.

use super::{
    BROADCAST_MSG, BYTES_TYPE, BroadcastRing, Builder, CHAN_SIZE, ConfigError, EVENT_SIZE,
    ElemType, Kind, LATEST_VALUE, MpmcRing, OpenError, Pod, RecordRing, SpscRing, TYPE_SIZE,
};
/// Largest ring a builder creates: 64 TiB, beyond any machine's shared memory, and far enough
/// below 2^64 that no size sum near it can overflow.
pub(super) const MAX_RING_BYTES: u64 = 1 << 46;

/// Largest element a typed channel takes: 4 GiB (so per-slot sizes never overflow).
pub(super) const MAX_ELEM: u64 = 1 << 32;

/// The broadcast slot holding messages of up to `msg` bytes (at most
/// `max_message(MAX_SLOT_BYTES)`, checked by the builder): the stamp and length words, the
/// message rounded up to 8, and at least `MIN_SLOT_BYTES`.
pub(super) fn broadcast_slot(msg: u64) -> usize {
    (16 + msg as usize)
        .next_multiple_of(8)
        .max(shmlane_ring::broadcast::MIN_SLOT_BYTES)
}

/// Bytes of the cursor table a channel of `kind` holds (broadcast only; 0 otherwise).
pub(super) fn cursors_size(kind: Kind) -> u64 {
    if kind == Kind::Broadcast {
        shmlane_ring::CursorTable::required_size(shmlane_ring::broadcast::DEFAULT_ENTRIES) as u64
    } else {
        0
    }
}

/// What a builder creates, computed once from checked settings: capacity, largest message,
/// broadcast slot size, ring and segment sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) cap: u64,
    pub(super) msg: u64,
    /// Broadcast slot bytes (0 for the other kinds).
    pub(super) slot: usize,
    pub(super) ring: u64,
    pub(super) segment: u64,
}

impl<T: Pod + Send> Builder<T> {
    pub(super) fn config_err(&self, error: ConfigError) -> OpenError {
        OpenError::Config {
            name: self.name.clone(),
            error,
        }
    }

    /// The smallest and largest capacity of this kind.
    pub(super) fn capacity_range(&self) -> (u64, u64) {
        let min = match self.kind {
            Kind::Spsc => 1,
            Kind::Mpmc | Kind::Broadcast | Kind::Latest => 2,
            Kind::Bytes => 256,
        };
        if self.kind == Kind::Latest {
            return (min, shmlane_ring::latest::MAX_SLOTS);
        }
        (min, shmlane_ring::MAX_CAPACITY)
    }

    /// The capacity set (or the default), checked against the kind's range.
    pub(super) fn checked_capacity(&self) -> Result<u64, OpenError> {
        let cap = self.capacity.unwrap_or(match self.kind {
            Kind::Bytes => 1 << 20,
            Kind::Latest => shmlane_ring::latest::DEFAULT_SLOTS,
            _ => 1024,
        });
        let (min, max) = self.capacity_range();
        if !cap.is_power_of_two() || !(min..=max).contains(&cap) {
            return Err(self.config_err(ConfigError::Capacity {
                kind: self.kind.name(),
                capacity: cap,
                min,
                max,
            }));
        }
        Ok(cap)
    }

    /// The largest message of a channel of `cap` (checked), and the error if `msg_size` asks
    /// for more.
    pub(super) fn checked_msg(&self, cap: u64) -> Result<u64, OpenError> {
        let (max, default, hint) = match self.kind {
            // An eighth of the ring, less the record header: cap >= 256 (checked).
            Kind::Bytes => {
                let max = cap / 8 - shmlane_ring::record::RECORD_HEADER as u64;
                (
                    max,
                    max,
                    "; a byte channel's capacity (in bytes) must be at least 8 x (message size + 8)",
                )
            }
            Kind::Broadcast => (
                BroadcastRing::max_message(shmlane_ring::broadcast::MAX_SLOT_BYTES) as u64,
                BROADCAST_MSG,
                "",
            ),
            // Byte values (`raw_latest`): any size the region takes; typed: the element's.
            Kind::Latest if self.byte_form => (
                shmlane_ring::latest::MAX_VALUE_BYTES as u64,
                LATEST_VALUE,
                "",
            ),
            Kind::Latest => (
                (shmlane_ring::latest::MAX_VALUE_BYTES as u64).min(self.elem_size()),
                self.elem_size(),
                " (a latest value holds at most 1 MiB); use a smaller value type",
            ),
            Kind::Spsc | Kind::Mpmc => (
                self.elem_size(),
                self.elem_size(),
                " (the element size); use a larger element type",
            ),
        };
        self.check_fixed_msg()?;
        // A checksummed byte channel's records carry 4 more bytes than the message.
        let (max, default) = if self.kind == Kind::Bytes && self.checksum == Some(true) {
            let max = max.saturating_sub(crate::channel::CHECKSUM_BYTES as u64);
            (max, max)
        } else {
            (max, default)
        };
        let msg = self.msg_size.unwrap_or(default);
        if msg > max || (self.kind == Kind::Latest && msg == 0) {
            return Err(self.config_err(ConfigError::MsgSize {
                kind: self.kind.name(),
                msg_size: msg,
                max,
                hint,
            }));
        }
        Ok(msg)
    }

    /// Checks the settings and computes what `create` makes, with checked arithmetic
    /// throughout (no setting can overflow a size; finding 15 of issue 15).
    pub(super) fn geometry(&self) -> Result<Geometry, OpenError> {
        let cap = self.checked_capacity()?;
        self.check_checksum()?;
        let msg = self.checked_msg(cap)?;
        self.elem_type()?;
        let elem = self.elem_size();
        let too_large = |slot: u64| {
            self.config_err(ConfigError::TooLarge {
                kind: self.kind.name(),
                capacity: cap,
                slot,
                max: MAX_RING_BYTES,
            })
        };
        if elem > MAX_ELEM {
            return Err(too_large(elem));
        }
        // Every ring is a header plus `cap` slots; ask the ring for sizes of one and two slots
        // (small, no overflow: elem <= 4 GiB, slot <= 1 MiB), so the layout stays the ring's.
        let slot = if self.kind == Kind::Broadcast {
            broadcast_slot(msg)
        } else {
            0
        };
        let sized = |n: u64| -> u64 {
            (match self.kind {
                Kind::Spsc => match self.elem {
                    Some(l) => shmlane_ring::DynSpscRing::required_size(l, n),
                    None => SpscRing::<T>::required_size(n),
                },
                Kind::Mpmc => match self.elem {
                    Some(l) => shmlane_ring::DynMpmcRing::required_size(l, n),
                    None => MpmcRing::<T>::required_size(n),
                },
                // Record rings are sized in bytes, a multiple of 8: 256 and 512 bytes.
                Kind::Bytes => RecordRing::required_size(n * 256),
                Kind::Broadcast => BroadcastRing::required_size(n, slot),
                // msg <= 1 MiB (checked above).
                Kind::Latest => shmlane_ring::LatestRing::required_size(n, msg as usize),
            }) as u64
        };
        let (one, two) = (sized(1), sized(2));
        let (per, header) = (two - one, 2 * one - two);
        let (units, per_unit) = if self.kind == Kind::Bytes {
            (cap / 256, per)
        } else {
            (cap, per)
        };
        let ring = units
            .checked_mul(per_unit)
            .and_then(|b| b.checked_add(header))
            .filter(|&b| b <= MAX_RING_BYTES)
            .ok_or_else(|| too_large(if self.kind == Kind::Bytes { 1 } else { per }))?;
        // <= 2^46 plus a few KiB: no overflow below.
        let data = CHAN_SIZE
            + ring
            + 2 * EVENT_SIZE as u64
            + TYPE_SIZE
            + 5 * 128
            + cursors_size(self.kind);
        let segment = (data + 64 * 1024).next_multiple_of(4096);
        Ok(Geometry {
            cap,
            msg,
            slot,
            ring,
            segment,
        })
    }

    /// SPSC and MPMC: a message is an element, so `msg_size` is refused unless it is the
    /// element's size.
    pub(super) fn check_fixed_msg(&self) -> Result<(), OpenError> {
        let typed = matches!(self.kind, Kind::Spsc | Kind::Mpmc)
            || (self.kind == Kind::Latest && !self.byte_form);
        if let (true, Some(m)) = (typed, self.msg_size)
            && m != self.elem_size()
        {
            return Err(self.config_err(ConfigError::FixedMsgSize {
                kind: self.kind.name(),
                msg_size: m,
                elem: self.elem_size(),
            }));
        }
        Ok(())
    }

    /// The element type this builder creates or expects.
    pub(super) fn elem_type(&self) -> Result<ElemType, OpenError> {
        if self.byte_form {
            if self.type_name.is_some() {
                return Err(self.config_err(ConfigError::Unsupported {
                    kind: self.kind.name(),
                    what: "type name (its messages are bytes, recorded as `bytes`; put a format tag in the messages instead)",
                }));
            }
            return Ok(ElemType::new(BYTES_TYPE, 1, 1));
        }
        let default;
        let name = match (&self.type_name, self.elem) {
            (Some(n), _) => n.as_str(),
            (None, Some(l)) => {
                default = crate::channel::raw::default_type_name(l);
                default.as_str()
            }
            (None, None) => core::any::type_name::<T>(),
        };
        if name.is_empty() {
            return Err(self.config_err(ConfigError::EmptyTypeName));
        }
        Ok(ElemType::new(name, self.elem_size(), self.elem_align()))
    }

    /// Checksums are for byte and broadcast channels.
    pub(super) fn check_checksum(&self) -> Result<(), OpenError> {
        if self.checksum == Some(true)
            && matches!(self.kind, Kind::Spsc | Kind::Mpmc | Kind::Latest)
        {
            return Err(self.config_err(ConfigError::Unsupported {
                kind: self.kind.name(),
                what: "per-message checksums (byte and broadcast channels only; put a checksum field in the element type instead)",
            }));
        }
        Ok(())
    }

    /// The settings `open` uses, checked the same way as for `create` (a capacity out of range
    /// is reported as such, not as a mismatch).
    pub(super) fn check_for_open(&self) -> Result<(), OpenError> {
        self.check_checksum()?;
        self.elem_type()?;
        if self.capacity.is_some() {
            self.checked_capacity()?;
        }
        self.check_fixed_msg()?;
        Ok(())
    }
}
