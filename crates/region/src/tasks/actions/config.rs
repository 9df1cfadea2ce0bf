//! `change-config`, and the step helpers the other actions share (start the
//! guest as a subtask, add or remove a guest's disk).

use super::*;

pub(super) async fn change_config(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
    const ACTION: &str = "change-config";
    require_status(obj, ACTION, &[status::READY])?;
    let gid = s(obj, "id");
    let (old_cpu, old_mem) = (i(obj, "vcpu_count"), i(obj, "vmem_size"));
    let (cpu, mem, instance_type) = new_shape(region, ctx, obj, input).await?;
    let existing = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let mut plan = plan_disks(input, &existing)?;
    if cpu == old_cpu && mem == old_mem && plan.resize.is_empty() && plan.add.is_empty() {
        return Err(HttpError::input(
            "nothing to change: give vcpu_count, vmem_size, sku or disks that differ from the current configuration",
        ));
    }
    place_on_own_host(region, obj, cpu, mem, &mut plan).await?;
    let DiskPlan {
        resize,
        add,
        extra_storage,
        ..
    } = plan;

    // Reserve: quota for the growth, the new sizes on the row (so the
    // scheduler and quota see them at once), the task.
    let mut more = crate::quota::nothing();
    more.cpu = (cpu - old_cpu).max(0);
    more.memory = (mem - old_mem).max(0);
    more.storage = extra_storage;
    let db = &region.db;
    let mut tx = crate::quota::begin(db, &s(obj, "tenant_id")).await?;
    if let Some(msg) = crate::quota::check(
        db,
        &mut tx,
        &s(obj, "tenant_id"),
        region.opts.default_quota,
        &more,
    )
    .await?
    {
        return Err(HttpError::out_of_quota(msg));
    }
    guest_cas(
        region,
        &mut tx,
        obj,
        ACTION,
        &[status::READY],
        status::CHANGE_FLAVOR,
    )
    .await?;
    let new = json!({"vcpu_count": cpu, "vmem_size": mem, "instance_type": instance_type});
    let mut ch: Row = new.as_object().cloned().unwrap_or_default();
    ch.insert("pending_storage".into(), json!(extra_storage));
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(&mut *tx, &GUESTS, &gid, &ch).await?;
    let params = json!({
        "old": {"vcpu_count": old_cpu, "vmem_size": old_mem, "instance_type": s(obj, "instance_type")},
        "new": new,
        "resize": resize,
        "add": add,
        "auto_start": flag(input, "auto_start")?,
    });
    commit_action(region, tx, ctx, obj, "GuestChangeConfigTask", params).await
}

/// The vCPUs, memory (MB) and instance type asked for: explicit values
/// win over a SKU's, both over the current ones; each within its range.
async fn new_shape(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    input: &Object,
) -> Result<(i64, i64, String)> {
    let (old_cpu, old_mem) = (i(obj, "vcpu_count"), i(obj, "vmem_size"));
    let mut cpu = get_i64(input, "vcpu_count")?;
    let mut mem = match input.get("vmem_size") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(mem_mb(v).ok_or_else(|| HttpError::input(format!("invalid vmem_size {v}")))?)
        }
    };
    let mut instance_type = s(obj, "instance_type");
    if let Some(sku) = get_str_any(input, &["sku", "instance_type"]) {
        let sku_row = find_visible(region, ctx, &SERVERSKUS, &sku)
            .await
            .map_err(|_| HttpError::not_found(format!("server sku {sku} not found")))?;
        cpu = cpu.or(Some(i(&sku_row, "cpu_core_count")));
        mem = mem.or(Some(i(&sku_row, "memory_size_mb")));
        instance_type = s(&sku_row, "name");
    }
    let cpu = cpu.unwrap_or(old_cpu);
    let mem = mem.unwrap_or(old_mem);
    if !(1..=256).contains(&cpu) {
        return Err(HttpError::input(format!(
            "vcpu_count must be between 1 and 256, got {cpu}"
        )));
    }
    if !(64..=4 * 1024 * 1024).contains(&mem) {
        return Err(HttpError::input(format!(
            "vmem_size must be between 64 MB and 4 TB, got {mem} MB"
        )));
    }
    Ok((cpu, mem, instance_type))
}

/// What change-config does to the disks: grow existing ones, add new ones
/// (their storage chosen by the scheduler), and what that asks of storage.
struct DiskPlan {
    resize: Vec<Value>,
    add: Vec<Value>,
    extra_storage: i64,
    sched_disks: Vec<SchedDisk>,
}

/// Disks: a size for an existing index grows that disk, a new index adds
/// a data disk on the guest's host.
fn plan_disks(input: &Object, existing: &[(Row, Row)]) -> Result<DiskPlan> {
    let (disks, _) = collect_configs(input).map_err(HttpError::input)?;
    let mut resize = Vec::new();
    let mut add = Vec::new();
    let mut extra_storage = 0i64;
    let mut sched_disks = Vec::new();
    for (pos, d) in disks.iter().enumerate() {
        let idx = d.index.unwrap_or(pos as i64);
        if idx < 0 {
            return Err(HttpError::input(format!("disk index {idx} is negative")));
        }
        if let Some(size) = d.size
            && (size <= 0 || size > MAX_DISK_MB)
        {
            return Err(HttpError::input(format!(
                "disk {idx}: size must be between 1 MB and 16 TB, got {size} MB"
            )));
        }
        match existing.iter().find(|(j, _)| i(j, "index") == idx) {
            Some((_, disk)) => {
                let Some(size) = d.size else { continue };
                let cur = i(disk, "disk_size");
                if size < cur {
                    return Err(HttpError::input(format!(
                        "disk {idx} ({}): a disk cannot shrink ({cur} MB to {size} MB)",
                        s(disk, "name")
                    )));
                }
                if size > cur {
                    resize.push(
                        json!({"disk_id": s(disk, "id"), "storage_id": s(disk, "storage_id"),
                                       "size": size, "old_size": cur}),
                    );
                    extra_storage += size - cur;
                    sched_disks.push(SchedDisk {
                        size: size - cur,
                        storage_id: s(disk, "storage_id"),
                        ..Default::default()
                    });
                }
            }
            None => {
                if !d.disk_id.is_empty() {
                    return Err(HttpError::input(
                        "an existing disk is attached with attachdisk, not change-config",
                    ));
                }
                let size = d
                    .size
                    .ok_or_else(|| HttpError::missing(format!("disk {idx}: size is required")))?;
                if add.iter().any(|a: &Value| a["index"].as_i64() == Some(idx)) {
                    return Err(HttpError::input(format!("disk index {idx} given twice")));
                }
                extra_storage += size;
                add.push(json!({
                    "index": idx, "size": size, "image_id": d.image_id,
                    "disk_id": crud::new_id(DISKS.id_style),
                    "format": if d.format.is_empty() { "qcow2" } else { d.format.as_str() },
                    "driver": if d.driver.is_empty() { "virtio" } else { d.driver.as_str() },
                    "fs": d.fs, "mountpoint": d.mountpoint,
                }));
                sched_disks.push(SchedDisk {
                    size,
                    backend: d.backend.clone(),
                    medium: d.medium.clone(),
                    storage_id: d.storage_id.clone(),
                });
            }
        }
    }
    if existing.len() + add.len() > MAX_DISKS {
        return Err(HttpError::input(format!("at most {MAX_DISKS} disks")));
    }
    Ok(DiskPlan {
        resize,
        add,
        extra_storage,
        sched_disks,
    })
}

/// The guest's own host must hold the new configuration (its present
/// usage is not counted twice); the added disks get the storages the
/// scheduler chose there.
async fn place_on_own_host(
    region: &Region,
    obj: &Row,
    cpu: i64,
    mem: i64,
    plan: &mut DiskPlan,
) -> Result<()> {
    let gid = s(obj, "id");
    let host_id = s(obj, "host_id");
    let host = crud::get(region.db.read(), &HOSTS, &host_id)
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    let host_name = s(&host, "name");
    let sched_in = ScheduleInput {
        session_id: crud::new_id(cloudpods_db::IdStyle::Uuid),
        count: 1,
        vcpu_count: cpu,
        vmem_size: mem,
        disks: std::mem::take(&mut plan.sched_disks),
        hypervisor: s(obj, "hypervisor"),
        prefer_host: host_id.clone(),
        project: s(obj, "tenant_id"),
        project_domain: s(obj, "domain_id"),
        guest_ids: vec![gid.clone()],
        ..Default::default()
    };
    let candidate = match schedule(region, &sched_in).await {
        Ok(c) => c.into_iter().next(),
        Err(e) => {
            return Err(HttpError::insufficient(format!(
                "host {host_name} cannot hold server {} with {cpu} vCPUs and {mem} MB: {}",
                s(obj, "name"),
                e.details
            )));
        }
    };
    let candidate = candidate.filter(|c| c.host_id == host_id).ok_or_else(|| {
        HttpError::insufficient(format!(
            "host {host_name} cannot hold server {} with {cpu} vCPUs and {mem} MB",
            s(obj, "name")
        ))
    })?;
    for (k, a) in plan.add.iter_mut().enumerate() {
        let storage = candidate
            .disks
            .get(plan.resize.len() + k)
            .and_then(|d| d.storage_ids.first())
            .cloned()
            .ok_or_else(|| {
                HttpError::insufficient(format!(
                    "host {host_name} has no storage for a {} MB disk",
                    a["size"]
                ))
            })?;
        a["storage_id"] = json!(storage);
    }
    Ok(())
}

/// Change vCPUs, memory and disks of a stopped guest.
pub struct ChangeConfig(pub Weak<Region>);

#[async_trait]
impl TaskDef for ChangeConfig {
    cloudpods_taskman::task_meta!(
        "GuestChangeConfigTask",
        ["reserve", "resize", "newdisks", "finish"]
    );

    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let gid = t.obj_id.clone();
        let owner = child_owner(t, &guest);
        match step {
            "reserve" => {
                let ch: Row = t.params["new"].as_object().cloned().unwrap_or_default();
                crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                Ok(Step::Done)
            }
            "resize" => {
                let mut waiting = false;
                for e in arr(&t.params["resize"]) {
                    let did = value_str(&e, "disk_id");
                    let size = e["size"].as_i64().unwrap_or(0);
                    let d = crud::get(r.db.read(), &DISKS, &did)
                        .await?
                        .ok_or_else(|| TaskError(format!("disk {did} no longer exists")))?;
                    if i(&d, "disk_size") >= size {
                        continue;
                    }
                    spawn_disk_task(t, "DiskResizeTask", &d, json!({"size": size}), &owner);
                    waiting = true;
                }
                Ok(wait_for_subtasks(waiting))
            }
            "newdisks" => {
                let add = arr(&t.params["add"]);
                let existing = store::guest_disks(&r.db, std::slice::from_ref(&gid)).await?;
                for e in &add {
                    let idx = e["index"].as_i64().unwrap_or(0);
                    if existing.iter().any(|(j, _)| i(j, "index") == idx) {
                        continue;
                    }
                    insert_guest_disk(&r, &guest, e, "data").await?;
                }
                let ids: Vec<String> = add.iter().map(|e| value_str(e, "disk_id")).collect();
                let mut waiting = false;
                for d in store::rows_in(&r.db, &DISKS, "id", &ids).await? {
                    if s(&d, "status") == "ready" {
                        continue;
                    }
                    let params = json!({"host_id": s(&guest, "host_id")});
                    spawn_disk_task(t, "DiskCreateTask", &d, params, &owner);
                    waiting = true;
                }
                Ok(wait_for_subtasks(waiting))
            }
            _ => {
                let mut ch = Row::new();
                ch.insert("pending_storage".into(), json!(0));
                ch.insert("fail_reason".into(), Value::Null);
                crud::update(r.db.write(), &GUESTS, &gid, &ch).await?;
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &gid,
                    &[status::CHANGE_FLAVOR],
                    status::READY,
                )
                .await?;
                if t.params["auto_start"] == json!(true) {
                    return spawn_start(&r, t, &guest, owner).await;
                }
                Ok(Step::Done)
            }
        }
    }

    // A failed auto-start leaves the new configuration, in start_fail.
    fn tolerates_failed_subtasks(&self, step: &str) -> bool {
        step == "finish"
    }

    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        match step {
            "reserve" => {
                let mut ch: Row = t.params["old"].as_object().cloned().unwrap_or_default();
                ch.insert("pending_storage".into(), json!(0));
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
            }
            "resize" => {
                // A disk cannot shrink back: a grown disk keeps its size (the
                // row says what the agent reported); failed ones are as before.
                for e in arr(&t.params["resize"]) {
                    let mut ch = Row::new();
                    ch.insert("status".into(), json!("ready"));
                    let mut q = crud::update_sql(&DISKS, &ch);
                    q.push(" WHERE `id` = ")
                        .bind(value_str(&e, "disk_id"))
                        .push(" AND `status` IN ('resizing', 'resize_failed')");
                    q.query()?
                        .execute(r.db.write())
                        .await
                        .map_err(DbError::from)?;
                }
            }
            "newdisks" => {
                let guest = guest_row(&r, &t.obj_id).await?;
                for e in arr(&t.params["add"]) {
                    remove_disk(&r, &guest, &value_str(&e, "disk_id")).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        ch.insert("status".into(), json!(status::CHANGE_FLAVOR_FAIL));
        ch.insert("fail_reason".into(), json!(reason));
        ch.insert("pending_storage".into(), json!(0));
        crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        Ok(())
    }
}

/// Start the disk task `name` on disk row `d` as a subtask.
pub(super) fn spawn_disk_task(t: &mut TaskCtx, name: &str, d: &Row, params: Value, owner: &Owner) {
    t.spawn(NewTask::new(
        name,
        "disk",
        &s(d, "id"),
        &s(d, "name"),
        params,
        owner.clone(),
    ));
}

/// Wait for the subtasks a step started, if it started any.
pub(super) fn wait_for_subtasks(started: bool) -> Step {
    if started {
        Step::WaitSubtasks
    } else {
        Step::Done
    }
}

/// Start the guest after an action (`auto_start`), as a subtask whose
/// failure leaves the action done and the guest in start_fail.
pub(super) async fn spawn_start(
    r: &Region,
    t: &mut TaskCtx,
    guest: &Row,
    owner: Owner,
) -> StepResult {
    let gid = s(guest, "id");
    // A re-run finds start_start already set; the start task is inserted
    // with this step's commit, so it cannot exist yet.
    store::cas_status(
        &r.db,
        &GUESTS,
        &gid,
        &[status::READY, status::START_START],
        status::START_START,
    )
    .await?;
    t.spawn(NewTask::new(
        "GuestStartTask",
        "server",
        &gid,
        &s(guest, "name"),
        json!({}),
        owner,
    ));
    Ok(Step::WaitSubtasks)
}

/// Insert a disk row and its joint to the guest (one transaction).
pub(super) async fn insert_guest_disk(
    r: &Region,
    guest: &Row,
    cfg: &Value,
    disk_type: &str,
) -> Result<(), TaskError> {
    let idx = cfg["index"].as_i64().unwrap_or(0);
    let did = value_str(cfg, "disk_id");
    let mut disk = Row::new();
    disk.insert("id".into(), json!(did));
    disk.insert(
        "name".into(),
        json!(format!("{}-disk{idx}", s(guest, "name"))),
    );
    disk.insert("tenant_id".into(), json!(s(guest, "tenant_id")));
    disk.insert("domain_id".into(), json!(s(guest, "domain_id")));
    disk.insert("storage_id".into(), json!(value_str(cfg, "storage_id")));
    disk.insert("disk_size".into(), json!(cfg["size"].as_i64().unwrap_or(0)));
    disk.insert("disk_format".into(), json!(value_str(cfg, "format")));
    disk.insert("disk_type".into(), json!(disk_type));
    disk.insert("template_id".into(), json!(value_str(cfg, "image_id")));
    disk.insert("fs_format".into(), json!(value_str(cfg, "fs")));
    disk.insert("status".into(), json!("init"));
    crud::prepare_insert(&DISKS, &mut disk);
    let mut joint = Row::new();
    joint.insert("guest_id".into(), json!(s(guest, "id")));
    joint.insert("disk_id".into(), json!(did));
    joint.insert("index".into(), json!(idx));
    joint.insert("boot_index".into(), json!(-1));
    joint.insert("driver".into(), json!(value_str(cfg, "driver")));
    joint.insert("mountpoint".into(), json!(value_str(cfg, "mountpoint")));
    crud::prepare_insert(&GUESTDISKS, &mut joint);
    let mut tx = r.db.begin().await?;
    match crud::insert(&mut *tx, &DISKS, &disk).await {
        Ok(_) => {}
        // Created by an earlier run whose joint was removed meanwhile:
        // only the joint is missing.
        Err(DbError::Duplicate(_)) => {}
        Err(e) => return Err(e.into()),
    }
    crud::insert(&mut *tx, &GUESTDISKS, &joint).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// Delete a disk a task created: on the host (best effort: an agent that
/// cannot answer keeps nothing we could reach), its joint, its row.
pub(super) async fn remove_disk(r: &Region, guest: &Row, did: &str) -> Result<(), TaskError> {
    let Some(d) = crud::get(r.db.read(), &DISKS, did).await? else {
        return Ok(());
    };
    let sid = s(&d, "storage_id");
    if s(&d, "status") != "init"
        && let Ok(agent) = crate::tasks::disk::storage_agent(r, &sid, &s(guest, "host_id")).await
    {
        crate::tasks::disk::drop_disk_files(r, &agent, &sid, did).await;
    }
    let mut q = Sql::new("DELETE FROM `guestdisks_tbl` WHERE `disk_id` = ");
    q.bind(did);
    q.query()?
        .execute(r.db.write())
        .await
        .map_err(DbError::from)?;
    crud::delete(r.db.write(), &DISKS, did).await?;
    Ok(())
}
