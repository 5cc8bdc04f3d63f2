//! Conversions between protobuf messages and domain types, all in one place.
//! Requests are parsed here (each error names its field); responses are built
//! here.

use super::proto;
use crate::{
    authority::{InvalidReason, IssuedSession, LoginRequest, Verdict},
    domain::{
        AccessToken, ClientContext, NewPassword, Password, RevocationEvent, RevocationReason, Roles, Session,
        SessionId, Timestamp, UserId, Username, ValidationError,
        audit::{AuditEntry, AuditKind, AuditQuery, SecurityEventKind, Severity},
        tokens::TokenRejection,
    },
    revocations::{FeedItem, WatchRequest},
};

pub fn timestamp(time: Timestamp) -> prost_types::Timestamp {
    let millis = time.as_millis();
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        // Below 1_000_000_000 by construction.
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or_default(),
    }
}

pub fn access_token(value: String) -> Result<AccessToken, ValidationError> {
    AccessToken::parse("access_token", value)
}

/// An absent client context means "not known".
pub fn client_context(client: Option<proto::ClientContext>) -> Result<ClientContext, ValidationError> {
    match client {
        None => Ok(ClientContext::default()),
        Some(client) => ClientContext::parse(&client.ip_address, &client.user_agent, &client.device_id),
    }
}

/// Refresh: the token, and the client context when the caller sent one.
pub fn refresh(request: proto::RefreshRequest) -> Result<(AccessToken, Option<ClientContext>), ValidationError> {
    let token = access_token(request.access_token)?;
    let client = request.client.map(|client| client_context(Some(client))).transpose()?;
    Ok((token, client))
}

/// Verify: the token, and the client context when the caller sent one (to
/// compare with the session's binding).
pub fn verify(request: proto::VerifyRequest) -> Result<(AccessToken, Option<ClientContext>), ValidationError> {
    let token = access_token(request.access_token)?;
    let client = request.client.map(|client| client_context(Some(client))).transpose()?;
    Ok((token, client))
}

/// LogoutAll: the token, and whether to keep its own session.
pub fn logout_all(request: proto::LogoutAllRequest) -> Result<(AccessToken, bool), ValidationError> {
    Ok((access_token(request.access_token)?, request.keep_current))
}

/// ChangePassword: the token, the current password and the new one.
pub fn change_password(
    request: proto::ChangePasswordRequest,
) -> Result<(AccessToken, Password, NewPassword), ValidationError> {
    Ok((
        access_token(request.access_token)?,
        Password::parse("current_password", request.current_password)?,
        NewPassword::parse("new_password", request.new_password)?,
    ))
}

pub fn watch(request: proto::WatchRevocationsRequest) -> WatchRequest {
    WatchRequest {
        after_cursor: request.after_cursor,
        include_snapshot: request.include_snapshot,
        session_snapshot: request.session_snapshot,
    }
}

/// CreateUser: who, with which password and roles.
pub fn create_user(request: proto::CreateUserRequest) -> Result<(Username, NewPassword, Roles), ValidationError> {
    Ok((
        Username::parse("username", &request.username)?,
        NewPassword::parse("password", request.password)?,
        Roles::parse("roles", &request.roles)?,
    ))
}

/// SetUserRoles: whose roles, and the new set.
pub fn set_user_roles(request: proto::SetUserRolesRequest) -> Result<(UserId, Roles), ValidationError> {
    Ok((user_id(&request.user_id)?, Roles::parse("roles", &request.roles)?))
}

pub fn user_id(value: &str) -> Result<UserId, ValidationError> {
    UserId::parse("user_id", value)
}

pub fn session_id(value: &str) -> Result<SessionId, ValidationError> {
    SessionId::parse("session_id", value)
}

pub fn session(session: &Session, current: Option<SessionId>) -> proto::Session {
    proto::Session {
        session_id: session.id.to_string(),
        user_id: session.user_id.to_string(),
        created_at: Some(timestamp(session.created_at)),
        last_refreshed_at: Some(timestamp(session.refreshed_at)),
        expires_at: Some(timestamp(session.expires_at)),
        remember_me: session.remember_me,
        ip_address: session.client.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: session.client.user_agent.clone().unwrap_or_default(),
        device_id: session.client.device_id.clone().unwrap_or_default(),
        current: current == Some(session.id),
    }
}

pub fn sessions(sessions: &[Session], current: Option<SessionId>) -> Vec<proto::Session> {
    sessions.iter().map(|each| session(each, current)).collect()
}

impl TryFrom<proto::LoginRequest> for LoginRequest {
    type Error = ValidationError;

    fn try_from(request: proto::LoginRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            username: Username::parse("username", &request.username)?,
            password: Password::parse("password", request.password)?,
            remember_me: request.remember_me,
            client: client_context(request.client)?,
        })
    }
}

impl From<IssuedSession> for proto::LoginResponse {
    fn from(issued: IssuedSession) -> Self {
        Self {
            access_token: issued.access_token.into_string(),
            token_type: "Bearer".into(),
            expires_at: Some(timestamp(issued.session.expires_at)),
            user_id: issued.session.user_id.to_string(),
            session: Some(session(&issued.session, Some(issued.session.id))),
        }
    }
}

impl From<IssuedSession> for proto::RefreshResponse {
    fn from(issued: IssuedSession) -> Self {
        Self {
            access_token: issued.access_token.into_string(),
            expires_at: Some(timestamp(issued.session.expires_at)),
            session: Some(session(&issued.session, Some(issued.session.id))),
        }
    }
}

impl From<Verdict> for proto::VerifyResponse {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Valid(verified) => {
                let claims = verified.claims;
                Self {
                    valid: true,
                    reason: proto::VerifyReason::Ok.into(),
                    user_id: claims.user_id.to_string(),
                    username: claims.username,
                    session_id: claims.session_id.to_string(),
                    roles: claims.roles,
                    issued_at: Some(timestamp(claims.issued_at)),
                    expires_at: Some(timestamp(claims.expires_at)),
                    needs_refresh: verified.needs_refresh,
                    binding_mismatch: verified.binding_mismatch,
                }
            }
            Verdict::Invalid(reason) => Self {
                valid: false,
                reason: verify_reason(reason).into(),
                ..Self::default()
            },
        }
    }
}

fn verify_reason(reason: InvalidReason) -> proto::VerifyReason {
    use proto::VerifyReason as Reason;
    match reason {
        InvalidReason::Token(TokenRejection::Malformed) => Reason::Malformed,
        InvalidReason::Token(TokenRejection::BadSignature) => Reason::BadSignature,
        InvalidReason::Token(TokenRejection::Expired) => Reason::Expired,
        InvalidReason::Token(TokenRejection::NotYetValid) => Reason::NotYetValid,
        InvalidReason::Token(TokenRejection::WrongIssuer) => Reason::WrongIssuer,
        InvalidReason::Token(TokenRejection::WrongAudience) => Reason::WrongAudience,
        InvalidReason::Token(TokenRejection::WrongType) => Reason::WrongType,
        InvalidReason::Revoked => Reason::Revoked,
        InvalidReason::Rotated => Reason::Rotated,
        InvalidReason::UnknownSession => Reason::UnknownSession,
        InvalidReason::BindingMismatch => Reason::BindingMismatch,
    }
}

impl From<FeedItem> for proto::RevocationEvent {
    fn from(item: FeedItem) -> Self {
        use proto::RevocationEventKind as Kind;
        match item {
            FeedItem::Revoked(event) => revocation_event(&event),
            FeedItem::KeySet { cursor, jwks } => Self {
                cursor,
                kind: Kind::KeySet.into(),
                jwks: jwks.to_string(),
                ..Self::default()
            },
            FeedItem::SnapshotEnd { cursor } => Self {
                cursor,
                kind: Kind::SnapshotEnd.into(),
                ..Self::default()
            },
            FeedItem::Heartbeat { cursor } => Self {
                cursor,
                kind: Kind::Heartbeat.into(),
                ..Self::default()
            },
        }
    }
}

fn revocation_event(event: &RevocationEvent) -> proto::RevocationEvent {
    proto::RevocationEvent {
        cursor: event.cursor,
        kind: proto::RevocationEventKind::Revoked.into(),
        session_id: event.session_id.to_string(),
        user_id: event.user_id.to_string(),
        token_id: event.token_id.map(|token| token.to_string()).unwrap_or_default(),
        reason: revocation_reason(event.reason).into(),
        revoked_at: Some(timestamp(event.revoked_at)),
        expires_at: Some(timestamp(event.expires_at)),
        current_token_id: event.successor.map(|successor| successor.token_id.to_string()).unwrap_or_default(),
        current_generation: event.successor.map_or(0, |successor| successor.generation),
        grace_ends_at: event.successor.map(|successor| timestamp(successor.grace_ends_at)),
        session_expires_at: event.session_expires_at.map(timestamp),
        jwks: String::new(),
    }
}

fn revocation_reason(reason: RevocationReason) -> proto::RevocationReason {
    use proto::RevocationReason as Reason;
    match reason {
        RevocationReason::Logout => Reason::Logout,
        RevocationReason::LogoutAll => Reason::LogoutAll,
        RevocationReason::PasswordChanged => Reason::PasswordChanged,
        RevocationReason::ReuseDetected => Reason::ReuseDetected,
        RevocationReason::Admin => Reason::Admin,
        RevocationReason::UserDisabled => Reason::UserDisabled,
        RevocationReason::Rotated => Reason::Rotated,
        RevocationReason::SecurityAction => Reason::SecurityAction,
    }
}

/// A protobuf timestamp as a domain time (milliseconds; finer is dropped).
pub fn time_of(field: &'static str, time: &prost_types::Timestamp) -> Result<Timestamp, ValidationError> {
    if !(0..1_000_000_000).contains(&time.nanos) {
        return Err(ValidationError::new(field, "nanos must be within 0..1e9"));
    }
    let millis = time
        .seconds
        .checked_mul(1000)
        .and_then(|millis| millis.checked_add(i64::from(time.nanos / 1_000_000)))
        .ok_or_else(|| ValidationError::new(field, "out of range"))?;
    Ok(Timestamp::from_millis(millis))
}

impl TryFrom<proto::ListAuditEventsRequest> for AuditQuery {
    type Error = ValidationError;

    fn try_from(request: proto::ListAuditEventsRequest) -> Result<Self, Self::Error> {
        let kinds = request
            .kinds
            .iter()
            .map(|kind| {
                proto::AuditKind::try_from(*kind)
                    .ok()
                    .and_then(audit_kind_from_proto)
                    .ok_or_else(|| ValidationError::new("kinds", format!("{kind} is not an audit kind")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let before_id = match request.page_token.as_str() {
            "" => None,
            token => Some(
                token
                    .parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| ValidationError::new("page_token", "is not a token this server gave"))?,
            ),
        };
        Ok(Self {
            user_id: optional(&request.user_id).map(|id| UserId::parse("user_id", id)).transpose()?,
            session_id: optional(&request.session_id).map(|id| SessionId::parse("session_id", id)).transpose()?,
            kinds,
            since: request.since.as_ref().map(|time| time_of("since", time)).transpose()?,
            until: request.until.as_ref().map(|time| time_of("until", time)).transpose()?,
            before_id,
            limit: u64::from(request.page_size),
        })
    }
}

/// An empty string field means "not given".
fn optional(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

pub fn audit_event(entry: &AuditEntry) -> proto::AuditEvent {
    let record = &entry.record;
    proto::AuditEvent {
        id: entry.id,
        kind: audit_kind(record.kind).into(),
        occurred_at: Some(timestamp(record.occurred_at)),
        actor: record.actor.as_ref().map(|actor| actor.as_str().to_owned()).unwrap_or_default(),
        user_id: record.user_id.map(|id| id.to_string()).unwrap_or_default(),
        session_id: record.session_id.map(|id| id.to_string()).unwrap_or_default(),
        ip_address: record.client.ip_address.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent_family: record.client.user_agent_family.clone().unwrap_or_default(),
        device_id: record.client.device_id.clone().unwrap_or_default(),
        detail: record.detail.clone().unwrap_or_default(),
        severity: record.severity.map_or(proto::Severity::Unspecified, severity).into(),
    }
}

pub fn security_event(entry: &AuditEntry) -> proto::SecurityEvent {
    proto::SecurityEvent {
        cursor: entry.security_cursor.unwrap_or_default(),
        event: Some(audit_event(entry)),
    }
}

fn severity(severity: Severity) -> proto::Severity {
    match severity {
        Severity::Low => proto::Severity::Low,
        Severity::Medium => proto::Severity::Medium,
        Severity::High => proto::Severity::High,
    }
}

const AUDIT_KINDS: [(AuditKind, proto::AuditKind); 19] = [
    (AuditKind::Login, proto::AuditKind::Login),
    (AuditKind::LoginFailed, proto::AuditKind::LoginFailed),
    (AuditKind::Refresh, proto::AuditKind::Refresh),
    (AuditKind::Logout, proto::AuditKind::Logout),
    (AuditKind::LogoutAll, proto::AuditKind::LogoutAll),
    (AuditKind::PasswordChanged, proto::AuditKind::PasswordChanged),
    (AuditKind::SessionRevoked, proto::AuditKind::SessionRevoked),
    (AuditKind::UserCreated, proto::AuditKind::UserCreated),
    (AuditKind::UserDisabled, proto::AuditKind::UserDisabled),
    (AuditKind::UserEnabled, proto::AuditKind::UserEnabled),
    (AuditKind::RolesChanged, proto::AuditKind::RolesChanged),
    (AuditKind::Security(SecurityEventKind::ReuseDetected), proto::AuditKind::ReuseDetected),
    (AuditKind::Security(SecurityEventKind::BindingMismatch), proto::AuditKind::BindingMismatch),
    (AuditKind::Security(SecurityEventKind::NewDevice), proto::AuditKind::NewDevice),
    (AuditKind::Security(SecurityEventKind::NewNetwork), proto::AuditKind::NewNetwork),
    (AuditKind::Security(SecurityEventKind::FailedLoginsForUser), proto::AuditKind::FailedLoginsForUser),
    (AuditKind::Security(SecurityEventKind::FailedLoginsFromIp), proto::AuditKind::FailedLoginsFromIp),
    (AuditKind::Security(SecurityEventKind::SessionsFromIp), proto::AuditKind::SessionsFromIp),
    (AuditKind::Security(SecurityEventKind::RefreshLimited), proto::AuditKind::RefreshLimited),
];

fn audit_kind(kind: AuditKind) -> proto::AuditKind {
    AUDIT_KINDS
        .iter()
        .find(|(domain, _)| *domain == kind)
        .map_or(proto::AuditKind::Unspecified, |(_, wire)| *wire)
}

fn audit_kind_from_proto(kind: proto::AuditKind) -> Option<AuditKind> {
    AUDIT_KINDS.iter().find(|(_, wire)| *wire == kind).map(|(domain, _)| *domain)
}
