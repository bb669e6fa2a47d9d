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
