//! Agent sync: a running guest picks up disks, security groups… without a
//! restart.

use super::*;

/// Send the guest's desc to its agent (`POST /servers/{id}/sync`).
pub(super) async fn send_sync(r: &Region, t: &TaskCtx) -> StepResult {
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
pub(super) async fn sync_now(r: &Region, gid: &str) {
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

pub(super) fn was_running(t: &TaskCtx) -> bool {
    t.params["prev_status"] == json!(status::RUNNING)
}

/// Back to the status before the action.
pub(super) async fn restore_status(r: &Region, t: &TaskCtx, from: &str) -> Result<(), TaskError> {
    if !store::cas_status(&r.db, &GUESTS, &t.obj_id, &[from], status::READY).await? {
        return Ok(());
    }
    if was_running(t) {
        mark_running(r, &t.obj_id).await
    } else {
        mark_ready(r, &t.obj_id).await
    }
}

pub(super) async fn set_disk_status(
    r: &Region,
    did: &str,
    from: &[&str],
    to: &str,
) -> Result<(), TaskError> {
    store::cas_status(&r.db, &DISKS, did, from, to).await?;
    Ok(())
}

/// Propagate a guest's configuration to its running agent.
pub struct SyncConfig(pub Weak<Region>);

#[async_trait]
impl TaskDef for SyncConfig {
    cloudpods_taskman::task_meta!("GuestSyncConfigTask", ["sync"]);
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
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &GUESTS, t, status::SYNC_FAIL, why).await
    }
}
