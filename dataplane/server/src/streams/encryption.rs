//! Encryption of record data at rest with AES-256-GCM under the server's key.
//!
//! A stored encrypted record is `nonce (12 bytes) || ciphertext || tag (16 bytes)`.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use rand::RngCore;

const NONCE_LEN: usize = 12;

/// The server's data key.
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(key: &[u8; 32]) -> DataKey {
        DataKey {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A fresh random key's bytes.
    pub fn generate() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    }

    /// Encrypts `plain` with a random nonce.
    pub fn seal(&self, plain: &[u8]) -> Bytes {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Bytes::from(out)
    }

    /// Decrypts what [`DataKey::seal`] produced; `None` if it was altered or another key sealed it.
    pub fn open(&self, sealed: &[u8]) -> Option<Bytes> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .ok()
            .map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_detects_tampering() {
        let key = DataKey::from_bytes(&DataKey::generate());
        let sealed = key.seal(b"hello");
        assert_ne!(&sealed[NONCE_LEN..], b"hello");
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"hello"[..]));
        let mut altered = sealed.to_vec();
        altered[NONCE_LEN] ^= 1;
        assert_eq!(key.open(&altered), None);
        let other = DataKey::from_bytes(&DataKey::generate());
        assert_eq!(other.open(&sealed), None);
    }
}
