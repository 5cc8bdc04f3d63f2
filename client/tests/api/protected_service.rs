//! The example's protected service against a real authority: a valid token
//! passes, a logout is refused within milliseconds, a dead authority meets
//! the freshness policy, and a restart misses no revocation.

use std::time::Duration;

use crate::support::{Authority, PASSWORD, Protected, eventually};
use token_authority_client::{AccessToken, AuthLayer, Reason, VerifyError, WhenStale};
use tonic::Code;

#[tokio::test]
async fn a_valid_token_passes_and_after_logout_is_refused_within_milliseconds() {
    // Arrange
    let authority = Authority::spawn().await;
    let user_id = authority.create_user("alice", &["reader"]).await;
    let verifier = authority.verifier().start();
    verifier.synced().await;
    let service = Protected::spawn(verifier.clone()).await;
    let client = authority.client();
    let login = client.login("alice", PASSWORD, false, None).await.unwrap();
    let token = login.access_token.as_str().to_owned();

    // Act
    let me = service.who_am_i(&token).await.unwrap();

    // Assert
    assert_eq!((me.user_id.as_str(), me.username.as_str()), (user_id.as_str(), "alice"));
    assert_eq!(me.session_id, login.session_id);
    assert_eq!(me.roles, ["reader"]);
    assert_eq!(service.who_am_i("").await.unwrap_err().code(), Code::Unauthenticated, "no token");
    let forged = format!("{token}x");
    assert_eq!(service.who_am_i(&forged).await.unwrap_err().code(), Code::Unauthenticated);

    client.logout(&login.access_token).await.unwrap();
    eventually("the logout reaching the service", || async {
        matches!(service.who_am_i(&token).await, Err(status) if status.code() == Code::Unauthenticated)
    })
    .await;
    assert_eq!(verifier.verify_local(&token).unwrap_err().to_string(), "token refused: revoked");
}

#[tokio::test]
async fn local_answers_are_verifys_answers() {
    let authority = Authority::spawn().await;
    authority.create_user("alice", &[]).await;
    let verifier = authority.verifier().start();
    verifier.synced().await;
    let client = authority.client();
    let first = client.login("alice", PASSWORD, false, None).await.unwrap();
    let second = client.login("alice", PASSWORD, false, None).await.unwrap();
    let rotated = client.refresh(&second.access_token, None).await.unwrap();
    client.logout(&first.access_token).await.unwrap();
    // Past the rotation grace period: the retired token is refused.
    authority.clock.advance(Duration::from_secs(11));

    eventually("both events applied", || async {
        verifier.verify_local(first.access_token.as_str()).is_err()
            && verifier.verify_local(second.access_token.as_str()).is_err()
    })
    .await;
    for (token, expected) in [
        (&first.access_token, Some(Reason::Revoked)),
        (&second.access_token, Some(Reason::Rotated)),
        (&rotated.access_token, None),
    ] {
        let local = verifier.verify(token.as_str()).await.err().map(|error| match error {
            VerifyError::Invalid(reason) => reason,
            VerifyError::Unavailable(error) => panic!("{error}"),
        });
        let remote = client.verify(token.as_str()).await.err().map(|error| match error {
            VerifyError::Invalid(reason) => reason,
            VerifyError::Unavailable(error) => panic!("{error}"),
        });
        assert_eq!(local, expected);
        assert_eq!(local, remote, "the same answer as Verify");
    }
}

#[tokio::test]
async fn with_the_authority_down_the_service_refuses_once_stale() {
    // Arrange
    let mut authority = Authority::spawn().await;
    authority.create_user("alice", &[]).await;
    let verifier = authority.verifier().max_staleness(Duration::from_secs(30), WhenStale::Refuse).start();
    verifier.synced().await;
    let service = Protected::spawn(verifier.clone()).await;
    let login = authority.client().login("alice", PASSWORD, false, None).await.unwrap();
    let token = login.access_token.as_str();

    // Act
    authority.stop().await;

    // Assert
    assert!(service.who_am_i(token).await.is_ok(), "within max_staleness the state is trusted");
    authority.clock.advance(Duration::from_secs(31));
    let refused = service.who_am_i(token).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "stale: refused, not trusted: {refused:?}");
}

#[tokio::test]
async fn with_the_stream_down_a_stale_verifier_can_ask_the_authority() {
    // Arrange: the verifier reconnects only after a minute, so that its
    // state stays stale while the authority answers Verify.
    let mut authority = Authority::spawn().await;
    authority.create_user("alice", &[]).await;
    let verifier = authority
        .verifier()
        .max_staleness(Duration::from_secs(30), WhenStale::AskAuthority)
        .reconnect_delay(Duration::from_secs(600))
        .start();
    verifier.synced().await;
    let client = authority.client();
    let login = client.login("alice", PASSWORD, false, None).await.unwrap();
    let address = authority.address;
    authority.stop().await;
    let replacement = authority.another_on(address).await;
    replacement.clock.advance(Duration::from_secs(31));

    // Act and assert: the local state is stale, the authority answers.
    assert!(verifier.verify_local(login.access_token.as_str()).is_err());
    assert!(verifier.verify(login.access_token.as_str()).await.is_ok());
    client.logout(&login.access_token).await.unwrap();
    let refused = verifier.verify(login.access_token.as_str()).await.unwrap_err();
    assert!(matches!(refused, VerifyError::Invalid(Reason::Revoked)), "{refused:?}");
}

#[tokio::test]
async fn after_a_restart_no_revocation_made_meanwhile_is_missed() {
    // Arrange
    let mut authority = Authority::spawn().await;
    authority.create_user("alice", &[]).await;
    let verifier = authority.verifier().start();
    verifier.synced().await;
    let service = Protected::spawn(verifier.clone()).await;
    let client = authority.client();
    let kept = client.login("alice", PASSWORD, false, None).await.unwrap();
    let revoked = client.login("alice", PASSWORD, false, None).await.unwrap();
    let address = authority.address;
    let cursor_before = verifier.cursor();

    // Act: while the service's authority is down, another replica on the
    // same database logs one session out; then the authority comes back.
    authority.stop().await;
    let mut meanwhile = authority.another_on("127.0.0.1:0".parse().unwrap()).await;
    meanwhile.client().logout(&revoked.access_token).await.unwrap();
    meanwhile.stop().await;
    let _restarted = authority.another_on(address).await;

    // Assert
    eventually("the revocation made meanwhile reaching the service", || async {
        matches!(service.who_am_i(revoked.access_token.as_str()).await, Err(status) if status.code() == Code::Unauthenticated)
    })
    .await;
    assert!(verifier.cursor() > cursor_before, "resumed from its cursor");
    assert!(service.who_am_i(kept.access_token.as_str()).await.is_ok());
}

#[tokio::test]
async fn the_role_check_refuses_a_token_without_the_role() {
    let authority = Authority::spawn().await;
    authority.create_user("reader", &["reader"]).await;
    authority.create_user("writer", &["writer"]).await;
    let verifier = authority.verifier().start();
    verifier.synced().await;
    let client = authority.client();
    let reader = client.login("reader", PASSWORD, false, None).await.unwrap().access_token;
    let writer = client.login("writer", PASSWORD, false, None).await.unwrap().access_token;
    let layer = AuthLayer::new(verifier).require_role("writer");

    let status = |token: &AccessToken| {
        let layer = layer.clone();
        let token = token.as_str().to_owned();
        async move { crate::support::call_behind(layer, &token).await }
    };

    assert_eq!(status(&writer).await, 200);
    assert_eq!(status(&reader).await, 403);
}

#[tokio::test]
async fn one_entry_per_session_however_often_it_is_refreshed() {
    // Arrange
    let authority = Authority::spawn().await;
    authority.create_user("alice", &[]).await;
    let client = authority.client();
    let login = client.login("alice", PASSWORD, false, None).await.unwrap();
    let mut tokens = vec![login.access_token.clone()];
    for _ in 0..10 {
        authority.clock.advance(Duration::from_secs(11));
        let next = client.refresh(tokens.last().unwrap(), None).await.unwrap().access_token;
        tokens.push(next);
    }

    // Act: a verifier built from the snapshot, then ten live rotations.
    let verifier = authority.verifier().start();
    verifier.synced().await;
    for _ in 0..10 {
        authority.clock.advance(Duration::from_secs(11));
        let next = client.refresh(tokens.last().unwrap(), None).await.unwrap().access_token;
        tokens.push(next);
    }
    let newest = tokens.last().unwrap().as_str();
    let previous = tokens[tokens.len() - 2].as_str();
    // Past the rotation grace period, the previous token stops once its event is in.
    authority.clock.advance(Duration::from_secs(11));
    eventually("the last rotation reaching the verifier", || async { verifier.verify_local(previous).is_err() }).await;

    // Assert
    assert!(verifier.verify_local(newest).is_ok());
    assert_eq!(verifier.verify_local(tokens[5].as_str()).unwrap_err().to_string(), "token refused: rotated");
    assert_eq!(verifier.session_entries(), 1, "20 rotations: one entry");
}
