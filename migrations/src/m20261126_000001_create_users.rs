//! Users who can log in.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(pk_uuid(Users::Id))
                    .col(string(Users::Username))
                    // Lower-cased username: uniqueness is case-insensitive on every backend.
                    .col(string_uniq(Users::UsernameKey))
                    .col(text(Users::PasswordHash))
                    // JSON array of role names.
                    .col(text(Users::Roles))
                    .col(boolean(Users::Disabled).default(false))
                    .col(big_integer(Users::PasswordChangedAt))
                    .col(big_integer(Users::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum Users {
    Table,
    Id,
    Username,
    UsernameKey,
    PasswordHash,
    Roles,
    Disabled,
    PasswordChangedAt,
    CreatedAt,
}
