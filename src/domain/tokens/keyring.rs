//! The keyring: the keys a server signs and verifies with, at one moment of
//! the key set. It signs with the key that signs at the time it is given,
//! and verifies with any key it holds. A token names its key by `kid`; it is
//! accepted only with exactly that key's algorithm (never `none`, never
//! another family: an HS256 header on an Ed25519 `kid` is refused before any
//! key material is touched), checked by that key's own verifier, and only
//! with the access-token type (`typ: at+jwt`, RFC 9068 §2.1).
//!
//! A keyring never changes; a new key set is a new keyring (the
//! authority's `KeyStore` swaps them).

use std::{collections::HashMap, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use serde::Serialize;

use super::{
    claims::{TokenClaims, TokenPolicy, TokenRejection, WireClaims},
    codec::{self, ExpiryCheck, ValidityWindow},
    keys::{KeyError, SigningAlgorithm, SigningKey},
    schedule::{KeySchedule, KeyState},
};
use crate::domain::{AccessToken, Timestamp};

/// The `typ` of the tokens we sign: explicitly typed access tokens
/// (RFC 8725 §3.11, RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// What versions before explicit typing wrote in `typ`. Accepted only with
/// keys that allow it (HS256 keys from before: see
/// [`SigningKey::allow_legacy_type`]).
pub const LEGACY_TOKEN_TYPE: &str = "JWT";

/// The keys a server signs with and accepts.
pub struct Keyring {
    /// Keys that sign during a window of time, newest first.
    scheduled: Vec<Scheduled>,
    /// The key that signs when no scheduled key does (JWT_SECRET).
    fallback: Option<Arc<SigningKey>>,
    verifiers: HashMap<String, Arc<SigningKey>>,
    /// The published keys as a JWK set (RFC 7517), serialised once.
    jwks: Arc<str>,
    policy: TokenPolicy,
}

struct Scheduled {
    key: Arc<SigningKey>,
    generation: i64,
    schedule: KeySchedule,
}

/// The keys a keyring is made of.
#[derive(Default)]
pub struct KeyringKeys {
    /// Signs whenever no scheduled key is active (a configured secret).
    pub fallback: Option<SigningKey>,
    /// Verify only.
    pub verify_only: Vec<SigningKey>,
    /// Keys from the database with their rotation number and schedule; each
    /// signs while active, and verifies while published.
    pub scheduled: Vec<(SigningKey, i64, KeySchedule)>,
}

/// The header of the tokens we sign.
#[derive(Serialize)]
struct SignedHeader<'k> {
    alg: &'static str,
    typ: &'static str,
    kid: &'k str,
}

impl Keyring {
    /// A fixed set: `signing` always signs; `others` verify only.
    pub fn new(signing: SigningKey, others: Vec<SigningKey>, policy: TokenPolicy) -> Self {
        Self::assemble(
            KeyringKeys {
                fallback: Some(signing),
                verify_only: others,
                scheduled: vec![],
            },
            policy,
        )
    }

    pub fn assemble(keys: KeyringKeys, policy: TokenPolicy) -> Self {
        let mut scheduled: Vec<Scheduled> = keys
            .scheduled
            .into_iter()
            .map(|(key, generation, schedule)| Scheduled {
                key: Arc::new(key),
                generation,
                schedule,
            })
            .collect();
        scheduled.sort_by_key(|entry| std::cmp::Reverse(entry.generation));
        let fallback = keys.fallback.map(Arc::new);
        let verify_only: Vec<Arc<SigningKey>> = keys.verify_only.into_iter().map(Arc::new).collect();
        let all: Vec<Arc<SigningKey>> = scheduled
            .iter()
            .map(|entry| entry.key.clone())
            .chain(fallback.iter().cloned())
            .chain(verify_only)
            .collect();
        let jwks = JwkSet {
            keys: all.iter().filter_map(|key| key.public_jwk()).collect(),
        };
        // A set of plain strings always serialises.
        let jwks = serde_json::to_string(&jwks).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned());
        Self {
            verifiers: all.into_iter().map(|key| (key.kid().to_owned(), key)).collect(),
            scheduled,
            fallback,
            jwks: Arc::from(jwks),
            policy,
        }
    }

    /// The key that signs at `now`: the newest scheduled key active then,
    /// else the fallback.
    fn signer(&self, now: Timestamp) -> Result<&SigningKey, KeyError> {
        self.scheduled
            .iter()
            // Retention does not matter for telling active from the rest.
            .find(|entry| entry.schedule.state(now, std::time::Duration::ZERO) == KeyState::Active)
            .map(|entry| &*entry.key)
            .or(self.fallback.as_deref())
            .ok_or(KeyError::NoSigningKey)
    }

    /// The `kid` of the key that signs at `now`.
    pub fn signing_kid(&self, now: Timestamp) -> Option<&str> {
        self.signer(now).ok().map(SigningKey::kid)
    }

    /// Every key id it verifies with.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.keys().map(String::as_str)
    }

    /// The published keys (every public key it holds) as a JWK set, RFC 7517 JSON.
    pub fn jwks(&self) -> &Arc<str> {
        &self.jwks
    }

    /// The algorithms of the published keys, for discovery.
    pub fn published_algorithms(&self) -> Vec<SigningAlgorithm> {
        let mut algorithms: Vec<SigningAlgorithm> = self
            .verifiers
            .values()
            .map(|key| key.algorithm())
            .filter(|algorithm| algorithm.is_asymmetric())
            .collect();
        algorithms.sort_by_key(|algorithm| algorithm.as_str());
        algorithms.dedup();
        algorithms
    }

    /// Signs with the key that signs at `now`, typed `at+jwt`.
    pub fn sign(&self, claims: &TokenClaims, now: Timestamp) -> Result<AccessToken, KeyError> {
        let key = self.signer(now)?;
        let header = SignedHeader {
            alg: key.algorithm().as_str(),
            typ: ACCESS_TOKEN_TYPE,
            kid: key.kid(),
        };
        let header = encode_part(&header)?;
        let claims = encode_part(&WireClaims::issued(claims, &self.policy))?;
        let signing_input = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes())?);
        Ok(AccessToken::issued(format!("{signing_input}.{signature}")))
    }

    /// Checks signature, algorithm, type, `exp`, `nbf`, `iss` and `aud`, the
    /// times against `now` (passed in, so that the caller's clock decides).
    pub fn verify(&self, token: &AccessToken, now: Timestamp) -> Result<TokenClaims, TokenRejection> {
        self.decode(token, now, ExpiryCheck::Enforced).map(|(claims, _)| claims)
    }

    /// Like [`Keyring::verify`], and tells when the token may be used, so
    /// that whoever remembers the verification can check that again with
    /// [`Keyring::check_window`].
    pub fn verify_with_window(
        &self,
        token: &AccessToken,
        now: Timestamp,
    ) -> Result<(TokenClaims, ValidityWindow), TokenRejection> {
        self.decode(token, now, ExpiryCheck::Enforced)
    }

    /// Whether a token verified earlier may be used at `now`: the same rules
    /// and leeway as [`Keyring::verify`] applies to `exp` and `nbf`.
    pub fn check_window(&self, window: ValidityWindow, now: Timestamp) -> Result<(), TokenRejection> {
        window.check(&self.policy, now, ExpiryCheck::Enforced)
    }

    /// Like [`Keyring::verify`] but accepts an expired token: proof enough of
    /// who is asking to end their own session.
    pub fn verify_ignoring_expiry(&self, token: &AccessToken, now: Timestamp) -> Result<TokenClaims, TokenRejection> {
        self.decode(token, now, ExpiryCheck::Skipped).map(|(claims, _)| claims)
    }

    fn decode(
        &self,
        token: &AccessToken,
        now: Timestamp,
        expiry: ExpiryCheck,
    ) -> Result<(TokenClaims, ValidityWindow), TokenRejection> {
        let payload = self.signed_payload(token)?;
        codec::read_claims(payload, &self.policy, now, expiry)
    }

    /// The payload of a token whose header names one of our keys with that
    /// key's algorithm, whose signature that key verifies, and whose type
    /// that key accepts; nothing in the payload has been read yet.
    pub(super) fn signed_payload<'t>(&self, token: &'t AccessToken) -> Result<&'t str, TokenRejection> {
        let parts = codec::split(token.expose())?;
        let header = codec::read_header(parts.header)?;
        // An unknown key id, or another algorithm than the key's, cannot be ours.
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifiers.get(kid))
            .filter(|key| key.algorithm().as_str() == header.alg)
            .ok_or(TokenRejection::BadSignature)?;
        let signature = codec::read_signature(parts.signature)?;
        key.check(parts.signing_input.as_bytes(), &signature)?;
        if !type_accepted(header.typ.as_deref(), key) {
            return Err(TokenRejection::WrongType);
        }
        Ok(parts.payload)
    }
}

/// `at+jwt` (or its full media type, `application/at+jwt`), compared as
/// media types are, without regard to case (RFC 7515 §4.1.9); `JWT` only
/// where the key allows the legacy type.
fn type_accepted(typ: Option<&str>, key: &SigningKey) -> bool {
    let Some(typ) = typ else { return false };
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
        || (key.legacy_type_allowed() && typ.eq_ignore_ascii_case(LEGACY_TOKEN_TYPE))
}

/// A header or claims part: JSON, base64url without padding.
fn encode_part(value: &impl Serialize) -> Result<String, KeyError> {
    let json = serde_json::to_vec(value).map_err(|error| KeyError::Encoding(error.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;
    use crate::domain::tokens::test_support::{
        SECRET, claims, fixed_now, header, keyring, policy, raw_claims, sign_raw,
    };

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn round_trip_keeps_every_claim_with_every_algorithm() {
        for algorithm in SigningAlgorithm::ALL {
            let keyring = Keyring::new(SigningKey::generate(algorithm).unwrap(), vec![], policy());
            let claims = claims(fixed_now(), Duration::from_secs(60));
            let token = keyring.sign(&claims, fixed_now()).unwrap();
            assert_eq!(keyring.verify(&token, fixed_now()).unwrap(), claims, "{algorithm}");
        }
    }

    #[test]
    fn tokens_are_typed_and_name_their_key_and_algorithm() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let kid = key.kid().to_owned();
        let keyring = Keyring::new(key, vec![], policy());
        let token = keyring.sign(&claims(fixed_now(), Duration::from_secs(60)), fixed_now()).unwrap();
        let header = token.expose().split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}));
    }

    #[test]
    fn signing_is_deterministic_so_a_retry_gets_the_same_token() {
        for algorithm in [
            SigningAlgorithm::Hs256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let keyring = Keyring::new(SigningKey::generate(algorithm).unwrap(), vec![], policy());
            let claims = claims(fixed_now(), Duration::from_secs(60));
            assert_eq!(keyring.sign(&claims, fixed_now()).unwrap(), keyring.sign(&claims, fixed_now()).unwrap());
        }
    }

    #[test]
    fn another_keys_tokens_are_rejected() {
        let token = keyring().sign(&claims(fixed_now(), Duration::from_secs(60)), fixed_now()).unwrap();
        let stranger = Keyring::new(SigningKey::hs256(vec![8; 32]).unwrap(), vec![], policy());
        assert_eq!(stranger.verify(&token, fixed_now()), Err(TokenRejection::BadSignature));
    }

    #[test]
    fn retired_keys_still_verify() {
        let old = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let material = old.material().to_vec();
        let token = Keyring::new(old, vec![], policy())
            .sign(&claims(fixed_now(), Duration::from_secs(60)), fixed_now())
            .unwrap();
        let kid = crate::domain::tokens::test_support::kid_of(&token);
        let old = SigningKey::from_material(kid, SigningAlgorithm::EdDsa, material).unwrap();
        let rotated = Keyring::new(SigningKey::generate(SigningAlgorithm::EdDsa).unwrap(), vec![old], policy());
        assert!(rotated.verify(&token, fixed_now()).is_ok());
    }

    #[test]
    fn the_signing_key_follows_the_schedule_and_the_fallback_fills_in() {
        let now = fixed_now();
        let schedule = |activates_at, retires_at| KeySchedule {
            published_at: now,
            activates_at,
            retires_at,
        };
        let first = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let second = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let (first_kid, second_kid) = (first.kid().to_owned(), second.kid().to_owned());
        let secret = SigningKey::hs256(SECRET.to_vec()).unwrap();
        let secret_kid = secret.kid().to_owned();
        let keyring = Keyring::assemble(
            KeyringKeys {
                fallback: Some(secret),
                verify_only: vec![],
                scheduled: vec![
                    (second, 2, schedule(now.plus(2 * HOUR), None)),
                    (first, 1, schedule(now.plus(HOUR), Some(now.plus(2 * HOUR)))),
                ],
            },
            policy(),
        );
        assert_eq!(keyring.signing_kid(now), Some(secret_kid.as_str()), "no scheduled key active yet");
        assert_eq!(keyring.signing_kid(now.plus(HOUR)), Some(first_kid.as_str()));
        assert_eq!(keyring.signing_kid(now.plus(2 * HOUR)), Some(second_kid.as_str()));
        // Every one of them verifies, whichever signs.
        for at in [now, now.plus(HOUR), now.plus(2 * HOUR)] {
            let token = keyring.sign(&claims(at, Duration::from_secs(60)), at).unwrap();
            assert!(keyring.verify(&token, at).is_ok());
        }
        let jwks: serde_json::Value = serde_json::from_str(keyring.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|jwk| jwk["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, [second_kid.as_str(), first_kid.as_str()], "newest first; the secret never");
    }

    #[test]
    fn without_a_signing_key_signing_fails_and_says_so() {
        let keyring = Keyring::assemble(KeyringKeys::default(), policy());
        let signed = keyring.sign(&claims(fixed_now(), Duration::from_secs(60)), fixed_now());
        assert!(matches!(signed, Err(KeyError::NoSigningKey)));
    }

    #[test]
    fn none_algorithm_and_other_algorithms_are_refused() {
        let keyring = keyring();
        let now = fixed_now().as_unix_seconds();
        let claims = raw_claims(now);
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header(&keyring, "none").to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert!(keyring.verify(&AccessToken::issued(unsigned), fixed_now()).is_err());

        let hs512 = sign_raw(header(&keyring, "HS512"), claims, &SECRET);
        assert_eq!(keyring.verify(&hs512, fixed_now()), Err(TokenRejection::BadSignature));
    }

    #[test]
    fn the_type_must_be_at_jwt_and_legacy_jwt_only_on_keys_from_before() {
        let now = fixed_now().as_unix_seconds();
        let configured = keyring();
        let generated = SigningKey::generate(SigningAlgorithm::Hs256).unwrap();
        let generated_secret = generated.material().to_vec();
        let generated = Keyring::new(generated, vec![], policy());
        for (keyring, secret, legacy_allowed) in [
            (&configured, SECRET.to_vec(), true),
            (&generated, generated_secret, false),
        ] {
            for (typ, accepted) in [
                (serde_json::json!("at+jwt"), true),
                (serde_json::json!("AT+JWT"), true),
                (serde_json::json!("application/at+jwt"), true),
                (serde_json::json!("JWT"), legacy_allowed),
                (serde_json::json!("jwt"), legacy_allowed),
                (serde_json::json!("id+jwt"), false),
                (serde_json::json!(""), false),
            ] {
                let mut typed = header(keyring, "HS256");
                typed["typ"] = typ.clone();
                let token = sign_raw(typed, raw_claims(now), &secret);
                let expected = if accepted {
                    Ok(())
                } else {
                    Err(TokenRejection::WrongType)
                };
                assert_eq!(keyring.verify(&token, fixed_now()).map(|_| ()), expected, "{typ}");
            }
            let mut untyped = header(keyring, "HS256");
            untyped.as_object_mut().unwrap().remove("typ");
            let token = sign_raw(untyped, raw_claims(now), &secret);
            assert_eq!(keyring.verify(&token, fixed_now()), Err(TokenRejection::WrongType));
        }
    }
}
