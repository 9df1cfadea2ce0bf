//! Guest tasks: batch create, create, start, stop, restart, reset,
//! syncstatus, delete.
//!
//! Create walks Cloudpods' status machine: `init → schedule → network →
//! disk → deploying → ready (→ starting → running)`; a failing step is
//! undone (addresses, disks, the agent's files) and the guest ends in
//! `sched_fail`, `net_fail`, `disk_fail` or `deploy_fail`, holding nothing.

use cloudpods_taskman::Subtasks;
use std::sync::Weak;

use async_trait::async_trait;
use cloudpods_apis::compute::status;
use cloudpods_apis::scheduler::{SchedDisk, SchedNet, ScheduleInput};
use cloudpods_db::{Row, Sql, crud};
use cloudpods_taskman::{NewTask, Owner, Step, StepResult, TaskCtx, TaskDef, TaskError};
use serde_json::{Value, json};

use super::{Undone, agent_of, agent_timeout, fail_to, guest_row, region, set_status, value_str};
use crate::Region;
use crate::models::*;
use crate::store::{self, i, s};

fn ids_param(t: &TaskCtx) -> Vec<String> {
    t.params["guest_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The owner of a subtask: the guest's project, the parent's user.
pub(crate) fn child_owner(t: &TaskCtx, guest: &Row) -> Owner {
    Owner {
        tenant_id: s(guest, "tenant_id"),
        domain_id: s(guest, "domain_id"),
        user_id: value_str(&t.user, "user_id"),
        user: value_str(&t.user, "user"),
        cred: t.user.clone(),
    }
}

// ---------------------------------------------------------------------------

/// Places a batch of guests, then creates each in its own subtask.
pub struct BatchCreate(pub Weak<Region>);

#[async_trait]
impl TaskDef for BatchCreate {
    cloudpods_taskman::task_meta!("GuestBatchCreateTask", ["schedule", "spawn"]);

    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let ids = ids_param(t);
        let guests = store::rows_in(&r.db, &GUESTS, "id", &ids).await?;
        match step {
            "schedule" => {
                let unplaced: Vec<&Row> = guests
                    .iter()
                    .filter(|g| s(g, "host_id").is_empty())
                    .collect();
                if unplaced.is_empty() {
                    return Ok(Step::Done);
                }
                for g in &unplaced {
                    store::cas_status(
                        &r.db,
                        &GUESTS,
                        &s(g, "id"),
                        &[status::INIT],
                        status::SCHEDULE,
                    )
                    .await?;
                }
                let first = unplaced[0];
                let cp = first.get("create_params").cloned().unwrap_or(Value::Null);
                let input = ScheduleInput {
                    session_id: t.id.clone(),
                    count: unplaced.len() as i64,
                    vcpu_count: i(first, "vcpu_count"),
                    vmem_size: i(first, "vmem_size"),
                    disks: cp["disks"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|d| SchedDisk {
                                    size: d["size"].as_i64().unwrap_or(0),
                                    backend: value_str(d, "backend"),
                                    medium: value_str(d, "medium"),
                                    storage_id: value_str(d, "storage_id"),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    nets: cp["nets"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|n| SchedNet {
                                    network: value_str(n, "network_id"),
                                    wire: value_str(n, "wire_id"),
                                    address: value_str(n, "address"),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    hypervisor: s(first, "hypervisor"),
                    prefer_host: value_str(&cp["prefer"], "prefer_host"),
                    prefer_zone: value_str(&cp["prefer"], "prefer_zone"),
                    prefer_wire: value_str(&cp["prefer"], "prefer_wire"),
                    project: s(first, "tenant_id"),
                    project_domain: s(first, "domain_id"),
                    guest_ids: ids.clone(),
                    ..Default::default()
                };
                // Placement and assignment together, so that concurrent
                // batches in this process see each other's placements.
                let _guard = r.placement.lock().await;
                let scheduler = r.scheduler();
                let candidates = scheduler
                    .schedule(&input)
                    .await
                    .map_err(|e| TaskError(e.details))?;
                let mut placed = t
                    .state
                    .get("placed")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for (g, c) in unplaced.iter().zip(candidates.iter()) {
                    let mut ch = Row::new();
                    ch.insert("host_id".into(), json!(c.host_id));
                    crud::update(r.db.write(), &GUESTS, &s(g, "id"), &ch).await?;
                    let storages: Vec<String> = c
                        .disks
                        .iter()
                        .map(|d| d.storage_ids.first().cloned().unwrap_or_default())
                        .collect();
                    placed.insert(
                        s(g, "id"),
                        json!({"host_id": c.host_id, "storage_ids": storages}),
                    );
                }
                scheduler.completed(&t.id).await;
                t.state.insert("placed".into(), Value::Object(placed));
                Ok(Step::Done)
            }
            _ => {
                let placed = t.state.get("placed").cloned().unwrap_or(json!({}));
                for g in &guests {
                    let id = s(g, "id");
                    if s(g, "status") != status::SCHEDULE {
                        continue;
                    }
                    let candidate = placed
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| json!({"host_id": s(g, "host_id"), "storage_ids": []}));
                    let mut child = NewTask::new(
                        "GuestCreateTask",
                        "server",
                        &id,
                        &s(g, "name"),
                        json!({"candidate": candidate}),
                        child_owner(t, g),
                    );
                    child.request_id = t.id.clone();
                    t.spawn(child);
                }
                Ok(Step::WaitSubtasks)
            }
        }
    }

    /// Each guest's own task reports its failure on the guest; the batch
    /// itself succeeds once every guest task has finished.
    fn tolerates_failed_subtasks(&self, _: &str) -> bool {
        true
    }

    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if step == "schedule" {
            let r = region(&self.0)?;
            for id in ids_param(t) {
                let mut ch = Row::new();
                ch.insert("host_id".into(), Value::Null);
                let mut q = crud::update_sql(&GUESTS, &ch);
                q.push(" WHERE `id` = ")
                    .bind(id)
                    .push(" AND `status` IN ('init', 'schedule')");
                q.query()?
                    .execute(r.db.write())
                    .await
                    .map_err(cloudpods_db::DbError::from)?;
            }
        }
        Ok(())
    }

    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        for id in ids_param(t) {
            let mut ch = Row::new();
            ch.insert("status".into(), json!(status::SCHED_FAIL));
            ch.insert("fail_reason".into(), json!(reason));
            ch.insert("pending_storage".into(), json!(0));
            ch.insert("pending_ports".into(), json!(0));
            let mut q = crud::update_sql(&GUESTS, &ch);
            q.push(" WHERE `id` = ")
                .bind(id)
                .push(" AND `status` IN ('init', 'schedule')");
            q.query()?
                .execute(r.db.write())
                .await
                .map_err(cloudpods_db::DbError::from)?;
        }
        Ok(())
    }
}

/// A storage attached to `host_id` with `size_mb` free.
async fn host_storage_with_room(
    r: &Region,
    host_id: &str,
    size_mb: i64,
) -> Result<Option<String>, TaskError> {
    let joints = store::rows_in(&r.db, &HOSTSTORAGES, "host_id", &[host_id.to_string()]).await?;
    for j in joints {
        let sid = s(&j, "storage_id");
        let Some(st) = crud::get(r.db.read(), &STORAGES, &sid).await? else {
            continue;
        };
        let mut q = Sql::new(format!(
            "SELECT {} FROM `disks_tbl` WHERE `deleted` = 0 AND `storage_id` = ",
            r.db.dialect().sum_int("`disk_size`")
        ));
        q.bind(sid.as_str());
        let used = crud::fetch_i64(r.db.read(), &q).await?;
        let cmt = st.get("cmtbound").and_then(Value::as_f64).unwrap_or(1.0);
        let free = i(&st, "capacity") as f64 * cmt - i(&st, "reserved") as f64 - used as f64;
        if store::b(&st, "enabled") && free >= size_mb as f64 {
            return Ok(Some(sid));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------

/// Creates one placed guest: NICs, disks, deploy, then (auto_start) start.
pub struct Create(pub Weak<Region>);

impl Create {
    /// Networks a NIC without an explicit network may use: auto-alloc guest
    /// networks on wires the host is connected to.
    async fn auto_networks(
        r: &Region,
        host_id: &str,
        tenant_id: &str,
    ) -> Result<Vec<Row>, TaskError> {
        let mut q = Sql::new(format!(
            "SELECT {} FROM `networks_tbl` WHERE `deleted` = 0 AND `is_auto_alloc` = 1 AND `server_type` = 'guest' \
             AND `wire_id` IN (SELECT `wire_id` FROM `hostwires_tbl` WHERE `host_id` = ",
            crud::column_list(&NETWORKS)
        ));
        q.bind(host_id)
            .push(") AND (`tenant_id` = ")
            .bind(tenant_id)
            .push(" OR `is_public` = 1) ORDER BY `created_at`");
        Ok(crud::fetch_rows(r.db.read(), &NETWORKS, &q).await?)
    }

    async fn allocate_nic(r: &Region, guest: &Row, cfg: &Value, idx: i64) -> Result<(), TaskError> {
        let gid = s(guest, "id");
        let mac_given = value_str(cfg, "mac");
        if !mac_given.is_empty() {
            let mut q = Sql::new("SELECT COUNT(*) FROM `guestnetworks_tbl` WHERE `mac_addr` = ");
            q.bind(mac_given.as_str());
            if crud::fetch_i64(r.db.read(), &q).await? > 0 {
                return Err(TaskError(format!(
                    "MAC address {mac_given} is already in use"
                )));
            }
        }
        let candidates = match value_str(cfg, "network_id") {
            n if !n.is_empty() => vec![
                crud::get(r.db.read(), &NETWORKS, &n)
                    .await?
                    .ok_or_else(|| TaskError(format!("network {n} no longer exists")))?,
            ],
            _ => Self::auto_networks(r, &s(guest, "host_id"), &s(guest, "tenant_id")).await?,
        };
        if candidates.is_empty() {
            return Err(TaskError::new(
                "no network with free addresses is reachable from the host",
            ));
        }
        let address = value_str(cfg, "address");
        let mut last_err = String::new();
        for net in candidates {
            let net_id = s(&net, "id");
            let res = crate::ipam::allocate(
                &r.db,
                &net,
                Some(address.as_str()),
                r.opts.ip_reuse_after,
                |ip| {
                    let mut row = Row::new();
                    row.insert("guest_id".into(), json!(gid));
                    row.insert("network_id".into(), json!(net_id));
                    row.insert("ip_addr".into(), json!(ip));
                    row.insert(
                        "mac_addr".into(),
                        json!(if mac_given.is_empty() {
                            crate::ipam::random_mac()
                        } else {
                            mac_given.clone()
                        }),
                    );
                    row.insert("index".into(), json!(idx));
                    row.insert("ifname".into(), json!(format!("eth{idx}")));
                    row.insert("driver".into(), json!(value_str(cfg, "driver")));
                    row.insert(
                        "bw_limit".into(),
                        json!(cfg["bw_limit"].as_i64().unwrap_or(0)),
                    );
                    crud::prepare_insert(&GUESTNETWORKS, &mut row);
                    let db = r.db.clone();
                    async move {
                        crud::insert(db.write(), &GUESTNETWORKS, &row)
                            .await
                            .map(|_| ())
                    }
                },
            )
            .await;
            match res {
                Ok(_) => return Ok(()),
                Err(e) => last_err = e.details,
            }
        }
        Err(TaskError(last_err))
    }
}

#[async_trait]
impl TaskDef for Create {
    cloudpods_taskman::task_meta!("GuestCreateTask", ["network", "disk", "deploy", "finish"]);

    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let gid = s(&guest, "id");
        let cp = guest.get("create_params").cloned().unwrap_or(Value::Null);
        match step {
            "network" => {
                store::cas_status(&r.db, &GUESTS, &gid, &[status::SCHEDULE], status::NETWORK)
                    .await?;
                let existing = store::guest_nics(&r.db, std::slice::from_ref(&gid)).await?;
                for cfg in cp["nets"].as_array().cloned().unwrap_or_default() {
                    let idx = cfg["index"].as_i64().unwrap_or(0);
                    if existing.iter().any(|n| i(n, "index") == idx) {
                        continue;
                    }
                    Self::allocate_nic(&r, &guest, &cfg, idx).await?;
                }
                let mut groups = cp["secgroup_ids"].as_array().cloned().unwrap_or_default();
                if groups.is_empty() {
                    // Like Cloudpods: without a choice, the project's
                    // default group (created on first use).
                    let sg = crate::resources::virt::ensure_default_secgroup(
                        &r,
                        &s(&guest, "tenant_id"),
                        &s(&guest, "domain_id"),
                    )
                    .await
                    .map_err(|e| TaskError(e.details))?;
                    let mut ch = Row::new();
                    ch.insert("secgrp_id".into(), json!(sg));
                    crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                    groups.push(json!(sg));
                }
                for sg in groups {
                    let mut row = Row::new();
                    row.insert("guest_id".into(), json!(gid));
                    row.insert("secgroup_id".into(), sg.clone());
                    crud::prepare_insert(&GUESTSECGROUPS, &mut row);
                    match crud::insert(r.db.write(), &GUESTSECGROUPS, &row).await {
                        Ok(_) | Err(cloudpods_db::DbError::Duplicate(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let mut ch = Row::new();
                ch.insert("pending_ports".into(), json!(0));
                crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                Ok(Step::Done)
            }
            "disk" => {
                store::cas_status(&r.db, &GUESTS, &gid, &[status::NETWORK], status::DISK).await?;
                let existing = store::guest_disks(&r.db, std::slice::from_ref(&gid)).await?;
                let storages: Vec<String> = t.params["candidate"]["storage_ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for cfg in cp["disks"].as_array().cloned().unwrap_or_default() {
                    let idx = cfg["index"].as_i64().unwrap_or(0);
                    if existing.iter().any(|(j, _)| i(j, "index") == idx) {
                        continue;
                    }
                    let mut storage = storages.get(idx as usize).cloned().unwrap_or_default();
                    if storage.is_empty() {
                        // The placement was made but its storage choice was
                        // not committed (a crash in between): choose again
                        // on the guest's host.
                        storage = host_storage_with_room(
                            &r,
                            &s(&guest, "host_id"),
                            cfg["size"].as_i64().unwrap_or(0),
                        )
                        .await?
                        .ok_or_else(|| {
                            TaskError(format!("no storage of the host has room for disk {idx}"))
                        })?;
                    }
                    let mut disk = Row::new();
                    disk.insert(
                        "name".into(),
                        json!(format!("{}-disk{idx}", s(&guest, "name"))),
                    );
                    disk.insert("tenant_id".into(), json!(s(&guest, "tenant_id")));
                    disk.insert("domain_id".into(), json!(s(&guest, "domain_id")));
                    disk.insert("storage_id".into(), json!(storage));
                    disk.insert("disk_size".into(), json!(cfg["size"].as_i64().unwrap_or(0)));
                    disk.insert("disk_format".into(), json!(value_str(&cfg, "format")));
                    disk.insert("disk_type".into(), json!(value_str(&cfg, "disk_type")));
                    disk.insert("template_id".into(), json!(value_str(&cfg, "image_id")));
                    disk.insert("fs_format".into(), json!(value_str(&cfg, "fs")));
                    disk.insert("status".into(), json!("init"));
                    crud::prepare_insert(&DISKS, &mut disk);
                    let mut joint = Row::new();
                    joint.insert("guest_id".into(), json!(gid));
                    joint.insert("disk_id".into(), disk["id"].clone());
                    joint.insert("index".into(), json!(idx));
                    joint.insert("boot_index".into(), json!(if idx == 0 { 0 } else { -1 }));
                    joint.insert("driver".into(), json!(value_str(&cfg, "driver")));
                    joint.insert("mountpoint".into(), json!(value_str(&cfg, "mountpoint")));
                    crud::prepare_insert(&GUESTDISKS, &mut joint);
                    let mut tx = r.db.begin().await?;
                    crud::insert(&mut *tx, &DISKS, &disk).await?;
                    crud::insert(&mut *tx, &GUESTDISKS, &joint).await?;
                    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
                }
                let mut ch = Row::new();
                ch.insert("pending_storage".into(), json!(0));
                crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                let mut waiting = false;
                for (_, d) in store::guest_disks(&r.db, std::slice::from_ref(&gid)).await? {
                    if s(&d, "status") == "ready" {
                        continue;
                    }
                    let child = NewTask::new(
                        "DiskCreateTask",
                        "disk",
                        &s(&d, "id"),
                        &s(&d, "name"),
                        json!({"host_id": s(&guest, "host_id")}),
                        child_owner(t, &guest),
                    );
                    t.spawn(child);
                    waiting = true;
                }
                Ok(if waiting {
                    Step::WaitSubtasks
                } else {
                    Step::Done
                })
            }
            "deploy" => {
                store::cas_status(&r.db, &GUESTS, &gid, &[status::DISK], status::DEPLOYING).await?;
                let desc = crate::desc::guest_desc(&r, &guest).await?;
                let body = json!({
                    "desc": desc,
                    "params": {
                        "password": cp.get("password"),
                        "reset_password": cp.get("reset_password"),
                        "hostname": s(&guest, "hostname"),
                        "user_data": cp.get("user_data"),
                    }
                });
                let agent = agent_of(&r, &guest).await?;
                r.agents
                    .send(&agent, &format!("/servers/{gid}/deploy"), body, t)
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            _ => {
                store::cas_status(&r.db, &GUESTS, &gid, &[status::DEPLOYING], status::READY)
                    .await?;
                if cp["auto_start"] == json!(true) && s(&guest, "status") != status::RUNNING {
                    store::cas_status(&r.db, &GUESTS, &gid, &[status::READY], status::START_START)
                        .await?;
                    t.spawn(NewTask::new(
                        "GuestStartTask",
                        "server",
                        &gid,
                        &s(&guest, "name"),
                        json!({}),
                        child_owner(t, &guest),
                    ));
                    return Ok(Step::WaitSubtasks);
                }
                Ok(Step::Done)
            }
        }
    }

    async fn on_callback(&self, t: &mut TaskCtx, step: &str, data: Value) -> StepResult {
        if step == "deploy" {
            let r = region(&self.0)?;
            // The agent may report what it learnt of the image.
            if let Some(os) = data.get("os_type").and_then(Value::as_str) {
                let mut ch = Row::new();
                ch.insert("os_type".into(), json!(os));
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
            }
        }
        Ok(Step::Done)
    }

    async fn on_subtasks_done(&self, _t: &mut TaskCtx, step: &str, done: Subtasks) -> StepResult {
        // A failed auto-start leaves the guest created, in start_fail.
        if step == "finish" {
            return Ok(Step::Done);
        }
        match done.iter().find(|r| !r.succeeded) {
            Some(r) => Err(TaskError(format!("disk {}: {}", r.obj_id, r.reason))),
            None => Ok(Step::Done),
        }
    }

    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        let gid = t.obj_id.clone();
        match step {
            "network" => {
                store::release_nics(&r.db, &gid).await?;
                let mut q = Sql::new("DELETE FROM `guestsecgroups_tbl` WHERE `guest_id` = ");
                q.bind(gid.as_str());
                q.query()?
                    .execute(r.db.write())
                    .await
                    .map_err(cloudpods_db::DbError::from)?;
                let guest = guest_row(&r, &gid).await?;
                let chosen = guest
                    .get("create_params")
                    .and_then(|c| c["secgroup_ids"].as_array())
                    .is_some_and(|a| !a.is_empty());
                if !chosen {
                    // The default group was ours to assign.
                    let mut ch = Row::new();
                    ch.insert("secgrp_id".into(), Value::Null);
                    crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                }
            }
            "disk" => {
                let guest = guest_row(&r, &gid).await?;
                let agent = agent_of(&r, &guest).await.unwrap_or_default();
                for (j, d) in store::guest_disks(&r.db, std::slice::from_ref(&gid)).await? {
                    let did = s(&d, "id");
                    if !agent.is_empty() {
                        // A dead agent cannot clean up; the files stay on a
                        // host that no longer answers.
                        super::disk::drop_disk_files(&r, &agent, &s(&d, "storage_id"), &did).await;
                    }
                    crud::purge(r.db.write(), &GUESTDISKS, &s(&j, "row_id")).await?;
                    crud::delete(r.db.write(), &DISKS, &did).await?;
                }
            }
            "deploy" => {
                let guest = guest_row(&r, &gid).await?;
                if let Ok(agent) = agent_of(&r, &guest).await
                    && let Err(e) = r
                        .agents
                        .call(&agent, &format!("/servers/{gid}/delete"), json!({}))
                        .await
                {
                    tracing::warn!(guest = %gid, error = %e, "agent could not remove the guest");
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_failure(&self, t: &mut TaskCtx, step: &str, reason: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        let st = match step {
            "network" => status::NET_FAIL,
            "disk" => status::DISK_FAIL,
            _ => status::DEPLOY_FAIL,
        };
        let mut ch = Row::new();
        ch.insert("status".into(), json!(st));
        ch.insert("fail_reason".into(), json!(reason));
        ch.insert("pending_storage".into(), json!(0));
        ch.insert("pending_ports".into(), json!(0));
        crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------

/// Move the guest from `from` to `to` and send `action` with its desc.
pub(crate) async fn send_guest_action(
    t: &TaskCtx,
    r: &Region,
    action: &str,
    from: &[&str],
    to: &str,
    extra: Value,
) -> StepResult {
    let guest = guest_row(r, &t.obj_id).await?;
    store::cas_status(&r.db, &GUESTS, &t.obj_id, from, to).await?;
    let agent = agent_of(r, &guest).await?;
    let desc = crate::desc::guest_desc(r, &guest).await?;
    let mut body = json!({"desc": desc});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    r.agents
        .send(&agent, &format!("/servers/{}/{action}", t.obj_id), body, t)
        .await?;
    Ok(Step::WaitCallback {
        timeout: agent_timeout(r),
    })
}

pub(crate) async fn mark_running(r: &Region, id: &str) -> Result<(), TaskError> {
    let mut ch = Row::new();
    ch.insert("status".into(), json!(status::RUNNING));
    ch.insert("power_states".into(), json!("on"));
    ch.insert("last_start_at".into(), json!(cloudpods_apis::time::now()));
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(r.db.write(), &GUESTS, id, &ch).await?;
    Ok(())
}

pub(crate) async fn mark_ready(r: &Region, id: &str) -> Result<(), TaskError> {
    let mut ch = Row::new();
    ch.insert("status".into(), json!(status::READY));
    ch.insert("power_states".into(), json!("off"));
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(r.db.write(), &GUESTS, id, &ch).await?;
    Ok(())
}

pub struct Start(pub Weak<Region>);

#[async_trait]
impl TaskDef for Start {
    cloudpods_taskman::task_meta!("GuestStartTask", ["start"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        send_guest_action(
            t,
            &r,
            "start",
            &[status::START_START, status::READY, status::STARTING],
            status::STARTING,
            json!({}),
        )
        .await
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        mark_running(&*region(&self.0)?, &t.obj_id).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &GUESTS, t, status::START_FAIL, why).await
    }
}

pub struct Stop(pub Weak<Region>);

#[async_trait]
impl TaskDef for Stop {
    cloudpods_taskman::task_meta!("GuestStopTask", ["stop"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let extra = json!({"is_force": t.params["is_force"], "timeout": t.params["timeout"]});
        send_guest_action(
            t,
            &r,
            "stop",
            &[status::START_STOP, status::STOPPING],
            status::STOPPING,
            extra,
        )
        .await
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        mark_ready(&*region(&self.0)?, &t.obj_id).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &GUESTS, t, status::STOP_FAIL, why).await
    }
}

pub struct Restart(pub Weak<Region>);

#[async_trait]
impl TaskDef for Restart {
    cloudpods_taskman::task_meta!("GuestRestartTask", ["stop", "start"]);
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        if step == "stop" {
            if s(&guest, "power_states") != "on" {
                return Ok(Step::Done);
            }
            let extra = json!({"is_force": t.params["is_force"], "timeout": 30});
            return send_guest_action(
                t,
                &r,
                "stop",
                &[status::START_STOP, status::STOPPING],
                status::STOPPING,
                extra,
            )
            .await;
        }
        send_guest_action(
            t,
            &r,
            "start",
            &[
                status::START_STOP,
                status::STOPPING,
                status::READY,
                status::STARTING,
            ],
            status::STARTING,
            json!({}),
        )
        .await
    }
    async fn on_callback(&self, t: &mut TaskCtx, step: &str, _data: Value) -> StepResult {
        let r = region(&self.0)?;
        if step == "stop" {
            mark_ready(&r, &t.obj_id).await?;
        } else {
            mark_running(&r, &t.obj_id).await?;
        }
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, step: &str, reason: &str) -> Result<(), TaskError> {
        let st = if step == "stop" {
            status::STOP_FAIL
        } else {
            status::START_FAIL
        };
        set_status(&*region(&self.0)?, &GUESTS, &t.obj_id, st, Some(reason)).await
    }
}

pub struct Reset(pub Weak<Region>);

#[async_trait]
impl TaskDef for Reset {
    cloudpods_taskman::task_meta!("GuestResetTask", ["reset"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        send_guest_action(
            t,
            &r,
            "reset",
            &[status::STARTING],
            status::STARTING,
            json!({}),
        )
        .await
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        mark_running(&*region(&self.0)?, &t.obj_id).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &GUESTS, t, status::START_FAIL, why).await
    }
}

/// Ask the agent what the guest really is doing.
pub struct Syncstatus(pub Weak<Region>);

#[async_trait]
impl TaskDef for Syncstatus {
    cloudpods_taskman::task_meta!("GuestSyncstatusTask", ["sync"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let host = super::host_row(&r, &s(&guest, "host_id")).await?;
        if s(&host, "host_status") != "online" {
            set_status(
                &r,
                &GUESTS,
                &t.obj_id,
                status::UNKNOWN,
                Some("host is offline"),
            )
            .await?;
            return Ok(Step::Done);
        }
        let answer = r
            .agents
            .get(
                &crate::agent::Agent::of(&host),
                &format!("/servers/{}/status", t.obj_id),
            )
            .await?;
        apply_agent_status(&r, &t.obj_id, &value_str(&answer, "status")).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &GUESTS, t, status::UNKNOWN, why).await
    }
}

/// Map an agent's view of a guest onto the status machine.
pub async fn apply_agent_status(r: &Region, id: &str, agent_status: &str) -> Result<(), TaskError> {
    match agent_status {
        "running" => mark_running(r, id).await,
        "ready" | "stopped" | "shutoff" => mark_ready(r, id).await,
        "crashed" => {
            set_status(
                r,
                &GUESTS,
                id,
                status::CRASHED,
                Some("the QEMU process died"),
            )
            .await
        }
        "notfound" | "not_found" => {
            set_status(
                r,
                &GUESTS,
                id,
                status::UNKNOWN,
                Some("the agent does not know this guest"),
            )
            .await
        }
        _ => set_status(r, &GUESTS, id, status::UNKNOWN, None).await,
    }
}

// ---------------------------------------------------------------------------

/// Delete a guest: stop it, remove it from its host, delete its disks,
/// release its addresses. Deletion rolls forward; a failure leaves
/// `delete_fail`, and deleting again resumes.
pub struct Delete(pub Weak<Region>);

#[async_trait]
impl TaskDef for Delete {
    cloudpods_taskman::task_meta!("GuestDeleteTask", ["stop", "remove", "disks", "cleanup"]);

    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let purge = t.params["purge"] == json!(true);
        let has_host = !s(&guest, "host_id").is_empty();
        match step {
            "stop" => {
                if purge || !has_host || s(&guest, "power_states") != "on" {
                    if t.params["pending"] == json!(true) {
                        return self.park_pending(&r, t).await;
                    }
                    return Ok(Step::Done);
                }
                let agent = agent_of(&r, &guest).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/stop", t.obj_id),
                        json!({"is_force": true, "timeout": 10}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "remove" => {
                set_status(&r, &GUESTS, &t.obj_id, status::DELETING, None).await?;
                let created = !matches!(
                    s(&guest, "status").as_str(),
                    status::INIT | status::SCHEDULE | status::SCHED_FAIL
                );
                if purge || !has_host || !created {
                    return Ok(Step::Done);
                }
                let agent = agent_of(&r, &guest).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/delete", t.obj_id),
                        json!({}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "disks" => {
                let mut waiting = false;
                for (_, d) in store::guest_disks(&r.db, std::slice::from_ref(&t.obj_id)).await? {
                    let child = NewTask::new(
                        "DiskDeleteTask",
                        "disk",
                        &s(&d, "id"),
                        &s(&d, "name"),
                        json!({"purge": purge}),
                        child_owner(t, &guest),
                    );
                    t.spawn(child);
                    waiting = true;
                }
                Ok(if waiting {
                    Step::WaitSubtasks
                } else {
                    Step::Done
                })
            }
            _ => {
                crate::resources::virt::release_server_eips(&r, &t.obj_id)
                    .await
                    .map_err(|e| TaskError(e.details))?;
                store::release_nics(&r.db, &t.obj_id).await?;
                for table in ["guestsecgroups_tbl", "guestdisks_tbl"] {
                    let mut q = Sql::new(format!("DELETE FROM `{table}` WHERE `guest_id` = "));
                    q.bind(t.obj_id.as_str());
                    q.query()?
                        .execute(r.db.write())
                        .await
                        .map_err(cloudpods_db::DbError::from)?;
                }
                let host = crud::get(r.db.read(), &GUESTS, &t.obj_id)
                    .await?
                    .map(|g| s(&g, "host_id"));
                crud::delete(r.db.write(), &GUESTS, &t.obj_id).await?;
                if let Some(h) = host {
                    r.scheduler().invalidate_host(&h);
                }
                cloudpods_rest::metadata::clear(&r.db, "server", &t.obj_id)
                    .await
                    .map_err(|e| TaskError(e.details))?;
                Ok(Step::Done)
            }
        }
    }

    async fn on_callback(&self, t: &mut TaskCtx, step: &str, _data: Value) -> StepResult {
        if step == "stop" {
            let r = region(&self.0)?;
            let mut ch = Row::new();
            ch.insert("power_states".into(), json!("off"));
            crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
            if t.params["pending"] == json!(true) {
                return self.park_pending(&r, t).await;
            }
        }
        Ok(Step::Done)
    }

    /// Deletion rolls forward, except that a guest whose last step failed
    /// comes back (visible, in `delete_fail`) so that deleting again can
    /// finish the job.
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if step == "cleanup" {
            let r = region(&self.0)?;
            let mut q = Sql::new(
                "UPDATE `guests_tbl` SET `deleted` = 0, `deleted_at` = NULL WHERE `id` = ",
            );
            q.bind(t.obj_id.as_str());
            q.query()?
                .execute(r.db.write())
                .await
                .map_err(cloudpods_db::DbError::from)?;
        }
        Ok(())
    }

    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("status".into(), json!(status::DELETE_FAIL));
        ch.insert("fail_reason".into(), json!(reason));
        let mut q = crud::update_sql(&GUESTS, &ch);
        q.push(" WHERE `id` = ").bind(t.obj_id.as_str());
        q.query()?
            .execute(r.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        Ok(())
    }
}

impl Delete {
    /// The recycle bin: keep the stopped guest, marked pending delete.
    async fn park_pending(&self, r: &Region, t: &TaskCtx) -> StepResult {
        let mut ch = Row::new();
        ch.insert("pending_deleted".into(), json!(true));
        ch.insert(
            "pending_deleted_at".into(),
            json!(cloudpods_apis::time::now()),
        );
        ch.insert("status".into(), json!(status::READY));
        ch.insert("power_states".into(), json!("off"));
        crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        Ok(Step::Finish)
    }
}
