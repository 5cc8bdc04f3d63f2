//! The backend-for-frontend's `SessionHandle` against a real authority:
//! one refresh however many ask, "logged out" on revocation and on reuse,
//! and the current token kept while the authority cannot be reached.

use std::time::Duration;

use token_authority_client::{LoggedOut, SessionError, SessionHandle, SessionPolicy};

use crate::support::{Authority, PASSWORD, SharedClock};

/// Tokens live 24 hours; the handle refreshes in the last hour.
fn policy() -> SessionPolicy {
    SessionPolicy {
        refresh_window: Duration::from_secs(3600),
        rotation_grace: Duration::from_secs(10),
        retry_delay: Duration::from_millis(50),
    }
}

async fn handle(authority: &Authority) -> (SessionHandle, String) {
    let user_id = authority.create_user("alice", &[]).await;
    let login = authority.client().login("alice", PASSWORD, false, None).await.unwrap();
    let handle = SessionHandle::with_clock(
        authority.client(),
        login.access_token,
        login.expires_at,
        policy(),
        SharedClock(authority.clock.clone()),
    );
    (handle, user_id)
}

#[tokio::test]
async fn outside_the_window_the_token_is_kept_and_inside_it_is_refreshed_once() {
    // Arrange
    let authority = Authority::spawn().await;
    let (handle, user_id) = handle(&authority).await;
    let (original, _) = handle.current();
    assert_eq!(handle.access_token().await.unwrap(), original, "far from expiry: no refresh");

    // Act: 20 requests at once, with the token in its refresh window.
    authority.clock.advance(Duration::from_secs(23 * 3600 + 1800));
    let answers = futures_join_all((0..20).map(|_| {
        let handle = handle.clone();
        async move { handle.access_token().await }
    }))
    .await;

    // Assert
    let (current, expires_at) = handle.current();
    assert_ne!(current, original);
    assert!(answers.iter().all(|answer| answer.as_ref() == Ok(&current)), "every caller got the successor");
    assert_eq!(authority.refreshes_of(&user_id).await, 1, "single flight: one refresh");
    assert!(expires_at > SharedClock(authority.clock.clone()).now_plus(Duration::from_secs(3600)));
    assert_eq!(handle.access_token().await.unwrap(), current, "the new token is out of its window");
}

#[tokio::test]
async fn a_session_revoked_elsewhere_is_reported_logged_out() {
    let authority = Authority::spawn().await;
    let (handle, _) = handle(&authority).await;
    let (token, _) = handle.current();
    authority.client().logout(&token).await.unwrap();

    let checked = handle.check().await.unwrap_err();
    assert!(matches!(checked, SessionError::LoggedOut(LoggedOut::Revoked)), "{checked:?}");
    assert_eq!(handle.logged_out(), Some(LoggedOut::Revoked));
    assert_eq!(handle.access_token().await, Err(LoggedOut::Revoked), "over stays over");
}

#[tokio::test]
async fn a_refresh_refused_for_reuse_reports_logged_out() {
    // Arrange: the handle refreshes; a thief replays the old token after the grace period.
    let authority = Authority::spawn().await;
    let (handle, _) = handle(&authority).await;
    let (stolen, _) = handle.current();
    authority.clock.advance(Duration::from_secs(23 * 3600 + 1800));
    handle.access_token().await.unwrap();
    authority.clock.advance(Duration::from_secs(11));
    assert!(authority.client().refresh(&stolen, None).await.is_err(), "reuse is refused");

    // Act: the handle's next refresh meets the revoked session.
    authority.clock.advance(Duration::from_secs(23 * 3600 + 1800));
    let outcome = handle.access_token().await;

    // Assert
    assert_eq!(outcome, Err(LoggedOut::Revoked));
}

#[tokio::test]
async fn with_the_authority_down_the_current_token_is_kept_until_it_expires() {
    let mut authority = Authority::spawn().await;
    let (handle, _) = handle(&authority).await;
    let (token, expires_at) = handle.current();
    authority.stop().await;

    authority.clock.advance(Duration::from_secs(23 * 3600 + 1800));
    assert_eq!(handle.access_token().await, Ok(token), "refresh failed: the valid token is kept");
    assert_eq!(handle.logged_out(), None);

    authority.clock.advance(Duration::from_secs(3600));
    assert!(SharedClock(authority.clock.clone()).now_plus(Duration::ZERO) > expires_at);
    assert_eq!(handle.access_token().await, Err(LoggedOut::Expired));
}

/// Awaits every future (a small join, to spare a dependency).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("the task completes"));
    }
    outputs
}
