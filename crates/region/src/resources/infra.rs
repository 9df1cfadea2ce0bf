//! Infrastructure resources: cloud regions, zones, VPCs, wires, networks,
//! reserved IPs, hosts, storages, schedtags.

use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_db::{Db, ModelDesc, Row, crud};
use cloudpods_rest::params::get_str;
use cloudpods_rest::{Ctx, HttpError, Model, Object, Result, Service};
use serde_json::{Value, json};

use super::Basic;
use crate::Region;
use crate::models::*;
use crate::store::s;

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let basic = |desc: &'static ModelDesc,
                 contexts: &'static [(&'static str, &'static str)]|
     -> Arc<dyn Model> {
        Arc::new(Basic {
            desc,
            region: region.clone(),
            contexts,
        })
    };
    svc.model(basic(&CLOUDREGIONS, &[]))
        .model(Arc::new(Infra::new(
            &ZONES,
            region,
            &[("cloudregions", "cloudregion_id")],
        )))
        .model(Arc::new(Infra::new(
            &VPCS,
            region,
            &[("cloudregions", "cloudregion_id")],
        )))
        .model(Arc::new(Infra::new(
            &WIRES,
            region,
            &[("zones", "zone_id"), ("vpcs", "vpc_id")],
        )))
        .model(Arc::new(Infra::new(
            &NETWORKS,
            region,
            &[("wires", "wire_id")],
        )))
        .model(Arc::new(Infra::new(
            &RESERVEDIPS,
            region,
            &[("networks", "network_id")],
        )))
        .model(Arc::new(Infra::new(
            &HOSTS,
            region,
            &[("zones", "zone_id")],
        )))
        .model(Arc::new(Infra::new(
            &STORAGES,
            region,
            &[("zones", "zone_id")],
        )))
        .model(basic(&SCHEDTAGS, &[]))
}

/// Infrastructure resource with reference resolution and validation.
pub struct Infra {
    desc: &'static ModelDesc,
    region: Arc<Region>,
    contexts: &'static [(&'static str, &'static str)],
}

impl Infra {
    fn new(
        desc: &'static ModelDesc,
        region: &Arc<Region>,
        contexts: &'static [(&'static str, &'static str)],
    ) -> Infra {
        Infra {
            desc,
            region: region.clone(),
            contexts,
        }
    }

    /// Resolve `key` (id or name) in `desc` into `column`.
    async fn resolve(
        &self,
        ctx: &Ctx,
        row: &mut Row,
        input: &Object,
        keys: &[&str],
        desc: &'static ModelDesc,
        column: &str,
    ) -> Result<Option<Row>> {
        let ident = keys.iter().find_map(|k| get_str(input, k)).or_else(|| {
            row.get(column)
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|v| !v.is_empty())
        });
        let Some(ident) = ident else {
            return Ok(None);
        };
        let target = Basic {
            desc,
            region: self.region.clone(),
            contexts: &[],
        };
        let obj = cloudpods_rest::generic::lookup_get(&target, ctx, &ident, None)
            .await
            .map_err(|_| HttpError::not_found(format!("{} {ident} not found", desc.keyword)))?;
        row.insert(column.into(), json!(s(&obj, "id")));
        Ok(Some(obj))
    }
}

#[async_trait]
impl Model for Infra {
    fn desc(&self) -> &ModelDesc {
        self.desc
    }
    fn db(&self) -> &Db {
        &self.region.db
    }
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        self.contexts
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        match self.desc.keyword {
            "zone" | "vpc" => {
                let region = self
                    .resolve(
                        ctx,
                        row,
                        input,
                        &["cloudregion", "cloudregion_id"],
                        &CLOUDREGIONS,
                        "cloudregion_id",
                    )
                    .await?;
                if region.is_none() {
                    row.insert("cloudregion_id".into(), json!(crate::DEFAULT_REGION_ID));
                }
            }
            "wire" => {
                if self
                    .resolve(ctx, row, input, &["zone", "zone_id"], &ZONES, "zone_id")
                    .await?
                    .is_none()
                {
                    return Err(HttpError::missing("zone is required"));
                }
                if self
                    .resolve(ctx, row, input, &["vpc", "vpc_id"], &VPCS, "vpc_id")
                    .await?
                    .is_none()
                {
                    row.insert("vpc_id".into(), json!(crate::DEFAULT_VPC_ID));
                }
            }
            "network" => {
                if self
                    .resolve(ctx, row, input, &["wire", "wire_id"], &WIRES, "wire_id")
                    .await?
                    .is_none()
                {
                    return Err(HttpError::missing("wire is required"));
                }
                let mask = row
                    .get("guest_ip_mask")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                crate::ipam::validate_range(
                    &s(row, "guest_ip_start"),
                    &s(row, "guest_ip_end"),
                    mask,
                    row.get("guest_gateway").and_then(Value::as_str),
                )
                .map_err(HttpError::input)?;
                crate::ipam::AllocPolicy::parse(&s(row, "alloc_policy"))
                    .map_err(HttpError::input)?;
            }
            "reservedip" => {
                let net = self
                    .resolve(
                        ctx,
                        row,
                        input,
                        &["network", "network_id"],
                        &NETWORKS,
                        "network_id",
                    )
                    .await?
                    .ok_or_else(|| HttpError::missing("network is required"))?;
                let range = crate::ipam::NetRange::from_row(&net).map_err(HttpError::input)?;
                let ip = crate::ipam::ip_to_u32(&s(row, "ip_addr")).ok_or_else(|| {
                    HttpError::input(format!("{:?} is not an IPv4 address", s(row, "ip_addr")))
                })?;
                if !range.contains(ip) {
                    return Err(HttpError::input(format!(
                        "{} is outside network {}",
                        s(row, "ip_addr"),
                        range.name
                    )));
                }
                let used =
                    crate::ipam::used_addrs(&self.region.db, &range.id, std::time::Duration::ZERO)
                        .await?;
                if used.contains(&ip) {
                    return Err(HttpError::conflict(format!(
                        "{} is already in use",
                        s(row, "ip_addr")
                    )));
                }
            }
            "host" | "storage" => {
                let zone = self
                    .resolve(ctx, row, input, &["zone", "zone_id"], &ZONES, "zone_id")
                    .await?;
                if zone.is_none() {
                    return Err(HttpError::missing("zone is required"));
                }
            }
            _ => {}
        }
        // Infrastructure is shared with every project by default.
        row.entry("is_public").or_insert(json!(true));
        row.entry("public_scope").or_insert(json!("system"));
        Ok(())
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        match (self.desc.keyword, action) {
            // Agent heartbeat.
            ("host", "ping") => {
                let mut ch = Row::new();
                ch.insert("last_ping_at".into(), json!(cloudpods_apis::time::now()));
                ch.insert("host_status".into(), json!("online"));
                if s(&obj, "status") != "running" {
                    ch.insert("status".into(), json!("running"));
                }
                crud::update(self.region.db.write(), &HOSTS, &s(&obj, "id"), &ch).await?;
                Ok(json!({"name": s(&obj, "name"), "host_status": "online"}))
            }
            ("host", "offline") => {
                let mut ch = Row::new();
                ch.insert("host_status".into(), json!("offline"));
                crud::update(self.region.db.write(), &HOSTS, &s(&obj, "id"), &ch).await?;
                Ok(Value::Object(
                    crud::must_get(self.region.db.read(), &HOSTS, &s(&obj, "id")).await?,
                ))
            }
            _ => cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await,
        }
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        let id = s(obj, "id");
        let in_use: &[(&str, &str, &str)] = match self.desc.keyword {
            "zone" => &[
                ("hosts_tbl", "zone_id", "hosts"),
                ("wires_tbl", "zone_id", "wires"),
            ],
            "wire" => &[("networks_tbl", "wire_id", "networks")],
            "network" => &[("guestnetworks_tbl", "network_id", "guest NICs")],
            "host" => &[("guests_tbl", "host_id", "servers")],
            "storage" => &[("disks_tbl", "storage_id", "disks")],
            _ => &[],
        };
        for (table, col, what) in in_use {
            let soft = !table.contains("guestnetworks");
            let mut q =
                cloudpods_db::Sql::new(format!("SELECT COUNT(*) FROM `{table}` WHERE `{col}` = "));
            q.bind(id.as_str());
            if soft {
                q.push(" AND `deleted` = 0");
            }
            if crud::fetch_i64(self.region.db.read(), &q).await? > 0 {
                return Err(HttpError::not_empty(format!(
                    "{} {} still has {what}",
                    self.desc.keyword,
                    s(obj, "name")
                )));
            }
        }
        Ok(())
    }
}
