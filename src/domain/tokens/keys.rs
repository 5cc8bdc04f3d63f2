//! Signing keys: their material, the algorithm each is for, the `kid` that
//! names it in the tokens it signs, and the public half that services
//! verify with (a JWK, RFC 7517).
//!
//! A key is prepared once, when it is made: the private key parsed into a
//! key pair ready to sign, the public key parsed ready to verify. So a key
//! that exists is a key that works, and the keyring built from keys cannot
//! fail.

use std::fmt;

use aws_lc_rs::{
    encoding::AsDer,
    hmac,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{
        self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
        ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
    },
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters, EllipticCurveKeyType, Jwk,
    KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, RSAKeyParameters, RSAKeyType,
};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

use super::claims::TokenRejection;

/// HMAC keys shorter than the hash output weaken HS256 (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Random bytes in a generated `kid`: unguessable, and nothing derived from
/// the key.
const KID_BYTES: usize = 16;

/// The algorithms the keyring signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// HMAC-SHA-256: one shared secret signs and verifies. Never published.
    Hs256,
    /// Ed25519 (RFC 8037): the default for keys the server makes.
    EdDsa,
    /// ECDSA on P-256 with SHA-256, signatures as r || s (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 on 2048-bit keys, for verifiers that
    /// know nothing newer.
    Rs256,
}

impl SigningAlgorithm {
    pub const ALL: [Self; 4] = [Self::Hs256, Self::EdDsa, Self::Es256, Self::Rs256];

    /// The name in the JOSE header's `alg` (RFC 7518 §3.1), also how the
    /// repository stores it and how JWT_ALGORITHM names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|algorithm| algorithm.as_str() == value)
    }

    /// Whether its keys are public-key pairs, published for services to
    /// verify with. An HS256 secret is never published: it would let anyone
    /// sign.
    pub fn is_asymmetric(self) -> bool {
        !matches!(self, Self::Hs256)
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Key material and the id that tokens signed with it carry in `kid`.
pub struct SigningKey {
    kid: String,
    /// What is stored (sealed) and read back: the HMAC secret, or the
    /// private key as PKCS#8 DER.
    material: SecretSlice<u8>,
    prepared: Prepared,
    /// Whether tokens typed `JWT` (what versions before explicit typing
    /// wrote) are accepted with this key; see [`SigningKey::allow_legacy_type`].
    legacy_type_allowed: bool,
}

/// The key ready to sign and to verify.
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of keys live for the whole process; a boxed HMAC key would cost every HS256 verification an indirection"
)]
enum Prepared {
    Hs256(hmac::Key),
    EdDsa {
        pair: Ed25519KeyPair,
        public: ParsedPublicKey,
    },
    Es256 {
        pair: EcdsaKeyPair,
        public: ParsedPublicKey,
    },
    Rs256 {
        pair: Box<RsaKeyPair>,
        public: ParsedPublicKey,
    },
}

impl SigningKey {
    /// An HS256 key given by configuration (JWT_SECRET, JWT_ACCEPTED_SECRETS).
    /// Its id is a fingerprint of the secret (a SHA-256 prefix), so that
    /// every replica, and every token signed before this version, names it
    /// alike. A configured secret has nowhere to keep a random id; and the
    /// fingerprint tells a guesser nothing that the HMAC of any token signed
    /// with it does not (both test a guess with one hash). Tokens typed `JWT`
    /// are accepted with it: it signed them before explicit typing.
    pub fn hs256(secret: Vec<u8>) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::TooShort { actual: secret.len() });
        }
        let digest = Sha256::digest(&secret);
        let fingerprint: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        let mut key = Self::from_material(format!("hs256-{fingerprint}"), SigningAlgorithm::Hs256, secret)?;
        key.legacy_type_allowed = true;
        Ok(key)
    }

    /// A fresh key of `algorithm` with a random id: 256 random bits for
    /// HS256, a new key pair otherwise (RSA: 2048 bits).
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let material = match algorithm {
            SigningAlgorithm::Hs256 => random_bytes(MIN_HMAC_SECRET_BYTES)?,
            SigningAlgorithm::EdDsa => {
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generation(algorithm))?.as_ref().to_vec()
            }
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generation(algorithm))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::Rs256 => aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .and_then(|pair| pair.as_der())
                .map_err(|_| KeyError::Generation(algorithm))?
                .as_ref()
                .to_vec(),
        };
        Self::from_material(random_kid()?, algorithm, material)
    }

    /// A key read back from storage: `material` is what [`SigningKey::material`]
    /// gave when it was stored.
    pub fn from_material(kid: String, algorithm: SigningAlgorithm, material: Vec<u8>) -> Result<Self, KeyError> {
        let corrupt = || KeyError::Unusable {
            kid: kid.clone(),
            algorithm,
        };
        let public = |algorithm: &'static dyn signature::VerificationAlgorithm, bytes: &[u8]| {
            ParsedPublicKey::new(algorithm, bytes).map_err(|_| corrupt())
        };
        let prepared = match algorithm {
            SigningAlgorithm::Hs256 => {
                if material.len() < MIN_HMAC_SECRET_BYTES {
                    return Err(KeyError::TooShort { actual: material.len() });
                }
                Prepared::Hs256(hmac::Key::new(hmac::HMAC_SHA256, &material))
            }
            SigningAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(&material).map_err(|_| corrupt())?;
                let public = public(&ED25519, pair.public_key().as_ref())?;
                Prepared::EdDsa { pair, public }
            }
            SigningAlgorithm::Es256 => {
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &material).map_err(|_| corrupt())?;
                let public = public(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())?;
                Prepared::Es256 { pair, public }
            }
            SigningAlgorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(&material).map_err(|_| corrupt())?;
                let public = public(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref())?;
                Prepared::Rs256 {
                    pair: Box::new(pair),
                    public,
                }
            }
        };
        Ok(Self {
            kid,
            material: material.into(),
            prepared,
            legacy_type_allowed: false,
        })
    }

    /// Accept tokens typed `JWT` with this key, besides `at+jwt`: only for
    /// HS256 keys from before explicit typing (configured secrets, and the
    /// key an older version kept in the database), whose `JWT` tokens are
    /// ours. Any other key requires `at+jwt`.
    pub fn allow_legacy_type(mut self) -> Self {
        self.legacy_type_allowed = self.algorithm() == SigningAlgorithm::Hs256;
        self
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.prepared {
            Prepared::Hs256(_) => SigningAlgorithm::Hs256,
            Prepared::EdDsa { .. } => SigningAlgorithm::EdDsa,
            Prepared::Es256 { .. } => SigningAlgorithm::Es256,
            Prepared::Rs256 { .. } => SigningAlgorithm::Rs256,
        }
    }

    /// The secret or private key, to be sealed before it is stored.
    pub fn material(&self) -> &[u8] {
        self.material.expose_secret()
    }

    pub fn legacy_type_allowed(&self) -> bool {
        self.legacy_type_allowed
    }

    /// Signs `message` (a JWS signing input); the signature as JWS wants it.
    pub(super) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = || KeyError::Signing(self.algorithm());
        match &self.prepared {
            Prepared::Hs256(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            Prepared::EdDsa { pair, .. } => Ok(pair.sign(message).as_ref().to_vec()),
            Prepared::Es256 { pair, .. } => {
                Ok(pair.sign(&SystemRandom::new(), message).map_err(|_| failed())?.as_ref().to_vec())
            }
            Prepared::Rs256 { pair, .. } => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature).map_err(|_| failed())?;
                Ok(signature)
            }
        }
    }

    /// Checks a signature made by this key over `message`.
    pub(super) fn check(&self, message: &[u8], signature: &[u8]) -> Result<(), TokenRejection> {
        let verified = match &self.prepared {
            Prepared::Hs256(key) => hmac::verify(key, message, signature).is_ok(),
            Prepared::EdDsa { public, .. } | Prepared::Es256 { public, .. } | Prepared::Rs256 { public, .. } => {
                public.verify_sig(message, signature).is_ok()
            }
        };
        verified.then_some(()).ok_or(TokenRejection::BadSignature)
    }

    /// The public key as a JWK (RFC 7517) with `kid`, `alg` and `use`;
    /// `None` for an HS256 secret, which is never published.
    pub fn public_jwk(&self) -> Option<Jwk> {
        let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (key_algorithm, algorithm) = match &self.prepared {
            Prepared::Hs256(_) => return None,
            Prepared::EdDsa { pair, .. } => (
                KeyAlgorithm::EdDSA,
                AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: encode(pair.public_key().as_ref()),
                }),
            ),
            Prepared::Es256 { pair, .. } => {
                // An uncompressed point: 0x04 || x || y, 32 bytes each.
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..)?.split_at_checked(32)?;
                (
                    KeyAlgorithm::ES256,
                    AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                        key_type: EllipticCurveKeyType::EC,
                        curve: EllipticCurve::P256,
                        x: encode(x),
                        y: encode(y),
                    }),
                )
            }
            Prepared::Rs256 { pair, .. } => {
                let public = pair.public_key();
                let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(public);
                (
                    KeyAlgorithm::RS256,
                    AlgorithmParameters::RSA(RSAKeyParameters {
                        key_type: RSAKeyType::RSA,
                        n: encode(&components.n),
                        e: encode(&components.e),
                    }),
                )
            }
        };
        Some(Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(key_algorithm),
                key_id: Some(self.kid.clone()),
                ..CommonParameters::default()
            },
            algorithm,
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

fn random_bytes(count: usize) -> Result<Vec<u8>, KeyError> {
    let mut bytes = vec![0u8; count];
    getrandom::fill(&mut bytes).map_err(|error| KeyError::Random(error.to_string()))?;
    Ok(bytes)
}

/// 128 random bits, base64url: nothing about the key can be learnt or
/// guessed from it.
fn random_kid() -> Result<String, KeyError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(KID_BYTES)?))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes (got {actual})")]
    TooShort { actual: usize },
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("could not generate an {0} key")]
    Generation(SigningAlgorithm),
    #[error("key {kid} is not a usable {algorithm} key")]
    Unusable { kid: String, algorithm: SigningAlgorithm },
    #[error("could not sign a token with {0}")]
    Signing(SigningAlgorithm),
    #[error("could not encode a token: {0}")]
    Encoding(String),
    #[error("no key signs at this time")]
    NoSigningKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(SigningKey::hs256(vec![0; 31]), Err(KeyError::TooShort { actual: 31 })));
    }

    #[test]
    fn a_configured_secrets_id_is_stable_and_not_the_secret() {
        let a = SigningKey::hs256(vec![9; 32]).unwrap();
        let b = SigningKey::hs256(vec![9; 32]).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert!(!format!("{a:?}").contains("material"));
    }

    #[test]
    fn generated_keys_have_random_ids_and_survive_storage() {
        for algorithm in SigningAlgorithm::ALL {
            let key = SigningKey::generate(algorithm).unwrap();
            let other = SigningKey::generate(algorithm).unwrap();
            assert_ne!(key.kid(), other.kid(), "{algorithm}");
            assert_eq!(key.kid().len(), 22, "128 bits, base64url");
            let stored = SigningKey::from_material(key.kid().into(), algorithm, key.material().to_vec()).unwrap();
            let signature = key.sign(b"message").unwrap();
            assert_eq!(stored.check(b"message", &signature), Ok(()), "{algorithm}");
            assert_eq!(stored.check(b"messagf", &signature), Err(TokenRejection::BadSignature), "{algorithm}");
            assert!(!key.legacy_type_allowed(), "only keys from before explicit typing accept JWT");
        }
    }

    #[test]
    fn material_of_another_algorithm_is_refused() {
        let ed25519 = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::Rs256] {
            let read = SigningKey::from_material("kid".into(), algorithm, ed25519.material().to_vec());
            assert!(matches!(read, Err(KeyError::Unusable { .. })), "{algorithm}");
        }
    }

    #[test]
    fn public_jwks_carry_kid_alg_and_use_and_never_a_secret() {
        assert!(SigningKey::hs256(vec![1; 32]).unwrap().public_jwk().is_none());
        for (algorithm, kty) in [
            (SigningAlgorithm::EdDsa, "OKP"),
            (SigningAlgorithm::Es256, "EC"),
            (SigningAlgorithm::Rs256, "RSA"),
        ] {
            let key = SigningKey::generate(algorithm).unwrap();
            let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
            assert_eq!(jwk["kty"], kty);
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(jwk["alg"], algorithm.as_str());
            assert_eq!(jwk["use"], "sig");
            assert!(jwk.get("d").is_none(), "no private part");
        }
    }

    #[test]
    fn the_legacy_type_is_only_ever_allowed_for_hs256() {
        let ed25519 = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap().allow_legacy_type();
        assert!(!ed25519.legacy_type_allowed());
        let hs256 = SigningKey::generate(SigningAlgorithm::Hs256).unwrap().allow_legacy_type();
        assert!(hs256.legacy_type_allowed());
    }
}
