//! A small SQL text builder with bound arguments, and the conversions
//! between JSON values, bound arguments and result columns.
//!
//! Identifiers are always quoted with backticks (accepted by SQLite and
//! MySQL) and values always bound, never spliced into the text.

use serde_json::Value;
use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfoKind};
use sqlx::{Any, Arguments, AssertSqlSafe, Row as _, ValueRef};

use crate::error::{DbError, Result};
use crate::schema::ColType;

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}
impl From<i32> for SqlValue {
    fn from(v: i32) -> Self {
        SqlValue::Int(v as i64)
    }
}
impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        SqlValue::Int(v as i64)
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(v as i64)
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Float(v)
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(SqlValue::Null)
    }
}

/// SQL text plus its arguments.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub text: String,
    pub args: Vec<SqlValue>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Append raw SQL text (never user input).
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Append a backtick-quoted identifier. Identifiers come from table
    /// descriptors; backticks are stripped defensively anyway.
    pub fn ident(&mut self, name: &str) -> &mut Self {
        self.text.push('`');
        self.text.extend(name.chars().filter(|c| *c != '`'));
        self.text.push('`');
        self
    }

    /// Append a `?` and bind `v` to it.
    pub fn bind(&mut self, v: impl Into<SqlValue>) -> &mut Self {
        self.text.push('?');
        self.args.push(v.into());
        self
    }

    /// Append `(?, ?, …)` binding every value.
    pub fn bind_list<I, V>(&mut self, vals: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<SqlValue>,
    {
        self.text.push('(');
        for (i, v) in vals.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// Append another fragment with its arguments.
    pub fn append(&mut self, other: Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.args.extend(other.args);
        self
    }

    pub(crate) fn arguments(&self) -> Result<AnyArguments> {
        let mut args = AnyArguments::default();
        for v in &self.args {
            let r = match v {
                SqlValue::Null => args.add(Option::<String>::None),
                SqlValue::Int(i) => args.add(*i),
                SqlValue::Float(f) => args.add(*f),
                SqlValue::Text(s) => args.add(s.clone()),
            };
            r.map_err(|e| DbError::Config(format!("cannot bind argument: {e}")))?;
        }
        Ok(args)
    }

    /// A query ready to run on any executor.
    pub fn query(&self) -> Result<sqlx::query::Query<'_, Any, AnyArguments>> {
        Ok(sqlx::query_with(
            AssertSqlSafe(self.text.clone()),
            self.arguments()?,
        ))
    }
}

/// Convert a JSON value to the bound form of a column of type `ty`.
pub fn json_to_sql(ty: ColType, v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => match ty {
            ColType::Str(_) | ColType::Text => SqlValue::Text(b.to_string()),
            _ => SqlValue::Int(*b as i64),
        },
        Value::Number(n) => match ty {
            ColType::Float => SqlValue::Float(n.as_f64().unwrap_or_default()),
            ColType::Str(_) | ColType::Text | ColType::Time => SqlValue::Text(n.to_string()),
            _ => n
                .as_i64()
                .map(SqlValue::Int)
                .unwrap_or_else(|| SqlValue::Float(n.as_f64().unwrap_or_default())),
        },
        Value::String(s) => match ty {
            ColType::Json => SqlValue::Text(Value::String(s.clone()).to_string()),
            _ => SqlValue::Text(s.clone()),
        },
        Value::Array(_) | Value::Object(_) => SqlValue::Text(v.to_string()),
    }
}

/// Read column `idx` of `row` as a raw JSON value (no type coercion).
pub fn raw_column(row: &AnyRow, idx: usize) -> Result<Value> {
    let raw = row.try_get_raw(idx).map_err(DbError::from)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().kind();
    Ok(match kind {
        AnyTypeInfoKind::Null => Value::Null,
        AnyTypeInfoKind::Bool => Value::Bool(row.try_get::<bool, _>(idx)?),
        AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
            Value::from(row.try_get::<i64, _>(idx)?)
        }
        AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => Value::from(row.try_get::<f64, _>(idx)?),
        AnyTypeInfoKind::Text => Value::String(row.try_get::<String, _>(idx)?),
        AnyTypeInfoKind::Blob => {
            Value::String(String::from_utf8_lossy(&row.try_get::<Vec<u8>, _>(idx)?).into_owned())
        }
    })
}

/// Coerce a raw column value to the JSON form of a column of type `ty`.
pub fn coerce(ty: ColType, name: &str, v: Value) -> Result<Value> {
    Ok(match (ty, v) {
        (_, Value::Null) => Value::Null,
        (ColType::Bool, Value::Number(n)) => Value::Bool(n.as_i64().unwrap_or(0) != 0),
        (ColType::Bool, Value::String(s)) => Value::Bool(matches!(s.as_str(), "1" | "true")),
        (ColType::Int | ColType::BigInt | ColType::AutoId, Value::String(s)) => {
            Value::from(s.parse::<i64>().map_err(|e| DbError::Decode {
                column: name.to_string(),
                reason: e.to_string(),
            })?)
        }
        (ColType::Float, Value::Number(n)) => Value::from(n.as_f64().unwrap_or_default()),
        (ColType::Json, Value::String(s)) => {
            if s.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&s).map_err(|e| DbError::Decode {
                    column: name.to_string(),
                    reason: e.to_string(),
                })?
            }
        }
        (_, v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_binds_and_quotes() {
        let mut s = Sql::new("SELECT * FROM ");
        s.ident("guests`_tbl")
            .push(" WHERE ")
            .ident("id")
            .push(" IN ");
        s.bind_list(["a", "b"]);
        assert_eq!(s.text, "SELECT * FROM `guests_tbl` WHERE `id` IN (?, ?)");
        assert_eq!(s.args.len(), 2);
    }

    #[test]
    fn json_conversion() {
        assert_eq!(
            json_to_sql(ColType::Bool, &Value::Bool(true)),
            SqlValue::Int(1)
        );
        assert_eq!(
            json_to_sql(ColType::Json, &serde_json::json!({"a":1})),
            SqlValue::Text("{\"a\":1}".into())
        );
        assert_eq!(
            coerce(ColType::Bool, "x", Value::from(0)).unwrap(),
            Value::Bool(false)
        );
    }
}
