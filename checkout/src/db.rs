//! The database connection every SQL-backed role shares: one sqlx Any pool on SQLite (WAL, the
//! embedded default) or PostgreSQL, and checkout's own migrations, one folder per backend.

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connections a PostgreSQL pool opens by default (SQLite: 4, its one writer at a time).
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 16;

/// Opens a pool of the default size (see [`connect_with`]).
pub async fn connect(url: &str) -> Result<(AnyPool, Backend), DbError> {
    connect_with(url, None).await
}

/// Opens a pool of at most `max_connections` (default: 4 for SQLite,
/// [`DEFAULT_POSTGRES_CONNECTIONS`] for PostgreSQL). SQLite gets WAL, foreign keys and a busy
/// timeout so that concurrent writers queue instead of failing.
pub async fn connect_with(
    url: &str,
    max_connections: Option<u32>,
) -> Result<(AnyPool, Backend), DbError> {
    install_default_drivers();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        return Err(DbError::UnsupportedUrl);
    };
    let sqlite = backend == Backend::Sqlite;
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections.unwrap_or(if sqlite {
            4
        } else {
            DEFAULT_POSTGRES_CONNECTIONS
        }))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                        // Up to 32 MiB of pages per connection (the default is 2; a ceiling,
                        // not memory taken up front; 4 connections by default): a busy sale's
                        // tables outgrow 2 MiB in seconds, and every page read again from the
                        // file is a system call on the write path.
                        "PRAGMA cache_size = -32768",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok((pool, backend))
}

/// Runs checkout's migrations (versions 0100 and up). Other roles' migrations share the same
/// table, hence `ignore_missing`.
pub async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), DbError> {
    // What both engines take alike once, the engine's own scripts where they differ.
    let dialect = if backend == Backend::Sqlite {
        sqlx::migrate!("./migrations/sqlite")
    } else {
        sqlx::migrate!("./migrations/postgres")
    };
    vitrine_core::migrations::merged(&sqlx::migrate!("./migrations/common"), Some(&dialect))?
        .run(pool)
        .await?;
    Ok(())
}

pub use vitrine_core::write_gate::WriteGate;

/// Unix milliseconds, the one time format stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `rows` parenthesised groups of `width` numbered placeholders, for a multi-row VALUES:
/// `value_rows(2, 3)` is `($1, $2, $3), ($4, $5, $6)`.
pub(crate) fn value_rows(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", r * width + c + 1));
        }
        out.push(')');
    }
    out
}

/// Marks a query built with `format!` as safe. Only ever used with column lists and table
/// fragments that are constants of this crate; values always go through `bind`.
pub(crate) fn sql(query: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(query)
}

#[cfg(test)]
mod tests {
    #[test]
    fn value_rows_numbers_placeholders_row_by_row() {
        assert_eq!(super::value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::value_rows(1, 1), "($1)");
    }
}
