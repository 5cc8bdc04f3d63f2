//! jsonwebtoken's own verification, set up as strictly as the hand-written
//! one: the reference that the `agreement` tests and the token fuzz target
//! (built with `--cfg fuzzing`) hold the keyring to. Not part of the service.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;

use super::{TokenClaims, TokenPolicy, TokenRejection, claims::WireClaims};
use crate::domain::AccessToken;

/// jsonwebtoken's `decode` for a keyring holding `keys` (kid, secret). jsonwebtoken leaves
/// two checks to its caller: picking the key by `kid`, and refusing a `crit`
/// header it does not understand (RFC 7515 §4.1.11), so they are done here.
pub fn verify(
    token: &AccessToken,
    keys: &[(String, &[u8])],
    policy: &TokenPolicy,
    check_expiry: bool,
) -> Result<TokenClaims, TokenRejection> {
    let header = jsonwebtoken::decode_header(token.expose()).map_err(|error| rejection(error.kind()))?;
    let secret = keys
        .iter()
        .find(|(kid, _)| header.kid.as_deref() == Some(kid.as_str()))
        .map(|(_, secret)| *secret)
        .ok_or(TokenRejection::BadSignature)?;
    let raw_header = token.expose().split('.').next().and_then(|part| URL_SAFE_NO_PAD.decode(part).ok());
    let raw_header: Value = raw_header.and_then(|json| serde_json::from_slice(&json).ok()).unwrap_or_default();
    if raw_header.get("crit").is_some() {
        return Err(TokenRejection::Malformed);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = check_expiry;
    validation.validate_nbf = true;
    validation.leeway = policy.leeway.as_secs();
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    let wire = jsonwebtoken::decode::<WireClaims>(token.expose(), &DecodingKey::from_secret(secret), &validation)
        .map_err(|error| rejection(error.kind()))?
        .claims;
    TokenClaims::try_from(wire)
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
pub fn same_verdict(ours: &Result<TokenClaims, TokenRejection>, theirs: &Result<TokenClaims, TokenRejection>) -> bool {
    use TokenRejection::{BadSignature, Malformed};
    match (ours, theirs) {
        (Err(BadSignature | Malformed), Err(BadSignature | Malformed)) => true,
        _ => ours == theirs,
    }
}

/// Signs the given header and claims text as HS256 with `secret`, as anyone
/// holding the key (or a buggy issuer) could.
pub fn sign_text(header: &str, claims: &str, secret: &[u8]) -> AccessToken {
    use aws_lc_rs::hmac;
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), message.as_bytes());
    AccessToken::issued(format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
}
