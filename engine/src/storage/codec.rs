//! How values are stored: JSON, LZ4-compressed when long. The shapes are the core's types
//! (instances, history entries) and the engine's (task views, definitions, rules changes).

use crate::storage::{StoreError, BATCH_BYTES_MAX};
use caseflow_core::case::HistoryEntry;

/// LZ4 with the size prepended, the size checked before anything is allocated.
pub(crate) fn decompress(bytes: &[u8]) -> Option<Vec<u8>> {
    let size = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if size > BATCH_BYTES_MAX {
        return None;
    }
    let raw = lz4_flex::decompress(&bytes[4..], size).ok()?;
    (raw.len() == size).then_some(raw)
}

/// Marks a compressed value; JSON never starts with this byte.
const COMPRESSED: u8 = 0x04;

/// Values shorter than this stay plain JSON: compression would not pay.
const COMPRESS_FROM: usize = 128;

/// A stored value: JSON, LZ4-compressed when it is long (instances, history, inbox rows shrink
/// to about half, and with them sled's log, its restart replay and its cache footprint).
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let json = serde_json::to_vec(v).expect("engine values always serialise");
    if json.len() < COMPRESS_FROM {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() / 2);
    out.push(COMPRESSED);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&json));
    out
}

/// The JSON of a stored value: plain when it is short, or decompressed.
fn json_of<'a>(key: &[u8], bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    match bytes.split_first() {
        Some((&COMPRESSED, packed)) => {
            decompress(packed).map(std::borrow::Cow::Owned).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                problem: "bad compressed value".into(),
            })
        }
        _ => Ok(std::borrow::Cow::Borrowed(bytes)),
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(&json_of(key, bytes)?)
        .map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), problem: e.to_string() })
}

/// The entries stored under one `h/` key: a command's entries.
pub(crate) fn history_entries(key: &[u8], bytes: &[u8]) -> Result<Vec<HistoryEntry>, StoreError> {
    decode(key, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_stored_compressed_and_short_ones_plain() {
        let long: Vec<String> = (0..40).map(|i| format!("entry {i}")).collect();
        let packed = encode(&long);
        assert_eq!(packed[0], COMPRESSED);
        assert!(packed.len() < serde_json::to_vec(&long).unwrap().len());
        assert_eq!(decode::<Vec<String>>(b"k", &packed).unwrap(), long);
        let short = vec!["a".to_string()];
        assert_eq!(encode(&short), serde_json::to_vec(&short).unwrap());
        assert_eq!(decode::<Vec<String>>(b"k", &encode(&short)).unwrap(), short);
    }

    #[test]
    fn a_bad_compressed_value_is_corrupt_not_a_panic() {
        for bad in [&[COMPRESSED][..], &[COMPRESSED, 255, 255, 255, 255, 1], &[COMPRESSED, 5, 0, 0, 0, 1, 2]] {
            assert!(matches!(decode::<Vec<String>>(b"k", bad), Err(StoreError::Corrupt { .. })));
        }
    }
}
