//! The read of one token (compact JWS, RFC 7515 §7.1) by the key rules of
//! the proto: the key its `kid` names, only with that key's algorithm, typed
//! `at+jwt`, and `exp`, `nbf`, `iss`, `aud` checked; the same strictness and
//! the same order of checks as the authority's Verify, so that both give
//! the same reason for the same token.

use std::time::{Duration, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use uuid::Uuid;

use super::keys::{KeySet, PublicKey};
use crate::{Claims, Reason};

/// Who issues the tokens, who they are for, and the clock skew accepted.
#[derive(Debug, Clone)]
pub(crate) struct TokenPolicy {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) leeway_seconds: i64,
}

/// What is checked again on every use of a remembered token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    pub(crate) session: u128,
    pub(crate) token: u128,
    pub(crate) generation: u64,
    /// `nbf` and `exp`, unix seconds.
    pub(crate) not_before: i64,
    pub(crate) expires: i64,
}

impl Checked {
    /// Whether the token may be used at `now_ms`, with the leeway.
    pub(crate) fn window(&self, policy: &TokenPolicy, now_ms: i64) -> Result<(), Reason> {
        let now = now_ms.div_euclid(1000);
        if self.expires < now.saturating_sub(policy.leeway_seconds) {
            return Err(Reason::Expired);
        }
        if self.not_before > now.saturating_add(policy.leeway_seconds) {
            return Err(Reason::NotYetValid);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    /// Critical extensions: none is understood, so any is refused (RFC 7515
    /// §4.1.11), `null` included.
    #[serde(default, deserialize_with = "present_even_if_null")]
    crit: bool,
}

fn present_even_if_null<'de, D: serde::Deserializer<'de>>(value: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(value).map(|_| true)
}

/// The claims as the authority writes them. Field types are the strictness.
#[derive(Deserialize)]
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
    #[serde(default, rename = "gen")]
    generation: u64,
}

fn from_base64_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Reason> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| Reason::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Reason::Malformed)
}

/// `at+jwt` (or `application/at+jwt`), without regard to case; `JWT` only
/// with the HS256 secret (tokens from before explicit typing).
fn type_accepted(typ: Option<&str>, key: &PublicKey) -> bool {
    let Some(typ) = typ else { return false };
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case("at+jwt") || (key.legacy_type_allowed() && typ.eq_ignore_ascii_case("JWT"))
}

/// Checks everything about `token` at `now_ms` but its session: the
/// claims, and what to check again on a later use (the window, the session).
pub(crate) fn check(
    token: &str,
    keys: &KeySet,
    hs256: Option<&PublicKey>,
    policy: &TokenPolicy,
    now_ms: i64,
) -> Result<(Claims, Checked), Reason> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Reason::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(Reason::Malformed)?;
    let header: Header = from_base64_json(header)?;
    if header.crit {
        return Err(Reason::Malformed);
    }
    // A kid we do not hold is not a token of ours: refused, never fetched.
    let key = match (header.kid.as_deref().and_then(|kid| keys.get(kid)), hs256) {
        (Some(key), _) => key,
        (None, Some(secret)) if header.alg == "HS256" => secret,
        (None, _) => return Err(Reason::BadSignature),
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Reason::Malformed)?;
    key.check(&header.alg, signing_input.as_bytes(), &signature)?;
    if !type_accepted(header.typ.as_deref(), key) {
        return Err(Reason::WrongType);
    }
    let wire: WireClaims = from_base64_json(payload)?;
    if wire.exp < 0 || wire.nbf < 0 || wire.iat < 0 {
        return Err(Reason::Malformed);
    }
    // The authority's order: the window, the issuer, the audience, then the ids.
    let window = Checked {
        session: 0,
        token: 0,
        generation: wire.generation,
        not_before: wire.nbf,
        expires: wire.exp,
    };
    window.window(policy, now_ms)?;
    if wire.iss != policy.issuer {
        return Err(Reason::WrongIssuer);
    }
    if wire.aud != policy.audience {
        return Err(Reason::WrongAudience);
    }
    let parse = |text: &str| Uuid::try_parse(text).map(|id| id.as_u128()).map_err(|_| Reason::Malformed);
    parse(&wire.sub)?;
    let checked = Checked {
        session: parse(&wire.sid)?,
        token: parse(&wire.jti)?,
        ..window
    };
    let at = |seconds: i64| UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs());
    let claims = Claims {
        user_id: wire.sub,
        username: wire.name,
        session_id: wire.sid,
        roles: wire.roles,
        issued_at: at(wire.iat),
        expires_at: at(wire.exp),
    };
    Ok((claims, checked))
}
