//! Checked messages: every byte derives from the producer id and sequence number.

use crate::proc::Rng;

pub(crate) fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A checked message: producer id, sequence, 0–399 pattern bytes, FNV-1a of all that.
pub(crate) fn message(id: u64, seq: u64, rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(400) as usize;
    let mut m = Vec::with_capacity(24 + n);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend((0..n).map(|i| (seq as u8).wrapping_add(i as u8)));
    let h = fnv(&m);
    m.extend_from_slice(&h.to_le_bytes());
    m
}

/// `(id, seq)` of a whole message, `None` if it is torn or corrupt.
pub(crate) fn check(m: &[u8]) -> Option<(u64, u64)> {
    if m.len() < 24 {
        return None;
    }
    let (body, sum) = m.split_at(m.len() - 8);
    if fnv(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let w = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
    Some((w(0), w(8)))
}
pub(crate) fn words4(seq: u64) -> [u64; 4] {
    [
        seq,
        !seq,
        seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        seq ^ 0x5555,
    ]
}

/// A checked typed message (SPSC and MPMC channels of `[u64; 4]`): producer id, sequence, a
/// mix of both, FNV-1a of the three.
pub(crate) fn typed(id: u64, seq: u64) -> [u64; 4] {
    let mix = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq.rotate_left(17);
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&id.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..].copy_from_slice(&mix.to_le_bytes());
    [id, seq, mix, fnv(&b)]
}

/// `(id, seq)` of a typed message, `None` if it is torn or corrupt.
pub(crate) fn check_typed(w: [u64; 4]) -> Option<(u64, u64)> {
    (typed(w[0], w[1]) == w).then_some((w[0], w[1]))
}
