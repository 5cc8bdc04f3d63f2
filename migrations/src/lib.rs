//! Database schema of token-authority: one migration per file, named by date,
//! each with `up` and `down`. They run at server start and with
//! `token-authority migrate`, on SQLite and PostgreSQL alike.
//!
//! Times are stored as BIGINT milliseconds since the Unix epoch: they compare
//! and sort the same way on every backend, with no time-zone conversions.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_users;
mod m20261126_000002_create_sessions;
mod m20261126_000003_create_signing_keys;
mod m20261126_000004_create_revocation_events;
mod m20261127_000010_create_token_keys;
mod m20261127_000011_add_outbox_event_kind;
mod m20261127_000030_session_generations_and_binding;
mod m20261127_000031_create_login_throttle;
mod m20261127_000032_create_known_clients;
mod m20261127_000033_create_audit_events;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_users::Migration),
            Box::new(m20261126_000002_create_sessions::Migration),
            Box::new(m20261126_000003_create_signing_keys::Migration),
            Box::new(m20261126_000004_create_revocation_events::Migration),
            Box::new(m20261127_000010_create_token_keys::Migration),
            Box::new(m20261127_000011_add_outbox_event_kind::Migration),
            Box::new(m20261127_000030_session_generations_and_binding::Migration),
            Box::new(m20261127_000031_create_login_throttle::Migration),
            Box::new(m20261127_000032_create_known_clients::Migration),
            Box::new(m20261127_000033_create_audit_events::Migration),
        ]
    }
}
