//! Domain types and rules: what a username, a password, a token and a session
//! are, and the rules that govern them. Nothing here knows about gRPC or SQL;
//! values are parsed at the edge, so past it invalid values cannot exist.

mod access_token;
pub mod audit;
pub mod binding;
mod client_context;
mod ids;
mod outbox;
mod password;
pub mod password_hash;
mod revocation;
mod roles;
mod session;
pub mod throttle;
mod time;
pub mod tokens;
mod username;
mod validation;

pub use access_token::AccessToken;
pub use client_context::ClientContext;
pub use ids::{SessionId, TokenId, UserId};
pub use outbox::{KeySetChange, OutboxEvent};
pub use password::{NewPassword, Password};
pub use revocation::{Revocation, RevocationEvent, RevocationReason, Successor};
pub use roles::{Role, Roles};
pub use session::{RetiredToken, Session, SessionState, TokenLifetimes, TokenStanding};
pub use time::Timestamp;
pub use username::Username;
pub use validation::ValidationError;
