//! The gRPC layer: the only code that sees generated protobuf types. Handlers
//! parse requests into domain types (`convert`), call the authority, and map
//! results back; errors become statuses in one place (`status`).

mod admin;
mod auth;
mod convert;
mod ext_authz;
#[cfg(fuzzing)]
pub mod fuzzing;
mod limits;
mod refused;
mod status;
mod token_authority;

pub use admin::AdminService;
pub use auth::{Access, Caller, CallerAuth, CallerAuthLayer, Credential, PUBLIC, UNAUTHENTICATED};
pub use ext_authz::{AuthorizationServer, ExtAuthzService, FILE_DESCRIPTOR_SET as EXT_AUTHZ_FILE_DESCRIPTOR_SET};
pub use limits::{CallLimitLayer, StreamKind, StreamQuota};
pub use token_authority::TokenAuthorityService;

/// The generated code, for servers here and for clients (tests, tools).
pub mod proto {
    tonic::include_proto!("tokenauthority.v1");

    /// The encoded descriptors of our protos, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("token_authority_descriptor");
}
