//! `live-migrate`: move a running guest to another host without stopping
//! it (QEMU's migration with its disks mirrored over NBD, both over TLS
//! with a key derived for this migration; the agents' side is in
//! `crates/host/src/qemu/migrate.rs`).

use super::*;
use cloudpods_apis::livemigrate::{MigrateDisk, Prepare, Send, SourceInfo, Stats, Target};
use cloudpods_taskman::{Subtasks, Undone};

pub(super) async fn live_migrate(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
    const ACTION: &str = "live-migrate";
    if ctx.max_scope("servers", "perform", Some(ACTION)) != Some(Scope::System) {
        return Err(HttpError::forbidden(
            "only system admins may migrate servers",
        ));
    }
    require_status(obj, ACTION, &[status::RUNNING])?;
    let m = plan_move(region, ctx, obj, input, "live migrate").await?;
    let mut tx = region.db.begin().await?;
    guest_cas(
        region,
        &mut tx,
        obj,
        ACTION,
        &[status::RUNNING],
        status::START_LIVE_MIGRATE,
    )
    .await?;
    let params = json!({
        "prev_status": status::RUNNING, "src_host_id": m.src_host_id,
        "dst_host_id": m.dst_host_id, "disks": m.disks,
    });
    commit_with_task(
        region,
        tx,
        new_task(ctx, obj, "GuestLiveMigrateTask", params),
    )
    .await
}

/// How long the disks and the memory may take to move.
const SEND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Move a running guest: the target waits for it (`target`), the source
/// sends disks and memory (`send`; on its answer the records move to the
/// target), the target runs it (`resume`), the source's files go
/// (`cleanup`). Until the source answers the guest runs on the source and
/// a failure only removes the target's half; after it the guest lives on
/// the target and nothing is undone.
pub struct LiveMigrate(pub Weak<Region>);

impl LiveMigrate {
    async fn agent(r: &Region, t: &TaskCtx, which: &str) -> Result<Agent, TaskError> {
        Ok(Agent::of(&host_row(r, &t.param_str(which)).await?))
    }

    /// This migration's TLS key: derived from the source agent's secret
    /// and the task, so a retried step sends the same one, and nothing
    /// stores it.
    async fn psk(r: &Region, t: &TaskCtx) -> Result<String, TaskError> {
        Self::agent(r, t, "src_host_id")
            .await?
            .derive(&format!("live-migrate:{}:{}", t.id, t.obj_id))
    }

    fn moved(t: &TaskCtx) -> bool {
        t.state.get("moved") == Some(&json!(true))
    }

    /// The guest's records on the target host (idempotent).
    async fn switch(r: &Region, t: &TaskCtx) -> Result<(), TaskError> {
        let target: Target =
            serde_json::from_value(t.state.get("target").cloned().unwrap_or_default())
                .map_err(|e| TaskError(format!("the target's answer: {e}")))?;
        let mut tx = r.db.begin().await?;
        let mut ch = Row::new();
        ch.insert("host_id".into(), json!(t.param_str("dst_host_id")));
        crud::update(&mut *tx, &GUESTS, &t.obj_id, &ch).await?;
        for d in arr(&t.params["disks"]) {
            let did = value_str(&d, "disk_id");
            let mut ch = Row::new();
            ch.insert("storage_id".into(), d["dst_storage_id"].clone());
            ch.insert(
                "access_path".into(),
                json!(target.disk_paths.get(&did).cloned().unwrap_or_default()),
            );
            crud::update(&mut *tx, &DISKS, &did, &ch).await?;
        }
        tx.commit().await.map_err(DbError::from)?;
        Ok(())
    }
}

#[async_trait]
impl TaskDef for LiveMigrate {
    cloudpods_taskman::task_meta!(
        "GuestLiveMigrateTask",
        ["prepare", "target", "send", "resume", "cleanup", "finish"]
    );
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let owner = child_owner(t, &guest);
        let src = t.param_str("src_host_id");
        match step {
            "prepare" => {
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::START_LIVE_MIGRATE],
                    status::LIVE_MIGRATING,
                )
                .await?;
                let agent = Self::agent(&r, t, "src_host_id").await?;
                let info = r
                    .agents
                    .call(
                        &agent,
                        &format!("/servers/{}/live-migrate-info", t.obj_id),
                        json!({}),
                    )
                    .await?;
                let info: SourceInfo = serde_json::from_value(info)
                    .map_err(|e| TaskError(format!("the source's disk sizes: {e}")))?;
                // Exact sizes from the running QEMU; a driver without them
                // (simulated) gets the recorded size.
                let disks: Vec<MigrateDisk> = arr(&t.params["disks"])
                    .iter()
                    .map(|d| {
                        let id = value_str(d, "disk_id");
                        let size = info
                            .disks
                            .iter()
                            .find(|m| m.disk_id == id)
                            .map(|m| m.virtual_size)
                            .unwrap_or_else(|| d["size"].as_u64().unwrap_or(0) << 20);
                        MigrateDisk {
                            disk_id: id,
                            virtual_size: size,
                        }
                    })
                    .collect();
                t.state.insert("sizes".into(), json!(disks));
                Ok(Step::Done)
            }
            "target" => {
                let mut o = DescOverrides {
                    host_id: Some(t.param_str("dst_host_id")),
                    ..Default::default()
                };
                for d in arr(&t.params["disks"]) {
                    let mut ch = Map::new();
                    ch.insert("storage_id".into(), d["dst_storage_id"].clone());
                    // The target agent puts each disk in its storage.
                    ch.insert("path".into(), json!(""));
                    o.disks.insert(value_str(&d, "disk_id"), ch);
                }
                let desc = guest_desc_with(&r, &guest, &o).await?;
                let disks: Vec<MigrateDisk> =
                    serde_json::from_value(t.state.get("sizes").cloned().unwrap_or_default())
                        .map_err(|e| TaskError(format!("disk sizes: {e}")))?;
                let prep = Prepare {
                    psk: Self::psk(&r, t).await?,
                    disks,
                };
                prep.check().map_err(TaskError)?;
                let agent = Self::agent(&r, t, "dst_host_id").await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/live-migrate-prepare", t.obj_id),
                        json!({"desc": desc, "params": prep}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "send" => {
                let target: Target =
                    serde_json::from_value(t.state.get("target").cloned().unwrap_or_default())
                        .map_err(|e| TaskError(format!("the target's answer: {e}")))?;
                let send = Send {
                    psk: Self::psk(&r, t).await?,
                    target,
                };
                send.check().map_err(TaskError)?;
                let agent = Self::agent(&r, t, "src_host_id").await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/live-migrate", t.obj_id),
                        json!({"params": send}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: SEND_TIMEOUT.max(agent_timeout(&r)),
                })
            }
            "resume" => {
                // The records moved when the source answered `send`.
                let agent = Self::agent(&r, t, "dst_host_id").await?;
                r.agents
                    .call(
                        &agent,
                        &format!("/servers/{}/live-migrate-resume", t.obj_id),
                        json!({}),
                    )
                    .await?;
                Ok(Step::Done)
            }
            "cleanup" => {
                spawn_source_cleanup(t, &src, &owner);
                Ok(Step::WaitSubtasks)
            }
            _ => {
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::LIVE_MIGRATING],
                    status::RUNNING,
                )
                .await?;
                let mut ch = Row::new();
                ch.insert("fail_reason".into(), Value::Null);
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                Ok(Step::Done)
            }
        }
    }
    async fn on_callback(&self, t: &mut TaskCtx, step: &str, data: Value) -> StepResult {
        let r = region(&self.0)?;
        match step {
            "target" => {
                let target: Target = serde_json::from_value(data)
                    .map_err(|e| TaskError(format!("the target's answer: {e}")))?;
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let path = target.disk_paths.get(&did).cloned().unwrap_or_default();
                    crate::tasks::check_storage_path(
                        &r,
                        &value_str(&d, "dst_storage_id"),
                        &path,
                        "disk path",
                    )
                    .await?;
                }
                t.state.insert("target".into(), json!(target));
                Ok(Step::Done)
            }
            "send" => {
                let stats: Stats = serde_json::from_value(data).unwrap_or_default();
                // The source QEMU is gone: the guest lives on the target
                // (paused until resumed) and the migration rolls forward.
                t.state.insert("moved".into(), json!(true));
                t.state.insert("stats".into(), json!(stats));
                Self::switch(&r, t).await?;
                tracing::info!(guest = %t.obj_id, total_ms = stats.total_ms,
                               downtime_ms = stats.downtime_ms, "live migration done");
                Ok(Step::Done)
            }
            _ => Ok(Step::Done),
        }
    }
    async fn on_subtasks_done(&self, t: &mut TaskCtx, step: &str, results: Subtasks) -> StepResult {
        if step == "cleanup" {
            for f in results.iter().filter(|r| !r.succeeded) {
                tracing::warn!(guest = %t.obj_id, object = %f.obj_id, reason = %f.reason,
                               "could not clean up the live migration's source");
            }
        }
        Ok(Step::Done)
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if Self::moved(t) {
            return Ok(());
        }
        let r = region(&self.0)?;
        match step {
            "send" => {
                if let Ok(agent) = Self::agent(&r, t, "src_host_id").await
                    && let Err(e) = r
                        .agents
                        .call(
                            &agent,
                            &format!("/servers/{}/live-migrate-cancel", t.obj_id),
                            json!({}),
                        )
                        .await
                {
                    tracing::warn!(guest = %t.obj_id, error = %e, "source could not cancel the migration");
                }
            }
            "target" => {
                let Ok(agent) = Self::agent(&r, t, "dst_host_id").await else {
                    return Ok(());
                };
                if let Err(e) = r
                    .agents
                    .call(&agent, &format!("/servers/{}/delete", t.obj_id), json!({}))
                    .await
                {
                    tracing::warn!(guest = %t.obj_id, error = %e, "target could not remove the guest");
                }
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let storage = value_str(&d, "dst_storage_id");
                    crate::tasks::disk::drop_disk_files(&r, &agent, &storage, &did).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        if Self::moved(t)
            && let Ok(r) = region(&self.0)
        {
            // Past the move the guest must run on the target whatever
            // failed after it.
            if let Err(e) = Self::switch(&r, t).await {
                tracing::warn!(guest = %t.obj_id, error = %e, "could not record the guest on the target");
            }
            if let Ok(agent) = Self::agent(&r, t, "dst_host_id").await
                && let Err(e) = r
                    .agents
                    .call(
                        &agent,
                        &format!("/servers/{}/live-migrate-resume", t.obj_id),
                        json!({}),
                    )
                    .await
            {
                tracing::warn!(guest = %t.obj_id, error = %e, "could not resume the guest on the target");
            }
            // And the source's copies go, as the cleanup would have done.
            if let Ok(agent) = Self::agent(&r, t, "src_host_id").await {
                for (_, path) in source_leftovers(t) {
                    if let Err(e) = r.agents.call(&agent, &path, json!({})).await {
                        tracing::warn!(guest = %t.obj_id, %path, error = %e,
                                       "could not clean up the live migration's source");
                    }
                }
            }
        }
        fail_to(&self.0, &GUESTS, t, status::LIVE_MIGRATE_FAILED, why).await
    }
}
