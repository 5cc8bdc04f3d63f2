//! Session tokens as JWTs: the claims, signing, and verification.
//!
//! Verification accepts exactly the algorithm of the key named by the token's
//! `kid` header (never `none`, never another family) and validates `exp`,
//! `nbf`, `iss` and `aud`; `exp` and `nbf` must be numbers. The keyring holds
//! several keys so that more algorithms and key rotation can be added without
//! touching callers.
//!
//! Signing goes through jsonwebtoken. Verification of HS256 is written here:
//! it sits on every Verify, and jsonwebtoken's `decode` spent 3.3 µs a token
//! there (a fifth of the server's CPU per Verify in the profile: the header
//! parsed twice, the claims parsed twice, the HMAC key rebuilt per call).
//! This path parses each part once against a precomputed HMAC key (about
//! 1 µs), and a test checks that it agrees with jsonwebtoken's `decode` on
//! valid, forged and malformed tokens alike.

use std::{collections::HashMap, fmt, time::Duration};

use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AccessToken, SessionId, Timestamp, TokenId, UserId};

/// HMAC keys shorter than the hash output weaken HS256 (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// What a token says about its holder, in domain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub token_id: TokenId,
    pub username: String,
    pub roles: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Why a token was not accepted. Each maps to one Verify reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("not a well-formed token")]
    Malformed,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token is meant for another audience")]
    WrongAudience,
}

/// The algorithms the keyring can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Hs256,
}

impl SigningAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
        }
    }

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

/// Who issues tokens and who they are for.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

struct VerificationKey {
    algorithm: SigningAlgorithm,
    hmac: hmac::Key,
}

/// The parts of a JOSE header that verification reads.
#[derive(Deserialize)]
struct WireHeader {
    alg: String,
    kid: Option<String>,
    /// Critical extensions: none is understood, so any is refused (RFC 7515 §4.1.11).
    crit: Option<serde::de::IgnoredAny>,
}

/// When a verified token may be used (`nbf` and `exp`, whole seconds since
/// the epoch): kept beside a remembered verification, which must be checked
/// against the clock again on every use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityWindow {
    not_before: i64,
    expires: i64,
}

/// The keys a server signs with and accepts.
pub struct Keyring {
    signing_kid: String,
    signing_algorithm: Algorithm,
    encoding: EncodingKey,
    verification: HashMap<String, VerificationKey>,
    policy: TokenPolicy,
}

/// The claims as they travel in the JWT.
#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    name: String,
    roles: Vec<String>,
}

impl Keyring {
    /// Signs with `signing`; accepts tokens signed by it or by any of `others`
    /// (keys being rotated out).
    pub fn new(signing: SigningKey, others: Vec<SigningKey>, policy: TokenPolicy) -> Self {
        let mut verification = HashMap::new();
        for key in others.iter().chain(std::iter::once(&signing)) {
            verification.insert(key.kid.clone(), verification_key(key));
        }
        Self {
            signing_kid: signing.kid.clone(),
            signing_algorithm: signing.algorithm.jwt(),
            encoding: EncodingKey::from_secret(signing.material()),
            verification,
            policy,
        }
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn sign(&self, claims: &TokenClaims) -> Result<AccessToken, KeyError> {
        let mut header = Header::new(self.signing_algorithm);
        header.kid = Some(self.signing_kid.clone());
        let issued_at = claims.issued_at.as_unix_seconds();
        let wire = WireClaims {
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
            sub: claims.user_id.to_string(),
            sid: claims.session_id.to_string(),
            jti: claims.token_id.to_string(),
            iat: issued_at,
            nbf: issued_at,
            exp: claims.expires_at.as_unix_seconds(),
            name: claims.username.clone(),
            roles: claims.roles.clone(),
        };
        jsonwebtoken::encode(&header, &wire, &self.encoding)
            .map(AccessToken::issued)
            .map_err(|error| KeyError::Signing(error.to_string()))
    }

    /// Checks signature, algorithm, `exp`, `nbf`, `iss` and `aud`.
    pub fn verify(&self, token: &AccessToken) -> Result<TokenClaims, TokenRejection> {
        self.decode(token, true).map(|(claims, _)| claims)
    }

    /// Like [`Keyring::verify`], and tells when the token may be used, so
    /// that whoever remembers the verification can check that again with
    /// [`Keyring::check_window`].
    pub fn verify_with_window(&self, token: &AccessToken) -> Result<(TokenClaims, ValidityWindow), TokenRejection> {
        self.decode(token, true)
    }

    /// Like [`Keyring::verify`] but accepts an expired token: proof enough of
    /// who is asking to end their own session.
    pub fn verify_ignoring_expiry(&self, token: &AccessToken) -> Result<TokenClaims, TokenRejection> {
        self.decode(token, false).map(|(claims, _)| claims)
    }

    /// Whether a token verified earlier may be used at `now`: the same rules
    /// and leeway as [`Keyring::verify`] applies to `exp` and `nbf`.
    pub fn check_window(&self, window: ValidityWindow, now: Timestamp) -> Result<(), TokenRejection> {
        self.check_times(window, now, true)
    }

    fn check_times(&self, window: ValidityWindow, now: Timestamp, check_expiry: bool) -> Result<(), TokenRejection> {
        let now = now.as_unix_seconds();
        let leeway = i64::try_from(self.policy.leeway.as_secs()).unwrap_or(i64::MAX);
        if check_expiry && window.expires < now.saturating_sub(leeway) {
            return Err(TokenRejection::Expired);
        }
        if window.not_before > now.saturating_add(leeway) {
            return Err(TokenRejection::NotYetValid);
        }
        Ok(())
    }

    fn decode(&self, token: &AccessToken, check_expiry: bool) -> Result<(TokenClaims, ValidityWindow), TokenRejection> {
        let (signed, signature) = token.expose().rsplit_once('.').ok_or(TokenRejection::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenRejection::Malformed)?;
        let header: WireHeader = from_base64_json(header)?;
        if header.crit.is_some() {
            return Err(TokenRejection::Malformed);
        }
        // An unknown key id, or another algorithm than the key's, cannot be ours.
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verification.get(kid))
            .filter(|key| key.algorithm.as_str() == header.alg)
            .ok_or(TokenRejection::BadSignature)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenRejection::Malformed)?;
        hmac::verify(&key.hmac, signed.as_bytes(), &signature).map_err(|_| TokenRejection::BadSignature)?;

        let wire: WireClaims = from_base64_json(payload)?;
        let window = ValidityWindow {
            not_before: wire.nbf,
            expires: wire.exp,
        };
        self.check_times(window, Timestamp::now(), check_expiry)?;
        if wire.iss != self.policy.issuer {
            return Err(TokenRejection::WrongIssuer);
        }
        if wire.aud != self.policy.audience {
            return Err(TokenRejection::WrongAudience);
        }
        Ok((claims_from_wire(wire)?, window))
    }
}

fn verification_key(key: &SigningKey) -> VerificationKey {
    VerificationKey {
        algorithm: key.algorithm,
        hmac: hmac::Key::new(hmac::HMAC_SHA256, key.material()),
    }
}

fn claims_from_wire(wire: WireClaims) -> Result<TokenClaims, TokenRejection> {
    let parse_uuid = |value: &str| Uuid::try_parse(value).map_err(|_| TokenRejection::Malformed);
    Ok(TokenClaims {
        user_id: UserId::from_uuid(parse_uuid(&wire.sub)?),
        session_id: SessionId::from_uuid(parse_uuid(&wire.sid)?),
        token_id: TokenId::from_uuid(parse_uuid(&wire.jti)?),
        username: wire.name,
        roles: wire.roles,
        issued_at: Timestamp::from_unix_seconds(wire.iat),
        expires_at: Timestamp::from_unix_seconds(wire.exp),
    })
}

/// A base64url (unpadded) part of a JWT holding JSON of type `T`. Types are
/// strict: `exp` sent as a string does not parse.
fn from_base64_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenRejection> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenRejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenRejection::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, errors::ErrorKind};

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "issuer".into(),
            audience: "audience".into(),
            leeway: Duration::ZERO,
        }
    }

    fn keyring() -> Keyring {
        Keyring::new(SigningKey::hs256(vec![7; 32]).unwrap(), vec![], policy())
    }

    fn claims(issued_at: Timestamp, lifetime: Duration) -> TokenClaims {
        TokenClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            token_id: TokenId::generate(),
            username: "alice".into(),
            roles: vec!["admin".into()],
            issued_at: issued_at.truncated_to_seconds(),
            expires_at: issued_at.truncated_to_seconds().plus(lifetime),
        }
    }

    /// Signs arbitrary JSON claims with the test key, as an attacker who knows
    /// nothing but the format (or a buggy issuer) could produce.
    fn sign_raw(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> AccessToken {
        use ::hmac::{Hmac, Mac};
        let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let message = format!("{}.{}", encode(&header), encode(&claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(message.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        AccessToken::issued(format!("{message}.{signature}"))
    }

    fn raw_claims(now: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": "issuer", "aud": "audience",
            "sub": Uuid::now_v7().to_string(), "sid": Uuid::now_v7().to_string(),
            "jti": Uuid::now_v7().to_string(),
            "iat": now, "nbf": now, "exp": now + 60, "name": "alice", "roles": [],
        })
    }

    fn header(keyring: &Keyring, alg: &str) -> serde_json::Value {
        serde_json::json!({"alg": alg, "typ": "JWT", "kid": keyring.signing_kid()})
    }

    #[test]
    fn round_trip_keeps_every_claim() {
        let keyring = keyring();
        let claims = claims(Timestamp::now(), Duration::from_secs(60));
        let token = keyring.sign(&claims).unwrap();
        assert_eq!(keyring.verify(&token).unwrap(), claims);
    }

    #[test]
    fn signing_is_deterministic_so_a_retry_gets_the_same_token() {
        let keyring = keyring();
        let claims = claims(Timestamp::now(), Duration::from_secs(60));
        assert_eq!(keyring.sign(&claims).unwrap(), keyring.sign(&claims).unwrap());
    }

    #[test]
    fn expired_and_not_yet_valid_are_told_apart() {
        let keyring = keyring();
        let past = keyring
            .sign(&claims(Timestamp::now().minus(Duration::from_secs(120)), Duration::from_secs(60)))
            .unwrap();
        assert_eq!(keyring.verify(&past), Err(TokenRejection::Expired));
        assert!(keyring.verify_ignoring_expiry(&past).is_ok());

        let future = keyring
            .sign(&claims(Timestamp::now().plus(Duration::from_secs(120)), Duration::from_secs(60)))
            .unwrap();
        assert_eq!(keyring.verify(&future), Err(TokenRejection::NotYetValid));
    }

    #[test]
    fn a_window_checked_later_follows_the_same_rules() {
        let lenient = Keyring::new(
            SigningKey::hs256(vec![7; 32]).unwrap(),
            vec![],
            TokenPolicy {
                leeway: Duration::from_secs(5),
                ..policy()
            },
        );
        let issued = Timestamp::now().truncated_to_seconds();
        let token = lenient.sign(&claims(issued, Duration::from_secs(60))).unwrap();
        let (claims, window) = lenient.verify_with_window(&token).unwrap();
        assert_eq!(Ok(claims), lenient.verify(&token));
        let at = |seconds: i64| Timestamp::from_unix_seconds(issued.as_unix_seconds() + seconds);
        assert_eq!(lenient.check_window(window, at(-5)), Ok(()), "nbf within the leeway");
        assert_eq!(lenient.check_window(window, at(-6)), Err(TokenRejection::NotYetValid));
        assert_eq!(lenient.check_window(window, at(65)), Ok(()), "exp within the leeway");
        assert_eq!(lenient.check_window(window, at(66)), Err(TokenRejection::Expired));
    }

    #[test]
    fn leeway_tolerates_a_little_clock_skew_and_no_more() {
        let lenient = Keyring::new(
            SigningKey::hs256(vec![7; 32]).unwrap(),
            vec![],
            TokenPolicy {
                leeway: Duration::from_secs(30),
                ..policy()
            },
        );
        let now = Timestamp::now();
        let just_expired = lenient.sign(&claims(now.minus(Duration::from_secs(70)), Duration::from_secs(60))).unwrap();
        assert!(lenient.verify(&just_expired).is_ok(), "10 s past exp, within 30 s of leeway");
        let long_expired = lenient.sign(&claims(now.minus(Duration::from_secs(120)), Duration::from_secs(60))).unwrap();
        assert_eq!(lenient.verify(&long_expired), Err(TokenRejection::Expired));
        let early = lenient.sign(&claims(now.plus(Duration::from_secs(10)), Duration::from_secs(60))).unwrap();
        assert!(lenient.verify(&early).is_ok(), "nbf 10 s ahead, within the leeway");
    }

    #[test]
    fn other_key_issuer_and_audience_are_rejected() {
        let token = keyring().sign(&claims(Timestamp::now(), Duration::from_secs(60))).unwrap();
        let stranger = Keyring::new(SigningKey::hs256(vec![8; 32]).unwrap(), vec![], policy());
        assert_eq!(stranger.verify(&token), Err(TokenRejection::BadSignature));

        let same_key = |policy: TokenPolicy| Keyring::new(SigningKey::hs256(vec![7; 32]).unwrap(), vec![], policy);
        let other_issuer = same_key(TokenPolicy {
            issuer: "other".into(),
            ..policy()
        });
        assert_eq!(other_issuer.verify(&token), Err(TokenRejection::WrongIssuer));
        let other_audience = same_key(TokenPolicy {
            audience: "other".into(),
            ..policy()
        });
        assert_eq!(other_audience.verify(&token), Err(TokenRejection::WrongAudience));
    }

    #[test]
    fn retired_keys_still_verify() {
        let old = SigningKey::hs256(vec![1; 32]).unwrap();
        let token = Keyring::new(SigningKey::hs256(vec![1; 32]).unwrap(), vec![], policy())
            .sign(&claims(Timestamp::now(), Duration::from_secs(60)))
            .unwrap();
        let rotated = Keyring::new(SigningKey::hs256(vec![2; 32]).unwrap(), vec![old], policy());
        assert!(rotated.verify(&token).is_ok());
    }

    #[test]
    fn none_algorithm_and_other_algorithms_are_refused() {
        let keyring = keyring();
        let now = Timestamp::now().as_unix_seconds();
        let claims = raw_claims(now);
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header(&keyring, "none").to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        assert!(keyring.verify(&AccessToken::issued(unsigned)).is_err());

        let hs512 = sign_raw(header(&keyring, "HS512"), claims, &[7; 32]);
        assert_eq!(keyring.verify(&hs512), Err(TokenRejection::BadSignature));
    }

    #[test]
    fn time_claims_as_strings_are_refused() {
        let keyring = keyring();
        let now = Timestamp::now().as_unix_seconds();
        for claim in ["exp", "nbf"] {
            let mut claims = raw_claims(now);
            claims[claim] = serde_json::Value::String((now + 60).to_string());
            let token = sign_raw(header(&keyring, "HS256"), claims, &[7; 32]);
            assert_eq!(keyring.verify(&token), Err(TokenRejection::Malformed), "{claim}");
        }
    }

    #[test]
    fn missing_claims_and_garbage_are_malformed() {
        let keyring = keyring();
        let mut claims = raw_claims(Timestamp::now().as_unix_seconds());
        claims.as_object_mut().unwrap().remove("nbf");
        let token = sign_raw(header(&keyring, "HS256"), claims, &[7; 32]);
        assert_eq!(keyring.verify(&token), Err(TokenRejection::Malformed));
        for garbage in ["x", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30"] {
            assert!(keyring.verify(&AccessToken::issued(garbage.into())).is_err(), "{garbage}");
        }
    }

    /// jsonwebtoken's own `decode`, set up as strictly as the fast path: the
    /// reference it must agree with.
    fn reference(token: &AccessToken, check_expiry: bool) -> Result<TokenClaims, TokenRejection> {
        let secret = [7u8; 32];
        let kid = SigningKey::hs256(secret.to_vec()).unwrap().kid;
        let header = jsonwebtoken::decode_header(token.expose()).map_err(|error| rejection(error.kind()))?;
        if header.kid.as_deref() != Some(kid.as_str()) {
            return Err(TokenRejection::BadSignature);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = check_expiry;
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.set_issuer(&["issuer"]);
        validation.set_audience(&["audience"]);
        let wire = jsonwebtoken::decode::<WireClaims>(token.expose(), &DecodingKey::from_secret(&secret), &validation)
            .map_err(|error| rejection(error.kind()))?
            .claims;
        claims_from_wire(wire)
    }

    fn rejection(kind: &ErrorKind) -> TokenRejection {
        match kind {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => TokenRejection::BadSignature,
            ErrorKind::ExpiredSignature => TokenRejection::Expired,
            ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
            ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
            ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
            _ => TokenRejection::Malformed,
        }
    }

    /// Both say "not a token of ours" (they name a bad header differently).
    fn same_verdict(ours: &Result<TokenClaims, TokenRejection>, theirs: &Result<TokenClaims, TokenRejection>) -> bool {
        use TokenRejection::{BadSignature, Malformed};
        match (ours, theirs) {
            (Err(BadSignature | Malformed), Err(BadSignature | Malformed)) => true,
            _ => ours == theirs,
        }
    }

    #[test]
    fn agrees_with_jsonwebtoken_on_crafted_tokens() {
        let keyring = keyring();
        let now = Timestamp::now().as_unix_seconds();
        let header = header(&keyring, "HS256");
        let mut cases = vec![keyring.sign(&claims(Timestamp::now(), Duration::from_secs(60))).unwrap()];
        let changes = [
            serde_json::json!({"exp": now - 10}),
            serde_json::json!({"nbf": now + 3600}),
            serde_json::json!({"iss": "other"}),
            serde_json::json!({"aud": "other"}),
            serde_json::json!({"aud": ["audience"]}),
            serde_json::json!({"exp": (now + 60).to_string()}),
            serde_json::json!({"nbf": now.to_string()}),
            serde_json::json!({"exp": 1.5e12}),
            serde_json::json!({"sub": "not-a-uuid"}),
            serde_json::json!({"roles": "admin"}),
            serde_json::json!({"iat": null}),
        ];
        for change in changes {
            let mut claims = raw_claims(now);
            for (name, value) in change.as_object().unwrap() {
                claims[name] = value.clone();
            }
            cases.push(sign_raw(header.clone(), claims, &[7; 32]));
        }
        let mut missing = raw_claims(now);
        missing.as_object_mut().unwrap().remove("iss");
        cases.push(sign_raw(header.clone(), missing, &[7; 32]));
        cases.push(sign_raw(header.clone(), raw_claims(now), &[8; 32]));
        cases.push(sign_raw(serde_json::json!({"alg": "HS256"}), raw_claims(now), &[7; 32]));
        for token in &cases {
            for check_expiry in [true, false] {
                let ours = keyring.decode(token, check_expiry).map(|(claims, _)| claims);
                let theirs = reference(token, check_expiry);
                assert_eq!(ours, theirs, "{:?}", claims_of_token(token));
            }
        }
    }

    #[test]
    fn agrees_with_jsonwebtoken_on_thousands_of_mutations() {
        let keyring = keyring();
        let valid = keyring.sign(&claims(Timestamp::now(), Duration::from_secs(60))).unwrap();
        let bytes = valid.expose().as_bytes().to_vec();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut mutated = bytes.clone();
            for _ in 0..=(next() % 3) {
                let position = (next() as usize) % mutated.len();
                match next() % 3 {
                    0 => mutated[position] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        mutated.remove(position);
                    }
                    _ => mutated.insert(position, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let token = AccessToken::issued(String::from_utf8(mutated).unwrap());
            let (ours, theirs) = (keyring.verify(&token), reference(&token, true));
            assert!(same_verdict(&ours, &theirs), "{ours:?} vs {theirs:?} for {}", token.expose());
        }
    }

    fn claims_of_token(token: &AccessToken) -> String {
        token
            .expose()
            .split('.')
            .nth(1)
            .map(|part| String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let keyring = keyring();
        let mut with_crit = header(&keyring, "HS256");
        with_crit["crit"] = serde_json::json!(["exp"]);
        let token = sign_raw(with_crit, raw_claims(Timestamp::now().as_unix_seconds()), &[7; 32]);
        assert_eq!(keyring.verify(&token), Err(TokenRejection::Malformed));
    }

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
