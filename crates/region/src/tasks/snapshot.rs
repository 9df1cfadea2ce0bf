//! Snapshot and standalone disk tasks: `SnapshotCreateTask`,
//! `SnapshotDeleteTask`, `DiskResizeTask`, `DiskResetTask` (disk create and
//! delete are `DiskCreateTask`/`DiskDeleteTask` in `disk.rs`).
//!
//! Each is one agent round trip on the storage's host (the host of the
//! server the disk is attached to first). The object's status says what
//! runs (`creating`, `deleting`, `resizing`, `resetting`) and ends `ready`,
//! or `*_failed` with the agent's reason in `fail_reason`.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use cloudpods_db::{Row, crud};
use cloudpods_taskman::{Step, StepResult, TaskCtx, TaskDef, TaskError};
use serde_json::{Value, json};

use super::disk::storage_agent;
use super::{Undone, agent_timeout, fail_to, region, set_status};
use crate::Region;
use crate::agent::Agent;
use crate::models::*;
use crate::store::{self, i, s};

/// Register the task types of this module.
pub fn register(region: &Arc<Region>, w: &Weak<Region>) {
    let e = &region.engine;
    e.register(Arc::new(SnapshotCreate(w.clone())));
    e.register(Arc::new(SnapshotDelete(w.clone())));
    e.register(Arc::new(DiskResize(w.clone())));
    e.register(Arc::new(DiskReset(w.clone())));
}

/// A row including soft-deleted ones (delete tasks finish on them).
async fn row_of(
    r: &Region,
    desc: &'static cloudpods_db::ModelDesc,
    id: &str,
) -> Result<Row, TaskError> {
    let spec = cloudpods_db::ListSpec {
        conds: vec![crud::eq("id", id)],
        include_deleted: true,
        limit: Some(1),
        ..Default::default()
    };
    crud::list(&r.db, desc, &spec)
        .await?
        .0
        .into_iter()
        .next()
        .ok_or_else(|| TaskError(format!("{} {id} not found", desc.keyword)))
}

/// The agent serving a disk: the host of the server it is attached to when
/// that host has the storage, else any host with the storage.
async fn disk_agent(r: &Region, disk: &Row) -> Result<Agent, TaskError> {
    let joints = store::rows_in(&r.db, &GUESTDISKS, "disk_id", &[s(disk, "id")]).await?;
    let mut prefer = String::new();
    if let Some(j) = joints.first()
        && let Some(g) = crud::get(r.db.read(), &GUESTS, &s(j, "guest_id")).await?
    {
        prefer = s(&g, "host_id");
    }
    storage_agent(r, &s(disk, "storage_id"), &prefer).await
}

pub struct SnapshotCreate(pub Weak<Region>);

#[async_trait]
impl TaskDef for SnapshotCreate {
    cloudpods_taskman::task_meta!("SnapshotCreateTask", ["snapshot"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let snap = row_of(&r, &SNAPSHOTS, &t.obj_id).await?;
        if s(&snap, "status") == "ready" {
            return Ok(Step::Done);
        }
        let disk = row_of(&r, &DISKS, &s(&snap, "disk_id")).await?;
        if store::b(&disk, "deleted") {
            return Err(TaskError(format!("disk {} was deleted", s(&disk, "name"))));
        }
        let agent = disk_agent(&r, &disk).await?;
        r.agents
            .send(
                &agent,
                &format!(
                    "/disks/{}/snapshot/{}",
                    s(&snap, "storage_id"),
                    s(&disk, "id")
                ),
                json!({"snapshot_id": t.obj_id}),
                t,
            )
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, data: Value) -> StepResult {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("status".into(), json!("ready"));
        if let Some(loc) = data.get("location").and_then(Value::as_str) {
            let snap = row_of(&r, &SNAPSHOTS, &t.obj_id).await?;
            super::check_storage_path(&r, &s(&snap, "storage_id"), loc, "snapshot location")
                .await?;
            ch.insert("location".into(), json!(loc));
        }
        crud::update(r.db.write(), &SNAPSHOTS, &t.obj_id, &ch).await?;
        Ok(Step::Done)
    }
    async fn undo_step(&self, t: &mut TaskCtx, _step: &str) -> Result<(), TaskError> {
        // Drop whatever the agent may have made; an agent that cannot be
        // reached has nothing we could remove anyway.
        let r = region(&self.0)?;
        let snap = row_of(&r, &SNAPSHOTS, &t.obj_id).await?;
        let Ok(disk) = row_of(&r, &DISKS, &s(&snap, "disk_id")).await else {
            return Ok(());
        };
        if let Ok(agent) = disk_agent(&r, &disk).await {
            let (storage, did) = (s(&snap, "storage_id"), s(&disk, "id"));
            super::disk::drop_snapshot_files(&r, &agent, &storage, &did, &t.obj_id).await;
        }
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &SNAPSHOTS, t, "create_failed", why).await
    }
}

pub struct SnapshotDelete(pub Weak<Region>);

#[async_trait]
impl TaskDef for SnapshotDelete {
    cloudpods_taskman::task_meta!("SnapshotDeleteTask", ["delete"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let snap = row_of(&r, &SNAPSHOTS, &t.obj_id).await?;
        if store::b(&snap, "deleted") {
            return Ok(Step::Done);
        }
        // Never made on the host (or asked to forget): only the record goes.
        if t.params["purge"] == json!(true) || t.params["prev_status"] == json!("create_failed") {
            crud::delete(r.db.write(), &SNAPSHOTS, &t.obj_id).await?;
            return Ok(Step::Done);
        }
        let disk = row_of(&r, &DISKS, &s(&snap, "disk_id")).await?;
        let agent = match disk_agent(&r, &disk).await {
            Ok(a) => a,
            Err(_) => storage_agent(&r, &s(&snap, "storage_id"), "").await?,
        };
        r.agents
            .send(
                &agent,
                &format!(
                    "/disks/{}/delete-snapshot/{}",
                    s(&snap, "storage_id"),
                    s(&disk, "id")
                ),
                json!({"snapshot_id": t.obj_id}),
                t,
            )
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        let r = region(&self.0)?;
        crud::delete(r.db.write(), &SNAPSHOTS, &t.obj_id).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &SNAPSHOTS, t, "delete_failed", why).await
    }
}

pub struct DiskResize(pub Weak<Region>);

#[async_trait]
impl TaskDef for DiskResize {
    cloudpods_taskman::task_meta!("DiskResizeTask", ["resize"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let disk = row_of(&r, &DISKS, &t.obj_id).await?;
        let target = t.params["size"].as_i64().unwrap_or(0);
        if target <= 0 {
            return Err(TaskError::new("no target size"));
        }
        if i(&disk, "disk_size") >= target {
            // Already done (a re-run after the answer was recorded).
            return Ok(Step::Done);
        }
        set_status(&r, &DISKS, &t.obj_id, "resizing", None).await?;
        let agent = disk_agent(&r, &disk).await?;
        r.agents
            .send(
                &agent,
                &format!("/disks/{}/resize/{}", s(&disk, "storage_id"), t.obj_id),
                json!({"size": target}),
                t,
            )
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, data: Value) -> StepResult {
        let r = region(&self.0)?;
        let target = t.params["size"].as_i64().unwrap_or(0);
        let size = data
            .get("disk_size")
            .and_then(Value::as_i64)
            .filter(|v| *v > 0)
            .unwrap_or(target);
        let mut ch = Row::new();
        ch.insert("disk_size".into(), json!(size));
        ch.insert("pending_size".into(), json!(0));
        ch.insert("status".into(), json!("ready"));
        crud::update(r.db.write(), &DISKS, &t.obj_id, &ch).await?;
        Ok(Step::Done)
    }
    async fn on_complete(&self, t: &mut TaskCtx) -> Result<(), TaskError> {
        // The idempotent shortcut in run_step leaves the status as it was.
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("pending_size".into(), json!(0));
        ch.insert("status".into(), json!("ready"));
        crud::update(r.db.write(), &DISKS, &t.obj_id, &ch).await?;
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        // A disk cannot be shrunk back: a failed grow leaves it at its old
        // size, and the reserved growth is released.
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("pending_size".into(), json!(0));
        ch.insert("status".into(), json!("resize_failed"));
        ch.insert("fail_reason".into(), json!(reason));
        crud::update(r.db.write(), &DISKS, &t.obj_id, &ch).await?;
        Ok(())
    }
}

pub struct DiskReset(pub Weak<Region>);

#[async_trait]
impl TaskDef for DiskReset {
    cloudpods_taskman::task_meta!("DiskResetTask", ["reset"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let disk = row_of(&r, &DISKS, &t.obj_id).await?;
        let snap = row_of(&r, &SNAPSHOTS, &t.param_str("snapshot_id")).await?;
        if store::b(&snap, "deleted") || s(&snap, "status") != "ready" {
            return Err(TaskError(format!(
                "snapshot {} is no longer available",
                s(&snap, "name")
            )));
        }
        set_status(&r, &DISKS, &t.obj_id, "resetting", None).await?;
        let agent = disk_agent(&r, &disk).await?;
        // Resetting to the same snapshot twice gives the same disk, so a
        // resent request is harmless.
        r.agents
            .send(
                &agent,
                &format!("/disks/{}/reset/{}", s(&disk, "storage_id"), t.obj_id),
                json!({"snapshot_id": s(&snap, "id"), "location": s(&snap, "location")}),
                t,
            )
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, data: Value) -> StepResult {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("status".into(), json!("ready"));
        if let Some(sz) = data
            .get("disk_size")
            .and_then(Value::as_i64)
            .filter(|v| *v > 0)
        {
            ch.insert("disk_size".into(), json!(sz));
        }
        crud::update(r.db.write(), &DISKS, &t.obj_id, &ch).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &DISKS, t, "reset_failed", why).await
    }
}
