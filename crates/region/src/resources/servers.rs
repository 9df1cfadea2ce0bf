//! Servers (guests): create input, details, actions and delete.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_apis::compute::{DiskConfig, NetworkConfig, collect_configs, status};
use cloudpods_apis::lenient::size_mb;
use cloudpods_db::{ModelDesc, Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::params::{flag, get_bool, get_i64, get_str, get_str_any, get_strs};
use cloudpods_rest::{Ctx, HttpError, Model, Object, Result};
use cloudpods_taskman::{NewTask, Owner};
use serde_json::{Value, json};

use super::Basic;
use crate::Region;
use crate::models::*;
use crate::store::{self, i, s};

pub struct Servers {
    pub region: Arc<Region>,
}

/// Largest disk (MB): 16 TiB.
const MAX_DISK_MB: i64 = 16 * 1024 * 1024;

/// A new task on `obj` (a `keyword`), owned as the object is, carrying the
/// request id.
pub(crate) fn task_on(ctx: &Ctx, name: &str, keyword: &str, obj: &Row, params: Value) -> NewTask {
    let mut t = NewTask::new(
        name,
        keyword,
        &s(obj, "id"),
        &s(obj, "name"),
        params,
        task_owner(ctx, obj),
    );
    t.request_id = ctx.request_id.clone();
    t
}

/// [`task_on`] a server.
pub(crate) fn server_task(ctx: &Ctx, obj: &Row, name: &str, params: Value) -> NewTask {
    task_on(ctx, name, "server", obj, params)
}

/// Submit a task in a transaction of its own.
pub(crate) async fn submit_task(region: &Region, t: NewTask) -> Result<String> {
    region
        .engine
        .submit(t)
        .await
        .map_err(|e| HttpError::internal(e.0))
}

/// The owner recorded on tasks started by `ctx` for `obj`.
pub fn task_owner(ctx: &Ctx, obj: &Row) -> Owner {
    Owner {
        tenant_id: s(obj, "tenant_id"),
        domain_id: s(obj, "domain_id"),
        user_id: ctx.identity.user_id.clone(),
        user: ctx.identity.user.clone(),
        cred: json!({"user_id": ctx.identity.user_id, "user": ctx.identity.user,
                     "project_id": ctx.identity.project_id, "domain_id": ctx.identity.domain_id}),
    }
}

/// Look up a related object visible to the caller, by id or name.
pub async fn find_visible(
    region: &Arc<Region>,
    ctx: &Ctx,
    desc: &'static ModelDesc,
    ident: &str,
) -> Result<Row> {
    let m = Basic {
        desc,
        region: region.clone(),
        contexts: &[],
    };
    cloudpods_rest::generic::lookup_get(&m, ctx, ident, None).await
}

/// A memory size in MB from a number or a size string (`2048`, `"2g"`).
pub(crate) fn mem_mb(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| size_mb(s)),
        _ => None,
    }
}

/// A login password the guest customisation will accept.
pub(crate) fn check_password(pw: &str) -> Result<()> {
    if pw.chars().count() < 6 || pw.len() > 128 {
        return Err(HttpError::input("password must have 6 to 128 characters"));
    }
    if pw.chars().any(char::is_control) {
        return Err(HttpError::input(
            "password must not contain control characters",
        ));
    }
    Ok(())
}

/// A host name derived from the server name (RFC 1123 label).
fn hostname_of(name: &str) -> String {
    let mut h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    h = h.trim_matches('-').to_string();
    if h.is_empty() {
        h = "server".into();
    }
    h.chars().take(60).collect()
}

impl Servers {
    /// Parse and check the create input; returns the normalized create
    /// parameters stored with each guest.
    async fn parse_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<Value> {
        let region = &self.region;
        let scope = ctx
            .max_scope("servers", "create", None)
            .unwrap_or(Scope::Project);

        // Sizing, possibly from a SKU.
        let mut vcpu = get_i64(input, "vcpu_count")?;
        let mut vmem = match input.get("vmem_size") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(mem_mb(v).ok_or_else(|| HttpError::input(format!("invalid vmem_size {v}")))?)
            }
        };
        if let Some(sku) = get_str_any(input, &["sku", "instance_type"]) {
            let sku_row = find_visible(region, ctx, &SERVERSKUS, &sku)
                .await
                .map_err(|_| HttpError::not_found(format!("server sku {sku} not found")))?;
            vcpu = vcpu.or(Some(i(&sku_row, "cpu_core_count")));
            vmem = vmem.or(Some(i(&sku_row, "memory_size_mb")));
            row.insert("instance_type".into(), json!(s(&sku_row, "name")));
        }
        let vcpu = vcpu.unwrap_or(1);
        let vmem = vmem.unwrap_or(1024);
        if !(1..=256).contains(&vcpu) {
            return Err(HttpError::input(format!(
                "vcpu_count must be between 1 and 256, got {vcpu}"
            )));
        }
        if !(64..=4 * 1024 * 1024).contains(&vmem) {
            return Err(HttpError::input(format!(
                "vmem_size must be between 64 MB and 4 TB, got {vmem} MB"
            )));
        }
        row.insert("vcpu_count".into(), json!(vcpu));
        row.insert("vmem_size".into(), json!(vmem));
        let hypervisor = get_str(input, "hypervisor").unwrap_or_else(|| "kvm".into());
        if hypervisor != "kvm" {
            return Err(HttpError::input(format!(
                "hypervisor {hypervisor:?} is not supported here (kvm)"
            )));
        }
        row.insert("hypervisor".into(), json!(hypervisor));
        // What reaches QEMU's command line or the guest's seed.
        crate::guestspec::check_create(row, input, &hypervisor)?;
        if let Some(os) = get_str(input, "os_type") {
            row.insert("os_type".into(), json!(os));
        }

        // Disks and NICs, structured or legacy.
        let (mut disks, nets) = collect_configs(input).map_err(HttpError::input)?;
        let image = get_str_any(input, &["image_id", "guest_image_id"]);
        if disks.is_empty() {
            match image {
                Some(img) => disks.push(DiskConfig {
                    image_id: img,
                    ..Default::default()
                }),
                None => {
                    return Err(HttpError::missing(
                        "at least one disk is required (disks or disk.0)",
                    ));
                }
            }
        }
        if disks.len() > 16 {
            return Err(HttpError::input("at most 16 disks"));
        }
        let mut disk_params = Vec::new();
        let mut total_storage = 0i64;
        for (idx, d) in disks.iter().enumerate() {
            let size = match d.size {
                Some(sz) => sz,
                None if !d.image_id.is_empty() => 10 * 1024,
                None => return Err(HttpError::missing(format!("disk {idx}: size is required"))),
            };
            if size <= 0 || size > MAX_DISK_MB {
                return Err(HttpError::input(format!(
                    "disk {idx}: size must be between 1 MB and 16 TB, got {size} MB"
                )));
            }
            if !d.disk_id.is_empty() {
                return Err(HttpError::not_supported(
                    "attaching existing disks at create is not supported; attach after create",
                ));
            }
            if !d.backend.is_empty() && !["local"].contains(&d.backend.as_str()) {
                return Err(HttpError::input(format!(
                    "disk {idx}: storage type {:?} is not available",
                    d.backend
                )));
            }
            total_storage += size;
            disk_params.push(json!({
                "index": idx,
                "size": size,
                "image_id": d.image_id,
                "disk_type": if idx == 0 { "sys" } else { "data" },
                "backend": d.backend,
                "medium": d.medium,
                "storage_id": d.storage_id,
                "driver": if d.driver.is_empty() { "virtio" } else { d.driver.as_str() },
                "cache": d.cache,
                "fs": d.fs,
                "mountpoint": d.mountpoint,
                "format": if d.format.is_empty() { "qcow2" } else { d.format.as_str() },
            }));
        }
        if nets.len() > 8 {
            return Err(HttpError::input("at most 8 NICs"));
        }
        let mut net_params = Vec::new();
        for (idx, n) in nets.iter().enumerate() {
            net_params.push(self.check_net(ctx, idx, n).await?);
        }

        // Deploy parameters.
        let mut keypair_id = String::new();
        if let Some(k) = get_str_any(input, &["keypair", "keypair_id"]) {
            let kp = find_visible(region, ctx, &KEYPAIRS, &k)
                .await
                .map_err(|_| HttpError::not_found(format!("keypair {k} not found")))?;
            keypair_id = s(&kp, "id");
            row.insert("keypair_id".into(), json!(keypair_id));
        }
        let password = get_str(input, "password");
        if let Some(pw) = &password {
            check_password(pw)?;
        }
        let user_data = get_str(input, "user_data");
        if user_data.as_ref().is_some_and(|u| u.len() > 64 * 1024) {
            return Err(HttpError::input("user_data must be at most 64 KiB"));
        }
        let mut secgroup_ids = Vec::new();
        for sg in get_strs(input, "secgroups")
            .into_iter()
            .chain(get_str(input, "secgroup"))
        {
            let r = find_visible(region, ctx, &SECGROUPS, &sg)
                .await
                .map_err(|_| HttpError::not_found(format!("secgroup {sg} not found")))?;
            secgroup_ids.push(s(&r, "id"));
        }
        if let Some(first) = secgroup_ids.first() {
            row.insert("secgrp_id".into(), json!(first));
        }

        // Placement preferences.
        let mut prefer = serde_json::Map::new();
        if let Some(h) = get_str_any(input, &["prefer_host", "prefer_host_id"]) {
            if scope != Scope::System {
                return Err(HttpError::forbidden(
                    "only system admins may choose the host",
                ));
            }
            let host = find_visible(region, ctx, &HOSTS, &h)
                .await
                .map_err(|_| HttpError::not_found(format!("host {h} not found")))?;
            prefer.insert("prefer_host".into(), json!(s(&host, "id")));
        }
        if let Some(z) = get_str_any(input, &["prefer_zone", "prefer_zone_id"]) {
            let zone = find_visible(region, ctx, &ZONES, &z)
                .await
                .map_err(|_| HttpError::not_found(format!("zone {z} not found")))?;
            prefer.insert("prefer_zone".into(), json!(s(&zone, "id")));
        }
        if let Some(w) = get_str_any(input, &["prefer_wire", "prefer_wire_id"]) {
            let wire = find_visible(region, ctx, &WIRES, &w)
                .await
                .map_err(|_| HttpError::not_found(format!("wire {w} not found")))?;
            prefer.insert("prefer_wire".into(), json!(s(&wire, "id")));
        }
        let hostname = get_str(input, "hostname")
            .unwrap_or_else(|| hostname_of(&s(row, "name").replace('#', "")));
        row.insert("hostname".into(), json!(hostname));
        row.insert("pending_storage".into(), json!(total_storage));
        row.insert("pending_ports".into(), json!(net_params.len()));

        Ok(json!({
            "disks": disk_params,
            "nets": net_params,
            "password": password,
            "reset_password": get_bool(input, "reset_password")?.unwrap_or(password.is_none() && keypair_id.is_empty()),
            "keypair_id": keypair_id,
            "user_data": user_data,
            "auto_start": flag(input, "auto_start")?,
            "secgroup_ids": secgroup_ids,
            "prefer": prefer,
            "storage": total_storage,
        }))
    }

    /// Resolve one NIC request: network visible to the caller, address in
    /// its range, valid MAC.
    async fn check_net(&self, ctx: &Ctx, idx: usize, n: &NetworkConfig) -> Result<Value> {
        let mut net_id = String::new();
        if !n.network.is_empty() {
            let net = find_visible(&self.region, ctx, &NETWORKS, &n.network)
                .await
                .map_err(|_| HttpError::not_found(format!("network {} not found", n.network)))?;
            if !n.address.is_empty() {
                let range = crate::ipam::NetRange::from_row(&net).map_err(HttpError::input)?;
                let ip = crate::ipam::ip_to_u32(&n.address).ok_or_else(|| {
                    HttpError::input(format!("nic {idx}: {:?} is not an IPv4 address", n.address))
                })?;
                if !range.contains(ip) {
                    return Err(HttpError::input(format!(
                        "nic {idx}: address {} is outside network {} ({} - {})",
                        n.address,
                        range.name,
                        crate::ipam::u32_to_ip(range.start),
                        crate::ipam::u32_to_ip(range.end)
                    )));
                }
            }
            net_id = s(&net, "id");
        } else if !n.address.is_empty() {
            return Err(HttpError::input(format!(
                "nic {idx}: an address needs a network"
            )));
        }
        let mut wire_id = String::new();
        if !n.wire.is_empty() {
            let w = find_visible(&self.region, ctx, &WIRES, &n.wire)
                .await
                .map_err(|_| HttpError::not_found(format!("wire {} not found", n.wire)))?;
            wire_id = s(&w, "id");
        }
        let mac = n.mac.to_ascii_lowercase();
        if !mac.is_empty() {
            let ok = mac.len() == 17
                && mac
                    .split(':')
                    .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
            if !ok {
                return Err(HttpError::input(format!(
                    "nic {idx}: invalid MAC address {:?}",
                    n.mac
                )));
            }
        }
        if n.bw_limit.is_some_and(|b| b < 0) {
            return Err(HttpError::input(format!(
                "nic {idx}: bw_limit must not be negative"
            )));
        }
        Ok(json!({
            "index": idx,
            "network_id": net_id,
            "wire_id": wire_id,
            "address": n.address,
            "mac": mac,
            "driver": if n.driver.is_empty() { "virtio" } else { n.driver.as_str() },
            "bw_limit": n.bw_limit.unwrap_or(0),
        }))
    }

    /// Start a task for one server.
    async fn start_task(&self, ctx: &Ctx, obj: &Row, name: &str, params: Value) -> Result<String> {
        // Public-cloud guests run the cloud variant of the task (crate::cloud).
        let name = crate::cloud::tasks::task_name_for(obj, name);
        submit_task(&self.region, server_task(ctx, obj, &name, params)).await
    }

    /// Move the server from one of `from` to `to` or refuse with
    /// InvalidStatusError (the per-object serialisation of actions).
    async fn transition(&self, obj: &Row, action: &str, from: &[&str], to: &str) -> Result<()> {
        if !store::cas_status(&self.region.db, &GUESTS, &s(obj, "id"), from, to).await? {
            let now = crud::get(self.region.db.read(), &GUESTS, &s(obj, "id"))
                .await?
                .map(|r| s(&r, "status"))
                .unwrap_or_default();
            return Err(HttpError::invalid_status(format!(
                "Cannot do {action} server in status {now}"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Model for Servers {
    region_model!(GUESTS);
    fn max_batch(&self) -> i64 {
        self.region.opts.max_batch
    }

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        if let Some(h) = get_str_any(q, &["host", "host_id"]) {
            let host = find_visible(&self.region, ctx, &HOSTS, &h).await?;
            conds.push(crud::eq("host_id", s(&host, "id")));
        }
        if let Some(z) = get_str_any(q, &["zone", "zone_id"]) {
            let zone = find_visible(&self.region, ctx, &ZONES, &z).await?;
            let mut c = Sql::new("`host_id` IN (SELECT `id` FROM `hosts_tbl` WHERE `zone_id` = ");
            c.bind(s(&zone, "id")).push(")");
            conds.push(c);
        }
        if let Some(n) = get_str_any(q, &["network", "network_id"]) {
            let net = find_visible(&self.region, ctx, &NETWORKS, &n).await?;
            let mut c = Sql::new(
                "`id` IN (SELECT `guest_id` FROM `guestnetworks_tbl` WHERE `network_id` = ",
            );
            c.bind(s(&net, "id")).push(")");
            conds.push(c);
        }
        if let Some(ip) = get_str(q, "ip_addr") {
            let mut c =
                Sql::new("`id` IN (SELECT `guest_id` FROM `guestnetworks_tbl` WHERE `ip_addr` = ");
            c.bind(ip).push(")");
            conds.push(c);
        }
        // brand / provider / cloud_env / manager / cloudaccount (crate::cloud).
        crate::cloud::brand_filter(&GUESTS, q, conds);
        Ok(())
    }

    /// Batched details: host and zone names, NICs, disks, secgroups.
    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let db = &self.region.db;
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let host_ids: Vec<String> = rows.iter().map(|r| s(r, "host_id")).collect();
        let hosts = store::by_id(db, &HOSTS, &host_ids).await?;
        let zone_ids: Vec<String> = hosts.values().map(|h| s(h, "zone_id")).collect();
        let zones = store::by_id(db, &ZONES, &zone_ids).await?;
        let nics = store::guest_nics(db, &ids).await?;
        let net_ids: Vec<String> = nics.iter().map(|n| s(n, "network_id")).collect();
        let nets = store::by_id(db, &NETWORKS, &net_ids).await?;
        let wire_ids: Vec<String> = nets.values().map(|n| s(n, "wire_id")).collect();
        let wires = store::by_id(db, &WIRES, &wire_ids).await?;
        let disks = store::guest_disks(db, &ids).await?;
        let storage_ids: Vec<String> = disks.iter().map(|(_, d)| s(d, "storage_id")).collect();
        let storages = store::by_id(db, &STORAGES, &storage_ids).await?;
        let sgj = store::rows_in(db, &GUESTSECGROUPS, "guest_id", &ids).await?;
        let sg_ids: Vec<String> = sgj.iter().map(|r| s(r, "secgroup_id")).collect();
        let sgs = store::by_id(db, &SECGROUPS, &sg_ids).await?;
        let vpc_ids: Vec<String> = wires.values().map(|w| s(w, "vpc_id")).collect();
        let vpcs = store::by_id(db, &VPCS, &vpc_ids).await?;
        let eips: Vec<Row> = store::rows_in(db, &EIPS, "associate_id", &ids)
            .await?
            .into_iter()
            .filter(|e| s(e, "associate_type") == "server")
            .collect();

        let mut nics_by: HashMap<String, Vec<&Row>> = HashMap::new();
        for n in &nics {
            nics_by.entry(s(n, "guest_id")).or_default().push(n);
        }
        let mut disks_by: HashMap<String, Vec<&(Row, Row)>> = HashMap::new();
        for d in &disks {
            disks_by.entry(s(&d.0, "guest_id")).or_default().push(d);
        }
        for r in rows.iter_mut() {
            let id = s(r, "id");
            if let Some(h) = hosts.get(&s(r, "host_id")) {
                r.insert("host".into(), json!(s(h, "name")));
                r.insert("host_access_ip".into(), json!(s(h, "access_ip")));
                if let Some(z) = zones.get(&s(h, "zone_id")) {
                    r.insert("zone".into(), json!(s(z, "name")));
                    r.insert("zone_id".into(), json!(s(z, "id")));
                    r.insert("cloudregion_id".into(), json!(s(z, "cloudregion_id")));
                }
            }
            let mut nic_list = Vec::new();
            let mut ips = Vec::new();
            let mut macs = Vec::new();
            let mut net_names = Vec::new();
            for n in nics_by.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                let net = nets.get(&s(n, "network_id"));
                let vpc = net
                    .and_then(|nt| wires.get(&s(nt, "wire_id")))
                    .map(|w| s(w, "vpc_id"))
                    .unwrap_or_default();
                nic_list.push(json!({
                    "ip_addr": s(n, "ip_addr"), "mac": s(n, "mac_addr"), "network_id": s(n, "network_id"),
                    "network": net.map(|nt| s(nt, "name")), "vpc_id": vpc, "ifname": s(n, "ifname"),
                    "index": i(n, "index"), "is_default": i(n, "index") == 0, "bw_limit_mbps": i(n, "bw_limit"),
                    "driver": s(n, "driver"),
                }));
                if !s(n, "ip_addr").is_empty() {
                    ips.push(s(n, "ip_addr"));
                }
                macs.push(s(n, "mac_addr"));
                if let Some(nt) = net {
                    net_names.push(s(nt, "name"));
                }
            }
            r.insert("nics".into(), json!(nic_list));
            r.insert("ips".into(), json!(ips.join(",")));
            r.insert("macs".into(), json!(macs.join(",")));
            r.insert("networks".into(), json!(net_names.join(",")));
            let mut disk_info = Vec::new();
            let mut total = 0;
            for (j, d) in disks_by
                .get(&id)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|p| (&p.0, &p.1))
            {
                let st = storages.get(&s(d, "storage_id"));
                total += i(d, "disk_size");
                disk_info.push(json!({
                    "id": s(d, "id"), "name": s(d, "name"), "size": i(d, "disk_size"), "index": i(j, "index"),
                    "disk_type": s(d, "disk_type"), "disk_format": s(d, "disk_format"), "status": s(d, "status"),
                    "storage_id": s(d, "storage_id"), "storage_type": st.map(|x| s(x, "storage_type")),
                    "medium_type": st.map(|x| s(x, "medium_type")), "driver": s(j, "driver"),
                    "cache_mode": s(j, "cache_mode"), "image_id": s(d, "template_id"),
                }));
            }
            r.insert("disk_count".into(), json!(disk_info.len()));
            r.insert("disk".into(), json!(total));
            r.insert("disks_info".into(), json!(disk_info));
            let groups: Vec<Value> = sgj
                .iter()
                .filter(|j| s(j, "guest_id") == id)
                .filter_map(|j| sgs.get(&s(j, "secgroup_id")))
                .map(|g| json!({"id": s(g, "id"), "name": s(g, "name")}))
                .collect();
            if let Some(first) = groups.first() {
                r.insert("secgroup".into(), first["name"].clone());
            }
            r.insert("secgroups".into(), json!(groups));
            if let Some(vpc) = nic_list
                .first()
                .and_then(|n| n["vpc_id"].as_str())
                .and_then(|v| vpcs.get(v))
            {
                r.insert("vpc_id".into(), json!(s(vpc, "id")));
                r.insert("vpc".into(), json!(s(vpc, "name")));
            }
            if let Some(e) = eips.iter().find(|e| s(e, "associate_id") == id) {
                r.insert("eip".into(), json!(s(e, "ip_addr")));
                r.insert("eip_id".into(), json!(s(e, "id")));
                r.insert("eip_mode".into(), json!(s(e, "mode")));
            }
            r.insert("brand".into(), json!("OneCloud"));
            r.insert("provider".into(), json!("OneCloud"));
            r.insert("cloud_env".into(), json!("onpremise"));
            r.insert("cloudregion".into(), json!("Default"));
        }
        // Public-cloud guests: their brand, provider and region (crate::cloud).
        crate::cloud::brand_details(db, &GUESTS, rows).await?;
        Ok(())
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        _obj: &Row,
        changes: &mut Row,
        _input: &Object,
    ) -> Result<()> {
        crate::guestspec::check_update(changes)
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        // --- public cloud (crate::cloud::tasks) ---
        if let Some(params) =
            crate::cloud::tasks::parse_server_create(&self.region, ctx, row, input).await?
        {
            row.insert("create_params".into(), params);
            row.insert("status".into(), json!(status::INIT));
            return Ok(());
        }
        let params = self.parse_create(ctx, row, input).await?;
        row.insert("create_params".into(), params);
        row.insert("status".into(), json!(status::INIT));
        Ok(())
    }

    /// Insert the guests and the batch create task in one transaction,
    /// after checking the project's quota in it.
    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, _input: &Object) -> Result<Vec<Row>> {
        let Some(first) = rows.first() else {
            return Ok(rows);
        };
        // --- public cloud (crate::cloud::tasks) ---
        if crate::cloud::tasks::is_cloud_create(first) {
            return crate::cloud::tasks::create_servers(&self.region, ctx, rows).await;
        }
        let params = first.get("create_params").cloned().unwrap_or(Value::Null);
        let n = rows.len() as i64;
        let nets = params["nets"].as_array().cloned().unwrap_or_default();
        if n > 1
            && nets
                .iter()
                .any(|x| !x["address"].as_str().unwrap_or_default().is_empty())
        {
            return Err(HttpError::input(
                "a fixed address cannot be given when creating more than one server",
            ));
        }
        if n > 1
            && nets
                .iter()
                .any(|x| !x["mac"].as_str().unwrap_or_default().is_empty())
        {
            return Err(HttpError::input(
                "a fixed MAC cannot be given when creating more than one server",
            ));
        }
        let mut add = crate::quota::nothing();
        add.cpu = i(first, "vcpu_count") * n;
        add.memory = i(first, "vmem_size") * n;
        add.storage = params["storage"].as_i64().unwrap_or(0) * n;
        add.port = nets.len() as i64 * n;
        add.server = n;
        let project = s(first, "tenant_id");
        let db = &self.region.db;
        let mut tx = crate::quota::begin(db, &project).await?;
        if let Some(msg) =
            crate::quota::check(db, &mut tx, &project, self.region.opts.default_quota, &add).await?
        {
            return Err(HttpError::out_of_quota(msg));
        }
        for r in &rows {
            crud::insert(&mut *tx, &GUESTS, r).await?;
        }
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let mut t = NewTask::new(
            "GuestBatchCreateTask",
            "server",
            &ids[0],
            &s(first, "name"),
            json!({"guest_ids": ids}),
            task_owner(ctx, first),
        );
        t.objects = ids.clone();
        t.request_id = ctx.request_id.clone();
        self.region
            .engine
            .submit_in(&mut tx, &t)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        self.region.engine.wake();
        Ok(rows)
    }

    async fn validate_delete(&self, ctx: &Ctx, obj: &Row, q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&GUESTS, obj)?;
        let st = s(obj, "status");
        if status::BUSY.contains(&st.as_str())
            && !(flag(q, "purge")?
                && ctx.max_scope("servers", "delete", None) == Some(Scope::System))
        {
            return Err(HttpError::invalid_status(format!(
                "Cannot do delete server in status {st}"
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let purge = flag(q, "purge")?;
        if purge && ctx.max_scope("servers", "delete", None) != Some(Scope::System) {
            return Err(HttpError::forbidden("only system admins may purge"));
        }
        let pending = cloudpods_rest::generic::pending_delete_enabled()
            && !flag(q, "override_pending_delete")?
            && !purge
            && !store::b(&obj, "pending_deleted");
        let from: Vec<&str> = vec![
            status::READY,
            status::RUNNING,
            status::UNKNOWN,
            status::CRASHED,
            status::START_FAIL,
            status::STOP_FAIL,
            status::DELETE_FAIL,
            status::SCHED_FAIL,
            status::NET_FAIL,
            status::DISK_FAIL,
            status::DEPLOY_FAIL,
            status::INIT,
            status::CHANGE_FLAVOR_FAIL,
            status::MIGRATE_FAILED,
            status::LIVE_MIGRATE_FAILED,
            status::REBUILD_ROOT_FAIL,
            status::ATTACH_DISK_FAIL,
            status::DETACH_DISK_FAIL,
            status::SNAPSHOT_FAILED,
            status::SYNC_FAIL,
        ];
        let mut from = from;
        let cur = s(&obj, "status");
        if purge {
            from.push(cur.as_str());
        }
        self.transition(&obj, "delete", &from, status::START_DELETE)
            .await?;
        self.start_task(
            ctx,
            &obj,
            "GuestDeleteTask",
            json!({"purge": purge, "pending": pending, "prev_status": cur}),
        )
        .await?;
        let mut out = crud::must_get(self.region.db.read(), &GUESTS, &s(&obj, "id")).await?;
        out.remove("create_params");
        Ok(out)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        let id = s(&obj, "id");
        let call = crate::tasks::Call {
            region: &self.region,
            ctx,
            obj: &obj,
            action,
            input: &input,
        };
        // --- public cloud (crate::cloud::tasks) ---
        if crate::cloud::is_public_cloud(&obj)
            && let Some(v) = crate::cloud::tasks::perform_server(call).await?
        {
            return Ok(v);
        }
        // A server in the recycle bin only comes back (or goes for good).
        if store::b(&obj, "pending_deleted")
            && !crate::tasks::actions::allowed_in_recycle_bin(action)
        {
            return Err(HttpError::invalid_status(format!(
                "Cannot do {action} server in status pending_delete: cancel-delete it first"
            )));
        }
        let task = match action {
            "start" => {
                self.transition(
                    &obj,
                    action,
                    &[status::READY, status::START_FAIL, status::STOP_FAIL],
                    status::START_START,
                )
                .await?;
                Some(("GuestStartTask", json!({})))
            }
            "stop" => {
                self.transition(
                    &obj,
                    action,
                    &[
                        status::RUNNING,
                        status::STOP_FAIL,
                        status::UNKNOWN,
                        status::CRASHED,
                        status::START_FAIL,
                    ],
                    status::START_STOP,
                )
                .await?;
                Some((
                    "GuestStopTask",
                    json!({"is_force": flag(&input, "is_force")?, "timeout": get_i64(&input, "timeout")?.unwrap_or(30)}),
                ))
            }
            "restart" => {
                self.transition(
                    &obj,
                    action,
                    &[
                        status::RUNNING,
                        status::READY,
                        status::STOP_FAIL,
                        status::START_FAIL,
                    ],
                    status::START_STOP,
                )
                .await?;
                Some((
                    "GuestRestartTask",
                    json!({"is_force": flag(&input, "is_force")?}),
                ))
            }
            "reset" => {
                self.transition(
                    &obj,
                    action,
                    &[
                        status::RUNNING,
                        status::STOP_FAIL,
                        status::UNKNOWN,
                        status::CRASHED,
                    ],
                    status::STARTING,
                )
                .await?;
                Some(("GuestResetTask", json!({})))
            }
            // A task changing the guest owns its status: an agent's report
            // meanwhile (e.g. a migration target's waiting QEMU) must not
            // overwrite it.
            "syncstatus" | "sync" if status::BUSY.contains(&s(&obj, "status").as_str()) => None,
            "syncstatus" | "sync" => Some(("GuestSyncstatusTask", json!({}))),
            "cancel-delete" if store::b(&obj, "pending_deleted") => {
                crate::tasks::actions::cancel_delete(&self.region, &obj).await?;
                None
            }
            _ => {
                return match crate::tasks::actions::perform(call).await? {
                    Some(v) => Ok(v),
                    None => {
                        cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await
                    }
                };
            }
        };
        if let Some((name, params)) = task {
            self.start_task(ctx, &obj, name, params).await?;
        }
        let mut out = crud::must_get(self.region.db.read(), &GUESTS, &id).await?;
        out.remove("create_params");
        Ok(Value::Object(out))
    }

    async fn get_spec(&self, ctx: &Ctx, obj: Row, spec: &str, q: &Object) -> Result<Value> {
        match spec {
            "tasks" => {
                let ids = store::object_task_ids(&self.region.db, &s(&obj, "id")).await?;
                let mut tasks = store::rows_in(
                    &self.region.db,
                    &cloudpods_taskman::models::TASKS,
                    "id",
                    &ids,
                )
                .await?;
                tasks.sort_by_key(|t| s(t, "created_at"));
                for t in tasks.iter_mut() {
                    t.remove("user_cred");
                    t.remove("lease_owner");
                }
                Ok(json!({"tasks": tasks, "total": tasks.len()}))
            }
            "create-params" => {
                let mut p = obj.get("create_params").cloned().unwrap_or(Value::Null);
                if let Some(o) = p.as_object_mut() {
                    o.remove("password");
                }
                Ok(p)
            }
            "desc" => {
                if ctx.max_scope("servers", "get", Some("desc")) != Some(Scope::System) {
                    return Err(HttpError::forbidden(
                        "only system admins may read the hypervisor description",
                    ));
                }
                Ok(crate::desc::guest_desc(&self.region, &obj).await?)
            }
            "vnc" => crate::tasks::actions::vnc(&self.region, &obj).await,
            "console" => {
                let protocol = q.get("protocol").and_then(|v| v.as_str()).unwrap_or("vnc");
                crate::tasks::actions::console(&self.region, &obj, protocol).await
            }
            _ => cloudpods_rest::generic::spec_common(self, ctx, obj, spec, q).await,
        }
    }
}
