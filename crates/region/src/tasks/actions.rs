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
use cloudpods_taskman::{
    NewTask, Owner, Step, StepResult, SubtaskResult, TaskCtx, TaskDef, TaskError,
};
use serde_json::{Map, Value, json};

use super::guest::{child_owner, mark_ready, mark_running};
use super::{agent_of, agent_timeout, guest_row, host_row, region, set_status, value_str};
use crate::Region;
use crate::agent::Agent;
use crate::desc::{DescOverrides, guest_desc, guest_desc_with};
use crate::models::*;
use crate::resources::servers::{check_password, find_visible, mem_mb, task_owner};
use crate::store::{self, i, s};

/// Largest disk (MB): 16 TiB, as for create.
const MAX_DISK_MB: i64 = 16 * 1024 * 1024;
/// Most disks one guest may have.
const MAX_DISKS: usize = 16;

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
    let mut ch = Row::new();
    ch.insert("status".into(), json!(to));
    let mut q = crud::update_sql(desc, &ch);
    q.push(" WHERE `id` = ")
        .bind(id)
        .push(" AND `deleted` = 0 AND `status` IN ");
    q.bind_list(from.iter().copied());
    Ok(q.query()?
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?
        .rows_affected()
        == 1)
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
    let mut t = NewTask::new(
        name,
        "server",
        &s(obj, "id"),
        &s(obj, "name"),
        params,
        task_owner(ctx, obj),
    );
    t.request_id = ctx.request_id.clone();
    t
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
pub async fn perform(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    action: &str,
    input: &Object,
) -> Result<Option<Value>> {
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
        "change-config" => change_config(region, ctx, obj, input).await?,
        "attachdisk" | "attach-disk" => attach_disk(region, ctx, obj, input).await?,
        "detachdisk" | "detach-disk" => detach_disk(region, ctx, obj, input).await?,
        "disk-snapshot" | "snapshot" => disk_snapshot(region, ctx, obj, input).await?,
        "rebuild-root" => rebuild_root(region, ctx, obj, input).await?,
        "set-password" | "deploy" | "reset-password" => {
            set_password(region, ctx, obj, input).await?
        }
        "migrate" => migrate(region, ctx, obj, input).await?,
        "add-secgroup" | "del-secgroup" | "revoke-secgroup" | "set-secgroup"
        | "assign-secgroup" => secgroups(region, ctx, obj, action, input).await?,
        _ => return Ok(None),
    }
    reload(region, &id).await.map(Some)
}

// ---------------------------------------------------------------------------
// change-config

async fn change_config(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "change-config";
    require_status(obj, ACTION, &[status::READY])?;
    let gid = s(obj, "id");
    let (old_cpu, old_mem) = (i(obj, "vcpu_count"), i(obj, "vmem_size"));
    let mut cpu = get_i64(input, "vcpu_count")?;
    let mut mem = match input.get("vmem_size") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(mem_mb(v).ok_or_else(|| HttpError::input(format!("invalid vmem_size {v}")))?)
        }
    };
    let mut instance_type = s(obj, "instance_type");
    if let Some(sku) = get_str_any(input, &["sku", "instance_type"]) {
        let sku_row = find_visible(region, ctx, &SERVERSKUS, &sku)
            .await
            .map_err(|_| HttpError::not_found(format!("server sku {sku} not found")))?;
        cpu = cpu.or(Some(i(&sku_row, "cpu_core_count")));
        mem = mem.or(Some(i(&sku_row, "memory_size_mb")));
        instance_type = s(&sku_row, "name");
    }
    let cpu = cpu.unwrap_or(old_cpu);
    let mem = mem.unwrap_or(old_mem);
    if !(1..=256).contains(&cpu) {
        return Err(HttpError::input(format!(
            "vcpu_count must be between 1 and 256, got {cpu}"
        )));
    }
    if !(64..=4 * 1024 * 1024).contains(&mem) {
        return Err(HttpError::input(format!(
            "vmem_size must be between 64 MB and 4 TB, got {mem} MB"
        )));
    }

    // Disks: a size for an existing index grows that disk, a new index adds
    // a data disk on the guest's host.
    let (disks, _) = collect_configs(input).map_err(HttpError::input)?;
    let existing = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let mut resize = Vec::new();
    let mut add = Vec::new();
    let mut extra_storage = 0i64;
    let mut sched_disks = Vec::new();
    for (pos, d) in disks.iter().enumerate() {
        let idx = d.index.unwrap_or(pos as i64);
        if idx < 0 {
            return Err(HttpError::input(format!("disk index {idx} is negative")));
        }
        if let Some(size) = d.size
            && (size <= 0 || size > MAX_DISK_MB)
        {
            return Err(HttpError::input(format!(
                "disk {idx}: size must be between 1 MB and 16 TB, got {size} MB"
            )));
        }
        match existing.iter().find(|(j, _)| i(j, "index") == idx) {
            Some((_, disk)) => {
                let Some(size) = d.size else { continue };
                let cur = i(disk, "disk_size");
                if size < cur {
                    return Err(HttpError::input(format!(
                        "disk {idx} ({}): a disk cannot shrink ({cur} MB to {size} MB)",
                        s(disk, "name")
                    )));
                }
                if size > cur {
                    resize.push(
                        json!({"disk_id": s(disk, "id"), "storage_id": s(disk, "storage_id"),
                                       "size": size, "old_size": cur}),
                    );
                    extra_storage += size - cur;
                    sched_disks.push(SchedDisk {
                        size: size - cur,
                        storage_id: s(disk, "storage_id"),
                        ..Default::default()
                    });
                }
            }
            None => {
                if !d.disk_id.is_empty() {
                    return Err(HttpError::input(
                        "an existing disk is attached with attachdisk, not change-config",
                    ));
                }
                let size = d
                    .size
                    .ok_or_else(|| HttpError::missing(format!("disk {idx}: size is required")))?;
                if add.iter().any(|a: &Value| a["index"].as_i64() == Some(idx)) {
                    return Err(HttpError::input(format!("disk index {idx} given twice")));
                }
                extra_storage += size;
                add.push(json!({
                    "index": idx, "size": size, "image_id": d.image_id,
                    "disk_id": crud::new_id(DISKS.id_style),
                    "format": if d.format.is_empty() { "qcow2" } else { d.format.as_str() },
                    "driver": if d.driver.is_empty() { "virtio" } else { d.driver.as_str() },
                    "fs": d.fs, "mountpoint": d.mountpoint,
                }));
                sched_disks.push(SchedDisk {
                    size,
                    backend: d.backend.clone(),
                    medium: d.medium.clone(),
                    storage_id: d.storage_id.clone(),
                });
            }
        }
    }
    if existing.len() + add.len() > MAX_DISKS {
        return Err(HttpError::input(format!("at most {MAX_DISKS} disks")));
    }
    if cpu == old_cpu && mem == old_mem && resize.is_empty() && add.is_empty() {
        return Err(HttpError::input(
            "nothing to change: give vcpu_count, vmem_size, sku or disks that differ from the current configuration",
        ));
    }

    // The guest's own host must hold the new configuration (its present
    // usage is not counted twice).
    let host_id = s(obj, "host_id");
    let host = crud::get(region.db.read(), &HOSTS, &host_id)
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    let host_name = s(&host, "name");
    let sched_in = ScheduleInput {
        session_id: crud::new_id(cloudpods_db::IdStyle::Uuid),
        count: 1,
        vcpu_count: cpu,
        vmem_size: mem,
        disks: sched_disks,
        hypervisor: s(obj, "hypervisor"),
        prefer_host: host_id.clone(),
        project: s(obj, "tenant_id"),
        project_domain: s(obj, "domain_id"),
        guest_ids: vec![gid.clone()],
        ..Default::default()
    };
    let candidate = match schedule(region, &sched_in).await {
        Ok(c) => c.into_iter().next(),
        Err(e) => {
            return Err(HttpError::insufficient(format!(
                "host {host_name} cannot hold server {} with {cpu} vCPUs and {mem} MB: {}",
                s(obj, "name"),
                e.details
            )));
        }
    };
    let candidate = candidate.filter(|c| c.host_id == host_id).ok_or_else(|| {
        HttpError::insufficient(format!(
            "host {host_name} cannot hold server {} with {cpu} vCPUs and {mem} MB",
            s(obj, "name")
        ))
    })?;
    for (k, a) in add.iter_mut().enumerate() {
        let storage = candidate
            .disks
            .get(resize.len() + k)
            .and_then(|d| d.storage_ids.first())
            .cloned()
            .ok_or_else(|| {
                HttpError::insufficient(format!(
                    "host {host_name} has no storage for a {} MB disk",
                    a["size"]
                ))
            })?;
        a["storage_id"] = json!(storage);
    }

    // Reserve: quota for the growth, the new sizes on the row (so the
    // scheduler and quota see them at once), the task.
    let mut more = crate::quota::nothing();
    more.cpu = (cpu - old_cpu).max(0);
    more.memory = (mem - old_mem).max(0);
    more.storage = extra_storage;
    let db = &region.db;
    let mut tx = crate::quota::begin(db, &s(obj, "tenant_id")).await?;
    if let Some(msg) = crate::quota::check(
        db,
        &mut tx,
        &s(obj, "tenant_id"),
        region.opts.default_quota,
        &more,
    )
    .await?
    {
        return Err(HttpError::out_of_quota(msg));
    }
    guest_cas(
        region,
        &mut tx,
        obj,
        ACTION,
        &[status::READY],
        status::CHANGE_FLAVOR,
    )
    .await?;
    let new = json!({"vcpu_count": cpu, "vmem_size": mem, "instance_type": instance_type});
    let mut ch: Row = new.as_object().cloned().unwrap_or_default();
    ch.insert("pending_storage".into(), json!(extra_storage));
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(&mut *tx, &GUESTS, &gid, &ch).await?;
    let params = json!({
        "old": {"vcpu_count": old_cpu, "vmem_size": old_mem, "instance_type": s(obj, "instance_type")},
        "new": new,
        "resize": resize,
        "add": add,
        "auto_start": flag(input, "auto_start")?,
    });
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestChangeConfigTask", params),
    )
    .await
}

/// Change vCPUs, memory and disks of a stopped guest.
pub struct ChangeConfig(pub Weak<Region>);

#[async_trait]
impl TaskDef for ChangeConfig {
    fn name(&self) -> &'static str {
        "GuestChangeConfigTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["reserve", "resize", "newdisks", "finish"]
    }

    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let gid = t.obj_id.clone();
        let owner = child_owner(t, &guest);
        match step {
            "reserve" => {
                let ch: Row = t.params["new"].as_object().cloned().unwrap_or_default();
                crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                Ok(Step::Done)
            }
            "resize" => {
                let mut waiting = false;
                for e in arr(&t.params["resize"]) {
                    let did = value_str(&e, "disk_id");
                    let size = e["size"].as_i64().unwrap_or(0);
                    let d = crud::get(r.db.read(), &DISKS, &did)
                        .await?
                        .ok_or_else(|| TaskError(format!("disk {did} no longer exists")))?;
                    if i(&d, "disk_size") >= size {
                        continue;
                    }
                    t.spawn(NewTask::new(
                        "DiskResizeTask",
                        "disk",
                        &did,
                        &s(&d, "name"),
                        json!({"size": size}),
                        owner.clone(),
                    ));
                    waiting = true;
                }
                Ok(if waiting {
                    Step::WaitSubtasks
                } else {
                    Step::Done
                })
            }
            "newdisks" => {
                let add = arr(&t.params["add"]);
                let existing = store::guest_disks(&r.db, std::slice::from_ref(&gid)).await?;
                for e in &add {
                    let idx = e["index"].as_i64().unwrap_or(0);
                    if existing.iter().any(|(j, _)| i(j, "index") == idx) {
                        continue;
                    }
                    insert_guest_disk(&r, &guest, e, "data").await?;
                }
                let ids: Vec<String> = add.iter().map(|e| value_str(e, "disk_id")).collect();
                let mut waiting = false;
                for d in store::rows_in(&r.db, &DISKS, "id", &ids).await? {
                    if s(&d, "status") == "ready" {
                        continue;
                    }
                    t.spawn(NewTask::new(
                        "DiskCreateTask",
                        "disk",
                        &s(&d, "id"),
                        &s(&d, "name"),
                        json!({"host_id": s(&guest, "host_id")}),
                        owner.clone(),
                    ));
                    waiting = true;
                }
                Ok(if waiting {
                    Step::WaitSubtasks
                } else {
                    Step::Done
                })
            }
            _ => {
                let mut ch = Row::new();
                ch.insert("pending_storage".into(), json!(0));
                ch.insert("fail_reason".into(), Value::Null);
                crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &gid,
                    &[status::CHANGE_FLAVOR],
                    status::READY,
                )
                .await?;
                if t.params["auto_start"] == json!(true) {
                    return spawn_start(&r, t, &guest, owner).await;
                }
                Ok(Step::Done)
            }
        }
    }

    async fn on_subtasks_done(
        &self,
        _t: &mut TaskCtx,
        step: &str,
        results: Vec<SubtaskResult>,
    ) -> StepResult {
        if step == "finish" {
            // A failed auto-start leaves the new configuration, in start_fail.
            return Ok(Step::Done);
        }
        first_failure(&results)
    }

    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        match step {
            "reserve" => {
                let mut ch: Row = t.params["old"].as_object().cloned().unwrap_or_default();
                ch.insert("pending_storage".into(), json!(0));
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
            }
            "resize" => {
                // A disk cannot shrink back: a grown disk keeps its size (the
                // row says what the agent reported); failed ones are as before.
                for e in arr(&t.params["resize"]) {
                    let mut ch = Row::new();
                    ch.insert("status".into(), json!("ready"));
                    let mut q = crud::update_sql(&DISKS, &ch);
                    q.push(" WHERE `id` = ")
                        .bind(value_str(&e, "disk_id"))
                        .push(" AND `status` IN ('resizing', 'resize_failed')");
                    q.query()?
                        .execute(r.db.write())
                        .await
                        .map_err(DbError::from)?;
                }
            }
            "newdisks" => {
                let guest = guest_row(&r, &t.obj_id).await?;
                for e in arr(&t.params["add"]) {
                    remove_disk(&r, &guest, &value_str(&e, "disk_id")).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("status".into(), json!(status::CHANGE_FLAVOR_FAIL));
        ch.insert("fail_reason".into(), json!(reason));
        ch.insert("pending_storage".into(), json!(0));
        crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        Ok(())
    }
}

/// The first failed subtask as the step's failure.
fn first_failure(results: &[SubtaskResult]) -> StepResult {
    match results.iter().find(|r| !r.succeeded) {
        Some(r) => Err(TaskError(format!(
            "{} {} failed: {}",
            r.task_name, r.obj_id, r.reason
        ))),
        None => Ok(Step::Done),
    }
}

/// Start the guest after an action (`auto_start`), as a subtask whose
/// failure leaves the action done and the guest in start_fail.
async fn spawn_start(r: &Region, t: &mut TaskCtx, guest: &Row, owner: Owner) -> StepResult {
    let gid = s(guest, "id");
    // A re-run finds start_start already set; the start task is inserted
    // with this step's commit, so it cannot exist yet.
    store::cas_status(
        &r.db,
        &GUESTS,
        &gid,
        &[status::READY, status::START_START],
        status::START_START,
    )
    .await?;
    t.spawn(NewTask::new(
        "GuestStartTask",
        "server",
        &gid,
        &s(guest, "name"),
        json!({}),
        owner,
    ));
    Ok(Step::WaitSubtasks)
}

/// Insert a disk row and its joint to the guest (one transaction).
async fn insert_guest_disk(
    r: &Region,
    guest: &Row,
    cfg: &Value,
    disk_type: &str,
) -> Result<(), TaskError> {
    let idx = cfg["index"].as_i64().unwrap_or(0);
    let did = value_str(cfg, "disk_id");
    let mut disk = Row::new();
    disk.insert("id".into(), json!(did));
    disk.insert(
        "name".into(),
        json!(format!("{}-disk{idx}", s(guest, "name"))),
    );
    disk.insert("tenant_id".into(), json!(s(guest, "tenant_id")));
    disk.insert("domain_id".into(), json!(s(guest, "domain_id")));
    disk.insert("storage_id".into(), json!(value_str(cfg, "storage_id")));
    disk.insert("disk_size".into(), json!(cfg["size"].as_i64().unwrap_or(0)));
    disk.insert("disk_format".into(), json!(value_str(cfg, "format")));
    disk.insert("disk_type".into(), json!(disk_type));
    disk.insert("template_id".into(), json!(value_str(cfg, "image_id")));
    disk.insert("fs_format".into(), json!(value_str(cfg, "fs")));
    disk.insert("status".into(), json!("init"));
    crud::prepare_insert(&DISKS, &mut disk);
    let mut joint = Row::new();
    joint.insert("guest_id".into(), json!(s(guest, "id")));
    joint.insert("disk_id".into(), json!(did));
    joint.insert("index".into(), json!(idx));
    joint.insert("boot_index".into(), json!(-1));
    joint.insert("driver".into(), json!(value_str(cfg, "driver")));
    joint.insert("mountpoint".into(), json!(value_str(cfg, "mountpoint")));
    crud::prepare_insert(&GUESTDISKS, &mut joint);
    let mut tx = r.db.begin().await?;
    match crud::insert(&mut *tx, &DISKS, &disk).await {
        Ok(_) => {}
        // Created by an earlier run whose joint was removed meanwhile:
        // only the joint is missing.
        Err(DbError::Duplicate(_)) => {}
        Err(e) => return Err(e.into()),
    }
    crud::insert(&mut *tx, &GUESTDISKS, &joint).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Delete a disk a task created: on the host (best effort: an agent that
/// cannot answer keeps nothing we could reach), its joint, its row.
async fn remove_disk(r: &Region, guest: &Row, did: &str) -> Result<(), TaskError> {
    let Some(d) = crud::get(r.db.read(), &DISKS, did).await? else {
        return Ok(());
    };
    if s(&d, "status") != "init"
        && let Ok(agent) =
            super::disk::storage_agent(r, &s(&d, "storage_id"), &s(guest, "host_id")).await
        && let Err(e) = r
            .agents
            .call(
                &agent,
                &format!("/disks/{}/delete/{did}", s(&d, "storage_id")),
                json!({}),
            )
            .await
    {
        tracing::warn!(disk = %did, error = %e, "agent could not delete the disk");
    }
    let mut q = Sql::new("DELETE FROM `guestdisks_tbl` WHERE `disk_id` = ");
    q.bind(did);
    q.query()?
        .execute(r.db.write())
        .await
        .map_err(DbError::from)?;
    crud::delete(r.db.write(), &DISKS, did).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// agent sync (running guests pick up disks, secgroups… without a restart)

/// Send the guest's desc to its agent (`POST /servers/{id}/sync`).
async fn send_sync(r: &Region, t: &TaskCtx) -> StepResult {
    let guest = guest_row(r, &t.obj_id).await?;
    let agent = agent_of(r, &guest).await?;
    let desc = guest_desc(r, &guest).await?;
    r.agents
        .send(
            &agent,
            &format!("/servers/{}/sync", t.obj_id),
            json!({"desc": desc}),
            t,
        )
        .await?;
    Ok(Step::WaitCallback {
        timeout: agent_timeout(r),
    })
}

/// Re-send the desc synchronously after an undo (best effort).
async fn sync_now(r: &Region, gid: &str) {
    let res = async {
        let guest = guest_row(r, gid).await?;
        let agent = agent_of(r, &guest).await?;
        let desc = guest_desc(r, &guest).await?;
        r.agents
            .call(
                &agent,
                &format!("/servers/{gid}/sync"),
                json!({"desc": desc}),
            )
            .await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(guest = %gid, error = %e, "agent could not re-sync the guest");
    }
}

fn was_running(t: &TaskCtx) -> bool {
    t.params["prev_status"] == json!(status::RUNNING)
}

/// Back to the status before the action.
async fn restore_status(r: &Region, t: &TaskCtx, from: &str) -> Result<(), TaskError> {
    if !store::cas_status(&r.db, &GUESTS, &t.obj_id, &[from], status::READY).await? {
        return Ok(());
    }
    if was_running(t) {
        mark_running(r, &t.obj_id).await
    } else {
        mark_ready(r, &t.obj_id).await
    }
}

async fn set_disk_status(r: &Region, did: &str, from: &[&str], to: &str) -> Result<(), TaskError> {
    store::cas_status(&r.db, &DISKS, did, from, to).await?;
    Ok(())
}

/// Propagate a guest's configuration to its running agent.
pub struct SyncConfig(pub Weak<Region>);

#[async_trait]
impl TaskDef for SyncConfig {
    fn name(&self) -> &'static str {
        "GuestSyncConfigTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["sync"]
    }
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        send_sync(&*region(&self.0)?, t).await
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        restore_status(&*region(&self.0)?, t, status::SYNC_CONFIG).await?;
        Ok(Step::Done)
    }
    async fn undo_step(&self, t: &mut TaskCtx, _step: &str) -> Result<(), TaskError> {
        // The groups the guest had, when the change came from a
        // `*-secgroup` action.
        let Some(prev) = t.params.get("prev_secgroups").and_then(Value::as_array) else {
            return Ok(());
        };
        let prev: Vec<String> = prev
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let r = region(&self.0)?;
        let mut tx = r.db.begin().await?;
        set_secgroups(&mut tx, &t.obj_id, &prev).await?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(())
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        set_status(
            &*region(&self.0)?,
            &GUESTS,
            &t.obj_id,
            status::SYNC_FAIL,
            Some(reason),
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// attachdisk / detachdisk

async fn attach_disk(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "attachdisk";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let gid = s(obj, "id");
    let disk = input_disk(region, ctx, input)
        .await?
        .ok_or_else(|| HttpError::missing("disk_id is required"))?;
    let did = s(&disk, "id");
    let dname = s(&disk, "name");
    if s(&disk, "tenant_id") != s(obj, "tenant_id") {
        return Err(HttpError::input(format!(
            "disk {dname} belongs to another project than server {}",
            s(obj, "name")
        )));
    }
    if let Some(j) = store::rows_in(
        &region.db,
        &GUESTDISKS,
        "disk_id",
        std::slice::from_ref(&did),
    )
    .await?
    .first()
    {
        let other = crud::get(region.db.read(), &GUESTS, &s(j, "guest_id"))
            .await?
            .map(|g| s(&g, "name"))
            .unwrap_or_default();
        return Err(HttpError::input(format!(
            "disk {dname} is already attached to server {other}"
        )));
    }
    if s(&disk, "status") != "ready" {
        return Err(HttpError::invalid_status(format!(
            "disk {dname} is {}, not ready",
            s(&disk, "status")
        )));
    }
    let host_id = s(obj, "host_id");
    let reach = store::rows_in(
        &region.db,
        &HOSTSTORAGES,
        "host_id",
        std::slice::from_ref(&host_id),
    )
    .await?;
    if !reach
        .iter()
        .any(|hs| s(hs, "storage_id") == s(&disk, "storage_id"))
    {
        return Err(HttpError::input(format!(
            "disk {dname} is on a storage the server's host cannot reach"
        )));
    }
    let attached = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    if attached.len() >= MAX_DISKS {
        return Err(HttpError::input(format!(
            "a server has at most {MAX_DISKS} disks"
        )));
    }
    let prev = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(region, &mut tx, obj, ACTION, &from, status::ATTACH_DISK).await?;
    if !cas_in(&mut tx, &DISKS, &did, &["ready"], "attaching").await? {
        return Err(HttpError::invalid_status(format!("disk {dname} is busy")));
    }
    let params = json!({
        "disk_id": did, "prev_status": prev,
        "driver": get_str(input, "driver").unwrap_or_else(|| "virtio".into()),
        "cache_mode": get_str_any(input, &["cache", "cache_mode"]).unwrap_or_else(|| "none".into()),
        "mountpoint": get_str(input, "mountpoint").unwrap_or_default(),
    });
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestAttachDiskTask", params),
    )
    .await
}

/// Attach a ready disk; a running guest gets it hot-plugged via sync.
pub struct AttachDisk(pub Weak<Region>);

#[async_trait]
impl TaskDef for AttachDisk {
    fn name(&self) -> &'static str {
        "GuestAttachDiskTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["attach", "sync", "finish"]
    }
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let did = t.param_str("disk_id");
        match step {
            "attach" => {
                let joints = store::rows_in(
                    &r.db,
                    &GUESTDISKS,
                    "guest_id",
                    std::slice::from_ref(&t.obj_id),
                )
                .await?;
                if joints.iter().any(|j| s(j, "disk_id") == did) {
                    return Ok(Step::Done);
                }
                let idx = joints.iter().map(|j| i(j, "index")).max().unwrap_or(-1) + 1;
                let mut joint = Row::new();
                joint.insert("guest_id".into(), json!(t.obj_id));
                joint.insert("disk_id".into(), json!(did));
                joint.insert("index".into(), json!(idx));
                joint.insert("boot_index".into(), json!(-1));
                joint.insert("driver".into(), t.params["driver"].clone());
                joint.insert("cache_mode".into(), t.params["cache_mode"].clone());
                joint.insert("mountpoint".into(), t.params["mountpoint"].clone());
                crud::prepare_insert(&GUESTDISKS, &mut joint);
                crud::insert(r.db.write(), &GUESTDISKS, &joint).await?;
                Ok(Step::Done)
            }
            "sync" if was_running(t) => send_sync(&r, t).await,
            "sync" => Ok(Step::Done),
            _ => {
                set_disk_status(&r, &did, &["attaching"], "ready").await?;
                restore_status(&r, t, status::ATTACH_DISK).await?;
                Ok(Step::Done)
            }
        }
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if step != "attach" {
            return Ok(());
        }
        let r = region(&self.0)?;
        let mut q = Sql::new("DELETE FROM `guestdisks_tbl` WHERE `guest_id` = ");
        q.bind(t.obj_id.as_str())
            .push(" AND `disk_id` = ")
            .bind(t.param_str("disk_id"));
        q.query()?
            .execute(r.db.write())
            .await
            .map_err(DbError::from)?;
        if was_running(t) {
            sync_now(&r, &t.obj_id).await;
        }
        Ok(())
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        set_disk_status(&r, &t.param_str("disk_id"), &["attaching"], "ready").await?;
        set_status(
            &r,
            &GUESTS,
            &t.obj_id,
            status::ATTACH_DISK_FAIL,
            Some(reason),
        )
        .await
    }
}

async fn detach_disk(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "detachdisk";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let gid = s(obj, "id");
    let disk = input_disk(region, ctx, input)
        .await?
        .ok_or_else(|| HttpError::missing("disk_id is required"))?;
    let did = s(&disk, "id");
    let dname = s(&disk, "name");
    let joint = store::rows_in(
        &region.db,
        &GUESTDISKS,
        "guest_id",
        std::slice::from_ref(&gid),
    )
    .await?
    .into_iter()
    .find(|j| s(j, "disk_id") == did)
    .ok_or_else(|| {
        HttpError::input(format!(
            "disk {dname} is not attached to server {}",
            s(obj, "name")
        ))
    })?;
    if i(&joint, "index") == 0 || s(&disk, "disk_type") == "sys" {
        return Err(HttpError::input(format!(
            "disk {dname} is the system disk and cannot be detached"
        )));
    }
    let keep = get_bool(input, "keep_disk")?.unwrap_or(true);
    let prev = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(region, &mut tx, obj, ACTION, &from, status::DETACH_DISK).await?;
    if !cas_in(&mut tx, &DISKS, &did, &["ready"], "detaching").await? {
        return Err(HttpError::invalid_status(format!(
            "disk {dname} is {}, not ready",
            s(&disk, "status")
        )));
    }
    let params = json!({"disk_id": did, "prev_status": prev, "keep_disk": keep, "joint": joint});
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestDetachDiskTask", params),
    )
    .await
}

/// Detach a data disk (and delete it unless `keep_disk`).
pub struct DetachDisk(pub Weak<Region>);

#[async_trait]
impl TaskDef for DetachDisk {
    fn name(&self) -> &'static str {
        "GuestDetachDiskTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["detach", "sync", "finish"]
    }
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let did = t.param_str("disk_id");
        match step {
            "detach" => {
                let mut q = Sql::new("DELETE FROM `guestdisks_tbl` WHERE `guest_id` = ");
                q.bind(t.obj_id.as_str())
                    .push(" AND `disk_id` = ")
                    .bind(did.as_str());
                q.query()?
                    .execute(r.db.write())
                    .await
                    .map_err(DbError::from)?;
                Ok(Step::Done)
            }
            "sync" if was_running(t) => send_sync(&r, t).await,
            "sync" => Ok(Step::Done),
            _ => {
                set_disk_status(&r, &did, &["detaching"], "ready").await?;
                restore_status(&r, t, status::DETACH_DISK).await?;
                if t.params["keep_disk"] == json!(false)
                    && let Some(d) = crud::get(r.db.read(), &DISKS, &did).await?
                {
                    let guest = guest_row(&r, &t.obj_id).await?;
                    let owner = child_owner(t, &guest);
                    t.spawn(NewTask::new(
                        "DiskDeleteTask",
                        "disk",
                        &did,
                        &s(&d, "name"),
                        json!({}),
                        owner,
                    ));
                    return Ok(Step::WaitSubtasks);
                }
                Ok(Step::Done)
            }
        }
    }
    async fn on_subtasks_done(
        &self,
        _t: &mut TaskCtx,
        _step: &str,
        _results: Vec<SubtaskResult>,
    ) -> StepResult {
        // The detach is done; a disk that could not be deleted shows its
        // own dealloc_failed status.
        Ok(Step::Done)
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if step != "detach" {
            return Ok(());
        }
        let r = region(&self.0)?;
        let mut joint: Row = t.params["joint"].as_object().cloned().unwrap_or_default();
        joint.remove("row_id");
        crud::prepare_insert(&GUESTDISKS, &mut joint);
        match crud::insert(r.db.write(), &GUESTDISKS, &joint).await {
            Ok(_) | Err(DbError::Duplicate(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if was_running(t) {
            sync_now(&r, &t.obj_id).await;
        }
        Ok(())
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        set_disk_status(&r, &t.param_str("disk_id"), &["detaching"], "ready").await?;
        set_status(
            &r,
            &GUESTS,
            &t.obj_id,
            status::DETACH_DISK_FAIL,
            Some(reason),
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// disk-snapshot

async fn disk_snapshot(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "snapshot";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let gid = s(obj, "id");
    let attached = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let disk = match input_disk(region, ctx, input).await? {
        Some(d) => d,
        // Without a disk: the system disk (Cloudpods' `snapshot` shorthand).
        None => attached
            .first()
            .map(|(_, d)| d.clone())
            .ok_or_else(|| HttpError::missing("disk_id is required"))?,
    };
    let did = s(&disk, "id");
    if !attached.iter().any(|(_, d)| s(d, "id") == did) {
        return Err(HttpError::input(format!(
            "disk {} is not attached to server {}",
            s(&disk, "name"),
            s(obj, "name")
        )));
    }
    let name = match get_str_any(input, &["name", "snapshot_name"]) {
        Some(n) => n,
        None => format!(
            "{}-{}",
            s(&disk, "name"),
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        ),
    };
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(HttpError::input(
            "snapshot name must have 1 to 128 printable characters",
        ));
    }
    let tenant = s(obj, "tenant_id");
    let mut q = Sql::new("SELECT COUNT(*) FROM `snapshots_tbl` WHERE `deleted` = 0 AND `name` = ");
    q.bind(name.as_str())
        .push(" AND `tenant_id` = ")
        .bind(tenant.as_str());
    if crud::fetch_i64(region.db.read(), &q).await? > 0 {
        return Err(HttpError::duplicate_name(format!(
            "snapshot {name} already exists"
        )));
    }
    let mut snap = Row::new();
    snap.insert("name".into(), json!(name));
    snap.insert("tenant_id".into(), json!(tenant));
    snap.insert("domain_id".into(), json!(s(obj, "domain_id")));
    snap.insert("disk_id".into(), json!(did));
    snap.insert("storage_id".into(), json!(s(&disk, "storage_id")));
    snap.insert("size".into(), json!(i(&disk, "disk_size")));
    snap.insert("virtual_size".into(), json!(i(&disk, "disk_size")));
    snap.insert("disk_type".into(), json!(s(&disk, "disk_type")));
    snap.insert("os_type".into(), json!(s(obj, "os_type")));
    snap.insert("created_by".into(), json!("manual"));
    snap.insert("status".into(), json!("creating"));
    crud::prepare_insert(&SNAPSHOTS, &mut snap);
    let prev = s(obj, "status");
    let db = &region.db;
    let mut tx = crate::quota::begin(db, &tenant).await?;
    let mut more = crate::quota::nothing();
    more.snapshot = 1;
    if let Some(msg) =
        crate::quota::check(db, &mut tx, &tenant, region.opts.default_quota, &more).await?
    {
        return Err(HttpError::out_of_quota(msg));
    }
    guest_cas(region, &mut tx, obj, ACTION, &from, status::SNAPSHOT_START).await?;
    crud::insert(&mut *tx, &SNAPSHOTS, &snap).await?;
    let params = json!({"disk_id": did, "snapshot_id": s(&snap, "id"), "prev_status": prev});
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestDiskSnapshotTask", params),
    )
    .await
}

/// Snapshot one disk of the guest (the snapshot itself is the virt
/// service's `SnapshotCreateTask`, run as a subtask).
pub struct DiskSnapshot(pub Weak<Region>);

#[async_trait]
impl TaskDef for DiskSnapshot {
    fn name(&self) -> &'static str {
        "GuestDiskSnapshotTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["snapshot", "finish"]
    }
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        if step == "finish" {
            restore_status(&r, t, status::SNAPSHOT).await?;
            return Ok(Step::Done);
        }
        store::cas_status(
            &r.db,
            &GUESTS,
            &t.obj_id,
            &[status::SNAPSHOT_START],
            status::SNAPSHOT,
        )
        .await?;
        let sid = t.param_str("snapshot_id");
        let snap = crud::get(r.db.read(), &SNAPSHOTS, &sid)
            .await?
            .ok_or_else(|| TaskError(format!("snapshot {sid} no longer exists")))?;
        if s(&snap, "status") == "ready" {
            return Ok(Step::Done);
        }
        let guest = guest_row(&r, &t.obj_id).await?;
        let owner = child_owner(t, &guest);
        t.spawn(NewTask::new(
            "SnapshotCreateTask",
            "snapshot",
            &sid,
            &s(&snap, "name"),
            json!({}),
            owner,
        ));
        Ok(Step::WaitSubtasks)
    }
    async fn on_subtasks_done(
        &self,
        _t: &mut TaskCtx,
        _step: &str,
        results: Vec<SubtaskResult>,
    ) -> StepResult {
        match results.iter().find(|r| !r.succeeded) {
            Some(r) => Err(TaskError(r.reason.clone())),
            None => Ok(Step::Done),
        }
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if step != "snapshot" {
            return Ok(());
        }
        let r = region(&self.0)?;
        let sid = t.param_str("snapshot_id");
        let Some(snap) = crud::get(r.db.read(), &SNAPSHOTS, &sid).await? else {
            return Ok(());
        };
        if s(&snap, "status") == "ready" {
            // Made on the host: drop it there too (best effort).
            let guest = guest_row(&r, &t.obj_id).await?;
            if let Ok(agent) =
                super::disk::storage_agent(&r, &s(&snap, "storage_id"), &s(&guest, "host_id")).await
                && let Err(e) = r
                    .agents
                    .call(
                        &agent,
                        &format!(
                            "/disks/{}/delete-snapshot/{}",
                            s(&snap, "storage_id"),
                            s(&snap, "disk_id")
                        ),
                        json!({"snapshot_id": sid}),
                    )
                    .await
            {
                tracing::warn!(snapshot = %sid, error = %e, "agent could not drop the snapshot");
            }
        }
        crud::delete(r.db.write(), &SNAPSHOTS, &sid).await?;
        Ok(())
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        set_status(
            &*region(&self.0)?,
            &GUESTS,
            &t.obj_id,
            status::SNAPSHOT_FAILED,
            Some(reason),
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// rebuild-root / set-password

/// Password and key of a deploy, checked; stored on the guest (secret
/// column) rather than in the task parameters.
async fn deploy_secrets(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    input: &Object,
) -> Result<Value> {
    let password = get_str(input, "password");
    if let Some(pw) = &password {
        check_password(pw)?;
    }
    let mut keypair_id = String::new();
    let mut public_key = Value::Null;
    if let Some(k) = get_str_any(input, &["keypair", "keypair_id"]) {
        let kp = find_visible(region, ctx, &KEYPAIRS, &k)
            .await
            .map_err(|_| HttpError::not_found(format!("keypair {k} not found")))?;
        keypair_id = s(&kp, "id");
        public_key = json!(s(&kp, "public_key"));
    }
    let reset =
        get_bool(input, "reset_password")?.unwrap_or(password.is_none() && keypair_id.is_empty());
    if password.is_some() && reset {
        return Err(HttpError::input(
            "give either password or reset_password, not both",
        ));
    }
    Ok(json!({
        "password": password, "reset_password": reset, "keypair_id": keypair_id,
        "public_key": public_key, "hostname": s(obj, "hostname"),
        "user_data": obj.get("create_params").and_then(|c| c.get("user_data")).cloned(),
    }))
}

/// The `params` of a deploy request from the guest's stored secrets.
fn deploy_body_params(guest: &Row) -> Value {
    let p = guest.get("deploy_params").cloned().unwrap_or(Value::Null);
    json!({
        "password": p.get("password"), "reset_password": p.get("reset_password"),
        "hostname": s(guest, "hostname"), "user_data": p.get("user_data"),
    })
}

/// Patch the desc's public key when the deploy brings a new keypair.
fn with_key(mut desc: Value, guest: &Row) -> Value {
    if let Some(k) = guest
        .get("deploy_params")
        .and_then(|p| p.get("public_key"))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    {
        desc["public_key"] = json!(k);
    }
    desc
}

async fn clear_deploy_params(r: &Region, gid: &str) -> Result<(), TaskError> {
    let mut ch = Row::new();
    ch.insert("deploy_params".into(), Value::Null);
    crud::update(r.db.write(), &GUESTS, gid, &ch).await?;
    Ok(())
}

async fn set_password(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "set-password";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let secrets = deploy_secrets(region, ctx, obj, input).await?;
    let prev = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(region, &mut tx, obj, ACTION, &from, status::DEPLOYING).await?;
    let mut ch = Row::new();
    ch.insert("deploy_params".into(), secrets);
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(&mut *tx, &GUESTS, &s(obj, "id"), &ch).await?;
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestDeployTask", json!({"prev_status": prev})),
    )
    .await
}

/// Deploy a new password or key into an existing guest.
pub struct Deploy(pub Weak<Region>);

#[async_trait]
impl TaskDef for Deploy {
    fn name(&self) -> &'static str {
        "GuestDeployTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["deploy"]
    }
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let desc = with_key(guest_desc(&r, &guest).await?, &guest);
        let agent = agent_of(&r, &guest).await?;
        r.agents
            .send(
                &agent,
                &format!("/servers/{}/deploy", t.obj_id),
                json!({"desc": desc, "params": deploy_body_params(&guest)}),
                t,
            )
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let mut ch = Row::new();
        ch.insert("deploy_params".into(), Value::Null);
        if let Some(k) = guest
            .get("deploy_params")
            .map(|p| value_str(p, "keypair_id"))
            .filter(|k| !k.is_empty())
        {
            ch.insert("keypair_id".into(), json!(k));
        }
        crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        restore_status(&r, t, status::DEPLOYING).await?;
        Ok(Step::Done)
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        clear_deploy_params(&r, &t.obj_id).await?;
        set_status(&r, &GUESTS, &t.obj_id, status::DEPLOY_FAIL, Some(reason)).await
    }
}

async fn rebuild_root(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "rebuild-root";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let gid = s(obj, "id");
    let image = get_str_any(input, &["image_id", "image", "template_id"])
        .ok_or_else(|| HttpError::missing("image_id is required"))?;
    if image.len() > 128 || image.chars().any(|c| c.is_control() || c == '/') {
        return Err(HttpError::input(format!("invalid image id {image:?}")));
    }
    let disks = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let (_, sys) = disks
        .iter()
        .find(|(j, _)| i(j, "index") == 0)
        .ok_or_else(|| HttpError::invalid_status("the server has no system disk"))?;
    let secrets = deploy_secrets(region, ctx, obj, input).await?;
    let prev = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(region, &mut tx, obj, ACTION, &from, status::REBUILD_ROOT).await?;
    let mut ch = Row::new();
    ch.insert("deploy_params".into(), secrets);
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(&mut *tx, &GUESTS, &gid, &ch).await?;
    let params = json!({
        "prev_status": prev, "image_id": image,
        "was_on": s(obj, "power_states") == "on" || prev == status::RUNNING,
        "auto_start": get_bool(input, "auto_start")?,
        "old_disk_id": s(sys, "id"), "new_disk_id": crud::new_id(DISKS.id_style),
    });
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestRebuildRootTask", params),
    )
    .await
}

/// Replace the system disk with a fresh one from an image. The new disk is
/// made next to the old one and swapped in only after the deploy worked,
/// so a failure keeps the old disk untouched.
pub struct RebuildRoot(pub Weak<Region>);

#[async_trait]
impl TaskDef for RebuildRoot {
    fn name(&self) -> &'static str {
        "GuestRebuildRootTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["stop", "create", "deploy", "swap", "finish"]
    }
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let old_id = t.param_str("old_disk_id");
        let new_id = t.param_str("new_disk_id");
        let owner = child_owner(t, &guest);
        match step {
            "stop" => {
                if s(&guest, "power_states") != "on" {
                    return Ok(Step::Done);
                }
                let agent = agent_of(&r, &guest).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/stop", t.obj_id),
                        json!({"desc": guest_desc(&r, &guest).await?, "is_force": false, "timeout": 30}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "create" => {
                let new = crud::get(r.db.read(), &DISKS, &new_id).await?;
                if new.as_ref().is_some_and(|d| s(d, "status") == "ready") {
                    return Ok(Step::Done);
                }
                if new.is_none() {
                    let old = crud::get(r.db.read(), &DISKS, &old_id)
                        .await?
                        .ok_or_else(|| TaskError::new("the system disk no longer exists"))?;
                    let mut disk = Row::new();
                    disk.insert("id".into(), json!(new_id));
                    disk.insert("name".into(), json!(rebuild_name(&s(&old, "name"))));
                    for k in [
                        "tenant_id",
                        "domain_id",
                        "storage_id",
                        "disk_size",
                        "disk_format",
                        "medium_type",
                    ] {
                        disk.insert(k.into(), old.get(k).cloned().unwrap_or(Value::Null));
                    }
                    disk.insert("disk_type".into(), json!("sys"));
                    disk.insert("template_id".into(), json!(t.param_str("image_id")));
                    disk.insert("status".into(), json!("init"));
                    crud::prepare_insert(&DISKS, &mut disk);
                    match crud::insert(r.db.write(), &DISKS, &disk).await {
                        Ok(_) | Err(DbError::Duplicate(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                t.spawn(NewTask::new(
                    "DiskCreateTask",
                    "disk",
                    &new_id,
                    &format!("{}-rebuild", s(&guest, "name")),
                    json!({"host_id": s(&guest, "host_id")}),
                    owner,
                ));
                Ok(Step::WaitSubtasks)
            }
            "deploy" => {
                let new = crud::get(r.db.read(), &DISKS, &new_id)
                    .await?
                    .ok_or_else(|| TaskError::new("the new system disk vanished"))?;
                let mut o = DescOverrides::default();
                let mut ch = Map::new();
                ch.insert("disk_id".into(), json!(new_id));
                ch.insert("path".into(), json!(s(&new, "access_path")));
                ch.insert("template_id".into(), json!(s(&new, "template_id")));
                ch.insert("size".into(), json!(i(&new, "disk_size")));
                ch.insert("storage_id".into(), json!(s(&new, "storage_id")));
                o.disks.insert(old_id, ch);
                let desc = with_key(guest_desc_with(&r, &guest, &o).await?, &guest);
                let agent = agent_of(&r, &guest).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/deploy", t.obj_id),
                        json!({"desc": desc, "params": deploy_body_params(&guest)}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "swap" => {
                swap_disk(&r, &t.obj_id, &old_id, &new_id).await?;
                let mut ch = Row::new();
                ch.insert("deploy_params".into(), Value::Null);
                if let Some(k) = guest
                    .get("deploy_params")
                    .map(|p| value_str(p, "keypair_id"))
                    .filter(|k| !k.is_empty())
                {
                    ch.insert("keypair_id".into(), json!(k));
                }
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                Ok(Step::Done)
            }
            _ => {
                // The old disk goes with its own task (a failure shows on
                // the disk); the guest comes back in its former power state.
                if let Some(old) = crud::get(r.db.read(), &DISKS, &old_id).await? {
                    t.spawn(NewTask::new(
                        "DiskDeleteTask",
                        "disk",
                        &old_id,
                        &s(&old, "name"),
                        json!({}),
                        owner.clone(),
                    ));
                }
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::REBUILD_ROOT],
                    status::READY,
                )
                .await?;
                let start = t.params["auto_start"]
                    .as_bool()
                    .unwrap_or(t.params["was_on"] == json!(true));
                if start {
                    return spawn_start(&r, t, &guest, owner).await;
                }
                mark_ready(&r, &t.obj_id).await?;
                Ok(Step::WaitSubtasks)
            }
        }
    }
    async fn on_callback(&self, t: &mut TaskCtx, step: &str, data: Value) -> StepResult {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        match step {
            "stop" => {
                ch.insert("power_states".into(), json!("off"));
            }
            _ => {
                if let Some(os) = data.get("os_type").and_then(Value::as_str) {
                    ch.insert("os_type".into(), json!(os));
                }
            }
        }
        if !ch.is_empty() {
            crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        }
        Ok(Step::Done)
    }
    async fn on_subtasks_done(
        &self,
        _t: &mut TaskCtx,
        step: &str,
        results: Vec<SubtaskResult>,
    ) -> StepResult {
        if step == "finish" {
            return Ok(Step::Done);
        }
        first_failure(&results)
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        let old_id = t.param_str("old_disk_id");
        let new_id = t.param_str("new_disk_id");
        match step {
            "swap" => swap_disk(&r, &t.obj_id, &new_id, &old_id).await?,
            "create" => {
                let guest = guest_row(&r, &t.obj_id).await?;
                remove_disk(&r, &guest, &new_id).await?;
            }
            "stop" if t.params["was_on"] == json!(true) => {
                // Bring the guest back up as it was (best effort).
                let guest = guest_row(&r, &t.obj_id).await?;
                if s(&guest, "power_states") != "on" {
                    let res = async {
                        let agent = agent_of(&r, &guest).await?;
                        let desc = guest_desc(&r, &guest).await?;
                        r.agents
                            .call(
                                &agent,
                                &format!("/servers/{}/start", t.obj_id),
                                json!({"desc": desc}),
                            )
                            .await
                    }
                    .await;
                    match res {
                        Ok(_) => {
                            let mut ch = Row::new();
                            ch.insert("power_states".into(), json!("on"));
                            crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                        }
                        Err(e) => {
                            tracing::warn!(guest = %t.obj_id, error = %e, "could not restart the guest")
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        clear_deploy_params(&r, &t.obj_id).await?;
        set_status(
            &r,
            &GUESTS,
            &t.obj_id,
            status::REBUILD_ROOT_FAIL,
            Some(reason),
        )
        .await
    }
}

fn rebuild_name(name: &str) -> String {
    let base: String = name.chars().take(100).collect();
    format!("{base}-rebuild")
}

/// Point the guest's joint from disk `from` to disk `to`, swapping names.
async fn swap_disk(r: &Region, gid: &str, from: &str, to: &str) -> Result<(), TaskError> {
    let (Some(a), Some(b)) = (
        crud::get(r.db.read(), &DISKS, from).await?,
        crud::get(r.db.read(), &DISKS, to).await?,
    ) else {
        return Ok(());
    };
    let mut tx = r.db.begin().await?;
    let mut q = Sql::new("UPDATE `guestdisks_tbl` SET `disk_id` = ");
    q.bind(to)
        .push(" WHERE `guest_id` = ")
        .bind(gid)
        .push(" AND `disk_id` = ")
        .bind(from);
    let n = q
        .query()?
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?
        .rows_affected();
    if n == 1 {
        let mut ch = Row::new();
        ch.insert("name".into(), json!(s(&b, "name")));
        crud::update(&mut *tx, &DISKS, from, &ch).await?;
        ch.insert("name".into(), json!(s(&a, "name")));
        crud::update(&mut *tx, &DISKS, to, &ch).await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// migrate (cold)

async fn migrate(region: &Arc<Region>, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
    const ACTION: &str = "migrate";
    if ctx.max_scope("servers", "perform", Some(ACTION)) != Some(Scope::System) {
        return Err(HttpError::forbidden(
            "only system admins may migrate servers",
        ));
    }
    require_status(obj, ACTION, &[status::READY])?;
    let gid = s(obj, "id");
    let src = s(obj, "host_id");
    let src_host = crud::get(region.db.read(), &HOSTS, &src)
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    refuse_real_migrate(&src_host)?;
    let mut prefer = String::new();
    if let Some(h) = get_str_any(input, &["prefer_host", "prefer_host_id", "host"]) {
        let host = find_visible(region, ctx, &HOSTS, &h)
            .await
            .map_err(|_| HttpError::not_found(format!("host {h} not found")))?;
        if s(&host, "id") == src {
            return Err(HttpError::input(format!(
                "server {} is already on host {}",
                s(obj, "name"),
                s(&host, "name")
            )));
        }
        prefer = s(&host, "id");
    }
    let disks = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let sched_in = ScheduleInput {
        session_id: crud::new_id(cloudpods_db::IdStyle::Uuid),
        count: 1,
        vcpu_count: i(obj, "vcpu_count"),
        vmem_size: i(obj, "vmem_size"),
        disks: disks
            .iter()
            .map(|(_, d)| SchedDisk {
                size: i(d, "disk_size"),
                medium: s(d, "medium_type"),
                ..Default::default()
            })
            .collect(),
        nets: sched_nets(region, &gid).await?,
        hypervisor: s(obj, "hypervisor"),
        prefer_host: prefer,
        exclude_hosts: vec![src.clone()],
        project: s(obj, "tenant_id"),
        project_domain: s(obj, "domain_id"),
        guest_ids: vec![gid.clone()],
        ..Default::default()
    };
    let c = schedule(region, &sched_in)
        .await
        .map_err(|e| {
            HttpError::insufficient(format!(
                "no host can take server {} from host {}: {}",
                s(obj, "name"),
                s(&src_host, "name"),
                e.details
            ))
        })?
        .into_iter()
        .next()
        .filter(|c| c.host_id != src && !c.host_id.is_empty())
        .ok_or_else(|| HttpError::insufficient("the scheduler found no other host"))?;
    if let Some(dst) = crud::get(region.db.read(), &HOSTS, &c.host_id).await? {
        refuse_real_migrate(&dst)?;
    }
    let mut plan = Vec::new();
    for (k, (_, d)) in disks.iter().enumerate() {
        let target = c
            .disks
            .get(k)
            .and_then(|x| x.storage_ids.first())
            .cloned()
            .ok_or_else(|| HttpError::insufficient("the scheduler chose no storage"))?;
        plan.push(json!({
            "disk_id": s(d, "id"), "src_storage_id": s(d, "storage_id"), "src_path": s(d, "access_path"),
            "dst_storage_id": target, "size": i(d, "disk_size"), "format": s(d, "disk_format"),
            "template_id": s(d, "template_id"), "disk_type": s(d, "disk_type"),
        }));
    }
    let mut tx = region.db.begin().await?;
    guest_cas(
        region,
        &mut tx,
        obj,
        ACTION,
        &[status::READY],
        status::START_MIGRATE,
    )
    .await?;
    let params = json!({
        "prev_status": status::READY, "src_host_id": src, "dst_host_id": c.host_id,
        "disks": plan, "auto_start": flag(input, "auto_start")?,
    });
    commit_with_task(region, tx, new_task(ctx, obj, "GuestMigrateTask", params)).await
}

/// Cold migrate needs the target agent to copy disks from the source
/// agent, which only the simulated hypervisor does: a host whose agent
/// registered another driver (`sys_info.driver`, e.g. `qemu/tcg`), or none,
/// is refused before anything is written.
fn refuse_real_migrate(host: &Row) -> Result<()> {
    let driver = host
        .get("sys_info")
        .map(|v| value_str(v, "driver"))
        .unwrap_or_default();
    if driver == "simulated" {
        return Ok(());
    }
    let what = if driver.is_empty() {
        "no registered hypervisor driver".to_string()
    } else {
        format!("driver {driver}")
    };
    Err(HttpError::not_supported(format!(
        "cold migrate between KVM hosts is not available yet: host {} has {what} (only simulated hosts can migrate)",
        s(host, "name")
    )))
}

/// Move a stopped guest to another host: disks made on the target (the
/// agent copies them from the source), deploy there, switch the records,
/// then clean the source. Until the switch the source is untouched, so a
/// failure undoes only what was made on the target.
pub struct Migrate(pub Weak<Region>);

impl Migrate {
    async fn dst_agent(r: &Region, t: &TaskCtx) -> Result<Agent, TaskError> {
        Ok(Agent::of(&host_row(r, &t.param_str("dst_host_id")).await?))
    }
}

#[async_trait]
impl TaskDef for Migrate {
    fn name(&self) -> &'static str {
        "GuestMigrateTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["prepare", "disks", "deploy", "switch", "cleanup", "finish"]
    }
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let owner = child_owner(t, &guest);
        let src = t.param_str("src_host_id");
        let dst = t.param_str("dst_host_id");
        match step {
            "prepare" => {
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::START_MIGRATE],
                    status::MIGRATING,
                )
                .await?;
                Ok(Step::Done)
            }
            "disks" => {
                let src_uri = s(&host_row(&r, &src).await?, "manager_uri");
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let ds = value_str(&d, "dst_storage_id");
                    let body = json!({"disk": {
                        "disk_id": did, "size": d["size"], "format": d["format"],
                        "image_id": d["template_id"], "disk_type": d["disk_type"],
                        "migrate_from": {"host_id": src, "manager_uri": src_uri, "disk_id": did,
                                         "storage_id": d["src_storage_id"], "disk_path": d["src_path"]},
                    }});
                    t.spawn(agent_request(
                        &dst,
                        &did,
                        &format!("/disks/{ds}/create/{did}"),
                        body,
                        &format!("/disks/{ds}/delete/{did}"),
                        owner.clone(),
                    ));
                }
                Ok(Step::WaitSubtasks)
            }
            "deploy" => {
                let paths = t.state.get("paths").cloned().unwrap_or(json!({}));
                let mut o = DescOverrides {
                    host_id: Some(dst.clone()),
                    ..Default::default()
                };
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let mut ch = Map::new();
                    ch.insert("storage_id".into(), d["dst_storage_id"].clone());
                    ch.insert(
                        "path".into(),
                        paths.get(&did).cloned().unwrap_or(Value::Null),
                    );
                    o.disks.insert(did, ch);
                }
                let desc = guest_desc_with(&r, &guest, &o).await?;
                let agent = Self::dst_agent(&r, t).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/deploy", t.obj_id),
                        json!({"desc": desc, "params": {"hostname": s(&guest, "hostname"),
                                                         "reset_password": false, "migrate": true}}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "switch" => {
                let paths = t.state.get("paths").cloned().unwrap_or(json!({}));
                let mut tx = r.db.begin().await?;
                let mut ch = Row::new();
                ch.insert("host_id".into(), json!(dst));
                crud::update(&mut *tx, &GUESTS, &t.obj_id, &ch).await?;
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let mut ch = Row::new();
                    ch.insert("storage_id".into(), d["dst_storage_id"].clone());
                    ch.insert(
                        "access_path".into(),
                        paths.get(&did).cloned().unwrap_or(Value::Null),
                    );
                    crud::update(&mut *tx, &DISKS, &did, &ch).await?;
                }
                tx.commit().await.map_err(DbError::from)?;
                Ok(Step::Done)
            }
            "cleanup" => {
                t.spawn(agent_request(
                    &src,
                    &t.obj_id,
                    &format!("/servers/{}/delete", t.obj_id),
                    json!({}),
                    "",
                    owner.clone(),
                ));
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let ss = value_str(&d, "src_storage_id");
                    t.spawn(agent_request(
                        &src,
                        &did,
                        &format!("/disks/{ss}/delete/{did}"),
                        json!({}),
                        "",
                        owner.clone(),
                    ));
                }
                Ok(Step::WaitSubtasks)
            }
            _ => {
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::MIGRATING],
                    status::READY,
                )
                .await?;
                let mut ch = Row::new();
                ch.insert("fail_reason".into(), Value::Null);
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                if t.params["auto_start"] == json!(true) {
                    return spawn_start(&r, t, &guest, owner).await;
                }
                Ok(Step::Done)
            }
        }
    }
    async fn on_subtasks_done(
        &self,
        t: &mut TaskCtx,
        step: &str,
        results: Vec<SubtaskResult>,
    ) -> StepResult {
        match step {
            "disks" => {
                if let Some(f) = results.iter().find(|r| !r.succeeded) {
                    return Err(TaskError(format!(
                        "creating disk {} on the target host failed: {}",
                        f.obj_id, f.reason
                    )));
                }
                let r = region(&self.0)?;
                let mut paths = Map::new();
                for res in &results {
                    let path = res
                        .state
                        .get("result")
                        .and_then(|v| v.get("disk_path"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let storage = arr(&t.params["disks"])
                        .into_iter()
                        .find(|d| value_str(d, "disk_id") == res.obj_id)
                        .map(|d| value_str(&d, "dst_storage_id"))
                        .unwrap_or_default();
                    super::check_storage_path(&r, &storage, &path, "disk path").await?;
                    paths.insert(res.obj_id.clone(), json!(path));
                }
                t.state.insert("paths".into(), Value::Object(paths));
                Ok(Step::Done)
            }
            "cleanup" => {
                // The source copies are gone: from here on the migration
                // rolls forward (nothing below is undone any more).
                t.state.insert("cleaned".into(), json!(true));
                // The guest already runs from the target; leftovers on the
                // source are logged for the operator.
                for f in results.iter().filter(|r| !r.succeeded) {
                    tracing::warn!(guest = %t.obj_id, object = %f.obj_id, reason = %f.reason,
                                   "could not clean up the migration source");
                }
                Ok(Step::Done)
            }
            _ => Ok(Step::Done),
        }
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if t.state.get("cleaned") == Some(&json!(true)) {
            // Past the point of no return: the guest lives on the target.
            return Ok(());
        }
        let r = region(&self.0)?;
        match step {
            "switch" => {
                let mut tx = r.db.begin().await?;
                let mut ch = Row::new();
                ch.insert("host_id".into(), json!(t.param_str("src_host_id")));
                crud::update(&mut *tx, &GUESTS, &t.obj_id, &ch).await?;
                for d in arr(&t.params["disks"]) {
                    let mut ch = Row::new();
                    ch.insert("storage_id".into(), d["src_storage_id"].clone());
                    ch.insert("access_path".into(), d["src_path"].clone());
                    crud::update(&mut *tx, &DISKS, &value_str(&d, "disk_id"), &ch).await?;
                }
                tx.commit().await.map_err(DbError::from)?;
            }
            "deploy" => {
                if let Ok(agent) = Self::dst_agent(&r, t).await
                    && let Err(e) = r
                        .agents
                        .call(&agent, &format!("/servers/{}/delete", t.obj_id), json!({}))
                        .await
                {
                    tracing::warn!(guest = %t.obj_id, error = %e, "target could not remove the guest");
                }
            }
            "disks" => {
                let Ok(agent) = Self::dst_agent(&r, t).await else {
                    return Ok(());
                };
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    if let Err(e) = r
                        .agents
                        .call(
                            &agent,
                            &format!("/disks/{}/delete/{did}", value_str(&d, "dst_storage_id")),
                            json!({}),
                        )
                        .await
                    {
                        tracing::warn!(disk = %did, error = %e, "target could not delete the disk copy");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    async fn on_failure(
        &self,
        t: &mut TaskCtx,
        _step: &str,
        reason: &str,
    ) -> Result<(), TaskError> {
        set_status(
            &*region(&self.0)?,
            &GUESTS,
            &t.obj_id,
            status::MIGRATE_FAILED,
            Some(reason),
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// one agent request as a subtask

fn agent_request(
    host_id: &str,
    obj_id: &str,
    path: &str,
    body: Value,
    undo_path: &str,
    owner: Owner,
) -> NewTask {
    NewTask::new(
        "AgentRequestTask",
        "host",
        obj_id,
        path,
        json!({"host_id": host_id, "path": path, "body": body, "undo_path": undo_path}),
        owner,
    )
}

/// A disk created as a copy of another host's disk (`migrate_from`) gets a
/// grant to read it there: `GET /disks/{storage}/export/{disk}` signed with
/// the source host's key, made when the request is sent (never stored in
/// the task) and valid for five minutes. The target presents it as the
/// `X-Cloudpods-Timestamp`/`X-Cloudpods-Signature` of that one request;
/// it learns no key and can read nothing else.
async fn add_copy_grant(r: &Region, body: &mut Value) -> Result<(), TaskError> {
    let Some(from) = body
        .get_mut("disk")
        .and_then(|d| d.get_mut("migrate_from"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    let src = host_row(
        r,
        from.get("host_id")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
    .await?;
    let disk = body_str(from, "disk_id");
    let storage = body_str(from, "storage_id");
    let path = format!("/disks/{storage}/export/{disk}");
    let mut grant = Agent::of(&src).grant(&path)?;
    grant["path"] = json!(path);
    from.insert("manager_uri".into(), json!(s(&src, "manager_uri")));
    from.insert("auth".into(), grant);
    Ok(())
}

fn body_str(o: &Map<String, Value>, k: &str) -> String {
    o.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// One request to a host agent, answered by callback; the answer is kept
/// in the task's state for the parent. Lets a step wait for several agent
/// answers at once (one subtask each).
pub struct AgentRequest(pub Weak<Region>);

#[async_trait]
impl TaskDef for AgentRequest {
    fn name(&self) -> &'static str {
        "AgentRequestTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        &["request"]
    }
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let host = host_row(&r, &t.param_str("host_id")).await?;
        let mut body = t.params["body"].clone();
        add_copy_grant(&r, &mut body).await?;
        r.agents
            .send(&Agent::of(&host), &t.param_str("path"), body, t)
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, data: Value) -> StepResult {
        t.state.insert("result".into(), data);
        Ok(Step::Done)
    }
    async fn undo_step(&self, t: &mut TaskCtx, _step: &str) -> Result<(), TaskError> {
        let undo = t.param_str("undo_path");
        if undo.is_empty() {
            return Ok(());
        }
        let r = region(&self.0)?;
        if let Ok(host) = host_row(&r, &t.param_str("host_id")).await
            && let Err(e) = r.agents.call(&Agent::of(&host), &undo, json!({})).await
        {
            tracing::warn!(task = %t.id, error = %e, "agent could not undo the request");
        }
        Ok(())
    }
    async fn on_failure(
        &self,
        _t: &mut TaskCtx,
        _step: &str,
        _reason: &str,
    ) -> Result<(), TaskError> {
        // The parent records the failure on its object.
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// purge, security groups

async fn purge(region: &Arc<Region>, ctx: &Ctx, obj: &Row) -> Result<()> {
    if ctx.max_scope("servers", "perform", Some("purge")) != Some(Scope::System) {
        return Err(HttpError::forbidden("only system admins may purge servers"));
    }
    // Purge forgets the records whatever the guest is doing (the operator's
    // way out of a host that is gone).
    let cur = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(
        region,
        &mut tx,
        obj,
        "purge",
        &[cur.as_str()],
        status::START_DELETE,
    )
    .await?;
    let params = json!({"purge": true, "pending": false, "prev_status": cur});
    commit_with_task(region, tx, new_task(ctx, obj, "GuestDeleteTask", params)).await
}

async fn secgroups(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    action: &str,
    input: &Object,
) -> Result<()> {
    let from = [status::READY, status::RUNNING];
    require_status(obj, action, &from)?;
    let gid = s(obj, "id");
    let mut names: Vec<String> = Vec::new();
    for key in [
        "secgroup_ids",
        "secgroups",
        "secgrp_ids",
        "secgroup_id",
        "secgroup",
        "secgrp",
    ] {
        names.extend(get_strs(input, key));
    }
    names.dedup();
    if names.is_empty() && action != "set-secgroup" {
        return Err(HttpError::missing("secgroup_ids is required"));
    }
    let mut wanted = Vec::new();
    for n in &names {
        let g = find_visible(region, ctx, &SECGROUPS, n)
            .await
            .map_err(|_| HttpError::not_found(format!("secgroup {n} not found")))?;
        if !wanted.iter().any(|w: &Row| s(w, "id") == s(&g, "id")) {
            wanted.push(g);
        }
    }
    let mut current: Vec<String> = store::rows_in(
        &region.db,
        &GUESTSECGROUPS,
        "guest_id",
        std::slice::from_ref(&gid),
    )
    .await?
    .iter()
    .map(|j| s(j, "secgroup_id"))
    .collect();
    // The primary group first.
    current.sort_by_key(|g| *g != s(obj, "secgrp_id"));
    let ids: Vec<String> = wanted.iter().map(|g| s(g, "id")).collect();
    let mut result: Vec<String> = match action {
        "add-secgroup" => {
            if let Some(g) = wanted.iter().find(|g| current.contains(&s(g, "id"))) {
                return Err(HttpError::input(format!(
                    "secgroup {} is already assigned to server {}",
                    s(g, "name"),
                    s(obj, "name")
                )));
            }
            current.iter().cloned().chain(ids).collect()
        }
        "del-secgroup" | "revoke-secgroup" => {
            if let Some(g) = wanted.iter().find(|g| !current.contains(&s(g, "id"))) {
                return Err(HttpError::input(format!(
                    "secgroup {} is not assigned to server {}",
                    s(g, "name"),
                    s(obj, "name")
                )));
            }
            current
                .iter()
                .filter(|c| !ids.contains(c))
                .cloned()
                .collect()
        }
        _ => ids,
    };
    result.dedup();
    if result.len() > 10 {
        return Err(HttpError::input("a server has at most 10 security groups"));
    }
    let running = s(obj, "status") == status::RUNNING;
    let mut tx = region.db.begin().await?;
    let to = if running {
        status::SYNC_CONFIG
    } else {
        status::READY
    };
    guest_cas(
        region,
        &mut tx,
        obj,
        action,
        &[s(obj, "status").as_str()],
        to,
    )
    .await?;
    set_secgroups(&mut tx, &gid, &result).await?;
    if !running {
        tx.commit().await.map_err(DbError::from)?;
        return Ok(());
    }
    commit_with_task(
        region,
        tx,
        new_task(
            ctx,
            obj,
            "GuestSyncConfigTask",
            json!({"prev_status": status::RUNNING, "prev_secgroups": current}),
        ),
    )
    .await
}

/// Make `groups` the guest's security groups (the first is its primary).
async fn set_secgroups(
    tx: &mut DbTx,
    gid: &str,
    groups: &[String],
) -> std::result::Result<(), DbError> {
    let mut q = Sql::new("DELETE FROM `guestsecgroups_tbl` WHERE `guest_id` = ");
    q.bind(gid);
    q.query()?.execute(&mut **tx).await.map_err(DbError::from)?;
    for sg in groups {
        let mut row = Row::new();
        row.insert("guest_id".into(), json!(gid));
        row.insert("secgroup_id".into(), json!(sg));
        crud::prepare_insert(&GUESTSECGROUPS, &mut row);
        crud::insert(&mut **tx, &GUESTSECGROUPS, &row).await?;
    }
    let mut ch = Row::new();
    ch.insert(
        "secgrp_id".into(),
        groups.first().map(|v| json!(v)).unwrap_or(Value::Null),
    );
    crud::update(&mut **tx, &GUESTS, gid, &ch).await?;
    Ok(())
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

/// `GET /servers/{id}/vnc`: where the guest's console is.
pub async fn vnc(region: &Arc<Region>, obj: &Row) -> Result<Value> {
    let st = s(obj, "status");
    if !matches!(
        st.as_str(),
        status::RUNNING | status::SYNC_CONFIG | status::ATTACH_DISK | status::DETACH_DISK
    ) || s(obj, "power_states") == "off"
    {
        return Err(refuse("vnc", &st));
    }
    let host = crud::get(region.db.read(), &HOSTS, &s(obj, "host_id"))
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    let answer = region
        .agents
        .get(&Agent::of(&host), &format!("/servers/{}/vnc", s(obj, "id")))
        .await
        .map_err(|e| HttpError::bad_gateway(e.0))?;
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

    #[test]
    fn first_failure_names_the_subtask() {
        let ok = SubtaskResult {
            task_id: "t1".into(),
            task_name: "DiskCreateTask".into(),
            obj_id: "d1".into(),
            succeeded: true,
            reason: String::new(),
            state: Map::new(),
        };
        assert!(matches!(
            first_failure(std::slice::from_ref(&ok)),
            Ok(Step::Done)
        ));
        let mut bad = ok.clone();
        bad.succeeded = false;
        bad.reason = "no space".into();
        let err = first_failure(&[ok, bad])
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(err.contains("d1") && err.contains("no space"), "{err}");
    }
}
