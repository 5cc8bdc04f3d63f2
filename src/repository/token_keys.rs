//! Signing keys and their schedule (`token_keys`). Every change of the key
//! set is one transaction that also writes a key-set event to the outbox,
//! so that replicas and stream subscribers hear of it in cursor order; and
//! every change is a conditional write, so that of replicas racing to make
//! the same change, exactly one makes it and writes its event.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};

use super::{Repository, RepositoryError, entities::token_keys, events::append_key_set_event};
use crate::domain::{
    KeySetChange, Timestamp,
    tokens::{KeyInfo, KeySchedule, SealedKey, Sealing, SigningAlgorithm},
};

/// A stored key: its place in the lifecycle and its sealed private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub info: KeyInfo,
    pub private_key: SealedKey,
    /// Accepts tokens typed `JWT` (a key from before explicit typing).
    pub legacy_type: bool,
}

/// A key about to be published.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub kid: String,
    pub generation: i64,
    pub algorithm: SigningAlgorithm,
    pub private_key: SealedKey,
    pub published_at: Timestamp,
    pub activates_at: Timestamp,
}

/// How signing goes on when a key is removed.
#[derive(Debug, Clone)]
pub enum KeyReplacement {
    None,
    /// This next key signs from the removal on.
    ActivateNext {
        kid: String,
    },
    /// This new key signs from the removal on.
    New(NewKey),
}

impl Repository {
    /// Every stored key, oldest rotation first.
    pub async fn load_keys(&self) -> Result<Vec<StoredKey>, RepositoryError> {
        token_keys::Entity::find()
            .order_by_asc(token_keys::Column::Generation)
            .all(self.connection())
            .await?
            .into_iter()
            .map(key_from_model)
            .collect()
    }

    /// Publishes `key` as rotation `generation`, unless a key of that
    /// rotation or a later one is stored already (another replica, or an
    /// operator, published first): then nothing is written and it returns
    /// false. Keys still signing are retired when `key` activates. One
    /// transaction, with its outbox event.
    pub async fn publish_key(&self, key: &NewKey) -> Result<bool, RepositoryError> {
        let transaction = self.begin_write().await?;
        if !insert_key(&*transaction, key).await? {
            return Ok(false);
        }
        token_keys::Entity::update_many()
            .col_expr(token_keys::Column::RetiresAt, Expr::val(key.activates_at.as_millis()))
            .filter(token_keys::Column::Generation.lt(key.generation))
            .filter(token_keys::Column::RetiresAt.is_null())
            .exec(&*transaction)
            .await?;
        append_key_set_event(&*transaction, KeySetChange::Published, key.published_at).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Removes the key `kid` at once (an emergency), and makes signing go on
    /// as `replacement` says. Returns false when there is no such key. One
    /// transaction, with its outbox event.
    pub async fn remove_key(
        &self,
        kid: &str,
        replacement: &KeyReplacement,
        now: Timestamp,
    ) -> Result<bool, RepositoryError> {
        let transaction = self.begin_write().await?;
        let removed = token_keys::Entity::delete_many()
            .filter(token_keys::Column::Kid.eq(kid))
            .exec(&*transaction)
            .await?;
        if removed.rows_affected == 0 {
            return Ok(false);
        }
        match replacement {
            KeyReplacement::None => {}
            KeyReplacement::ActivateNext { kid: next } => {
                let activated = token_keys::Entity::update_many()
                    .col_expr(token_keys::Column::ActivatesAt, Expr::val(now.as_millis()))
                    .filter(token_keys::Column::Kid.eq(next.as_str()))
                    .filter(token_keys::Column::ActivatesAt.gt(now.as_millis()))
                    .exec(&*transaction)
                    .await?;
                if activated.rows_affected == 0 {
                    return Err(RepositoryError::Conflict);
                }
            }
            KeyReplacement::New(key) => {
                if !insert_key(&*transaction, key).await? {
                    return Err(RepositoryError::Conflict);
                }
            }
        }
        append_key_set_event(&*transaction, KeySetChange::Removed, now).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Deletes the keys among `kids` that retired at or before `cutoff`
    /// (every token they signed has expired). Returns how many it deleted;
    /// of replicas racing, only one deletes each key and writes the event.
    pub async fn delete_retired_keys(
        &self,
        kids: &[String],
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<u64, RepositoryError> {
        if kids.is_empty() {
            return Ok(0);
        }
        let transaction = self.begin_write().await?;
        let deleted = token_keys::Entity::delete_many()
            .filter(token_keys::Column::Kid.is_in(kids.iter().map(String::as_str)))
            .filter(token_keys::Column::RetiresAt.lte(cutoff.as_millis()))
            .exec(&*transaction)
            .await?
            .rows_affected;
        if deleted > 0 {
            append_key_set_event(&*transaction, KeySetChange::Deleted, now).await?;
            transaction.commit().await?;
        }
        Ok(deleted)
    }

    /// Replaces the unsealed private key of `kid` by `sealed`, unless it was
    /// sealed meanwhile. Returns whether it did.
    pub async fn seal_key(&self, kid: &str, sealed: &SealedKey, now: Timestamp) -> Result<bool, RepositoryError> {
        let transaction = self.begin_write().await?;
        let updated = token_keys::Entity::update_many()
            .col_expr(token_keys::Column::PrivateKey, Expr::val(sealed.bytes.clone()))
            .col_expr(token_keys::Column::Sealing, Expr::val(sealed.sealing.as_str()))
            .filter(token_keys::Column::Kid.eq(kid))
            .filter(token_keys::Column::Sealing.eq(Sealing::None.as_str()))
            .exec(&*transaction)
            .await?
            .rows_affected;
        if updated > 0 {
            append_key_set_event(&*transaction, KeySetChange::Sealed, now).await?;
            transaction.commit().await?;
        }
        Ok(updated > 0)
    }
}

/// Inserts `key` unless a key of its generation or a later one exists: the
/// unique generation settles two inserts racing (the second does nothing),
/// and the guard keeps a replica with a stale view from filling a gap left
/// by a removed key. Returns whether it inserted.
async fn insert_key(connection: &impl ConnectionTrait, key: &NewKey) -> Result<bool, RepositoryError> {
    let later = Query::select()
        .expr(Expr::val(1))
        .from(token_keys::Entity)
        .and_where(Expr::col(token_keys::Column::Generation).gte(key.generation))
        .to_owned();
    let values = Query::select()
        .exprs([
            Expr::val(key.kid.as_str()),
            Expr::val(key.generation),
            Expr::val(key.algorithm.as_str()),
            Expr::val(key.private_key.bytes.clone()),
            Expr::val(key.private_key.sealing.as_str()),
            Expr::val(false),
            Expr::val(key.published_at.as_millis()),
            Expr::val(key.activates_at.as_millis()),
        ])
        .and_where(Expr::exists(later).not())
        .to_owned();
    let insert = Query::insert()
        .into_table(token_keys::Entity)
        .columns([
            token_keys::Column::Kid,
            token_keys::Column::Generation,
            token_keys::Column::Algorithm,
            token_keys::Column::PrivateKey,
            token_keys::Column::Sealing,
            token_keys::Column::LegacyType,
            token_keys::Column::PublishedAt,
            token_keys::Column::ActivatesAt,
        ])
        .select_from(values)
        .map_err(|error| RepositoryError::corrupt(format!("building the key insert: {error}")))?
        .on_conflict(OnConflict::column(token_keys::Column::Generation).do_nothing().to_owned())
        .to_owned();
    Ok(connection.execute(&insert).await?.rows_affected() == 1)
}

fn key_from_model(model: token_keys::Model) -> Result<StoredKey, RepositoryError> {
    let corrupt = |what: &str| RepositoryError::corrupt(format!("{what} of signing key {}", model.kid));
    let algorithm = SigningAlgorithm::from_stored(&model.algorithm).ok_or_else(|| corrupt("algorithm"))?;
    let sealing = Sealing::from_stored(&model.sealing).ok_or_else(|| corrupt("sealing"))?;
    Ok(StoredKey {
        info: KeyInfo {
            kid: model.kid,
            generation: model.generation,
            algorithm,
            schedule: KeySchedule {
                published_at: Timestamp::from_millis(model.published_at),
                activates_at: Timestamp::from_millis(model.activates_at),
                retires_at: model.retires_at.map(Timestamp::from_millis),
            },
        },
        private_key: SealedKey {
            sealing,
            bytes: model.private_key,
        },
        legacy_type: model.legacy_type,
    })
}
