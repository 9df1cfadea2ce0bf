//! `rebuild-root` / `set-password`: deploys of a new system disk or new
//! secrets.

use super::*;

/// Password and key of a deploy, checked; stored on the guest (secret
/// column) rather than in the task parameters.
pub(super) async fn deploy_secrets(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    input: &Object,
) -> Result<Value> {
    let password = get_str(input, "password");
    if let Some(pw) = &password {
        check_password(pw)?;
    }
    let mut keypair_id = String::new();
    let mut public_key = Value::Null;
    if let Some(k) = get_str_any(input, &["keypair", "keypair_id"]) {
        let kp = find_visible(region, ctx, &KEYPAIRS, &k)
            .await
            .map_err(|_| HttpError::not_found(format!("keypair {k} not found")))?;
        keypair_id = s(&kp, "id");
        public_key = json!(s(&kp, "public_key"));
    }
    let reset =
        get_bool(input, "reset_password")?.unwrap_or(password.is_none() && keypair_id.is_empty());
    if password.is_some() && reset {
        return Err(HttpError::input(
            "give either password or reset_password, not both",
        ));
    }
    Ok(json!({
        "password": password, "reset_password": reset, "keypair_id": keypair_id,
        "public_key": public_key, "hostname": s(obj, "hostname"),
        "user_data": obj.get("create_params").and_then(|c| c.get("user_data")).cloned(),
    }))
}

/// The `params` of a deploy request from the guest's stored secrets.
pub(super) fn deploy_body_params(guest: &Row) -> Value {
    let p = guest.get("deploy_params").cloned().unwrap_or(Value::Null);
    json!({
        "password": p.get("password"), "reset_password": p.get("reset_password"),
        "hostname": s(guest, "hostname"), "user_data": p.get("user_data"),
    })
}

/// Ask the guest's agent to deploy `desc` (with the key and secrets of the
/// deploy in flight) and wait for its answer.
pub(super) async fn send_deploy(r: &Region, t: &TaskCtx, guest: &Row, desc: Value) -> StepResult {
    let agent = agent_of(r, guest).await?;
    r.agents
        .send(
            &agent,
            &format!("/servers/{}/deploy", t.obj_id),
            json!({"desc": with_key(desc, guest), "params": deploy_body_params(guest)}),
            t,
        )
        .await?;
    Ok(Step::WaitCallback {
        timeout: agent_timeout(r),
    })
}

/// Patch the desc's public key when the deploy brings a new keypair.
pub(super) fn with_key(mut desc: Value, guest: &Row) -> Value {
    if let Some(k) = guest
        .get("deploy_params")
        .and_then(|p| p.get("public_key"))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    {
        desc["public_key"] = json!(k);
    }
    desc
}

pub(super) async fn clear_deploy_params(r: &Region, gid: &str) -> Result<(), TaskError> {
    let mut ch = Row::new();
    ch.insert("deploy_params".into(), Value::Null);
    crud::update(r.db.write(), &GUESTS, gid, &ch).await?;
    Ok(())
}

pub(super) async fn set_password(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
    const ACTION: &str = "set-password";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let secrets = deploy_secrets(region, ctx, obj, input).await?;
    let prev = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(region, &mut tx, obj, ACTION, &from, status::DEPLOYING).await?;
    let mut ch = Row::new();
    ch.insert("deploy_params".into(), secrets);
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(&mut *tx, &GUESTS, &s(obj, "id"), &ch).await?;
    commit_action(
        region,
        tx,
        ctx,
        obj,
        "GuestDeployTask",
        json!({"prev_status": prev}),
    )
    .await
}

/// Deploy a new password or key into an existing guest.
pub struct Deploy(pub Weak<Region>);

#[async_trait]
impl TaskDef for Deploy {
    cloudpods_taskman::task_meta!("GuestDeployTask", ["deploy"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let desc = guest_desc(&r, &guest).await?;
        send_deploy(&r, t, &guest, desc).await
    }
    async fn on_callback(&self, t: &mut TaskCtx, _step: &str, _data: Value) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let mut ch = Row::new();
        ch.insert("deploy_params".into(), Value::Null);
        if let Some(k) = guest
            .get("deploy_params")
            .map(|p| value_str(p, "keypair_id"))
            .filter(|k| !k.is_empty())
        {
            ch.insert("keypair_id".into(), json!(k));
        }
        crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        restore_status(&r, t, status::DEPLOYING).await?;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        let r = region(&self.0)?;
        clear_deploy_params(&r, &t.obj_id).await?;
        fail_to(&self.0, &GUESTS, t, status::DEPLOY_FAIL, why).await
    }
}

pub(super) async fn rebuild_root(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
    const ACTION: &str = "rebuild-root";
    let from = [status::READY, status::RUNNING];
    require_status(obj, ACTION, &from)?;
    let gid = s(obj, "id");
    let image = get_str_any(input, &["image_id", "image", "template_id"])
        .ok_or_else(|| HttpError::missing("image_id is required"))?;
    if image.len() > 128 || image.chars().any(|c| c.is_control() || c == '/') {
        return Err(HttpError::input(format!("invalid image id {image:?}")));
    }
    let disks = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let (_, sys) = disks
        .iter()
        .find(|(j, _)| i(j, "index") == 0)
        .ok_or_else(|| HttpError::invalid_status("the server has no system disk"))?;
    let secrets = deploy_secrets(region, ctx, obj, input).await?;
    let prev = s(obj, "status");
    let mut tx = region.db.begin().await?;
    guest_cas(region, &mut tx, obj, ACTION, &from, status::REBUILD_ROOT).await?;
    let mut ch = Row::new();
    ch.insert("deploy_params".into(), secrets);
    ch.insert("fail_reason".into(), Value::Null);
    crud::update(&mut *tx, &GUESTS, &gid, &ch).await?;
    let params = json!({
        "prev_status": prev, "image_id": image,
        "was_on": s(obj, "power_states") == "on" || prev == status::RUNNING,
        "auto_start": get_bool(input, "auto_start")?,
        "old_disk_id": s(sys, "id"), "new_disk_id": crud::new_id(DISKS.id_style),
    });
    commit_action(region, tx, ctx, obj, "GuestRebuildRootTask", params).await
}

/// Replace the system disk with a fresh one from an image. The new disk is
/// made next to the old one and swapped in only after the deploy worked,
/// so a failure keeps the old disk untouched.
pub struct RebuildRoot(pub Weak<Region>);

#[async_trait]
impl TaskDef for RebuildRoot {
    cloudpods_taskman::task_meta!(
        "GuestRebuildRootTask",
        ["stop", "create", "deploy", "swap", "finish"]
    );
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let old_id = t.param_str("old_disk_id");
        let new_id = t.param_str("new_disk_id");
        let owner = child_owner(t, &guest);
        match step {
            "stop" => {
                if s(&guest, "power_states") != "on" {
                    return Ok(Step::Done);
                }
                let agent = agent_of(&r, &guest).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/stop", t.obj_id),
                        json!({"desc": guest_desc(&r, &guest).await?, "is_force": false, "timeout": 30}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "create" => {
                let new = crud::get(r.db.read(), &DISKS, &new_id).await?;
                if new.as_ref().is_some_and(|d| s(d, "status") == "ready") {
                    return Ok(Step::Done);
                }
                if new.is_none() {
                    let old = crud::get(r.db.read(), &DISKS, &old_id)
                        .await?
                        .ok_or_else(|| TaskError::new("the system disk no longer exists"))?;
                    let mut disk = Row::new();
                    disk.insert("id".into(), json!(new_id));
                    disk.insert("name".into(), json!(rebuild_name(&s(&old, "name"))));
                    for k in [
                        "tenant_id",
                        "domain_id",
                        "storage_id",
                        "disk_size",
                        "disk_format",
                        "medium_type",
                    ] {
                        disk.insert(k.into(), old.get(k).cloned().unwrap_or(Value::Null));
                    }
                    disk.insert("disk_type".into(), json!("sys"));
                    disk.insert("template_id".into(), json!(t.param_str("image_id")));
                    disk.insert("status".into(), json!("init"));
                    crud::prepare_insert(&DISKS, &mut disk);
                    match crud::insert(r.db.write(), &DISKS, &disk).await {
                        Ok(_) | Err(DbError::Duplicate(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                t.spawn(NewTask::new(
                    "DiskCreateTask",
                    "disk",
                    &new_id,
                    &format!("{}-rebuild", s(&guest, "name")),
                    json!({"host_id": s(&guest, "host_id")}),
                    owner,
                ));
                Ok(Step::WaitSubtasks)
            }
            "deploy" => {
                let new = crud::get(r.db.read(), &DISKS, &new_id)
                    .await?
                    .ok_or_else(|| TaskError::new("the new system disk vanished"))?;
                let mut o = DescOverrides::default();
                let mut ch = Map::new();
                ch.insert("disk_id".into(), json!(new_id));
                ch.insert("path".into(), json!(s(&new, "access_path")));
                ch.insert("template_id".into(), json!(s(&new, "template_id")));
                ch.insert("size".into(), json!(i(&new, "disk_size")));
                ch.insert("storage_id".into(), json!(s(&new, "storage_id")));
                o.disks.insert(old_id, ch);
                let desc = guest_desc_with(&r, &guest, &o).await?;
                send_deploy(&r, t, &guest, desc).await
            }
            "swap" => {
                swap_disk(&r, &t.obj_id, &old_id, &new_id).await?;
                let mut ch = Row::new();
                ch.insert("deploy_params".into(), Value::Null);
                if let Some(k) = guest
                    .get("deploy_params")
                    .map(|p| value_str(p, "keypair_id"))
                    .filter(|k| !k.is_empty())
                {
                    ch.insert("keypair_id".into(), json!(k));
                }
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                Ok(Step::Done)
            }
            _ => {
                // The old disk goes with its own task (a failure shows on
                // the disk); the guest comes back in its former power state.
                if let Some(old) = crud::get(r.db.read(), &DISKS, &old_id).await? {
                    t.spawn(NewTask::new(
                        "DiskDeleteTask",
                        "disk",
                        &old_id,
                        &s(&old, "name"),
                        json!({}),
                        owner.clone(),
                    ));
                }
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::REBUILD_ROOT],
                    status::READY,
                )
                .await?;
                let start = t.params["auto_start"]
                    .as_bool()
                    .unwrap_or(t.params["was_on"] == json!(true));
                if start {
                    return spawn_start(&r, t, &guest, owner).await;
                }
                mark_ready(&r, &t.obj_id).await?;
                Ok(Step::WaitSubtasks)
            }
        }
    }
    async fn on_callback(&self, t: &mut TaskCtx, step: &str, data: Value) -> StepResult {
        let r = region(&self.0)?;
        let mut ch = Row::new();
        match step {
            "stop" => {
                ch.insert("power_states".into(), json!("off"));
            }
            _ => {
                if let Some(os) = data.get("os_type").and_then(Value::as_str) {
                    ch.insert("os_type".into(), json!(os));
                }
            }
        }
        if !ch.is_empty() {
            crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
        }
        Ok(Step::Done)
    }
    fn tolerates_failed_subtasks(&self, step: &str) -> bool {
        step == "finish"
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        let r = region(&self.0)?;
        let old_id = t.param_str("old_disk_id");
        let new_id = t.param_str("new_disk_id");
        match step {
            "swap" => swap_disk(&r, &t.obj_id, &new_id, &old_id).await?,
            "create" => {
                let guest = guest_row(&r, &t.obj_id).await?;
                remove_disk(&r, &guest, &new_id).await?;
            }
            "stop" if t.params["was_on"] == json!(true) => {
                // Bring the guest back up as it was (best effort).
                let guest = guest_row(&r, &t.obj_id).await?;
                if s(&guest, "power_states") != "on" {
                    let res = async {
                        let agent = agent_of(&r, &guest).await?;
                        let desc = guest_desc(&r, &guest).await?;
                        r.agents
                            .call(
                                &agent,
                                &format!("/servers/{}/start", t.obj_id),
                                json!({"desc": desc}),
                            )
                            .await
                    }
                    .await;
                    match res {
                        Ok(_) => {
                            let mut ch = Row::new();
                            ch.insert("power_states".into(), json!("on"));
                            crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                        }
                        Err(e) => {
                            tracing::warn!(guest = %t.obj_id, error = %e, "could not restart the guest")
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, why: &str) -> Undone {
        let r = region(&self.0)?;
        clear_deploy_params(&r, &t.obj_id).await?;
        fail_to(&self.0, &GUESTS, t, status::REBUILD_ROOT_FAIL, why).await
    }
}

pub(super) fn rebuild_name(name: &str) -> String {
    let base: String = name.chars().take(100).collect();
    format!("{base}-rebuild")
}

/// Point the guest's joint from disk `from` to disk `to`, swapping names.
pub(super) async fn swap_disk(
    r: &Region,
    gid: &str,
    from: &str,
    to: &str,
) -> Result<(), TaskError> {
    let (Some(a), Some(b)) = (
        crud::get(r.db.read(), &DISKS, from).await?,
        crud::get(r.db.read(), &DISKS, to).await?,
    ) else {
        return Ok(());
    };
    let mut tx = r.db.begin().await?;
    let mut q = Sql::new("UPDATE `guestdisks_tbl` SET `disk_id` = ");
    q.bind(to)
        .push(" WHERE `guest_id` = ")
        .bind(gid)
        .push(" AND `disk_id` = ")
        .bind(from);
    let n = q
        .query()?
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?
        .rows_affected();
    if n == 1 {
        let mut ch = Row::new();
        ch.insert("name".into(), json!(s(&b, "name")));
        crud::update(&mut *tx, &DISKS, from, &ch).await?;
        ch.insert("name".into(), json!(s(&a, "name")));
        crud::update(&mut *tx, &DISKS, to, &ch).await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}
