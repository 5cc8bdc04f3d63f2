//! What a token says: its claims in domain types and as they travel, the
//! policy they are checked against, and why a token can be refused.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{SessionId, Timestamp, TokenId, UserId};

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
    /// The session's generation when this token was issued (`gen`): 0 at
    /// login, one more per rotation. Tokens issued before it existed read 0.
    pub generation: u64,
}

/// Who issues tokens and who they are for.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
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
    /// Signed by one of our keys, but not typed as an access token
    /// (`typ: at+jwt`): another kind of JWT must never pass for one.
    #[error("token is not typed as an access token (typ at+jwt)")]
    WrongType,
}

/// The claims as they travel in the JWT. Field types are the strictness:
/// `exp` sent as a string, or `aud` as an array, does not parse.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireClaims {
    pub(super) iss: String,
    pub(super) aud: String,
    pub(super) sub: String,
    pub(super) sid: String,
    pub(super) jti: String,
    pub(super) iat: i64,
    pub(super) nbf: i64,
    pub(super) exp: i64,
    pub(super) name: String,
    pub(super) roles: Vec<String>,
    /// Absent in tokens issued before generations existed.
    #[serde(default, rename = "gen")]
    pub(super) generation: u64,
}

impl WireClaims {
    /// The claims of a token about to be signed under `policy`; it is valid
    /// from the moment it is issued.
    pub(super) fn issued(claims: &TokenClaims, policy: &TokenPolicy) -> Self {
        let issued_at = claims.issued_at.as_unix_seconds();
        Self {
            iss: policy.issuer.clone(),
            aud: policy.audience.clone(),
            sub: claims.user_id.to_string(),
            sid: claims.session_id.to_string(),
            jti: claims.token_id.to_string(),
            iat: issued_at,
            nbf: issued_at,
            exp: claims.expires_at.as_unix_seconds(),
            name: claims.username.clone(),
            roles: claims.roles.clone(),
            generation: claims.generation,
        }
    }
}

impl TryFrom<WireClaims> for TokenClaims {
    type Error = TokenRejection;

    fn try_from(wire: WireClaims) -> Result<Self, Self::Error> {
        let parse_uuid = |value: &str| Uuid::try_parse(value).map_err(|_| TokenRejection::Malformed);
        Ok(Self {
            user_id: UserId::from_uuid(parse_uuid(&wire.sub)?),
            session_id: SessionId::from_uuid(parse_uuid(&wire.sid)?),
            token_id: TokenId::from_uuid(parse_uuid(&wire.jti)?),
            username: wire.name,
            roles: wire.roles,
            issued_at: Timestamp::from_unix_seconds(wire.iat),
            expires_at: Timestamp::from_unix_seconds(wire.exp),
            generation: wire.generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "issuer".into(),
            audience: "audience".into(),
            leeway: Duration::ZERO,
        }
    }

    fn claims() -> TokenClaims {
        let issued_at = Timestamp::from_unix_seconds(1_750_000_000);
        TokenClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            token_id: TokenId::generate(),
            username: "alice".into(),
            roles: vec!["admin".into()],
            issued_at,
            expires_at: issued_at.plus(Duration::from_secs(60)),
            generation: 3,
        }
    }

    #[test]
    fn wire_claims_read_back_as_the_claims_they_were_made_from() {
        let claims = claims();
        let wire = WireClaims::issued(&claims, &policy());
        assert_eq!((wire.iss.as_str(), wire.aud.as_str()), ("issuer", "audience"));
        assert_eq!(wire.nbf, wire.iat, "valid from the moment it is issued");
        assert_eq!(TokenClaims::try_from(wire), Ok(claims));
    }

    #[test]
    fn ids_that_are_not_uuids_are_malformed() {
        for spoil in [
            |wire: &mut WireClaims| wire.sub = "alice".into(),
            |wire: &mut WireClaims| wire.sid = String::new(),
            |wire: &mut WireClaims| wire.jti = "1234".into(),
        ] {
            let mut wire = WireClaims::issued(&claims(), &policy());
            spoil(&mut wire);
            assert_eq!(TokenClaims::try_from(wire), Err(TokenRejection::Malformed));
        }
    }
}
