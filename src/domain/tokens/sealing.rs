//! Private keys at rest: sealed with AES-256-GCM under the key encryption
//! key (KEY_ENCRYPTION_KEY), with the key's `kid` as associated data, so
//! that a sealed key moved to another row (another `kid`) no longer opens.
//! A sealed key is a random 96-bit nonce followed by the ciphertext and its
//! tag. Without a key encryption key, keys are stored as they are, and the
//! server warns at start.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::{ExposeSecret, SecretSlice};

/// The length of a key encryption key: AES-256.
pub const KEY_ENCRYPTION_KEY_BYTES: usize = 32;

/// How a stored private key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// As it is: no KEY_ENCRYPTION_KEY was set when it was stored.
    None,
    Aes256Gcm,
}

impl Sealing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        [Self::None, Self::Aes256Gcm].into_iter().find(|sealing| sealing.as_str() == value)
    }
}

/// A private key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub sealing: Sealing,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey").field("sealing", &self.sealing).finish_non_exhaustive()
    }
}

/// The AES-256 key that seals private keys at rest.
#[derive(Clone)]
pub struct KeyEncryptionKey(SecretSlice<u8>);

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealingError {
    #[error("must be {KEY_ENCRYPTION_KEY_BYTES} bytes in base64 (for example from `openssl rand -base64 32`)")]
    BadKeyEncryptionKey,
    #[error("no random numbers from the operating system")]
    Random,
    #[error("sealed, and no KEY_ENCRYPTION_KEY is set to open it")]
    NoKeyEncryptionKey,
    #[error("does not open with KEY_ENCRYPTION_KEY (another key, or the stored row was altered)")]
    DoesNotOpen,
}

impl KeyEncryptionKey {
    /// The key from its base64 text (standard alphabet, padding optional,
    /// surrounding white space ignored, as files written by tools end in a
    /// newline). The error never repeats the text.
    pub fn from_base64(text: &str) -> Result<Self, SealingError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| SealingError::BadKeyEncryptionKey)?;
        if bytes.len() != KEY_ENCRYPTION_KEY_BYTES {
            return Err(SealingError::BadKeyEncryptionKey);
        }
        Ok(Self(bytes.into()))
    }

    fn aead(&self) -> Result<LessSafeKey, SealingError> {
        let key =
            UnboundKey::new(&AES_256_GCM, self.0.expose_secret()).map_err(|_| SealingError::BadKeyEncryptionKey)?;
        Ok(LessSafeKey::new(key))
    }

    /// Seals `plaintext`, bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<SealedKey, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealingError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.aead()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| SealingError::Random)?;
        let mut bytes = nonce.to_vec();
        bytes.append(&mut sealed);
        Ok(SealedKey {
            sealing: Sealing::Aes256Gcm,
            bytes,
        })
    }
}

/// Seals with `key` when there is one; stores as it is otherwise.
pub fn seal(key: Option<&KeyEncryptionKey>, kid: &str, plaintext: &[u8]) -> Result<SealedKey, SealingError> {
    match key {
        Some(key) => key.seal(kid, plaintext),
        None => Ok(SealedKey {
            sealing: Sealing::None,
            bytes: plaintext.to_vec(),
        }),
    }
}

/// The plaintext of a stored key.
pub fn open(key: Option<&KeyEncryptionKey>, kid: &str, sealed: &SealedKey) -> Result<Vec<u8>, SealingError> {
    match sealed.sealing {
        Sealing::None => Ok(sealed.bytes.clone()),
        Sealing::Aes256Gcm => {
            let key = key.ok_or(SealingError::NoKeyEncryptionKey)?;
            let (nonce, ciphertext) = sealed.bytes.split_at_checked(NONCE_LEN).ok_or(SealingError::DoesNotOpen)?;
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealingError::DoesNotOpen)?;
            let mut buffer = ciphertext.to_vec();
            let plaintext = key
                .aead()?
                .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
                .map_err(|_| SealingError::DoesNotOpen)?;
            Ok(plaintext.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_with_its_kek_and_kid_only() {
        let sealed = key(1).seal("kid-a", b"private key").unwrap();
        assert_eq!(sealed.sealing, Sealing::Aes256Gcm);
        assert!(!sealed.bytes.windows(11).any(|window| window == b"private key"), "no plaintext at rest");
        assert_eq!(open(Some(&key(1)), "kid-a", &sealed).unwrap(), b"private key");
        assert_eq!(open(Some(&key(2)), "kid-a", &sealed), Err(SealingError::DoesNotOpen), "another KEK");
        assert_eq!(open(Some(&key(1)), "kid-b", &sealed), Err(SealingError::DoesNotOpen), "moved to another kid");
        assert_eq!(open(None, "kid-a", &sealed), Err(SealingError::NoKeyEncryptionKey));
        let mut altered = sealed.clone();
        let last = altered.bytes.len() - 1;
        altered.bytes[last] ^= 1;
        assert_eq!(open(Some(&key(1)), "kid-a", &altered), Err(SealingError::DoesNotOpen));
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        assert_ne!(key(1).seal("kid", b"same").unwrap().bytes, key(1).seal("kid", b"same").unwrap().bytes);
    }

    #[test]
    fn without_a_kek_keys_are_stored_as_they_are() {
        let stored = seal(None, "kid", b"plain").unwrap();
        assert_eq!(stored.sealing, Sealing::None);
        assert_eq!(open(Some(&key(1)), "kid", &stored).unwrap(), b"plain");
    }

    #[test]
    fn a_kek_must_be_32_bytes_of_base64_and_is_never_echoed() {
        for bad in ["", "not base64!", &STANDARD.encode([0; 31]), &STANDARD.encode([0; 33])] {
            let error = KeyEncryptionKey::from_base64(bad).unwrap_err();
            assert_eq!(error, SealingError::BadKeyEncryptionKey);
            assert!(bad.is_empty() || !error.to_string().contains(bad));
        }
        assert!(KeyEncryptionKey::from_base64(&format!("{}\n", STANDARD.encode([7; 32]))).is_ok());
        assert!(!format!("{:?}", key(7)).contains('7'));
    }
}
