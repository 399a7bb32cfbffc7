//! Moving a database from SQLite to PostgreSQL (`ci-admin db copy`): every table of the schema,
//! found in the schema itself (so a table added later is copied without a change here), parents
//! before the tables whose foreign keys name them, in one PostgreSQL transaction (all or
//! nothing), then the row counts compared table by table.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _, SqlitePool};

use super::DbError;

/// Most bind parameters in one `INSERT` (PostgreSQL allows 65,535).
const MAX_PARAMETERS: usize = 30_000;
/// Most bytes of values in one `INSERT` (blob chunks are 256 KiB each).
const MAX_BATCH_BYTES: usize = 8 << 20;

/// What a copy did: the rows of each table, in the order they were copied, and how many text
/// values held NUL characters, which PostgreSQL's text cannot (a test may print one), each
/// replaced by U+FFFD ([`postgres_text`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableCount>,
    pub nul_replaced: u64,
}

/// `text` as PostgreSQL can store it: each NUL character (which SQLite's text holds and
/// PostgreSQL's does not) replaced by U+FFFD, the character that stands for one that could not
/// be kept.
pub fn postgres_text(text: String) -> (String, bool) {
    match super::stored_text(true, &text) {
        std::borrow::Cow::Borrowed(_) => (text, false),
        std::borrow::Cow::Owned(replaced) => (replaced, true),
    }
}

/// One table's rows, as counted in both databases after the copy (always equal in a report:
/// a difference is an error).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TableCount {
    pub table: String,
    pub rows: i64,
}

/// Why a copy did not happen. Nothing is written to the target when it fails.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target database is not empty ({table} has {rows} row{}): copy into a new, empty \
         database", if *rows == 1 { "" } else { "s" }
    )]
    TargetNotEmpty { table: String, rows: i64 },
    #[error("the two databases' schemas differ ({0}): run the same version of ci against both")]
    SchemaDiffers(String),
    #[error("after the copy {table} has {source_rows} rows in the source and {target_rows} in the target; nothing was copied")]
    CountMismatch {
        table: String,
        source_rows: i64,
        target_rows: i64,
    },
    #[error("cannot copy {table}")]
    Table { table: String, source: sqlx::Error },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// A column's PostgreSQL type, as far as the copy needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Integer,
    Boolean,
    Text,
    Timestamp,
    Bytes,
}

/// One value on its way from SQLite to PostgreSQL.
enum Value {
    Integer(Option<i64>),
    Boolean(Option<bool>),
    Text(Option<String>),
    Timestamp(Option<DateTime<Utc>>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    /// Column `i` of `row`; `nul_replaced` counts the text values [`postgres_text`] changed.
    fn read(
        row: &sqlx::sqlite::SqliteRow,
        i: usize,
        kind: Kind,
        nul_replaced: &mut u64,
    ) -> Result<Self, sqlx::Error> {
        Ok(match kind {
            Kind::Integer => Self::Integer(row.try_get(i)?),
            Kind::Boolean => Self::Boolean(row.try_get(i)?),
            Kind::Text => Self::Text(row.try_get::<Option<String>, _>(i)?.map(|text| {
                let (text, replaced) = postgres_text(text);
                *nul_replaced += u64::from(replaced);
                text
            })),
            Kind::Timestamp => Self::Timestamp(row.try_get(i)?),
            Kind::Bytes => Self::Bytes(row.try_get(i)?),
        })
    }

    /// Roughly the bytes it takes in a statement.
    fn size(&self) -> usize {
        match self {
            Self::Text(Some(s)) => s.len(),
            Self::Bytes(Some(b)) => b.len(),
            _ => 8,
        }
    }

    fn bind<'args>(
        self,
        values: &mut sqlx::query_builder::Separated<'_, 'args, Postgres, &'static str>,
    ) {
        match self {
            Self::Integer(v) => values.push_bind(v),
            Self::Boolean(v) => values.push_bind(v),
            Self::Text(v) => values.push_bind(v),
            Self::Timestamp(v) => values.push_bind(v),
            Self::Bytes(v) => values.push_bind(v),
        };
    }
}

/// The tables of the SQLite schema (without SQLite's and the migrator's own), each after the
/// tables its foreign keys reference.
async fn tables_in_order(source: &SqlitePool) -> Result<Vec<String>, CopyError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(source)
    .await?;
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for table in &tables {
        let referenced: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(table)
                .fetch_all(source)
                .await?;
        parents.insert(
            table.clone(),
            referenced.into_iter().filter(|p| p != table).collect(),
        );
    }
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < tables.len() {
        let ready: Vec<String> = tables
            .iter()
            .filter(|t| !ordered.contains(t))
            .filter(|t| parents[*t].iter().all(|p| ordered.contains(p)))
            .cloned()
            .collect();
        if ready.is_empty() {
            return Err(CopyError::SchemaDiffers(
                "the foreign keys of the SQLite schema form a cycle".into(),
            ));
        }
        ordered.extend(ready);
    }
    Ok(ordered)
}

/// The columns of `table` in the target, with their kinds, in the target's order; checked
/// against the source's columns.
async fn columns(
    source: &SqlitePool,
    target: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<(String, Kind)>, CopyError> {
    let target_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *target)
    .await?;
    let source_columns: BTreeSet<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(source)
            .await?
            .into_iter()
            .collect();
    let names: BTreeSet<String> = target_columns.iter().map(|(n, _)| n.clone()).collect();
    if target_columns.is_empty() {
        return Err(CopyError::SchemaDiffers(format!(
            "the target has no table {table}"
        )));
    }
    if names != source_columns {
        let only_source: Vec<_> = source_columns.difference(&names).collect();
        let only_target: Vec<_> = names.difference(&source_columns).collect();
        return Err(CopyError::SchemaDiffers(format!(
            "{table}: columns only in the source {only_source:?}, only in the target {only_target:?}"
        )));
    }
    target_columns
        .into_iter()
        .map(|(name, ty)| {
            let kind = match ty.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "boolean" => Kind::Boolean,
                "text" | "character varying" => Kind::Text,
                "timestamp with time zone" => Kind::Timestamp,
                "bytea" => Kind::Bytes,
                other => {
                    return Err(CopyError::SchemaDiffers(format!(
                        "{table}.{name} has the type {other}, which the copy does not know"
                    )))
                }
            };
            Ok((name, kind))
        })
        .collect()
}

/// Copies every row of `source` into `target`, which must hold the same schema (both migrated
/// by this version) and no rows at all. Runs in one transaction on the target: on any error
/// the target is left as it was. The source should not change meanwhile (stop the services):
/// its tables are read one after the other.
pub async fn sqlite_to_postgres(
    source: &SqlitePool,
    target: &PgPool,
) -> Result<CopyReport, CopyError> {
    let tables = tables_in_order(source).await?;
    let target_tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(target)
    .await?
    .into_iter()
    .collect();
    let source_tables: BTreeSet<String> = tables.iter().cloned().collect();
    if source_tables != target_tables {
        let only_source: Vec<_> = source_tables.difference(&target_tables).collect();
        let only_target: Vec<_> = target_tables.difference(&source_tables).collect();
        return Err(CopyError::SchemaDiffers(format!(
            "tables only in the source {only_source:?}, only in the target {only_target:?}"
        )));
    }
    let mut tx = target.begin().await?;
    for table in &tables {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .fetch_one(&mut *tx)
            .await?;
        if rows > 0 {
            return Err(CopyError::TargetNotEmpty {
                table: table.clone(),
                rows,
            });
        }
    }
    let mut report = CopyReport::default();
    for table in &tables {
        let columns = columns(source, &mut tx, table).await?;
        copy_table(source, &mut tx, table, &columns, &mut report.nul_replaced)
            .await
            .map_err(|source| CopyError::Table {
                table: table.clone(),
                source,
            })?;
        let count = format!("SELECT COUNT(*) FROM \"{table}\"");
        let source_rows: i64 = sqlx::query_scalar(&count).fetch_one(source).await?;
        let target_rows: i64 = sqlx::query_scalar(&count).fetch_one(&mut *tx).await?;
        if source_rows != target_rows {
            return Err(CopyError::CountMismatch {
                table: table.clone(),
                source_rows,
                target_rows,
            });
        }
        report.tables.push(TableCount {
            table: table.clone(),
            rows: target_rows,
        });
    }
    // Identity columns (jobs.num) continue after the highest copied value.
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in identities {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), \
             COALESCE((SELECT MAX(\"{column}\") FROM \"{table}\"), 0) + 1, false)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// Streams `table`'s rows out of `source` into batched `INSERT`s on `target`.
async fn copy_table(
    source: &SqlitePool,
    target: &mut sqlx::PgConnection,
    table: &str,
    columns: &[(String, Kind)],
    nul_replaced: &mut u64,
) -> Result<(), sqlx::Error> {
    let list = columns
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!("SELECT {list} FROM \"{table}\"");
    let insert = format!("INSERT INTO \"{table}\" ({list}) ");
    let max_rows = (MAX_PARAMETERS / columns.len().max(1)).max(1);
    let mut rows = sqlx::query(&select).fetch(source);
    let mut batch: Vec<Vec<Value>> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            let values = columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| Value::read(row, i, *kind, nul_replaced))
                .collect::<Result<Vec<_>, _>>()?;
            batch_bytes += values.iter().map(Value::size).sum::<usize>();
            batch.push(values);
        }
        let full = batch.len() >= max_rows || batch_bytes >= MAX_BATCH_BYTES;
        if !batch.is_empty() && (full || row.is_none()) {
            let mut query = QueryBuilder::<Postgres>::new(&insert);
            // Explicit values for identity columns too (`jobs.num`), as the source has them.
            query.push_values(std::mem::take(&mut batch), |mut values, row| {
                for value in row {
                    value.bind(&mut values);
                }
            });
            query.build().execute(&mut *target).await?;
            batch_bytes = 0;
        }
        if row.is_none() {
            return Ok(());
        }
    }
}
