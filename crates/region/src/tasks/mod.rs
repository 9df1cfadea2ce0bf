//! The region's task types. Every step is idempotent and has an undo (see
//! `cloudpods_taskman`); `docs/ARCHITECTURE.md` draws the state machines.

pub mod actions;
pub mod disk;
pub mod guest;
pub mod snapshot;

use std::sync::{Arc, Weak};
use std::time::Duration;

use cloudpods_db::{Row, crud};
use cloudpods_taskman::{TaskCtx, TaskError};
use serde_json::Value;

use crate::Region;
use crate::agent::Agent;
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

/// The agent of a guest's host (address and signing key).
pub async fn agent_of(r: &Region, guest: &Row) -> Result<Agent, TaskError> {
    let host = host_row(r, &s(guest, "host_id")).await?;
    Ok(Agent::of(&host))
}

/// Check a file path an agent reported (a disk's `disk_path`, a snapshot's
/// `location`): absolute, without `.`/`..` components, and inside the
/// mount point a host registered for `storage_id` (hoststorages). The
/// region stores it and later hands it to agents as a guest's drive, so an
/// agent must not be able to point it anywhere else.
pub async fn check_storage_path(
    r: &Region,
    storage_id: &str,
    path: &str,
    what: &str,
) -> Result<(), TaskError> {
    use std::path::{Component, Path};
    let p = Path::new(path);
    let lexical_ok = p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !path.contains('\0');
    if !lexical_ok {
        return Err(TaskError(format!(
            "the agent reported {what} {path:?}, which is not a plain absolute path"
        )));
    }
    let joints = crate::store::rows_in(
        &r.db,
        &HOSTSTORAGES,
        "storage_id",
        &[storage_id.to_string()],
    )
    .await?;
    let inside = joints.iter().any(|j| {
        let m = s(j, "mount_point");
        let m = Path::new(&m);
        m.is_absolute() && p != m && p.starts_with(m)
    });
    if inside {
        Ok(())
    } else {
        Err(TaskError(format!(
            "the agent reported {what} {path:?}, which is outside the mount points registered for storage {storage_id}"
        )))
    }
}

/// What a server (or EIP) action is called with, from the resource's
/// `perform` down to the function of the action.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub region: &'a std::sync::Arc<Region>,
    pub ctx: &'a cloudpods_rest::Ctx,
    pub obj: &'a cloudpods_db::Row,
    pub action: &'a str,
    pub input: &'a serde_json::Map<String, serde_json::Value>,
}

pub use cloudpods_taskman::{Subtasks, Undone};

/// A failure hook's usual work: leave the task's object in `status` with
/// the reason.
pub async fn fail_to(
    w: &Weak<Region>,
    desc: &cloudpods_db::ModelDesc,
    t: &TaskCtx,
    status: &str,
    reason: &str,
) -> Undone {
    set_status(&*region(w)?, desc, &t.obj_id, status, Some(reason)).await
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
