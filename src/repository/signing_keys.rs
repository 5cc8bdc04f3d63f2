//! Signing keys kept in the database when no JWT_SECRET is configured.

use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};

use super::{Repository, RepositoryError, entities::signing_keys};
use crate::domain::{
    Timestamp,
    tokens::{SigningAlgorithm, SigningKey},
};

impl Repository {
    /// Every stored key, oldest first.
    pub async fn load_signing_keys(&self) -> Result<Vec<SigningKey>, RepositoryError> {
        signing_keys::Entity::find()
            .order_by_asc(signing_keys::Column::CreatedAt)
            .order_by_asc(signing_keys::Column::Kid)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|model| {
                let corrupt = || RepositoryError::corrupt(format!("signing key {}", model.kid));
                match SigningAlgorithm::from_stored(&model.algorithm).ok_or_else(corrupt)? {
                    SigningAlgorithm::Hs256 => SigningKey::hs256(model.key_material.clone()).map_err(|_| corrupt()),
                }
            })
            .collect()
    }

    /// Stores a key; a key with the same id already stored is left as it is.
    pub async fn insert_signing_key(&self, key: &SigningKey, now: Timestamp) -> Result<(), RepositoryError> {
        let model = signing_keys::ActiveModel {
            kid: Set(key.kid().to_owned()),
            algorithm: Set(key.algorithm().as_str().to_owned()),
            key_material: Set(key.material().to_vec()),
            created_at: Set(now.as_millis()),
        };
        let transaction = self.begin_write().await?;
        signing_keys::Entity::insert(model)
            .on_conflict_do_nothing()
            .exec_without_returning(&*transaction)
            .await?;
        transaction.commit().await
    }
}
