//! The `login_throttle` table: one GCRA counter per throttle key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_throttle")]
pub struct Model {
    /// Hex SHA-256 of the key: no typed-in username is stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Theoretical arrival time, in milliseconds.
    pub tat: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
