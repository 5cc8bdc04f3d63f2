//! Signing keys: their material, the algorithm each is for, and the `kid`
//! that names it in the tokens it signs.

use std::fmt;

use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

/// HMAC keys shorter than the hash output weaken HS256 (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// The algorithms the keyring can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Hs256,
}

impl SigningAlgorithm {
    pub(super) fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
        }
    }

    /// The name in the JOSE header's `alg` (RFC 7518 §3.1), also how the
    /// repository stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        match value {
            "HS256" => Some(Self::Hs256),
            _ => None,
        }
    }
}

/// Key material and the id that tokens signed with it carry in `kid`.
pub struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    material: SecretSlice<u8>,
}

impl SigningKey {
    /// An HS256 key. Its id is a fingerprint of the secret (a SHA-256 prefix),
    /// so it is stable across restarts and replicas and reveals nothing.
    pub fn hs256(secret: Vec<u8>) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::TooShort { actual: secret.len() });
        }
        let digest = Sha256::digest(&secret);
        let fingerprint: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Self {
            kid: format!("hs256-{fingerprint}"),
            algorithm: SigningAlgorithm::Hs256,
            material: secret.into(),
        })
    }

    /// A fresh random HS256 key of 256 bits.
    pub fn generate_hs256() -> Result<Self, KeyError> {
        let mut secret = vec![0u8; MIN_HMAC_SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|error| KeyError::Random(error.to_string()))?;
        Self::hs256(secret)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn material(&self) -> &[u8] {
        self.material.expose_secret()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes (got {actual})")]
    TooShort { actual: usize },
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("could not sign a token: {0}")]
    Signing(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(SigningKey::hs256(vec![0; 31]), Err(KeyError::TooShort { actual: 31 })));
    }

    #[test]
    fn key_id_is_stable_and_not_the_secret() {
        let a = SigningKey::hs256(vec![9; 32]).unwrap();
        let b = SigningKey::hs256(vec![9; 32]).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert!(!format!("{a:?}").contains("material"));
    }
}
