//! Reading one field of a JSON [`Row`] on the generic paths (the REST
//! layer's table-driven operations, ids and statuses of rows a query just
//! selected). Code that reads many fields of a core resource decodes it
//! into a [`crate::TypedRow`] instead.

use serde_json::Value;

use crate::Row;

/// A text column; NULL and a missing column are empty, other values are
/// written out (a number as its digits).
pub fn s(r: &Row, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// An integer column (or its text); anything else is 0.
pub fn i(r: &Row, k: &str) -> i64 {
    match r.get(k) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(v)) => v.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A boolean column; NULL and a missing column are false.
pub fn b(r: &Row, k: &str) -> bool {
    r.get(k).and_then(Value::as_bool).unwrap_or(false)
}
