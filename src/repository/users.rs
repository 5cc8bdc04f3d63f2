//! Users: lookup, creation, password and status changes.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, SqlErr};
use secrecy::{ExposeSecret, SecretString};

use super::{Repository, RepositoryError, RevokedSessions, audit::append_audit, entities::users, sessions};
use crate::domain::{RevocationReason, Roles, Timestamp, UserId, Username, audit::AuditRecord};

/// A user as stored.
pub struct UserRecord {
    pub id: UserId,
    pub username: Username,
    /// argon2id PHC string; a secret, never logged.
    pub password_hash: SecretString,
    pub roles: Roles,
    pub disabled: bool,
}

pub struct NewUser {
    pub id: UserId,
    pub username: Username,
    pub password_hash: String,
    pub roles: Roles,
    pub created_at: Timestamp,
}

impl Repository {
    pub async fn find_user_by_username(&self, username: &Username) -> Result<Option<UserRecord>, RepositoryError> {
        users::Entity::find()
            .filter(users::Column::UsernameKey.eq(username.key()))
            .one(self.connection())
            .await?
            .map(user_from_model)
            .transpose()
    }

    pub async fn find_user(&self, id: UserId) -> Result<Option<UserRecord>, RepositoryError> {
        users::Entity::find_by_id(id.as_uuid())
            .one(self.connection())
            .await?
            .map(user_from_model)
            .transpose()
    }

    /// Inserts a user, with `audit`; `Ok(false)` when the username (in any
    /// case) is taken.
    pub async fn create_user(&self, user: NewUser, audit: &AuditRecord) -> Result<bool, RepositoryError> {
        let audit = audit.clone().user(user.id);
        let model = users::ActiveModel {
            id: Set(user.id.as_uuid()),
            username: Set(user.username.as_str().to_owned()),
            username_key: Set(user.username.key()),
            password_hash: Set(user.password_hash),
            roles: Set(roles_to_stored(&user.roles)),
            disabled: Set(false),
            password_changed_at: Set(user.created_at.as_millis()),
            created_at: Set(user.created_at.as_millis()),
        };
        let transaction = self.begin_write().await?;
        match users::Entity::insert(model).exec_without_returning(&*transaction).await {
            Ok(_) => {
                append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
                transaction.commit().await?;
                Ok(true)
            }
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Replaces a hash computed with outdated parameters, unless the password
    /// changed meanwhile; whether it did.
    pub async fn upgrade_password_hash(
        &self,
        id: UserId,
        old_hash: &SecretString,
        new_hash: String,
    ) -> Result<bool, RepositoryError> {
        let transaction = self.begin_write().await?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, new_hash.into())
            .filter(users::Column::Id.eq(id.as_uuid()))
            .filter(users::Column::PasswordHash.eq(old_hash.expose_secret()))
            .exec(&*transaction)
            .await?;
        transaction.commit().await?;
        Ok(updated.rows_affected == 1)
    }

    /// Disables or enables a user; disabling revokes all the user's live
    /// sessions in the same transaction. `None` when there is no such user.
    /// `audit` is written with the change, its detail the count of revoked sessions.
    pub async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        now: Timestamp,
        audit: &AuditRecord,
    ) -> Result<Option<RevokedSessions>, RepositoryError> {
        let transaction = self.begin_write().await?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::Disabled, disabled.into())
            .filter(users::Column::Id.eq(id.as_uuid()))
            .exec(&*transaction)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        let revocations = if disabled {
            sessions::revoke_user_sessions(&transaction, id, None, RevocationReason::UserDisabled, now).await?
        } else {
            RevokedSessions::default()
        };
        let audit = audit.clone().user(id).detail(format!("revoked {}", revocations.sessions.len()));
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        transaction.commit().await?;
        Ok(Some(revocations))
    }

    /// Replaces a user's roles, with `audit`; `false` when there is no such
    /// user. The user's next refresh carries them.
    pub async fn set_user_roles(
        &self,
        id: UserId,
        roles: &Roles,
        audit: &AuditRecord,
    ) -> Result<bool, RepositoryError> {
        let transaction = self.begin_write().await?;
        let updated = users::Entity::update_many()
            .col_expr(users::Column::Roles, roles_to_stored(roles).into())
            .filter(users::Column::Id.eq(id.as_uuid()))
            .exec(&*transaction)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(false);
        }
        let audit = audit.clone().user(id).detail(roles.names().join(","));
        append_audit(&*transaction, std::slice::from_ref(&audit)).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

pub(super) fn roles_to_stored(roles: &Roles) -> String {
    serde_json::to_string(&roles.names()).unwrap_or_else(|_| "[]".into())
}

pub(super) fn user_from_model(model: users::Model) -> Result<UserRecord, RepositoryError> {
    let names: Vec<String> = serde_json::from_str(&model.roles)
        .map_err(|_| RepositoryError::corrupt(format!("roles of user {}", model.id)))?;
    let roles =
        Roles::parse("roles", &names).map_err(|_| RepositoryError::corrupt(format!("roles of user {}", model.id)))?;
    Ok(UserRecord {
        id: UserId::from_uuid(model.id),
        username: Username::from_stored(model.username),
        password_hash: SecretString::from(model.password_hash),
        roles,
        disabled: model.disabled,
    })
}
