//! The PostgreSQL schema (`migrations/postgres/`) is the SQLite schema (`migrations/sqlite/`) in
//! PostgreSQL's types: the same tables, columns, nullability and indexes. A migration added to
//! one backend and not the other fails here. Against a real PostgreSQL server (a throwaway
//! cluster; scripts/ensure-postgres.sh installs the server).

use std::collections::{BTreeMap, BTreeSet};

use ci_common::db;
use ci_tests::postgres::{self, Postgres};

/// A column as both backends can describe it.
#[derive(Debug, PartialEq)]
struct Column {
    /// The SQLite type affinity the column has, or the one the PostgreSQL type stands for.
    class: &'static str,
    not_null: bool,
}

/// Table name → column name → column.
type Schema = BTreeMap<String, BTreeMap<String, Column>>;

/// SQLite's declared types, by class.
fn sqlite_class(declared: &str) -> &'static str {
    match declared.to_ascii_uppercase().as_str() {
        "INTEGER" => "integer",
        "TEXT" => "text",
        "BLOB" => "blob",
        other => panic!("a SQLite column of type {other}: add its PostgreSQL counterpart here"),
    }
}

/// The SQLite class a PostgreSQL type stands for (see migrations/postgres: flags are BOOLEAN,
/// timestamps TIMESTAMPTZ).
fn postgres_class(table: &str, column: &str, ty: &str) -> &'static str {
    match ty {
        "bigint" | "boolean" => "integer",
        "text" => "text",
        "timestamp with time zone" => {
            assert!(
                column.ends_with("_at") || column == "ts" || column == "at",
                "{table}.{column} is a timestamp on PostgreSQL but not named as one (*_at, at, ts)"
            );
            "text"
        }
        "bytea" => "blob",
        other => panic!(
            "{table}.{column} has the PostgreSQL type {other}, which SQLite has no class for"
        ),
    }
}

async fn sqlite_schema(pool: &db::SqlitePool) -> (Schema, BTreeSet<String>) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for table in tables {
        // A key column is never NULL (INTEGER PRIMARY KEY is the rowid), whatever `notnull` says.
        let columns: Vec<(String, String, bool)> =
            sqlx::query_as("SELECT name, type, \"notnull\" OR pk > 0 FROM pragma_table_info(?)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .unwrap();
        let columns = columns
            .into_iter()
            .map(|(name, ty, not_null)| {
                let class = sqlite_class(&ty);
                (name, Column { class, not_null })
            })
            .collect();
        schema.insert(table, columns);
    }
    // Indexes the migrations create by name (not those SQLite makes for keys).
    let indexes = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (schema, indexes.into_iter().collect())
}

async fn postgres_schema(pool: &sqlx::PgPool) -> (Schema, BTreeSet<String>) {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (table, column, ty, nullable) in rows {
        let class = postgres_class(&table, &column, &ty);
        let not_null = nullable == "NO";
        schema
            .entry(table)
            .or_default()
            .insert(column, Column { class, not_null });
    }
    // Indexes by name, without those PostgreSQL makes for keys and unique constraints.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT i.indexname::text FROM pg_indexes i \
         WHERE i.schemaname = 'public' AND NOT EXISTS \
           (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (schema, indexes.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_schema_has_every_table_column_and_index_of_the_sqlite_one() {
    if !postgres::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = db::connect(&dir.path().join("ci.db"), 2).await.unwrap();
    let cluster = Postgres::shared();
    let url = cluster.fresh_database("schema_parity");
    let settings = db::PostgresSettings {
        max_connections: 2,
        statement_timeout: None,
    };
    let pg = db::connect_postgres(&url, &settings).await.unwrap();

    let (sqlite_tables, sqlite_indexes) = sqlite_schema(&sqlite).await;
    let (pg_tables, pg_indexes) = postgres_schema(&pg).await;
    assert!(sqlite_tables.contains_key("jobs") && sqlite_tables.len() >= 14);
    assert_eq!(
        sqlite_tables.keys().collect::<Vec<_>>(),
        pg_tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, columns) in &sqlite_tables {
        assert_eq!(columns, &pg_tables[table], "the columns of {table}");
    }
    // SQLite's case-insensitive unique email (a column constraint there) is an index on
    // PostgreSQL.
    let mut expected = sqlite_indexes;
    expected.insert("users_email_nocase".to_owned());
    assert_eq!(expected, pg_indexes, "the same indexes");
}

/// Migrating is safe when several processes start at once: every one connects, and the
/// migrations are applied once.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_migrations_apply_once_when_many_connect_at_once() {
    if !postgres::available() {
        return;
    }
    let cluster = Postgres::shared();
    let url = cluster.fresh_database("migrate_at_once");
    let settings = db::PostgresSettings {
        max_connections: 2,
        statement_timeout: Some(std::time::Duration::from_secs(30)),
    };
    let connects = (0..6).map(|_| db::connect_postgres(&url, &settings));
    let pools = futures_util::future::join_all(connects).await;
    let pools: Vec<sqlx::PgPool> = pools.into_iter().map(Result::unwrap).collect();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pools[0])
        .await
        .unwrap();
    assert_eq!(applied, db::POSTGRES_MIGRATOR.iter().count() as i64);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pools[5])
        .await
        .unwrap();
    assert_eq!(timeout, "30s");
    // Connecting again applies nothing and does not fail.
    drop(pools);
    db::connect_postgres(&url, &settings).await.unwrap();
}

/// A server that is not there is an error naming the database, without its password.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_does_not_answer_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ci:hunter2@127.0.0.1:{port}/ci?connect_timeout=2");
    let settings = db::PostgresSettings {
        max_connections: 1,
        statement_timeout: None,
    };
    let err = db::connect_postgres(&url, &settings).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains(&format!("127.0.0.1:{port}/ci")), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
