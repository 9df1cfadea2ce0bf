//! Host image caches as the region sees them (Cloudpods `storagecaches`,
//! `cachedimages`, `storagecachedimages`).
//!
//! Each host agent reports its whole cache (`POST /hosts/{id}/sync-image-cache`)
//! after registration and whenever it changes; the region reconciles to
//! exactly that set. Reporting the full state rather than events makes a
//! lost report harmless: the next one repairs it.

use cloudpods_db::{Db, Row, crud};
use cloudpods_rest::{Ctx, HttpError, Object, Result};
use serde_json::{Value, json};

use crate::cloud::models::CACHEDIMAGES;
use crate::models::{HOSTSTORAGES, STORAGECACHEDIMAGES, STORAGECACHES, STORAGES};
use crate::store::{self, s};

/// One image in an agent's report.
struct Reported {
    id: String,
    name: String,
    size: i64,
    path: String,
}

fn parse(input: &Object) -> Result<(String, Vec<Reported>)> {
    let path = input
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(list) = input.get("images").and_then(Value::as_array) else {
        return Err(HttpError::input("images must be a list"));
    };
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let id = v["id"].as_str().unwrap_or_default();
        if id.is_empty() || id.len() > 128 {
            return Err(HttpError::input("every image needs an id"));
        }
        out.push(Reported {
            id: id.to_string(),
            name: v["name"].as_str().unwrap_or(id).to_string(),
            size: v["size"].as_i64().unwrap_or(0),
            path: v["path"].as_str().unwrap_or_default().to_string(),
        });
    }
    Ok((path, out))
}

fn obj(v: Value) -> Row {
    v.as_object().cloned().unwrap_or_default()
}

async fn host_cache(db: &Db, host_id: &str) -> Result<Option<Row>> {
    Ok(
        store::rows_in(db, &STORAGECACHES, "master_host", &[host_id.to_string()])
            .await?
            .into_iter()
            .next(),
    )
}

/// A deleted host's cache and what it held.
pub async fn forget_host(db: &Db, host_id: &str) -> std::result::Result<(), cloudpods_db::DbError> {
    for c in store::rows_in(db, &STORAGECACHES, "master_host", &[host_id.to_string()]).await? {
        store::purge_where(db, &STORAGECACHEDIMAGES, "storagecache_id", &s(&c, "id")).await?;
        crud::purge(db.write(), &STORAGECACHES, &s(&c, "id")).await?;
    }
    Ok(())
}

/// Reconcile the cache of `host` with the agent's report.
pub async fn sync_host_cache(db: &Db, ctx: &Ctx, host: &Row, input: &Object) -> Result<Value> {
    let (path, images) = parse(input)?;
    let host_id = s(host, "id");

    // The host's storage cache (one per host: a report racing another
    // one finds the row the other inserted).
    let cache_id = match host_cache(db, &host_id).await? {
        Some(c) => {
            let id = s(&c, "id");
            if s(&c, "path") != path {
                crud::update(db.write(), &STORAGECACHES, &id, &obj(json!({"path": path}))).await?;
            }
            id
        }
        None => {
            let mut row = obj(json!({
                "name": format!("{}-imagecache", s(host, "name")),
                "path": path,
                "master_host": host_id,
                "domain_id": s(host, "domain_id"),
            }));
            crud::prepare_insert(&STORAGECACHES, &mut row);
            match crud::insert(db.write(), &STORAGECACHES, &row).await {
                Ok(_) => s(&row, "id"),
                Err(cloudpods_db::DbError::Duplicate(_)) => host_cache(db, &host_id)
                    .await?
                    .map(|c| s(&c, "id"))
                    .ok_or_else(|| HttpError::conflict("storage cache changed meanwhile"))?,
                Err(e) => return Err(e.into()),
            }
        }
    };

    // Its local storages point at it.
    let joints =
        store::rows_in(db, &HOSTSTORAGES, "host_id", std::slice::from_ref(&host_id)).await?;
    let storage_ids: Vec<String> = joints.iter().map(|j| s(j, "storage_id")).collect();
    for st in store::by_id(db, &STORAGES, &storage_ids).await?.values() {
        if s(st, "storage_type") == "local" && s(st, "storagecache_id") != cache_id {
            crud::update(
                db.write(),
                &STORAGES,
                &s(st, "id"),
                &obj(json!({"storagecache_id": cache_id})),
            )
            .await?;
        }
    }

    // The images, then which of them this cache holds.
    let ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    let known = store::by_id(db, &CACHEDIMAGES, &ids).await?;
    for img in &images {
        match known.get(&img.id) {
            Some(row) if s(row, "name") == img.name && row["size"].as_i64() == Some(img.size) => {}
            Some(_) => {
                crud::update(
                    db.write(),
                    &CACHEDIMAGES,
                    &img.id,
                    &obj(json!({"name": img.name, "size": img.size})),
                )
                .await?;
            }
            None => {
                let mut row = obj(json!({
                    "id": img.id,
                    "name": img.name,
                    "size": img.size,
                    "status": "active",
                    "image_type": "system",
                    "tenant_id": ctx.identity.project_id,
                    "domain_id": ctx.identity.domain_id,
                }));
                crud::prepare_insert(&CACHEDIMAGES, &mut row);
                match crud::insert(db.write(), &CACHEDIMAGES, &row).await {
                    // Another host reported it at the same moment.
                    Ok(_) | Err(cloudpods_db::DbError::Duplicate(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let held = store::rows_in(
        db,
        &STORAGECACHEDIMAGES,
        "storagecache_id",
        std::slice::from_ref(&cache_id),
    )
    .await?;
    let now = cloudpods_apis::time::now();
    for img in &images {
        match held.iter().find(|h| s(h, "cachedimage_id") == img.id) {
            Some(h) if s(h, "path") == img.path && s(h, "status") == "active" => {}
            Some(h) => {
                crud::update(
                    db.write(),
                    &STORAGECACHEDIMAGES,
                    &s(h, "row_id"),
                    &obj(json!({"path": img.path, "status": "active"})),
                )
                .await?;
            }
            None => {
                let mut row = obj(json!({
                    "storagecache_id": cache_id,
                    "cachedimage_id": img.id,
                    "status": "active",
                    "path": img.path,
                    "last_download": now,
                }));
                crud::prepare_insert(&STORAGECACHEDIMAGES, &mut row);
                match crud::insert(db.write(), &STORAGECACHEDIMAGES, &row).await {
                    Ok(_) | Err(cloudpods_db::DbError::Duplicate(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut removed = 0;
    for h in &held {
        if !ids.contains(&s(h, "cachedimage_id")) {
            crud::purge(db.write(), &STORAGECACHEDIMAGES, &s(h, "row_id")).await?;
            removed += 1;
        }
    }
    Ok(json!({"storagecache_id": cache_id, "images": images.len(), "removed": removed}))
}
