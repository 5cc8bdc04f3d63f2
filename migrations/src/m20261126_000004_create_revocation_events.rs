//! The revocation outbox: one row per revoked session or retired token,
//! written in the same transaction as the revocation itself.
//!
//! Readers follow `cursor`, handed out from the single row of
//! `revocation_cursor` while that row is locked, so cursors are gapless and
//! in the order of the transactions that hand them out: a reader that has
//! seen cursor N can never later find an event below N. On SQLite (one
//! writer anyway) the revoking transaction takes its cursor itself. On
//! PostgreSQL it writes the event without one (`cursor` NULL, ordered by
//! `id`) and a sequencer hands cursors out in batches just after, so that
//! concurrent writers never queue behind one another on the cursor row.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevocationEvents::Table)
                    .if_not_exists()
                    .col(big_integer(RevocationEvents::Id).auto_increment().primary_key())
                    // NULL until sequenced (PostgreSQL); unique once set.
                    .col(big_integer_null(RevocationEvents::Cursor).unique_key())
                    .col(uuid(RevocationEvents::SessionId))
                    .col(uuid(RevocationEvents::UserId))
                    .col(uuid_null(RevocationEvents::TokenId))
                    .col(string(RevocationEvents::Reason))
                    .col(big_integer(RevocationEvents::RevokedAt))
                    .col(big_integer(RevocationEvents::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // The snapshot reads events whose tokens have not expired yet.
        manager
            .create_index(
                Index::create()
                    .name("idx_revocation_events_expires_at")
                    .table(RevocationEvents::Table)
                    .col(RevocationEvents::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RevocationCursor::Table)
                    .if_not_exists()
                    .col(integer(RevocationCursor::Id).primary_key())
                    // The last cursor handed out.
                    .col(big_integer(RevocationCursor::LastCursor))
                    // Every event at or below this cursor may have been deleted by cleanup.
                    .col(big_integer(RevocationCursor::PrunedThrough))
                    .to_owned(),
            )
            .await?;
        let seed = Query::insert()
            .into_table(RevocationCursor::Table)
            .columns([
                RevocationCursor::Id,
                RevocationCursor::LastCursor,
                RevocationCursor::PrunedThrough,
            ])
            .values_panic([1.into(), 0i64.into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(seed).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RevocationCursor::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(RevocationEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum RevocationEvents {
    Table,
    Id,
    Cursor,
    SessionId,
    UserId,
    TokenId,
    Reason,
    RevokedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum RevocationCursor {
    Table,
    Id,
    LastCursor,
    PrunedThrough,
}
