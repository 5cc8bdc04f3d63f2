//! The `token_keys` table: signing keys with their schedule.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    #[sea_orm(unique)]
    pub generation: i64,
    pub algorithm: String,
    /// Sealed under KEY_ENCRYPTION_KEY unless `sealing` is `none`.
    pub private_key: Vec<u8>,
    pub sealing: String,
    /// Accepts tokens typed `JWT` (a key from before explicit typing).
    pub legacy_type: bool,
    pub published_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
}

/// Written by hand so that key material never reaches a log.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("token_keys::Model")
            .field("kid", &self.kid)
            .field("generation", &self.generation)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
