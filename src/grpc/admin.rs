//! `tokenauthority.v1.TokenAuthorityAdmin`: operator calls. The admin
//! credential check happens before any handler runs (`auth`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    convert,
    proto::{self, token_authority_admin_server::TokenAuthorityAdmin},
    token_authority::saturating_u32,
};
use crate::authority::Authority;

pub struct AdminService {
    authority: Arc<Authority>,
}

impl AdminService {
    pub fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }
}

#[tonic::async_trait]
impl TokenAuthorityAdmin for AdminService {
    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let (username, password, roles) = convert::create_user(request.into_inner())?;
        let user_id = self.authority.create_user(username, password, roles).await?;
        Ok(Response::new(proto::CreateUserResponse {
            user_id: user_id.to_string(),
        }))
    }

    async fn set_user_disabled(
        &self,
        request: Request<proto::SetUserDisabledRequest>,
    ) -> Result<Response<proto::SetUserDisabledResponse>, Status> {
        let request = request.into_inner();
        let user_id = convert::user_id(&request.user_id)?;
        let revoked = self.authority.set_user_disabled(user_id, request.disabled).await?;
        Ok(Response::new(proto::SetUserDisabledResponse {
            revoked_count: saturating_u32(revoked),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<proto::RevokeSessionRequest>,
    ) -> Result<Response<proto::RevokeSessionResponse>, Status> {
        let session_id = convert::session_id(&request.into_inner().session_id)?;
        let revoked = self.authority.revoke_session(session_id).await?;
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
