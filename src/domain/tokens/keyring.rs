//! The keyring: signs with one key, verifies with any key it holds. A token
//! names its key by `kid`; it is accepted only with exactly that key's
//! algorithm (never `none`, never another family), checked by that key's
//! own verifier.

use std::collections::HashMap;

use aws_lc_rs::hmac;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::{
    claims::{TokenClaims, TokenPolicy, TokenRejection, WireClaims},
    codec::{self, ExpiryCheck, ValidityWindow},
    keys::{KeyError, SigningAlgorithm, SigningKey},
};
use crate::domain::{AccessToken, Timestamp};

/// The keys a server signs with and accepts.
pub struct Keyring {
    signing_kid: String,
    signing_algorithm: Algorithm,
    encoding: EncodingKey,
    verifiers: HashMap<String, Verifier>,
    policy: TokenPolicy,
}

/// One key's signature check, prepared once when the keyring is built. Each
/// algorithm is a variant, so adding one touches this enum and no caller.
enum Verifier {
    /// Built here rather than per call: rebuilding it was a third of
    /// jsonwebtoken's cost per token.
    Hs256(hmac::Key),
}

impl Verifier {
    fn for_key(key: &SigningKey) -> Self {
        match key.algorithm() {
            SigningAlgorithm::Hs256 => Self::Hs256(hmac::Key::new(hmac::HMAC_SHA256, key.material())),
        }
    }

    fn algorithm(&self) -> SigningAlgorithm {
        match self {
            Self::Hs256(_) => SigningAlgorithm::Hs256,
        }
    }

    fn check(&self, signing_input: &[u8], signature: &[u8]) -> Result<(), TokenRejection> {
        match self {
            Self::Hs256(key) => hmac::verify(key, signing_input, signature).map_err(|_| TokenRejection::BadSignature),
        }
    }
}

impl Keyring {
    /// Signs with `signing`; accepts tokens signed by it or by any of `others`
    /// (keys being rotated out).
    pub fn new(signing: SigningKey, others: Vec<SigningKey>, policy: TokenPolicy) -> Self {
        let verifiers = others
            .iter()
            .chain(std::iter::once(&signing))
            .map(|key| (key.kid().to_owned(), Verifier::for_key(key)))
            .collect();
        Self {
            signing_kid: signing.kid().to_owned(),
            signing_algorithm: signing.algorithm().jwt(),
            encoding: EncodingKey::from_secret(signing.material()),
            verifiers,
            policy,
        }
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn sign(&self, claims: &TokenClaims) -> Result<AccessToken, KeyError> {
        let mut header = Header::new(self.signing_algorithm);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &WireClaims::issued(claims, &self.policy), &self.encoding)
            .map(AccessToken::issued)
            .map_err(|error| KeyError::Signing(error.to_string()))
    }

    /// Checks signature, algorithm, `exp`, `nbf`, `iss` and `aud`, the times
    /// against `now` (passed in, so that the caller's clock decides).
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
    /// key's algorithm, and whose signature that key verifies; nothing in the
    /// payload has been read yet.
    pub(super) fn signed_payload<'t>(&self, token: &'t AccessToken) -> Result<&'t str, TokenRejection> {
        let parts = codec::split(token.expose())?;
        let header = codec::read_header(parts.header)?;
        // An unknown key id, or another algorithm than the key's, cannot be ours.
        let verifier = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifiers.get(kid))
            .filter(|verifier| verifier.algorithm().as_str() == header.alg)
            .ok_or(TokenRejection::BadSignature)?;
        let signature = codec::read_signature(parts.signature)?;
        verifier.check(parts.signing_input.as_bytes(), &signature)?;
        Ok(parts.payload)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;
    use crate::domain::tokens::test_support::{
        SECRET, claims, fixed_now, header, keyring, policy, raw_claims, sign_raw,
    };

    #[test]
    fn round_trip_keeps_every_claim() {
        let keyring = keyring();
        let claims = claims(fixed_now(), Duration::from_secs(60));
        let token = keyring.sign(&claims).unwrap();
        assert_eq!(keyring.verify(&token, fixed_now()).unwrap(), claims);
    }

    #[test]
    fn signing_is_deterministic_so_a_retry_gets_the_same_token() {
        let keyring = keyring();
        let claims = claims(fixed_now(), Duration::from_secs(60));
        assert_eq!(keyring.sign(&claims).unwrap(), keyring.sign(&claims).unwrap());
    }

    #[test]
    fn another_keys_tokens_are_rejected() {
        let token = keyring().sign(&claims(fixed_now(), Duration::from_secs(60))).unwrap();
        let stranger = Keyring::new(SigningKey::hs256(vec![8; 32]).unwrap(), vec![], policy());
        assert_eq!(stranger.verify(&token, fixed_now()), Err(TokenRejection::BadSignature));
    }

    #[test]
    fn retired_keys_still_verify() {
        let old = SigningKey::hs256(vec![1; 32]).unwrap();
        let token = Keyring::new(SigningKey::hs256(vec![1; 32]).unwrap(), vec![], policy())
            .sign(&claims(fixed_now(), Duration::from_secs(60)))
            .unwrap();
        let rotated = Keyring::new(SigningKey::hs256(vec![2; 32]).unwrap(), vec![old], policy());
        assert!(rotated.verify(&token, fixed_now()).is_ok());
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
}
