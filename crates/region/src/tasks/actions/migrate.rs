//! `migrate` (cold).

use super::*;
use cloudpods_taskman::{Subtasks, Undone};

pub(super) async fn migrate(call: Call<'_>) -> Result<()> {
    let (region, ctx, obj, input) = (call.region, call.ctx, call.obj, call.input);
    const ACTION: &str = "migrate";
    if ctx.max_scope("servers", "perform", Some(ACTION)) != Some(Scope::System) {
        return Err(HttpError::forbidden(
            "only system admins may migrate servers",
        ));
    }
    require_status(obj, ACTION, &[status::READY])?;
    let m = plan_move(region, ctx, obj, input, "cold migrate").await?;
    let (src, c, plan) = (m.src_host_id, m.dst_host_id, m.disks);
    let mut tx = region.db.begin().await?;
    guest_cas(
        region,
        &mut tx,
        obj,
        ACTION,
        &[status::READY],
        status::START_MIGRATE,
    )
    .await?;
    let params = json!({
        "prev_status": status::READY, "src_host_id": src, "dst_host_id": c,
        "disks": plan, "auto_start": flag(input, "auto_start")?,
    });
    commit_with_task(region, tx, new_task(ctx, obj, "GuestMigrateTask", params)).await
}

/// Where a guest moves to and what moves with it.
pub(super) struct MovePlan {
    pub src_host_id: String,
    pub dst_host_id: String,
    /// Per disk: id, source and target storage, source path, size…
    pub disks: Vec<Value>,
}

/// Pick the target host of a migration (`prefer_host`, else the
/// scheduler, never the source) with a storage for each disk; `what` names
/// the operation in refusals (`cold migrate`, `live migrate`).
pub(super) async fn plan_move(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    input: &Object,
    what: &str,
) -> Result<MovePlan> {
    let gid = s(obj, "id");
    let src = s(obj, "host_id");
    let src_host = crud::get(region.db.read(), &HOSTS, &src)
        .await?
        .ok_or_else(|| HttpError::invalid_status("the server has no host"))?;
    let family = migrate_family(&src_host, what)?;
    let mut prefer = String::new();
    if let Some(h) = get_str_any(input, &["prefer_host", "prefer_host_id", "host"]) {
        let host = find_visible(region, ctx, &HOSTS, &h)
            .await
            .map_err(|_| HttpError::not_found(format!("host {h} not found")))?;
        if s(&host, "id") == src {
            return Err(HttpError::input(format!(
                "server {} is already on host {}",
                s(obj, "name"),
                s(&host, "name")
            )));
        }
        prefer = s(&host, "id");
    }
    let disks = store::guest_disks(&region.db, std::slice::from_ref(&gid)).await?;
    let sched_in = ScheduleInput {
        session_id: crud::new_id(cloudpods_db::IdStyle::Uuid),
        count: 1,
        vcpu_count: i(obj, "vcpu_count"),
        vmem_size: i(obj, "vmem_size"),
        disks: disks
            .iter()
            .map(|(_, d)| SchedDisk {
                size: i(d, "disk_size"),
                medium: s(d, "medium_type"),
                ..Default::default()
            })
            .collect(),
        nets: sched_nets(region, &gid).await?,
        hypervisor: s(obj, "hypervisor"),
        prefer_host: prefer,
        exclude_hosts: vec![src.clone()],
        project: s(obj, "tenant_id"),
        project_domain: s(obj, "domain_id"),
        guest_ids: vec![gid.clone()],
        ..Default::default()
    };
    let c = schedule(region, &sched_in)
        .await
        .map_err(|e| {
            HttpError::insufficient(format!(
                "no host can take server {} from host {}: {}",
                s(obj, "name"),
                s(&src_host, "name"),
                e.details
            ))
        })?
        .into_iter()
        .next()
        .filter(|c| c.host_id != src && !c.host_id.is_empty())
        .ok_or_else(|| HttpError::insufficient("the scheduler found no other host"))?;
    if let Some(dst) = crud::get(region.db.read(), &HOSTS, &c.host_id).await?
        && migrate_family(&dst, what)? != family
    {
        return Err(HttpError::not_supported(format!(
            "{what} from host {} ({family}) to host {} ({}) is not possible: the hypervisors differ",
            s(&src_host, "name"),
            s(&dst, "name"),
            migrate_family(&dst, what)?
        )));
    }
    let mut plan = Vec::new();
    for (k, (_, d)) in disks.iter().enumerate() {
        let target = c
            .disks
            .get(k)
            .and_then(|x| x.storage_ids.first())
            .cloned()
            .ok_or_else(|| HttpError::insufficient("the scheduler chose no storage"))?;
        plan.push(json!({
            "disk_id": s(d, "id"), "src_storage_id": s(d, "storage_id"), "src_path": s(d, "access_path"),
            "dst_storage_id": target, "size": i(d, "disk_size"), "format": s(d, "disk_format"),
            "template_id": s(d, "template_id"), "disk_type": s(d, "disk_type"),
        }));
    }
    Ok(MovePlan {
        src_host_id: src,
        dst_host_id: c.host_id,
        disks: plan,
    })
}

/// What a moved guest leaves on its source host, as `(object id, agent
/// path)`: the guest, then each disk (`params.disks` of a migration).
pub(super) fn source_leftovers(t: &TaskCtx) -> Vec<(String, String)> {
    let mut out = vec![(t.obj_id.clone(), format!("/servers/{}/delete", t.obj_id))];
    for d in arr(&t.params["disks"]) {
        let did = value_str(&d, "disk_id");
        let path = format!("/disks/{}/delete/{did}", value_str(&d, "src_storage_id"));
        out.push((did, path));
    }
    out
}

/// Remove a moved guest's source copies, as subtasks of the current step.
pub(super) fn spawn_source_cleanup(t: &mut TaskCtx, src: &str, owner: &Owner) {
    for (obj, path) in source_leftovers(t) {
        t.spawn(agent_request(
            src,
            &obj,
            &path,
            json!({}),
            "",
            owner.clone(),
        ));
    }
}

/// Which agents can copy disks to each other: `simulated` ones, and QEMU
/// ones (`qemu/kvm`, `qemu/tcg`: a disk copied as qcow2 boots under
/// either). A host whose agent registered no driver (or another one) is
/// refused before anything is written.
pub(super) fn migrate_family(host: &Row, what: &str) -> Result<&'static str> {
    let driver = host
        .get("sys_info")
        .map(|v| value_str(v, "driver"))
        .unwrap_or_default();
    match driver.as_str() {
        "simulated" => Ok("simulated"),
        d if d.starts_with("qemu") => Ok("qemu"),
        "" => Err(HttpError::not_supported(format!(
            "{what}: host {} has no registered hypervisor driver",
            s(host, "name")
        ))),
        other => Err(HttpError::not_supported(format!(
            "{what}: host {} runs driver {other}, which cannot move guests",
            s(host, "name")
        ))),
    }
}

/// Move a stopped guest to another host: disks made on the target (the
/// agent copies them from the source), deploy there, switch the records,
/// then clean the source. Until the switch the source is untouched, so a
/// failure undoes only what was made on the target.
pub struct Migrate(pub Weak<Region>);

impl Migrate {
    async fn dst_agent(r: &Region, t: &TaskCtx) -> Result<Agent, TaskError> {
        Ok(Agent::of(&host_row(r, &t.param_str("dst_host_id")).await?))
    }
}

#[async_trait]
impl TaskDef for Migrate {
    cloudpods_taskman::task_meta!(
        "GuestMigrateTask",
        ["prepare", "disks", "deploy", "switch", "cleanup", "finish"]
    );
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let owner = child_owner(t, &guest);
        let src = t.param_str("src_host_id");
        let dst = t.param_str("dst_host_id");
        match step {
            "prepare" => {
                store::cas_status(
                    &r.db,
                    &GUESTS,
                    &t.obj_id,
                    &[status::START_MIGRATE],
                    status::MIGRATING,
                )
                .await?;
                Ok(Step::Done)
            }
            "disks" => {
                let src_uri = s(&host_row(&r, &src).await?, "manager_uri");
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let ds = value_str(&d, "dst_storage_id");
                    let body = json!({"disk": {
                        "disk_id": did, "size": d["size"], "format": d["format"],
                        "image_id": d["template_id"], "disk_type": d["disk_type"],
                        "migrate_from": {"host_id": src, "manager_uri": src_uri, "disk_id": did,
                                         "storage_id": d["src_storage_id"], "disk_path": d["src_path"]},
                    }});
                    t.spawn(agent_request(
                        &dst,
                        &did,
                        &format!("/disks/{ds}/create/{did}"),
                        body,
                        &format!("/disks/{ds}/delete/{did}"),
                        owner.clone(),
                    ));
                }
                Ok(Step::WaitSubtasks)
            }
            "deploy" => {
                let paths = t.state.get("paths").cloned().unwrap_or(json!({}));
                let mut o = DescOverrides {
                    host_id: Some(dst.clone()),
                    ..Default::default()
                };
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let mut ch = Map::new();
                    ch.insert("storage_id".into(), d["dst_storage_id"].clone());
                    ch.insert(
                        "path".into(),
                        paths.get(&did).cloned().unwrap_or(Value::Null),
                    );
                    o.disks.insert(did, ch);
                }
                let desc = guest_desc_with(&r, &guest, &o).await?;
                let agent = Self::dst_agent(&r, t).await?;
                r.agents
                    .send(
                        &agent,
                        &format!("/servers/{}/deploy", t.obj_id),
                        json!({"desc": desc, "params": {"hostname": s(&guest, "hostname"),
                                                         "reset_password": false, "migrate": true}}),
                        t,
                    )
                    .await?;
                Ok(Step::WaitCallback {
                    timeout: agent_timeout(&r),
                })
            }
            "switch" => {
                let paths = t.state.get("paths").cloned().unwrap_or(json!({}));
                let mut tx = r.db.begin().await?;
                let mut ch = Row::new();
                ch.insert("host_id".into(), json!(dst));
                crud::update(&mut *tx, &GUESTS, &t.obj_id, &ch).await?;
                for d in arr(&t.params["disks"]) {
                    let did = value_str(&d, "disk_id");
                    let mut ch = Row::new();
                    ch.insert("storage_id".into(), d["dst_storage_id"].clone());
                    ch.insert(
                        "access_path".into(),
                        paths.get(&did).cloned().unwrap_or(Value::Null),
                    );
                    crud::update(&mut *tx, &DISKS, &did, &ch).await?;
                }
                tx.commit().await.map_err(DbError::from)?;
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
                    &[status::MIGRATING],
                    status::READY,
                )
                .await?;
                let mut ch = Row::new();
                ch.insert("fail_reason".into(), Value::Null);
                crud::update(r.db.write(), &GUESTS, &t.obj_id, &ch).await?;
                if t.params["auto_start"] == json!(true) {
                    return spawn_start(&r, t, &guest, owner).await;
                }
                Ok(Step::Done)
            }
        }
    }
    async fn on_subtasks_done(&self, t: &mut TaskCtx, step: &str, results: Subtasks) -> StepResult {
        match step {
            "disks" => {
                if let Some(f) = results.iter().find(|r| !r.succeeded) {
                    return Err(TaskError(format!(
                        "creating disk {} on the target host failed: {}",
                        f.obj_id, f.reason
                    )));
                }
                let r = region(&self.0)?;
                let mut paths = Map::new();
                for res in &results {
                    let path = res
                        .state
                        .get("result")
                        .and_then(|v| v.get("disk_path"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let storage = arr(&t.params["disks"])
                        .into_iter()
                        .find(|d| value_str(d, "disk_id") == res.obj_id)
                        .map(|d| value_str(&d, "dst_storage_id"))
                        .unwrap_or_default();
                    crate::tasks::check_storage_path(&r, &storage, &path, "disk path").await?;
                    paths.insert(res.obj_id.clone(), json!(path));
                }
                t.state.insert("paths".into(), Value::Object(paths));
                Ok(Step::Done)
            }
            "cleanup" => {
                // The source copies are gone: from here on the migration
                // rolls forward (nothing below is undone any more).
                t.state.insert("cleaned".into(), json!(true));
                // The guest already runs from the target; leftovers on the
                // source are logged for the operator.
                for f in results.iter().filter(|r| !r.succeeded) {
                    tracing::warn!(guest = %t.obj_id, object = %f.obj_id, reason = %f.reason,
                                   "could not clean up the migration source");
                }
                Ok(Step::Done)
            }
            _ => Ok(Step::Done),
        }
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        if t.state.get("cleaned") == Some(&json!(true)) {
            // Past the point of no return: the guest lives on the target.
            return Ok(());
        }
        let r = region(&self.0)?;
        match step {
            "switch" => {
                let mut tx = r.db.begin().await?;
                let mut ch = Row::new();
                ch.insert("host_id".into(), json!(t.param_str("src_host_id")));
                crud::update(&mut *tx, &GUESTS, &t.obj_id, &ch).await?;
                for d in arr(&t.params["disks"]) {
                    let mut ch = Row::new();
                    ch.insert("storage_id".into(), d["src_storage_id"].clone());
                    ch.insert("access_path".into(), d["src_path"].clone());
                    crud::update(&mut *tx, &DISKS, &value_str(&d, "disk_id"), &ch).await?;
                }
                tx.commit().await.map_err(DbError::from)?;
            }
            "deploy" => {
                if let Ok(agent) = Self::dst_agent(&r, t).await
                    && let Err(e) = r
                        .agents
                        .call(&agent, &format!("/servers/{}/delete", t.obj_id), json!({}))
                        .await
                {
                    tracing::warn!(guest = %t.obj_id, error = %e, "target could not remove the guest");
                }
            }
            "disks" => {
                let Ok(agent) = Self::dst_agent(&r, t).await else {
                    return Ok(());
                };
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
        fail_to(&self.0, &GUESTS, t, status::MIGRATE_FAILED, why).await
    }
}
