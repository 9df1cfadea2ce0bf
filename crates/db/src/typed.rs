//! Typed rows: the core resources decoded once at the storage boundary into
//! structs, so code that reads a field names a struct field the compiler
//! checks instead of a string key into a JSON row (a mistyped key was a
//! silent empty string). The generic REST path keeps [`Row`].
//!
//! A typed row is `#[serde(default)]`: SQL NULL and columns the struct does
//! not name are fine; [`check_columns`] (run by each crate's tests) makes
//! sure every field is a column of its table.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{DbError, ModelDesc, Row};

/// A struct decoded from rows of one table.
pub trait TypedRow: DeserializeOwned + Serialize + Default {
    /// The table the rows come from.
    fn desc() -> &'static ModelDesc;

    /// Decode one row; NULL columns take the field's default.
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let obj: Row = row
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| DbError::Decode {
            column: Self::desc().table.to_string(),
            reason: e.to_string(),
        })
    }

    /// Decode many rows.
    fn from_rows(rows: &[Row]) -> Result<Vec<Self>, DbError> {
        rows.iter().map(Self::from_row).collect()
    }
}

/// The fields of `T` that are not columns of its table (empty when right).
pub fn check_columns<T: TypedRow>() -> Vec<String> {
    let desc = T::desc();
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(T::default()) else {
        return vec!["<does not serialize to an object>".into()];
    };
    fields
        .keys()
        .filter(|f| !desc.columns.iter().any(|c| c.name == f.as_str()))
        .cloned()
        .collect()
}
