//! `tokenauthority.v1.TokenAuthority`: the calls backend services make on
//! behalf of their users. Each handler parses, calls the authority, responds.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{
    Caller, StreamQuota,
    convert::{self, access_token},
    proto::{self, token_authority_server::TokenAuthority},
};
use crate::{
    authority::{Authority, LoginRequest},
    revocations::RevocationFeed,
};

pub struct TokenAuthorityService {
    authority: Arc<Authority>,
    revocations: Arc<RevocationFeed>,
    /// Revocation streams open per caller.
    streams: Arc<StreamQuota>,
}

impl TokenAuthorityService {
    pub fn new(authority: Arc<Authority>, revocations: Arc<RevocationFeed>, streams: Arc<StreamQuota>) -> Self {
        Self {
            authority,
            revocations,
            streams,
        }
    }
}

type RevocationStream = Pin<Box<dyn Stream<Item = Result<proto::RevocationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl TokenAuthority for TokenAuthorityService {
    type WatchRevocationsStream = RevocationStream;

    async fn watch_revocations(
        &self,
        request: Request<proto::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        // The caller check (`auth`) runs before every call here.
        let watcher = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("authorization: missing"))?;
        let slot = self.streams.acquire(&watcher.name)?;
        tracing::info!(watcher = %watcher.name, "revocation stream opened");
        let items = self.revocations.subscribe(convert::watch(request.into_inner())).await?;
        let events = items.map(|item| item.map(proto::RevocationEvent::from).map_err(Status::from));
        Ok(Response::new(Box::pin(slot.hold(events))))
    }

    async fn login(&self, request: Request<proto::LoginRequest>) -> Result<Response<proto::LoginResponse>, Status> {
        let span = caller_span(&request);
        let request = LoginRequest::try_from(request.into_inner())?;
        let issued = self.authority.login(request).instrument(span).await?;
        Ok(Response::new(issued.into()))
    }

    async fn refresh(
        &self,
        request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::RefreshResponse>, Status> {
        let span = caller_span(&request);
        let (token, client) = convert::refresh(request.into_inner())?;
        let issued = self.authority.refresh(&token, client).instrument(span).await?;
        Ok(Response::new(issued.into()))
    }

    async fn logout(&self, request: Request<proto::LogoutRequest>) -> Result<Response<proto::LogoutResponse>, Status> {
        let span = caller_span(&request);
        let token = access_token(request.into_inner().access_token)?;
        let session_id = self.authority.logout(&token).instrument(span).await?;
        Ok(Response::new(proto::LogoutResponse {
            session_id: session_id.to_string(),
        }))
    }

    async fn logout_all(
        &self,
        request: Request<proto::LogoutAllRequest>,
    ) -> Result<Response<proto::LogoutAllResponse>, Status> {
        let span = caller_span(&request);
        let (token, keep_current) = convert::logout_all(request.into_inner())?;
        let revoked = self.authority.logout_all(&token, keep_current).instrument(span).await?;
        Ok(Response::new(proto::LogoutAllResponse {
            revoked_count: saturating_u32(revoked),
        }))
    }

    async fn verify(&self, request: Request<proto::VerifyRequest>) -> Result<Response<proto::VerifyResponse>, Status> {
        let (token, client) = convert::verify(request.into_inner())?;
        let verdict = match client {
            Some(client) => self.authority.verify_for_client(&token, &client).await?,
            None => self.authority.verify(&token).await?,
        };
        Ok(Response::new(verdict.into()))
    }

    async fn change_password(
        &self,
        request: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::ChangePasswordResponse>, Status> {
        let span = caller_span(&request);
        let (token, current, new) = convert::change_password(request.into_inner())?;
        let changed = self.authority.change_password(&token, current, new).instrument(span).await?;
        Ok(Response::new(proto::ChangePasswordResponse {
            access_token: changed.access_token.into_string(),
            expires_at: Some(convert::timestamp(changed.expires_at)),
            revoked_count: saturating_u32(changed.revoked_count),
        }))
    }

    async fn get_jwks(
        &self,
        _request: Request<proto::GetJwksRequest>,
    ) -> Result<Response<proto::GetJwksResponse>, Status> {
        Ok(Response::new(proto::GetJwksResponse {
            jwks: self.authority.jwks().to_string(),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<proto::ListSessionsRequest>,
    ) -> Result<Response<proto::ListSessionsResponse>, Status> {
        let token = access_token(request.into_inner().access_token)?;
        let (sessions, current) = self.authority.list_sessions(&token).await?;
        Ok(Response::new(proto::ListSessionsResponse {
            sessions: convert::sessions(&sessions, Some(current)),
        }))
    }
}

/// The span of a call that changes sessions: its logs name the service
/// that made it (the key's or certificate's name, never the key). Verify
/// and ListSessions log nothing at info level, so they go without one.
fn caller_span<T>(request: &Request<T>) -> tracing::Span {
    match request.extensions().get::<Caller>() {
        Some(caller) => tracing::info_span!("call", caller = %caller.name),
        None => tracing::Span::none(),
    }
}

pub(super) fn saturating_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
