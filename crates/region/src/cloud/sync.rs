//! The sync engine: per account, per region, diff the cloud's view against
//! our rows by external id and write only the difference.
//!
//! - Every list call of the driver follows every page or fails as a whole.
//!   A resource kind whose list failed is skipped for this run: its rows
//!   are neither changed nor deleted (a failed page never deletes rows),
//!   and the error is recorded on the account; the next run resumes.
//! - Per resource kind and region, rows are loaded once, compared field by
//!   field, and the inserts (multi-row), updates and deletes are written in
//!   one transaction. An unchanged resource costs no write, so an
//!   incremental run touches only what changed.
//! - A row that cannot be written (a conflict…) is recorded as a
//!   per-resource error; the others are written.
//! - Regions of an account sync in parallel (bounded), accounts too
//!   (`CloudState::sync_slots`).
//!
//! Ownership: managed rows carry `manager_id` (the cloudprovider) and the
//! account's domain; virtual resources (servers, disks, EIPs, networks,
//! security groups, images, snapshots) belong to the account's project.
//! Cloud regions, zones and SKUs are shared by every account of a provider,
//! as in Cloudpods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use cloudpods_cloudprovider as cp;
use cloudpods_db::{Db, DbError, ListSpec, ModelDesc, Row, Sql, crud};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// External id → our id, of one kind of row.
type Ids = HashMap<String, String>;

use super::models::*;
use crate::models::*;
use crate::store::s;

/// What one run syncs (`POST /cloudaccounts/{id}/sync` input).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncOptions {
    /// Region external ids (`us-east-1`), ids or names; empty = all.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Resource kinds; empty = all ([`RESOURCES`]).
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub full_sync: bool,
}

pub const RESOURCES: &[&str] = &[
    "zones",
    "skus",
    "vpcs",
    "networks",
    "secgroups",
    "hosts",
    "storages",
    "servers",
    "disks",
    "eips",
    "images",
    "snapshots",
];

/// One recorded failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncError {
    pub region: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_id: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    pub unchanged: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.added += o.added;
        self.updated += o.updated;
        self.removed += o.removed;
        self.unchanged += o.unchanged;
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub counts: BTreeMap<String, Counts>,
    pub errors: Vec<SyncError>,
    /// Seconds waiting for the cloud's lists (incl. decoding them), summed
    /// over regions.
    pub list_seconds: f64,
    /// Seconds diffing and writing, summed over regions.
    pub apply_seconds: f64,
}

impl Outcome {
    fn count(&mut self, resource: &str, c: &Counts) {
        self.counts.entry(resource.to_string()).or_default().add(c);
    }
    fn error(&mut self, region: &str, resource: &str, ext: &str, e: impl std::fmt::Display) {
        self.errors.push(SyncError {
            region: region.into(),
            resource: resource.into(),
            external_id: ext.into(),
            error: e.to_string(),
        });
    }
    pub fn merge(&mut self, o: Outcome) {
        self.list_seconds += o.list_seconds;
        self.apply_seconds += o.apply_seconds;
        for (k, c) in o.counts {
            self.count(&k, &c);
        }
        self.errors.extend(o.errors);
    }
}

/// Who owns the rows a provider's sync writes.
#[derive(Debug, Clone)]
pub struct Owner {
    pub manager_id: String,
    pub provider: String,
    pub domain_id: String,
    pub tenant_id: String,
}

// ---------------------------------------------------------------------------
// The generic diff.

/// One kind of rows to bring in line with the cloud.
struct Plan {
    desc: &'static ModelDesc,
    /// The rows this sync owns (manager, region…); rows outside are never
    /// touched.
    scope: Vec<Sql>,
    /// external id → columns to hold.
    desired: Vec<(String, Row)>,
    /// Columns set on insert only (owner, manager…).
    fixed: Row,
    /// Delete owned rows the cloud no longer has.
    remove: bool,
    /// Columns an existing row keeps while it is in one of these statuses
    /// (an operation of ours is in flight on it).
    keep_status_in: &'static [&'static str],
}

/// The result of a [`Plan`]: external id → our id, and what changed.
struct Applied {
    ids: HashMap<String, String>,
    counts: Counts,
    removed_ids: Vec<String>,
}

fn same(a: Option<&Value>, b: &Value) -> bool {
    match (a, b) {
        (None | Some(Value::Null), Value::Null) => true,
        (None | Some(Value::Null), Value::String(s)) => s.is_empty(),
        (Some(Value::String(x)), Value::Null) => x.is_empty(),
        (Some(Value::Number(x)), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Some(Value::Bool(x)), Value::Number(y)) => {
            (*x as i64 as f64) == y.as_f64().unwrap_or(-1.0)
        }
        (Some(x), y) => x == y,
        (None, _) => false,
    }
}

fn not_empty_external() -> Sql {
    Sql::new("`external_id` IS NOT NULL AND `external_id` <> ''")
}

fn in_ids(col: &str, ids: &[String]) -> Sql {
    crud::in_list(col, ids.iter().map(String::as_str))
}

async fn apply(
    db: &Db,
    plan: Plan,
    region: &str,
    resource: &str,
    out: &mut Outcome,
) -> Result<Applied, DbError> {
    let desc = plan.desc;
    let mut conds = plan.scope;
    conds.push(not_empty_external());
    let existing = crud::list(
        db,
        desc,
        &ListSpec {
            conds,
            ..Default::default()
        },
    )
    .await?
    .0;
    let mut by_ext: HashMap<String, Row> = HashMap::with_capacity(existing.len());
    let mut dups = Vec::new();
    for r in existing {
        let ext = s(&r, "external_id");
        match by_ext.entry(ext) {
            std::collections::hash_map::Entry::Occupied(_) => dups.push(s(&r, desc.pk())),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r);
            }
        }
    }
    let mut ids = HashMap::with_capacity(plan.desired.len());
    let mut inserts: Vec<Row> = Vec::new();
    let mut updates: Vec<(String, Row)> = Vec::new();
    let mut counts = Counts::default();
    let mut seen = HashSet::with_capacity(plan.desired.len());
    for (ext, mut fields) in plan.desired {
        if !seen.insert(ext.clone()) {
            continue;
        }
        match by_ext.get(&ext) {
            Some(row) => {
                let id = s(row, desc.pk());
                if !plan.keep_status_in.is_empty()
                    && plan.keep_status_in.contains(&s(row, "status").as_str())
                {
                    fields.remove("status");
                }
                let changes: Row = fields
                    .into_iter()
                    .filter(|(k, v)| !same(row.get(k), v))
                    .collect();
                if changes.is_empty() {
                    counts.unchanged += 1;
                } else {
                    counts.updated += 1;
                    updates.push((id.clone(), changes));
                }
                ids.insert(ext, id);
            }
            None => {
                let mut r = plan.fixed.clone();
                r.extend(fields);
                r.insert("external_id".into(), json!(ext));
                crud::prepare_insert(desc, &mut r);
                ids.insert(ext, s(&r, desc.pk()));
                inserts.push(r);
            }
        }
    }
    let mut removed_ids: Vec<String> = dups;
    if plan.remove {
        for (ext, r) in &by_ext {
            if !seen.contains(ext) {
                removed_ids.push(s(r, desc.pk()));
            }
        }
    }
    counts.removed = removed_ids.len() as u64;
    if inserts.is_empty() && updates.is_empty() && removed_ids.is_empty() {
        return Ok(Applied {
            ids,
            counts,
            removed_ids,
        });
    }
    let mut tx = db.begin().await?;
    let failed = insert_batched(&mut tx, desc, &inserts).await?;
    for (ext_row, err) in failed {
        let ext = s(&ext_row, "external_id");
        ids.remove(&ext);
        out.error(region, resource, &ext, err);
    }
    for (id, ch) in &updates {
        crud::update(&mut *tx, desc, id, ch).await?;
    }
    for chunk in removed_ids.chunks(500) {
        let mut q = if desc.soft_delete {
            let mut q = Sql::new(format!(
                "UPDATE `{}` SET `deleted` = 1, `update_version` = `update_version` + 1, `deleted_at` = ",
                desc.table
            ));
            q.bind(cloudpods_apis::time::now());
            q
        } else {
            Sql::new(format!("DELETE FROM `{}`", desc.table))
        };
        q.push(" WHERE ").append(in_ids(desc.pk(), chunk));
        q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
    }
    tx.commit().await.map_err(DbError::from)?;
    counts.added = inserts
        .iter()
        .filter(|r| ids.contains_key(&s(r, "external_id")))
        .count() as u64;
    Ok(Applied {
        ids,
        counts,
        removed_ids,
    })
}

/// Multi-row INSERTs of 200; a batch that fails is retried row by row, and
/// the rows that still fail are returned with their error.
async fn insert_batched(
    tx: &mut cloudpods_db::DbTx,
    desc: &ModelDesc,
    rows: &[Row],
) -> Result<Vec<(Row, String)>, DbError> {
    let mut failed = Vec::new();
    for chunk in rows.chunks(200) {
        let q = crud::insert_sql(desc, chunk);
        // A savepoint keeps a failed batch from poisoning the transaction.
        sqlx::query("SAVEPOINT sync_batch")
            .execute(&mut **tx)
            .await
            .map_err(DbError::from)?;
        match q.query()?.execute(&mut **tx).await {
            Ok(_) => {
                sqlx::query("RELEASE SAVEPOINT sync_batch")
                    .execute(&mut **tx)
                    .await
                    .map_err(DbError::from)?;
            }
            Err(_) => {
                sqlx::query("ROLLBACK TO SAVEPOINT sync_batch")
                    .execute(&mut **tx)
                    .await
                    .map_err(DbError::from)?;
                for r in chunk {
                    sqlx::query("SAVEPOINT sync_row")
                        .execute(&mut **tx)
                        .await
                        .map_err(DbError::from)?;
                    let q = crud::insert_sql(desc, std::slice::from_ref(r));
                    match q.query()?.execute(&mut **tx).await {
                        Ok(_) => {
                            sqlx::query("RELEASE SAVEPOINT sync_row")
                                .execute(&mut **tx)
                                .await
                                .map_err(DbError::from)?;
                        }
                        Err(e) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT sync_row")
                                .execute(&mut **tx)
                                .await
                                .map_err(DbError::from)?;
                            failed.push((r.clone(), DbError::from(e).to_string()));
                        }
                    }
                }
            }
        }
    }
    Ok(failed)
}

/// Replace the joint rows of some parents where they differ from the
/// wanted ones. `key` identifies a joint row's content.
#[allow(clippy::too_many_arguments)]
async fn sync_joint(
    db: &Db,
    desc: &'static ModelDesc,
    parent_col: &str,
    parents: &[String],
    wanted: HashMap<String, Vec<Row>>,
    key_cols: &[&str],
    region: &str,
    resource: &str,
    out: &mut Outcome,
) -> Result<(), DbError> {
    let existing = crate::store::rows_in(db, desc, parent_col, parents).await?;
    let key = |r: &Row| -> Vec<String> { key_cols.iter().map(|c| s(r, c)).collect() };
    let mut have: HashMap<String, Vec<Row>> = HashMap::new();
    for r in existing {
        have.entry(s(&r, parent_col)).or_default().push(r);
    }
    let mut purge: Vec<String> = Vec::new();
    let mut add: Vec<Row> = Vec::new();
    let mut counts = Counts::default();
    for p in parents {
        let want = wanted.get(p).cloned().unwrap_or_default();
        let got = have.get(p).cloned().unwrap_or_default();
        let mut wk: Vec<Vec<String>> = want.iter().map(key).collect();
        let mut gk: Vec<Vec<String>> = got.iter().map(key).collect();
        wk.sort();
        gk.sort();
        if wk == gk {
            counts.unchanged += want.len() as u64;
            continue;
        }
        counts.removed += got.len() as u64;
        counts.added += want.len() as u64;
        purge.extend(got.iter().map(|r| s(r, "row_id")));
        for mut r in want {
            r.insert(parent_col.into(), json!(p));
            crud::prepare_insert(desc, &mut r);
            add.push(r);
        }
    }
    if purge.is_empty() && add.is_empty() {
        out.count(resource, &counts);
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for chunk in purge.chunks(500) {
        let mut q = Sql::new(format!("DELETE FROM `{}` WHERE ", desc.table));
        q.append(in_ids("row_id", chunk));
        q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
    }
    for (r, e) in insert_batched(&mut tx, desc, &add).await? {
        counts.added = counts.added.saturating_sub(1);
        out.error(region, resource, &s(&r, parent_col), e);
    }
    tx.commit().await.map_err(DbError::from)?;
    out.count(resource, &counts);
    Ok(())
}

fn row(v: Value) -> Row {
    v.as_object().cloned().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Regions (shared by every account of a provider).

/// Make sure the provider's regions exist; returns external id → row id.
pub async fn sync_cloudregions(
    db: &Db,
    provider: &str,
    regions: &[cp::CloudRegion],
) -> Result<HashMap<String, String>, DbError> {
    let plan = Plan {
        desc: &CLOUDREGIONS,
        scope: vec![crud::eq("provider", provider)],
        desired: regions
            .iter()
            .map(|r| {
                (
                    r.external_id.clone(),
                    row(json!({"name": format!("{provider}-{}", r.name), "status": r.status})),
                )
            })
            .collect(),
        fixed: row(
            json!({"provider": provider, "environment": "public", "domain_id": "default",
                          "is_public": true, "public_scope": "system", "enabled": true}),
        ),
        remove: false,
        keep_status_in: &[],
    };
    let mut scratch = Outcome::default();
    let a = apply(db, plan, "", "cloudregions", &mut scratch).await?;
    for ext in regions.iter().map(|r| &r.external_id) {
        if !a.ids.contains_key(ext) {
            tracing::warn!(region = %ext, "cloud region could not be recorded");
        }
    }
    Ok(a.ids)
}

/// `10.0.1.0/24` → (start, end, mask, gateway) as AWS hands them out: the
/// first four and the last address of a subnet are reserved.
fn subnet_range(cidr: &str) -> Option<(String, String, i64, String)> {
    let (ip, len) = cidr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let base = crate::ipam::ip_to_u32(ip)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let net = base & mask;
    let bcast = net | !mask;
    let ip = crate::ipam::u32_to_ip;
    Some((ip(net + 4), ip(bcast - 1), len as i64, ip(net + 1)))
}

/// Everything one region's sync needs.
pub struct RegionJob {
    pub db: Db,
    pub owner: Owner,
    pub cloudregion_id: String,
    pub region_ext: String,
    pub driver: Arc<dyn cp::RegionDriver>,
    pub resources: HashSet<String>,
    /// Full sync: also the provider's instance types (a large list), and
    /// every instance and volume listed in full.
    pub full: bool,
    /// Instances and volumes as the last run saw them ([`super::fleet`]).
    pub fleet: super::fleet::FleetSlot,
}

/// Guest statuses our own tasks hold while they act on the cloud; sync
/// leaves them alone.
const GUEST_BUSY: &[&str] = &[
    "start_start",
    "start_stop",
    "start_delete",
    "deleting",
    "start_restart",
    "change_flavor",
    "init",
    "schedule",
    "deploying",
];

impl RegionJob {
    fn wants(&self, r: &str) -> bool {
        if r == "skus" {
            // Instance types rarely change and are a large answer: only on
            // a full sync or when asked for.
            return self.full || self.resources.contains(r);
        }
        self.resources.is_empty() || self.resources.contains(r)
    }

    fn fixed(&self, project: bool) -> Row {
        let mut r =
            row(json!({"manager_id": self.owner.manager_id, "domain_id": self.owner.domain_id}));
        if project {
            r.insert("tenant_id".into(), json!(self.owner.tenant_id));
        }
        r
    }

    /// A plan over this provider's rows of one kind in this region (every
    /// region-level resource: VPCs, security groups, EIPs, images).
    fn region_plan(
        &self,
        desc: &'static ModelDesc,
        project: bool,
        desired: Vec<(String, Row)>,
    ) -> Plan {
        let mut fixed = self.fixed(project);
        fixed.insert("cloudregion_id".into(), json!(self.cloudregion_id));
        Plan {
            desc,
            scope: vec![
                self.mgr(),
                crud::eq("cloudregion_id", self.cloudregion_id.as_str()),
            ],
            desired,
            fixed,
            remove: true,
            keep_status_in: &[],
        }
    }

    fn mgr(&self) -> Sql {
        crud::eq("manager_id", self.owner.manager_id.as_str())
    }

    /// `vpc_id` of this provider's VPCs in the region, deleted ones too (so
    /// that what hung below a removed VPC is removed as well).
    fn in_region_vpcs(&self, col: &str) -> Sql {
        let mut c = Sql::new(format!(
            "`{col}` IN (SELECT `id` FROM `vpcs_tbl` WHERE `manager_id` = "
        ));
        c.bind(self.owner.manager_id.as_str())
            .push(" AND `cloudregion_id` = ")
            .bind(self.cloudregion_id.as_str())
            .push(")");
        c
    }

    /// `wire_id` of this provider's wires in the region, deleted ones too.
    fn in_region_wires(&self) -> Sql {
        let mut c = Sql::new("`wire_id` IN (SELECT `id` FROM `wires_tbl` WHERE `manager_id` = ");
        c.bind(self.owner.manager_id.as_str()).push(" AND ");
        c.append(self.in_region_vpcs("vpc_id"));
        c.push(")");
        c
    }

    async fn ids_in(
        &self,
        desc: &ModelDesc,
        conds: Vec<Sql>,
    ) -> Result<Vec<(String, String)>, DbError> {
        let mut c = conds;
        c.push(not_empty_external());
        let rows = crud::list(
            &self.db,
            desc,
            &ListSpec {
                conds: c,
                columns: Some(vec!["id".into(), "external_id".into()]),
                ..Default::default()
            },
        )
        .await?
        .0;
        Ok(rows
            .iter()
            .map(|r| (s(r, "external_id"), s(r, "id")))
            .collect())
    }

    /// Instances and volumes: from the last run's view brought up to date
    /// when there is one (an incremental run), else listed in full.
    async fn fleet_lists(
        &self,
        want_vms: bool,
        want_disks: bool,
    ) -> (cp::Result<Vec<cp::Vm>>, cp::Result<Vec<cp::Disk>>) {
        let d = &self.driver;
        let mut slot = self.fleet.lock().await;
        let both = want_vms && want_disks;
        if !self.full
            && both
            && let Some(fleet) = slot.as_mut().filter(|f| f.fresh())
        {
            match fleet.refresh(d.as_ref()).await {
                Ok(()) => return (Ok(fleet.vms()), Ok(fleet.disks())),
                // The driver cannot: list in full.
                Err(cp::CloudError::NotSupported(_)) => {}
                Err(e) => {
                    // Nothing is deleted on a failed call; the next run
                    // lists in full.
                    *slot = None;
                    return (Err(e.clone()), Err(e));
                }
            }
        }
        let (vms, disks) = tokio::join!(opt(want_vms, d.vms()), opt(want_disks, d.disks()));
        *slot = match (&vms, &disks) {
            (Ok(v), Ok(dk)) if both => Some(super::fleet::Fleet::new(v, dk)),
            _ => None,
        };
        (vms, disks)
    }

    /// Sync one region; every failure is recorded in the outcome.
    pub async fn run(self) -> Outcome {
        let mut out = Outcome::default();
        if let Err(e) = self.run_inner(&mut out).await {
            out.error(&self.region_ext, "database", "", e);
        }
        out
    }

    async fn run_inner(&self, out: &mut Outcome) -> Result<(), DbError> {
        let d = &self.driver;
        let listing = std::time::Instant::now();
        // Every list in parallel; each result is handled on its own.
        let (zones, vpcs, nets, sgs, (vms, disks), eips, images, snaps, skus) = tokio::join!(
            d.zones(),
            opt(
                self.wants("vpcs") || self.wants("networks") || self.wants("servers"),
                d.vpcs()
            ),
            opt(
                self.wants("networks") || self.wants("servers"),
                d.networks()
            ),
            opt(
                self.wants("secgroups") || self.wants("servers"),
                d.secgroups()
            ),
            self.fleet_lists(
                self.wants("servers") || self.wants("disks") || self.wants("eips"),
                self.wants("disks") || self.wants("snapshots"),
            ),
            opt(self.wants("eips"), d.eips()),
            opt(self.wants("images"), d.images()),
            opt(self.wants("snapshots"), d.snapshots()),
            opt(self.wants("skus"), d.skus()),
        );
        out.list_seconds += listing.elapsed().as_secs_f64();
        let applying = std::time::Instant::now();

        let (zones, zone_ids) = self.sync_zones(zones, out).await?;
        let (host_ids, storage_ids) = self
            .sync_hosts_and_storages(zones.as_deref(), &zone_ids, out)
            .await?;
        self.sync_skus(skus, out).await?;
        let (vpcs_ok, vpc_ids) = self.sync_vpcs(vpcs, out).await?;
        let net_ids = self
            .sync_networks(nets, vpcs_ok, &vpc_ids, &zone_ids, out)
            .await?;
        let sg_ids = self.sync_secgroups(sgs, &vpc_ids, out).await?;
        let (vms_ok, vm_list, guest_ids) = self
            .sync_servers(vms, &host_ids, &net_ids, &sg_ids, out)
            .await?;
        let disk_ids = self
            .sync_disks(disks, &storage_ids, vms_ok, &vm_list, &guest_ids, out)
            .await?;
        self.sync_eips(eips, vms_ok, &guest_ids, out).await?;
        self.sync_images(images, out).await?;
        self.sync_snapshots(snaps, &disk_ids, out).await?;
        out.apply_seconds += applying.elapsed().as_secs_f64();
        Ok(())
    }

    /// Zones; the external id → id map of this region's zones.
    async fn sync_zones(
        &self,
        zones: cp::Result<Vec<cp::Zone>>,
        out: &mut Outcome,
    ) -> Result<(Option<Vec<cp::Zone>>, Ids), DbError> {
        let reg = self.region_ext.as_str();
        let zones = match zones {
            Ok(z) => {
                let plan = Plan {
                    desc: &ZONES,
                    scope: vec![crud::eq("cloudregion_id", self.cloudregion_id.as_str())],
                    desired: z
                        .iter()
                        .map(|z| {
                            (
                                z.external_id.clone(),
                                row(json!({"name": z.name, "status": z.status})),
                            )
                        })
                        .collect(),
                    fixed: row(
                        json!({"cloudregion_id": self.cloudregion_id, "domain_id": "default",
                                      "is_public": true, "public_scope": "system"}),
                    ),
                    remove: false,
                    keep_status_in: &[],
                };
                let a = apply(&self.db, plan, reg, "zones", out).await?;
                out.count("zones", &a.counts);
                Some(z)
            }
            Err(e) => {
                out.error(reg, "zones", "", e);
                None
            }
        };
        let zone_ids: HashMap<String, String> = self
            .ids_in(
                &ZONES,
                vec![crud::eq("cloudregion_id", self.cloudregion_id.as_str())],
            )
            .await?
            .into_iter()
            .collect();
        Ok((zones, zone_ids))
    }

    /// The per-zone host and storages of the provider.
    async fn sync_hosts_and_storages(
        &self,
        zones: Option<&[cp::Zone]>,
        zone_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<(Ids, Ids), DbError> {
        let reg = self.region_ext.as_str();
        let d = &self.driver;
        let zone_id_list: Vec<String> = zone_ids.values().cloned().collect();

        let mut host_ids: HashMap<String, String> = HashMap::new();
        let mut storage_ids: HashMap<String, String> = HashMap::new();
        if let Some(z) = &zones {
            let tag = &self.owner.manager_id[..8.min(self.owner.manager_id.len())];
            match d.hosts(z).await {
                Ok(hosts) => {
                    let plan = Plan {
                        desc: &HOSTS,
                        scope: vec![self.mgr(), in_ids("zone_id", &zone_id_list)],
                        desired: hosts
                            .iter()
                            .filter_map(|h| {
                                let zid = zone_ids.get(&h.zone_id)?;
                                Some((
                                    h.external_id.clone(),
                                    row(
                                        json!({"name": format!("{}-{tag}", h.name), "zone_id": zid,
                                               "host_type": h.host_type, "status": "running",
                                               "host_status": "online", "enabled": true}),
                                    ),
                                ))
                            })
                            .collect(),
                        fixed: self.fixed(false),
                        remove: true,
                        keep_status_in: &[],
                    };
                    let a = apply(&self.db, plan, reg, "hosts", out).await?;
                    out.count("hosts", &a.counts);
                }
                Err(e) => out.error(reg, "hosts", "", e),
            }
            match d.storages(z).await {
                Ok(sts) => {
                    let plan = Plan {
                        desc: &STORAGES,
                        scope: vec![self.mgr(), in_ids("zone_id", &zone_id_list)],
                        desired: sts
                            .iter()
                            .filter_map(|st| {
                                let zid = zone_ids.get(&st.zone_id)?;
                                Some((
                                    st.external_id.clone(),
                                    row(json!({"name": format!("{}-{tag}", st.name), "zone_id": zid,
                                               "storage_type": st.storage_type, "medium_type": st.medium_type,
                                               "status": "online", "enabled": true, "capacity": 0})),
                                ))
                            })
                            .collect(),
                        fixed: self.fixed(false),
                        remove: true,
                        keep_status_in: &[],
                    };
                    let a = apply(&self.db, plan, reg, "storages", out).await?;
                    out.count("storages", &a.counts);
                }
                Err(e) => out.error(reg, "storages", "", e),
            }
        }
        if !zone_id_list.is_empty() {
            host_ids = self
                .ids_in(&HOSTS, vec![self.mgr(), in_ids("zone_id", &zone_id_list)])
                .await?
                .into_iter()
                .collect();
            storage_ids = self
                .ids_in(
                    &STORAGES,
                    vec![self.mgr(), in_ids("zone_id", &zone_id_list)],
                )
                .await?
                .into_iter()
                .collect();
        }
        Ok((host_ids, storage_ids))
    }

    /// SKUs (shared per provider and region).
    async fn sync_skus(
        &self,
        skus: cp::Result<Vec<cp::Sku>>,
        out: &mut Outcome,
    ) -> Result<(), DbError> {
        let reg = self.region_ext.as_str();
        if self.wants("skus") {
            match skus {
                Ok(list) => {
                    let plan = Plan {
                        desc: &SERVERSKUS,
                        scope: vec![
                            crud::eq("provider", self.owner.provider.as_str()),
                            crud::eq("cloudregion_id", self.cloudregion_id.as_str()),
                        ],
                        desired: list
                            .iter()
                            .map(|k| {
                                (
                                    k.name.clone(),
                                    row(json!({"name": k.name, "cpu_core_count": k.cpu, "memory_size_mb": k.mem_mb,
                                               "instance_type_family": k.family})),
                                )
                            })
                            .collect(),
                        fixed: row(json!({"provider": self.owner.provider, "cloudregion_id": self.cloudregion_id,
                                          "domain_id": "default", "is_public": true, "public_scope": "system"})),
                        remove: true,
                        keep_status_in: &[],
                    };
                    let a = apply(&self.db, plan, reg, "skus", out).await?;
                    out.count("skus", &a.counts);
                }
                Err(e) => out.error(reg, "skus", "", e),
            }
        }
        Ok(())
    }

    /// VPCs: whether the list succeeded, and their ids.
    async fn sync_vpcs(
        &self,
        vpcs: cp::Result<Vec<cp::Vpc>>,
        out: &mut Outcome,
    ) -> Result<(bool, Ids), DbError> {
        let reg = self.region_ext.as_str();
        let mut vpcs_ok = false;
        match vpcs {
            Ok(list) => {
                vpcs_ok = true;
                let plan = self.region_plan(
                    &VPCS,
                    false,
                    list
                        .iter()
                        .map(|v| {
                            (
                                v.external_id.clone(),
                                row(json!({"name": v.name, "cidr_block": v.cidr, "is_default": v.is_default,
                                           "status": v.status})),
                            )
                        })
                        .collect(),
                );
                let a = apply(&self.db, plan, reg, "vpcs", out).await?;
                out.count("vpcs", &a.counts);
            }
            Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "vpcs", "", e),
        }
        let vpc_ids: HashMap<String, String> = self
            .ids_in(
                &VPCS,
                vec![
                    self.mgr(),
                    crud::eq("cloudregion_id", self.cloudregion_id.as_str()),
                ],
            )
            .await?
            .into_iter()
            .collect();
        Ok((vpcs_ok, vpc_ids))
    }

    /// Wires (one per VPC and zone) and networks (subnets).
    async fn sync_networks(
        &self,
        nets: cp::Result<Vec<cp::Network>>,
        vpcs_ok: bool,
        vpc_ids: &Ids,
        zone_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<Ids, DbError> {
        let reg = self.region_ext.as_str();
        match nets {
            Ok(list) if vpcs_ok => {
                let mut wires: BTreeMap<String, Row> = BTreeMap::new();
                for n in &list {
                    let (Some(v), Some(z)) = (vpc_ids.get(&n.vpc_id), zone_ids.get(&n.zone_id))
                    else {
                        out.error(
                            reg,
                            "networks",
                            &n.external_id,
                            "its VPC or zone is unknown",
                        );
                        continue;
                    };
                    wires.insert(
                        format!("{}/{}", n.vpc_id, n.zone_id),
                        row(json!({"name": format!("{}-{}", n.vpc_id, n.zone_id), "vpc_id": v, "zone_id": z,
                                   "status": "available"})),
                    );
                }
                let plan = Plan {
                    desc: &WIRES,
                    scope: vec![self.mgr(), self.in_region_vpcs("vpc_id")],
                    desired: wires.into_iter().collect(),
                    fixed: self.fixed(false),
                    remove: true,
                    keep_status_in: &[],
                };
                let wa = apply(&self.db, plan, reg, "wires", out).await?;
                out.count("wires", &wa.counts);
                let mut desired = Vec::new();
                for n in &list {
                    let Some(wid) = wa.ids.get(&format!("{}/{}", n.vpc_id, n.zone_id)) else {
                        continue;
                    };
                    let Some((start, end, mask, gw)) = subnet_range(&n.cidr) else {
                        out.error(
                            reg,
                            "networks",
                            &n.external_id,
                            format!("unusable CIDR {}", n.cidr),
                        );
                        continue;
                    };
                    desired.push((
                        n.external_id.clone(),
                        row(json!({"name": n.name, "wire_id": wid, "guest_ip_start": start, "guest_ip_end": end,
                                   "guest_ip_mask": mask, "guest_gateway": gw, "status": n.status,
                                   "server_type": "guest"})),
                    ));
                }
                let plan = Plan {
                    desc: &NETWORKS,
                    scope: vec![self.mgr(), self.in_region_wires()],
                    desired,
                    fixed: self.fixed(true),
                    remove: true,
                    keep_status_in: &[],
                };
                let a = apply(&self.db, plan, reg, "networks", out).await?;
                out.count("networks", &a.counts);
            }
            Ok(_) | Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "networks", "", e),
        }
        let net_ids: HashMap<String, String> = self
            .ids_in(&NETWORKS, vec![self.mgr(), self.in_region_wires()])
            .await?
            .into_iter()
            .collect();
        Ok(net_ids)
    }

    /// Security groups and their rules.
    async fn sync_secgroups(
        &self,
        sgs: cp::Result<Vec<cp::SecGroup>>,
        vpc_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<Ids, DbError> {
        let reg = self.region_ext.as_str();
        match sgs {
            Ok(list) => {
                let plan = self.region_plan(
                    &SECGROUPS,
                    true,
                    list
                        .iter()
                        .map(|g| {
                            (
                                g.external_id.clone(),
                                row(json!({"name": g.name, "description": g.description.chars().take(250).collect::<String>(),
                                           "vpc_id": vpc_ids.get(&g.vpc_id).cloned().unwrap_or_default(),
                                           "status": "ready"})),
                            )
                        })
                        .collect(),
                );
                let a = apply(&self.db, plan, reg, "secgroups", out).await?;
                out.count("secgroups", &a.counts);
                let mut wanted: HashMap<String, Vec<Row>> = HashMap::new();
                let mut parents = Vec::new();
                for g in &list {
                    let Some(id) = a.ids.get(&g.external_id) else {
                        continue;
                    };
                    parents.push(id.clone());
                    wanted.insert(
                        id.clone(),
                        g.rules
                            .iter()
                            .map(|r| {
                                row(json!({"direction": r.direction, "protocol": r.protocol, "ports": r.ports,
                                           "cidr": r.cidr, "action": r.action, "priority": r.priority,
                                           "tenant_id": self.owner.tenant_id, "domain_id": self.owner.domain_id}))
                            })
                            .collect(),
                    );
                }
                sync_rules(&self.db, &parents, wanted, reg, out).await?;
            }
            Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "secgroups", "", e),
        }
        let sg_ids: HashMap<String, String> = self
            .ids_in(
                &SECGROUPS,
                vec![
                    self.mgr(),
                    crud::eq("cloudregion_id", self.cloudregion_id.as_str()),
                ],
            )
            .await?
            .into_iter()
            .collect();
        Ok(sg_ids)
    }

    /// Instances our own create tasks launched carry the guest's id in a
    /// tag: adopt the row (a sync racing the task must not add a second
    /// one). Answers the instances of guests deleted here, to be skipped.
    async fn adopt_tagged(
        &self,
        vm_list: &[cp::Vm],
        host_by_zone: &Ids,
    ) -> Result<HashSet<String>, DbError> {
        let tagged: HashMap<String, String> = vm_list
            .iter()
            .filter_map(|v| {
                v.tags
                    .get("cloudpods-guest-id")
                    .map(|g| (g.clone(), v.external_id.clone()))
            })
            .collect();
        let mut skip: HashSet<String> = HashSet::new();
        if !tagged.is_empty() {
            let ids: Vec<String> = tagged.keys().cloned().collect();
            let rows = crud::list(
                &self.db,
                &GUESTS,
                &ListSpec {
                    conds: vec![self.mgr(), in_ids("id", &ids)],
                    include_deleted: true,
                    ..Default::default()
                },
            )
            .await?
            .0;
            for g in rows {
                let ext = tagged.get(&s(&g, "id")).cloned().unwrap_or_default();
                if crate::store::b(&g, "deleted") {
                    skip.insert(ext);
                } else if s(&g, "external_id").is_empty() || s(&g, "host_id").is_empty() {
                    let zone = vm_list
                        .iter()
                        .find(|v| v.external_id == ext)
                        .map(|v| v.zone_id.clone())
                        .unwrap_or_default();
                    let mut ch = Row::new();
                    ch.insert("external_id".into(), json!(ext));
                    if let Some(h) = host_by_zone.get(&zone) {
                        ch.insert("host_id".into(), json!(h));
                    }
                    crud::update(self.db.write(), &GUESTS, &s(&g, "id"), &ch).await?;
                }
            }
        }
        Ok(skip)
    }

    /// The guests' NICs and security groups, from the instances' view.
    async fn sync_guest_joints(
        &self,
        vm_list: &[cp::Vm],
        guest_ids: &Ids,
        net_ids: &Ids,
        sg_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<(), DbError> {
        let reg = self.region_ext.as_str();
        let parents: Vec<String> = guest_ids.values().cloned().collect();
        let mut nics: HashMap<String, Vec<Row>> = HashMap::new();
        let mut groups: HashMap<String, Vec<Row>> = HashMap::new();
        for v in vm_list {
            let Some(gid) = guest_ids.get(&v.external_id) else {
                continue;
            };
            nics.insert(
                gid.clone(),
                v.nics
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| {
                        let nid = net_ids.get(&n.network_id)?;
                        Some(row(json!({"network_id": nid, "ip_addr": n.ip,
                                        "mac_addr": if n.mac.is_empty() { Value::Null } else { json!(n.mac) },
                                        "index": i, "ifname": format!("eth{i}"), "is_default": i == 0})))
                    })
                    .collect(),
            );
            groups.insert(
                gid.clone(),
                v.secgroup_ids
                    .iter()
                    .filter_map(|g| sg_ids.get(g))
                    .map(|g| row(json!({"secgroup_id": g})))
                    .collect(),
            );
        }
        sync_joint(
            &self.db,
            &GUESTNETWORKS,
            "guest_id",
            &parents,
            nics,
            &["network_id", "ip_addr", "mac_addr", "index"],
            reg,
            "guestnetworks",
            out,
        )
        .await?;
        sync_joint(
            &self.db,
            &GUESTSECGROUPS,
            "guest_id",
            &parents,
            groups,
            &["secgroup_id"],
            reg,
            "guestsecgroups",
            out,
        )
        .await?;
        Ok(())
    }

    /// Servers, their NICs and security groups: whether the list is complete, the instances, and the guests' ids.
    async fn sync_servers(
        &self,
        vms: cp::Result<Vec<cp::Vm>>,
        host_ids: &Ids,
        net_ids: &Ids,
        sg_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<(bool, Vec<cp::Vm>, Ids), DbError> {
        let reg = self.region_ext.as_str();
        let host_id_list: Vec<String> = host_ids.values().cloned().collect();
        let mut guest_ids: HashMap<String, String> = HashMap::new();
        let vms_ok = vms.is_ok();
        let vm_list = match vms {
            Ok(v) => v,
            Err(cp::CloudError::NotSupported(_)) => Vec::new(),
            Err(e) => {
                out.error(reg, "servers", "", e);
                Vec::new()
            }
        };
        if vms_ok && self.wants("servers") && !host_id_list.is_empty() {
            let host_by_zone: HashMap<String, String> = host_ids
                .iter()
                .filter_map(|(ext, id)| {
                    ext.strip_suffix("/host")
                        .map(|z| (z.to_string(), id.clone()))
                })
                .collect();
            let skip = self.adopt_tagged(&vm_list, &host_by_zone).await?;
            let mut desired = Vec::with_capacity(vm_list.len());
            for v in vm_list.iter().filter(|v| !skip.contains(&v.external_id)) {
                let Some(hid) = host_by_zone.get(&v.zone_id) else {
                    out.error(
                        reg,
                        "servers",
                        &v.external_id,
                        format!("zone {} is unknown", v.zone_id),
                    );
                    continue;
                };
                desired.push((
                    v.external_id.clone(),
                    row(json!({"name": v.name, "status": v.status, "vcpu_count": v.vcpu, "vmem_size": v.mem_mb,
                               "instance_type": v.instance_type, "os_type": v.os_type, "host_id": hid,
                               "power_states": if v.status == "running" { "on" } else { "off" },
                               "secgrp_id": v.secgroup_ids.first().and_then(|g| sg_ids.get(g)).cloned().unwrap_or_default(),
                               "hypervisor": "aws"})),
                ));
            }
            let plan = Plan {
                desc: &GUESTS,
                scope: vec![self.mgr(), in_ids("host_id", &host_id_list)],
                desired,
                fixed: {
                    let mut f = self.fixed(true);
                    f.insert("billing_type".into(), json!("postpaid"));
                    f
                },
                remove: true,
                keep_status_in: GUEST_BUSY,
            };
            let a = apply(&self.db, plan, reg, "servers", out).await?;
            out.count("servers", &a.counts);
            if !a.removed_ids.is_empty() {
                for t in ["guestnetworks_tbl", "guestdisks_tbl", "guestsecgroups_tbl"] {
                    for chunk in a.removed_ids.chunks(500) {
                        let mut q = Sql::new(format!("DELETE FROM `{t}` WHERE "));
                        q.append(in_ids("guest_id", chunk));
                        q.query()?
                            .execute(self.db.write())
                            .await
                            .map_err(DbError::from)?;
                    }
                }
            }
            guest_ids = a.ids;
            self.sync_guest_joints(&vm_list, &guest_ids, net_ids, sg_ids, out)
                .await?;
        } else if !host_id_list.is_empty() {
            guest_ids = self
                .ids_in(&GUESTS, vec![self.mgr(), in_ids("host_id", &host_id_list)])
                .await?
                .into_iter()
                .collect();
        }
        Ok((vms_ok, vm_list, guest_ids))
    }

    /// Disks and their attachment.
    async fn sync_disks(
        &self,
        disks: cp::Result<Vec<cp::Disk>>,
        storage_ids: &Ids,
        vms_ok: bool,
        vm_list: &[cp::Vm],
        guest_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<Ids, DbError> {
        let reg = self.region_ext.as_str();
        let storage_id_list: Vec<String> = storage_ids.values().cloned().collect();
        let mut disk_ids: HashMap<String, String> = HashMap::new();
        match disks {
            Ok(list) if self.wants("disks") && !storage_id_list.is_empty() => {
                let mut desired = Vec::with_capacity(list.len());
                for dk in &list {
                    let Some(sid) = storage_ids.get(&format!("{}/{}", dk.zone_id, dk.storage_type))
                    else {
                        out.error(
                            reg,
                            "disks",
                            &dk.external_id,
                            format!(
                                "storage {} in zone {} is unknown",
                                dk.storage_type, dk.zone_id
                            ),
                        );
                        continue;
                    };
                    desired.push((
                        dk.external_id.clone(),
                        row(json!({"name": dk.name, "disk_size": dk.size_gb * 1024, "disk_type": dk.disk_type,
                                   "status": dk.status, "storage_id": sid, "disk_format": "raw",
                                   "medium_type": if dk.storage_type == "standard" { "rotate" } else { "ssd" }})),
                    ));
                }
                let plan = Plan {
                    desc: &DISKS,
                    scope: vec![self.mgr(), in_ids("storage_id", &storage_id_list)],
                    desired,
                    fixed: self.fixed(true),
                    remove: true,
                    keep_status_in: &[],
                };
                let a = apply(&self.db, plan, reg, "disks", out).await?;
                out.count("disks", &a.counts);
                if !a.removed_ids.is_empty() {
                    for chunk in a.removed_ids.chunks(500) {
                        let mut q = Sql::new("DELETE FROM `guestdisks_tbl` WHERE ");
                        q.append(in_ids("disk_id", chunk));
                        q.query()?
                            .execute(self.db.write())
                            .await
                            .map_err(DbError::from)?;
                    }
                }
                // Attachments: one joint row per disk, indexed by the VM's
                // order (root first). Only when the VM list is complete.
                if vms_ok {
                    let order: HashMap<&str, usize> = vm_list
                        .iter()
                        .flat_map(|v| v.disk_ids.iter().enumerate().map(|(i, d)| (d.as_str(), i)))
                        .collect();
                    let parents: Vec<String> = a.ids.values().cloned().collect();
                    let mut wanted: HashMap<String, Vec<Row>> = HashMap::new();
                    // A volume the instance's own list does not name (attached
                    // since it was listed) goes after the known ones, never
                    // as the boot disk.
                    let known: HashMap<&str, usize> = vm_list
                        .iter()
                        .map(|v| (v.external_id.as_str(), v.disk_ids.len()))
                        .collect();
                    let mut extra: HashMap<&str, usize> = HashMap::new();
                    for dk in &list {
                        let (Some(did), Some(gid)) =
                            (a.ids.get(&dk.external_id), guest_ids.get(&dk.vm_id))
                        else {
                            continue;
                        };
                        let (idx, boot) = match order.get(dk.external_id.as_str()) {
                            Some(&i) => (i, if i == 0 { 0 } else { -1 }),
                            None => {
                                let n = extra.entry(dk.vm_id.as_str()).or_insert(0);
                                *n += 1;
                                (known.get(dk.vm_id.as_str()).copied().unwrap_or(0) + *n, -1)
                            }
                        };
                        wanted.insert(
                            did.clone(),
                            vec![row(json!({"guest_id": gid, "index": idx,
                                                                   "boot_index": boot}))],
                        );
                    }
                    sync_joint(
                        &self.db,
                        &GUESTDISKS,
                        "disk_id",
                        &parents,
                        wanted,
                        &["guest_id", "index"],
                        reg,
                        "guestdisks",
                        out,
                    )
                    .await?;
                }
                disk_ids = a.ids;
            }
            Ok(_) | Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "disks", "", e),
        }
        Ok(disk_ids)
    }

    /// EIPs, bound to the guests they are associated with.
    async fn sync_eips(
        &self,
        eips: cp::Result<Vec<cp::Eip>>,
        vms_ok: bool,
        guest_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<(), DbError> {
        let reg = self.region_ext.as_str();
        match eips {
            Ok(list) if vms_ok || list.iter().all(|e| e.vm_id.is_empty()) => {
                let plan = self.region_plan(
                    &EIPS,
                    true,
                    list
                        .iter()
                        .map(|e| {
                            let gid = guest_ids.get(&e.vm_id).cloned().unwrap_or_default();
                            (
                                e.external_id.clone(),
                                row(json!({"name": e.name, "ip_addr": e.ip, "mode": "elastic_ip",
                                           "associate_type": if gid.is_empty() { "" } else { "server" },
                                           "associate_id": gid, "status": "ready"})),
                            )
                        })
                        .collect(),
                );
                let a = apply(&self.db, plan, reg, "eips", out).await?;
                out.count("eips", &a.counts);
            }
            Ok(_) | Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "eips", "", e),
        }
        Ok(())
    }

    /// Images, as cached images of the region.
    async fn sync_images(
        &self,
        images: cp::Result<Vec<cp::Image>>,
        out: &mut Outcome,
    ) -> Result<(), DbError> {
        let reg = self.region_ext.as_str();
        match images {
            Ok(list) => {
                let plan = self.region_plan(
                    &CACHEDIMAGES,
                    true,
                    list
                        .iter()
                        .map(|i| {
                            (
                                i.external_id.clone(),
                                row(json!({"name": i.name, "status": i.status, "size": i.size_gb * 1024 * 1024 * 1024,
                                           "os_type": i.os_type, "os_arch": i.os_arch})),
                            )
                        })
                        .collect(),
                );
                let a = apply(&self.db, plan, reg, "images", out).await?;
                out.count("images", &a.counts);
            }
            Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "images", "", e),
        }
        Ok(())
    }

    /// Snapshots; `location` holds the region for public-cloud ones.
    async fn sync_snapshots(
        &self,
        snaps: cp::Result<Vec<cp::Snapshot>>,
        disk_ids: &Ids,
        out: &mut Outcome,
    ) -> Result<(), DbError> {
        let reg = self.region_ext.as_str();
        match snaps {
            Ok(list) => {
                let plan = Plan {
                    desc: &SNAPSHOTS,
                    scope: vec![self.mgr(), crud::eq("location", reg)],
                    desired: list
                        .iter()
                        .map(|sn| {
                            (
                                sn.external_id.clone(),
                                row(json!({"name": sn.name, "status": sn.status, "size": sn.size_gb * 1024,
                                           "disk_id": disk_ids.get(&sn.disk_id).cloned().unwrap_or_default()})),
                            )
                        })
                        .collect(),
                    fixed: {
                        let mut f = self.fixed(true);
                        f.insert("location".into(), json!(reg));
                        f.insert("created_by".into(), json!("manual"));
                        f
                    },
                    remove: true,
                    keep_status_in: &[],
                };
                let a = apply(&self.db, plan, reg, "snapshots", out).await?;
                out.count("snapshots", &a.counts);
            }
            Err(cp::CloudError::NotSupported(_)) => {}
            Err(e) => out.error(reg, "snapshots", "", e),
        }
        Ok(())
    }
}

/// Run a list only when wanted; otherwise it counts as `NotSupported`
/// (skipped, nothing recorded).
async fn opt<T>(
    want: bool,
    f: impl std::future::Future<Output = cp::Result<Vec<T>>>,
) -> cp::Result<Vec<T>> {
    if want {
        f.await
    } else {
        Err(cp::CloudError::NotSupported("not requested".into()))
    }
}

async fn sync_rules(
    db: &Db,
    parents: &[String],
    wanted: HashMap<String, Vec<Row>>,
    region: &str,
    out: &mut Outcome,
) -> Result<(), DbError> {
    let existing = crate::store::rows_in(db, &SECGROUPRULES, "secgroup_id", parents).await?;
    let key = |r: &Row| -> String {
        ["direction", "protocol", "ports", "cidr", "action"]
            .iter()
            .map(|c| s(r, c))
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut have: HashMap<String, Vec<Row>> = HashMap::new();
    for r in existing {
        have.entry(s(&r, "secgroup_id")).or_default().push(r);
    }
    let mut counts = Counts::default();
    let mut purge = Vec::new();
    let mut add = Vec::new();
    for p in parents {
        let got = have.remove(p).unwrap_or_default();
        let mut want = wanted.get(p).cloned().unwrap_or_default();
        let mut got_keys: HashMap<String, Vec<String>> = HashMap::new();
        for r in &got {
            got_keys.entry(key(r)).or_default().push(s(r, "id"));
        }
        for w in want.iter_mut() {
            match got_keys.get_mut(&key(w)).and_then(|v| v.pop()) {
                Some(_) => counts.unchanged += 1,
                None => {
                    w.insert("secgroup_id".into(), json!(p));
                    crud::prepare_insert(&SECGROUPRULES, w);
                    add.push(w.clone());
                }
            }
        }
        for ids in got_keys.into_values() {
            purge.extend(ids);
        }
    }
    counts.added = add.len() as u64;
    counts.removed = purge.len() as u64;
    if !add.is_empty() || !purge.is_empty() {
        let mut tx = db.begin().await?;
        for chunk in purge.chunks(500) {
            let mut q = Sql::new("DELETE FROM `secgrouprules_tbl` WHERE ");
            q.append(in_ids("id", chunk));
            q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
        }
        for (r, e) in insert_batched(&mut tx, &SECGROUPRULES, &add).await? {
            out.error(region, "secgrouprules", &s(&r, "secgroup_id"), e);
        }
        tx.commit().await.map_err(DbError::from)?;
    }
    out.count("secgrouprules", &counts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_subnet_ranges() {
        assert_eq!(
            subnet_range("10.0.1.0/24"),
            Some((
                "10.0.1.4".into(),
                "10.0.1.254".into(),
                24,
                "10.0.1.1".into()
            ))
        );
        assert_eq!(subnet_range("10.0.0.0/31"), None);
        assert_eq!(subnet_range("bogus"), None);
    }

    #[test]
    fn comparison_treats_null_as_empty() {
        assert!(same(None, &json!("")));
        assert!(same(Some(&json!(null)), &json!("")));
        assert!(same(Some(&json!(true)), &json!(1)));
        assert!(same(Some(&json!(2048)), &json!(2048)));
        assert!(!same(Some(&json!("a")), &json!("b")));
    }
}
