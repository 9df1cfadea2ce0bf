//! One agent request as a subtask.

use super::*;

pub(super) fn agent_request(
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
pub(super) async fn add_copy_grant(r: &Region, body: &mut Value) -> Result<(), TaskError> {
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

pub(super) fn body_str(o: &Map<String, Value>, k: &str) -> String {
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
    cloudpods_taskman::task_meta!("AgentRequestTask", ["request"]);
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
    async fn on_failure(&self, _t: &mut TaskCtx, _: &str, _reason: &str) -> Undone {
        // The parent records the failure on its object.
        Ok(())
    }
}
