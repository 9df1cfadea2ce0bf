//! The storage layer: one database handle for SQLite and MariaDB/MySQL,
//! table descriptors, schema migration and the generic row operations every
//! model shares.
//!
//! Rows travel as JSON objects ([`Row`]) typed by the table descriptor
//! ([`ModelDesc`]): the REST layer is table-driven like Cloudpods' dispatcher,
//! so the model layer is too. SQL is written with backtick-quoted identifiers
//! and `?` placeholders, which both dialects accept; the few places where the
//! dialects differ go through [`Dialect`].

pub mod crud;
pub mod error;
pub mod migrate;
pub mod pool;
pub mod row;
pub mod schema;
pub mod sql;
pub mod typed;

pub use crud::{ListSpec, Order};
pub use error::{DbError, Result};
pub use pool::{Db, DbTx, Dialect};
pub use schema::{ColFlags, ColType, Column, IdStyle, Index, ModelDesc, Owner};
pub use sql::{Sql, SqlValue};
pub use typed::TypedRow;

/// A row as the model layer sees it: column name → JSON value.
pub type Row = serde_json::Map<String, serde_json::Value>;
