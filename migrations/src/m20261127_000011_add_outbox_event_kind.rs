//! The outbox carries changes of the signing keys besides revocations, so
//! that every replica and every stream subscriber hears of a key in the same
//! cursor order as of everything else. `kind` tells them apart; a key event
//! has no session or user (the nil UUID), its `reason` says what changed, and
//! its `revoked_at` when.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RevocationEvents::Table)
                    .add_column(string(RevocationEvents::Kind).default("revocation"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let key_events = Query::delete()
            .from_table(RevocationEvents::Table)
            .and_where(Expr::col(RevocationEvents::Kind).ne("revocation"))
            .to_owned();
        manager.exec_stmt(key_events).await?;
        manager
            .alter_table(Table::alter().table(RevocationEvents::Table).drop_column(RevocationEvents::Kind).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RevocationEvents {
    Table,
    Kind,
}
