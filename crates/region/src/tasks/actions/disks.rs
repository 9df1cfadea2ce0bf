//! `attachdisk` / `detachdisk`.

use super::*;

pub(super) async fn attach_disk(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
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
    commit_action(region, tx, ctx, obj, "GuestAttachDiskTask", params).await
}

/// Attach a ready disk; a running guest gets it hot-plugged via sync.
pub struct AttachDisk(pub Weak<Region>);

#[async_trait]
impl TaskDef for AttachDisk {
    cloudpods_taskman::task_meta!("GuestAttachDiskTask", ["attach", "sync", "finish"]);
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
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        let r = region(&self.0)?;
        set_disk_status(&r, &t.param_str("disk_id"), &["attaching"], "ready").await?;
        fail_to(&self.0, &GUESTS, t, status::ATTACH_DISK_FAIL, why).await
    }
}

pub(super) async fn detach_disk(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
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
    commit_action(region, tx, ctx, obj, "GuestDetachDiskTask", params).await
}

/// Detach a data disk (and delete it unless `keep_disk`).
pub struct DetachDisk(pub Weak<Region>);

#[async_trait]
impl TaskDef for DetachDisk {
    cloudpods_taskman::task_meta!("GuestDetachDiskTask", ["detach", "sync", "finish"]);
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
    // The detach is done; a disk that could not be deleted shows its own
    // dealloc_failed status.
    fn tolerates_failed_subtasks(&self, _: &str) -> bool {
        true
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
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        let r = region(&self.0)?;
        set_disk_status(&r, &t.param_str("disk_id"), &["detaching"], "ready").await?;
        fail_to(&self.0, &GUESTS, t, status::DETACH_DISK_FAIL, why).await
    }
}
