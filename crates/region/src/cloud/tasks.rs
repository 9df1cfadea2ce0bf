//! Servers on a public cloud, driven through our API: `POST /servers` with
//! `hypervisor=aws` (or `prefer_region` / `prefer_manager` / a network of
//! a cloud provider) and the lifecycle actions, as durable tasks like the
//! local ones. The region's server model calls in here for guests with a
//! `manager_id` (see `is_public_cloud`).
//!
//! Each task step is one cloud call or one poll of the instance's state, so
//! a step that runs again after a crash repeats an idempotent call
//! (start/stop/terminate of an instance in that state are no-ops;
//! `RunInstances` carries a client token).

use cloudpods_taskman::Undone;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cloudpods_apis::compute::{collect_configs, status};
use cloudpods_cloudprovider as cp;
use cloudpods_db::{Row, crud};
use cloudpods_rest::params::{get_i64, get_str, get_str_any, get_strs};
use cloudpods_rest::{Ctx, HttpError, Object, Result};
use cloudpods_taskman::{NewTask, Step, StepResult, TaskCtx, TaskDef, TaskError};
use serde_json::{Value, json};

use super::models::*;
use crate::Region;
use crate::models::*;
use crate::resources::servers::{find_visible, server_task, submit_task, task_owner};
use crate::store::{i, s};
use crate::tasks::{guest_row, region};

/// Seconds a task polls the cloud for an instance to reach a state.
const POLL_LIMIT: i64 = 600;

pub fn register(region: &Arc<Region>) {
    let w = Arc::downgrade(region);
    let e = &region.engine;
    e.register(Arc::new(Create(w.clone())));
    e.register(Arc::new(Power(w.clone(), "CloudGuestStartTask")));
    e.register(Arc::new(Power(w.clone(), "CloudGuestStopTask")));
    e.register(Arc::new(Power(w.clone(), "CloudGuestRestartTask")));
    e.register(Arc::new(Power(w.clone(), "CloudGuestSyncstatusTask")));
    e.register(Arc::new(Delete(w.clone())));
    e.register(Arc::new(ChangeConfig(w)));
}

/// The cloud task that replaces a local guest task for a public-cloud
/// guest (`GuestStartTask` → `CloudGuestStartTask`…); others unchanged.
pub fn task_name_for(guest: &Row, name: &str) -> String {
    if !super::is_public_cloud(guest) {
        return name.to_string();
    }
    match name {
        "GuestStartTask" => "CloudGuestStartTask",
        "GuestStopTask" => "CloudGuestStopTask",
        "GuestRestartTask" | "GuestResetTask" => "CloudGuestRestartTask",
        "GuestSyncstatusTask" => "CloudGuestSyncstatusTask",
        "GuestDeleteTask" => "CloudGuestDeleteTask",
        other => other,
    }
    .to_string()
}

// ---------------------------------------------------------------------------
// Create input.

/// Placement of a cloud server: provider, region and optional zone.
struct Placement {
    manager_id: String,
    cloudregion_id: String,
    region_ext: String,
    zone_id: String,
    zone_ext: String,
}

async fn managed_region(region: &Arc<Region>, manager: Option<&Row>, cr: &Row) -> Result<Row> {
    if let Some(m) = manager {
        return Ok(m.clone());
    }
    super::ops::provider_of_region(region, cr).await
}

/// Region, zone and provider of a public-cloud server, from the network,
/// the preferred region, zone or provider (the provider's first synced
/// region when nothing else says).
async fn cloud_placement(
    region: &Arc<Region>,
    ctx: &Ctx,
    input: &Object,
    info: Option<&cp::ProviderInfo>,
    mut manager: Option<Row>,
    mut cr: Option<Row>,
    net: Option<&Row>,
) -> Result<(Placement, Row)> {
    let mut zone: Option<Row> = None;
    if let Some(n) = net {
        let wire = crud::must_get(region.db.read(), &WIRES, &s(n, "wire_id")).await?;
        let vpc = crud::must_get(region.db.read(), &VPCS, &s(&wire, "vpc_id")).await?;
        zone = crud::get(region.db.read(), &ZONES, &s(&wire, "zone_id")).await?;
        let ncr =
            crud::must_get(region.db.read(), &CLOUDREGIONS, &s(&vpc, "cloudregion_id")).await?;
        if let Some(c) = &cr
            && s(c, "id") != s(&ncr, "id")
        {
            return Err(HttpError::input(format!(
                "network {} is not in region {}",
                s(n, "name"),
                s(c, "name")
            )));
        }
        if let Some(m) = &manager
            && s(m, "id") != s(n, "manager_id")
        {
            return Err(HttpError::input(format!(
                "network {} belongs to another cloud provider",
                s(n, "name")
            )));
        }
        cr = Some(ncr);
        if manager.is_none() {
            manager = crud::get(region.db.read(), &CLOUDPROVIDERS, &s(n, "manager_id")).await?;
        }
    }
    if let Some(z) = get_str_any(input, &["prefer_zone", "prefer_zone_id"]) {
        let zr = find_visible(region, ctx, &ZONES, &z)
            .await
            .map_err(|_| HttpError::not_found(format!("zone {z} not found")))?;
        if cr.is_none() {
            cr = crud::get(region.db.read(), &CLOUDREGIONS, &s(&zr, "cloudregion_id")).await?;
        }
        zone = Some(zr);
    }
    let cr = match cr {
        Some(c) => c,
        None => {
            // The provider's first synced region.
            let m = manager.clone().ok_or_else(|| {
                HttpError::missing(
                    "a public-cloud server needs prefer_region, prefer_manager or a network",
                )
            })?;
            let joints = crate::store::rows_in(
                &region.db,
                &CLOUDPROVIDER_REGIONS,
                "cloudprovider_id",
                &[s(&m, "id")],
            )
            .await?;
            let first = joints
                .first()
                .ok_or_else(|| HttpError::input("the cloud provider has no synced region yet"))?;
            crud::must_get(region.db.read(), &CLOUDREGIONS, &s(first, "cloudregion_id")).await?
        }
    };
    let prov = managed_region(region, manager.as_ref(), &cr).await?;
    let manager_id = s(&prov, "id");
    if let Some(i) = info
        && !s(&prov, "provider").eq_ignore_ascii_case(i.provider)
    {
        return Err(HttpError::input(format!(
            "cloud provider {} is not {}",
            s(&prov, "name"),
            i.provider
        )));
    }
    let placement = Placement {
        manager_id: manager_id.clone(),
        cloudregion_id: s(&cr, "id"),
        region_ext: s(&cr, "external_id"),
        zone_id: zone.as_ref().map(|z| s(z, "id")).unwrap_or_default(),
        zone_ext: zone
            .as_ref()
            .map(|z| s(z, "external_id"))
            .unwrap_or_default(),
    };

    Ok((placement, cr))
}

/// The instance type (SKU of the region) asked for, else the smallest one
/// with enough CPUs and memory.
async fn cloud_sku(
    region: &Arc<Region>,
    input: &Object,
    placement: &Placement,
    cr: &Row,
) -> Result<Row> {
    let vcpu = get_i64(input, "vcpu_count")?;
    let vmem = match input.get("vmem_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            crate::resources::servers::mem_mb(v)
                .ok_or_else(|| HttpError::input(format!("invalid vmem_size {v}")))?,
        ),
    };
    let skus = crud::list(
        &region.db,
        &SERVERSKUS,
        &cloudpods_db::ListSpec {
            conds: vec![crud::eq(
                "cloudregion_id",
                placement.cloudregion_id.as_str(),
            )],
            ..Default::default()
        },
    )
    .await?
    .0;
    let sku = match get_str_any(input, &["instance_type", "sku", "flavor"]) {
        Some(t) => resolve_sku(region, &placement.manager_id, cr, &t).await?,
        None if skus.is_empty() => {
            return Err(HttpError::input(format!(
                "no instance types of {} are known yet: give instance_type, or sync them (cloud-account-sync --resource skus)",
                s(cr, "name")
            )));
        }
        None => {
            let (c, m) = (vcpu.unwrap_or(1), vmem.unwrap_or(1024));
            let mut fit: Vec<&Row> = skus
                .iter()
                .filter(|k| i(k, "cpu_core_count") >= c && i(k, "memory_size_mb") >= m)
                .collect();
            fit.sort_by_key(|k| (i(k, "cpu_core_count"), i(k, "memory_size_mb"), s(k, "name")));
            fit.first().map(|k| (*k).clone()).ok_or_else(|| {
                HttpError::insufficient(format!(
                    "no instance type with {c} CPUs and {m} MB in {}",
                    s(cr, "name")
                ))
            })?
        }
    };
    Ok(sku)
}

/// The cloud's image (cachedimage id or name, or the AMI id) and the
/// disks: system disk MB and volume type, data disks in GB.
async fn cloud_disks(
    region: &Arc<Region>,
    ctx: &Ctx,
    input: &Object,
) -> Result<(String, i64, String, Vec<i64>)> {
    let (disks, _) = collect_configs(input).map_err(HttpError::input)?;
    let image = disks
        .first()
        .map(|d| d.image_id.clone())
        .filter(|x| !x.is_empty())
        .or_else(|| get_str_any(input, &["image_id", "guest_image_id"]))
        .ok_or_else(|| HttpError::missing("an image is required (disk.0 or image_id)"))?;
    let image_ext = match find_visible(region, ctx, &CACHEDIMAGES, &image).await {
        Ok(img) => s(&img, "external_id"),
        Err(_) => image.clone(),
    };
    let sys_mb = disks.first().and_then(|d| d.size).unwrap_or(0);
    if !(0..=16 * 1024 * 1024).contains(&sys_mb) {
        return Err(HttpError::input(
            "disk 0: size must be between 1 MB and 16 TB",
        ));
    }
    let sys_type = disks.first().map(|d| d.backend.clone()).unwrap_or_default();
    if !sys_type.is_empty() && !cp::aws::VOLUME_TYPES.contains(&sys_type.as_str()) {
        return Err(HttpError::input(format!(
            "disk 0: volume type {sys_type:?} is not one of {}",
            cp::aws::VOLUME_TYPES.join(", ")
        )));
    }
    let data_gb: Vec<i64> = disks
        .iter()
        .skip(1)
        .map(|d| (d.size.unwrap_or(10 * 1024) + 1023) / 1024)
        .collect();

    Ok((image_ext, sys_mb, sys_type, data_gb))
}

/// The external ids of the security groups asked for, each of this
/// provider.
async fn cloud_secgroups(
    region: &Arc<Region>,
    ctx: &Ctx,
    input: &Object,
    manager_id: &str,
) -> Result<Vec<String>> {
    let mut secgroups = Vec::new();
    for sg in get_strs(input, "secgroups")
        .into_iter()
        .chain(get_str(input, "secgroup"))
    {
        let r = find_visible(region, ctx, &SECGROUPS, &sg)
            .await
            .map_err(|_| HttpError::not_found(format!("secgroup {sg} not found")))?;
        if s(&r, "manager_id") != manager_id {
            return Err(HttpError::input(format!(
                "secgroup {} is not a security group of this cloud provider",
                s(&r, "name")
            )));
        }
        secgroups.push(s(&r, "external_id"));
    }
    Ok(secgroups)
}

/// If `input` asks for a public-cloud server, check it and return the
/// create parameters (stored with the guest); `None` = a local server.
pub async fn parse_server_create(
    region: &Arc<Region>,
    ctx: &Ctx,
    row: &mut Row,
    input: &Object,
) -> Result<Option<Value>> {
    let hypervisor = get_str(input, "hypervisor").unwrap_or_default();
    let info = cp::provider_info(&hypervisor);
    let prefer_manager = get_str_any(
        input,
        &[
            "prefer_manager",
            "prefer_manager_id",
            "manager",
            "cloudprovider",
        ],
    );
    let prefer_region = get_str_any(input, &["prefer_region", "prefer_region_id"]);
    let (_, nets) = collect_configs(input).map_err(HttpError::input)?;
    let mut manager: Option<Row> = None;
    if let Some(m) = &prefer_manager {
        manager = Some(
            find_visible(region, ctx, &CLOUDPROVIDERS, m)
                .await
                .map_err(|_| HttpError::not_found(format!("cloudprovider {m} not found")))?,
        );
    }
    let mut cr: Option<Row> = None;
    if let Some(r) = &prefer_region {
        let row = find_visible(region, ctx, &CLOUDREGIONS, r)
            .await
            .map_err(|_| HttpError::not_found(format!("cloudregion {r} not found")))?;
        if s(&row, "provider") != "OneCloud" && !s(&row, "provider").is_empty() {
            cr = Some(row);
        }
    }
    // A network of a cloud provider places the server too.
    let mut net: Option<Row> = None;
    if let Some(n) = nets.first().filter(|n| !n.network.is_empty()) {
        let r = find_visible(region, ctx, &NETWORKS, &n.network)
            .await
            .map_err(|_| HttpError::not_found(format!("network {} not found", n.network)))?;
        if !s(&r, "manager_id").is_empty() {
            net = Some(r);
        }
    }
    if info.is_none() && manager.is_none() && cr.is_none() && net.is_none() {
        return Ok(None);
    }
    if !hypervisor.is_empty() && info.is_none() {
        return Err(HttpError::input(format!(
            "hypervisor {hypervisor:?} cannot run on a public cloud"
        )));
    }

    let (placement, cr) =
        cloud_placement(region, ctx, input, info, manager, cr, net.as_ref()).await?;
    let manager_id = placement.manager_id.clone();
    let sku = cloud_sku(region, input, &placement, &cr).await?;
    row.insert("instance_type".into(), json!(s(&sku, "name")));
    row.insert("vcpu_count".into(), json!(i(&sku, "cpu_core_count")));
    row.insert("vmem_size".into(), json!(i(&sku, "memory_size_mb")));
    row.insert(
        "hypervisor".into(),
        json!(info.map(|i| i.hypervisor).unwrap_or("aws")),
    );
    row.insert("manager_id".into(), json!(manager_id));
    if let Some(os) = get_str(input, "os_type") {
        row.insert("os_type".into(), json!(os));
    }

    let (image_ext, sys_mb, sys_type, data_gb) = cloud_disks(region, ctx, input).await?;
    let secgroups = cloud_secgroups(region, ctx, input, &manager_id).await?;
    let address = nets.first().map(|n| n.address.clone()).unwrap_or_default();
    Ok(Some(json!({
        "cloud": {
            "manager_id": placement.manager_id,
            "cloudregion_id": placement.cloudregion_id,
            "region": placement.region_ext,
            "zone_id": placement.zone_id,
            "zone": placement.zone_ext,
            "image": image_ext,
            "instance_type": s(&sku, "name"),
            "network": net.as_ref().map(|n| s(n, "external_id")).unwrap_or_default(),
            "secgroups": secgroups,
            "sys_disk_gb": if sys_mb > 0 { (sys_mb + 1023) / 1024 } else { 0 },
            "sys_disk_type": sys_type,
            "data_disks_gb": data_gb,
            "address": address,
            "user_data": get_str(input, "user_data").unwrap_or_default(),
            "auto_start": input.get("auto_start").and_then(Value::as_bool).unwrap_or(true),
        }
    })))
}

/// An instance type of a region: a synced SKU, else asked of the cloud
/// (instance types are synced on demand).
async fn resolve_sku(region: &Arc<Region>, manager_id: &str, cr: &Row, name: &str) -> Result<Row> {
    let known = crud::list(
        &region.db,
        &SERVERSKUS,
        &cloudpods_db::ListSpec {
            conds: vec![
                crud::eq("cloudregion_id", s(cr, "id")),
                crud::eq("name", name),
            ],
            limit: Some(1),
            ..Default::default()
        },
    )
    .await?
    .0;
    if let Some(k) = known.into_iter().next() {
        return Ok(k);
    }
    let drv = super::region_driver(region, manager_id, &s(cr, "id")).await?;
    let k = drv.sku(name).await.map_err(|e| match e {
        cp::CloudError::NotFound(_) => HttpError::not_found(format!(
            "instance type {name} is not offered in {}",
            s(cr, "name")
        )),
        other => super::cloud_http_error(other),
    })?;
    Ok(
        json!({"name": k.name, "cpu_core_count": k.cpu, "memory_size_mb": k.mem_mb})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    )
}

/// Is this a prepared public-cloud guest row (from [`parse_server_create`])?
pub fn is_cloud_create(row: &Row) -> bool {
    row.get("create_params")
        .and_then(|p| p.get("cloud"))
        .is_some()
}

/// Insert the guests and one create task each, in one transaction.
pub async fn create_servers(region: &Arc<Region>, ctx: &Ctx, rows: Vec<Row>) -> Result<Vec<Row>> {
    let Some(first) = rows.first() else {
        return Ok(rows);
    };
    // The project's quota covers its public-cloud servers too (synced ones
    // count in its usage as well), checked and written in one transaction.
    let mut add = crate::quota::nothing();
    for r in &rows {
        add.cpu += crate::store::i(r, "vcpu_count");
        add.memory += crate::store::i(r, "vmem_size");
        add.server += 1;
        add.port += 1;
        let p = &r.get("create_params").cloned().unwrap_or(Value::Null)["cloud"];
        let data: i64 = p["data_disks_gb"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).sum())
            .unwrap_or(0);
        add.storage += (p["sys_disk_gb"].as_i64().unwrap_or(0) + data) * 1024;
    }
    let project = s(first, "tenant_id");
    let mut tx = crate::quota::begin(&region.db, &project).await?;
    if let Some(msg) = crate::quota::check(
        &region.db,
        &mut tx,
        &project,
        region.opts.default_quota,
        &add,
    )
    .await?
    {
        return Err(HttpError::out_of_quota(msg));
    }
    for r in &rows {
        crud::insert(&mut *tx, &GUESTS, r).await?;
        let mut t = NewTask::new(
            "CloudGuestCreateTask",
            "server",
            &s(r, "id"),
            &s(r, "name"),
            json!({}),
            task_owner(ctx, r),
        );
        t.request_id = ctx.request_id.clone();
        region
            .engine
            .submit_in(&mut tx, &t)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
    }
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    region.engine.wake();
    Ok(rows)
}

/// Server actions with a cloud-specific meaning; `None` = handled by the
/// common path (whose task names [`task_name_for`] maps).
pub async fn perform_server(call: crate::tasks::Call<'_>) -> Result<Option<Value>> {
    let (region, ctx, obj, action, input) =
        (call.region, call.ctx, call.obj, call.action, call.input);
    match action {
        "start" | "stop" | "restart" | "reset" | "syncstatus" | "sync" | "cancel-delete"
        | "metadata" | "user-metadata" | "set-user-metadata" | "set-tags" | "enable"
        | "disable" => Ok(None),
        "change-config" => {
            let ty = get_str_any(input, &["instance_type", "sku", "flavor"]).ok_or_else(|| {
                HttpError::missing("change-config of a public-cloud server needs instance_type")
            })?;
            let crid = guest_cloudregion(region, obj).await?;
            let cr = crud::must_get(region.db.read(), &CLOUDREGIONS, &crid).await?;
            let sku = resolve_sku(region, &s(obj, "manager_id"), &cr, &ty).await?;
            if !crate::store::cas_status(
                &region.db,
                &GUESTS,
                &s(obj, "id"),
                &[status::READY],
                status::CHANGE_FLAVOR,
            )
            .await?
            {
                return Err(HttpError::invalid_status(format!(
                    "Cannot do change-config server in status {} (stop it first)",
                    s(obj, "status")
                )));
            }
            let params = json!({"instance_type": s(&sku, "name"), "vcpu_count": i(&sku, "cpu_core_count"),
                                "vmem_size": i(&sku, "memory_size_mb")});
            let t = server_task(ctx, obj, "CloudGuestChangeConfigTask", params);
            submit_task(region, t).await?;
            let out = crud::must_get(region.db.read(), &GUESTS, &s(obj, "id")).await?;
            Ok(Some(Value::Object(out)))
        }
        other => Err(HttpError::not_supported(format!(
            "{other} is not supported for public-cloud servers"
        ))),
    }
}

/// The cloud region of a managed guest (through its zone host).
async fn guest_cloudregion(region: &Region, guest: &Row) -> Result<String> {
    let host = crud::get(region.db.read(), &HOSTS, &s(guest, "host_id")).await?;
    if let Some(h) = host
        && let Some(z) = crud::get(region.db.read(), &ZONES, &s(&h, "zone_id")).await?
    {
        return Ok(s(&z, "cloudregion_id"));
    }
    guest
        .get("create_params")
        .and_then(|p| p.get("cloud"))
        .and_then(|c| c.get("cloudregion_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| HttpError::not_found("the server's cloud region is unknown"))
}

async fn driver_for(r: &Region, guest: &Row) -> Result<Arc<dyn cp::RegionDriver>, TaskError> {
    let cr = guest_cloudregion(r, guest)
        .await
        .map_err(|e| TaskError(e.details))?;
    super::region_driver(r, &s(guest, "manager_id"), &cr)
        .await
        .map_err(|e| TaskError(e.details))
}

fn cloud_err(e: cp::CloudError) -> TaskError {
    TaskError(e.to_string())
}

/// A retryable cloud error (throttled after the driver's retries, 5xx,
/// timeout) polls again instead of failing the task.
fn transient(e: &cp::CloudError) -> bool {
    e.is_retryable()
}

async fn set_guest(r: &Region, id: &str, ch: Value) -> Result<(), TaskError> {
    let ch: Row = ch.as_object().cloned().unwrap_or_default();
    crud::update(r.db.write(), &GUESTS, id, &ch).await?;
    Ok(())
}

/// Record the instance's state and NICs on the guest.
async fn record_vm(r: &Region, guest: &Row, vm: &cp::Vm) -> Result<(), TaskError> {
    let id = s(guest, "id");
    // The sync's cached view of the instance predates this.
    r.cloud
        .forget_vm(&s(guest, "manager_id"), &vm.external_id)
        .await;
    set_guest(
        r,
        &id,
        json!({"status": vm.status, "instance_type": vm.instance_type, "vcpu_count": vm.vcpu,
               "vmem_size": vm.mem_mb, "power_states": if vm.status == "running" { "on" } else { "off" }}),
    )
    .await?;
    // NICs: the networks are known once the provider's networks are synced.
    let mut rows = Vec::new();
    for (idx, n) in vm.nics.iter().enumerate() {
        let nets = crud::list(
            &r.db,
            &NETWORKS,
            &cloudpods_db::ListSpec {
                conds: vec![
                    crud::eq("manager_id", s(guest, "manager_id")),
                    crud::eq("external_id", n.network_id.as_str()),
                ],
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?
        .0;
        if let Some(net) = nets.first() {
            let mut row: Row = json!({"guest_id": id, "network_id": s(net, "id"), "ip_addr": n.ip,
                                      "mac_addr": if n.mac.is_empty() { Value::Null } else { json!(n.mac) },
                                      "index": idx, "ifname": format!("eth{idx}"), "is_default": idx == 0})
            .as_object()
            .cloned()
            .unwrap_or_default();
            crud::prepare_insert(&GUESTNETWORKS, &mut row);
            rows.push(row);
        }
    }
    let mut tx = r.db.begin().await?;
    let mut q = cloudpods_db::Sql::new("DELETE FROM `guestnetworks_tbl` WHERE `guest_id` = ");
    q.bind(id.as_str());
    q.query()?
        .execute(&mut *tx)
        .await
        .map_err(cloudpods_db::DbError::from)?;
    for row in &rows {
        crud::insert(&mut *tx, &GUESTNETWORKS, row).await?;
    }
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

fn polls(t: &TaskCtx) -> Result<(), TaskError> {
    if t.attempt > POLL_LIMIT {
        return Err(TaskError::new(
            "the cloud did not reach the expected state in time",
        ));
    }
    Ok(())
}

const POLL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------

pub struct Create(pub Weak<Region>);

#[async_trait]
impl TaskDef for Create {
    cloudpods_taskman::task_meta!("CloudGuestCreateTask", ["create", "wait"]);
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let p = guest
            .get("create_params")
            .and_then(|p| p.get("cloud"))
            .cloned()
            .ok_or_else(|| TaskError::new("the server has no cloud create parameters"))?;
        let ps = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let drv = super::region_driver(&r, &ps("manager_id"), &ps("cloudregion_id"))
            .await
            .map_err(|e| TaskError(e.details))?;
        match step {
            "create" => {
                if !s(&guest, "external_id").is_empty() {
                    return Ok(Step::Done);
                }
                set_guest(&r, &t.obj_id, json!({"status": status::DEPLOYING})).await?;
                let req = cp::CreateVm {
                    name: s(&guest, "name"),
                    image_id: ps("image"),
                    instance_type: ps("instance_type"),
                    network_id: ps("network"),
                    zone_id: ps("zone"),
                    secgroup_ids: p["secgroups"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                    sys_disk_gb: p["sys_disk_gb"].as_i64().unwrap_or(0),
                    sys_disk_type: ps("sys_disk_type"),
                    data_disks_gb: p["data_disks_gb"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default(),
                    user_data: ps("user_data"),
                    private_ip: ps("address"),
                    // AWS launches once per token, so a repeated step
                    // cannot make a second instance.
                    client_token: format!("{}-{}", t.id, t.obj_id),
                    tags: [("cloudpods-guest-id".to_string(), t.obj_id.clone())].into(),
                    ..Default::default()
                };
                let vm = match drv.create_vm(&req).await {
                    Ok(v) => v,
                    Err(e) if transient(&e) && t.attempt < 5 => return Ok(Step::Retry(POLL * 2)),
                    Err(e) => return Err(cloud_err(e)),
                };
                // The instance's zone host.
                let hosts = crud::list(
                    &r.db,
                    &HOSTS,
                    &cloudpods_db::ListSpec {
                        conds: vec![
                            crud::eq("manager_id", ps("manager_id")),
                            crud::eq("external_id", format!("{}/host", vm.zone_id)),
                        ],
                        limit: Some(1),
                        ..Default::default()
                    },
                )
                .await?
                .0;
                set_guest(
                    &r,
                    &t.obj_id,
                    json!({"external_id": vm.external_id,
                           "host_id": hosts.first().map(|h| s(h, "id")).unwrap_or_default(),
                           "status": status::STARTING}),
                )
                .await?;
                t.state.insert("external_id".into(), json!(vm.external_id));
                Ok(Step::Done)
            }
            _ => {
                polls(t)?;
                let ext = s(&guest, "external_id");
                let vm = match drv.vm(&ext).await {
                    Ok(v) => v,
                    Err(e) if transient(&e) => return Ok(Step::Retry(POLL)),
                    Err(e) => return Err(cloud_err(e)),
                };
                if vm.status != "running" {
                    return Ok(Step::Retry(POLL));
                }
                let auto_start = p["auto_start"].as_bool().unwrap_or(true);
                if !auto_start {
                    drv.stop_vm(&ext, false).await.map_err(cloud_err)?;
                }
                record_vm(&r, &guest, &vm).await?;
                if !auto_start {
                    set_guest(
                        &r,
                        &t.obj_id,
                        json!({"status": status::READY, "power_states": "off"}),
                    )
                    .await?;
                }
                Ok(Step::Done)
            }
        }
    }
    async fn undo_step(&self, t: &mut TaskCtx, step: &str) -> Result<(), TaskError> {
        // A failed create leaves no instance behind.
        if step == "create" || step == "wait" {
            let r = region(&self.0)?;
            let guest = guest_row(&r, &t.obj_id).await?;
            let ext = s(&guest, "external_id");
            if !ext.is_empty() {
                let drv = driver_for(&r, &guest).await?;
                match drv.delete_vm(&ext).await {
                    Ok(()) | Err(cp::CloudError::NotFound(_)) => {}
                    Err(e) => return Err(cloud_err(e)),
                }
                set_guest(&r, &t.obj_id, json!({"external_id": ""})).await?;
            }
        }
        Ok(())
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        crate::tasks::set_status(&r, &GUESTS, &t.obj_id, status::DEPLOY_FAIL, Some(reason)).await
    }
}

/// Start, stop, restart and syncstatus: one cloud call, then poll until
/// the instance reaches the state.
pub struct Power(pub Weak<Region>, pub &'static str);

impl Power {
    fn op(&self) -> &'static str {
        match self.1 {
            "CloudGuestStartTask" => "start",
            "CloudGuestStopTask" => "stop",
            "CloudGuestRestartTask" => "restart",
            _ => "syncstatus",
        }
    }
}

#[async_trait]
impl TaskDef for Power {
    fn name(&self) -> &'static str {
        self.1
    }
    fn steps(&self) -> &'static [&'static str] {
        &["request", "wait"]
    }
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let ext = s(&guest, "external_id");
        let drv = driver_for(&r, &guest).await?;
        let op = self.op();
        if step == "request" {
            let res = match op {
                "start" => drv.start_vm(&ext).await,
                "stop" => {
                    drv.stop_vm(&ext, t.params["is_force"].as_bool().unwrap_or(false))
                        .await
                }
                "restart" => match drv.vm(&ext).await {
                    // A stopped instance restarts by starting.
                    Ok(v) if v.status == "ready" => drv.start_vm(&ext).await,
                    Ok(_) => drv.reboot_vm(&ext).await,
                    Err(e) => Err(e),
                },
                _ => Ok(()),
            };
            match res {
                Ok(()) => {}
                Err(e) if transient(&e) && t.attempt < 5 => return Ok(Step::Retry(POLL)),
                Err(e) => return Err(cloud_err(e)),
            }
            if op != "syncstatus" {
                let st = match op {
                    "stop" => status::STOPPING,
                    _ => status::STARTING,
                };
                set_guest(&r, &t.obj_id, json!({"status": st})).await?;
            }
            return Ok(Step::Done);
        }
        polls(t)?;
        let vm = match drv.vm(&ext).await {
            Ok(v) => v,
            Err(e) if transient(&e) => return Ok(Step::Retry(POLL)),
            Err(e) => return Err(cloud_err(e)),
        };
        let want = match op {
            "stop" => Some("ready"),
            "start" | "restart" => Some("running"),
            _ => None,
        };
        if let Some(w) = want
            && vm.status != w
        {
            return Ok(Step::Retry(POLL));
        }
        record_vm(&r, &guest, &vm).await?;
        if op == "start" || op == "restart" {
            set_guest(
                &r,
                &t.obj_id,
                json!({"last_start_at": cloudpods_apis::time::now()}),
            )
            .await?;
        }
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        // Gone on the cloud while we acted: the next sync removes it.
        let st = if reason.contains("not found") {
            status::UNKNOWN
        } else {
            match self.op() {
                "stop" => status::STOP_FAIL,
                "start" | "restart" => status::START_FAIL,
                _ => status::UNKNOWN,
            }
        };
        crate::tasks::set_status(&r, &GUESTS, &t.obj_id, st, Some(reason)).await
    }
}

pub struct Delete(pub Weak<Region>);

#[async_trait]
impl TaskDef for Delete {
    cloudpods_taskman::task_meta!("CloudGuestDeleteTask", ["terminate", "wait", "cleanup"]);
    async fn run_step(&self, t: &mut TaskCtx, step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let ext = s(&guest, "external_id");
        match step {
            "terminate" => {
                set_guest(&r, &t.obj_id, json!({"status": status::DELETING})).await?;
                if ext.is_empty() {
                    return Ok(Step::Done);
                }
                let drv = driver_for(&r, &guest).await?;
                match drv.delete_vm(&ext).await {
                    // Already gone on the cloud: nothing left to do there.
                    Ok(()) | Err(cp::CloudError::NotFound(_)) => Ok(Step::Done),
                    Err(e) if transient(&e) && t.attempt < 5 => Ok(Step::Retry(POLL)),
                    Err(e) => Err(cloud_err(e)),
                }
            }
            "wait" => {
                if ext.is_empty() {
                    return Ok(Step::Done);
                }
                polls(t)?;
                let drv = driver_for(&r, &guest).await?;
                match drv.vm(&ext).await {
                    Err(cp::CloudError::NotFound(_)) => Ok(Step::Done),
                    Ok(_) => Ok(Step::Retry(POLL)),
                    Err(e) if transient(&e) => Ok(Step::Retry(POLL)),
                    Err(e) => Err(cloud_err(e)),
                }
            }
            _ => {
                // Joints, then the guest and the disks that went with it.
                let id = t.obj_id.clone();
                let disks = crate::store::rows_in(
                    &r.db,
                    &GUESTDISKS,
                    "guest_id",
                    std::slice::from_ref(&id),
                )
                .await?;
                let mut tx = r.db.begin().await?;
                for tbl in ["guestnetworks_tbl", "guestdisks_tbl", "guestsecgroups_tbl"] {
                    let mut q =
                        cloudpods_db::Sql::new(format!("DELETE FROM `{tbl}` WHERE `guest_id` = "));
                    q.bind(id.as_str());
                    q.query()?
                        .execute(&mut *tx)
                        .await
                        .map_err(cloudpods_db::DbError::from)?;
                }
                for d in &disks {
                    crud::delete(&mut *tx, &DISKS, &s(d, "disk_id")).await?;
                }
                let mut q = cloudpods_db::Sql::new(
                    "UPDATE `elasticips_tbl` SET `associate_type` = '', `associate_id` = '' WHERE `associate_id` = ",
                );
                q.bind(id.as_str());
                q.query()?
                    .execute(&mut *tx)
                    .await
                    .map_err(cloudpods_db::DbError::from)?;
                crud::delete(&mut *tx, &GUESTS, &id).await?;
                tx.commit().await.map_err(cloudpods_db::DbError::from)?;
                Ok(Step::Done)
            }
        }
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        crate::tasks::set_status(&r, &GUESTS, &t.obj_id, status::DELETE_FAIL, Some(reason)).await
    }
}

pub struct ChangeConfig(pub Weak<Region>);

#[async_trait]
impl TaskDef for ChangeConfig {
    cloudpods_taskman::task_meta!("CloudGuestChangeConfigTask", ["modify"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let guest = guest_row(&r, &t.obj_id).await?;
        let drv = driver_for(&r, &guest).await?;
        let ty = t.param_str("instance_type");
        match drv.change_config(&s(&guest, "external_id"), &ty).await {
            Ok(()) => {}
            Err(e) if transient(&e) && t.attempt < 5 => return Ok(Step::Retry(POLL)),
            Err(e) => return Err(cloud_err(e)),
        }
        set_guest(
            &r,
            &t.obj_id,
            json!({"instance_type": ty, "vcpu_count": t.params["vcpu_count"], "vmem_size": t.params["vmem_size"],
                   "status": status::READY}),
        )
        .await?;
        r.cloud
            .forget_vm(&s(&guest, "manager_id"), &s(&guest, "external_id"))
            .await;
        Ok(Step::Done)
    }
    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        crate::tasks::set_status(
            &r,
            &GUESTS,
            &t.obj_id,
            status::CHANGE_FLAVOR_FAIL,
            Some(reason),
        )
        .await
    }
}
