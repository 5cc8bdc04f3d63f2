//! Signing keys with a life: published, signing, retired, deleted, as the
//! times stored here and the clock say (`src/domain/tokens/schedule.rs`),
//! shared by every replica. Replaces `signing_keys`, whose keys (HS256,
//! made by versions before this one when JWT_SECRET was not set) move here
//! as they were: signing since they were made, and accepting the `typ: JWT`
//! tokens they signed before tokens were typed `at+jwt`.
//!
//! - `generation` numbers rotations and is unique: of replicas racing to
//!   publish the same rotation, exactly one insert succeeds.
//! - `private_key` is the HMAC secret or PKCS#8 private key, sealed with
//!   AES-256-GCM under KEY_ENCRYPTION_KEY (`sealing` = `aes-256-gcm`, the
//!   `kid` as associated data), or stored as it is (`none`) without one.
//! - `retires_at` is NULL until a successor is published; it is then the
//!   successor's `activates_at`.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{ConnectionTrait, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenKeys::Table)
                    .if_not_exists()
                    .col(string(TokenKeys::Kid).primary_key())
                    .col(big_integer(TokenKeys::Generation).unique_key())
                    .col(string(TokenKeys::Algorithm))
                    .col(blob(TokenKeys::PrivateKey))
                    .col(string(TokenKeys::Sealing))
                    .col(boolean(TokenKeys::LegacyType))
                    .col(big_integer(TokenKeys::PublishedAt))
                    .col(big_integer(TokenKeys::ActivatesAt))
                    .col(big_integer_null(TokenKeys::RetiresAt))
                    .to_owned(),
            )
            .await?;
        if !manager.has_table("signing_keys").await? {
            return Ok(());
        }
        let connection = manager.get_connection();
        let backend = connection.get_database_backend();
        let legacy = connection
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT kid, algorithm, key_material, created_at FROM signing_keys ORDER BY created_at, kid",
            ))
            .await?;
        for (generation, row) in (1i64..).zip(legacy) {
            let kid: String = row.try_get("", "kid")?;
            let algorithm: String = row.try_get("", "algorithm")?;
            let material: Vec<u8> = row.try_get("", "key_material")?;
            let created_at: i64 = row.try_get("", "created_at")?;
            let insert = Query::insert()
                .into_table(TokenKeys::Table)
                .columns([
                    TokenKeys::Kid,
                    TokenKeys::Generation,
                    TokenKeys::Algorithm,
                    TokenKeys::PrivateKey,
                    TokenKeys::Sealing,
                    TokenKeys::LegacyType,
                    TokenKeys::PublishedAt,
                    TokenKeys::ActivatesAt,
                ])
                .values_panic([
                    kid.into(),
                    generation.into(),
                    algorithm.into(),
                    material.into(),
                    "none".into(),
                    true.into(),
                    created_at.into(),
                    created_at.into(),
                ])
                .to_owned();
            manager.exec_stmt(insert).await?;
        }
        // The plaintext copies go: the keys now live (and are sealed) here.
        manager.drop_table(Table::drop().table(SigningKeys::Table).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(string(SigningKeys::Kid).primary_key())
                    .col(string(SigningKeys::Algorithm))
                    .col(blob(SigningKeys::KeyMaterial))
                    .col(big_integer(SigningKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // What the older version can read: unsealed HS256 keys.
        let copy = Query::insert()
            .into_table(SigningKeys::Table)
            .columns([
                SigningKeys::Kid,
                SigningKeys::Algorithm,
                SigningKeys::KeyMaterial,
                SigningKeys::CreatedAt,
            ])
            .select_from(
                Query::select()
                    .columns([
                        TokenKeys::Kid,
                        TokenKeys::Algorithm,
                        TokenKeys::PrivateKey,
                        TokenKeys::ActivatesAt,
                    ])
                    .from(TokenKeys::Table)
                    .and_where(Expr::col(TokenKeys::Algorithm).eq("HS256"))
                    .and_where(Expr::col(TokenKeys::Sealing).eq("none"))
                    .to_owned(),
            )
            .map_err(|error| DbErr::Migration(error.to_string()))?
            .to_owned();
        manager.exec_stmt(copy).await?;
        manager.drop_table(Table::drop().table(TokenKeys::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum TokenKeys {
    Table,
    Kid,
    Generation,
    Algorithm,
    PrivateKey,
    Sealing,
    LegacyType,
    PublishedAt,
    ActivatesAt,
    RetiresAt,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    KeyMaterial,
    CreatedAt,
}
