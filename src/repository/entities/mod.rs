//! SeaORM entities: the tables as the migrations create them. Only the
//! repository uses these; everything else sees domain types.

pub mod revocation_cursor;
pub mod revocation_events;
pub mod sessions;
pub mod signing_keys;
pub mod users;
