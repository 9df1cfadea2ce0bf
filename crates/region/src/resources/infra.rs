//! Infrastructure resources (domain-owned): cloud regions, zones, VPCs,
//! wires, networks, reserved IPs, hosts, storages, schedtags and server
//! SKUs.
//!
//! One [`Infra`] model serves them all; its hooks branch on the keyword for
//! what differs: references given by name or id (`zone`, `wire`…),
//! validation of values an operator can get wrong (address ranges,
//! overcommit bounds, capacities), refusals to delete what is still in use
//! (406 `NotEmptyError`), the host heartbeat and maintenance actions, and
//! the detail fields Cloudpods adds to each (counts, capacity and usage).
//! Details are computed with one grouped query per related table for the
//! whole page, never one per row.
//!
//! Everything that changes who holds a network's addresses, or its range,
//! runs under the network's allocation lock (see [`crate::ipam`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_db::{Db, DbError, ModelDesc, Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::generic;
use cloudpods_rest::params::{get_str, get_str_any, get_strs};
use cloudpods_rest::{Ctx, HttpError, Model, Object, Result, Service};
use serde_json::{Value, json};
use sqlx::Row as _;

use super::Basic;
use crate::Region;
use crate::ipam::{self, NetRange};
use crate::models::*;
use crate::store::{self, b, i, s};

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let m = |desc: &'static ModelDesc,
             contexts: &'static [(&'static str, &'static str)]|
     -> Arc<dyn Model> { Arc::new(Infra::new(desc, region, contexts)) };
    svc.model(m(&CLOUDREGIONS, &[]))
        .model(m(&ZONES, &[("cloudregions", "cloudregion_id")]))
        .model(m(&VPCS, &[("cloudregions", "cloudregion_id")]))
        .model(m(&WIRES, &[("zones", "zone_id"), ("vpcs", "vpc_id")]))
        .model(m(&NETWORKS, &[("wires", "wire_id")]))
        .model(m(&RESERVEDIPS, &[("networks", "network_id")]))
        .model(m(&HOSTS, &[("zones", "zone_id")]))
        .model(m(&STORAGES, &[("zones", "zone_id")]))
        .model(m(&STORAGECACHES, &[]))
        .model(m(&SCHEDTAGS, &[]))
        .model(m(&SERVERSKUS, &[]))
}

/// Network types (Cloudpods `ALL_NETWORK_TYPES`).
const SERVER_TYPES: &[&str] = &[
    "guest",
    "baremetal",
    "container",
    "pxe",
    "ipmi",
    "eip",
    "hostlocal",
];
const HOST_TYPES: &[&str] = &[
    "hypervisor",
    "kvm",
    "baremetal",
    "esxi",
    "container",
    "kubelet",
    "hyperv",
    "xen",
];
const STORAGE_TYPES: &[&str] = &[
    "local",
    "rbd",
    "nfs",
    "gpfs",
    "lvm",
    "clvm",
    "slvm",
    "nas",
    "vsan",
    "cifs",
    "baremetal",
];
/// Storage types whose capacity belongs to the host they are attached to.
const LOCAL_STORAGE_TYPES: &[&str] = &["local", "lvm", "baremetal"];
const MEDIUM_TYPES: &[&str] = &["ssd", "rotate", "hybrid"];
const SCHEDTAG_STRATEGIES: &[&str] = &["", "require", "exclude", "prefer", "avoid"];
const SCHEDTAG_RESOURCES: &[&str] = &[
    "hosts",
    "storages",
    "networks",
    "cloudproviders",
    "cloudregions",
    "zones",
];
/// The columns that make up a network's address range.
const RANGE_COLUMNS: &[&str] = &[
    "guest_ip_start",
    "guest_ip_end",
    "guest_ip_mask",
    "guest_gateway",
];

/// Infrastructure resource with reference resolution, validation, in-use
/// checks and details.
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

    /// Find a visible object of `desc` by id or name (404 otherwise).
    async fn find(&self, ctx: &Ctx, desc: &'static ModelDesc, ident: &str) -> Result<Row> {
        let target = Basic {
            desc,
            region: self.region.clone(),
            contexts: &[],
        };
        generic::lookup_get(&target, ctx, ident, None)
            .await
            .map_err(|e| match e.class {
                // An ambiguous name stays a 409 asking for the id.
                cloudpods_apis::ErrorClass::DuplicateNameError => e,
                _ => HttpError::not_found(format!("{} {ident} not found", desc.keyword)),
            })
    }

    /// Resolve the reference given by one of `keys` (or already in
    /// `column`) to an object of `desc`, storing its id in `column`.
    async fn resolve(
        &self,
        ctx: &Ctx,
        row: &mut Row,
        input: &Object,
        keys: &[&str],
        desc: &'static ModelDesc,
        column: &str,
    ) -> Result<Option<Row>> {
        let ident = get_str_any(input, keys)
            .filter(|v| !v.is_empty())
            .or_else(|| {
                row.get(column)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .filter(|v| !v.is_empty())
            });
        let Some(ident) = ident else {
            return Ok(None);
        };
        let obj = self.find(ctx, desc, &ident).await?;
        row.insert(column.into(), json!(s(&obj, "id")));
        Ok(Some(obj))
    }

    /// Id of the object named by the list parameter `key`, if given.
    async fn filter_ref(
        &self,
        ctx: &Ctx,
        q: &Object,
        key: &str,
        desc: &'static ModelDesc,
    ) -> Result<Option<String>> {
        match get_str(q, key).filter(|v| !v.is_empty()) {
            Some(ident) => Ok(Some(s(&self.find(ctx, desc, &ident).await?, "id"))),
            None => Ok(None),
        }
    }

    /// COUNT of live rows referring to `obj` from each of `users`; the
    /// first non-zero one refuses the delete.
    async fn refuse_if_used(&self, obj: &Row, users: &[(&str, &str, &str, &str)]) -> Result<()> {
        let id = s(obj, "id");
        for (table, col, cond, what) in users {
            let mut q = Sql::new(format!("SELECT COUNT(*) FROM `{table}` WHERE `{col}` = "));
            q.bind(id.as_str());
            if !cond.is_empty() {
                q.push(" AND ").push(cond);
            }
            let n = crud::fetch_i64(self.db().read(), &q).await?;
            if n > 0 {
                return Err(HttpError::not_empty(format!(
                    "{} {} is in use: {n} {what}",
                    self.desc.keyword,
                    s(obj, "name")
                )));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// value checks

fn float(r: &Row, k: &str) -> Option<f64> {
    r.get(k).and_then(Value::as_f64)
}

/// Refuse negative values (and explicit nulls) of integer columns.
fn non_negative(row: &Row, keys: &[&str]) -> Result<()> {
    for k in keys {
        match row.get(*k) {
            None => {}
            Some(Value::Null) => return Err(HttpError::input(format!("{k} must not be empty"))),
            Some(v) if v.as_f64().is_some_and(|f| f < 0.0) => {
                return Err(HttpError::input(format!(
                    "{k} must not be negative, got {v}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Refuse overcommit bounds that are not > 0.
fn positive_bound(row: &Row, keys: &[&str]) -> Result<()> {
    for k in keys {
        match row.get(*k) {
            None => {}
            Some(v) if v.as_f64().is_some_and(|f| f > 0.0 && f.is_finite()) => {}
            Some(v) => {
                return Err(HttpError::input(format!(
                    "{k} must be greater than 0, got {v}"
                )));
            }
        }
    }
    Ok(())
}

fn one_of(row: &Row, key: &str, allowed: &[&str]) -> Result<()> {
    match row.get(key) {
        Some(Value::String(v)) if !allowed.contains(&v.as_str()) => Err(HttpError::input(format!(
            "{key} must be one of {}, got {v:?}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn is_mac(v: &str) -> bool {
    v.len() == 17
        && v.split(':')
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

/// A DNS name (`ntp.example.com`).
fn is_domain(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Comma-separated addresses (`guest_dns`, `guest_dhcp`) or, with
/// `names`, DNS names too (`guest_ntp`).
fn address_list(row: &Row, key: &str, names: bool) -> Result<()> {
    let Some(Value::String(v)) = row.get(key) else {
        return Ok(());
    };
    for item in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        if ipam::ip_to_u32(item).is_none() && !(names && is_domain(item)) {
            return Err(HttpError::input(format!(
                "{key}: {item:?} is not an IPv4 address{}",
                if names { " or a domain name" } else { "" }
            )));
        }
    }
    Ok(())
}

fn check_host_values(row: &mut Row) -> Result<()> {
    non_negative(
        row,
        &[
            "cpu_count",
            "node_count",
            "cpu_mhz",
            "cpu_reserved",
            "mem_size",
            "mem_reserved",
            "storage_size",
        ],
    )?;
    positive_bound(row, &["cpu_cmtbound", "mem_cmtbound"])?;
    one_of(row, "host_type", HOST_TYPES)?;
    for (reserved, total) in [("cpu_reserved", "cpu_count"), ("mem_reserved", "mem_size")] {
        let (r, t) = (i(row, reserved), i(row, total));
        if r > 0 && t > 0 && r > t {
            return Err(HttpError::input(format!(
                "{reserved} ({r}) is larger than {total} ({t})"
            )));
        }
    }
    if let Some(Value::String(ip)) = row.get("access_ip")
        && !ip.is_empty()
        && ipam::ip_to_u32(ip).is_none()
    {
        return Err(HttpError::input(format!(
            "access_ip {ip:?} is not an IPv4 address"
        )));
    }
    if let Some(Value::String(mac)) = row.get("access_mac").cloned()
        && !mac.is_empty()
    {
        let mac = mac.to_ascii_lowercase().replace('-', ":");
        if !is_mac(&mac) {
            return Err(HttpError::input(format!(
                "access_mac {mac:?} is not a MAC address"
            )));
        }
        row.insert("access_mac".into(), json!(mac));
    }
    if let Some(Value::String(uri)) = row.get("manager_uri")
        && !uri.is_empty()
        && !(uri.starts_with("http://") || uri.starts_with("https://"))
    {
        return Err(HttpError::input(format!(
            "manager_uri {uri:?} must be an http(s) URL"
        )));
    }
    Ok(())
}

fn check_storage_values(row: &Row) -> Result<()> {
    non_negative(row, &["capacity", "reserved", "actual_capacity_used"])?;
    positive_bound(row, &["cmtbound"])?;
    one_of(row, "storage_type", STORAGE_TYPES)?;
    one_of(row, "medium_type", MEDIUM_TYPES)?;
    let (cap, reserved) = (i(row, "capacity"), i(row, "reserved"));
    if reserved > 0 && reserved > cap {
        return Err(HttpError::input(format!(
            "reserved ({reserved} MB) is larger than capacity ({cap} MB)"
        )));
    }
    Ok(())
}

fn check_wire_values(row: &Row) -> Result<()> {
    non_negative(row, &["bandwidth"])?;
    if let Some(mtu) = row.get("mtu").and_then(Value::as_i64)
        && !(68..=65535).contains(&mtu)
    {
        return Err(HttpError::input(format!(
            "mtu must be between 68 and 65535, got {mtu}"
        )));
    }
    Ok(())
}

/// Network settings other than the range.
fn check_network_values(row: &mut Row) -> Result<()> {
    ipam::AllocPolicy::parse(&s(row, "alloc_policy")).map_err(HttpError::input)?;
    one_of(row, "server_type", SERVER_TYPES)?;
    address_list(row, "guest_dns", false)?;
    address_list(row, "guest_dhcp", false)?;
    address_list(row, "guest_ntp", true)?;
    if let Some(Value::String(d)) = row.get("guest_domain")
        && !d.is_empty()
        && !is_domain(d)
    {
        return Err(HttpError::input(format!(
            "guest_domain {d:?} is not a domain name"
        )));
    }
    if let Some(v) = row.get("vlan_id").and_then(Value::as_i64) {
        if v > 4095 {
            return Err(HttpError::input(format!(
                "vlan_id must be between 1 and 4095, got {v}"
            )));
        }
        if v < 1 {
            // Cloudpods takes anything below 1 as the untagged VLAN 1.
            row.insert("vlan_id".into(), json!(1));
        }
    }
    Ok(())
}

/// Parse a Cloudpods billing cycle (`1H`, `3D`, `1W`, `1M`, `1Y`) into
/// seconds.
fn parse_duration(text: &str) -> Result<i64> {
    let bad = || {
        HttpError::input(format!(
            "duration {text:?} must be a number and a unit: H, D, W, M or Y"
        ))
    };
    let t = text.trim();
    // Split before the last character (which may be multi-byte: no panic).
    let cut = t.char_indices().last().map(|(i, _)| i).unwrap_or(0);
    let (num, unit) = t.split_at(cut);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.to_ascii_uppercase().as_str() {
        "H" => 3600,
        "D" => 86_400,
        "W" => 7 * 86_400,
        "M" => 30 * 86_400,
        "Y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 || n > 100 * 366 * 86_400 / secs {
        return Err(bad());
    }
    Ok(n * secs)
}

// ---------------------------------------------------------------------------
// grouped statistics for details

/// Run a query whose rows are `(key, n1, n2, …)` and key the numbers.
async fn group_stats(db: &Db, q: &Sql) -> Result<HashMap<String, Vec<i64>>> {
    let rows = q
        .query()?
        .fetch_all(db.read())
        .await
        .map_err(DbError::from)?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        let key = match cloudpods_db::sql::raw_column(r, 0)? {
            Value::String(k) => k,
            Value::Null => continue,
            other => other.to_string(),
        };
        let mut vals = Vec::with_capacity(r.len().saturating_sub(1));
        for idx in 1..r.len() {
            vals.push(match cloudpods_db::sql::raw_column(r, idx)? {
                Value::Number(n) => n
                    .as_i64()
                    .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
                Value::String(v) => v.parse::<f64>().map(|f| f as i64).unwrap_or(0),
                _ => 0,
            });
        }
        out.insert(key, vals);
    }
    Ok(out)
}

/// `SELECT col, COUNT(*) FROM table WHERE col IN ids [AND cond] GROUP BY col`.
async fn count_by(
    db: &Db,
    table: &str,
    col: &str,
    ids: &[String],
    cond: &str,
) -> Result<HashMap<String, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = Sql::new(format!(
        "SELECT `{col}`, COUNT(*) FROM `{table}` WHERE `{col}` IN "
    ));
    q.bind_list(ids.iter().map(String::as_str));
    if !cond.is_empty() {
        q.push(" AND ").push(cond);
    }
    q.push(&format!(" GROUP BY `{col}`"));
    Ok(group_stats(db, &q)
        .await?
        .into_iter()
        .map(|(k, v)| (k, v.first().copied().unwrap_or(0)))
        .collect())
}

/// Disk MB allocated on each of `storage_ids`.
async fn disk_usage(db: &Db, storage_ids: &[String]) -> Result<HashMap<String, i64>> {
    if storage_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = Sql::new(format!(
        "SELECT `storage_id`, {} FROM `disks_tbl` WHERE `deleted` = 0 AND `storage_id` IN ",
        db.dialect().sum_int("`disk_size`")
    ));
    q.bind_list(storage_ids.iter().map(String::as_str));
    q.push(" GROUP BY `storage_id`");
    Ok(group_stats(db, &q)
        .await?
        .into_iter()
        .map(|(k, v)| (k, v.first().copied().unwrap_or(0)))
        .collect())
}

/// `used / total`, two decimals, as Cloudpods rounds its commit rates.
fn rate(used: f64, total: f64) -> f64 {
    if total <= 0.0 || used <= 0.0 {
        return 0.0;
    }
    (used / total * 100.0).round() / 100.0
}

fn ids_of(rows: &[Row], col: &str) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| s(r, col))
        .filter(|x| !x.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Add `key` = name of the `desc` object whose id is in `col`.
async fn add_names(
    db: &Db,
    rows: &mut [Row],
    col: &str,
    desc: &'static ModelDesc,
    key: &str,
) -> Result<HashMap<String, Row>> {
    let objs = store::by_id(db, desc, &ids_of(rows, col)).await?;
    for r in rows.iter_mut() {
        if let Some(o) = objs.get(&s(r, col)) {
            r.insert(key.into(), json!(s(o, "name")));
        }
    }
    Ok(objs)
}

/// Zone, cloud region and their ids of rows with a `zone_id`.
async fn add_zone_region(db: &Db, rows: &mut [Row]) -> Result<()> {
    let zones = add_names(db, rows, "zone_id", &ZONES, "zone").await?;
    let region_ids: Vec<String> = zones.values().map(|z| s(z, "cloudregion_id")).collect();
    let regions = store::by_id(db, &CLOUDREGIONS, &region_ids).await?;
    for r in rows.iter_mut() {
        if let Some(z) = zones.get(&s(r, "zone_id")) {
            let rid = s(z, "cloudregion_id");
            if let Some(reg) = regions.get(&rid) {
                r.insert("cloudregion".into(), json!(s(reg, "name")));
            }
            r.insert("cloudregion_id".into(), json!(rid));
        }
    }
    Ok(())
}

fn put(r: &mut Row, k: &str, v: impl Into<Value>) {
    r.insert(k.into(), v.into());
}

#[async_trait]
impl Model for Infra {
    region_model!(field);
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        self.contexts
    }

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        // brand / provider / cloud_env / manager / cloudaccount (crate::cloud).
        crate::cloud::brand_filter(self.desc, q, conds);
        let kw = self.desc.keyword;
        if self.desc.has("zone_id")
            && let Some(id) = self.filter_ref(ctx, q, "zone", &ZONES).await?
        {
            conds.push(crud::eq("zone_id", id));
        }
        if self.desc.has("cloudregion_id")
            && let Some(id) = self
                .filter_ref(ctx, q, "cloudregion", &CLOUDREGIONS)
                .await?
        {
            conds.push(crud::eq("cloudregion_id", id));
        }
        match kw {
            "wire" => {
                if let Some(id) = self.filter_ref(ctx, q, "vpc", &VPCS).await? {
                    conds.push(crud::eq("vpc_id", id));
                }
                if let Some(id) = self.filter_ref(ctx, q, "host", &HOSTS).await? {
                    let mut c = Sql::new(
                        "`id` IN (SELECT `wire_id` FROM `hostwires_tbl` WHERE `host_id` = ",
                    );
                    c.bind(id).push(")");
                    conds.push(c);
                }
            }
            "network" => {
                if let Some(id) = self.filter_ref(ctx, q, "wire", &WIRES).await? {
                    conds.push(crud::eq("wire_id", id));
                }
                for (key, desc, col) in [("vpc", &VPCS, "vpc_id"), ("zone", &ZONES, "zone_id")] {
                    if let Some(id) = self.filter_ref(ctx, q, key, desc).await? {
                        let mut c = Sql::new(format!(
                            "`wire_id` IN (SELECT `id` FROM `wires_tbl` WHERE `deleted` = 0 AND `{col}` = "
                        ));
                        c.bind(id).push(")");
                        conds.push(c);
                    }
                }
                if let Some(id) = self.filter_ref(ctx, q, "host", &HOSTS).await? {
                    let mut c = Sql::new(
                        "`wire_id` IN (SELECT `wire_id` FROM `hostwires_tbl` WHERE `host_id` = ",
                    );
                    c.bind(id).push(")");
                    conds.push(c);
                }
            }
            "reservedip" => {
                if let Some(id) = self.filter_ref(ctx, q, "network", &NETWORKS).await? {
                    conds.push(crud::eq("network_id", id));
                }
            }
            "host" => {
                for (key, desc, joint, col) in [
                    ("wire", &WIRES, "hostwires_tbl", "wire_id"),
                    ("storage", &STORAGES, "hoststorages_tbl", "storage_id"),
                    ("schedtag", &SCHEDTAGS, "aggregate_hosts_tbl", "schedtag_id"),
                ] {
                    if let Some(id) = self.filter_ref(ctx, q, key, desc).await? {
                        let mut c = Sql::new(format!(
                            "`id` IN (SELECT `host_id` FROM `{joint}` WHERE `{col}` = "
                        ));
                        c.bind(id).push(")");
                        conds.push(c);
                    }
                }
            }
            "storage" => {
                if let Some(id) = self.filter_ref(ctx, q, "host", &HOSTS).await? {
                    let mut c = Sql::new(
                        "`id` IN (SELECT `storage_id` FROM `hoststorages_tbl` WHERE `host_id` = ",
                    );
                    c.bind(id).push(")");
                    conds.push(c);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let db = self.db();
        // brand / provider / cloud_env of managed rows (crate::cloud).
        crate::cloud::brand_details(db, self.desc, rows).await?;
        let ids = ids_of(rows, "id");
        match self.desc.keyword {
            "cloudregion" => {
                let zones =
                    count_by(db, "zones_tbl", "cloudregion_id", &ids, "`deleted` = 0").await?;
                let vpcs =
                    count_by(db, "vpcs_tbl", "cloudregion_id", &ids, "`deleted` = 0").await?;
                let mut q = Sql::new(
                    "SELECT z.`cloudregion_id`, COUNT(*) FROM `guests_tbl` g \
                     JOIN `hosts_tbl` h ON g.`host_id` = h.`id` \
                     JOIN `zones_tbl` z ON h.`zone_id` = z.`id` \
                     WHERE g.`deleted` = 0 AND z.`cloudregion_id` IN ",
                );
                q.bind_list(ids.iter().map(String::as_str));
                q.push(" GROUP BY z.`cloudregion_id`");
                let guests = if ids.is_empty() {
                    HashMap::new()
                } else {
                    group_stats(db, &q).await?
                };
                for r in rows.iter_mut() {
                    let id = s(r, "id");
                    put(r, "zone_count", zones.get(&id).copied().unwrap_or(0));
                    put(r, "vpc_count", vpcs.get(&id).copied().unwrap_or(0));
                    put(
                        r,
                        "guest_count",
                        guests
                            .get(&id)
                            .and_then(|v| v.first())
                            .copied()
                            .unwrap_or(0),
                    );
                }
            }
            "zone" => {
                add_names(db, rows, "cloudregion_id", &CLOUDREGIONS, "cloudregion").await?;
                let live = "`deleted` = 0";
                let hosts = count_by(db, "hosts_tbl", "zone_id", &ids, live).await?;
                let enabled = count_by(
                    db,
                    "hosts_tbl",
                    "zone_id",
                    &ids,
                    "`deleted` = 0 AND `enabled` = 1",
                )
                .await?;
                let baremetals = count_by(
                    db,
                    "hosts_tbl",
                    "zone_id",
                    &ids,
                    "`deleted` = 0 AND `host_type` = 'baremetal'",
                )
                .await?;
                let wires = count_by(db, "wires_tbl", "zone_id", &ids, live).await?;
                let storages = count_by(db, "storages_tbl", "zone_id", &ids, live).await?;
                let mut q = Sql::new(
                    "SELECT w.`zone_id`, COUNT(*) FROM `networks_tbl` n \
                     JOIN `wires_tbl` w ON n.`wire_id` = w.`id` \
                     WHERE n.`deleted` = 0 AND w.`deleted` = 0 AND w.`zone_id` IN ",
                );
                q.bind_list(ids.iter().map(String::as_str));
                q.push(" GROUP BY w.`zone_id`");
                let networks = if ids.is_empty() {
                    HashMap::new()
                } else {
                    group_stats(db, &q).await?
                };
                for r in rows.iter_mut() {
                    let id = s(r, "id");
                    let n = |m: &HashMap<String, i64>| m.get(&id).copied().unwrap_or(0);
                    let nets = networks
                        .get(&id)
                        .and_then(|v| v.first())
                        .copied()
                        .unwrap_or(0);
                    let (h, e, bm, w, st) = (
                        n(&hosts),
                        n(&enabled),
                        n(&baremetals),
                        n(&wires),
                        n(&storages),
                    );
                    put(r, "hosts", h);
                    put(r, "hosts_enabled", e);
                    put(r, "baremetals", bm);
                    put(r, "wires", w);
                    put(r, "networks", nets);
                    put(r, "storages", st);
                }
            }
            "vpc" => {
                add_names(db, rows, "cloudregion_id", &CLOUDREGIONS, "cloudregion").await?;
                for r in rows.iter_mut() {
                    let region = r.get("cloudregion").cloned().unwrap_or(Value::Null);
                    r.insert("region".into(), region);
                }
                let wires = count_by(db, "wires_tbl", "vpc_id", &ids, "`deleted` = 0").await?;
                let mut q = Sql::new(
                    "SELECT w.`vpc_id`, COUNT(*) FROM `networks_tbl` n \
                     JOIN `wires_tbl` w ON n.`wire_id` = w.`id` \
                     WHERE n.`deleted` = 0 AND w.`deleted` = 0 AND w.`vpc_id` IN ",
                );
                q.bind_list(ids.iter().map(String::as_str));
                q.push(" GROUP BY w.`vpc_id`");
                let networks = if ids.is_empty() {
                    HashMap::new()
                } else {
                    group_stats(db, &q).await?
                };
                for r in rows.iter_mut() {
                    let id = s(r, "id");
                    put(r, "wire_count", wires.get(&id).copied().unwrap_or(0));
                    put(
                        r,
                        "network_count",
                        networks
                            .get(&id)
                            .and_then(|v| v.first())
                            .copied()
                            .unwrap_or(0),
                    );
                }
            }
            "wire" => {
                add_zone_region(db, rows).await?;
                add_names(db, rows, "vpc_id", &VPCS, "vpc").await?;
                let networks =
                    count_by(db, "networks_tbl", "wire_id", &ids, "`deleted` = 0").await?;
                let hosts = count_by(db, "hostwires_tbl", "wire_id", &ids, "").await?;
                for r in rows.iter_mut() {
                    let id = s(r, "id");
                    put(r, "networks", networks.get(&id).copied().unwrap_or(0));
                    put(r, "host_count", hosts.get(&id).copied().unwrap_or(0));
                }
            }
            "network" => self.network_details(rows, &ids).await?,
            "reservedip" => {
                add_names(db, rows, "network_id", &NETWORKS, "network").await?;
                let now = cloudpods_apis::time::now();
                for r in rows.iter_mut() {
                    let exp = s(r, "expired_at");
                    put(r, "expired", !exp.is_empty() && exp <= now);
                }
            }
            "host" => self.host_details(rows, &ids).await?,
            "storage" => self.storage_details(rows, &ids).await?,
            "schedtag" => {
                let hosts = count_by(db, "aggregate_hosts_tbl", "schedtag_id", &ids, "").await?;
                for r in rows.iter_mut() {
                    let n = hosts.get(&s(r, "id")).copied().unwrap_or(0);
                    put(r, "host_count", n);
                    if s(r, "resource_type") == "hosts" {
                        put(r, "resource_count", n);
                    }
                    put(r, "join_model_keyword", "hostschedtag");
                }
            }
            "serversku" => {
                add_names(db, rows, "cloudregion_id", &CLOUDREGIONS, "cloudregion").await?;
                add_names(db, rows, "zone_id", &ZONES, "zone").await?;
                for r in rows.iter_mut() {
                    let region = r.get("cloudregion").cloned().unwrap_or(Value::Null);
                    r.insert("region".into(), region);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        // --- public cloud (crate::cloud::ops) ---
        if crate::cloud::ops::prepare_create(&self.region, ctx, self.desc, row, input).await? {
            return Ok(());
        }
        match self.desc.keyword {
            "zone" | "vpc" => {
                let region = self
                    .resolve(
                        ctx,
                        row,
                        input,
                        &["cloudregion", "cloudregion_id", "region", "region_id"],
                        &CLOUDREGIONS,
                        "cloudregion_id",
                    )
                    .await?;
                if region.is_none() {
                    row.insert("cloudregion_id".into(), json!(crate::DEFAULT_REGION_ID));
                }
                if let Some(Value::String(c)) = row.get("cidr_block") {
                    ipam::parse_cidrs(c)
                        .map_err(|e| HttpError::input(format!("cidr_block: {e}")))?;
                }
            }
            "wire" => {
                let zone = self
                    .resolve(ctx, row, input, &["zone", "zone_id"], &ZONES, "zone_id")
                    .await?
                    .ok_or_else(|| HttpError::missing("zone is required"))?;
                let vpc = match self
                    .resolve(ctx, row, input, &["vpc", "vpc_id"], &VPCS, "vpc_id")
                    .await?
                {
                    Some(v) => v,
                    None => {
                        row.insert("vpc_id".into(), json!(crate::DEFAULT_VPC_ID));
                        crud::must_get(self.db().read(), &VPCS, crate::DEFAULT_VPC_ID).await?
                    }
                };
                if s(&zone, "cloudregion_id") != s(&vpc, "cloudregion_id") {
                    return Err(HttpError::input(format!(
                        "zone {} and vpc {} are in different cloud regions",
                        s(&zone, "name"),
                        s(&vpc, "name")
                    )));
                }
                check_wire_values(row)?;
            }
            "network" => self.validate_network_create(ctx, row, input).await?,
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
                let addr = s(row, "ip_addr");
                let ip = ipam::ip_to_u32(&addr).ok_or_else(|| {
                    HttpError::input(format!("ip_addr {addr:?} is not an IPv4 address"))
                })?;
                row.insert("ip_addr".into(), json!(ipam::u32_to_ip(ip)));
                let range = NetRange::from_row(&net).map_err(HttpError::input)?;
                if !range.contains(ip) {
                    return Err(HttpError::input(format!(
                        "address {addr} is outside network {} ({} - {})",
                        range.name,
                        ipam::u32_to_ip(range.start),
                        ipam::u32_to_ip(range.end)
                    )));
                }
                if let Some(d) = get_str(input, "duration") {
                    let secs = parse_duration(&d)?;
                    row.insert(
                        "expired_at".into(),
                        json!(cloudpods_apis::time::format(
                            chrono::Utc::now() + chrono::Duration::seconds(secs)
                        )),
                    );
                }
            }
            "host" => {
                self.resolve(ctx, row, input, &["zone", "zone_id"], &ZONES, "zone_id")
                    .await?
                    .ok_or_else(|| HttpError::missing("zone is required"))?;
                check_host_values(row)?;
                self.check_access_mac(row, None).await?;
            }
            "storage" => {
                self.resolve(ctx, row, input, &["zone", "zone_id"], &ZONES, "zone_id")
                    .await?
                    .ok_or_else(|| HttpError::missing("zone is required"))?;
                check_storage_values(row)?;
            }
            "schedtag" => {
                one_of(row, "default_strategy", SCHEDTAG_STRATEGIES)?;
                one_of(row, "resource_type", SCHEDTAG_RESOURCES)?;
            }
            "serversku" => {
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
                if let Some(zone) = self
                    .resolve(ctx, row, input, &["zone", "zone_id"], &ZONES, "zone_id")
                    .await?
                    && s(&zone, "cloudregion_id") != s(row, "cloudregion_id")
                {
                    return Err(HttpError::input(format!(
                        "zone {} is not in cloud region {}",
                        s(&zone, "name"),
                        s(row, "cloudregion_id")
                    )));
                }
                check_sku_values(row)?;
            }
            _ => {}
        }
        // Shared with every domain when a system admin creates it (Cloudpods'
        // infrastructure default); otherwise private to the owner.
        if self.desc.sharable
            && ctx.max_scope(self.desc.plural, "perform", Some("public")) == Some(Scope::System)
        {
            row.entry("is_public").or_insert(json!(true));
            row.entry("public_scope").or_insert(json!("system"));
        }
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, input: &Object) -> Result<Vec<Row>> {
        // --- public cloud (crate::cloud::ops) ---
        if let Some(done) = crate::cloud::ops::create(&self.region, ctx, self.desc, &rows).await? {
            return Ok(done);
        }
        match self.desc.keyword {
            "reservedip" => {
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let net = crud::get(self.db().read(), &NETWORKS, &s(&r, "network_id"))
                        .await?
                        .ok_or_else(|| HttpError::not_found("network not found"))?;
                    out.push(ipam::reserve(self.db(), &net, r).await?);
                }
                Ok(out)
            }
            "network" => {
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let vpc = self.vpc_of_wire(&s(&r, "wire_id")).await?;
                    // Overlap check and insert as one step per VPC.
                    let _guard =
                        ipam::local_lock(self.db(), &format!("vpc:{}", s(&vpc, "id"))).await;
                    self.check_network_fits(&vpc, &r, None).await?;
                    out.extend(generic::insert_rows(self, ctx, vec![r], input).await?);
                }
                Ok(out)
            }
            _ => generic::insert_rows(self, ctx, rows, input).await,
        }
    }

    async fn post_create(&self, _ctx: &Ctx, rows: &[Row], _input: &Object) -> Result<()> {
        for r in rows {
            self.placement_changed(&s(r, "id"));
        }
        Ok(())
    }

    async fn post_update(&self, _ctx: &Ctx, obj: &Row, _changes: &Row) -> Result<()> {
        self.placement_changed(&s(obj, "id"));
        Ok(())
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        obj: &Row,
        changes: &mut Row,
        _input: &Object,
    ) -> Result<()> {
        // What the object will be: stored values (nulls left out, so only
        // an explicit null in the input is refused) with the changes.
        let mut merged: Row = obj
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        merged.extend(changes.clone());
        match self.desc.keyword {
            "wire" => check_wire_values(&merged)?,
            "host" => {
                check_host_values(&mut merged)?;
                if let Some(mac) = merged.get("access_mac").cloned()
                    && changes.contains_key("access_mac")
                {
                    changes.insert("access_mac".into(), mac);
                    self.check_access_mac(changes, Some(&s(obj, "id"))).await?;
                }
            }
            "storage" => check_storage_values(&merged)?,
            "schedtag" => one_of(&merged, "default_strategy", SCHEDTAG_STRATEGIES)?,
            "serversku" => check_sku_values(&merged)?,
            "network" => {
                check_network_values(&mut merged)?;
                if let Some(v) = merged.get("vlan_id")
                    && changes.contains_key("vlan_id")
                {
                    changes.insert("vlan_id".into(), v.clone());
                }
                self.update_network_range(obj, changes).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        generic::validate_delete_common(self.desc, obj)?;
        let live = "`deleted` = 0";
        match self.desc.keyword {
            "cloudregion" => {
                if s(obj, "id") == crate::DEFAULT_REGION_ID {
                    return Err(HttpError::protected(
                        "the default cloud region cannot be deleted",
                    ));
                }
                self.refuse_if_used(
                    obj,
                    &[
                        ("zones_tbl", "cloudregion_id", live, "zones"),
                        ("vpcs_tbl", "cloudregion_id", live, "vpcs"),
                    ],
                )
                .await
            }
            "zone" => {
                self.refuse_if_used(
                    obj,
                    &[
                        ("hosts_tbl", "zone_id", live, "hosts"),
                        ("wires_tbl", "zone_id", live, "wires"),
                        ("storages_tbl", "zone_id", live, "storages"),
                    ],
                )
                .await
            }
            "vpc" => {
                if s(obj, "id") == crate::DEFAULT_VPC_ID {
                    return Err(HttpError::protected("the default vpc cannot be deleted"));
                }
                self.refuse_if_used(obj, &[("wires_tbl", "vpc_id", live, "wires")])
                    .await
            }
            "wire" => {
                self.refuse_if_used(
                    obj,
                    &[
                        ("networks_tbl", "wire_id", live, "networks"),
                        ("hostwires_tbl", "wire_id", "", "hosts attached"),
                    ],
                )
                .await
            }
            // Reserved addresses go with the network (Cloudpods releases
            // them); addresses given to guests, hosts or EIPs keep it.
            "network" => {
                self.refuse_if_used(
                    obj,
                    &[
                        ("guestnetworks_tbl", "network_id", "", "guest NICs"),
                        ("hostnetworks_tbl", "network_id", "", "host addresses"),
                        ("elasticips_tbl", "network_id", live, "EIPs"),
                    ],
                )
                .await
            }
            "host" => {
                if b(obj, "enabled") {
                    return Err(HttpError::invalid_status(format!(
                        "host {} is enabled, disable it before deleting it",
                        s(obj, "name")
                    )));
                }
                self.refuse_if_used(obj, &[("guests_tbl", "host_id", live, "servers")])
                    .await
            }
            "storage" => {
                self.refuse_if_used(
                    obj,
                    &[
                        ("disks_tbl", "storage_id", live, "disks"),
                        ("snapshots_tbl", "storage_id", live, "snapshots"),
                        ("hoststorages_tbl", "storage_id", "", "hosts attached"),
                    ],
                )
                .await
            }
            "schedtag" => {
                self.refuse_if_used(
                    obj,
                    &[("aggregate_hosts_tbl", "schedtag_id", "", "hosts tagged")],
                )
                .await
            }
            "serversku" => {
                let mut q = Sql::new(
                    "SELECT COUNT(*) FROM `guests_tbl` WHERE `deleted` = 0 AND `instance_type` = ",
                );
                q.bind(s(obj, "name"));
                let n = crud::fetch_i64(self.db().read(), &q).await?;
                if n > 0 {
                    return Err(HttpError::not_empty(format!(
                        "serversku {} is in use: {n} servers",
                        s(obj, "name")
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        // --- public cloud (crate::cloud::ops) ---
        if let Some(done) = crate::cloud::ops::delete(&self.region, ctx, self.desc, &obj).await? {
            return Ok(done);
        }
        let id = s(&obj, "id");
        let out = self.delete_row(ctx, obj, q).await?;
        self.placement_changed(&id);
        Ok(out)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        let id = s(&obj, "id");
        // A heartbeat changes nothing the scheduler uses unless the host
        // was not online.
        let changes_placement = !(self.desc.keyword == "host"
            && (action == "sync-image-cache"
                || (action == "ping"
                    && s(&obj, "host_status") == "online"
                    && s(&obj, "status") == "running")));
        let out = self.perform_action(ctx, obj, action, input).await?;
        if changes_placement {
            self.placement_changed(&id);
        }
        Ok(out)
    }

    async fn get_spec(&self, ctx: &Ctx, obj: Row, spec: &str, q: &Object) -> Result<Value> {
        match (self.desc.keyword, spec) {
            ("host", "spec") => {
                let id = s(&obj, "id");
                let nics = count_by(
                    self.db(),
                    "hostwires_tbl",
                    "host_id",
                    std::slice::from_ref(&id),
                    "",
                )
                .await?;
                Ok(json!({
                    "cpu": i(&obj, "cpu_count"),
                    "mem": i(&obj, "mem_size"),
                    "nic_count": nics.get(&id).copied().unwrap_or(0),
                    "manufacture": "",
                    "model": s(&obj, "cpu_desc"),
                    "disk": {},
                    "driver": s(&obj, "host_type"),
                }))
            }
            ("network", "reserved-ips") => {
                let rows =
                    store::rows_in(self.db(), &RESERVEDIPS, "network_id", &[s(&obj, "id")]).await?;
                let mut ips: Vec<String> = rows.iter().map(|r| s(r, "ip_addr")).collect();
                ips.sort_by_key(|ip| ipam::ip_to_u32(ip).unwrap_or(0));
                Ok(json!({"reserved_ips": ips}))
            }
            ("network", "addresses") => self.network_addresses(ctx, &obj).await,
            _ => generic::spec_common(self, ctx, obj, spec, q).await,
        }
    }
}

fn check_sku_values(row: &Row) -> Result<()> {
    non_negative(
        row,
        &[
            "sys_disk_max_size_gb",
            "data_disk_max_count",
            "nic_max_count",
        ],
    )?;
    for k in ["cpu_core_count", "memory_size_mb"] {
        if let Some(v) = row.get(k)
            && v.as_i64().is_none_or(|n| n < 1)
        {
            return Err(HttpError::input(format!("{k} must be at least 1, got {v}")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// networks

impl Infra {
    async fn reload(&self, id: &str) -> Result<Value> {
        Ok(Value::Object(
            crud::must_get(self.db().write(), self.desc, id).await?,
        ))
    }

    /// Live-migrate each running guest off host `id`: per guest
    /// `{id, name, status, moving, reason}`.
    async fn evacuate(&self, ctx: &Ctx, id: &str) -> Result<Vec<Value>> {
        let spec = cloudpods_db::ListSpec {
            conds: vec![crud::eq("host_id", id)],
            ..Default::default()
        };
        let (guests, _) = crud::list(self.db(), &GUESTS, &spec).await?;
        let mut out = Vec::new();
        for g in guests {
            let st = s(&g, "status");
            let (moving, reason) = if st != cloudpods_apis::compute::status::RUNNING {
                (
                    false,
                    format!(
                        "status {st}: only running guests move live (cold-migrate a stopped one)"
                    ),
                )
            } else {
                let call = crate::tasks::Call {
                    region: &self.region,
                    ctx,
                    obj: &g,
                    action: "live-migrate",
                    input: &Object::new(),
                };
                match crate::tasks::actions::perform(call).await {
                    Ok(_) => (true, String::new()),
                    Err(e) => (false, e.details),
                }
            };
            out.push(
                json!({"id": s(&g, "id"), "name": s(&g, "name"), "status": st,
                            "moving": moving, "reason": reason}),
            );
        }
        Ok(out)
    }

    async fn vpc_of_wire(&self, wire_id: &str) -> Result<Row> {
        let wire = crud::get(self.db().read(), &WIRES, wire_id)
            .await?
            .ok_or_else(|| HttpError::not_found(format!("wire {wire_id} not found")))?;
        crud::get(self.db().read(), &VPCS, &s(&wire, "vpc_id"))
            .await?
            .ok_or_else(|| {
                HttpError::not_found(format!("vpc of wire {} not found", s(&wire, "name")))
            })
    }

    async fn validate_network_create(
        &self,
        ctx: &Ctx,
        row: &mut Row,
        input: &Object,
    ) -> Result<()> {
        // The wire: given, or the only one of a zone in a VPC.
        let wire = match self
            .resolve(ctx, row, input, &["wire", "wire_id"], &WIRES, "wire_id")
            .await?
        {
            Some(w) => w,
            None => {
                let (Some(z), Some(v)) = (
                    get_str_any(input, &["zone", "zone_id"]),
                    get_str_any(input, &["vpc", "vpc_id"]),
                ) else {
                    return Err(HttpError::missing(
                        "wire is required (or zone and vpc to find it)",
                    ));
                };
                let zone = self.find(ctx, &ZONES, &z).await?;
                let vpc = self.find(ctx, &VPCS, &v).await?;
                let spec = cloudpods_db::ListSpec {
                    conds: vec![
                        crud::eq("zone_id", s(&zone, "id")),
                        crud::eq("vpc_id", s(&vpc, "id")),
                    ],
                    limit: Some(2),
                    ..Default::default()
                };
                let mut wires = crud::list(self.db(), &WIRES, &spec).await?.0;
                match wires.len() {
                    0 => {
                        return Err(HttpError::not_found(format!(
                            "no wire of vpc {v} in zone {z}"
                        )));
                    }
                    1 => {}
                    _ => {
                        return Err(HttpError::conflict(format!(
                            "several wires of vpc {v} in zone {z}: give the wire"
                        )));
                    }
                }
                let w = wires.remove(0);
                row.insert("wire_id".into(), json!(s(&w, "id")));
                w
            }
        };
        let vpc = self.vpc_of_wire(&s(&wire, "id")).await?;
        if s(&vpc, "status") != "available" {
            return Err(HttpError::invalid_status(format!(
                "vpc {} is {}, not available",
                s(&vpc, "name"),
                s(&vpc, "status")
            )));
        }
        // `guest_ip_prefix` (or `ip_prefix`) fills in what is not given.
        if let Some(prefix) = get_str_any(input, &["guest_ip_prefix", "ip_prefix"]) {
            let gw = row
                .get("guest_gateway")
                .and_then(Value::as_str)
                .map(str::to_string);
            let p = ipam::expand_prefix(&prefix, gw.as_deref()).map_err(HttpError::input)?;
            row.entry("guest_ip_start").or_insert(json!(p.start));
            row.entry("guest_ip_end").or_insert(json!(p.end));
            row.entry("guest_ip_mask").or_insert(json!(p.mask));
            row.entry("guest_gateway").or_insert(json!(p.gateway));
        }
        generic::check_required(self.desc, row)?;
        let mask = row
            .get("guest_ip_mask")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        ipam::validate_range(
            &s(row, "guest_ip_start"),
            &s(row, "guest_ip_end"),
            mask,
            row.get("guest_gateway").and_then(Value::as_str),
        )
        .map_err(HttpError::input)?;
        // Normalise (` 10.0.0.5` → `10.0.0.5`).
        for k in ["guest_ip_start", "guest_ip_end", "guest_gateway"] {
            if let Some(v) = row.get(k).and_then(Value::as_str).and_then(ipam::ip_to_u32) {
                row.insert(k.into(), json!(ipam::u32_to_ip(v)));
            }
        }
        check_network_values(row)?;
        if s(row, "server_type") != "eip" {
            row.remove("bgp_type");
        }
        if s(row, "server_type") == "eip" && s(&vpc, "id") != crate::DEFAULT_VPC_ID {
            return Err(HttpError::input(format!(
                "eip networks live in the default vpc, not in {}",
                s(&vpc, "name")
            )));
        }
        row.entry("status").or_insert(json!("available"));
        // Checked here for a clear early answer, and again under the VPC
        // lock when inserting.
        self.check_network_fits(&vpc, row, None).await
    }

    /// The range of `net` must lie inside the VPC's CIDR blocks (when it
    /// has any) and overlap no other network of the VPC (409).
    async fn check_network_fits(&self, vpc: &Row, net: &Row, except: Option<&str>) -> Result<()> {
        let range = NetRange::from_row(net).map_err(HttpError::input)?;
        let cidr = s(vpc, "cidr_block");
        if !cidr.is_empty() {
            let blocks = ipam::parse_cidrs(&cidr).map_err(HttpError::input)?;
            if !blocks
                .iter()
                .any(|(lo, hi)| *lo <= range.start && range.end <= *hi)
            {
                return Err(HttpError::input(format!(
                    "{} - {} is outside the cidr_block {cidr} of vpc {}",
                    ipam::u32_to_ip(range.start),
                    ipam::u32_to_ip(range.end),
                    s(vpc, "name")
                )));
            }
        }
        let mut q = Sql::new(format!(
            "SELECT {} FROM `networks_tbl` WHERE `deleted` = 0 AND `wire_id` IN \
             (SELECT `id` FROM `wires_tbl` WHERE `deleted` = 0 AND `vpc_id` = ",
            crud::column_list(&NETWORKS)
        ));
        q.bind(s(vpc, "id")).push(")");
        if let Some(id) = except {
            q.push(" AND `id` <> ").bind(id);
        }
        for other in crud::fetch_rows(self.db().write(), &NETWORKS, &q).await? {
            let Ok(o) = NetRange::from_row(&other) else {
                continue;
            };
            if o.start <= range.end && range.start <= o.end {
                return Err(HttpError::conflict(format!(
                    "{} - {} overlaps network {} ({} - {}) in vpc {}",
                    ipam::u32_to_ip(range.start),
                    ipam::u32_to_ip(range.end),
                    o.name,
                    ipam::u32_to_ip(o.start),
                    ipam::u32_to_ip(o.end),
                    s(vpc, "name")
                )));
            }
        }
        Ok(())
    }

    /// Change a network's range under its allocation lock: refused when an
    /// address in use would fall outside it, or it would overlap another
    /// network. Applied here (and removed from `changes`) so that no
    /// allocation can run between the check and the change.
    async fn update_network_range(&self, obj: &Row, changes: &mut Row) -> Result<()> {
        let touches = RANGE_COLUMNS
            .iter()
            .any(|k| changes.get(*k).is_some_and(|v| Some(v) != obj.get(*k)));
        if !touches {
            return Ok(());
        }
        let db = self.db();
        let id = s(obj, "id");
        let vpc = self.vpc_of_wire(&s(obj, "wire_id")).await?;
        let _guard = ipam::local_lock(db, &format!("vpc:{}", s(&vpc, "id"))).await;
        ipam::with_network_lock(db, &id, async {
            let current = crud::get(db.write(), &NETWORKS, &id)
                .await?
                .ok_or_else(|| HttpError::not_found(format!("network {id} not found")))?;
            let mut merged = current.clone();
            for k in RANGE_COLUMNS {
                if let Some(v) = changes.get(*k) {
                    merged.insert((*k).into(), v.clone());
                }
            }
            ipam::validate_range(
                &s(&merged, "guest_ip_start"),
                &s(&merged, "guest_ip_end"),
                merged
                    .get("guest_ip_mask")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                merged.get("guest_gateway").and_then(Value::as_str),
            )
            .map_err(HttpError::input)?;
            self.check_network_fits(&vpc, &merged, Some(&id)).await?;
            let range = NetRange::from_row(&merged).map_err(HttpError::input)?;
            let held = ipam::held_addrs(db, &id).await?;
            let mut outside: Vec<u32> = held.into_iter().filter(|ip| !range.contains(*ip)).collect();
            outside.sort_unstable();
            if let Some(first) = outside.first() {
                return Err(HttpError::input(format!(
                    "{} addresses in use would fall outside the new range {} - {} of network {} (first: {})",
                    outside.len(),
                    ipam::u32_to_ip(range.start),
                    ipam::u32_to_ip(range.end),
                    s(obj, "name"),
                    ipam::u32_to_ip(*first)
                )));
            }
            let mut ch = Row::new();
            for k in RANGE_COLUMNS {
                if let Some(v) = changes.remove(*k) {
                    ch.insert((*k).into(), v);
                }
            }
            crud::update(db.write(), &NETWORKS, &id, &ch).await?;
            Ok(())
        })
        .await
    }

    async fn network_details(&self, rows: &mut [Row], ids: &[String]) -> Result<()> {
        let db = self.db();
        let wires = add_names(db, rows, "wire_id", &WIRES, "wire").await?;
        let vpc_ids: Vec<String> = wires.values().map(|w| s(w, "vpc_id")).collect();
        let zone_ids: Vec<String> = wires.values().map(|w| s(w, "zone_id")).collect();
        let vpcs = store::by_id(db, &VPCS, &vpc_ids).await?;
        let zones = store::by_id(db, &ZONES, &zone_ids).await?;
        let region_ids: Vec<String> = vpcs.values().map(|v| s(v, "cloudregion_id")).collect();
        let regions = store::by_id(db, &CLOUDREGIONS, &region_ids).await?;
        let now = cloudpods_apis::time::now();
        let nics = count_by(
            db,
            "guestnetworks_tbl",
            "network_id",
            ids,
            "`ip_addr` IS NOT NULL AND `ip_addr` <> ''",
        )
        .await?;
        let hosts = count_by(db, "hostnetworks_tbl", "network_id", ids, "").await?;
        let eips = count_by(
            db,
            "elasticips_tbl",
            "network_id",
            ids,
            "`deleted` = 0 AND `ip_addr` IS NOT NULL AND `ip_addr` <> ''",
        )
        .await?;
        let mut rq = Sql::new(
            "SELECT `network_id`, COUNT(*) FROM `reservedips_tbl` WHERE \
             (`expired_at` IS NULL OR `expired_at` = '' OR `expired_at` > ",
        );
        rq.bind(now).push(") AND `network_id` IN ");
        rq.bind_list(ids.iter().map(String::as_str));
        rq.push(" GROUP BY `network_id`");
        let reserved = if ids.is_empty() {
            HashMap::new()
        } else {
            group_stats(db, &rq).await?
        };
        for r in rows.iter_mut() {
            let id = s(r, "id");
            if let Some(w) = wires.get(&s(r, "wire_id")) {
                let (vid, zid) = (s(w, "vpc_id"), s(w, "zone_id"));
                if let Some(v) = vpcs.get(&vid) {
                    put(r, "vpc", s(v, "name"));
                    let rid = s(v, "cloudregion_id");
                    if let Some(reg) = regions.get(&rid) {
                        put(r, "cloudregion", s(reg, "name"));
                    }
                    put(r, "cloudregion_id", rid);
                }
                put(r, "vpc_id", vid);
                if let Some(z) = zones.get(&zid) {
                    put(r, "zone", s(z, "name"));
                }
                put(r, "zone_id", zid);
            }
            let n = |m: &HashMap<String, i64>| m.get(&id).copied().unwrap_or(0);
            let (vnics, bm, eip) = (n(&nics), n(&hosts), n(&eips));
            let res = reserved
                .get(&id)
                .and_then(|v| v.first())
                .copied()
                .unwrap_or(0);
            let total = vnics + bm + eip + res;
            put(r, "vnics", vnics);
            put(r, "bm_vnics", bm);
            put(r, "eip_vnics", eip);
            put(r, "reserve_vnics", res);
            put(r, "total", total);
            put(r, "ports_used", total);
            if let Ok(range) = NetRange::from_row(r) {
                put(r, "ports", range.size());
                put(r, "ports_free", (range.size() as i64 - total).max(0));
                put(r, "exit", ipam::is_exit_address(range.start));
                put(
                    r,
                    "guest_ip_prefix",
                    format!(
                        "{}/{}",
                        ipam::u32_to_ip(range.start & ipam::mask_bits(range.mask)),
                        range.mask
                    ),
                );
            }
        }
        Ok(())
    }

    /// `GET /networks/{id}/addresses`: who holds which address. A shared
    /// network is seen by many tenants; each sees only the holders it may
    /// see itself (its guests and EIPs; hosts and reservations with an
    /// infrastructure grant), as Cloudpods filters the address details by
    /// the caller's scope.
    async fn network_addresses(&self, ctx: &Ctx, net: &Row) -> Result<Value> {
        let db = self.db();
        let id = s(net, "id");
        let id = std::slice::from_ref(&id);
        let mut out = Vec::new();
        // (holder rows, holder kind, its table, owner column, extra column)
        let holders: [(&ModelDesc, &str, &'static ModelDesc, &str, &str); 4] = [
            (&GUESTNETWORKS, "guest", &GUESTS, "guest_id", "mac_addr"),
            (&HOSTNETWORKS, "host", &HOSTS, "host_id", "mac_addr"),
            (&RESERVEDIPS, "reserved", &RESERVEDIPS, "id", "notes"),
            (&EIPS, "eip", &EIPS, "id", ""),
        ];
        let mut held: Vec<(&'static ModelDesc, Vec<Value>)> = Vec::new();
        for (rows_of, kind, owner_desc, owner_col, extra) in holders {
            let rows = store::rows_in(db, rows_of, "network_id", id).await?;
            let entries = rows
                .iter()
                .map(|r| {
                    let mut e = json!({"ip_addr": s(r, "ip_addr"), "owner_type": kind,
                                       "owner_id": s(r, owner_col)});
                    if !extra.is_empty() {
                        e[extra] = json!(s(r, extra));
                    }
                    e
                })
                .collect();
            held.push((owner_desc, entries));
        }
        for (desc, entries) in held {
            let Some(scope) = ctx.max_scope_on(desc, "list", None) else {
                continue;
            };
            let owners: Vec<String> = entries
                .iter()
                .filter_map(|a| a["owner_id"].as_str().map(str::to_string))
                .collect();
            let visible =
                store::ids_matching(db, desc, &owners, ctx.visibility(desc, scope)).await?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|a| a["owner_id"].as_str().is_some_and(|o| visible.contains(o))),
            );
        }
        out.retain(|a| a["ip_addr"].as_str().is_some_and(|x| !x.is_empty()));
        out.sort_by_key(|a| ipam::ip_to_u32(a["ip_addr"].as_str().unwrap_or("")).unwrap_or(0));
        Ok(json!({"addresses": out}))
    }
}

// ---------------------------------------------------------------------------
// hosts and storages

impl Infra {
    /// `access_mac` identifies a machine: two hosts may not share one.
    async fn check_access_mac(&self, row: &Row, except: Option<&str>) -> Result<()> {
        let mac = s(row, "access_mac");
        if mac.is_empty() {
            return Ok(());
        }
        let mut q =
            Sql::new("SELECT COUNT(*) FROM `hosts_tbl` WHERE `deleted` = 0 AND `access_mac` = ");
        q.bind(mac.as_str());
        if let Some(id) = except {
            q.push(" AND `id` <> ").bind(id);
        }
        if crud::fetch_i64(self.db().read(), &q).await? > 0 {
            return Err(HttpError::conflict(format!(
                "access_mac {mac} belongs to another host"
            )));
        }
        Ok(())
    }

    /// `storage_stats` of a ping: what the agent measured on its storages.
    async fn record_storage_stats(&self, host_id: &str, input: &Object) -> Result<()> {
        let Some(Value::Array(stats)) = input.get("storage_stats") else {
            return Ok(());
        };
        let attached: HashSet<String> =
            store::rows_in(self.db(), &HOSTSTORAGES, "host_id", &[host_id.to_string()])
                .await?
                .iter()
                .map(|r| s(r, "storage_id"))
                .collect();
        for st in stats {
            let sid = st["storage_id"].as_str().unwrap_or_default();
            let Some(used) = st["actual_capacity_used_mb"].as_i64() else {
                continue;
            };
            if attached.contains(sid) && used >= 0 {
                let mut ch = Row::new();
                ch.insert("actual_capacity_used".into(), json!(used));
                crud::update(self.db().write(), &STORAGES, sid, &ch).await?;
            }
        }
        Ok(())
    }

    /// After a host is deleted: drop its joints, free its addresses, and
    /// delete its local storages that nothing else uses.
    async fn detach_host(&self, host_id: &str) -> Result<()> {
        let db = self.db();
        let hid = [host_id.to_string()];
        for n in store::rows_in(db, &HOSTNETWORKS, "host_id", &hid).await? {
            crud::purge(db.write(), &HOSTNETWORKS, &s(&n, "row_id")).await?;
            ipam::record_freed(db, &s(&n, "network_id"), &s(&n, "ip_addr")).await?;
        }
        for desc in [&HOSTWIRES, &HOSTSCHEDTAGS] {
            for r in store::rows_in(db, desc, "host_id", &hid).await? {
                crud::purge(db.write(), desc, &s(&r, "row_id")).await?;
            }
        }
        let joints = store::rows_in(db, &HOSTSTORAGES, "host_id", &hid).await?;
        let storage_ids: Vec<String> = joints.iter().map(|r| s(r, "storage_id")).collect();
        for j in &joints {
            crud::purge(db.write(), &HOSTSTORAGES, &s(j, "row_id")).await?;
        }
        let storages = store::by_id(db, &STORAGES, &storage_ids).await?;
        let others = count_by(db, "hoststorages_tbl", "storage_id", &storage_ids, "").await?;
        let disks = count_by(db, "disks_tbl", "storage_id", &storage_ids, "`deleted` = 0").await?;
        for (sid, st) in &storages {
            let local = LOCAL_STORAGE_TYPES.contains(&s(st, "storage_type").as_str());
            if local && !others.contains_key(sid) && !disks.contains_key(sid) {
                crud::delete(db.write(), &STORAGES, sid).await?;
            }
        }
        crate::storagecache::forget_host(db, host_id).await?;
        Ok(())
    }

    async fn host_details(&self, rows: &mut [Row], ids: &[String]) -> Result<()> {
        let db = self.db();
        add_zone_region(db, rows).await?;
        // Guests per host: count, vCPUs, memory, by state.
        let mut guests = HashMap::new();
        if !ids.is_empty() {
            let d = db.dialect();
            let mut q = Sql::new(format!(
                "SELECT `host_id`, COUNT(*), {}, {}, {}, {}, {}, {} FROM `guests_tbl` \
                 WHERE `deleted` = 0 AND `host_id` IN ",
                d.sum_int("`vcpu_count`"),
                d.sum_int("`vmem_size`"),
                d.sum_int("CASE WHEN `status` = 'running' THEN 1 ELSE 0 END"),
                d.sum_int("CASE WHEN `status` = 'ready' THEN 1 ELSE 0 END"),
                d.sum_int("CASE WHEN `pending_deleted` = 1 THEN 1 ELSE 0 END"),
                d.sum_int("CASE WHEN `is_system` = 1 THEN 0 ELSE 1 END"),
            ));
            q.bind_list(ids.iter().map(String::as_str));
            q.push(" GROUP BY `host_id`");
            guests = group_stats(db, &q).await?;
        }
        // Local storages attached to each host.
        let joints = store::rows_in(db, &HOSTSTORAGES, "host_id", ids).await?;
        let storage_ids = ids_of(&joints, "storage_id");
        let storages = store::by_id(db, &STORAGES, &storage_ids).await?;
        let used = disk_usage(db, &storage_ids).await?;
        let mut per_host: HashMap<String, Vec<&Row>> = HashMap::new();
        for j in &joints {
            if let Some(st) = storages.get(&s(j, "storage_id"))
                && LOCAL_STORAGE_TYPES.contains(&s(st, "storage_type").as_str())
            {
                per_host.entry(s(j, "host_id")).or_default().push(st);
            }
        }
        // Schedtags of each host.
        let tag_joints = store::rows_in(db, &HOSTSCHEDTAGS, "host_id", ids).await?;
        let tags = store::by_id(db, &SCHEDTAGS, &ids_of(&tag_joints, "schedtag_id")).await?;
        for r in rows.iter_mut() {
            let id = s(r, "id");
            let g = guests.get(&id).cloned().unwrap_or_default();
            let at = |k: usize| g.get(k).copied().unwrap_or(0);
            let (count, vcpu, vmem, running, ready, pending, nonsys) =
                (at(0), at(1), at(2), at(3), at(4), at(5), at(6));
            put(r, "guests", count);
            put(r, "nonsystem_guests", nonsys);
            put(r, "running_guests", running);
            put(r, "ready_guests", ready);
            put(r, "other_guests", (count - running - ready).max(0));
            put(r, "pending_deleted_guests", pending);
            put(r, "cpu_commit", vcpu);
            put(r, "mem_commit", vmem);
            // Rates against what is left after the host's reservation, as
            // Cloudpods' GetCpuCount/GetMemSize compute it.
            let cpus = (i(r, "cpu_count") - i(r, "cpu_reserved")).max(0) as f64;
            let mem = (i(r, "mem_size") - i(r, "mem_reserved")).max(0) as f64;
            put(r, "cpu_commit_rate", rate(vcpu as f64, cpus));
            put(r, "mem_commit_rate", rate(vmem as f64, mem));
            put(
                r,
                "cpu_commit_bound",
                float(r, "cpu_cmtbound").unwrap_or(0.0),
            );
            put(
                r,
                "mem_commit_bound",
                float(r, "mem_cmtbound").unwrap_or(0.0),
            );
            let (mut cap, mut virt, mut st_used) = (0i64, 0f64, 0i64);
            for st in per_host.get(&id).map(Vec::as_slice).unwrap_or_default() {
                let c = i(st, "capacity") - i(st, "reserved");
                cap += c.max(0);
                virt += c.max(0) as f64 * float(st, "cmtbound").unwrap_or(1.0);
                st_used += used.get(&s(st, "id")).copied().unwrap_or(0);
            }
            put(r, "storage", cap);
            put(r, "storage_used", st_used);
            put(r, "storage_virtual", virt.round() as i64);
            put(r, "storage_free", (virt.round() as i64 - st_used).max(0));
            put(r, "storage_commit_rate", rate(st_used as f64, cap as f64));
            let mine: Vec<Value> = tag_joints
                .iter()
                .filter(|t| s(t, "host_id") == id)
                .filter_map(|t| tags.get(&s(t, "schedtag_id")))
                .map(|t| json!({"id": s(t, "id"), "name": s(t, "name"),
                                "default": s(t, "default_strategy"), "resource_type": s(t, "resource_type")}))
                .collect();
            put(r, "schedtags", Value::Array(mine));
        }
        Ok(())
    }

    async fn storage_details(&self, rows: &mut [Row], ids: &[String]) -> Result<()> {
        let db = self.db();
        add_zone_region(db, rows).await?;
        let used = disk_usage(db, ids).await?;
        let disks = count_by(db, "disks_tbl", "storage_id", ids, "`deleted` = 0").await?;
        let joints = store::rows_in(db, &HOSTSTORAGES, "storage_id", ids).await?;
        let hosts = store::by_id(db, &HOSTS, &ids_of(&joints, "host_id")).await?;
        for r in rows.iter_mut() {
            let id = s(r, "id");
            let cap = i(r, "capacity");
            let bound = float(r, "cmtbound").unwrap_or(1.0);
            let u = used.get(&id).copied().unwrap_or(0);
            // Same arithmetic as the scheduler's placement, so what the
            // list shows free is what a create can get.
            let virt = cap as f64 * bound;
            let free = (virt - i(r, "reserved") as f64 - u as f64).max(0.0);
            put(r, "used_capacity", u);
            put(r, "virtual_capacity", virt.round() as i64);
            put(r, "free_capacity", free.round() as i64);
            put(
                r,
                "commit_rate",
                rate(u as f64, (cap - i(r, "reserved")) as f64),
            );
            put(r, "commit_bound", bound);
            put(r, "disk_count", disks.get(&id).copied().unwrap_or(0));
            let attached: Vec<Value> = joints
                .iter()
                .filter(|j| s(j, "storage_id") == id)
                .filter_map(|j| hosts.get(&s(j, "host_id")))
                .map(|h| {
                    json!({"id": s(h, "id"), "name": s(h, "name"),
                                "status": s(h, "status"), "host_status": s(h, "host_status")})
                })
                .collect();
            put(r, "hosts", Value::Array(attached));
        }
        Ok(())
    }
}

/// Deletes and actions behind the scheduler notification in [`Model`].
impl Infra {
    async fn delete_row(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let id = s(&obj, "id");
        match self.desc.keyword {
            "network" => {
                let db = self.db().clone();
                // Under the lock: no allocation may slip in between the
                // in-use check and the delete.
                let nid = id.clone();
                ipam::with_network_lock(&db, &id, async {
                    self.validate_delete(ctx, &obj, q).await?;
                    let mut del = Sql::new("DELETE FROM `reservedips_tbl` WHERE `network_id` = ");
                    del.bind(nid.as_str());
                    del.query()?
                        .execute(db.write())
                        .await
                        .map_err(DbError::from)?;
                    generic::delete_row(self, ctx, obj.clone(), q).await
                })
                .await
            }
            "host" => {
                let out = generic::delete_row(self, ctx, obj, q).await?;
                self.detach_host(&id).await?;
                Ok(out)
            }
            _ => generic::delete_row(self, ctx, obj, q).await,
        }
    }

    async fn perform_action(
        &self,
        ctx: &Ctx,
        obj: Row,
        action: &str,
        input: Object,
    ) -> Result<Value> {
        let db = self.db();
        let id = s(&obj, "id");
        match (self.desc.keyword, action) {
            // Agent heartbeat: online again, whatever the background check
            // decided while it was silent.
            ("host", "ping") => {
                let mut ch = Row::new();
                ch.insert("last_ping_at".into(), json!(cloudpods_apis::time::now()));
                ch.insert("host_status".into(), json!("online"));
                if s(&obj, "status") != "running" {
                    ch.insert("status".into(), json!("running"));
                }
                crud::update(db.write(), &HOSTS, &id, &ch).await?;
                self.record_storage_stats(&id, &input).await?;
                Ok(json!({"name": s(&obj, "name"), "host_status": "online"}))
            }
            // The agent's whole image cache (crate::storagecache).
            ("host", "sync-image-cache") => {
                crate::storagecache::sync_host_cache(db, ctx, &obj, &input).await
            }
            ("host", "online") => {
                let mut ch = Row::new();
                ch.insert("host_status".into(), json!("online"));
                ch.insert("last_ping_at".into(), json!(cloudpods_apis::time::now()));
                crud::update(db.write(), &HOSTS, &id, &ch).await?;
                self.reload(&id).await
            }
            ("host", "offline") => {
                let mut ch = Row::new();
                ch.insert("host_status".into(), json!("offline"));
                crud::update(db.write(), &HOSTS, &id, &ch).await?;
                if let Some(reason) = get_str(&input, "reason") {
                    tracing::info!(host = %s(&obj, "name"), %reason, "host set offline");
                }
                self.reload(&id).await
            }
            // Maintenance: no new guests here (the scheduler skips the
            // host), and each running guest is live-migrated away; the
            // answer says, per guest, what moves and what cannot.
            ("host", "host-maintenance" | "host-exit-maintenance") => {
                let mut ch = Row::new();
                ch.insert("is_maintenance".into(), json!(action == "host-maintenance"));
                crud::update(db.write(), &HOSTS, &id, &ch).await?;
                let mut out = self.reload(&id).await?;
                if action == "host-maintenance" {
                    out["guests"] = Value::Array(self.evacuate(ctx, &id).await?);
                }
                Ok(out)
            }
            ("storage", "online" | "offline") => {
                store::set_status(db, &STORAGES, &id, action, None).await?;
                self.reload(&id).await
            }
            ("network", "reserve-ip") => {
                let mut ips = get_strs(&input, "ips");
                if ips.is_empty()
                    && let Some(ip) = get_str_any(&input, &["ip", "ip_addr"])
                {
                    ips.push(ip);
                }
                if ips.is_empty() {
                    return Err(HttpError::missing("ips is required"));
                }
                let expired_at = match get_str(&input, "duration") {
                    Some(d) => Some(cloudpods_apis::time::format(
                        chrono::Utc::now() + chrono::Duration::seconds(parse_duration(&d)?),
                    )),
                    None => None,
                };
                let mut reserved = Vec::new();
                for ip in &ips {
                    let v = ipam::ip_to_u32(ip).ok_or_else(|| {
                        HttpError::input(format!("{ip:?} is not an IPv4 address"))
                    })?;
                    let mut r = Row::new();
                    r.insert("ip_addr".into(), json!(ipam::u32_to_ip(v)));
                    r.insert(
                        "notes".into(),
                        json!(get_str(&input, "notes").unwrap_or_default()),
                    );
                    if let Some(e) = &expired_at {
                        r.insert("expired_at".into(), json!(e));
                    }
                    if let Some(st) = get_str(&input, "status") {
                        r.insert("status".into(), json!(st));
                    }
                    crud::prepare_insert(&RESERVEDIPS, &mut r);
                    reserved.push(Value::Object(ipam::reserve(db, &obj, r).await?));
                }
                Ok(json!({"reservedips": reserved}))
            }
            ("network", "release-reserved-ip") => {
                let ip = get_str_any(&input, &["ip", "ip_addr"])
                    .ok_or_else(|| HttpError::missing("ip is required"))?;
                let mut q = Sql::new("DELETE FROM `reservedips_tbl` WHERE `network_id` = ");
                q.bind(id.as_str())
                    .push(" AND `ip_addr` = ")
                    .bind(ip.trim());
                let n = q
                    .query()?
                    .execute(db.write())
                    .await
                    .map_err(DbError::from)?
                    .rows_affected();
                if n == 0 {
                    return Err(HttpError::invalid_status(format!(
                        "address {ip} of network {} is not reserved",
                        s(&obj, "name")
                    )));
                }
                self.reload(&id).await
            }
            _ => generic::perform_common(self, ctx, obj, action, input).await,
        }
    }

    /// Tell the scheduler what this object's change may affect.
    fn placement_changed(&self, id: &str) {
        let sched = self.region.scheduler();
        match self.desc.keyword {
            "host" => sched.invalidate_host(id),
            "storage" | "network" | "reservedip" | "wire" | "zone" | "schedtag" => {
                sched.invalidate_all()
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1H").unwrap(), 3600);
        assert_eq!(parse_duration("2d").unwrap(), 2 * 86_400);
        assert_eq!(parse_duration("1W").unwrap(), 7 * 86_400);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("H").is_err());
        assert!(parse_duration("0D").is_err());
        assert!(parse_duration("-1D").is_err());
        assert!(parse_duration("5X").is_err());
        assert!(parse_duration("1日").is_err());
        assert!(parse_duration("99999999999Y").is_err());
    }

    #[test]
    fn names_and_macs() {
        assert!(is_domain("ntp.example.com"));
        assert!(!is_domain("bad_name.com"));
        assert!(!is_domain("-a.com"));
        assert!(is_mac("00:22:aa:bb:cc:dd"));
        assert!(!is_mac("00:22:aa:bb:cc"));
        let mut r = Row::new();
        r.insert("guest_dns".into(), json!("8.8.8.8, 1.1.1.1"));
        assert!(address_list(&r, "guest_dns", false).is_ok());
        r.insert("guest_dns".into(), json!("8.8.8.8,dns.example.com"));
        assert!(address_list(&r, "guest_dns", false).is_err());
        assert!(address_list(&r, "guest_dns", true).is_ok());
    }

    #[test]
    fn host_values() {
        let mut r = Row::new();
        r.insert("cpu_cmtbound".into(), json!(0));
        assert!(check_host_values(&mut r).is_err());
        r.insert("cpu_cmtbound".into(), json!(-1.5));
        assert!(check_host_values(&mut r).is_err());
        r.insert("cpu_cmtbound".into(), json!(4));
        r.insert("mem_cmtbound".into(), Value::Null);
        assert!(check_host_values(&mut r).is_err());
        r.insert("mem_cmtbound".into(), json!(1.2));
        assert!(check_host_values(&mut r).is_ok());
        r.insert("cpu_count".into(), json!(4));
        r.insert("cpu_reserved".into(), json!(8));
        assert!(check_host_values(&mut r).is_err());
        r.insert("cpu_reserved".into(), json!(1));
        r.insert("access_mac".into(), json!("00-22-AA-BB-CC-DD"));
        assert!(check_host_values(&mut r).is_ok());
        assert_eq!(r["access_mac"], json!("00:22:aa:bb:cc:dd"));
        r.insert("manager_uri".into(), json!("ftp://x"));
        assert!(check_host_values(&mut r).is_err());
    }

    #[test]
    fn rates_round_like_cloudpods() {
        assert_eq!(rate(3.0, 8.0), 0.38);
        assert_eq!(rate(0.0, 8.0), 0.0);
        assert_eq!(rate(3.0, 0.0), 0.0);
    }
}
