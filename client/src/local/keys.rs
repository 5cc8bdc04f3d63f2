//! The public keys a [`LocalVerifier`](crate::LocalVerifier) checks
//! signatures with: read from the JWK Set the stream's KEY_SET events carry,
//! prepared once (parsed into aws-lc-rs public keys), and replaced whole on
//! every KEY_SET, as the proto's key rules ask.

use std::{collections::HashMap, fmt};

use aws_lc_rs::{
    hmac,
    signature::{self, ParsedPublicKey, RsaPublicKeyComponents},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;

use crate::Reason;

/// One verifying key, ready to check signatures.
enum Verifying {
    /// Ed25519 and ECDSA P-256 (r || s signatures), parsed once.
    Parsed(ParsedPublicKey),
    /// RSA PKCS#1 v1.5 with SHA-256 (legacy verifiers; RS256).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An HS256 secret handed to the verifier explicitly: never from the stream.
    Hmac(Box<hmac::Key>),
}

/// A key of the set, with the one algorithm it verifies.
pub(crate) struct PublicKey {
    /// As the JWS header spells it: `EdDSA`, `ES256`, `RS256` (or `HS256`).
    algorithm: &'static str,
    verifying: Verifying,
}

impl PublicKey {
    /// Checks `signature` over `message` with this key, if the token's
    /// header named this key's algorithm; another algorithm is refused,
    /// never tried.
    pub(crate) fn check(&self, algorithm: &str, message: &[u8], signature: &[u8]) -> Result<(), Reason> {
        if algorithm != self.algorithm {
            return Err(Reason::BadSignature);
        }
        let verified = match &self.verifying {
            Verifying::Parsed(key) => key.verify_sig(message, signature).is_ok(),
            Verifying::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Verifying::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        };
        verified.then_some(()).ok_or(Reason::BadSignature)
    }

    /// Whether a token signed by this key may be typed `JWT` (tokens signed
    /// with a configured HS256 secret before explicit typing): never for a
    /// key from the JWKS.
    pub(crate) fn legacy_type_allowed(&self) -> bool {
        matches!(self.verifying, Verifying::Hmac(_))
    }

    /// A verifying key for an HS256 secret.
    pub(crate) fn hs256(secret: &[u8]) -> Self {
        Self {
            algorithm: "HS256",
            verifying: Verifying::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        }
    }
}

/// The current key set: `kid` -> key.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, PublicKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

/// Why a JWK Set was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is not a JSON JWK Set")]
    NotJwks,
}

#[derive(Deserialize)]
struct JwkSetJson {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK this verifier reads; the rest is ignored.
#[derive(Deserialize)]
struct JwkJson {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl KeySet {
    /// Reads a JWK Set (RFC 7517 JSON). A key this verifier cannot use (no
    /// `kid`, no `alg`, not for signatures, an unknown type or curve, bad
    /// base64) is left out with a warning: tokens it signed are refused,
    /// which is what the key rules ask for a key one does not hold.
    pub(crate) fn from_jwks(jwks: &str) -> Result<Self, JwksError> {
        let set: JwkSetJson = serde_json::from_str(jwks).map_err(|_| JwksError::NotJwks)?;
        let mut keys = HashMap::with_capacity(set.keys.len());
        for value in set.keys {
            let Ok(jwk) = serde_json::from_value::<JwkJson>(value) else {
                tracing::warn!("a key of the JWK Set has the wrong shape; left out");
                continue;
            };
            let kid = jwk.kid.clone();
            match (kid, prepare(&jwk)) {
                (Some(kid), Some(key)) => {
                    keys.insert(kid, key);
                }
                (kid, _) => {
                    tracing::warn!(kid = kid.as_deref().unwrap_or(""), kty = %jwk.kty, "a key of the JWK Set cannot be used; left out")
                }
            }
        }
        Ok(Self { keys })
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether every key of `self` is in `newer` (same `kid`): a set that
    /// only grew leaves remembered verifications valid.
    pub(crate) fn kids_kept_by(&self, newer: &KeySet) -> bool {
        self.keys.keys().all(|kid| newer.keys.contains_key(kid))
    }
}

fn prepare(jwk: &JwkJson) -> Option<PublicKey> {
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return None;
    }
    let decode = |part: &Option<String>| part.as_deref().and_then(|text| URL_SAFE_NO_PAD.decode(text).ok());
    let parsed = |algorithm, bytes: &[u8]| ParsedPublicKey::new(algorithm, bytes).ok().map(Verifying::Parsed);
    let (algorithm, verifying) = match (jwk.kty.as_str(), jwk.alg.as_deref()?, jwk.crv.as_deref()) {
        ("OKP", "EdDSA", Some("Ed25519")) => ("EdDSA", parsed(&signature::ED25519, &decode(&jwk.x)?)?),
        ("EC", "ES256", Some("P-256")) => {
            let (x, y) = (decode(&jwk.x)?, decode(&jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            // An uncompressed point: 0x04 || x || y.
            let point: Vec<u8> = std::iter::once(4).chain(x).chain(y).collect();
            ("ES256", parsed(&signature::ECDSA_P256_SHA256_FIXED, &point)?)
        }
        ("RSA", "RS256", _) => (
            "RS256",
            Verifying::Rsa {
                n: decode(&jwk.n)?,
                e: decode(&jwk.e)?,
            },
        ),
        _ => return None,
    };
    Some(PublicKey { algorithm, verifying })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_without_kid_of_unknown_types_or_for_encryption_are_left_out() {
        let jwks = r#"{"keys": [
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "enc", "kid": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "oct", "alg": "HS256", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "good", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            "not an object"
        ]}"#;
        let set = KeySet::from_jwks(jwks).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.get("good").is_some());
        assert!(set.get("secret").is_none(), "a symmetric key from a JWKS is never trusted");
    }

    #[test]
    fn a_key_verifies_only_with_its_own_algorithm() {
        let key = PublicKey::hs256(b"a secret of enough length for a test");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"a secret of enough length for a test"), b"m");
        assert_eq!(key.check("HS256", b"m", tag.as_ref()), Ok(()));
        assert_eq!(key.check("HS384", b"m", tag.as_ref()), Err(Reason::BadSignature));
        assert_eq!(key.check("none", b"m", b""), Err(Reason::BadSignature));
        assert_eq!(key.check("HS256", b"other", tag.as_ref()), Err(Reason::BadSignature));
    }

    #[test]
    fn what_is_not_a_jwk_set_is_refused() {
        assert_eq!(KeySet::from_jwks("[]").unwrap_err(), JwksError::NotJwks);
        assert_eq!(KeySet::from_jwks("").unwrap_err(), JwksError::NotJwks);
    }
}
