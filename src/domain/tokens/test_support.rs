//! What the token tests share: a policy, a keyring, claims, and tokens
//! signed from raw JSON, as a buggy issuer or anyone holding a key could
//! produce them.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::{Keyring, SigningKey, TokenClaims, TokenPolicy};
use crate::domain::{AccessToken, SessionId, Timestamp, TokenId, UserId};

/// The secret of [`keyring`]'s signing key.
pub(super) const SECRET: [u8; 32] = [7; 32];

/// The instant the domain tests run at: verification takes the time as an
/// argument, so no test depends on the wall clock unless jsonwebtoken does.
pub(super) fn fixed_now() -> Timestamp {
    Timestamp::from_unix_seconds(1_750_000_000)
}

pub(super) fn policy() -> TokenPolicy {
    TokenPolicy {
        issuer: "issuer".into(),
        audience: "audience".into(),
        leeway: Duration::ZERO,
    }
}

pub(super) fn keyring() -> Keyring {
    Keyring::new(SigningKey::hs256(SECRET.to_vec()).unwrap(), vec![], policy())
}

pub(super) fn claims(issued_at: Timestamp, lifetime: Duration) -> TokenClaims {
    TokenClaims {
        user_id: UserId::generate(),
        session_id: SessionId::generate(),
        token_id: TokenId::generate(),
        username: "alice".into(),
        roles: vec!["admin".into()],
        issued_at: issued_at.truncated_to_seconds(),
        expires_at: issued_at.truncated_to_seconds().plus(lifetime),
        generation: 0,
    }
}

pub(super) use super::reference::sign_text;

/// Signs arbitrary JSON claims, as an attacker who knows nothing but the
/// format (or a buggy issuer) could produce.
pub(super) fn sign_raw(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> AccessToken {
    sign_text(&header.to_string(), &claims.to_string(), secret)
}

/// Valid claims for [`policy`], issued at `now` (Unix seconds) for a minute.
pub(super) fn raw_claims(now: i64) -> serde_json::Value {
    serde_json::json!({
        "iss": "issuer", "aud": "audience",
        "sub": Uuid::now_v7().to_string(), "sid": Uuid::now_v7().to_string(),
        "jti": Uuid::now_v7().to_string(),
        "iat": now, "nbf": now, "exp": now + 60, "name": "alice", "roles": [],
    })
}

/// A header naming the keyring's signing key, typed as we type tokens.
pub(super) fn header(keyring: &Keyring, alg: &str) -> serde_json::Value {
    serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": keyring.signing_kid(fixed_now())})
}

/// Signs the given header and claims text with `key`'s own algorithm,
/// whatever the header says.
pub(super) fn sign_text_with(header: &str, claims: &str, key: &SigningKey) -> AccessToken {
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(message.as_bytes()).unwrap());
    AccessToken::issued(format!("{message}.{signature}"))
}

/// The `kid` in a token's header.
pub(super) fn kid_of(token: &AccessToken) -> String {
    let header = token.expose().split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}
