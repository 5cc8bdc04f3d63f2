//! Sessions: one row per login, carrying the id of its current token and of
//! the token retired by the last rotation.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261126_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(big_integer(Sessions::CreatedAt))
                    .col(big_integer(Sessions::RefreshedAt))
                    .col(big_integer(Sessions::ExpiresAt))
                    .col(boolean(Sessions::RememberMe))
                    .col(string_null(Sessions::IpAddress))
                    .col(string_null(Sessions::UserAgent))
                    .col(string_null(Sessions::DeviceId))
                    .col(uuid(Sessions::CurrentTokenId))
                    .col(uuid_null(Sessions::PreviousTokenId))
                    .col(big_integer_null(Sessions::PreviousTokenRetiredAt))
                    .col(big_integer_null(Sessions::RevokedAt))
                    .col(string_null(Sessions::RevokeReason))
                    // Bumped by every change, so caches never go back to an older state.
                    .col(big_integer(Sessions::Version))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user_id")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_id_created_at")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .col(Sessions::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Cleanup deletes by expiry in batches.
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_expires_at")
                    .table(Sessions::Table)
                    .col(Sessions::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Sessions::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum Sessions {
    Table,
    Id,
    UserId,
    CreatedAt,
    RefreshedAt,
    ExpiresAt,
    RememberMe,
    IpAddress,
    UserAgent,
    DeviceId,
    CurrentTokenId,
    PreviousTokenId,
    PreviousTokenRetiredAt,
    RevokedAt,
    RevokeReason,
    Version,
}
