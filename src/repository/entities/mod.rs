//! SeaORM entities: the tables as the migrations create them. Only the
//! repository uses these; everything else sees domain types.

pub mod audit_events;
pub mod known_clients;
pub mod login_throttle;
pub mod revocation_cursor;
pub mod revocation_events;
pub mod security_cursor;
pub mod sessions;
pub mod token_keys;
pub mod users;
