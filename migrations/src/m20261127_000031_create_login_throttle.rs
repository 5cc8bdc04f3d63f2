//! The login throttle's counters, shared by every replica: one row per key
//! (a SHA-256 of "username", "username and client IP" or "client IP", so no
//! typed-in username is stored), holding the key's theoretical arrival time
//! (GCRA): an attempt is allowed while it stays within the burst of now.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginThrottle::Table)
                    .if_not_exists()
                    .col(string(LoginThrottle::Key).primary_key())
                    // Milliseconds: the key is at full allowance once this has passed.
                    .col(big_integer(LoginThrottle::Tat))
                    .to_owned(),
            )
            .await?;
        // Cleanup deletes the keys back at full allowance.
        manager
            .create_index(
                Index::create()
                    .name("idx_login_throttle_tat")
                    .table(LoginThrottle::Table)
                    .col(LoginThrottle::Tat)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(LoginThrottle::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Tat,
}
