//! VPCs, subnets (networks), security groups and their rules, and EIPs on
//! a public cloud, created, deleted and associated through the ordinary
//! APIs (`POST /vpcs` with a public cloud region, `POST /networks` with a
//! cloud VPC and zone, `POST /secgroups` with a cloud VPC, `POST /eips`
//! with a public cloud region…). The row is written at once in a pending
//! status and a `CloudResourceTask` makes the cloud call; the models of the
//! region call in here (see `resources/infra.rs`, `resources/virt.rs`).

use cloudpods_taskman::Undone;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cloudpods_cloudprovider as cp;
use cloudpods_db::{ModelDesc, Row, crud};
use cloudpods_rest::params::{get_str, get_str_any};
use cloudpods_rest::{Ctx, HttpError, Object, Result};
use cloudpods_taskman::{Step, StepResult, TaskCtx, TaskDef, TaskError};
use serde_json::{Value, json};

use super::models::*;
use crate::Region;
use crate::models::*;
use crate::resources::servers::{find_visible, submit_task, task_on};
use crate::store::s;
use crate::tasks::region;

pub fn register(region: &Arc<Region>) {
    region
        .engine
        .register(Arc::new(ResourceTask(Arc::downgrade(region))));
}

fn is_cloud_region(cr: &Row) -> bool {
    let p = s(cr, "provider");
    !p.is_empty() && p != "OneCloud"
}

/// The enabled provider that syncs a cloud region.
pub(crate) async fn provider_of_region(region: &Arc<Region>, cr: &Row) -> Result<Row> {
    let joints = crate::store::rows_in(
        &region.db,
        &CLOUDPROVIDER_REGIONS,
        "cloudregion_id",
        &[s(cr, "id")],
    )
    .await?;
    for j in joints {
        if let Some(p) = crud::get(
            region.db.read(),
            &CLOUDPROVIDERS,
            &s(&j, "cloudprovider_id"),
        )
        .await?
            && crate::store::b(&p, "enabled")
        {
            return Ok(p);
        }
    }
    Err(HttpError::input(format!(
        "no enabled cloud account manages region {}",
        s(cr, "name")
    )))
}

/// `10.1.2.0/24` → (start, end, mask, gateway), AWS-style (first four and
/// the last address reserved).
fn cidr_range(cidr: &str) -> Result<(String, String, i64, String)> {
    let bad = || HttpError::input(format!("{cidr:?} is not an IPv4 CIDR of /16 to /28"));
    let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    if !(16..=28).contains(&len) {
        return Err(bad());
    }
    let base = crate::ipam::ip_to_u32(ip).ok_or_else(bad)?;
    let mask = u32::MAX << (32 - len);
    let net = base & mask;
    let f = crate::ipam::u32_to_ip;
    Ok((f(net + 4), f((net | !mask) - 1), len as i64, f(net + 1)))
}

/// If the new row belongs on a public cloud, complete it (manager, pending
/// status) and return true; false = a local resource.
pub async fn prepare_create(
    region: &Arc<Region>,
    ctx: &Ctx,
    desc: &ModelDesc,
    row: &mut Row,
    input: &Object,
) -> Result<bool> {
    match desc.keyword {
        "vpc" | "eip" => {
            let Some(r) = get_str_any(input, &["cloudregion", "cloudregion_id"]) else {
                return Ok(false);
            };
            let cr = find_visible(region, ctx, &CLOUDREGIONS, &r)
                .await
                .map_err(|_| HttpError::not_found(format!("cloudregion {r} not found")))?;
            if !is_cloud_region(&cr) {
                return Ok(false);
            }
            let prov = provider_of_region(region, &cr).await?;
            row.insert("manager_id".into(), json!(s(&prov, "id")));
            row.insert("cloudregion_id".into(), json!(s(&cr, "id")));
            if desc.keyword == "vpc" {
                let cidr = s(row, "cidr_block");
                if cidr.is_empty() {
                    return Err(HttpError::missing("cidr_block is required"));
                }
                cidr_range(&cidr)?;
                row.insert("status".into(), json!("pending"));
            } else {
                row.insert("status".into(), json!("allocate"));
                row.insert("mode".into(), json!("elastic_ip"));
                row.remove("network_id");
            }
            Ok(true)
        }
        "network" => {
            let Some(v) = get_str(input, "vpc") else {
                return Ok(false);
            };
            let vpc = find_visible(region, ctx, &VPCS, &v)
                .await
                .map_err(|_| HttpError::not_found(format!("vpc {v} not found")))?;
            if s(&vpc, "manager_id").is_empty() {
                return Ok(false);
            }
            let z = get_str(input, "zone")
                .ok_or_else(|| HttpError::missing("a subnet of a public cloud needs a zone"))?;
            let zone = find_visible(region, ctx, &ZONES, &z)
                .await
                .map_err(|_| HttpError::not_found(format!("zone {z} not found")))?;
            if s(&zone, "cloudregion_id") != s(&vpc, "cloudregion_id") {
                return Err(HttpError::input("the zone is not in the VPC's region"));
            }
            let cidr = get_str_any(input, &["guest_ip_prefix", "ip_prefix"]).ok_or_else(|| {
                HttpError::missing("guest_ip_prefix (the subnet's CIDR) is required")
            })?;
            let (start, end, mask, gw) = cidr_range(&cidr)?;
            // The wire of the VPC in that zone (made by sync, or here).
            let manager = s(&vpc, "manager_id");
            let ext = format!("{}/{}", s(&vpc, "external_id"), s(&zone, "external_id"));
            let wires = crud::list(
                &region.db,
                &WIRES,
                &cloudpods_db::ListSpec {
                    conds: vec![
                        crud::eq("manager_id", manager.as_str()),
                        crud::eq("external_id", ext.as_str()),
                    ],
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await?
            .0;
            let wire_id = match wires.first() {
                Some(w) => s(w, "id"),
                None => {
                    let mut w: Row = json!({"name": format!("{}-{}", s(&vpc, "external_id"), s(&zone, "external_id")),
                        "vpc_id": s(&vpc, "id"), "zone_id": s(&zone, "id"), "manager_id": manager,
                        "external_id": ext, "domain_id": s(&vpc, "domain_id"), "status": "available"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                    crud::prepare_insert(&WIRES, &mut w);
                    crud::insert(region.db.write(), &WIRES, &w).await?;
                    s(&w, "id")
                }
            };
            for (k, v) in [
                ("wire_id", json!(wire_id)),
                ("guest_ip_start", json!(start)),
                ("guest_ip_end", json!(end)),
                ("guest_ip_mask", json!(mask)),
                ("guest_gateway", json!(gw)),
                ("manager_id", json!(manager)),
                ("status", json!("pending")),
            ] {
                row.insert(k.into(), v);
            }
            Ok(true)
        }
        "secgroup" => {
            let Some(v) = get_str_any(input, &["vpc_id", "vpc"]) else {
                return Ok(false);
            };
            let vpc = find_visible(region, ctx, &VPCS, &v)
                .await
                .map_err(|_| HttpError::not_found(format!("vpc {v} not found")))?;
            if s(&vpc, "manager_id").is_empty() {
                return Ok(false);
            }
            row.insert("vpc_id".into(), json!(s(&vpc, "id")));
            row.insert("cloudregion_id".into(), json!(s(&vpc, "cloudregion_id")));
            row.insert("manager_id".into(), json!(s(&vpc, "manager_id")));
            row.insert("status".into(), json!("creating"));
            if input.get("rules").is_some_and(|r| !r.is_null()) {
                return Err(HttpError::not_supported(
                    "add the rules of a public-cloud security group after creating it",
                ));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn managed(row: &Row) -> bool {
    !s(row, "manager_id").is_empty()
}

async fn submit(
    region: &Arc<Region>,
    ctx: &Ctx,
    obj: &Row,
    desc: &ModelDesc,
    params: Value,
) -> Result<()> {
    let t = task_on(ctx, "CloudResourceTask", desc.keyword, obj, params);
    submit_task(region, t).await?;
    Ok(())
}

/// Insert prepared cloud rows and start their tasks; `None` = local rows
/// (the caller inserts them).
pub async fn create(
    region: &Arc<Region>,
    ctx: &Ctx,
    desc: &'static ModelDesc,
    rows: &[Row],
) -> Result<Option<Vec<Row>>> {
    if !rows.first().is_some_and(managed) {
        return Ok(None);
    }
    for r in rows {
        crud::insert(region.db.write(), desc, r).await?;
        submit(
            region,
            ctx,
            r,
            desc,
            json!({"op": "create", "kind": desc.keyword}),
        )
        .await?;
    }
    Ok(Some(rows.to_vec()))
}

/// Start deleting a cloud row; `None` = a local row.
pub async fn delete(
    region: &Arc<Region>,
    ctx: &Ctx,
    desc: &'static ModelDesc,
    obj: &Row,
) -> Result<Option<Row>> {
    if !managed(obj) {
        return Ok(None);
    }
    let mut ch = Row::new();
    ch.insert("status".into(), json!("deleting"));
    crud::update(region.db.write(), desc, &s(obj, "id"), &ch).await?;
    submit(
        region,
        ctx,
        obj,
        desc,
        json!({"op": "delete", "kind": desc.keyword}),
    )
    .await?;
    Ok(Some(
        crud::must_get(region.db.read(), desc, &s(obj, "id")).await?,
    ))
}

/// EIP `associate` / `dissociate` on a cloud EIP; `None` = not ours.
pub async fn perform_eip(call: crate::tasks::Call<'_>) -> Result<Option<Value>> {
    let (region, ctx, obj, action, input) =
        (call.region, call.ctx, call.obj, call.action, call.input);
    if !managed(obj) || !matches!(action, "associate" | "dissociate") {
        return Ok(None);
    }
    let params = if action == "associate" {
        let id = get_str_any(input, &["instance_id", "instance", "server", "server_id"])
            .ok_or_else(|| HttpError::missing("instance_id is required"))?;
        let g = find_visible(region, ctx, &GUESTS, &id)
            .await
            .map_err(|_| HttpError::not_found(format!("server {id} not found")))?;
        if s(&g, "manager_id") != s(obj, "manager_id") || s(&g, "external_id").is_empty() {
            return Err(HttpError::input(
                "the server is not on the same cloud provider as the EIP",
            ));
        }
        json!({"op": "associate", "kind": "eip", "guest_id": s(&g, "id")})
    } else {
        json!({"op": "dissociate", "kind": "eip"})
    };
    if !crate::store::cas_status(&region.db, &EIPS, &s(obj, "id"), &["ready"], "associating")
        .await?
    {
        return Err(HttpError::invalid_status(format!(
            "Cannot do {action} eip in status {}",
            s(obj, "status")
        )));
    }
    submit(region, ctx, obj, &EIPS, params).await?;
    Ok(Some(Value::Object(
        crud::must_get(region.db.read(), &EIPS, &s(obj, "id")).await?,
    )))
}

/// A rule of a cloud security group was added or removed: bring the
/// cloud's rules in line with ours.
pub async fn rules_changed(region: &Arc<Region>, ctx: &Ctx, secgroup_id: &str) -> Result<()> {
    let Some(g) = crud::get(region.db.read(), &SECGROUPS, secgroup_id).await? else {
        return Ok(());
    };
    if !managed(&g) {
        return Ok(());
    }
    submit(
        region,
        ctx,
        &g,
        &SECGROUPS,
        json!({"op": "sync_rules", "kind": "secgroup"}),
    )
    .await
}

// ---------------------------------------------------------------------------

fn desc_of(kind: &str) -> Option<&'static ModelDesc> {
    match kind {
        "vpc" => Some(&VPCS),
        "network" => Some(&NETWORKS),
        "secgroup" => Some(&SECGROUPS),
        "eip" => Some(&EIPS),
        _ => None,
    }
}

pub struct ResourceTask(pub Weak<Region>);

async fn set(r: &Region, desc: &ModelDesc, id: &str, v: Value) -> Result<(), TaskError> {
    let ch: Row = v.as_object().cloned().unwrap_or_default();
    crud::update(r.db.write(), desc, id, &ch).await?;
    Ok(())
}

/// The driver of the row's region.
async fn driver(
    r: &Region,
    desc: &ModelDesc,
    row: &Row,
) -> Result<Arc<dyn cp::RegionDriver>, TaskError> {
    let crid = match desc.keyword {
        "network" => {
            let w = crud::must_get(r.db.read(), &WIRES, &s(row, "wire_id")).await?;
            let v = crud::must_get(r.db.read(), &VPCS, &s(&w, "vpc_id")).await?;
            s(&v, "cloudregion_id")
        }
        _ => s(row, "cloudregion_id"),
    };
    super::region_driver(r, &s(row, "manager_id"), &crid)
        .await
        .map_err(|e| TaskError(e.details))
}

fn ok_gone(res: cp::Result<()>) -> Result<(), TaskError> {
    match res {
        Ok(()) | Err(cp::CloudError::NotFound(_)) => Ok(()),
        Err(e) => Err(TaskError(e.to_string())),
    }
}

fn ce(e: cp::CloudError) -> TaskError {
    TaskError(e.to_string())
}

#[async_trait]
impl TaskDef for ResourceTask {
    cloudpods_taskman::task_meta!("CloudResourceTask", ["call"]);
    async fn run_step(&self, t: &mut TaskCtx, _step: &str) -> StepResult {
        let r = region(&self.0)?;
        let kind = t.param_str("kind");
        let op = t.param_str("op");
        let desc = desc_of(&kind).ok_or_else(|| TaskError(format!("unknown kind {kind}")))?;
        let spec = cloudpods_db::ListSpec {
            conds: vec![crud::eq("id", t.obj_id.as_str())],
            include_deleted: true,
            limit: Some(1),
            ..Default::default()
        };
        let row = crud::list(&r.db, desc, &spec)
            .await?
            .0
            .into_iter()
            .next()
            .ok_or_else(|| TaskError(format!("{kind} {} not found", t.obj_id)))?;
        let drv = driver(&r, desc, &row).await?;
        let ext = s(&row, "external_id");
        let id = t.obj_id.clone();
        match (kind.as_str(), op.as_str()) {
            (_, "create") if !ext.is_empty() => {}
            ("vpc", "create") => {
                let v = drv
                    .create_vpc(&s(&row, "name"), &s(&row, "cidr_block"))
                    .await
                    .map_err(ce)?;
                set(
                    &r,
                    desc,
                    &id,
                    json!({"external_id": v.external_id, "status": "available"}),
                )
                .await?;
            }
            ("network", "create") => {
                let w = crud::must_get(r.db.read(), &WIRES, &s(&row, "wire_id")).await?;
                let vpc = crud::must_get(r.db.read(), &VPCS, &s(&w, "vpc_id")).await?;
                let zone = crud::must_get(r.db.read(), &ZONES, &s(&w, "zone_id")).await?;
                let mask = crate::store::i(&row, "guest_ip_mask");
                let gw = crate::ipam::ip_to_u32(&s(&row, "guest_gateway")).unwrap_or(1);
                let cidr = format!("{}/{mask}", crate::ipam::u32_to_ip(gw - 1));
                let n = drv
                    .create_network(&cp::CreateNetwork {
                        name: s(&row, "name"),
                        vpc_id: s(&vpc, "external_id"),
                        zone_id: s(&zone, "external_id"),
                        cidr,
                    })
                    .await
                    .map_err(ce)?;
                set(
                    &r,
                    desc,
                    &id,
                    json!({"external_id": n.external_id, "status": "available"}),
                )
                .await?;
            }
            ("secgroup", "create") => {
                let vpc = crud::must_get(r.db.read(), &VPCS, &s(&row, "vpc_id")).await?;
                let g = drv
                    .create_secgroup(
                        &s(&vpc, "external_id"),
                        &s(&row, "name"),
                        &s(&row, "description"),
                    )
                    .await
                    .map_err(ce)?;
                set(
                    &r,
                    desc,
                    &id,
                    json!({"external_id": g.external_id, "status": "ready"}),
                )
                .await?;
                // The cloud's default rules (AWS: all egress) become ours.
                for rule in g.rules {
                    let mut rr: Row = json!({"secgroup_id": id, "direction": rule.direction, "protocol": rule.protocol,
                        "ports": rule.ports, "cidr": rule.cidr, "action": rule.action, "priority": rule.priority,
                        "tenant_id": s(&row, "tenant_id"), "domain_id": s(&row, "domain_id")})
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                    crud::prepare_insert(&SECGROUPRULES, &mut rr);
                    crud::insert(r.db.write(), &SECGROUPRULES, &rr).await?;
                }
            }
            ("eip", "create") => {
                let e = drv.allocate_eip(&s(&row, "name")).await.map_err(ce)?;
                set(
                    &r,
                    desc,
                    &id,
                    json!({"external_id": e.external_id, "ip_addr": e.ip, "status": "ready"}),
                )
                .await?;
            }
            ("eip", "associate") => {
                let g = crud::must_get(r.db.read(), &GUESTS, &t.param_str("guest_id")).await?;
                drv.associate_eip(&ext, &s(&g, "external_id"))
                    .await
                    .map_err(ce)?;
                set(&r, desc, &id, json!({"associate_type": "server", "associate_id": s(&g, "id"), "status": "ready"}))
                    .await?;
            }
            ("eip", "dissociate") => {
                ok_gone(drv.dissociate_eip(&ext).await)?;
                set(
                    &r,
                    desc,
                    &id,
                    json!({"associate_type": "", "associate_id": "", "status": "ready"}),
                )
                .await?;
            }
            ("secgroup", "sync_rules") => {
                let cloud = cloud_rules(&*drv, &ext).await?;
                let ours: Vec<cp::SecRule> = crate::store::rows_in(
                    &r.db,
                    &SECGROUPRULES,
                    "secgroup_id",
                    std::slice::from_ref(&id),
                )
                .await?
                .iter()
                .map(|x| cp::SecRule {
                    direction: s(x, "direction"),
                    protocol: if s(x, "protocol").is_empty() {
                        "any".into()
                    } else {
                        s(x, "protocol")
                    },
                    ports: s(x, "ports"),
                    cidr: if s(x, "cidr").is_empty() {
                        "0.0.0.0/0".into()
                    } else {
                        s(x, "cidr")
                    },
                    action: "allow".into(),
                    priority: 1,
                })
                .collect();
                let key = |x: &cp::SecRule| {
                    (
                        x.direction.clone(),
                        x.protocol.clone(),
                        x.ports.clone(),
                        x.cidr.clone(),
                    )
                };
                let add: Vec<cp::SecRule> = ours
                    .iter()
                    .filter(|o| !cloud.iter().any(|c| key(c) == key(o)))
                    .cloned()
                    .collect();
                let remove: Vec<cp::SecRule> = cloud
                    .iter()
                    .filter(|c| !ours.iter().any(|o| key(c) == key(o)))
                    .cloned()
                    .collect();
                if !remove.is_empty() {
                    drv.remove_rules(&ext, &remove).await.map_err(ce)?;
                }
                if !add.is_empty() {
                    drv.add_rules(&ext, &add).await.map_err(ce)?;
                }
            }
            (_, "delete") => {
                if !ext.is_empty() {
                    match delete_on_cloud(&*drv, &kind, &ext).await {
                        Ok(()) | Err(cp::CloudError::NotFound(_)) => {}
                        // Still in use on the cloud (dependencies): wait.
                        Err(e @ cp::CloudError::Invalid { .. }) if t.attempt < 3 => {
                            tracing::debug!(error = %e, "cloud delete refused; retrying");
                            return Ok(Step::Retry(Duration::from_secs(2)));
                        }
                        Err(e) => return Err(ce(e)),
                    }
                }
                if kind == "secgroup" {
                    delete_rules(&r, &id).await?;
                }
                crud::delete(r.db.write(), desc, &id).await?;
            }
            (k, o) => return Err(TaskError(format!("unknown operation {o} on {k}"))),
        }
        Ok(Step::Done)
    }
    /// A failed create leaves nothing on the cloud.
    async fn undo_step(&self, t: &mut TaskCtx, _step: &str) -> Result<(), TaskError> {
        if t.param_str("op") != "create" {
            return Ok(());
        }
        let r = region(&self.0)?;
        let kind = t.param_str("kind");
        let Some(desc) = desc_of(&kind) else {
            return Ok(());
        };
        let Some(row) = crud::get(r.db.read(), desc, &t.obj_id).await? else {
            return Ok(());
        };
        let ext = s(&row, "external_id");
        if ext.is_empty() {
            return Ok(());
        }
        // Best effort, once: an undo that cannot finish would be retried
        // for ever. What stays on the cloud keeps its `external_id`, so
        // the next sync shows it and it can be deleted.
        let deleted = match driver(&r, desc, &row).await {
            Ok(drv) => match delete_on_cloud(&*drv, &kind, &ext).await {
                Ok(()) | Err(cp::CloudError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.0),
        };
        if let Err(e) = deleted {
            tracing::warn!(%kind, external_id = %ext, error = %e,
                "a failed create left its resource on the cloud");
            return Ok(());
        }
        if kind == "secgroup" {
            delete_rules(&r, &t.obj_id).await?;
        }
        set(&r, desc, &t.obj_id, json!({"external_id": ""})).await?;
        Ok(())
    }

    async fn on_failure(&self, t: &mut TaskCtx, _: &str, reason: &str) -> Undone {
        let r = region(&self.0)?;
        let kind = t.param_str("kind");
        let Some(desc) = desc_of(&kind) else {
            return Ok(());
        };
        let st = match t.param_str("op").as_str() {
            "create" => "create_failed",
            "delete" => "delete_failed",
            _ => "ready",
        };
        crate::tasks::set_status(&r, desc, &t.obj_id, st, Some(reason)).await
    }
}

/// Remove a security group's rules (the group is gone or was never made).
async fn delete_rules(r: &Region, secgroup_id: &str) -> Result<(), TaskError> {
    crate::store::purge_where(&r.db, &SECGROUPRULES, "secgroup_id", secgroup_id).await?;
    Ok(())
}

/// Delete a resource on the cloud.
async fn delete_on_cloud(
    drv: &dyn cp::RegionDriver,
    kind: &str,
    ext: &str,
) -> std::result::Result<(), cp::CloudError> {
    match kind {
        "vpc" => drv.delete_vpc(ext).await,
        "network" => drv.delete_network(ext).await,
        "secgroup" => drv.delete_secgroup(ext).await,
        "eip" => {
            match drv.dissociate_eip(ext).await {
                Ok(()) | Err(cp::CloudError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            drv.release_eip(ext).await
        }
        _ => Ok(()),
    }
}

async fn cloud_rules(drv: &dyn cp::RegionDriver, ext: &str) -> Result<Vec<cp::SecRule>, TaskError> {
    let groups = drv.secgroups().await.map_err(ce)?;
    groups
        .into_iter()
        .find(|g| g.external_id == ext)
        .map(|g| g.rules)
        .ok_or_else(|| TaskError(format!("security group {ext} not found on the cloud")))
}
