//! The region's task types. Every step is idempotent and has an undo (see
//! `cloudpods_taskman`); `docs/ARCHITECTURE.md` draws the state machines.

pub mod actions;
pub mod disk;
pub mod guest;
pub mod snapshot;

use std::sync::{Arc, Weak};
use std::time::Duration;

use cloudpods_db::{Row, crud};
use cloudpods_taskman::TaskError;
use serde_json::Value;

use crate::Region;
use crate::models::*;
use crate::store::s;

/// Register every region task type with the engine.
pub fn register(region: &Arc<Region>) {
    let w = Arc::downgrade(region);
    let e = &region.engine;
    e.register(Arc::new(guest::BatchCreate(w.clone())));
    e.register(Arc::new(guest::Create(w.clone())));
    e.register(Arc::new(guest::Start(w.clone())));
    e.register(Arc::new(guest::Stop(w.clone())));
    e.register(Arc::new(guest::Restart(w.clone())));
    e.register(Arc::new(guest::Reset(w.clone())));
    e.register(Arc::new(guest::Syncstatus(w.clone())));
    e.register(Arc::new(guest::Delete(w.clone())));
    e.register(Arc::new(disk::Create(w.clone())));
    e.register(Arc::new(disk::Delete(w.clone())));
    actions::register(region, &w);
    snapshot::register(region, &w);
}

/// The region behind a task (alive as long as the process).
pub fn region(w: &Weak<Region>) -> Result<Arc<Region>, TaskError> {
    w.upgrade()
        .ok_or_else(|| TaskError::new("region is shutting down"))
}

/// A guest row, including soft-deleted ones (delete tasks finish on them).
pub async fn guest_row(r: &Region, id: &str) -> Result<Row, TaskError> {
    let spec = cloudpods_db::ListSpec {
        conds: vec![crud::eq("id", id)],
        include_deleted: true,
        limit: Some(1),
        ..Default::default()
    };
    crud::list(&r.db, &GUESTS, &spec)
        .await?
        .0
        .into_iter()
        .next()
        .ok_or_else(|| TaskError(format!("server {id} not found")))
}

pub async fn host_row(r: &Region, id: &str) -> Result<Row, TaskError> {
    if id.is_empty() {
        return Err(TaskError::new("the server has no host"));
    }
    crud::get(r.db.read(), &HOSTS, id)
        .await?
        .ok_or_else(|| TaskError(format!("host {id} not found")))
}

/// The agent address of a guest's host.
pub async fn agent_of(r: &Region, guest: &Row) -> Result<String, TaskError> {
    let host = host_row(r, &s(guest, "host_id")).await?;
    Ok(s(&host, "manager_uri"))
}

pub async fn set_status(
    r: &Region,
    desc: &cloudpods_db::ModelDesc,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<(), TaskError> {
    crate::store::set_status(&r.db, desc, id, status, reason).await?;
    Ok(())
}

/// How long to wait for an agent.
pub fn agent_timeout(r: &Region) -> Duration {
    r.opts.agent_timeout
}

pub fn value_str(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
