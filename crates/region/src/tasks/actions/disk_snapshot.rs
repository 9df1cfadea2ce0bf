//! `disk-snapshot`.

use super::*;
use cloudpods_taskman::{Subtasks, Undone};

pub(super) async fn disk_snapshot(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
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
    commit_action(region, tx, ctx, obj, "GuestDiskSnapshotTask", params).await
}

/// Snapshot one disk of the guest (the snapshot itself is the virt
/// service's `SnapshotCreateTask`, run as a subtask).
pub struct DiskSnapshot(pub Weak<Region>);

#[async_trait]
impl TaskDef for DiskSnapshot {
    cloudpods_taskman::task_meta!("GuestDiskSnapshotTask", ["snapshot", "finish"]);
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
    async fn on_subtasks_done(&self, _t: &mut TaskCtx, _step: &str, done: Subtasks) -> StepResult {
        match done.iter().find(|r| !r.succeeded) {
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
            let storage = s(&snap, "storage_id");
            if let Ok(agent) =
                crate::tasks::disk::storage_agent(&r, &storage, &s(&guest, "host_id")).await
            {
                let did = s(&snap, "disk_id");
                crate::tasks::disk::drop_snapshot_files(&r, &agent, &storage, &did, &sid).await;
            }
        }
        crud::delete(r.db.write(), &SNAPSHOTS, &sid).await?;
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        fail_to(&self.0, &GUESTS, t, status::SNAPSHOT_FAILED, why).await
    }
}
