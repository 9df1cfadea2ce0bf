//! Metadata and tags of any standalone object (Cloudpods `metadata_tbl`).
//!
//! Keys prefixed `user:` are user tags, `ext:` cloud tags synced from a
//! provider; other keys are system metadata set by the platform.

use std::collections::HashMap;
use std::sync::LazyLock;

use cloudpods_db::{Column, Db, IdStyle, ModelDesc, Sql, crud};
use serde_json::{Map, Value};

use crate::error::{HttpError, Result};

pub static METADATA: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("metadata", "metadatas", "metadata_tbl")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("obj_type", 40))
        .col(Column::str("obj_id", 128))
        .col(Column::str("key", 256))
        .col(Column::text("value"))
        .unique(&["obj_type", "obj_id", "key"])
        .build()
});

pub const USER_TAG_PREFIX: &str = "user:";

/// All metadata of one object.
pub async fn get(db: &Db, obj_type: &str, obj_id: &str) -> Result<Map<String, Value>> {
    Ok(get_many(db, obj_type, &[obj_id.to_string()])
        .await?
        .remove(obj_id)
        .unwrap_or_default())
}

/// Metadata of many objects at once (list details).
pub async fn get_many(
    db: &Db,
    obj_type: &str,
    ids: &[String],
) -> Result<HashMap<String, Map<String, Value>>> {
    let mut out: HashMap<String, Map<String, Value>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut q =
            Sql::new("SELECT `obj_id`, `key`, `value` FROM `metadata_tbl` WHERE `obj_type` = ");
        q.bind(obj_type)
            .push(" AND `obj_id` IN ")
            .bind_list(chunk.iter());
        for row in crud::fetch_rows(db.read(), &METADATA, &q).await? {
            let id = row
                .get("obj_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let key = row.get("key").and_then(Value::as_str).unwrap_or_default();
            let value = row.get("value").cloned().unwrap_or(Value::Null);
            out.entry(id.to_string())
                .or_default()
                .insert(key.to_string(), value);
        }
    }
    Ok(out)
}

/// Refuse keys the table cannot hold. Callers that write the object first
/// (create) check before writing, so a bad key fails the whole request.
pub fn validate_keys(kv: &Map<String, Value>) -> Result<()> {
    for (k, v) in kv {
        if k.is_empty() || k.len() > 256 {
            return Err(HttpError::input(format!("invalid metadata key {k:?}")));
        }
        let len = match v {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
        if len > 64 * 1024 {
            return Err(HttpError::input(format!(
                "metadata value of {k:?} exceeds 64 KiB"
            )));
        }
    }
    Ok(())
}

/// Set keys (a null or empty value removes the key). With `replace_prefix`,
/// existing keys with that prefix that are not in `kv` are removed first
/// (`set-user-metadata` replaces all user tags).
pub async fn set(
    db: &Db,
    obj_type: &str,
    obj_id: &str,
    kv: &Map<String, Value>,
    replace_prefix: Option<&str>,
) -> Result<()> {
    validate_keys(kv)?;
    let mut tx = db.begin().await?;
    if let Some(prefix) = replace_prefix {
        let mut q = Sql::new("DELETE FROM `metadata_tbl` WHERE `obj_type` = ");
        q.bind(obj_type)
            .push(" AND `obj_id` = ")
            .bind(obj_id)
            .push(" AND `key` LIKE ")
            .bind(format!("{prefix}%"));
        q.query()?
            .execute(&mut *tx)
            .await
            .map_err(cloudpods_db::DbError::from)?;
    }
    for (k, v) in kv {
        let mut del = Sql::new("DELETE FROM `metadata_tbl` WHERE `obj_type` = ");
        del.bind(obj_type)
            .push(" AND `obj_id` = ")
            .bind(obj_id)
            .push(" AND `key` = ")
            .bind(k);
        del.query()?
            .execute(&mut *tx)
            .await
            .map_err(cloudpods_db::DbError::from)?;
        let value = match v {
            Value::Null => continue,
            Value::String(s) if s.is_empty() && replace_prefix.is_none() => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut row = Map::new();
        row.insert("obj_type".into(), obj_type.into());
        row.insert("obj_id".into(), obj_id.into());
        row.insert("key".into(), k.clone().into());
        row.insert("value".into(), value.into());
        crud::prepare_insert(&METADATA, &mut row);
        crud::insert(&mut *tx, &METADATA, &row).await?;
    }
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// Remove every key of an object (on delete).
pub async fn clear(db: &Db, obj_type: &str, obj_id: &str) -> Result<()> {
    let mut q = Sql::new("DELETE FROM `metadata_tbl` WHERE `obj_type` = ");
    q.bind(obj_type).push(" AND `obj_id` = ").bind(obj_id);
    q.query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// Condition: the row of the outer query on `table` has tag `key` (with
/// `value` when given).
pub fn has_tag(obj_type: &str, table: &str, key: &str, value: Option<&str>) -> Sql {
    let mut q = Sql::new("EXISTS (SELECT 1 FROM `metadata_tbl` m WHERE m.`obj_type` = ");
    q.bind(obj_type)
        .push(" AND m.`obj_id` = ")
        .ident(table)
        .push(".`id` AND m.`key` = ")
        .bind(key);
    if let Some(v) = value {
        q.push(" AND m.`value` = ").bind(v);
    }
    q.push(")");
    q
}
