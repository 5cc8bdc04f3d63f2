//! What the proxies that ask before they forward a request share: Envoy's
//! ext_authz (`grpc/ext_authz.rs`) and nginx's auth_request
//! (`http/auth_request.rs`). The request's `Authorization` header is read as
//! an RFC 6750 bearer credential and checked by Verify's own path (the same
//! reasons, caches and metrics); the answer is either the identity to hand
//! the upstream in headers, or the challenge to send back.
//!
//! Only the protocol wrapping differs between the two proxies, so the
//! decisions (what counts as no credential, what as a bad one, which headers
//! carry what) are made here once.

use crate::{
    authority::{Authority, AuthorityError, Verdict},
    domain::AccessToken,
};

/// The identity headers' names after their prefix, in the order they are
/// sent: `x-user-id`, `x-session-id`, `x-username`, `x-roles` with the
/// default prefix.
pub const IDENTITY_HEADERS: [&str; 4] = ["user-id", "session-id", "username", "roles"];

/// Why a request is refused: both are HTTP 401, with different challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer credential at all (no header, or another scheme).
    NoCredential,
    /// A bearer credential that is not a good token now: malformed, badly
    /// signed, expired, revoked, rotated away, of an unknown session.
    InvalidToken,
}

impl Refusal {
    /// The `WWW-Authenticate` challenge. RFC 6750 section 3.1: a request
    /// that carried no credential gets no error code.
    pub fn challenge(self) -> &'static str {
        match self {
            Self::NoCredential => "Bearer",
            Self::InvalidToken => r#"Bearer error="invalid_token""#,
        }
    }
}

/// Who the token's holder is, as header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub session_id: String,
    pub username: String,
    /// Comma-separated (role names cannot contain a comma); empty for none.
    pub roles: String,
}

impl Identity {
    /// The values in the order of [`IDENTITY_HEADERS`].
    pub fn values(&self) -> [&str; 4] {
        [&self.user_id, &self.session_id, &self.username, &self.roles]
    }
}

/// Let the request through with this identity, or refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Identity),
    Refuse(Refusal),
}

/// Decides on a request that carried these `Authorization` header values
/// (usually one; several are refused, as RFC 6750 section 2 allows a single
/// credential). An error is the database failing, for the caller to answer
/// as an error of its own kind (never as a refusal of the token).
pub async fn decide(
    authority: &Authority,
    authorization: impl IntoIterator<Item = Vec<u8>>,
) -> Result<Decision, AuthorityError> {
    let token = match bearer_token(authorization) {
        Ok(token) => token,
        Err(refusal) => return Ok(Decision::Refuse(refusal)),
    };
    Ok(match authority.verify(&token).await? {
        Verdict::Valid(verified) => {
            let claims = verified.claims;
            Decision::Allow(Identity {
                user_id: claims.user_id.to_string(),
                session_id: claims.session_id.to_string(),
                username: claims.username,
                roles: claims.roles.join(","),
            })
        }
        Verdict::Invalid(_) => Decision::Refuse(Refusal::InvalidToken),
    })
}

/// The token of the one `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 7235); another scheme counts as no credential.
fn bearer_token(values: impl IntoIterator<Item = Vec<u8>>) -> Result<AccessToken, Refusal> {
    let mut values = values.into_iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(Refusal::NoCredential),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(Refusal::InvalidToken),
    };
    let mut value = String::from_utf8(value).map_err(|_| Refusal::InvalidToken)?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::NoCredential);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::InvalidToken);
    }
    // The token is most of the value: cut out of it in place, not copied.
    let start = token.as_ptr().addr() - value.as_ptr().addr();
    let end = start + token.len();
    value.truncate(end);
    value.drain(..start);
    AccessToken::parse("authorization", value).map_err(|_| Refusal::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(values: &[&str]) -> Result<String, Refusal> {
        bearer_token(values.iter().map(|value| value.as_bytes().to_vec())).map(AccessToken::into_string)
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_trimmed() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi ",
            " Bearer abc.def.ghi",
        ] {
            assert_eq!(token_of(&[value]), Ok("abc.def.ghi".to_owned()), "{value:?}");
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_no_credential() {
        assert_eq!(token_of(&[]), Err(Refusal::NoCredential));
        assert_eq!(token_of(&["Basic YWxpY2U6c2VjcmV0"]), Err(Refusal::NoCredential));
        assert_eq!(token_of(&["abc.def.ghi"]), Err(Refusal::NoCredential));
    }

    #[test]
    fn an_empty_oversized_non_text_or_repeated_credential_is_an_invalid_token() {
        let oversized = format!("Bearer {}", "a".repeat(9 * 1024));
        for values in [
            vec!["Bearer"],
            vec!["Bearer   "],
            vec![oversized.as_str()],
            vec!["Bearer a", "Bearer b"],
        ] {
            assert_eq!(token_of(&values), Err(Refusal::InvalidToken), "{values:?}");
        }
        assert_eq!(
            bearer_token([b"Bearer \xff\xfe".to_vec()]).map(AccessToken::into_string),
            Err(Refusal::InvalidToken)
        );
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(Refusal::NoCredential.challenge(), "Bearer");
        assert_eq!(Refusal::InvalidToken.challenge(), r#"Bearer error="invalid_token""#);
    }
}
