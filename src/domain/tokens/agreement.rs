//! The hand-written verifier held to jsonwebtoken's `decode`, set up as
//! strictly: on crafted tokens and on mutations of a signed one. `decode`
//! reads the wall clock, so here the verifier is given the wall clock too.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use super::{
    SigningKey, TokenClaims, TokenRejection,
    claims::WireClaims,
    test_support::{SECRET, claims, header, keyring, raw_claims, sign_raw},
};
use crate::domain::{AccessToken, Timestamp};

/// jsonwebtoken's own `decode`, set up as strictly as the fast path: the
/// reference it must agree with.
fn reference(token: &AccessToken, check_expiry: bool) -> Result<TokenClaims, TokenRejection> {
    let kid = SigningKey::hs256(SECRET.to_vec()).unwrap().kid().to_owned();
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
    let wire = jsonwebtoken::decode::<WireClaims>(token.expose(), &DecodingKey::from_secret(&SECRET), &validation)
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
        cases.push(sign_raw(header.clone(), claims, &SECRET));
    }
    let mut missing = raw_claims(now);
    missing.as_object_mut().unwrap().remove("iss");
    cases.push(sign_raw(header.clone(), missing, &SECRET));
    cases.push(sign_raw(header.clone(), raw_claims(now), &[8; 32]));
    cases.push(sign_raw(serde_json::json!({"alg": "HS256"}), raw_claims(now), &SECRET));
    for token in &cases {
        for check_expiry in [true, false] {
            let ours = if check_expiry {
                keyring.verify(token, Timestamp::now())
            } else {
                keyring.verify_ignoring_expiry(token, Timestamp::now())
            };
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
        let (ours, theirs) = (keyring.verify(&token, Timestamp::now()), reference(&token, true));
        assert!(same_verdict(&ours, &theirs), "{ours:?} vs {theirs:?} for {}", token.expose());
    }
}

/// The claims part of a test token, decoded, for a failure message.
fn claims_of_token(token: &AccessToken) -> String {
    token
        .expose()
        .split('.')
        .nth(1)
        .map(|part| String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).into_owned())
        .unwrap_or_default()
}
