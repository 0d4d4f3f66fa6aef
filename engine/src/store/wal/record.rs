//! A record: `[payload length u32 LE][crc32 u32 LE][sequence u64 LE][payload]`, the CRC over
//! the sequence and the payload.

use super::HEADER;

pub(super) fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One record from the front of `bytes`: (sequence, payload, bytes taken), or `None` if it is
/// torn or does not check.
pub(super) fn decode(bytes: &[u8]) -> Option<(u64, &[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (crc(seq, payload) == sum).then_some((seq, payload, HEADER + len))
}

/// Fills the header of the record that starts `record` (its `HEADER` bytes, then the payload
/// to the end of the slice): length, CRC and sequence number.
pub(super) fn seal(record: &mut [u8], seq: u64) {
    let (len, sum) = ((record.len() - HEADER) as u32, crc(seq, &record[HEADER..]));
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..8].copy_from_slice(&sum.to_le_bytes());
    record[8..HEADER].copy_from_slice(&seq.to_le_bytes());
}
