//! Revocation as backend services see it: how long after Logout returns
//! each of many `LocalVerifier`s (the client crate's, each following its own
//! revocation stream over its own connection, as separate services would)
//! refuses the logged-out token.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use token_authority_client::{Client, ClientContext, LocalRefusal, LocalVerifier, Reason};

use super::{
    load::Stats,
    seed,
    server::{AUDIENCE, ISSUER, SERVICE_KEY, Server},
};

/// How long a verifier may take to refuse a logged-out token before the
/// sample counts as missing.
const GIVE_UP: Duration = Duration::from_secs(10);

/// Starts `count` verifiers on `server` (which signs with its own stored
/// keys, published on the stream), waits until each has its snapshot, then
/// `logouts` times: logs in, has every verifier accept the new token (so
/// that it is remembered, as a busy service's tokens are), logs out, and
/// notes when each verifier first refuses it as revoked. Latency: from
/// Logout's answer to that refusal.
///
/// Each verifier is woken by [`LocalVerifier::changes`] and then asked with
/// `verify_local`: no polling, so the measurement takes no CPU from the
/// server and the streams, and the instant taken is after the verifier
/// could first have answered (never before).
pub async fn revocation_visible(server: &Server, count: usize, logouts: usize) -> anyhow::Result<Stats> {
    let url = format!("http://{}", server.address);
    let verifiers = (0..count)
        .map(|_| {
            let client = Client::builder(url.as_str()).service_key(SERVICE_KEY).connect_lazy()?;
            Ok(LocalVerifier::builder(client, ISSUER, AUDIENCE).start())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for verifier in &verifiers {
        tokio::time::timeout(Duration::from_secs(60), verifier.synced())
            .await
            .context("a LocalVerifier took its snapshot")?;
    }
    let authority = Client::builder(url.as_str()).service_key(SERVICE_KEY).connect().await?;
    let end_user = ClientContext {
        ip_address: seed::CLIENT_IP.into(),
        user_agent: seed::USER_AGENT.into(),
        device_id: seed::DEVICE_ID.into(),
    };
    let mut stats = Stats::empty();
    for _ in 0..logouts {
        let login = authority.login(seed::LOGIN_USER, seed::PASSWORD, false, Some(end_user.clone())).await?;
        let token: Arc<str> = login.access_token.as_str().into();
        let mut watchers = Vec::with_capacity(count);
        for verifier in &verifiers {
            // Subscribed before Logout: no change after this one is missed.
            let mut changes = verifier.changes();
            verifier
                .verify_local(&token)
                .map_err(|refusal| anyhow::anyhow!("a LocalVerifier refused a fresh token: {refusal}"))?;
            let (verifier, token) = (verifier.clone(), token.clone());
            watchers.push(tokio::spawn(async move {
                loop {
                    if matches!(verifier.verify_local(&token), Err(LocalRefusal::Invalid(Reason::Revoked))) {
                        return Some(Instant::now());
                    }
                    changes.changed().await.ok()?;
                }
            }));
        }
        authority.logout(&login.access_token).await?;
        let answered = Instant::now();
        let deadline = tokio::time::Instant::now() + GIVE_UP;
        for watcher in watchers {
            let abort = watcher.abort_handle();
            match tokio::time::timeout_at(deadline, watcher).await {
                Ok(Ok(Some(refused))) => stats.record(refused.saturating_duration_since(answered)),
                _ => {
                    abort.abort();
                    stats.errors += 1;
                }
            }
        }
    }
    stats.elapsed = Duration::from_secs(1);
    Ok(stats)
}
