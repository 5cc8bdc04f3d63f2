//! The `revocation_events` table: the outbox of revocations and key-set
//! changes.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revocation_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `None` until the sequencer gives the event its place (PostgreSQL).
    #[sea_orm(unique)]
    pub cursor: Option<i64>,
    /// `revocation` or `key_set`.
    pub kind: String,
    /// The nil UUID for a key-set change.
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub token_id: Option<Uuid>,
    pub reason: String,
    pub revoked_at: i64,
    pub expires_at: i64,
    /// For a rotation: the token now current, its generation, and when the
    /// retired token's grace period ends.
    pub current_token_id: Option<Uuid>,
    pub generation: Option<i64>,
    pub grace_ends_at: Option<i64>,
    /// When the session's last token expires.
    pub session_expires_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
