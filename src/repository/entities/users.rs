//! The `users` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub username: String,
    /// Lower-cased username, unique.
    #[sea_orm(unique)]
    pub username_key: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// JSON array of role names.
    pub roles: String,
    pub disabled: bool,
    pub password_changed_at: i64,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
