//! What the request fuzz target drives (built with `--cfg fuzzing` only):
//! bytes as they arrive in a gRPC message, decoded by prost into the
//! method's request and parsed by the same conversions the handlers use.
//! No input may panic; every refusal must be a `ValidationError`.

use prost::Message;

use super::{convert, proto};
use crate::{authority::LoginRequest, domain::audit::AuditQuery};

/// Decodes `bytes` as the request of method number `method` (each of the
/// API's request messages in turn) and parses it as its handler does.
pub fn parse_request(method: u8, bytes: &[u8]) {
    fn decoded<M: Message + Default>(bytes: &[u8]) -> Option<M> {
        M::decode(bytes).ok()
    }
    match method % 14 {
        0 => {
            if let Some(request) = decoded::<proto::LoginRequest>(bytes) {
                let _ = LoginRequest::try_from(request);
            }
        }
        1 => {
            if let Some(request) = decoded::<proto::RefreshRequest>(bytes) {
                let _ = convert::refresh(request);
            }
        }
        2 => {
            if let Some(request) = decoded::<proto::LogoutRequest>(bytes) {
                let _ = convert::access_token(request.access_token);
            }
        }
        3 => {
            if let Some(request) = decoded::<proto::LogoutAllRequest>(bytes) {
                let _ = convert::logout_all(request);
            }
        }
        4 => {
            if let Some(request) = decoded::<proto::VerifyRequest>(bytes) {
                let _ = convert::verify(request);
            }
        }
        5 => {
            if let Some(request) = decoded::<proto::ChangePasswordRequest>(bytes) {
                let _ = convert::change_password(request);
            }
        }
        6 => {
            if let Some(request) = decoded::<proto::ListSessionsRequest>(bytes) {
                let _ = convert::access_token(request.access_token);
            }
        }
        7 => {
            if let Some(request) = decoded::<proto::WatchRevocationsRequest>(bytes) {
                let _ = convert::watch(request);
            }
        }
        8 => {
            if let Some(request) = decoded::<proto::CreateUserRequest>(bytes) {
                let _ = convert::create_user(request);
            }
        }
        9 => {
            if let Some(request) = decoded::<proto::SetUserDisabledRequest>(bytes) {
                let _ = convert::user_id(&request.user_id);
            }
        }
        10 => {
            if let Some(request) = decoded::<proto::RevokeSessionRequest>(bytes) {
                let _ = convert::session_id(&request.session_id);
            }
        }
        11 => {
            if let Some(request) = decoded::<proto::SetUserRolesRequest>(bytes) {
                let _ = convert::set_user_roles(request);
            }
        }
        12 => {
            if let Some(request) = decoded::<proto::ListAuditEventsRequest>(bytes) {
                let _ = AuditQuery::try_from(request);
            }
        }
        _ => {
            if let Some(request) = decoded::<proto::ListUserSessionsRequest>(bytes) {
                let _ = convert::user_id(&request.user_id);
            }
        }
    }
}
