//! Schema migration on start.
//!
//! Tables are created and extended from their descriptors (new columns and
//! indexes are added; nothing is dropped automatically), then numbered
//! migrations that the descriptors cannot express run once each, recorded in
//! `schema_migrations`. On MySQL a named lock makes concurrent starts of
//! several processes against one database safe.

use std::collections::HashSet;

use sqlx::{AssertSqlSafe, Executor, Row as _};

use crate::error::Result;
use crate::pool::{Db, Dialect};
use crate::schema::ModelDesc;
use crate::sql::Sql;

/// A numbered migration. `statements` returns the SQL for a dialect.
pub struct Migration {
    /// Unique, increasing per service (prefix with the service's number range).
    pub version: i64,
    pub name: &'static str,
    pub statements: fn(Dialect) -> Vec<String>,
}

/// Create or extend every table of `descs`, then apply pending migrations.
pub async fn sync_schema(db: &Db, descs: &[&ModelDesc], migrations: &[Migration]) -> Result<()> {
    let mut conn = db.write().acquire().await?;
    if db.dialect() == Dialect::Mysql {
        conn.execute("SELECT GET_LOCK('cloudpods_schema', 120)")
            .await?;
    }
    let result = sync_locked(db.dialect(), &mut conn, descs, migrations).await;
    if db.dialect() == Dialect::Mysql {
        conn.execute("SELECT RELEASE_LOCK('cloudpods_schema')")
            .await?;
    }
    result
}

async fn sync_locked(
    dialect: Dialect,
    conn: &mut sqlx::AnyConnection,
    descs: &[&ModelDesc],
    migrations: &[Migration],
) -> Result<()> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS `schema_migrations` (`version` BIGINT PRIMARY KEY, \
         `name` VARCHAR(128), `applied_at` VARCHAR(32))",
    )
    .await?;
    for desc in descs {
        let existing = existing_columns(dialect, conn, desc.table).await?;
        if existing.is_empty() {
            conn.execute(AssertSqlSafe(desc.create_table_ddl(dialect)))
                .await?;
        } else {
            for col in &desc.columns {
                if !existing.contains(&col.name.to_ascii_lowercase()) {
                    let ddl = format!(
                        "ALTER TABLE `{}` ADD COLUMN {}",
                        desc.table,
                        col.ddl(dialect)
                    );
                    tracing::info!(table = desc.table, column = col.name, "adding column");
                    conn.execute(AssertSqlSafe(ddl)).await?;
                }
            }
        }
        let indexes = existing_indexes(dialect, conn, desc.table).await?;
        for idx in &desc.indexes {
            if !indexes.contains(&idx.name.to_ascii_lowercase()) {
                conn.execute(AssertSqlSafe(desc.index_ddl(idx))).await?;
            }
        }
    }
    let applied: HashSet<i64> = sqlx::query("SELECT `version` FROM `schema_migrations`")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .filter_map(|r| r.try_get::<i64, _>(0).ok())
        .collect();
    let mut pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    pending.sort_by_key(|m| m.version);
    for m in pending {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        for stmt in (m.statements)(dialect) {
            conn.execute(AssertSqlSafe(stmt)).await?;
        }
        let mut ins =
            Sql::new("INSERT INTO `schema_migrations` (`version`, `name`, `applied_at`) VALUES ");
        ins.bind_list([
            crate::SqlValue::Int(m.version),
            m.name.into(),
            cloudpods_apis::time::now().into(),
        ]);
        ins.query()?.execute(&mut *conn).await?;
    }
    if dialect == Dialect::Sqlite {
        seed_sqlite_stats(conn, descs).await?;
    }
    Ok(())
}

/// Tell SQLite's planner that the live-row flags (`deleted`,
/// `pending_deleted`) do not narrow anything.
///
/// Without statistics SQLite assumes an equality on an indexed column is
/// selective, so for `WHERE deleted = 0 AND id IN (…)` it would walk the
/// index of the flags — every row — instead of the primary key. Seeded
/// `sqlite_stat1` rows give the flag-prefixed indexes their true shape
/// (every row matches the flags; the columns after them do narrow). A real
/// `ANALYZE` later replaces them.
async fn seed_sqlite_stats(conn: &mut sqlx::AnyConnection, descs: &[&ModelDesc]) -> Result<()> {
    // ANALYZE of a tiny table creates sqlite_stat1 when it is missing.
    conn.execute("ANALYZE `schema_migrations`").await?;
    const ROWS: u64 = 1_000_000;
    for desc in descs {
        for idx in &desc.indexes {
            let flags = idx
                .columns
                .iter()
                .take_while(|c| matches!(**c, "deleted" | "pending_deleted"))
                .count();
            if flags == 0 {
                continue;
            }
            let mut stat = vec![ROWS.to_string()];
            for (i, col) in idx.columns.iter().enumerate() {
                let per_key = if i < flags {
                    ROWS
                } else if matches!(*col, "status" | "tenant_id" | "domain_id") {
                    // A status or an owner keeps a fair share of the rows.
                    ROWS / 100
                } else {
                    1
                };
                stat.push(per_key.to_string());
            }
            let mut exists = Sql::new("SELECT COUNT(*) FROM `sqlite_stat1` WHERE `tbl` = ");
            exists
                .bind(desc.table)
                .push(" AND `idx` = ")
                .bind(idx.name.as_str());
            if crate::crud::fetch_i64(&mut *conn, &exists).await? > 0 {
                continue;
            }
            let mut ins = Sql::new("INSERT INTO `sqlite_stat1` (`tbl`, `idx`, `stat`) VALUES ");
            ins.bind_list([desc.table.to_string(), idx.name.clone(), stat.join(" ")]);
            ins.query()?.execute(&mut *conn).await?;
        }
    }
    // Load the statistics into this connection's schema.
    conn.execute("ANALYZE sqlite_schema").await?;
    Ok(())
}

async fn existing_columns(
    dialect: Dialect,
    conn: &mut sqlx::AnyConnection,
    table: &str,
) -> Result<HashSet<String>> {
    let mut q = match dialect {
        Dialect::Sqlite => Sql::new("SELECT name FROM pragma_table_info("),
        Dialect::Mysql => Sql::new(
            "SELECT COLUMN_NAME FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ",
        ),
    };
    q.bind(table);
    if dialect == Dialect::Sqlite {
        q.push(")");
    }
    let rows = q.query()?.fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .filter_map(|r| crate::sql::raw_column(r, 0).ok())
        .filter_map(|v| v.as_str().map(|s| s.to_ascii_lowercase()))
        .collect())
}

async fn existing_indexes(
    dialect: Dialect,
    conn: &mut sqlx::AnyConnection,
    table: &str,
) -> Result<HashSet<String>> {
    let mut q = match dialect {
        Dialect::Sqlite => {
            Sql::new("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ")
        }
        Dialect::Mysql => Sql::new(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = ",
        ),
    };
    q.bind(table);
    let rows = q.query()?.fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .filter_map(|r| crate::sql::raw_column(r, 0).ok())
        .filter_map(|v| v.as_str().map(|s| s.to_ascii_lowercase()))
        .collect())
}
