//! Lenient readers for values in query objects and request bodies: query
//! strings carry everything as strings, JSON bodies carry native types, and
//! clients mix both (Python sends `True`).

use cloudpods_apis::lenient::parse_bool;
use serde_json::{Map, Value};

use crate::error::{HttpError, Result};

pub type Object = Map<String, Value>;

/// A string value (numbers and booleans are converted).
pub fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn get_str(o: &Object, key: &str) -> Option<String> {
    o.get(key).and_then(str_of).filter(|s| !s.is_empty())
}

/// First of several alias keys that is present.
pub fn get_str_any(o: &Object, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| get_str(o, k))
}

pub fn get_bool(o: &Object, key: &str) -> Result<Option<bool>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => Ok(Some(n.as_f64().unwrap_or(0.0) != 0.0)),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => parse_bool(s)
            .map(Some)
            .ok_or_else(|| HttpError::input(format!("invalid boolean value {s:?} for {key}"))),
        Some(_) => Err(HttpError::input(format!("{key} must be a boolean"))),
    }
}

pub fn flag(o: &Object, key: &str) -> Result<bool> {
    Ok(get_bool(o, key)?.unwrap_or(false))
}

pub fn get_i64(o: &Object, key: &str) -> Result<Option<i64>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| HttpError::input(format!("{key} must be an integer"))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| HttpError::input(format!("invalid integer value {s:?} for {key}"))),
        Some(_) => Err(HttpError::input(format!("{key} must be an integer"))),
    }
}

/// Every string under `key`: a single value, an array, or `key.N` arrays.
pub fn get_strs(o: &Object, key: &str) -> Vec<String> {
    match o.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(str_of)
            .filter(|s| !s.is_empty())
            .collect(),
        Some(v) => str_of(v).filter(|s| !s.is_empty()).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Unwrap the `{"<keyword>": {...}}` envelope. `required` makes a missing key
/// an error (create); otherwise a bare body is accepted (update/perform).
pub fn unwrap_envelope(body: Option<Value>, keys: &[&str], required: bool) -> Result<Object> {
    let Some(body) = body else {
        return if required {
            Err(HttpError::no_request_key(
                keys.first().copied().unwrap_or("body"),
            ))
        } else {
            Ok(Object::new())
        };
    };
    let Value::Object(mut obj) = body else {
        return Err(HttpError::input("request body must be a JSON object"));
    };
    for k in keys {
        if let Some(inner) = obj.remove(*k) {
            return match inner {
                Value::Object(o) => Ok(o),
                Value::Null => Ok(Object::new()),
                _ => Err(HttpError::input(format!("{k} must be a JSON object"))),
            };
        }
    }
    if required {
        return Err(HttpError::no_request_key(
            keys.first().copied().unwrap_or("body"),
        ));
    }
    Ok(obj)
}
