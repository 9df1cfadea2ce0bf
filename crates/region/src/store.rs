//! Region queries beyond the generic row operations.

use std::collections::HashMap;
use std::time::Duration;

use cloudpods_db::{Db, DbError, ListSpec, ModelDesc, Row, Sql, TypedRow, crud};
use serde_json::json;

use crate::models::*;
use crate::rows;

/// SQL condition on `guests_tbl`: the guest holds host and quota
/// resources. A create that failed and was undone (`sched_fail`, `net_fail`,
/// `disk_fail`, or `deploy_fail` before any disk existed) holds none; a
/// later `deploy_fail` (a failed set-password) still holds its disks, CPU
/// and memory.
pub const GUEST_HOLDS_RESOURCES: &str = "NOT (`status` IN ('sched_fail', 'net_fail', 'disk_fail') \
     OR (`status` = 'deploy_fail' AND NOT EXISTS (SELECT 1 FROM `guestdisks_tbl` gd WHERE gd.`guest_id` = `guests_tbl`.`id`)))";

pub use cloudpods_db::row::{b, i, s};

/// Rows of `desc` where `col` is one of `vals` (chunked).
pub async fn rows_in(
    db: &Db,
    desc: &ModelDesc,
    col: &str,
    vals: &[String],
) -> Result<Vec<Row>, DbError> {
    let mut out = Vec::new();
    let mut vals: Vec<&String> = vals.iter().filter(|v| !v.is_empty()).collect();
    vals.sort();
    vals.dedup();
    for chunk in vals.chunks(1000) {
        let spec = ListSpec {
            conds: vec![crud::in_list(col, chunk.iter().map(|v| v.as_str()))],
            ..Default::default()
        };
        out.extend(crud::list(db, desc, &spec).await?.0);
    }
    Ok(out)
}

/// The ids among `ids` whose rows also match `cond` (a caller's visibility);
/// all of them when there is no condition.
pub async fn ids_matching(
    db: &Db,
    desc: &ModelDesc,
    ids: &[String],
    cond: Option<Sql>,
) -> Result<std::collections::HashSet<String>, DbError> {
    let Some(cond) = cond else {
        return Ok(ids.iter().cloned().collect());
    };
    let mut out = std::collections::HashSet::new();
    let mut ids: Vec<&String> = ids.iter().filter(|v| !v.is_empty()).collect();
    ids.sort();
    ids.dedup();
    for chunk in ids.chunks(1000) {
        let spec = ListSpec {
            conds: vec![
                crud::in_list(desc.pk(), chunk.iter().map(|v| v.as_str())),
                cond.clone(),
            ],
            ..Default::default()
        };
        out.extend(
            crud::list(db, desc, &spec)
                .await?
                .0
                .iter()
                .map(|r| s(r, desc.pk())),
        );
    }
    Ok(out)
}

/// Rows keyed by id.
pub async fn by_id(
    db: &Db,
    desc: &ModelDesc,
    ids: &[String],
) -> Result<HashMap<String, Row>, DbError> {
    Ok(rows_in(db, desc, desc.pk(), ids)
        .await?
        .into_iter()
        .map(|r| (s(&r, desc.pk()), r))
        .collect())
}

/// Set a status (and optionally a failure reason).
pub async fn set_status(
    db: &Db,
    desc: &ModelDesc,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<(), DbError> {
    let mut ch = Row::new();
    ch.insert("status".into(), json!(status));
    if let Some(r) = reason
        && desc.has("fail_reason")
    {
        ch.insert("fail_reason".into(), json!(r));
    }
    crud::update(db.write(), desc, id, &ch).await?;
    Ok(())
}

/// Compare-and-set a status: only from one of `from`. Returns whether it
/// changed — the guard that serialises actions on one object.
pub async fn cas_status(
    db: &Db,
    desc: &ModelDesc,
    id: &str,
    from: &[&str],
    to: &str,
) -> Result<bool, DbError> {
    let q = cas_sql(desc, id, from, Row::new(), to);
    let done = q
        .query()?
        .execute(db.write())
        .await
        .map_err(DbError::from)?;
    Ok(done.rows_affected() == 1)
}

/// [`cas_status`] inside `tx`, with extra column changes.
pub async fn cas_status_in(
    tx: &mut cloudpods_db::DbTx,
    desc: &ModelDesc,
    id: &str,
    from: &[&str],
    changes: Row,
    to: &str,
) -> Result<bool, DbError> {
    let q = cas_sql(desc, id, from, changes, to);
    let done = q.query()?.execute(&mut **tx).await.map_err(DbError::from)?;
    Ok(done.rows_affected() == 1)
}

fn cas_sql(desc: &ModelDesc, id: &str, from: &[&str], mut changes: Row, to: &str) -> Sql {
    changes.insert("status".into(), json!(to));
    let mut q = crud::update_sql(desc, &changes);
    q.push(" WHERE `id` = ")
        .bind(id)
        .push(" AND `deleted` = 0 AND `status` IN ");
    q.bind_list(from.iter().copied());
    q
}

/// Hosts silent for longer than `after` go offline; their guests' state is
/// unknown until the agent reports again.
pub async fn mark_offline_hosts(db: &Db, after: Duration) -> Result<u64, DbError> {
    let cutoff = cloudpods_apis::time::format(
        chrono::Utc::now() - chrono::Duration::from_std(after).unwrap_or_default(),
    );
    let mut q = Sql::new(
        // Hosts of public clouds (`manager_id`) have no agent to ping.
        "SELECT `id`, `name` FROM `hosts_tbl` WHERE `deleted` = 0 AND `host_status` = 'online' \
         AND (`manager_id` IS NULL OR `manager_id` = '') AND (`last_ping_at` IS NULL OR `last_ping_at` < ",
    );
    q.bind(cutoff).push(")");
    let hosts = crud::fetch_rows(db.read(), &HOSTS, &q).await?;
    for h in &hosts {
        tracing::warn!(host = %s(h, "name"), "no heartbeat; host offline");
        let mut ch = Row::new();
        ch.insert("host_status".into(), json!("offline"));
        crud::update(db.write(), &HOSTS, &s(h, "id"), &ch).await?;
    }
    Ok(hosts.len() as u64)
}

/// NICs of guests.
pub async fn guest_nics(db: &Db, guest_ids: &[String]) -> Result<Vec<Row>, DbError> {
    let mut rows = rows_in(db, &GUESTNETWORKS, "guest_id", guest_ids).await?;
    rows.sort_by_key(|r| (s(r, "guest_id"), i(r, "index")));
    Ok(rows)
}

/// `(guestdisk, disk)` pairs of guests, ordered by index.
pub async fn guest_disks(db: &Db, guest_ids: &[String]) -> Result<Vec<(Row, Row)>, DbError> {
    let mut joints = rows_in(db, &GUESTDISKS, "guest_id", guest_ids).await?;
    joints.sort_by_key(|r| (s(r, "guest_id"), i(r, "index")));
    let ids: Vec<String> = joints.iter().map(|r| s(r, "disk_id")).collect();
    let disks = by_id(db, &DISKS, &ids).await?;
    Ok(joints
        .into_iter()
        .filter_map(|j| disks.get(&s(&j, "disk_id")).cloned().map(|d| (j, d)))
        .collect())
}

/// Typed rows of `T`'s table whose `col` is one of `vals`.
pub async fn typed_in<T: TypedRow>(db: &Db, col: &str, vals: &[String]) -> Result<Vec<T>, DbError> {
    T::from_rows(&rows_in(db, T::desc(), col, vals).await?)
}

/// One live typed row by id.
pub async fn typed_get<T: TypedRow>(db: &Db, id: &str) -> Result<Option<T>, DbError> {
    crud::get(db.read(), T::desc(), id)
        .await?
        .map(|r| T::from_row(&r))
        .transpose()
}

/// The NICs of guests, typed, ordered by guest and index.
pub async fn guest_nic_rows(
    db: &Db,
    guest_ids: &[String],
) -> Result<Vec<rows::GuestNetwork>, DbError> {
    let mut nics: Vec<rows::GuestNetwork> = typed_in(db, "guest_id", guest_ids).await?;
    nics.sort_by(|a, b| (&a.guest_id, a.index).cmp(&(&b.guest_id, b.index)));
    Ok(nics)
}

/// `(guestdisk, disk)` pairs of guests, typed, ordered by guest and index.
pub async fn guest_disk_rows(
    db: &Db,
    guest_ids: &[String],
) -> Result<Vec<(rows::GuestDisk, rows::Disk)>, DbError> {
    guest_disks(db, guest_ids)
        .await?
        .iter()
        .map(|(j, d)| Ok((rows::GuestDisk::from_row(j)?, rows::Disk::from_row(d)?)))
        .collect()
}

/// Delete a guest's NICs, remembering the released addresses.
pub async fn release_nics(db: &Db, guest_id: &str) -> Result<(), DbError> {
    let nics = guest_nics(db, &[guest_id.to_string()]).await?;
    for n in nics {
        crud::purge(db.write(), &GUESTNETWORKS, &s(&n, "row_id")).await?;
        crate::ipam::record_freed(db, &s(&n, "network_id"), &s(&n, "ip_addr")).await?;
    }
    Ok(())
}

/// Remove every row of `desc` whose `col` is `value`.
pub async fn purge_where(db: &Db, desc: &ModelDesc, col: &str, value: &str) -> Result<(), DbError> {
    let mut q = Sql::new(format!("DELETE FROM `{}` WHERE `{col}` = ", desc.table));
    q.bind(value);
    q.query()?
        .execute(db.write())
        .await
        .map_err(DbError::from)?;
    Ok(())
}

/// Tasks of an object (direct or as a member of a batch).
pub async fn object_task_ids(db: &Db, obj_id: &str) -> Result<Vec<String>, DbError> {
    let mut q = Sql::new("SELECT `task_id` FROM `taskobjects_tbl` WHERE `obj_id` = ");
    q.bind(obj_id);
    let rows = crud::fetch_rows(db.read(), &cloudpods_taskman::models::TASK_OBJECTS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "task_id")).collect())
}

/// A deployment-wide setting, created with `init` the first time.
pub async fn setting(db: &Db, key: &str, init: impl FnOnce() -> String) -> Result<String, DbError> {
    if let Some(r) = crud::get(db.read(), &SETTINGS, key).await? {
        return Ok(s(&r, "value"));
    }
    let mut row = Row::new();
    row.insert("id".into(), json!(key));
    row.insert("value".into(), json!(init()));
    crud::prepare_insert(&SETTINGS, &mut row);
    match crud::insert(db.write(), &SETTINGS, &row).await {
        Ok(_) | Err(DbError::Duplicate(_)) => {}
        Err(e) => return Err(e),
    }
    // Another process may have won the race: read back what is stored.
    crud::must_get(db.write(), &SETTINGS, key)
        .await
        .map(|r| s(&r, "value"))
}
