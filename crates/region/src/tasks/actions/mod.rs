//! Server actions beyond start/stop/restart/reset/syncstatus/delete: the API
//! side (status checks, input, reservations) and the tasks that drive them.
//!
//! | action | statuses | transient | success | failure |
//! |---|---|---|---|---|
//! | `change-config` | ready | change_flavor | ready | change_flavor_fail |
//! | `attachdisk` | ready, running | attach_disk | previous | attach_disk_fail |
//! | `detachdisk` | ready, running | detach_disk | previous | detach_disk_fail |
//! | `disk-snapshot` | ready, running | snapshot_start, snapshot | previous | snapshot_failed |
//! | `rebuild-root` | ready, running | rebuild_root | previous power state | rebuild_root_fail |
//! | `set-password` | ready, running | deploying | previous | deploy_fail |
//! | `migrate` | ready | start_migrate, migrating | ready | migrate_failed |
//! | `live-migrate` | running | start_live_migrate, live_migrating | running | live_migrate_failed |
//! | `*-secgroup` | ready, running | sync_config (running) | previous | sync_fail |
//!
//! The API moves the guest into the transient status with a compare-and-set
//! (which serialises actions on one guest) in the same transaction that
//! reserves what the action needs (quota, the new sizes) and inserts the
//! task. Every step is idempotent and has an undo, so a failure leaves the
//! guest as it was, in the `*_fail` status with the reason.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cloudpods_apis::compute::{collect_configs, status};
use cloudpods_apis::scheduler::{Candidate, SchedDisk, SchedNet, ScheduleInput};
use cloudpods_db::{DbError, DbTx, ModelDesc, Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::params::{flag, get_bool, get_i64, get_str, get_str_any, get_strs};
use cloudpods_rest::{Ctx, HttpError, Object, Result};
use cloudpods_taskman::{NewTask, Owner, Step, StepResult, TaskCtx, TaskDef, TaskError};
use serde_json::{Map, Value, json};

use super::guest::{child_owner, mark_ready, mark_running};
use super::{
    Call, Undone, agent_of, agent_timeout, fail_to, guest_row, host_row, region, value_str,
};
use crate::Region;
use crate::agent::Agent;
use crate::desc::{DescOverrides, guest_desc, guest_desc_with};
use crate::models::*;
use crate::resources::servers::{check_password, find_visible, mem_mb};
use crate::store::{self, i, s};

/// Largest disk (MB): 16 TiB, as for create.
const MAX_DISK_MB: i64 = 16 * 1024 * 1024;
/// Most disks one guest may have.
const MAX_DISKS: usize = 16;

mod agent_request;
mod config;
mod deploy;
mod disk_snapshot;
mod disks;
mod live_migrate;
mod migrate;
mod secgroups;
mod sync;

use agent_request::*;
use config::*;
use deploy::*;
use disk_snapshot::*;
use disks::*;
use live_migrate::*;
use migrate::*;
use secgroups::*;
use sync::*;

/// Register the task types of these actions.
pub fn register(region: &Arc<Region>, w: &Weak<Region>) {
    let e = &region.engine;
    e.register(Arc::new(ChangeConfig(w.clone())));
    e.register(Arc::new(AttachDisk(w.clone())));
    e.register(Arc::new(DetachDisk(w.clone())));
    e.register(Arc::new(DiskSnapshot(w.clone())));
    e.register(Arc::new(RebuildRoot(w.clone())));
    e.register(Arc::new(Deploy(w.clone())));
    e.register(Arc::new(Migrate(w.clone())));
    e.register(Arc::new(LiveMigrate(w.clone())));
    e.register(Arc::new(SyncConfig(w.clone())));
    e.register(Arc::new(AgentRequest(w.clone())));
}

// ---------------------------------------------------------------------------
// API helpers

fn refuse(action: &str, st: &str) -> HttpError {
    HttpError::invalid_status(format!("Cannot do {action} server in status {st}"))
}

/// Compare-and-set a status inside a transaction.
async fn cas_in(
    tx: &mut DbTx,
    desc: &ModelDesc,
    id: &str,
    from: &[&str],
    to: &str,
) -> std::result::Result<bool, DbError> {
    store::cas_status_in(tx, desc, id, from, Row::new(), to).await
}

/// The guest's current status (for refusals after a lost compare-and-set).
async fn current_status(region: &Region, id: &str) -> Result<String> {
    Ok(crud::get(region.db.read(), &GUESTS, id)
        .await?
        .map(|r| s(&r, "status"))
        .unwrap_or_default())
}

/// Move the guest to `to` from one of `from`, or refuse.
async fn guest_cas(
    region: &Region,
    tx: &mut DbTx,
    obj: &Row,
    action: &str,
    from: &[&str],
    to: &str,
) -> Result<()> {
    let id = s(obj, "id");
    if cas_in(tx, &GUESTS, &id, from, to).await? {
        return Ok(());
    }
    Err(refuse(action, &current_status(region, &id).await?))
}

/// Refuse early (before any work) when the guest is in the wrong status.
fn require_status(obj: &Row, action: &str, from: &[&str]) -> Result<()> {
    let st = s(obj, "status");
    if from.contains(&st.as_str()) {
        Ok(())
    } else {
        Err(refuse(action, &st))
    }
}

fn new_task(ctx: &Ctx, obj: &Row, name: &str, params: Value) -> NewTask {
    crate::resources::servers::server_task(ctx, obj, name, params)
}

/// Insert the task in the transaction and commit.
async fn commit_with_task(region: &Region, mut tx: DbTx, t: NewTask) -> Result<()> {
    region
        .engine
        .submit_in(&mut tx, &t)
        .await
        .map_err(|e| HttpError::internal(e.0))?;
    tx.commit().await.map_err(DbError::from)?;
    region.engine.wake();
    Ok(())
}

/// Insert the action's task `name` on `obj` in `tx`, and commit.
async fn commit_action(
    region: &Region,
    tx: DbTx,
    ctx: &Ctx,
    obj: &Row,
    name: &str,
    params: Value,
) -> Result<()> {
    commit_with_task(region, tx, new_task(ctx, obj, name, params)).await
}

/// The guest as actions answer it.
async fn reload(region: &Region, id: &str) -> Result<Value> {
    let mut out = crud::must_get(region.db.read(), &GUESTS, id).await?;
    out.remove("create_params");
    out.remove("deploy_params");
    Ok(Value::Object(out))
}

/// A disk named in the input (`disk_id`, `disk`), visible to the caller.
async fn input_disk(region: &Arc<Region>, ctx: &Ctx, input: &Object) -> Result<Option<Row>> {
    let Some(d) = get_str_any(input, &["disk_id", "disk"]) else {
        return Ok(None);
    };
    find_visible(region, ctx, &DISKS, &d)
        .await
        .map(Some)
        .map_err(|_| HttpError::not_found(format!("disk {d} not found")))
}

fn arr(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Ask the scheduler, serialised with creates in this process.
async fn schedule(region: &Region, input: &ScheduleInput) -> Result<Vec<Candidate>> {
    let _guard = region.placement.lock().await;
    let scheduler = region.scheduler();
    let res = scheduler.schedule(input).await;
    scheduler.completed(&input.session_id).await;
    res
}

/// What a guest asks of a host: its NICs' networks (addresses stay).
async fn sched_nets(region: &Region, gid: &str) -> Result<Vec<SchedNet>> {
    Ok(store::guest_nics(&region.db, &[gid.to_string()])
        .await?
        .iter()
        .map(|n| SchedNet {
            network: s(n, "network_id"),
            ..Default::default()
        })
        .collect())
}

/// Handle `action` on a server; `None` when it is not one of these.
pub async fn perform(call: Call<'_>) -> Result<Option<Value>> {
    let (region, ctx, obj, action) = (call.region, call.ctx, call.obj, call.action);
    let id = s(obj, "id");
    match action {
        "purge" => {
            purge(region, ctx, obj).await?;
            // The delete may already have finished: answer what was purged.
            let mut out = obj.clone();
            out.remove("create_params");
            out.remove("deploy_params");
            out.insert("status".into(), json!(status::START_DELETE));
            return Ok(Some(Value::Object(out)));
        }
        "change-config" => change_config(call).await?,
        "attachdisk" | "attach-disk" => attach_disk(call).await?,
        "detachdisk" | "detach-disk" => detach_disk(call).await?,
        "disk-snapshot" | "snapshot" => disk_snapshot(call).await?,
        "rebuild-root" => rebuild_root(call).await?,
        "set-password" | "deploy" | "reset-password" => set_password(call).await?,
        "migrate" => migrate(call).await?,
        "live-migrate" | "live_migrate" => live_migrate(call).await?,
        "add-secgroup" | "del-secgroup" | "revoke-secgroup" | "set-secgroup"
        | "assign-secgroup" => secgroups(call).await?,
        _ => return Ok(None),
    }
    reload(region, &id).await.map(Some)
}

// ---------------------------------------------------------------------------
// the recycle bin

/// `cancel-delete`: out of the recycle bin, unless its real delete began.
pub async fn cancel_delete(region: &Region, obj: &Row) -> Result<()> {
    let id = s(obj, "id");
    let mut ch = Row::new();
    ch.insert("pending_deleted".into(), json!(false));
    ch.insert("pending_deleted_at".into(), Value::Null);
    let mut q = crud::update_sql(&GUESTS, &ch);
    q.push(" WHERE `id` = ")
        .bind(id.as_str())
        .push(" AND `deleted` = 0 AND `pending_deleted` = 1 AND `status` NOT IN ");
    q.bind_list([status::START_DELETE, status::DELETING]);
    let n = q
        .query()?
        .execute(region.db.write())
        .await
        .map_err(DbError::from)?
        .rows_affected();
    if n == 0 {
        return Err(refuse("cancel-delete", &current_status(region, &id).await?));
    }
    Ok(())
}

/// Purge servers whose time in the recycle bin is over, in the background.
pub fn start_background(region: &Arc<Region>) {
    let w = Arc::downgrade(region);
    let period = (region.opts.pending_delete_expire / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let Some(r) = w.upgrade() else {
                return;
            };
            if let Err(e) = delete_expired(&r).await {
                tracing::warn!(error = %e, "purging expired pending-deleted servers failed");
            }
        }
    });
}

/// Start the real delete of servers pending delete for longer than
/// `pending_delete_expire`. Safe with several region processes: each guest
/// is claimed with a compare-and-set on its status.
pub async fn delete_expired(r: &Region) -> Result<usize, TaskError> {
    let cutoff = cloudpods_apis::time::format(
        chrono::Utc::now()
            - chrono::Duration::from_std(r.opts.pending_delete_expire).unwrap_or_default(),
    );
    let settled = [
        status::READY,
        status::RUNNING,
        status::UNKNOWN,
        status::CRASHED,
        status::START_FAIL,
        status::STOP_FAIL,
        status::DELETE_FAIL,
    ];
    let mut q = Sql::new(format!(
        "SELECT {} FROM `guests_tbl` WHERE `deleted` = 0 AND `pending_deleted` = 1 AND `pending_deleted_at` < ",
        crud::column_list(&GUESTS)
    ));
    q.bind(cutoff).push(" AND `status` IN ");
    q.bind_list(settled.iter().copied());
    q.push(" ORDER BY `pending_deleted_at` LIMIT 100");
    let guests = crud::fetch_rows(r.db.read(), &GUESTS, &q).await?;
    let mut n = 0;
    for g in guests {
        let gid = s(&g, "id");
        let prev = s(&g, "status");
        // Claimed only if still in the bin and unchanged (a cancel-delete
        // or another region process may have come first).
        let mut ch = Row::new();
        ch.insert("status".into(), json!(status::START_DELETE));
        let mut q = crud::update_sql(&GUESTS, &ch);
        q.push(" WHERE `id` = ")
            .bind(gid.as_str())
            .push(" AND `deleted` = 0 AND `pending_deleted` = 1 AND `status` = ")
            .bind(prev.as_str());
        let mut tx = r.db.begin().await?;
        if q.query()?
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?
            .rows_affected()
            != 1
        {
            continue;
        }
        let t = NewTask::new(
            "GuestDeleteTask",
            "server",
            &gid,
            &s(&g, "name"),
            json!({"purge": false, "pending": false, "prev_status": prev}),
            Owner {
                tenant_id: s(&g, "tenant_id"),
                domain_id: s(&g, "domain_id"),
                user: "system".into(),
                cred: json!({"user": "system", "reason": "pending delete expired"}),
                ..Default::default()
            },
        );
        r.engine.submit_in(&mut tx, &t).await?;
        tx.commit().await.map_err(DbError::from)?;
        n += 1;
    }
    if n > 0 {
        r.engine.wake();
        tracing::info!(count = n, "deleting servers whose pending delete expired");
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// specs

/// The running guest's host row and what its agent says of the guest's
/// display (`GET /servers/{id}/vnc` on the agent).
async fn display_of(region: &Arc<Region>, obj: &Row, what: &str) -> Result<(Row, Value)> {
    let st = s(obj, "status");
    if !matches!(
        st.as_str(),
        status::RUNNING | status::SYNC_CONFIG | status::ATTACH_DISK | status::DETACH_DISK
    ) || s(obj, "power_states") == "off"
    {
        return Err(refuse(what, &st));
    }
    let host = crud::get(region.db.read(), &HOSTS, &s(obj, "host_id"))
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    if Agent::of(&host).is_empty() {
        return Err(HttpError::invalid_status(format!(
            "server {} is on host {} ({}), which has no host agent to reach its console through",
            s(obj, "name"),
            s(&host, "name"),
            s(&host, "host_type")
        )));
    }
    let answer = region
        .agents
        .get(&Agent::of(&host), &format!("/servers/{}/vnc", s(obj, "id")))
        .await
        .map_err(|e| HttpError::bad_gateway(e.0))?;
    Ok((host, answer))
}

/// `GET /servers/{id}/vnc`: where the guest's console is.
pub async fn vnc(region: &Arc<Region>, obj: &Row) -> Result<Value> {
    let (host, answer) = display_of(region, obj, "vnc").await?;
    let mut out = json!({
        "id": s(obj, "id"),
        "protocol": answer.get("protocol").cloned().unwrap_or(json!("vnc")),
        "host": answer.get("host").cloned().unwrap_or(json!(s(&host, "access_ip"))),
        "port": answer.get("port").cloned().unwrap_or(Value::Null),
        "hypervisor": s(obj, "hypervisor"),
    });
    for k in ["password", "websocket_port"] {
        if let Some(v) = answer.get(k).filter(|v| !v.is_null()) {
            out[k] = v.clone();
        }
    }
    Ok(out)
}

/// `GET /servers/{id}/console?protocol=vnc|serial`: a ticket for the
/// guest's console WebSocket on its host agent
/// (`/servers/{id}/console/{protocol}`), pre-signed with the host's key and
/// good for [`cloudpods_apis::agent_auth::MAX_SKEW_SECS`]. The gateway asks
/// for one with the caller's token each time a browser connects, so the
/// ticket never outlives the caller's right to see the server; it opens
/// only the console the caller may open anyway.
pub async fn console(region: &Arc<Region>, obj: &Row, protocol: &str) -> Result<Value> {
    if !matches!(protocol, "vnc" | "serial") {
        return Err(HttpError::input("protocol must be vnc or serial"));
    }
    let (host, answer) = display_of(region, obj, "console").await?;
    let offered = answer["consoles"]
        .as_array()
        .is_some_and(|c| c.iter().any(|p| p == protocol));
    if !offered {
        return Err(HttpError::invalid_status(format!(
            "server {} has no {protocol} console: its host {} ({}) does not offer one",
            s(obj, "name"),
            s(&host, "name"),
            s(&host, "host_type")
        )));
    }
    let agent = Agent::of(&host);
    let path = format!("/servers/{}/console/{protocol}", s(obj, "id"));
    let grant = agent
        .grant(&path)
        .map_err(|e| HttpError::invalid_status(e.0))?;
    let base = agent.uri.trim_end_matches('/');
    let ws = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .ok_or_else(|| HttpError::invalid_status("the host agent's address is not http(s)"))?;
    Ok(json!({
        "id": s(obj, "id"),
        "name": s(obj, "name"),
        "protocol": protocol,
        "url": format!("{ws}{path}"),
        "timestamp": grant["timestamp"],
        "signature": grant["signature"],
    }))
}

/// Whether a pending-deleted guest may still do `action`.
pub fn allowed_in_recycle_bin(action: &str) -> bool {
    matches!(
        action,
        "cancel-delete" | "purge" | "syncstatus" | "sync" | "status"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_names_stay_short() {
        assert_eq!(rebuild_name("vm-disk0"), "vm-disk0-rebuild");
        assert!(rebuild_name(&"x".repeat(300)).len() <= 108);
    }

    #[test]
    fn recycle_bin_allows_only_recovery() {
        assert!(allowed_in_recycle_bin("cancel-delete"));
        assert!(!allowed_in_recycle_bin("start"));
        assert!(!allowed_in_recycle_bin("change-config"));
    }
}
