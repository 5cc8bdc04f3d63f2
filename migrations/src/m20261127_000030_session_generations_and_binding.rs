//! Sessions learn their token generation (carried in every token's `gen`
//! claim, bumped by each rotation) and the coarse client attributes they are
//! bound to (network prefix, user-agent family); revocation events carry what
//! a consumer needs to keep one entry per session (the current token, its
//! generation, the end of the retired token's grace period, the session's
//! expiry).
//!
//! Columns are added one statement at a time: SQLite alters one column per
//! statement. Existing rows get generation 0 (their tokens carry no `gen`
//! claim, which reads as 0) and no binding.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261126_000002_create_sessions::Sessions;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sessions = [
            big_integer(SessionColumns::Generation).default(0).to_owned(),
            string_null(SessionColumns::IpNetwork).to_owned(),
            string_null(SessionColumns::UserAgentFamily).to_owned(),
        ];
        for column in sessions {
            manager.alter_table(Table::alter().table(Sessions::Table).add_column(column).to_owned()).await?;
        }
        let events = [
            uuid_null(EventColumns::CurrentTokenId).to_owned(),
            big_integer_null(EventColumns::Generation).to_owned(),
            big_integer_null(EventColumns::GraceEndsAt).to_owned(),
            big_integer_null(EventColumns::SessionExpiresAt).to_owned(),
        ];
        for column in events {
            manager.alter_table(Table::alter().table(EventColumns::Table).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            EventColumns::CurrentTokenId,
            EventColumns::Generation,
            EventColumns::GraceEndsAt,
            EventColumns::SessionExpiresAt,
        ] {
            manager
                .alter_table(Table::alter().table(EventColumns::Table).drop_column(column).to_owned())
                .await?;
        }
        for column in [
            SessionColumns::Generation,
            SessionColumns::IpNetwork,
            SessionColumns::UserAgentFamily,
        ] {
            manager.alter_table(Table::alter().table(Sessions::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum SessionColumns {
    Generation,
    IpNetwork,
    UserAgentFamily,
}

#[derive(DeriveIden)]
enum EventColumns {
    #[sea_orm(iden = "revocation_events")]
    Table,
    CurrentTokenId,
    Generation,
    GraceEndsAt,
    SessionExpiresAt,
}
