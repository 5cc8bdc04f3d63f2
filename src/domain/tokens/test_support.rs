//! What the token tests share: a policy, a keyring, claims, and tokens
//! signed from raw JSON, as a buggy issuer or anyone holding a key could
//! produce them.

use std::time::Duration;

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

pub(super) fn header(keyring: &Keyring, alg: &str) -> serde_json::Value {
    serde_json::json!({"alg": alg, "typ": "JWT", "kid": keyring.signing_kid()})
}
