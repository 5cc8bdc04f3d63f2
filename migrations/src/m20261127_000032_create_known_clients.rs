//! Devices and networks each user has logged in from: a login from one new to
//! the user raises a security event, and a network the user knows is spared
//! the per-username login cap, so that attackers elsewhere cannot lock the
//! user out of it.

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
                    .table(KnownClients::Table)
                    .if_not_exists()
                    .col(uuid(KnownClients::UserId))
                    // "device" or "network".
                    .col(string(KnownClients::Kind))
                    // The device id, or the network prefix ("203.0.113.0/24").
                    .col(string(KnownClients::Value))
                    .col(big_integer(KnownClients::FirstSeenAt))
                    .col(big_integer(KnownClients::LastSeenAt))
                    .primary_key(
                        Index::create().col(KnownClients::UserId).col(KnownClients::Kind).col(KnownClients::Value),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_known_clients_user_id")
                            .from(KnownClients::Table, KnownClients::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_known_clients_last_seen_at")
                    .table(KnownClients::Table)
                    .col(KnownClients::LastSeenAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KnownClients::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum KnownClients {
    Table,
    UserId,
    Kind,
    Value,
    FirstSeenAt,
    LastSeenAt,
}
