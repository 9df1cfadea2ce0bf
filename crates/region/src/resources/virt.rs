//! Virtual resources other than servers: disks, snapshots, keypairs,
//! security groups and rules, EIPs.
//!
//! Every create checks the owner's quota and inserts its rows (and the task
//! that drives them) in one transaction, so a refused create leaves nothing
//! behind and two concurrent creates cannot both slip under a limit (see
//! `crate::quota`). Actions on one object serialise through compare-and-set
//! on its status; a wrong status answers 400 InvalidStatusError.
//!
//! For the servers engineer: [`ensure_default_secgroup`] returns (creating
//! on first use) a project's `default` security group, and
//! [`release_server_eips`] dissociates the EIPs of a deleted server.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_apis::lenient::size_mb;
use cloudpods_apis::scheduler::{SchedDisk, ScheduleInput};
use cloudpods_db::{Db, DbError, DbTx, ModelDesc, Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::params::{flag, get_bool, get_i64, get_str, get_str_any};
use cloudpods_rest::{Ctx, HttpError, Model, Object, Result, Service};
use serde_json::{Value, json};

use super::Basic;
use super::servers::find_visible;
use crate::Region;
use crate::models::*;
use crate::store::{self, i, s};

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let r = || region.clone();
    svc.model(Arc::new(Disks { region: r() }))
        .model(Arc::new(Snapshots { region: r() }))
        .model(Arc::new(Keypairs { region: r() }))
        .model(Arc::new(Secgroups { region: r() }))
        .model(Arc::new(Secgrouprules { region: r() }))
        .model(Arc::new(Eips { region: r() }))
}

// ---------------------------------------------------------------------------
// shared helpers

/// Largest disk (MB): 16 TiB.
const MAX_DISK_MB: i64 = 16 * 1024 * 1024;

use crate::resources::servers::task_on as new_task;

/// Compare-and-set a status inside `tx` (with extra column changes).
async fn cas_in(
    tx: &mut DbTx,
    desc: &ModelDesc,
    id: &str,
    from: &[&str],
    changes: Row,
    to: &str,
) -> Result<bool> {
    Ok(store::cas_status_in(tx, desc, id, from, changes, to).await?)
}

async fn status_error(db: &Db, desc: &ModelDesc, id: &str, action: &str) -> HttpError {
    let now = match crud::get(db.read(), desc, id).await {
        Ok(Some(r)) => s(&r, "status"),
        _ => "deleted".into(),
    };
    HttpError::invalid_status(format!(
        "Cannot do {action} {} in status {now}",
        desc.keyword
    ))
}

/// A size in MB: a number (MB) or a string with a unit (`10g`, `512M`).
fn parse_size(key: &str, v: &Value) -> Result<i64> {
    let bad = || HttpError::input(format!("invalid {key} {v}: expected MB or a size like 10g"));
    let mb = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(bad)?,
        Value::String(t) => {
            let t = t.trim();
            match t.strip_prefix('-') {
                Some(rest) => -(size_mb(rest).ok_or_else(bad)?),
                None => size_mb(t).ok_or_else(bad)?,
            }
        }
        _ => return Err(bad()),
    };
    if mb <= 0 || mb > MAX_DISK_MB {
        return Err(HttpError::input(format!(
            "{key} must be between 1 MB and 16 TB, got {mb} MB"
        )));
    }
    Ok(mb)
}

fn commit_err(e: sqlx::Error) -> HttpError {
    HttpError::from(DbError::from(e))
}

fn caller_project(ctx: &Ctx) -> Option<&str> {
    Some(ctx.identity.project_id.as_str()).filter(|p| !p.is_empty())
}

// ---------------------------------------------------------------------------
// disks

pub struct Disks {
    pub region: Arc<Region>,
}

/// Where a new disk may go, from the create input.
struct DiskPlacement {
    disk: SchedDisk,
    prefer_host: String,
    prefer_zone: String,
}

impl Disks {
    async fn placement(&self, ctx: &Ctx, input: &Object, size: i64) -> Result<DiskPlacement> {
        let region = &self.region;
        let mut disk = SchedDisk {
            size,
            ..Default::default()
        };
        if let Some(b) = get_str_any(input, &["backend", "storage_type"]) {
            disk.backend = b;
        }
        if let Some(m) = get_str(input, "medium") {
            if !["ssd", "rotate", "hybrid"].contains(&m.as_str()) {
                return Err(HttpError::input(format!(
                    "medium must be ssd, rotate or hybrid, got {m:?}"
                )));
            }
            disk.medium = m;
        }
        if let Some(st) = get_str_any(input, &["storage", "storage_id"]) {
            let row = find_visible(region, ctx, &STORAGES, &st)
                .await
                .map_err(|_| HttpError::not_found(format!("storage {st} not found")))?;
            if !store::b(&row, "enabled") {
                return Err(HttpError::invalid_status(format!(
                    "storage {} is disabled",
                    s(&row, "name")
                )));
            }
            if !disk.backend.is_empty() && disk.backend != s(&row, "storage_type") {
                return Err(HttpError::input(format!(
                    "storage {} is of type {}, not {}",
                    s(&row, "name"),
                    s(&row, "storage_type"),
                    disk.backend
                )));
            }
            disk.storage_id = s(&row, "id");
        }
        let mut prefer_host = String::new();
        if let Some(h) = get_str_any(input, &["prefer_host", "prefer_host_id", "host"]) {
            if ctx.max_scope("disks", "create", None) != Some(Scope::System) {
                return Err(HttpError::forbidden(
                    "only system admins may choose the host",
                ));
            }
            let host = find_visible(region, ctx, &HOSTS, &h)
                .await
                .map_err(|_| HttpError::not_found(format!("host {h} not found")))?;
            prefer_host = s(&host, "id");
        }
        let mut prefer_zone = String::new();
        if let Some(z) = get_str_any(input, &["prefer_zone", "prefer_zone_id", "zone"]) {
            let zone = find_visible(region, ctx, &ZONES, &z)
                .await
                .map_err(|_| HttpError::not_found(format!("zone {z} not found")))?;
            prefer_zone = s(&zone, "id");
        }
        Ok(DiskPlacement {
            disk,
            prefer_host,
            prefer_zone,
        })
    }

    /// Check the create input; returns the size (MB).
    async fn check_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<i64> {
        let mut size = match input.get("size").or_else(|| input.get("disk_size")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_size("size", v)?),
        };
        if let Some(sn) = get_str_any(input, &["snapshot", "snapshot_id"]) {
            let snap = find_visible(&self.region, ctx, &SNAPSHOTS, &sn)
                .await
                .map_err(|_| HttpError::not_found(format!("snapshot {sn} not found")))?;
            if s(&snap, "status") != "ready" {
                return Err(HttpError::invalid_status(format!(
                    "snapshot {} is {}, not ready",
                    s(&snap, "name"),
                    s(&snap, "status")
                )));
            }
            let min = i(&snap, "size");
            match size {
                Some(sz) if sz < min => {
                    return Err(HttpError::input(format!(
                        "size {sz} MB is smaller than snapshot {} ({min} MB)",
                        s(&snap, "name")
                    )));
                }
                None => size = Some(min),
                _ => {}
            }
            row.insert("snapshot_id".into(), json!(s(&snap, "id")));
        }
        let size = size.ok_or_else(|| HttpError::missing("size is required"))?;
        row.insert("disk_size".into(), json!(size));
        row.insert("disk_type".into(), json!("data"));
        if let Some(f) = get_str_any(input, &["format", "disk_format"]) {
            if !["qcow2", "raw"].contains(&f.as_str()) {
                return Err(HttpError::input(format!(
                    "disk format must be qcow2 or raw, got {f:?}"
                )));
            }
            row.insert("disk_format".into(), json!(f));
        }
        if let Some(f) = get_str(input, "fs_format")
            && !["ext4", "ext3", "ext2", "xfs", "swap", "ntfs", "fat32"].contains(&f.as_str())
        {
            return Err(HttpError::input(format!(
                "fs_format must be one of ext4, ext3, ext2, xfs, swap, ntfs, fat32; got {f:?}"
            )));
        }
        if let Some(p) = get_str(input, "preallocation")
            && !["off", "metadata", "falloc", "full"].contains(&p.as_str())
        {
            return Err(HttpError::input(format!(
                "preallocation must be off, metadata, falloc or full; got {p:?}"
            )));
        }
        if let Some(img) = get_str(input, "image_id") {
            row.insert("template_id".into(), json!(img));
        }
        for k in ["iops", "throughput"] {
            if get_i64(input, k)?.is_some_and(|v| v < 0) {
                return Err(HttpError::input(format!("{k} must not be negative")));
            }
        }
        row.insert("status".into(), json!("init"));
        Ok(size)
    }

    /// The server a disk is attached to, if any.
    async fn attached_guest(&self, disk_id: &str) -> Result<Option<Row>> {
        let joints = store::rows_in(
            &self.region.db,
            &GUESTDISKS,
            "disk_id",
            &[disk_id.to_string()],
        )
        .await?;
        for j in joints {
            if let Some(g) = crud::get(self.region.db.read(), &GUESTS, &s(&j, "guest_id")).await? {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    async fn resize(&self, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
        let id = s(obj, "id");
        let v = input
            .get("size")
            .or_else(|| input.get("disk_size"))
            .ok_or_else(|| HttpError::missing("size is required"))?;
        let size = parse_size("size", v)?;
        let cur = i(obj, "disk_size");
        if size < cur {
            return Err(HttpError::input(format!(
                "disks only grow: {size} MB is smaller than the current {cur} MB"
            )));
        }
        if size == cur {
            return Ok(());
        }
        if let Some(g) = self.attached_guest(&id).await? {
            let st = s(&g, "status");
            if !["ready", "running"].contains(&st.as_str()) {
                return Err(HttpError::invalid_status(format!(
                    "Cannot resize a disk of server {} in status {st}",
                    s(&g, "name")
                )));
            }
        }
        let db = &self.region.db;
        let mut add = crate::quota::nothing();
        add.storage = size - cur;
        let mut tx = crate::quota::begin(db, &s(obj, "tenant_id")).await?;
        if let Some(msg) = crate::quota::check_owner(
            db,
            &mut tx,
            &s(obj, "tenant_id"),
            &s(obj, "domain_id"),
            self.region.opts.default_quota,
            &add,
        )
        .await?
        {
            return Err(HttpError::out_of_quota(msg));
        }
        let mut ch = Row::new();
        ch.insert("pending_size".into(), json!(size));
        if !cas_in(
            &mut tx,
            &DISKS,
            &id,
            &["ready", "resize_failed"],
            ch,
            "resizing",
        )
        .await?
        {
            drop(tx);
            return Err(status_error(db, &DISKS, &id, "resize").await);
        }
        let t = new_task(ctx, "DiskResizeTask", "disk", obj, json!({"size": size}));
        self.region
            .engine
            .submit_in(&mut tx, &t)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        tx.commit().await.map_err(commit_err)?;
        self.region.engine.wake();
        Ok(())
    }

    async fn reset(&self, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
        let id = s(obj, "id");
        let sn = get_str_any(input, &["snapshot_id", "snapshot"])
            .ok_or_else(|| HttpError::missing("snapshot_id is required"))?;
        let snap = find_visible(&self.region, ctx, &SNAPSHOTS, &sn)
            .await
            .map_err(|_| HttpError::not_found(format!("snapshot {sn} not found")))?;
        if s(&snap, "disk_id") != id {
            return Err(HttpError::input(format!(
                "snapshot {} is not a snapshot of disk {}",
                s(&snap, "name"),
                s(obj, "name")
            )));
        }
        if s(&snap, "status") != "ready" {
            return Err(HttpError::invalid_status(format!(
                "snapshot {} is {}, not ready",
                s(&snap, "name"),
                s(&snap, "status")
            )));
        }
        if let Some(g) = self.attached_guest(&id).await?
            && s(&g, "status") != "ready"
        {
            return Err(HttpError::invalid_status(format!(
                "Cannot reset a disk of server {} in status {}: stop the server first",
                s(&g, "name"),
                s(&g, "status")
            )));
        }
        let db = &self.region.db;
        let mut tx = db.begin().await?;
        if !cas_in(
            &mut tx,
            &DISKS,
            &id,
            &["ready", "reset_failed"],
            Row::new(),
            "resetting",
        )
        .await?
        {
            drop(tx);
            return Err(status_error(db, &DISKS, &id, "reset").await);
        }
        let t = new_task(
            ctx,
            "DiskResetTask",
            "disk",
            obj,
            json!({"snapshot_id": s(&snap, "id")}),
        );
        self.region
            .engine
            .submit_in(&mut tx, &t)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        tx.commit().await.map_err(commit_err)?;
        self.region.engine.wake();
        Ok(())
    }
}

/// Disk statuses from which a delete may start.
const DISK_DELETABLE: &[&str] = &[
    "ready",
    "alloc_failed",
    "resize_failed",
    "reset_failed",
    "dealloc_failed",
    "unknown",
];

#[async_trait]
impl Model for Disks {
    region_model!(DISKS);

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        // brand / provider / cloud_env (crate::cloud).
        crate::cloud::brand_filter(&DISKS, q, conds);
        if let Some(st) = get_str_any(q, &["storage", "storage_id"]) {
            let row = find_visible(&self.region, ctx, &STORAGES, &st).await?;
            conds.push(crud::eq("storage_id", s(&row, "id")));
        }
        if let Some(h) = get_str_any(q, &["host", "host_id"]) {
            let host = find_visible(&self.region, ctx, &HOSTS, &h).await?;
            let mut c = Sql::new(
                "`storage_id` IN (SELECT `storage_id` FROM `hoststorages_tbl` WHERE `host_id` = ",
            );
            c.bind(s(&host, "id")).push(")");
            conds.push(c);
        }
        if let Some(g) = get_str_any(q, &["server", "server_id", "guest", "guest_id"]) {
            let guest = find_visible(&self.region, ctx, &GUESTS, &g).await?;
            let mut c =
                Sql::new("`id` IN (SELECT `disk_id` FROM `guestdisks_tbl` WHERE `guest_id` = ");
            c.bind(s(&guest, "id")).push(")");
            conds.push(c);
        }
        if let Some(unused) = get_bool(q, "unused")? {
            conds.push(Sql::new(if unused {
                "`id` NOT IN (SELECT `disk_id` FROM `guestdisks_tbl`)"
            } else {
                "`id` IN (SELECT `disk_id` FROM `guestdisks_tbl`)"
            }));
        }
        Ok(())
    }

    /// Batched: storage, host, zone and the attached server.
    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        crate::cloud::brand_details(&self.region.db, &DISKS, rows).await?;
        let db = &self.region.db;
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let storage_ids: Vec<String> = rows.iter().map(|r| s(r, "storage_id")).collect();
        let storages = store::by_id(db, &STORAGES, &storage_ids).await?;
        let hs = store::rows_in(db, &HOSTSTORAGES, "storage_id", &storage_ids).await?;
        let host_ids: Vec<String> = hs.iter().map(|j| s(j, "host_id")).collect();
        let hosts = store::by_id(db, &HOSTS, &host_ids).await?;
        let zone_ids: Vec<String> = storages.values().map(|st| s(st, "zone_id")).collect();
        let zones = store::by_id(db, &ZONES, &zone_ids).await?;
        let gd = store::rows_in(db, &GUESTDISKS, "disk_id", &ids).await?;
        let guest_ids: Vec<String> = gd.iter().map(|j| s(j, "guest_id")).collect();
        let guests = store::by_id(db, &GUESTS, &guest_ids).await?;
        let mut host_of: HashMap<String, &Row> = HashMap::new();
        for j in &hs {
            if let Some(h) = hosts.get(&s(j, "host_id")) {
                host_of.entry(s(j, "storage_id")).or_insert(h);
            }
        }
        for r in rows.iter_mut() {
            let id = s(r, "id");
            let sid = s(r, "storage_id");
            if let Some(st) = storages.get(&sid) {
                r.insert("storage".into(), json!(s(st, "name")));
                r.insert("storage_type".into(), json!(s(st, "storage_type")));
                if let Some(z) = zones.get(&s(st, "zone_id")) {
                    r.insert("zone".into(), json!(s(z, "name")));
                    r.insert("zone_id".into(), json!(s(z, "id")));
                }
            }
            if let Some(h) = host_of.get(&sid) {
                r.insert("host".into(), json!(s(h, "name")));
                r.insert("host_id".into(), json!(s(h, "id")));
            }
            let mut attached = Vec::new();
            for j in gd.iter().filter(|j| s(j, "disk_id") == id) {
                if let Some(g) = guests.get(&s(j, "guest_id")) {
                    attached.push((j, g));
                }
            }
            if let Some((j, g)) = attached.first() {
                r.insert("guest".into(), json!(s(g, "name")));
                r.insert("guest_id".into(), json!(s(g, "id")));
                r.insert("guest_status".into(), json!(s(g, "status")));
                r.insert("index".into(), json!(i(j, "index")));
                r.insert("driver".into(), json!(s(j, "driver")));
                r.insert("cache_mode".into(), json!(s(j, "cache_mode")));
            }
            r.insert(
                "guests".into(),
                json!(
                    attached
                        .iter()
                        .map(|(_, g)| json!({"id": s(g, "id"), "name": s(g, "name"), "status": s(g, "status")}))
                        .collect::<Vec<_>>()
                ),
            );
            r.insert("guest_count".into(), json!(attached.len()));
            r.insert("brand".into(), json!("OneCloud"));
            r.insert("provider".into(), json!("OneCloud"));
            r.insert("cloud_env".into(), json!("onpremise"));
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        let size = self.check_create(ctx, row, input).await?;
        // Resolve placement inputs now so bad ones fail before anything runs.
        self.placement(ctx, input, size).await?;
        Ok(())
    }

    /// Place the disks, check the quota and insert them with their create
    /// tasks in one transaction.
    async fn create(&self, ctx: &Ctx, mut rows: Vec<Row>, input: &Object) -> Result<Vec<Row>> {
        let Some(first) = rows.first() else {
            return Ok(rows);
        };
        let size = i(first, "disk_size");
        let project = s(first, "tenant_id");
        let domain = s(first, "domain_id");
        let p = self.placement(ctx, input, size).await?;
        let region = &self.region;
        let _placing = region.placement.lock().await;
        let session = uuid::Uuid::new_v4().to_string();
        let sched = ScheduleInput {
            session_id: session.clone(),
            count: rows.len() as i64,
            disks: vec![p.disk],
            hypervisor: "kvm".into(),
            prefer_host: p.prefer_host,
            prefer_zone: p.prefer_zone,
            project: project.clone(),
            project_domain: domain.clone(),
            ..Default::default()
        };
        let scheduler = region.scheduler();
        let candidates = scheduler.schedule(&sched).await?;
        let result = async {
            let mut hosts = Vec::new();
            for (r, c) in rows.iter_mut().zip(candidates.iter()) {
                let sid = c
                    .disks
                    .first()
                    .and_then(|d| d.storage_ids.first())
                    .cloned()
                    .ok_or_else(|| HttpError::insufficient("no storage was chosen for the disk"))?;
                if let Some(st) = crud::get(region.db.read(), &STORAGES, &sid).await? {
                    r.insert("medium_type".into(), json!(s(&st, "medium_type")));
                }
                r.insert("storage_id".into(), json!(sid));
                hosts.push(c.host_id.clone());
            }
            if hosts.len() != rows.len() {
                return Err(HttpError::insufficient("no storage can hold the disks"));
            }
            let db = &region.db;
            let mut add = crate::quota::nothing();
            add.storage = size * rows.len() as i64;
            let mut tx = crate::quota::begin(db, &project).await?;
            if let Some(msg) = crate::quota::check_owner(
                db,
                &mut tx,
                &project,
                &domain,
                region.opts.default_quota,
                &add,
            )
            .await?
            {
                return Err(HttpError::out_of_quota(msg));
            }
            for (r, host) in rows.iter().zip(hosts) {
                crud::insert(&mut *tx, &DISKS, r).await?;
                let t = new_task(ctx, "DiskCreateTask", "disk", r, json!({"host_id": host}));
                region
                    .engine
                    .submit_in(&mut tx, &t)
                    .await
                    .map_err(|e| HttpError::internal(e.0))?;
            }
            tx.commit().await.map_err(commit_err)?;
            Ok(())
        }
        .await;
        scheduler.completed(&session).await;
        result?;
        region.engine.wake();
        Ok(rows)
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        _obj: &Row,
        changes: &mut Row,
        _input: &Object,
    ) -> Result<()> {
        for k in ["iops", "throughput"] {
            if changes
                .get(k)
                .and_then(Value::as_i64)
                .is_some_and(|v| v < 0)
            {
                return Err(HttpError::input(format!("{k} must not be negative")));
            }
        }
        Ok(())
    }

    async fn validate_delete(&self, ctx: &Ctx, obj: &Row, q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&DISKS, obj)?;
        if let Some(g) = self.attached_guest(&s(obj, "id")).await? {
            return Err(HttpError::not_empty(format!(
                "disk {} is attached to server {}; detach it (or delete the server) first",
                s(obj, "name"),
                s(&g, "name")
            )));
        }
        let st = s(obj, "status");
        let purge =
            flag(q, "purge")? && ctx.max_scope("disks", "delete", None) == Some(Scope::System);
        if !DISK_DELETABLE.contains(&st.as_str()) && !purge {
            return Err(HttpError::invalid_status(format!(
                "Cannot do delete disk in status {st}"
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let id = s(&obj, "id");
        let purge = flag(q, "purge")?;
        if purge && ctx.max_scope("disks", "delete", None) != Some(Scope::System) {
            return Err(HttpError::forbidden("only system admins may purge"));
        }
        // Into the recycle bin (when enabled): nothing on the host changes.
        if cloudpods_rest::generic::pending_delete_enabled()
            && !flag(q, "override_pending_delete")?
            && !purge
            && !store::b(&obj, "pending_deleted")
        {
            return cloudpods_rest::generic::delete_row(self, ctx, obj, q).await;
        }
        let prev = s(&obj, "status");
        let mut from: Vec<&str> = DISK_DELETABLE.to_vec();
        if purge {
            from.push(prev.as_str());
        }
        let db = &self.region.db;
        let mut tx = db.begin().await?;
        if !cas_in(&mut tx, &DISKS, &id, &from, Row::new(), "deallocating").await? {
            drop(tx);
            return Err(status_error(db, &DISKS, &id, "delete").await);
        }
        // A disk whose allocation failed holds nothing on the host.
        let forget = purge || prev == "alloc_failed";
        let t = new_task(
            ctx,
            "DiskDeleteTask",
            "disk",
            &obj,
            json!({"purge": forget}),
        );
        self.region
            .engine
            .submit_in(&mut tx, &t)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        // Read the answer before the task can run: it may remove the row
        // at once (nothing to free on an agent).
        let out = crud::must_get(&mut *tx, &DISKS, &id).await?;
        tx.commit().await.map_err(commit_err)?;
        self.region.engine.wake();
        Ok(out)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        match action {
            "resize" => self.resize(ctx, &obj, &input).await?,
            "reset" => self.reset(ctx, &obj, &input).await?,
            _ => {
                return cloudpods_rest::generic::perform_common(self, ctx, obj, action, input)
                    .await;
            }
        }
        Ok(Value::Object(
            crud::must_get(self.region.db.read(), &DISKS, &s(&obj, "id")).await?,
        ))
    }
}

// ---------------------------------------------------------------------------
// snapshots

pub struct Snapshots {
    pub region: Arc<Region>,
}

#[async_trait]
impl Model for Snapshots {
    region_model!(SNAPSHOTS);

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        // brand / provider / cloud_env (crate::cloud).
        crate::cloud::brand_filter(&SNAPSHOTS, q, conds);
        if let Some(d) = get_str(q, "disk") {
            let disk = find_visible(&self.region, ctx, &DISKS, &d).await?;
            conds.push(crud::eq("disk_id", s(&disk, "id")));
        }
        if let Some(st) = get_str(q, "storage") {
            let row = find_visible(&self.region, ctx, &STORAGES, &st).await?;
            conds.push(crud::eq("storage_id", s(&row, "id")));
        }
        if let Some(g) = get_str_any(q, &["server", "server_id", "guest", "guest_id"]) {
            let guest = find_visible(&self.region, ctx, &GUESTS, &g).await?;
            let mut c = Sql::new(
                "`disk_id` IN (SELECT `disk_id` FROM `guestdisks_tbl` WHERE `guest_id` = ",
            );
            c.bind(s(&guest, "id")).push(")");
            conds.push(c);
        }
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        crate::cloud::brand_details(&self.region.db, &SNAPSHOTS, rows).await?;
        let db = &self.region.db;
        let disk_ids: Vec<String> = rows.iter().map(|r| s(r, "disk_id")).collect();
        let disks = store::by_id(db, &DISKS, &disk_ids).await?;
        let storage_ids: Vec<String> = rows.iter().map(|r| s(r, "storage_id")).collect();
        let storages = store::by_id(db, &STORAGES, &storage_ids).await?;
        let gd = store::rows_in(db, &GUESTDISKS, "disk_id", &disk_ids).await?;
        let guest_ids: Vec<String> = gd.iter().map(|j| s(j, "guest_id")).collect();
        let guests = store::by_id(db, &GUESTS, &guest_ids).await?;
        for r in rows.iter_mut() {
            let did = s(r, "disk_id");
            match disks.get(&did) {
                Some(d) => {
                    r.insert("disk_name".into(), json!(s(d, "name")));
                    r.insert("disk_status".into(), json!(s(d, "status")));
                }
                None => {
                    // The disk was deleted; the snapshot outlives it.
                    r.insert("disk_status".into(), json!("deleted"));
                }
            }
            if let Some(st) = storages.get(&s(r, "storage_id")) {
                r.insert("storage".into(), json!(s(st, "name")));
                r.insert("storage_type".into(), json!(s(st, "storage_type")));
            }
            if let Some(g) = gd
                .iter()
                .filter(|j| s(j, "disk_id") == did)
                .find_map(|j| guests.get(&s(j, "guest_id")))
            {
                r.insert("guest".into(), json!(s(g, "name")));
                r.insert("guest_id".into(), json!(s(g, "id")));
            }
            r.insert("brand".into(), json!("OneCloud"));
            r.insert("provider".into(), json!("OneCloud"));
            r.insert("cloud_env".into(), json!("onpremise"));
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        let d = get_str_any(input, &["disk", "disk_id"])
            .ok_or_else(|| HttpError::missing("disk is required"))?;
        let disk = find_visible(&self.region, ctx, &DISKS, &d)
            .await
            .map_err(|_| HttpError::not_found(format!("disk {d} not found")))?;
        if s(&disk, "status") != "ready" {
            return Err(HttpError::invalid_status(format!(
                "Cannot do snapshot disk in status {}",
                s(&disk, "status")
            )));
        }
        // A snapshot belongs where its disk does.
        for k in ["tenant_id", "domain_id"] {
            row.insert(k.into(), json!(s(&disk, k)));
        }
        row.insert("disk_id".into(), json!(s(&disk, "id")));
        row.insert("storage_id".into(), json!(s(&disk, "storage_id")));
        row.insert("size".into(), json!(i(&disk, "disk_size")));
        row.insert("virtual_size".into(), json!(i(&disk, "disk_size")));
        row.insert("disk_type".into(), json!(s(&disk, "disk_type")));
        row.insert("created_by".into(), json!("manual"));
        row.insert("status".into(), json!("creating"));
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, _input: &Object) -> Result<Vec<Row>> {
        let Some(first) = rows.first() else {
            return Ok(rows);
        };
        let db = &self.region.db;
        let mut add = crate::quota::nothing();
        add.snapshot = rows.len() as i64;
        let mut tx = crate::quota::begin(db, &s(first, "tenant_id")).await?;
        if let Some(msg) = crate::quota::check_owner(
            db,
            &mut tx,
            &s(first, "tenant_id"),
            &s(first, "domain_id"),
            self.region.opts.default_quota,
            &add,
        )
        .await?
        {
            return Err(HttpError::out_of_quota(msg));
        }
        for r in &rows {
            crud::insert(&mut *tx, &SNAPSHOTS, r).await?;
            let t = new_task(ctx, "SnapshotCreateTask", "snapshot", r, json!({}));
            self.region
                .engine
                .submit_in(&mut tx, &t)
                .await
                .map_err(|e| HttpError::internal(e.0))?;
        }
        tx.commit().await.map_err(commit_err)?;
        self.region.engine.wake();
        Ok(rows)
    }

    async fn validate_delete(&self, ctx: &Ctx, obj: &Row, q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&SNAPSHOTS, obj)?;
        let st = s(obj, "status");
        let purge =
            flag(q, "purge")? && ctx.max_scope("snapshots", "delete", None) == Some(Scope::System);
        if !["ready", "create_failed", "delete_failed"].contains(&st.as_str()) && !purge {
            return Err(HttpError::invalid_status(format!(
                "Cannot do delete snapshot in status {st}"
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let id = s(&obj, "id");
        let purge = flag(q, "purge")?;
        if purge && ctx.max_scope("snapshots", "delete", None) != Some(Scope::System) {
            return Err(HttpError::forbidden("only system admins may purge"));
        }
        let prev = s(&obj, "status");
        let mut from = vec!["ready", "create_failed", "delete_failed"];
        if purge {
            from.push(prev.as_str());
        }
        let db = &self.region.db;
        let mut tx = db.begin().await?;
        if !cas_in(&mut tx, &SNAPSHOTS, &id, &from, Row::new(), "deleting").await? {
            drop(tx);
            return Err(status_error(db, &SNAPSHOTS, &id, "delete").await);
        }
        let t = new_task(
            ctx,
            "SnapshotDeleteTask",
            "snapshot",
            &obj,
            json!({"purge": purge, "prev_status": prev}),
        );
        self.region
            .engine
            .submit_in(&mut tx, &t)
            .await
            .map_err(|e| HttpError::internal(e.0))?;
        // Read the answer before the task can run: it may remove the row
        // at once (nothing to free on an agent).
        let out = crud::must_get(&mut *tx, &SNAPSHOTS, &id).await?;
        tx.commit().await.map_err(commit_err)?;
        self.region.engine.wake();
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// keypairs

pub struct Keypairs {
    pub region: Arc<Region>,
}

/// OpenSSH key handling: public key validation and fingerprints, ed25519
/// generation (ring, already in the build through rustls) and the
/// `openssh-key-v1` private key format written by hand.
pub mod sshkey {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use sha2::Digest;

    /// A parsed public key.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PublicKey {
        /// `RSA`, `ED25519` or `ECDSA` (Cloudpods' scheme names).
        pub scheme: &'static str,
        /// One line: `type base64 [comment]`.
        pub line: String,
        /// `SHA256:<base64>` as `ssh-keygen -l` prints it.
        pub fingerprint: String,
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn string(&mut self) -> Option<&'a [u8]> {
            if self.0.len() < 4 {
                return None;
            }
            let n = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize;
            let rest = &self.0[4..];
            if rest.len() < n {
                return None;
            }
            let (v, tail) = rest.split_at(n);
            self.0 = tail;
            Some(v)
        }
    }

    pub fn fingerprint(blob: &[u8]) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(sha2::Sha256::digest(blob))
        )
    }

    /// Check an OpenSSH public key line (`ssh-rsa`, `ssh-ed25519`,
    /// `ecdsa-sha2-nistp*`).
    pub fn parse_public(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        if text.contains(['\n', '\r']) {
            return Err("public_key must be a single line".into());
        }
        let mut parts = text.split_whitespace();
        let ty = parts.next().unwrap_or_default();
        let b64 = parts
            .next()
            .ok_or("public_key must be \"<type> <base64> [comment]\"")?;
        let comment: Vec<&str> = parts.collect();
        let scheme = match ty {
            "ssh-rsa" => "RSA",
            "ssh-ed25519" => "ED25519",
            "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => "ECDSA",
            other => {
                return Err(format!(
                    "unsupported public key type {other:?} (ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp256/384/521)"
                ));
            }
        };
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| "the public key body is not valid base64".to_string())?;
        let mut r = Reader(&blob);
        let bad = || format!("the public key body is not a valid {ty} key");
        if r.string().ok_or_else(bad)? != ty.as_bytes() {
            return Err(format!("the public key body does not match its type {ty}"));
        }
        match scheme {
            "RSA" => {
                let e = r.string().ok_or_else(bad)?;
                let n = r.string().ok_or_else(bad)?;
                let n = n.iter().skip_while(|b| **b == 0).count();
                if e.is_empty() || n * 8 < 1024 {
                    return Err("RSA keys must have at least 1024 bits".into());
                }
            }
            "ED25519" => {
                if r.string().ok_or_else(bad)?.len() != 32 {
                    return Err(bad());
                }
            }
            _ => {
                let curve = r.string().ok_or_else(bad)?;
                let point = r.string().ok_or_else(bad)?;
                if !ty.ends_with(std::str::from_utf8(curve).unwrap_or("?"))
                    || point.first() != Some(&4)
                {
                    return Err(bad());
                }
            }
        }
        if !r.0.is_empty() {
            return Err(bad());
        }
        let mut line = format!("{ty} {b64}");
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(&comment.join(" "));
        }
        Ok(PublicKey {
            scheme,
            line,
            fingerprint: fingerprint(&blob),
        })
    }

    fn put_string(out: &mut Vec<u8>, v: &[u8]) {
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }

    fn public_blob(pk: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put_string(&mut b, b"ssh-ed25519");
        put_string(&mut b, pk);
        b
    }

    /// A new ed25519 key pair: `(private key in OpenSSH format, public key)`.
    pub fn generate(comment: &str) -> Result<(String, PublicKey), String> {
        use ring::rand::SecureRandom;
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| "no randomness available")?;
        let kp = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| format!("cannot derive the key: {e}"))?;
        let pk = kp.public_key().as_ref().to_vec();
        let mut check = [0u8; 4];
        rng.fill(&mut check)
            .map_err(|_| "no randomness available")?;
        let blob = public_blob(&pk);

        // openssh-key-v1, unencrypted (PROTOCOL.key in OpenSSH).
        let mut private = Vec::new();
        private.extend_from_slice(&check);
        private.extend_from_slice(&check);
        put_string(&mut private, b"ssh-ed25519");
        put_string(&mut private, &pk);
        let mut secret = seed.to_vec();
        secret.extend_from_slice(&pk);
        put_string(&mut private, &secret);
        put_string(&mut private, comment.as_bytes());
        let mut pad = 1u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad += 1;
        }
        let mut body = b"openssh-key-v1\0".to_vec();
        put_string(&mut body, b"none");
        put_string(&mut body, b"none");
        put_string(&mut body, b"");
        body.extend_from_slice(&1u32.to_be_bytes());
        put_string(&mut body, &blob);
        put_string(&mut body, &private);
        let b64 = STANDARD.encode(&body);
        let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(70) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        let mut line = format!("ssh-ed25519 {}", STANDARD.encode(&blob));
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(comment);
        }
        Ok((
            pem,
            PublicKey {
                scheme: "ED25519",
                line,
                fingerprint: fingerprint(&blob),
            },
        ))
    }

    /// Encrypt with AES-256-GCM: `v1:<base64(nonce || ciphertext || tag)>`.
    pub fn seal(key: &[u8], plain: &str) -> Result<String, String> {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        use ring::rand::SecureRandom;
        let k = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| "bad key length".to_string())?,
        );
        let mut nonce = [0u8; 12];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness available")?;
        let mut data = plain.as_bytes().to_vec();
        k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    pub fn open(key: &[u8], sealed: &str) -> Result<String, String> {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let raw = sealed
            .strip_prefix("v1:")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|r| r.len() > 12)
            .ok_or("the stored private key is unreadable")?;
        let (nonce, data) = raw.split_at(12);
        let k = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| "bad key length".to_string())?,
        );
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
        let mut data = data.to_vec();
        let plain = k
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| "the stored private key cannot be decrypted".to_string())?;
        String::from_utf8(plain.to_vec()).map_err(|_| "the stored private key is not text".into())
    }

    /// Length of the plaintext behind a sealed value.
    pub fn sealed_len(sealed: &str) -> usize {
        sealed
            .strip_prefix("v1:")
            .and_then(|b| STANDARD.decode(b).ok())
            .map(|r| r.len().saturating_sub(12 + 16))
            .unwrap_or(0)
    }
}

impl Keypairs {
    /// The deployment's key for private keys at rest (made on first use).
    async fn secret(&self) -> Result<Vec<u8>> {
        let hexkey = store::setting(&self.region.db, "keypair_secret_key", || {
            let k: [u8; 32] = rand::random();
            hex::encode(k)
        })
        .await?;
        hex::decode(hexkey).map_err(|_| HttpError::internal("the keypair secret key is corrupt"))
    }

    async fn private_key(&self, ctx: &Ctx, obj: &Row) -> Result<Value> {
        if ctx.user_id() != s(obj, "user_id") {
            return Err(HttpError::forbidden(
                "only the owner of a keypair may retrieve its private key",
            ));
        }
        let gone = || {
            HttpError::not_found(format!(
                "keypair {} has no private key to show: it is shown only once (or the key was imported)",
                s(obj, "name")
            ))
        };
        let id = s(obj, "id");
        let stored = crud::get(self.region.db.read(), &KEYPAIRS, &id)
            .await?
            .map(|r| s(&r, "private_key"))
            .unwrap_or_default();
        if stored.is_empty() {
            return Err(gone());
        }
        // Take it atomically: of two concurrent readers only one wins.
        let mut ch = Row::new();
        ch.insert("private_key".into(), Value::Null);
        ch.insert("private_key_fetched".into(), json!(true));
        let mut q = crud::update_sql(&KEYPAIRS, &ch);
        q.push(" WHERE `id` = ")
            .bind(id.as_str())
            .push(" AND `private_key` = ")
            .bind(stored.as_str());
        let n = q
            .query()?
            .execute(self.region.db.write())
            .await
            .map_err(DbError::from)?
            .rows_affected();
        if n != 1 {
            return Err(gone());
        }
        let key = self.secret().await?;
        let plain = sshkey::open(&key, &stored).map_err(HttpError::internal)?;
        Ok(json!({"private_key": plain, "name": s(obj, "name"), "scheme": s(obj, "scheme")}))
    }
}

#[async_trait]
impl Model for Keypairs {
    region_model!(KEYPAIRS);

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let guests = store::rows_in(&self.region.db, &GUESTS, "keypair_id", &ids).await?;
        for r in rows.iter_mut() {
            let id = s(r, "id");
            let sealed = s(r, "private_key");
            r.insert("private_key_len".into(), json!(sshkey::sealed_len(&sealed)));
            r.insert(
                "linked_guest_count".into(),
                json!(guests.iter().filter(|g| s(g, "keypair_id") == id).count()),
            );
            r.insert("owner_id".into(), json!(s(r, "user_id")));
        }
        Ok(())
    }

    async fn validate_create(&self, _ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        let given = get_str(input, "public_key").filter(|k| !k.trim().is_empty());
        let scheme = get_str(input, "scheme").map(|x| x.to_ascii_uppercase());
        let pk = match given {
            Some(text) => sshkey::parse_public(&text).map_err(HttpError::input)?,
            None => {
                if scheme.as_deref().is_some_and(|x| x != "ED25519") {
                    return Err(HttpError::input(format!(
                        "only ED25519 keys are generated; import a {} key with public_key",
                        scheme.unwrap_or_default()
                    )));
                }
                let (private, pk) = sshkey::generate("").map_err(HttpError::internal)?;
                let key = self.secret().await?;
                row.insert(
                    "private_key".into(),
                    json!(sshkey::seal(&key, &private).map_err(HttpError::internal)?),
                );
                pk
            }
        };
        row.insert("scheme".into(), json!(pk.scheme));
        row.insert("public_key".into(), json!(pk.line));
        row.insert("fingerprint".into(), json!(pk.fingerprint));
        row.insert("private_key_fetched".into(), json!(false));
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, _input: &Object) -> Result<Vec<Row>> {
        if rows.len() > 1 {
            return Err(HttpError::input("keypairs are created one at a time"));
        }
        let db = &self.region.db;
        let mut tx = crate::quota::begin(db, caller_project(ctx).unwrap_or_default()).await?;
        if let Some(project) = caller_project(ctx) {
            for _ in &rows {
                if let Some(msg) = crate::quota::check_keypair(
                    &mut tx,
                    project,
                    ctx.user_id(),
                    self.region.opts.default_quota,
                )
                .await?
                {
                    return Err(HttpError::out_of_quota(msg));
                }
            }
        }
        for r in &rows {
            crud::insert(&mut *tx, &KEYPAIRS, r).await?;
        }
        tx.commit().await.map_err(commit_err)?;
        Ok(rows)
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&KEYPAIRS, obj)?;
        let users = store::rows_in(&self.region.db, &GUESTS, "keypair_id", &[s(obj, "id")]).await?;
        if !users.is_empty() {
            return Err(HttpError::not_empty(format!(
                "Cannot delete keypair {} used by {} server(s)",
                s(obj, "name"),
                users.len()
            )));
        }
        Ok(())
    }

    async fn get_spec(&self, ctx: &Ctx, obj: Row, spec: &str, q: &Object) -> Result<Value> {
        match spec {
            "privatekey" => self.private_key(ctx, &obj).await,
            _ => cloudpods_rest::generic::spec_common(self, ctx, obj, spec, q).await,
        }
    }
}

// ---------------------------------------------------------------------------
// security groups and rules

pub struct Secgroups {
    pub region: Arc<Region>,
}

pub struct Secgrouprules {
    pub region: Arc<Region>,
}

/// Check one rule (Cloudpods' semantics) and return its normalized
/// columns. `base` holds the current values when updating.
pub fn parse_rule(input: &Object, base: Option<&Row>) -> Result<Row> {
    let get = |k: &str| -> Option<String> {
        match input.get(k) {
            Some(Value::Null) => Some(String::new()),
            Some(v) => cloudpods_rest::params::str_of(v),
            None => base.map(|b| s(b, k)),
        }
    };
    let direction = get("direction")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| HttpError::missing("direction is required (in or out)"))?;
    if direction != "in" && direction != "out" {
        return Err(HttpError::input(format!(
            "direction must be in or out, got {direction:?}"
        )));
    }
    let protocol = get("protocol")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "any".into())
        .to_ascii_lowercase();
    if !["any", "tcp", "udp", "icmp"].contains(&protocol.as_str()) {
        return Err(HttpError::input(format!(
            "protocol must be any, tcp, udp or icmp, got {protocol:?}"
        )));
    }
    let ports = get("ports").unwrap_or_default().replace(' ', "");
    if !ports.is_empty() {
        if protocol == "any" || protocol == "icmp" {
            return Err(HttpError::input(format!(
                "ports cannot be given for protocol {protocol}"
            )));
        }
        parse_ports(&ports)?;
    }
    let cidr = normalize_cidr(&get("cidr").unwrap_or_default())?;
    let action = get("action")
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "allow".into());
    if action != "allow" && action != "deny" {
        return Err(HttpError::input(format!(
            "action must be allow or deny, got {action:?}"
        )));
    }
    let priority = match input.get("priority") {
        None => base.map(|b| i(b, "priority")).unwrap_or(1),
        Some(_) => get_i64(input, "priority")?.unwrap_or(1),
    };
    if !(1..=100).contains(&priority) {
        return Err(HttpError::input(format!(
            "priority must be between 1 and 100, got {priority}"
        )));
    }
    let description = get("description").unwrap_or_default();
    if description.chars().count() > 256 {
        return Err(HttpError::input(
            "description is too long (at most 256 characters)",
        ));
    }
    let mut r = Row::new();
    r.insert("direction".into(), json!(direction));
    r.insert("protocol".into(), json!(protocol));
    r.insert("ports".into(), json!(ports));
    r.insert("cidr".into(), json!(cidr));
    r.insert("action".into(), json!(action));
    r.insert("priority".into(), json!(priority));
    r.insert("description".into(), json!(description));
    Ok(r)
}

/// `22`, `1-1024`, `80,443` (and lists of ranges), each within 1–65535.
fn parse_ports(ports: &str) -> Result<()> {
    let bad = |why: &str| HttpError::input(format!("invalid ports {ports:?}: {why}"));
    let port = |p: &str| -> Result<u32> {
        let v: u32 = p.parse().map_err(|_| bad("ports are numbers"))?;
        if !(1..=65535).contains(&v) {
            return Err(bad("ports are between 1 and 65535"));
        }
        Ok(v)
    };
    for part in ports.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if port(a)? > port(b)? {
                    return Err(bad("a range starts before it ends"));
                }
            }
            None => {
                port(part)?;
            }
        }
    }
    Ok(())
}

/// An IPv4 CIDR (or address = /32) as its network; empty means anywhere.
fn normalize_cidr(cidr: &str) -> Result<String> {
    let c = cidr.trim();
    if c.is_empty() {
        return Ok("0.0.0.0/0".into());
    }
    let bad = || {
        HttpError::input(format!(
            "invalid cidr {cidr:?}: expected an IPv4 CIDR like 10.0.0.0/24"
        ))
    };
    let (ip, len) = match c.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u32>().map_err(|_| bad())?),
        None => (c, 32),
    };
    let ip = crate::ipam::ip_to_u32(ip).ok_or_else(bad)?;
    if len > 32 {
        return Err(bad());
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(format!("{}/{len}", crate::ipam::u32_to_ip(ip & mask)))
}

fn rules_of(input: &Object) -> Result<Vec<Row>> {
    let Some(v) = input.get("rules") else {
        return Ok(Vec::new());
    };
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![v.clone()],
        _ => return Err(HttpError::input("rules must be a list of rule objects")),
    };
    if items.len() > 200 {
        return Err(HttpError::input("at most 200 rules"));
    }
    let mut out = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(HttpError::input(format!("rule {n} must be an object")));
        };
        out.push(
            parse_rule(o, None)
                .map_err(|e| HttpError::new(e.class, format!("rule {n}: {}", e.details)))?,
        );
    }
    Ok(out)
}

/// Insert rules of a group inside `tx`.
async fn insert_rules(tx: &mut DbTx, group: &Row, rules: &[Row]) -> Result<()> {
    for r in rules {
        let mut row = r.clone();
        row.insert("secgroup_id".into(), json!(s(group, "id")));
        row.insert("tenant_id".into(), json!(s(group, "tenant_id")));
        row.insert("domain_id".into(), json!(s(group, "domain_id")));
        crud::prepare_insert(&SECGROUPRULES, &mut row);
        crud::insert(&mut **tx, &SECGROUPRULES, &row).await?;
    }
    Ok(())
}

/// Live servers using a security group.
async fn secgroup_users(db: &Db, ids: &[String]) -> Result<HashMap<String, i64>> {
    let mut out: HashMap<String, i64> = HashMap::new();
    let joints = store::rows_in(db, &GUESTSECGROUPS, "secgroup_id", ids).await?;
    let guest_ids: Vec<String> = joints.iter().map(|j| s(j, "guest_id")).collect();
    let live = store::by_id(db, &GUESTS, &guest_ids).await?;
    let mut seen = std::collections::HashSet::new();
    for j in &joints {
        if live.contains_key(&s(j, "guest_id"))
            && seen.insert((s(j, "secgroup_id"), s(j, "guest_id")))
        {
            *out.entry(s(j, "secgroup_id")).or_default() += 1;
        }
    }
    for col in ["secgrp_id", "admin_secgrp_id"] {
        for g in store::rows_in(db, &GUESTS, col, ids).await? {
            if seen.insert((s(&g, col), s(&g, "id"))) {
                *out.entry(s(&g, col)).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// The project's `default` security group, created on first use with
/// Cloudpods' permissive rules (everything in and out allowed). The
/// project's quota row lock serialises concurrent first uses.
pub async fn ensure_default_secgroup(
    region: &Region,
    tenant_id: &str,
    domain_id: &str,
) -> Result<String> {
    if let Some(r) = find_default(region.db.read(), tenant_id).await?.first() {
        return Ok(s(r, "id"));
    }
    let mut tx = crate::quota::begin(&region.db, tenant_id).await?;
    crate::quota::lock(&mut tx, tenant_id).await?;
    if let Some(r) = find_default(&mut *tx, tenant_id).await?.first() {
        return Ok(s(r, "id"));
    }
    let mut row: Row = json!({
        "name": "default", "description": "default security group",
        "tenant_id": tenant_id, "domain_id": domain_id,
        "vpc_id": crate::DEFAULT_VPC_ID, "cloudregion_id": crate::DEFAULT_REGION_ID,
        "status": "ready",
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    crud::prepare_insert(&SECGROUPS, &mut row);
    crud::insert(&mut *tx, &SECGROUPS, &row).await?;
    let mut rules = Vec::new();
    for dir in ["in", "out"] {
        let mut o = Object::new();
        o.insert("direction".into(), json!(dir));
        o.insert("priority".into(), json!(1));
        o.insert("description".into(), json!("default: allow all"));
        rules.push(parse_rule(&o, None)?);
    }
    insert_rules(&mut tx, &row, &rules).await?;
    tx.commit().await.map_err(commit_err)?;
    Ok(s(&row, "id"))
}

async fn find_default<'e, E>(exec: E, tenant_id: &str) -> Result<Vec<Row>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut q = Sql::new(format!(
        "SELECT {} FROM `secgroups_tbl` WHERE `deleted` = 0 AND `name` = 'default' AND `tenant_id` = ",
        crud::column_list(&SECGROUPS)
    ));
    q.bind(tenant_id);
    Ok(crud::fetch_rows(exec, &SECGROUPS, &q).await?)
}

#[async_trait]
impl Model for Secgroups {
    region_model!(SECGROUPS);

    async fn list_filter(
        &self,
        _ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        // brand / provider / cloud_env (crate::cloud).
        crate::cloud::brand_filter(&SECGROUPS, q, conds);
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        crate::cloud::brand_details(&self.region.db, &SECGROUPS, rows).await?;
        let db = &self.region.db;
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let mut rules = store::rows_in(db, &SECGROUPRULES, "secgroup_id", &ids).await?;
        rules.sort_by_key(|r| (-i(r, "priority"), s(r, "created_at")));
        let users = secgroup_users(db, &ids).await?;
        let vpc_ids: Vec<String> = rows.iter().map(|r| s(r, "vpc_id")).collect();
        let vpcs = store::by_id(db, &VPCS, &vpc_ids).await?;
        for r in rows.iter_mut() {
            let id = s(r, "id");
            let mine: Vec<Value> = rules
                .iter()
                .filter(|x| s(x, "secgroup_id") == id)
                .map(|x| {
                    json!({
                        "id": s(x, "id"), "direction": s(x, "direction"), "protocol": s(x, "protocol"),
                        "ports": s(x, "ports"), "cidr": s(x, "cidr"), "action": s(x, "action"),
                        "priority": i(x, "priority"), "description": s(x, "description"),
                    })
                })
                .collect();
            let dir = |d: &str| -> Vec<Value> {
                mine.iter()
                    .filter(|x| x["direction"] == d)
                    .cloned()
                    .collect()
            };
            r.insert("in_rules".into(), json!(dir("in")));
            r.insert("out_rules".into(), json!(dir("out")));
            r.insert("rules".into(), json!(mine));
            let n = users.get(&id).copied().unwrap_or(0);
            r.insert("guest_cnt".into(), json!(n));
            r.insert("total_cnt".into(), json!(n));
            if let Some(v) = vpcs.get(&s(r, "vpc_id")) {
                r.insert("vpc".into(), json!(s(v, "name")));
            }
            r.insert("brand".into(), json!("OneCloud"));
            r.insert("provider".into(), json!("OneCloud"));
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        // --- public cloud (crate::cloud::ops) ---
        if crate::cloud::ops::prepare_create(&self.region, ctx, &SECGROUPS, row, input).await? {
            return Ok(());
        }
        rules_of(input)?;
        let vpc = match get_str_any(input, &["vpc", "vpc_id"]) {
            Some(v) => s(
                &find_visible(&self.region, ctx, &VPCS, &v)
                    .await
                    .map_err(|_| HttpError::not_found(format!("vpc {v} not found")))?,
                "id",
            ),
            None => crate::DEFAULT_VPC_ID.to_string(),
        };
        row.insert("vpc_id".into(), json!(vpc));
        row.entry("cloudregion_id")
            .or_insert(json!(crate::DEFAULT_REGION_ID));
        row.insert("status".into(), json!("ready"));
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, input: &Object) -> Result<Vec<Row>> {
        // --- public cloud (crate::cloud::ops) ---
        if let Some(done) = crate::cloud::ops::create(&self.region, ctx, &SECGROUPS, &rows).await? {
            return Ok(done);
        }
        let Some(first) = rows.first() else {
            return Ok(rows);
        };
        let rules = rules_of(input)?;
        let db = &self.region.db;
        let mut add = crate::quota::nothing();
        add.secgroup = rows.len() as i64;
        let mut tx = crate::quota::begin(db, &s(first, "tenant_id")).await?;
        if let Some(msg) = crate::quota::check_owner(
            db,
            &mut tx,
            &s(first, "tenant_id"),
            &s(first, "domain_id"),
            self.region.opts.default_quota,
            &add,
        )
        .await?
        {
            return Err(HttpError::out_of_quota(msg));
        }
        for r in &rows {
            crud::insert(&mut *tx, &SECGROUPS, r).await?;
            insert_rules(&mut tx, r, &rules).await?;
        }
        tx.commit().await.map_err(commit_err)?;
        Ok(rows)
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&SECGROUPS, obj)?;
        let id = s(obj, "id");
        let n = secgroup_users(&self.region.db, std::slice::from_ref(&id))
            .await?
            .get(&id)
            .copied()
            .unwrap_or(0);
        if n > 0 {
            return Err(HttpError::not_empty(format!(
                "security group {} is used by {n} server(s)",
                s(obj, "name")
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, mut obj: Row, _q: &Object) -> Result<Row> {
        // --- public cloud (crate::cloud::ops) ---
        if let Some(done) = crate::cloud::ops::delete(&self.region, ctx, &SECGROUPS, &obj).await? {
            return Ok(done);
        }
        let id = s(&obj, "id");
        let db = &self.region.db;
        let mut tx = db.begin().await?;
        let mut q = Sql::new("UPDATE `secgrouprules_tbl` SET `deleted` = 1, `deleted_at` = ");
        q.bind(cloudpods_apis::time::now())
            .push(" WHERE `deleted` = 0 AND `secgroup_id` = ")
            .bind(id.as_str());
        q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
        crud::delete(&mut *tx, &SECGROUPS, &id).await?;
        tx.commit().await.map_err(commit_err)?;
        cloudpods_rest::metadata::clear(db, "secgroup", &id).await?;
        obj.insert("deleted".into(), json!(true));
        Ok(obj)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        match action {
            // Cloudpods' `secgroup-add-rule`: a rule through the group, for
            // callers who may change the group.
            "add-rule" => {
                let rule = parse_rule(&input, None)?;
                let mut tx = self.region.db.begin().await?;
                insert_rules(&mut tx, &obj, &[rule]).await?;
                tx.commit().await.map_err(commit_err)?;
                // A public cloud's group: the rule goes to the cloud too.
                crate::cloud::ops::rules_changed(&self.region, ctx, &s(&obj, "id")).await?;
                let mut rows =
                    [crud::must_get(self.region.db.read(), &SECGROUPS, &s(&obj, "id")).await?];
                self.details(ctx, &mut rows, &Object::new()).await?;
                let [r] = rows;
                Ok(Value::Object(r))
            }
            _ => cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await,
        }
    }
}

#[async_trait]
impl Model for Secgrouprules {
    region_model!(SECGROUPRULES);
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        &[("secgroups", "secgroup_id")]
    }

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        if let Some(g) = get_str(q, "secgroup") {
            let sg = find_visible(&self.region, ctx, &SECGROUPS, &g).await?;
            conds.push(crud::eq("secgroup_id", s(&sg, "id")));
        }
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| s(r, "secgroup_id")).collect();
        let groups = store::by_id(&self.region.db, &SECGROUPS, &ids).await?;
        for r in rows.iter_mut() {
            if let Some(g) = groups.get(&s(r, "secgroup_id")) {
                r.insert("secgroup".into(), json!(s(g, "name")));
            }
        }
        Ok(())
    }

    // Rules of a public-cloud group go to the cloud (crate::cloud::ops).
    async fn post_create(&self, ctx: &Ctx, rows: &[Row], _input: &Object) -> Result<()> {
        for r in rows {
            crate::cloud::ops::rules_changed(&self.region, ctx, &s(r, "secgroup_id")).await?;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let sg = s(&obj, "secgroup_id");
        let out = cloudpods_rest::generic::delete_row(self, ctx, obj, q).await?;
        crate::cloud::ops::rules_changed(&self.region, ctx, &sg).await?;
        Ok(out)
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        let ident = get_str(row, "secgroup_id")
            .or_else(|| get_str(input, "secgroup"))
            .ok_or_else(|| HttpError::missing("secgroup_id is required"))?;
        let groups = Secgroups {
            region: self.region.clone(),
        };
        // The rule changes the group: the caller must be allowed to.
        let group = cloudpods_rest::generic::lookup_for(&groups, ctx, &ident, "update", None)
            .await
            .map_err(|e| {
                if e.class == cloudpods_apis::ErrorClass::ResourceNotFoundError {
                    HttpError::not_found(format!("secgroup {ident} not found"))
                } else {
                    e
                }
            })?;
        let rule = parse_rule(input, None)?;
        row.extend(rule);
        row.insert("secgroup_id".into(), json!(s(&group, "id")));
        row.insert("tenant_id".into(), json!(s(&group, "tenant_id")));
        row.insert("domain_id".into(), json!(s(&group, "domain_id")));
        Ok(())
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        obj: &Row,
        changes: &mut Row,
        input: &Object,
    ) -> Result<()> {
        if input.contains_key("direction")
            && get_str(input, "direction") != Some(s(obj, "direction"))
        {
            return Err(HttpError::input("the direction of a rule cannot change"));
        }
        // Check the rule as it will be, and store it normalized.
        let rule = parse_rule(input, Some(obj))?;
        for (k, v) in rule {
            if k != "direction" {
                changes.insert(k, v);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// EIPs

pub struct Eips {
    pub region: Arc<Region>,
}

/// Dissociate every EIP of a server (call when the server goes away).
pub async fn release_server_eips(region: &Region, guest_id: &str) -> Result<()> {
    let mut q = Sql::new(
        "UPDATE `elasticips_tbl` SET `associate_id` = NULL, `associate_type` = NULL, `updated_at` = ",
    );
    q.bind(cloudpods_apis::time::now())
        .push(" WHERE `deleted` = 0 AND `associate_id` = ")
        .bind(guest_id);
    q.query()?
        .execute(region.db.write())
        .await
        .map_err(DbError::from)?;
    Ok(())
}

impl Eips {
    /// The live server an EIP is associated with (a vanished server counts
    /// as no association).
    async fn associated_server(&self, eip: &Row) -> Result<Option<Row>> {
        let aid = s(eip, "associate_id");
        if aid.is_empty() {
            return Ok(None);
        }
        Ok(crud::get(self.region.db.read(), &GUESTS, &aid).await?)
    }

    /// Candidate networks for a new EIP: the one asked for, or every EIP
    /// network the caller can use.
    async fn networks(&self, ctx: &Ctx, input: &Object) -> Result<Vec<Row>> {
        if let Some(n) = get_str_any(input, &["network", "network_id"]) {
            let net = find_visible(&self.region, ctx, &NETWORKS, &n)
                .await
                .map_err(|_| HttpError::not_found(format!("network {n} not found")))?;
            if s(&net, "server_type") != "eip" {
                return Err(HttpError::input(format!(
                    "network {} is not an EIP network (server_type {}, not eip)",
                    s(&net, "name"),
                    s(&net, "server_type")
                )));
            }
            return Ok(vec![net]);
        }
        if get_str_any(input, &["ip", "ip_addr"]).is_some() {
            return Err(HttpError::input("an address needs a network"));
        }
        let m = Basic {
            desc: &NETWORKS,
            region: self.region.clone(),
            contexts: &[],
        };
        let scope = ctx
            .max_scope("networks", "list", None)
            .unwrap_or(Scope::Project);
        let mut conds = vec![crud::eq("server_type", "eip")];
        if let Some(v) = ctx.visibility(m.desc(), scope) {
            conds.push(v);
        }
        let spec = cloudpods_db::ListSpec {
            conds,
            order: vec![("name".into(), cloudpods_db::crud::Order::Asc)],
            ..Default::default()
        };
        let nets = crud::list(&self.region.db, &NETWORKS, &spec).await?.0;
        if nets.is_empty() {
            return Err(HttpError::insufficient(
                "no EIP network (server_type eip) is available",
            ));
        }
        Ok(nets)
    }

    /// Allocate an address and insert the EIP holding it, checking the
    /// quota in the same transaction.
    async fn allocate(&self, row: &Row, nets: &[Row], ip: Option<&str>) -> Result<Row> {
        let region = self.region.clone();
        let mut last = None;
        for net in nets {
            let quota_error: Arc<std::sync::Mutex<Option<HttpError>>> = Arc::default();
            let mut base = row.clone();
            base.insert("network_id".into(), json!(s(net, "id")));
            let inserted: Arc<std::sync::Mutex<Option<Row>>> = Arc::default();
            let res =
                crate::ipam::allocate(&region.db, net, ip, region.opts.ip_reuse_after, |addr| {
                    let region = region.clone();
                    let mut r = base.clone();
                    let quota_error = quota_error.clone();
                    let inserted = inserted.clone();
                    async move {
                        r.insert("ip_addr".into(), json!(addr));
                        let db = &region.db;
                        let mut tx = crate::quota::begin(db, &s(&r, "tenant_id")).await?;
                        let mut add = crate::quota::nothing();
                        add.eip = 1;
                        if let Some(msg) = crate::quota::check_owner(
                            db,
                            &mut tx,
                            &s(&r, "tenant_id"),
                            &s(&r, "domain_id"),
                            region.opts.default_quota,
                            &add,
                        )
                        .await?
                        {
                            if let Ok(mut q) = quota_error.lock() {
                                *q = Some(HttpError::out_of_quota(msg));
                            }
                            return Err(DbError::Conflict("quota".into()));
                        }
                        crud::insert(&mut *tx, &EIPS, &r).await?;
                        tx.commit().await.map_err(DbError::from)?;
                        if let Ok(mut slot) = inserted.lock() {
                            *slot = Some(r);
                        }
                        Ok(())
                    }
                })
                .await;
            if let Some(e) = quota_error.lock().ok().and_then(|mut q| q.take()) {
                return Err(e);
            }
            match res {
                Ok(_) => {
                    return inserted
                        .lock()
                        .ok()
                        .and_then(|mut r| r.take())
                        .ok_or_else(|| HttpError::internal("the EIP row was not recorded"));
                }
                // A full network: try the next one.
                Err(e)
                    if e.class == cloudpods_apis::ErrorClass::InsufficientResourceError
                        && nets.len() > 1 =>
                {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| HttpError::insufficient("no EIP network has a free address")))
    }

    async fn associate(&self, ctx: &Ctx, obj: &Row, input: &Object) -> Result<()> {
        let id = s(obj, "id");
        let kind = get_str(input, "instance_type").unwrap_or_else(|| "server".into());
        if kind != "server" {
            return Err(HttpError::input(format!(
                "instance_type must be server, got {kind:?}"
            )));
        }
        let inst = get_str_any(input, &["instance_id", "instance", "server", "server_id"])
            .ok_or_else(|| HttpError::missing("instance_id is required"))?;
        let server = find_visible(&self.region, ctx, &GUESTS, &inst)
            .await
            .map_err(|_| HttpError::not_found(format!("server {inst} not found")))?;
        if s(&server, "tenant_id") != s(obj, "tenant_id") {
            return Err(HttpError::input(format!(
                "eip {} and server {} are in different projects",
                s(obj, "name"),
                s(&server, "name")
            )));
        }
        let sst = s(&server, "status");
        if ["start_delete", "deleting", "delete_fail"].contains(&sst.as_str())
            || store::b(&server, "pending_deleted")
        {
            return Err(HttpError::invalid_status(format!(
                "Cannot associate an eip with server {} in status {sst}",
                s(&server, "name")
            )));
        }
        if let Some(cur) = self.associated_server(obj).await? {
            return Err(HttpError::invalid_status(format!(
                "eip {} is already associated with server {}",
                s(obj, "name"),
                s(&cur, "name")
            )));
        }
        let db = &self.region.db;
        let mut tx = crate::quota::begin(db, &s(obj, "tenant_id")).await?;
        // Serialise associations within the project (one EIP per server).
        crate::quota::lock(&mut tx, &s(obj, "tenant_id")).await?;
        let mut q = Sql::new(
            "SELECT COUNT(*) FROM `elasticips_tbl` WHERE `deleted` = 0 AND `associate_id` = ",
        );
        q.bind(s(&server, "id"))
            .push(" AND `id` <> ")
            .bind(id.as_str());
        if crud::fetch_i64(&mut *tx, &q).await? > 0 {
            return Err(HttpError::invalid_status(format!(
                "server {} already has an eip",
                s(&server, "name")
            )));
        }
        let mut ch = Row::new();
        ch.insert("associate_type".into(), json!("server"));
        ch.insert("associate_id".into(), json!(s(&server, "id")));
        let mut q = crud::update_sql(&EIPS, &ch);
        q.push(" WHERE `id` = ")
            .bind(id.as_str())
            .push(" AND `deleted` = 0 AND `status` = 'ready' AND (`associate_id` IS NULL OR `associate_id` = '' OR `associate_id` = ")
            .bind(s(obj, "associate_id"))
            .push(")");
        let n = q
            .query()?
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?
            .rows_affected();
        if n != 1 {
            drop(tx);
            return Err(status_error(db, &EIPS, &id, "associate").await);
        }
        // The server's first NIC carries the EIP (server details show it).
        let mut q = Sql::new("UPDATE `guestnetworks_tbl` SET `eip_id` = ");
        q.bind(id.as_str())
            .push(" WHERE `guest_id` = ")
            .bind(s(&server, "id"))
            .push(" AND `index` = 0");
        q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
        tx.commit().await.map_err(commit_err)?;
        Ok(())
    }

    async fn dissociate(&self, obj: &Row) -> Result<()> {
        let id = s(obj, "id");
        let aid = s(obj, "associate_id");
        if aid.is_empty() {
            return Err(HttpError::invalid_status(format!(
                "eip {} is not associated",
                s(obj, "name")
            )));
        }
        let db = &self.region.db;
        let mut tx = db.begin().await?;
        let mut q = Sql::new(
            "UPDATE `elasticips_tbl` SET `associate_id` = NULL, `associate_type` = NULL, `update_version` = `update_version` + 1, `updated_at` = ",
        );
        q.bind(cloudpods_apis::time::now())
            .push(" WHERE `deleted` = 0 AND `id` = ")
            .bind(id.as_str())
            .push(" AND `associate_id` = ")
            .bind(aid.as_str());
        let n = q
            .query()?
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?
            .rows_affected();
        if n != 1 {
            return Err(HttpError::invalid_status(format!(
                "eip {} is not associated",
                s(obj, "name")
            )));
        }
        let mut q = Sql::new("UPDATE `guestnetworks_tbl` SET `eip_id` = NULL WHERE `eip_id` = ");
        q.bind(id.as_str());
        q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
        tx.commit().await.map_err(commit_err)?;
        Ok(())
    }
}

#[async_trait]
impl Model for Eips {
    region_model!(EIPS);

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        // brand / provider / cloud_env (crate::cloud).
        crate::cloud::brand_filter(&EIPS, q, conds);
        if let Some(n) = get_str(q, "network") {
            let net = find_visible(&self.region, ctx, &NETWORKS, &n).await?;
            conds.push(crud::eq("network_id", s(&net, "id")));
        }
        if let Some(g) = get_str_any(q, &["server", "server_id"]) {
            let guest = find_visible(&self.region, ctx, &GUESTS, &g).await?;
            conds.push(crud::eq("associate_id", s(&guest, "id")));
        }
        if let Some(usable) = get_bool(q, "usable")? {
            conds.push(Sql::new(if usable {
                "(`associate_id` IS NULL OR `associate_id` = '')"
            } else {
                "(`associate_id` IS NOT NULL AND `associate_id` <> '')"
            }));
        }
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        crate::cloud::brand_details(&self.region.db, &EIPS, rows).await?;
        let db = &self.region.db;
        let net_ids: Vec<String> = rows.iter().map(|r| s(r, "network_id")).collect();
        let nets = store::by_id(db, &NETWORKS, &net_ids).await?;
        let guest_ids: Vec<String> = rows.iter().map(|r| s(r, "associate_id")).collect();
        let guests = store::by_id(db, &GUESTS, &guest_ids).await?;
        for r in rows.iter_mut() {
            if let Some(n) = nets.get(&s(r, "network_id")) {
                r.insert("network".into(), json!(s(n, "name")));
            }
            if let Some(g) = guests.get(&s(r, "associate_id")) {
                r.insert("associate_name".into(), json!(s(g, "name")));
                r.insert("server".into(), json!(s(g, "name")));
            }
            r.insert("brand".into(), json!("OneCloud"));
            r.insert("provider".into(), json!("OneCloud"));
            r.insert("cloud_env".into(), json!("onpremise"));
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        // --- public cloud (crate::cloud::ops) ---
        if crate::cloud::ops::prepare_create(&self.region, ctx, &EIPS, row, input).await? {
            return Ok(());
        }
        if let Some(bw) = get_i64(input, "bandwidth")?
            && !(0..=100_000).contains(&bw)
        {
            return Err(HttpError::input(format!(
                "bandwidth must be between 0 and 100000 Mbps, got {bw}"
            )));
        }
        if let Some(c) = get_str(input, "charge_type")
            && c != "traffic"
            && c != "bandwidth"
        {
            return Err(HttpError::input(format!(
                "charge_type must be traffic or bandwidth, got {c:?}"
            )));
        }
        // Resolve the network now: a bad one fails before anything is held.
        self.networks(ctx, input).await?;
        if let Some(ip) = get_str_any(input, &["ip", "ip_addr"])
            && crate::ipam::ip_to_u32(&ip).is_none()
        {
            return Err(HttpError::input(format!("{ip:?} is not an IPv4 address")));
        }
        row.insert("mode".into(), json!("elastic_ip"));
        row.insert("status".into(), json!("ready"));
        row.insert("cloudregion_id".into(), json!(crate::DEFAULT_REGION_ID));
        Ok(())
    }

    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, input: &Object) -> Result<Vec<Row>> {
        // --- public cloud (crate::cloud::ops) ---
        if let Some(done) = crate::cloud::ops::create(&self.region, ctx, &EIPS, &rows).await? {
            return Ok(done);
        }
        let ip = get_str_any(input, &["ip", "ip_addr"]);
        if ip.is_some() && rows.len() > 1 {
            return Err(HttpError::input(
                "a fixed address cannot be given when creating more than one eip",
            ));
        }
        let nets = self.networks(ctx, input).await?;
        let mut done: Vec<Row> = Vec::new();
        for r in &rows {
            match self.allocate(r, &nets, ip.as_deref()).await {
                Ok(row) => done.push(row),
                Err(e) => {
                    // All or nothing: release what this request took.
                    for d in &done {
                        let _ = self.release(d).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        _obj: &Row,
        changes: &mut Row,
        _input: &Object,
    ) -> Result<()> {
        if let Some(bw) = changes.get("bandwidth").and_then(Value::as_i64)
            && !(0..=100_000).contains(&bw)
        {
            return Err(HttpError::input(format!(
                "bandwidth must be between 0 and 100000 Mbps, got {bw}"
            )));
        }
        Ok(())
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&EIPS, obj)?;
        if let Some(g) = self.associated_server(obj).await? {
            return Err(HttpError::not_empty(format!(
                "eip {} is associated with server {}; dissociate it first",
                s(obj, "name"),
                s(&g, "name")
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, mut obj: Row, _q: &Object) -> Result<Row> {
        // --- public cloud (crate::cloud::ops) ---
        if let Some(done) = crate::cloud::ops::delete(&self.region, ctx, &EIPS, &obj).await? {
            return Ok(done);
        }
        self.release(&obj).await?;
        obj.insert("deleted".into(), json!(true));
        Ok(obj)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        // --- public cloud (crate::cloud::ops) ---
        let call = crate::tasks::Call {
            region: &self.region,
            ctx,
            obj: &obj,
            action,
            input: &input,
        };
        if let Some(v) = crate::cloud::ops::perform_eip(call).await? {
            return Ok(v);
        }
        match action {
            "associate" => self.associate(ctx, &obj, &input).await?,
            "dissociate" => self.dissociate(&obj).await?,
            _ => {
                return cloudpods_rest::generic::perform_common(self, ctx, obj, action, input)
                    .await;
            }
        }
        Ok(Value::Object(
            crud::must_get(self.region.db.read(), &EIPS, &s(&obj, "id")).await?,
        ))
    }
}

impl Eips {
    /// Delete an EIP row and give its address back to the network.
    async fn release(&self, obj: &Row) -> Result<()> {
        let id = s(obj, "id");
        let db = &self.region.db;
        let mut tx = db.begin().await?;
        // The unique (network, address) index only sees live holders.
        let mut ch = Row::new();
        ch.insert("ip_addr".into(), Value::Null);
        crud::update(&mut *tx, &EIPS, &id, &ch).await?;
        crud::delete(&mut *tx, &EIPS, &id).await?;
        tx.commit().await.map_err(commit_err)?;
        cloudpods_rest::metadata::clear(db, "eip", &id).await?;
        crate::ipam::record_freed(db, &s(obj, "network_id"), &s(obj, "ip_addr")).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUB: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDTfHuXNpk/pAvh7kCEMM7FimpECpeku23OhPINUM16lyMXQP2fysQPyNViW+gfUl0daY0pkbKklXHU40S4p34OsXfmGskzW+VZp892/W0APYFHGaDi8wTG7grUiLCpHhlNhPDyNhbX4W6lcPz7LLdoGWJ2nCj2OJk/c0hVqoI8oTGAylj+R+qzLZnLYOdqYbAJQELBWgjwlCkXOj9u/Gi233oGUN/W02FSkcpwyalO5jRuG1t2Nl0sDccJKQOxHl1MzFOaQrI+4vBSu/Gr+RwayagrIroGC6Zcd0P5S15uYMi5fXGt7A1+C7J/xgcwXI/6iIRG2GLrdEcIlS7i2TVD test@example";
    const ECDSA_PUB: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBM6X/t8ORlAIztIy98+cacnwxlSaDaECxsM8ATJKOXspLtBHmh3Qd7+1BhMuePLSnkVgEsgIKs/Rv8l32/UmtWc=";

    #[test]
    fn public_keys_are_checked_and_fingerprinted_like_openssh() {
        let k = sshkey::parse_public(RSA_PUB).unwrap();
        assert_eq!(k.scheme, "RSA");
        assert_eq!(
            k.fingerprint,
            "SHA256:Ggvgun+xCq1erj4EqKmLRBvrQq8NlE+8+0RnKBuWTIM"
        );
        assert!(k.line.ends_with(" test@example"));
        let k = sshkey::parse_public(&format!("  {ECDSA_PUB}\n")).unwrap();
        assert_eq!(k.scheme, "ECDSA");
        assert_eq!(
            k.fingerprint,
            "SHA256:3GnRLgmo7J83f+eHmn5qlzMWdPtpGw1g+zbc28bvTrw"
        );
        for bad in [
            "",
            "ssh-rsa",
            "ssh-rsa !!!",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQDTfHuX",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAAQC=",
            "ssh-rsa AAAA\nssh-rsa AAAA",
        ] {
            assert!(sshkey::parse_public(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_keys_parse_and_round_trip() {
        let (pem, pk) = sshkey::generate("me").unwrap();
        assert_eq!(sshkey::parse_public(&pk.line).unwrap(), pk);
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let key = [7u8; 32];
        let sealed = sshkey::seal(&key, &pem).unwrap();
        assert_eq!(sshkey::sealed_len(&sealed), pem.len());
        assert_eq!(sshkey::open(&key, &sealed).unwrap(), pem);
        assert!(sshkey::open(&[8u8; 32], &sealed).is_err());
        let ssh_keygen = std::path::Path::new("/usr/bin/ssh-keygen");
        if ssh_keygen.exists() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k");
            std::fs::write(&path, &pem).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let out = std::process::Command::new(ssh_keygen)
                .arg("-y")
                .arg("-f")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let derived = String::from_utf8_lossy(&out.stdout);
            assert!(derived.starts_with(&pk.line), "{derived} vs {}", pk.line);
        }
    }

    fn rule(v: Value) -> Result<Row> {
        parse_rule(v.as_object().unwrap(), None)
    }

    #[test]
    fn rules_follow_cloudpods() {
        let r = rule(
            json!({"direction": "in", "protocol": "TCP", "ports": "80, 443", "cidr": "10.1.2.3/8"}),
        )
        .unwrap();
        assert_eq!(r["protocol"], "tcp");
        assert_eq!(r["ports"], "80,443");
        assert_eq!(r["cidr"], "10.0.0.0/8");
        assert_eq!(r["action"], "allow");
        let r = rule(json!({"direction": "out", "cidr": "192.168.1.1"})).unwrap();
        assert_eq!(r["cidr"], "192.168.1.1/32");
        assert_eq!(r["protocol"], "any");
        assert!(rule(json!({"direction": "in", "protocol": "udp", "ports": "1-65535,53"})).is_ok());
        for bad in [
            json!({}),
            json!({"direction": "both"}),
            json!({"direction": "in", "protocol": "tcp", "ports": "0"}),
            json!({"direction": "in", "protocol": "tcp", "ports": "65536"}),
            json!({"direction": "in", "protocol": "tcp", "ports": "9-1"}),
            json!({"direction": "in", "protocol": "tcp", "ports": "1-"}),
            json!({"direction": "in", "protocol": "tcp", "ports": ","}),
            json!({"direction": "in", "protocol": "icmp", "ports": "1"}),
            json!({"direction": "in", "cidr": "10.0.0.0/40"}),
            json!({"direction": "in", "cidr": "10.0.0/8"}),
            json!({"direction": "in", "priority": 0}),
            json!({"direction": "in", "priority": "high"}),
            json!({"direction": "in", "action": "drop"}),
        ] {
            assert!(rule(bad.clone()).is_err(), "{bad}");
        }
        let base =
            rule(json!({"direction": "in", "protocol": "tcp", "ports": "22", "priority": 5}))
                .unwrap();
        let upd = parse_rule(json!({"ports": "23"}).as_object().unwrap(), Some(&base)).unwrap();
        assert_eq!(upd["ports"], "23");
        assert_eq!(upd["priority"], 5);
        assert!(
            parse_rule(
                json!({"protocol": "icmp"}).as_object().unwrap(),
                Some(&base)
            )
            .is_err()
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("size", &json!(1024)).unwrap(), 1024);
        assert_eq!(parse_size("size", &json!("10g")).unwrap(), 10240);
        assert_eq!(parse_size("size", &json!("512M")).unwrap(), 512);
        for bad in [
            json!(0),
            json!(-1),
            json!("-2g"),
            json!("x"),
            json!(1.5),
            json!("17t"),
            json!(true),
        ] {
            assert!(parse_size("size", &bad).is_err(), "{bad}");
        }
    }
}
