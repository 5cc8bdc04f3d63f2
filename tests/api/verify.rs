//! Verify: a check that answers with a reason, never a failure, for any token.

use std::time::Duration;

use serde_json::json;
use token_authority::proto::{self, VerifyReason};
use tonic::Code;

use crate::helpers::{
    PASSWORD, TestConfig, assert_status, claims_of, forge_token, header_of, reason, seconds, spawn_app,
};

#[tokio::test]
async fn a_valid_token_verifies_with_its_claims() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;

    let verified = app.verify(&login.access_token).await;

    assert!(verified.valid);
    assert_eq!(reason(&verified), VerifyReason::Ok);
    assert_eq!(verified.user_id, login.user_id);
    assert_eq!(verified.username, "alice");
    assert_eq!(verified.session_id, login.session.unwrap().session_id);
    assert_eq!(verified.roles, ["reader"]);
    assert_eq!(seconds(&verified.expires_at), seconds(&login.expires_at));
    assert_eq!(seconds(&verified.issued_at), claims_of(&login.access_token)["iat"].as_i64().unwrap());
    assert!(!verified.needs_refresh, "24h from expiry is outside the 2h window");
}

#[tokio::test]
async fn needs_refresh_is_set_within_the_refresh_window() {
    let mut app = TestConfig::default()
        .configure(|config| {
            // The window opens 3 s after the token's iat.
            config.tokens.lifetimes.standard = Duration::from_secs(3600);
            config.tokens.lifetimes.refresh_window = Duration::from_secs(3597);
        })
        .spawn()
        .await;
    let login = app.user_with_session("alice").await;
    app.clock.advance(Duration::from_millis(1900));
    assert!(!app.verify(&login.access_token).await.needs_refresh);

    app.clock.advance(Duration::from_millis(1100));

    let verified = app.verify(&login.access_token).await;
    assert!(verified.valid);
    assert!(verified.needs_refresh);
}

#[tokio::test]
async fn expired_tokens_are_expired() {
    let (mut app, login) = crate::helpers::expired_session().await;

    let verified = app.verify(&login.access_token).await;

    assert!(!verified.valid);
    assert_eq!(reason(&verified), VerifyReason::Expired);
    assert!(verified.user_id.is_empty(), "nothing is told about an invalid token");
}

#[tokio::test]
async fn every_kind_of_bad_token_gets_its_reason() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let claims = claims_of(&login.access_token);
    let header = header_of(&login.access_token);
    let now = claims["iat"].as_i64().unwrap();
    let with = |changes: serde_json::Value| {
        let mut forged = claims.clone();
        for (key, value) in changes.as_object().unwrap() {
            forged[key] = value.clone();
        }
        forge_token(header.clone(), forged)
    };
    // A character inside the signature (the last one also carries padding
    // bits, so changing it can make the base64 itself invalid instead).
    let mut tampered: Vec<char> = login.access_token.chars().collect();
    let inside = tampered.len() - 10;
    tampered[inside] = if tampered[inside] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let other_key = {
        let mut other = TestConfig::default()
            .configure(|config| config.tokens.signing_secret = Some("another-secret-that-is-32-bytes-or-more".into()))
            .spawn()
            .await;
        other.user_with_session("alice").await.access_token
    };
    let cases = [
        ("not a jwt".to_owned(), VerifyReason::Malformed),
        ("a.b.c".to_owned(), VerifyReason::Malformed),
        (tampered, VerifyReason::BadSignature),
        (other_key, VerifyReason::BadSignature),
        (forge_token(json!({"alg": "HS256", "typ": "JWT"}), claims.clone()), VerifyReason::BadSignature),
        (with(json!({"exp": now - 10})), VerifyReason::Expired),
        (with(json!({"nbf": now + 3600})), VerifyReason::NotYetValid),
        (with(json!({"iss": "someone-else"})), VerifyReason::WrongIssuer),
        (with(json!({"aud": "someone-else"})), VerifyReason::WrongAudience),
        (with(json!({"exp": (now + 60).to_string()})), VerifyReason::Malformed),
        (with(json!({"nbf": now.to_string()})), VerifyReason::Malformed),
        (with(json!({"sid": uuid::Uuid::now_v7().to_string()})), VerifyReason::UnknownSession),
        (with(json!({"sid": "not-a-uuid"})), VerifyReason::Malformed),
    ];
    for (token, expected) in cases {
        let verified = app.verify(&token).await;
        assert!(!verified.valid, "{expected:?}");
        assert_eq!(reason(&verified), expected);
    }
}

#[tokio::test]
async fn the_none_algorithm_and_other_algorithms_are_refused() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let claims = claims_of(&login.access_token);
    let kid = header_of(&login.access_token)["kid"].clone();
    let encode = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());

    let unsigned = format!("{}.{}.", encode(json!({"alg": "none", "kid": kid})), encode(claims.clone()));
    let as_hs512 = forge_token(json!({"alg": "HS512", "kid": kid}), claims.clone());
    let as_rs256 = forge_token(json!({"alg": "RS256", "kid": kid}), claims);

    for token in [unsigned, as_hs512, as_rs256] {
        let verified = app.verify(&token).await;
        assert!(!verified.valid);
        assert_ne!(reason(&verified), VerifyReason::Ok);
    }
}

#[tokio::test]
async fn revoked_and_rotated_tokens_are_never_valid() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    let login = app.user_with_session("alice").await;
    let refreshed = app.refresh(&login.access_token).await.unwrap();
    app.clock.advance(Duration::from_millis(20));

    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Rotated);

    app.logout(&refreshed.access_token).await.unwrap();
    assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Revoked);
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Revoked);
}

/// Verify remembers the tokens it has verified; what can change since is
/// still checked every time.
#[tokio::test]
async fn a_token_verified_before_is_checked_again_every_time() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    let rotated = app.user_with_session("alice").await.access_token;
    let revoked = app.login("alice", PASSWORD).await.unwrap().access_token;
    for token in [&rotated, &revoked] {
        assert!(app.verify(token).await.valid);
        assert!(app.verify(token).await.valid, "and again, remembered");
    }

    app.refresh(&rotated).await.unwrap();
    app.clock.advance(Duration::from_millis(20));
    app.logout(&revoked).await.unwrap();

    assert_eq!(reason(&app.verify(&rotated).await), VerifyReason::Rotated);
    assert_eq!(reason(&app.verify(&revoked).await), VerifyReason::Revoked);

    let mut short_lived = TestConfig::short_lived().spawn().await;
    let expiring = short_lived.user_with_session("alice").await.access_token;
    assert!(short_lived.verify(&expiring).await.valid);
    short_lived.clock.advance(Duration::from_millis(2100));
    assert_eq!(reason(&short_lived.verify(&expiring).await), VerifyReason::Expired);
}

#[tokio::test]
async fn a_token_from_another_database_is_an_unknown_session() {
    let mut first = spawn_app().await;
    let login = first.user_with_session("alice").await;
    let mut second = spawn_app().await; // same secret, empty database

    let verified = second.verify(&login.access_token).await;

    assert_eq!(reason(&verified), VerifyReason::UnknownSession);
}

#[tokio::test]
async fn verify_refuses_only_unusable_input() {
    let mut app = spawn_app().await;
    let empty = app
        .client
        .verify(proto::VerifyRequest {
            access_token: String::new(),
            client: None,
        })
        .await;
    assert_status(empty, Code::InvalidArgument, "access_token");
    let huge = app
        .client
        .verify(proto::VerifyRequest {
            access_token: "x".repeat(8 * 1024 + 1),
            client: None,
        })
        .await;
    assert_status(huge, Code::InvalidArgument, "access_token");
    // Arbitrary bytes are an answer, not an error, and never crash the server.
    for junk in ["..", "ey.ey.ey", "\u{0}\u{1}", "eyJhbGciOiJub25lIn0.e30.", "🦀.🦀.🦀"] {
        let verified = app.verify(junk).await;
        assert!(!verified.valid);
    }
    assert_eq!(reason(&app.verify("still.alive.?").await), VerifyReason::Malformed);
}

#[tokio::test]
async fn rotating_the_secret_keeps_tokens_signed_with_the_previous_one() {
    const NEW_SECRET: &str = "a-new-secret-that-is-at-least-32-bytes-too";
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    app.stop().await;

    let mut rotated = TestConfig::default()
        .configure(|config| {
            config.tokens.signing_secret = Some(NEW_SECRET.into());
            config.tokens.accepted_secrets = vec![crate::helpers::JWT_SECRET.into()];
        })
        .spawn_sharing_database(&app)
        .await;
    assert_eq!(reason(&rotated.verify(&login.access_token).await), VerifyReason::Ok);
    let refreshed = rotated.refresh(&login.access_token).await.unwrap();
    assert_ne!(header_of(&refreshed.access_token)["kid"], header_of(&login.access_token)["kid"]);
    rotated.stop().await;

    let mut finished = TestConfig::default()
        .configure(|config| config.tokens.signing_secret = Some(NEW_SECRET.into()))
        .spawn_sharing_database(&app)
        .await;
    assert_eq!(reason(&finished.verify(&refreshed.access_token).await), VerifyReason::Ok);
    assert_eq!(reason(&finished.verify(&login.access_token).await), VerifyReason::BadSignature);
}
