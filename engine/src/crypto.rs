//! Encryption at rest of fields marked `sensitive` (phone numbers, addresses: manual 001, "customer
//! data is internal only; sensitive data stored encrypted").
//!
//! XChaCha20-Poly1305 (an AEAD from RustCrypto) with a random 192-bit nonce per value. A value is
//! stored as `Value::Text("enc:v1:" + base64(nonce ‖ ciphertext))`; the plaintext is the
//! value's JSON. The instance id is bound as associated data, so a ciphertext copied into
//! another case does not decrypt. This is a shell concern: the core only sees plaintext.

use base64::Engine as _;
use caseflow_core::value::Value;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const PREFIX: &str = "enc:v1:";
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the field key must be {KEY_BYTES} bytes ({} hex digits)", KEY_BYTES * 2)]
    BadKey,
    #[error("a sensitive value does not decrypt with this key (wrong key, or data corrupted)")]
    Decrypt,
    #[error("a sensitive value is stored unsealed (it was written without the field key)")]
    Unsealed,
    #[error("no random numbers available: {0}")]
    Random(String),
    #[error(
        "this field key (id {given}) is not the key this data directory was written with (id {recorded}): \
         sensitive fields would not decrypt; configure the original key file (field_key_file)"
    )]
    WrongKey { given: String, recorded: String },
}

/// A short public id of a key (not the key: a one-way digest), recorded in the store so that
/// a start with another key is refused instead of writing data no one can read together.
pub fn key_id(key: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new().chain_update(b"caseflow field key id\0").chain_update(key).finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub struct FieldCipher {
    aead: XChaCha20Poly1305,
}

impl FieldCipher {
    pub fn new(key: &[u8]) -> Result<FieldCipher, CryptoError> {
        if key.len() != KEY_BYTES {
            return Err(CryptoError::BadKey);
        }
        Ok(FieldCipher { aead: XChaCha20Poly1305::new_from_slice(key).map_err(|_| CryptoError::BadKey)? })
    }

    /// A fresh random key, for first start.
    pub fn generate_key() -> Result<[u8; KEY_BYTES], CryptoError> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::getrandom(&mut key).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(key)
    }

    /// A value as stored, still sealed (read without the field key).
    pub fn is_encrypted(v: &Value) -> bool {
        matches!(v, Value::Text(t) if t.starts_with(PREFIX))
    }

    pub fn encrypt(&self, v: &Value, context: &[u8]) -> Result<Value, CryptoError> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let plain = serde_json::to_vec(v).expect("values serialise");
        let sealed = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: context })
            .map_err(|_| CryptoError::Decrypt)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(Value::Text(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(blob))))
    }

    /// Decrypts a stored value. Every sensitive value is stored sealed: one that is not was
    /// written without this key, and is refused rather than shown.
    pub fn decrypt(&self, v: &Value, context: &[u8]) -> Result<Value, CryptoError> {
        let Value::Text(t) = v else { return Err(CryptoError::Unsealed) };
        let Some(b64) = t.strip_prefix(PREFIX) else { return Err(CryptoError::Unsealed) };
        let blob = base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64).map_err(|_| CryptoError::Decrypt)?;
        if blob.len() < 24 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, sealed) = blob.split_at(24);
        let plain = self
            .aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: context })
            .map_err(|_| CryptoError::Decrypt)?;
        serde_json::from_slice(&plain).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = FieldCipher::new(&[7u8; 32]).unwrap();
        let v = Value::Text("138-0000-0000".into());
        let e = c.encrypt(&v, b"1").unwrap();
        assert!(FieldCipher::is_encrypted(&e));
        assert!(!e.to_string().contains("138"), "no plaintext at rest");
        assert_ne!(e, c.encrypt(&v, b"1").unwrap(), "a fresh nonce each time");
        assert_eq!(c.decrypt(&e, b"1").unwrap(), v);
        assert!(c.decrypt(&e, b"2").is_err(), "bound to its instance");
        assert!(FieldCipher::new(&[8u8; 32]).unwrap().decrypt(&e, b"1").is_err(), "wrong key");
        assert!(
            matches!(c.decrypt(&v, b"1"), Err(CryptoError::Unsealed)),
            "a value in the clear is refused, not shown"
        );
        assert!(FieldCipher::new(&[0u8; 5]).is_err());
    }
}
