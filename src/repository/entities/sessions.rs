//! The `sessions` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: i64,
    pub refreshed_at: i64,
    pub expires_at: i64,
    pub remember_me: bool,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
    pub current_token_id: Uuid,
    pub previous_token_id: Option<Uuid>,
    pub previous_token_retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    pub version: i64,
    /// The current token's `gen` claim; every rotation adds one.
    pub generation: i64,
    /// The client's network prefix ("203.0.113.0/24"), for the binding.
    pub ip_network: Option<String>,
    /// The client's coarse user-agent family ("Firefox on Linux"), for the binding.
    pub user_agent_family: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
