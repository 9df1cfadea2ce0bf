use thiserror::Error;

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum DbError {
    /// The database driver failed (connection, syntax, constraint…).
    #[error("database error")]
    Sql(#[source] sqlx::Error),
    /// A unique constraint refused the write.
    #[error("duplicate entry")]
    Duplicate(#[source] sqlx::Error),
    /// A row that had to exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// A compare-and-set update lost the race.
    #[error("{0} was modified concurrently")]
    Conflict(String),
    /// The database URL or options are unusable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// A stored value cannot be decoded as its column type.
    #[error("cannot decode column {column}: {reason}")]
    Decode { column: String, reason: String },
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return DbError::Duplicate(e);
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return DbError::NotFound("row".into());
        }
        DbError::Sql(e)
    }
}

impl DbError {
    /// True when retrying the same transaction may succeed (SQLite busy,
    /// MySQL deadlock or lock wait timeout).
    pub fn is_retryable(&self) -> bool {
        let DbError::Sql(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let code = db.code().unwrap_or_default();
        // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED, 517 BUSY_SNAPSHOT.
        // MySQL: 1213 deadlock, 1205 lock wait timeout (SQLSTATE 40001 / HY000).
        matches!(code.as_ref(), "5" | "6" | "517" | "40001")
            || db.message().contains("Deadlock")
            || db.message().contains("Lock wait timeout")
            || db.message().contains("database is locked")
    }
}
