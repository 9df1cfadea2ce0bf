//! The database handle.
//!
//! SQLite allows one writer at a time; a deferred transaction that later
//! tries to write fails with `SQLITE_BUSY` instead of waiting when another
//! writer got there first. So on SQLite every write goes through a pool of
//! exactly one connection (writers queue in the pool, never in SQLite) and
//! reads use a separate pool of WAL readers. On MySQL both are one pool.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor};

use crate::error::{DbError, Result};

/// SQL dialect of the connected database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
}

impl Dialect {
    /// `SUM(expr)` as a 64-bit integer: MySQL returns DECIMAL for SUM, which
    /// the runtime-generic driver cannot decode.
    pub fn sum_int(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST(COALESCE(SUM({expr}), 0) AS INTEGER)"),
            Dialect::Mysql => format!("CAST(COALESCE(SUM({expr}), 0) AS SIGNED)"),
        }
    }
}

/// A write transaction.
pub type DbTx = sqlx::Transaction<'static, Any>;

/// Cheap to clone handle to the database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    read: AnyPool,
    write: AnyPool,
    dialect: Dialect,
    display_url: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.inner.display_url)
            .finish()
    }
}

impl Db {
    /// Connect to `url`: `sqlite://path?mode=rwc`, `sqlite::memory:`,
    /// `mysql://user:pass@host:port/db`, or a Go-style DSN
    /// `user:pass@tcp(host:port)/db` as Cloudpods configs use. A missing
    /// MySQL database is created.
    pub async fn connect(url: &str) -> Result<Db> {
        install_default_drivers();
        let url = normalize_url(url)?;
        let display_url = redact(&url);
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
                .connect(&url)
                .await
                .map_err(DbError::from)?;
            let read = if memory {
                write.clone()
            } else {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
                    .connect(&url)
                    .await
                    .map_err(DbError::from)?
            };
            return Ok(Db {
                inner: Arc::new(Inner {
                    read,
                    write,
                    dialect: Dialect::Sqlite,
                    display_url,
                }),
            });
        }
        if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            ensure_mysql_database(&url).await?;
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET SESSION sql_mode='STRICT_TRANS_TABLES,NO_ZERO_DATE'")
                            .await?;
                        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                            .await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
                .map_err(DbError::from)?;
            return Ok(Db {
                inner: Arc::new(Inner {
                    read: pool.clone(),
                    write: pool,
                    dialect: Dialect::Mysql,
                    display_url,
                }),
            });
        }
        Err(DbError::Config(format!(
            "unsupported database url {display_url}: use sqlite:// or mysql://"
        )))
    }

    /// Pool for reads (WAL readers on SQLite).
    pub fn read(&self) -> &AnyPool {
        &self.inner.read
    }

    /// Pool for writes outside an explicit transaction.
    pub fn write(&self) -> &AnyPool {
        &self.inner.write
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The URL with any password removed, for logs.
    pub fn display_url(&self) -> &str {
        &self.inner.display_url
    }

    /// Start a write transaction.
    pub async fn begin(&self) -> Result<DbTx> {
        Ok(self.inner.write.begin().await?)
    }

    pub async fn close(&self) {
        self.inner.write.close().await;
        self.inner.read.close().await;
    }
}

async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=30000; \
         PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF",
    )
    .await?;
    Ok(())
}

/// Accept Cloudpods' Go-style DSNs (`root:pw@tcp(127.0.0.1:3306)/yunioncloud?charset=utf8`)
/// and `mysql+pymysql://` URLs next to plain sqlx URLs.
fn normalize_url(url: &str) -> Result<String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(DbError::Config("empty database url".into()));
    }
    if let Some(rest) = url.strip_prefix("mysql+pymysql://") {
        return Ok(format!("mysql://{rest}"));
    }
    if !url.contains("://")
        && !url.starts_with("sqlite:")
        && let Some((cred, rest)) = url.split_once("@tcp(")
        && let Some((hostport, tail)) = rest.split_once(')')
    {
        let db = tail.trim_start_matches('/');
        let db = db.split('?').next().unwrap_or_default();
        return Ok(format!("mysql://{cred}@{hostport}/{db}"));
    }
    Ok(url.to_string())
}

fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((cred, host)) => {
            let user = cred.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

async fn ensure_mysql_database(url: &str) -> Result<()> {
    // mysql://cred@host/db?params → connect to mysql://cred@host/ and create db.
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(DbError::Config("bad mysql url".into()));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let db = path.split('?').next().unwrap_or_default();
    if db.is_empty() {
        return Err(DbError::Config(
            "mysql url must name a database (mysql://user@host:3306/cloudpods)".into(),
        ));
    }
    if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbError::Config(format!("invalid database name {db:?}")));
    }
    let server_url = format!("{scheme}://{authority}/");
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server_url)
        .await
        .map_err(DbError::from)?;
    pool.execute(AssertSqlSafe(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )))
    .await?;
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dsn_is_converted() {
        assert_eq!(
            normalize_url("root:pw@tcp(127.0.0.1:3306)/yunioncloud?charset=utf8").unwrap(),
            "mysql://root:pw@127.0.0.1:3306/yunioncloud"
        );
        assert_eq!(
            normalize_url("mysql+pymysql://root@h/db").unwrap(),
            "mysql://root@h/db"
        );
        assert_eq!(redact("mysql://root:secret@h/db"), "mysql://root:***@h/db");
    }
}
