//! `tokenauthority.v1.TokenAuthorityAdmin`: operator calls. The admin
//! credential check happens before any handler runs (`auth`); it leaves the
//! admin's [`Caller`] in the request, whose name the audit trail records as
//! the actor.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{
    Access, Caller, StreamQuota, convert,
    proto::{self, token_authority_admin_server::TokenAuthorityAdmin},
    token_authority::saturating_u32,
};
use crate::{
    authority::Authority,
    domain::audit::{Actor, AuditQuery},
    security_feed::SecurityFeed,
};

pub struct AdminService {
    authority: Arc<Authority>,
    security_events: Arc<SecurityFeed>,
    /// Security event streams open per admin.
    streams: Arc<StreamQuota>,
}

impl AdminService {
    pub fn new(authority: Arc<Authority>, security_events: Arc<SecurityFeed>, streams: Arc<StreamQuota>) -> Self {
        Self {
            authority,
            security_events,
            streams,
        }
    }
}

/// The acting admin, by the name of their key or client certificate, as
/// the audit trail records it. The authentication layer lets only admins
/// reach this service and leaves their [`Caller`] in the request.
fn actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    admin_name(request).map(|name| Actor::admin(&name))
}

/// The name of the admin's key or certificate.
fn admin_name<T>(request: &Request<T>) -> Result<Arc<str>, Status> {
    match request.extensions().get::<Caller>() {
        Some(caller) if caller.access == Access::Admin => Ok(caller.name.clone()),
        _ => Err(Status::unauthenticated("authorization: no admin credential was checked")),
    }
}

type SecurityEventStream = Pin<Box<dyn Stream<Item = Result<proto::SecurityEvent, Status>> + Send>>;

#[tonic::async_trait]
impl TokenAuthorityAdmin for AdminService {
    type WatchSecurityEventsStream = SecurityEventStream;

    async fn set_user_roles(
        &self,
        request: Request<proto::SetUserRolesRequest>,
    ) -> Result<Response<proto::SetUserRolesResponse>, Status> {
        let actor = actor(&request)?;
        let (user_id, roles) = convert::set_user_roles(request.into_inner())?;
        self.authority.set_user_roles(actor, user_id, roles).await?;
        Ok(Response::new(proto::SetUserRolesResponse {}))
    }

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let mut query = AuditQuery::try_from(request.into_inner())?;
        if query.limit == 0 {
            query.limit = crate::authority::MAX_AUDIT_PAGE;
        }
        let limit = query.limit.min(crate::authority::MAX_AUDIT_PAGE);
        let entries = self.authority.list_audit(query).await?;
        let next_page_token = match entries.last() {
            Some(last) if entries.len() as u64 == limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListAuditEventsResponse {
            events: entries.iter().map(convert::audit_event).collect(),
            next_page_token,
        }))
    }

    async fn watch_security_events(
        &self,
        request: Request<proto::WatchSecurityEventsRequest>,
    ) -> Result<Response<Self::WatchSecurityEventsStream>, Status> {
        let admin = admin_name(&request)?;
        let slot = self.streams.acquire(&admin)?;
        let after_cursor = request.into_inner().after_cursor;
        let entries = self.security_events.subscribe(after_cursor).await?;
        let events = entries.map(|entry| entry.map(|entry| convert::security_event(&entry)).map_err(Status::from));
        Ok(Response::new(Box::pin(slot.hold(events))))
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let actor = actor(&request)?;
        let (username, password, roles) = convert::create_user(request.into_inner())?;
        let user_id = self.authority.create_user(actor, username, password, roles).await?;
        Ok(Response::new(proto::CreateUserResponse {
            user_id: user_id.to_string(),
        }))
    }

    async fn set_user_disabled(
        &self,
        request: Request<proto::SetUserDisabledRequest>,
    ) -> Result<Response<proto::SetUserDisabledResponse>, Status> {
        let actor = actor(&request)?;
        let request = request.into_inner();
        let user_id = convert::user_id(&request.user_id)?;
        let revoked = self.authority.set_user_disabled(actor, user_id, request.disabled).await?;
        Ok(Response::new(proto::SetUserDisabledResponse {
            revoked_count: saturating_u32(revoked),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<proto::RevokeSessionRequest>,
    ) -> Result<Response<proto::RevokeSessionResponse>, Status> {
        let actor = actor(&request)?;
        let session_id = convert::session_id(&request.into_inner().session_id)?;
        let revoked = self.authority.revoke_session(actor, session_id).await?;
        Ok(Response::new(proto::RevokeSessionResponse { revoked }))
    }

    async fn list_user_sessions(
        &self,
        request: Request<proto::ListUserSessionsRequest>,
    ) -> Result<Response<proto::ListUserSessionsResponse>, Status> {
        let user_id = convert::user_id(&request.into_inner().user_id)?;
        let sessions = self.authority.list_user_sessions(user_id).await?;
        Ok(Response::new(proto::ListUserSessionsResponse {
            sessions: convert::sessions(&sessions, None),
        }))
    }
}
