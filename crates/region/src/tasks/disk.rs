//! Disk tasks: create (allocate on the host's storage) and delete.

use std::sync::Weak;

use async_trait::async_trait;
use cloudpods_db::{Row, Sql, crud};
use cloudpods_taskman::{Step, StepResult, TaskCtx, TaskDef, TaskError};
use serde_json::{Value, json};

use super::{Undone, agent_timeout, fail_to, region, set_status, value_str};
use crate::Region;
use crate::agent::Agent;
use crate::models::*;
use crate::store::{self, i, s};

async fn disk_row(r: &Region, id: &str) -> Result<Row, TaskError> {
    let spec = cloudpods_db::ListSpec {
        conds: vec![crud::eq("id", id)],
        include_deleted: true,
        limit: Some(1),
        ..Default::default()
    };
    crud::list(&r.db, &DISKS, &spec)
        .await?
        .0
        .into_iter()
        .next()
        .ok_or_else(|| TaskError(format!("disk {id} not found")))
}

/// Best effort: delete a disk's files on the host. An agent that cannot
/// answer keeps nothing we could reach, so a failure is only logged.
pub async fn drop_disk_files(r: &Region, agent: &Agent, storage_id: &str, disk_id: &str) {
    let path = format!("/disks/{storage_id}/delete/{disk_id}");
    if let Err(e) = r.agents.call(agent, &path, json!({})).await {
        tracing::warn!(disk = %disk_id, error = %e, "agent could not delete the disk");
    }
}

/// Best effort, as [`drop_disk_files`]: drop one snapshot of a disk.
pub async fn drop_snapshot_files(
    r: &Region,
    agent: &Agent,
    storage_id: &str,
    disk_id: &str,
    snapshot_id: &str,
) {
    let path = format!("/disks/{storage_id}/delete-snapshot/{disk_id}");
    let body = json!({ "snapshot_id": snapshot_id });
    if let Err(e) = r.agents.call(agent, &path, body).await {
        tracing::warn!(snapshot = %snapshot_id, error = %e, "agent could not drop the snapshot");
    }
}

/// The agent of a host that has the disk's storage attached (the given
/// host first).
pub async fn storage_agent(
    r: &Region,
    storage_id: &str,
    prefer_host: &str,
) -> Result<Agent, TaskError> {
    let joints = store::rows_in(
        &r.db,
        &HOSTSTORAGES,
        "storage_id",
        &[storage_id.to_string()],
    )
    .await?;
    let mut host_ids: Vec<String> = joints.iter().map(|j| s(j, "host_id")).collect();
    host_ids.sort_by_key(|h| h != prefer_host);
    for h in host_ids {
        if let Some(host) = crud::get(r.db.read(), &HOSTS, &h).await? {
            let agent = Agent::of(&host);
            if !agent.is_empty() {
                return Ok(agent);
            }
        }
    }
    Err(TaskError(format!(
        "no host with an agent has storage {storage_id}"
    )))
}

pub struct Create(pub Weak<Region>);

#[async_trait]
impl TaskDef for Create {
    cloudpods_taskman::task_meta!("DiskCreateTask", ["allocate"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let d = disk_row(&r, &t.obj_id).await?;
        if s(&d, "status") == "ready" {
            return Ok(Step::Done);
        }
        set_status(&r, &DISKS, &t.obj_id, "allocating", None).await?;
        let agent =
            storage_agent(&r, &s(&d, "storage_id"), &value_str(&t.params, "host_id")).await?;
        let body = json!({"disk": {
            "disk_id": s(&d, "id"), "size": i(&d, "disk_size"), "format": s(&d, "disk_format"),
            "image_id": s(&d, "template_id"), "snapshot_id": s(&d, "snapshot_id"),
            "disk_type": s(&d, "disk_type"), "fs_format": s(&d, "fs_format"),
        }});
        r.agents
            .send(
                &agent,
                &format!("/disks/{}/create/{}", s(&d, "storage_id"), t.obj_id),
                body,
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
        let path = data
            .get("disk_path")
            .or_else(|| data.get("access_path"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let d = disk_row(&r, &t.obj_id).await?;
        super::check_storage_path(&r, &s(&d, "storage_id"), path, "disk path").await?;
        ch.insert("access_path".into(), json!(path));
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
    async fn undo_step(&self, t: &mut TaskCtx, _step: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        let d = disk_row(&r, &t.obj_id).await?;
        let sid = s(&d, "storage_id");
        if let Ok(agent) = storage_agent(&r, &sid, &value_str(&t.params, "host_id")).await {
            drop_disk_files(&r, &agent, &sid, &t.obj_id).await;
        }
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &DISKS, t, "alloc_failed", why).await
    }
}

pub struct Delete(pub Weak<Region>);

#[async_trait]
impl TaskDef for Delete {
    cloudpods_taskman::task_meta!("DiskDeleteTask", ["delete"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let d = disk_row(&r, &t.obj_id).await?;
        if crate::store::b(&d, "deleted") {
            return Ok(Step::Done);
        }
        let allocated = !matches!(s(&d, "status").as_str(), "init" | "alloc_failed");
        if t.params["purge"] == json!(true) || !allocated {
            self.forget(&r, &t.obj_id).await?;
            return Ok(Step::Done);
        }
        set_status(&r, &DISKS, &t.obj_id, "deallocating", None).await?;
        let agent = storage_agent(&r, &s(&d, "storage_id"), "").await?;
        r.agents
            .send(
                &agent,
                &format!("/disks/{}/delete/{}", s(&d, "storage_id"), t.obj_id),
                json!({}),
                t,
            )
            .await?;
        Ok(Step::WaitCallback {
            timeout: agent_timeout(&r),
        })
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        let r = region(&self.0)?;
        self.forget(&r, &t.obj_id).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &DISKS, t, "dealloc_failed", why).await
    }
}

impl Delete {
    async fn forget(&self, r: &Region, id: &str) -> Result<(), TaskError> {
        let mut q = Sql::new("DELETE FROM `guestdisks_tbl` WHERE `disk_id` = ");
        q.bind(id);
        q.query()?
            .execute(r.db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        crud::delete(r.db.write(), &DISKS, id).await?;
        Ok(())
    }
}
