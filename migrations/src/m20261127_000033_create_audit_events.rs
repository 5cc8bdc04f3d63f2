//! The audit trail: one row per thing that happened (logins and failed
//! logins, refreshes, logouts, revocations, admin actions, security events),
//! written in the same transaction as the change it records. Security events
//! also take a `security_cursor` from the single row of `security_cursor`,
//! inside their transaction, so the admin stream reads them gapless and in
//! commit order.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(big_integer(AuditEvents::Id).auto_increment().primary_key())
                    .col(big_integer(AuditEvents::OccurredAt))
                    .col(string(AuditEvents::Kind))
                    // The admin key's name (or "cli"): who acted, when not the user.
                    .col(string_null(AuditEvents::Actor))
                    .col(uuid_null(AuditEvents::UserId))
                    .col(uuid_null(AuditEvents::SessionId))
                    .col(string_null(AuditEvents::IpAddress))
                    .col(string_null(AuditEvents::UserAgentFamily))
                    .col(string_null(AuditEvents::DeviceId))
                    .col(string_null(AuditEvents::Detail))
                    // Security events only.
                    .col(string_null(AuditEvents::Severity))
                    .col(big_integer_null(AuditEvents::SecurityCursor).unique_key())
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_audit_events_user_id", AuditEvents::UserId),
            ("idx_audit_events_session_id", AuditEvents::SessionId),
            ("idx_audit_events_occurred_at", AuditEvents::OccurredAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(column)
                        .col(AuditEvents::Id)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(SecurityCursor::Table)
                    .if_not_exists()
                    .col(integer(SecurityCursor::Id).primary_key())
                    .col(big_integer(SecurityCursor::LastCursor))
                    .to_owned(),
            )
            .await?;
        let seed = Query::insert()
            .into_table(SecurityCursor::Table)
            .columns([SecurityCursor::Id, SecurityCursor::LastCursor])
            .values_panic([1.into(), 0i64.into()])
            .to_owned();
        manager.exec_stmt(seed).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SecurityCursor::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Kind,
    Actor,
    UserId,
    SessionId,
    IpAddress,
    UserAgentFamily,
    DeviceId,
    Detail,
    Severity,
    SecurityCursor,
}

#[derive(DeriveIden)]
enum SecurityCursor {
    Table,
    Id,
    LastCursor,
}
