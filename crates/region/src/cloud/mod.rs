//! Public clouds managed next to the local region: cloud accounts and their
//! providers (`cloudaccounts`, `cloudproviders`), the sync engine that
//! mirrors a cloud's resources into the region's own tables, the tasks that
//! act on a cloud through our API, and the `brand` / `provider` /
//! `cloud_env` filters and details of every managed resource.
//!
//! Drivers live in `cloudpods-cloudprovider`; this module only sees the
//! [`cloudpods_cloudprovider::Provider`] abstraction.

pub mod accounts;
pub mod fleet;
pub mod models;
pub mod ops;
pub mod secret;
pub mod sync;
pub mod tasks;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudpods_cloudprovider as cp;
use cloudpods_db::{Db, DbError, ModelDesc, Row, Sql, crud};
use cloudpods_rest::params::{get_str, get_str_any};
use cloudpods_rest::{HttpError, Object, Service};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Region;
use crate::models::*;
use crate::store::s;
use models::*;
pub use secret::SecretKey;
use sync::{Outcome, Owner, RegionJob, SyncOptions};

/// Cloud settings of the region process.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    /// Encrypts account secrets at rest; `None` = a random key for this
    /// process only (tests of the region crate).
    pub secret_key: Option<SecretKey>,
    /// Accounts synced at the same time.
    pub sync_workers: usize,
    /// Regions of one account synced at the same time.
    pub region_workers: usize,
    /// How often the automatic sync looks for accounts due.
    pub auto_sync_check: Duration,
}

impl Default for CloudOptions {
    fn default() -> Self {
        CloudOptions {
            secret_key: None,
            sync_workers: 5,
            region_workers: 4,
            auto_sync_check: Duration::from_secs(30),
        }
    }
}

/// Per-process cloud state.
pub struct CloudState {
    key: SecretKey,
    slots: Arc<tokio::sync::Semaphore>,
    region_workers: usize,
    /// Accounts with a sync queued or running in this process.
    running: Mutex<HashSet<String>>,
    auto_sync_check: Duration,
    /// Instances and volumes as last listed, per (provider, region).
    fleets: Mutex<HashMap<(String, String), fleet::FleetSlot>>,
}

impl CloudState {
    pub fn new(opts: &CloudOptions) -> CloudState {
        CloudState {
            key: opts.secret_key.clone().unwrap_or_else(SecretKey::generate),
            slots: Arc::new(tokio::sync::Semaphore::new(opts.sync_workers.max(1))),
            region_workers: opts.region_workers.max(1),
            running: Mutex::new(HashSet::new()),
            auto_sync_check: opts.auto_sync_check,
            fleets: Mutex::new(HashMap::new()),
        }
    }

    /// The cached view of a provider's region (empty until listed).
    pub fn fleet(&self, manager_id: &str, region_ext: &str) -> fleet::FleetSlot {
        let mut m = self.fleets.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((manager_id.to_string(), region_ext.to_string()))
            .or_default()
            .clone()
    }

    /// Make the next sync re-read an instance our task just changed.
    pub async fn forget_vm(&self, manager_id: &str, external_id: &str) {
        let slots: Vec<fleet::FleetSlot> = {
            let m = self.fleets.lock().unwrap_or_else(|e| e.into_inner());
            m.iter()
                .filter(|((mgr, _), _)| mgr == manager_id)
                .map(|(_, slot)| slot.clone())
                .collect()
        };
        for slot in slots {
            if let Some(f) = slot.lock().await.as_mut() {
                f.forget(external_id);
            }
        }
    }

    /// Drop the cached views of a provider (its account is gone).
    pub fn forget_fleets(&self, manager_id: &str) {
        let mut m = self.fleets.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(mgr, _), _| mgr != manager_id);
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }
}

/// Register the cloud resources with the region service.
pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    accounts::register(svc, region)
}

/// Register the cloud task types.
pub fn register_tasks(region: &Arc<Region>) {
    tasks::register(region);
    ops::register(region);
}

pub fn tables() -> Vec<&'static ModelDesc> {
    models::all()
}

/// Does this guest live on a public cloud (driven through its provider
/// instead of a host agent)?
pub fn is_public_cloud(guest: &Row) -> bool {
    !s(guest, "manager_id").is_empty() || cp::provider_info(&s(guest, "hypervisor")).is_some()
}

/// A provider config for an account row (secret decrypted).
pub fn provider_config(region: &Region, account: &Row) -> Result<cp::ProviderConfig, HttpError> {
    let secret = region
        .cloud
        .key
        .decrypt(&s(account, "secret"))
        .map_err(|e| HttpError::internal(format!("cloud account {}: {e}", s(account, "name"))))?;
    let opts = account.get("options").cloned().unwrap_or(Value::Null);
    let mut cfg = cp::ProviderConfig {
        provider: s(account, "provider"),
        access_url: s(account, "access_url"),
        account: s(account, "account"),
        secret,
        ..Default::default()
    };
    if let Some(n) = opts.get("page_size").and_then(Value::as_u64) {
        cfg.page_size = n as u32;
    }
    if let Some(r) = opts.get("default_region").and_then(Value::as_str) {
        cfg.default_region = r.to_string();
    }
    if let Some(t) = opts.get("timeout_seconds").and_then(Value::as_u64) {
        cfg.timeout = Duration::from_secs(t.max(1));
    }
    if let Some(n) = opts.get("max_attempts").and_then(Value::as_u64) {
        cfg.max_attempts = n as u32;
    }
    Ok(cfg)
}

pub fn connect(region: &Region, account: &Row) -> Result<Arc<dyn cp::Provider>, HttpError> {
    cp::connect(provider_config(region, account)?).map_err(cloud_http_error)
}

/// A cloud error as an API error (the cloud's message, never a secret).
pub fn cloud_http_error(e: cp::CloudError) -> HttpError {
    match e {
        cp::CloudError::NotFound(m) => HttpError::not_found(format!("on the cloud: {m} not found")),
        cp::CloudError::NotSupported(m) => HttpError::not_supported(m),
        cp::CloudError::Unauthorized(m) => {
            HttpError::input(format!("the cloud refused the credentials: {m}"))
        }
        cp::CloudError::Invalid { code, message } => {
            HttpError::input(format!("the cloud refused: {code}: {message}"))
        }
        other => HttpError::internal(other.to_string()),
    }
}

/// The account and provider rows behind a manager id.
pub async fn manager_rows(db: &Db, manager_id: &str) -> Result<(Row, Row), HttpError> {
    let prov = crud::get(db.read(), &CLOUDPROVIDERS, manager_id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("cloudprovider {manager_id} not found")))?;
    let acc = crud::get(db.read(), &CLOUDACCOUNTS, &s(&prov, "cloudaccount_id"))
        .await?
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "cloudaccount {} not found",
                s(&prov, "cloudaccount_id")
            ))
        })?;
    Ok((acc, prov))
}

/// The region driver for a managed row's provider and cloud region.
pub async fn region_driver(
    region: &Region,
    manager_id: &str,
    cloudregion_id: &str,
) -> Result<Arc<dyn cp::RegionDriver>, HttpError> {
    let (acc, _) = manager_rows(&region.db, manager_id).await?;
    let cr = crud::get(region.db.read(), &CLOUDREGIONS, cloudregion_id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("cloudregion {cloudregion_id} not found")))?;
    connect(region, &acc)?
        .region(&s(&cr, "external_id"))
        .map_err(cloud_http_error)
}

// ---------------------------------------------------------------------------
// Sync orchestration.

/// Queue a sync of the account unless one is queued or running here.
/// Returns false when one already is.
pub async fn trigger_sync(
    region: &Arc<Region>,
    account_id: &str,
    opts: SyncOptions,
) -> Result<bool, HttpError> {
    {
        let mut running = region
            .cloud
            .running
            .lock()
            .map_err(|_| HttpError::internal("cloud state poisoned"))?;
        if !running.insert(account_id.to_string()) {
            return Ok(false);
        }
    }
    let mut ch = Row::new();
    ch.insert("sync_status".into(), json!("queued"));
    if let Err(e) = crud::update(region.db.write(), &CLOUDACCOUNTS, account_id, &ch).await {
        forget(region, account_id);
        return Err(e.into());
    }
    let r = region.clone();
    let id = account_id.to_string();
    tokio::spawn(async move {
        let permit = r.cloud.slots.clone().acquire_owned().await;
        sync_account(&r, &id, &opts).await;
        drop(permit);
        forget(&r, &id);
    });
    Ok(true)
}

fn forget(region: &Region, id: &str) {
    if let Ok(mut running) = region.cloud.running.lock() {
        running.remove(id);
    }
}

/// Run one sync of an account now and record its outcome on the account.
pub async fn sync_account(region: &Arc<Region>, account_id: &str, opts: &SyncOptions) {
    let started = Instant::now();
    let db = &region.db;
    let mut ch = Row::new();
    ch.insert("sync_status".into(), json!("syncing"));
    ch.insert("last_sync".into(), json!(cloudpods_apis::time::now()));
    if let Err(e) = crud::update(db.write(), &CLOUDACCOUNTS, account_id, &ch).await {
        tracing::warn!(account = account_id, error = %e, "cannot start cloud sync");
        return;
    }
    let result = run_sync(region, account_id, opts).await;
    let secs = started.elapsed().as_secs_f64();
    let mut ch = Row::new();
    ch.insert("sync_status".into(), json!("idle"));
    ch.insert(
        "last_sync_end_at".into(),
        json!(cloudpods_apis::time::now()),
    );
    match result {
        Ok((outcome, regions)) => {
            let errors: Vec<Value> = outcome.errors.iter().take(200).map(|e| json!(e)).collect();
            tracing::info!(
                account = account_id,
                seconds = secs,
                errors = outcome.errors.len(),
                "cloud sync done"
            );
            ch.insert("error_count".into(), json!(outcome.errors.len()));
            ch.insert("sync_errors".into(), json!(errors));
            ch.insert(
                "sync_result".into(),
                json!({"seconds": secs, "regions": regions, "resources": outcome.counts,
                       "error_count": outcome.errors.len(), "full_sync": opts.full_sync,
                       "list_seconds": outcome.list_seconds, "apply_seconds": outcome.apply_seconds}),
            );
            ch.insert("health_status".into(), json!("normal"));
            ch.insert("status".into(), json!("connected"));
        }
        Err((health, msg)) => {
            tracing::warn!(account = account_id, error = %msg, "cloud sync failed");
            ch.insert("error_count".into(), json!(1));
            ch.insert(
                "sync_errors".into(),
                json!([{"region": "", "resource": "account", "error": msg}]),
            );
            ch.insert(
                "sync_result".into(),
                json!({"seconds": secs, "error_count": 1, "full_sync": opts.full_sync}),
            );
            ch.insert("health_status".into(), json!(health));
            ch.insert("status".into(), json!("disconnected"));
        }
    }
    let _ = crud::with_retry(|| async {
        let mut q = crud::update_sql(&CLOUDACCOUNTS, &ch);
        q.push(", `sync_count` = `sync_count` + 1 WHERE `id` = ")
            .bind(account_id);
        q.query()?
            .execute(db.write())
            .await
            .map_err(DbError::from)
            .map(drop)
    })
    .await;
    let mut pch = Row::new();
    pch.insert("sync_status".into(), json!("idle"));
    pch.insert("last_sync_end_at".into(), ch["last_sync_end_at"].clone());
    pch.insert("health_status".into(), ch["health_status"].clone());
    pch.insert("status".into(), ch["status"].clone());
    let mut q = crud::update_sql(&CLOUDPROVIDERS, &pch);
    q.push(" WHERE `cloudaccount_id` = ").bind(account_id);
    if let Ok(q) = q.query() {
        let _ = q.execute(db.write()).await;
    }
}

type SyncResult = Result<(Outcome, Vec<String>), (&'static str, String)>;

async fn run_sync(region: &Arc<Region>, account_id: &str, opts: &SyncOptions) -> SyncResult {
    let db = &region.db;
    let fatal = |e: &dyn std::fmt::Display| ("unknown", e.to_string());
    let acc = crud::get(db.read(), &CLOUDACCOUNTS, account_id)
        .await
        .map_err(|e| fatal(&e))?
        .ok_or(("unknown", "the account is gone".to_string()))?;
    let provider = connect(region, &acc).map_err(|e| fatal(&e.details))?;
    match provider.account_id().await {
        Ok(_) => {}
        Err(e @ cp::CloudError::Unauthorized(_)) => return Err(("no permission", e.to_string())),
        Err(e) => return Err(("disconnected", e.to_string())),
    }
    let prov = ensure_provider(db, &acc).await.map_err(|e| fatal(&e))?;
    let manager_id = s(&prov, "id");
    let info = provider.info();
    let mut wanted: Vec<String> = opts.regions.clone();
    if let Some(Value::Array(a)) = acc.get("options").and_then(|o| o.get("regions")) {
        wanted.extend(a.iter().filter_map(Value::as_str).map(str::to_string));
    }
    let mut regions = provider
        .regions()
        .await
        .map_err(|e| ("disconnected", e.to_string()))?;
    if !wanted.is_empty() {
        regions.retain(|r| wanted.iter().any(|w| w == &r.external_id || w == &r.name));
    }
    let ids = sync::sync_cloudregions(db, info.provider, &regions)
        .await
        .map_err(|e| fatal(&e))?;
    let owner = Owner {
        manager_id: manager_id.clone(),
        provider: info.provider.to_string(),
        domain_id: s(&acc, "domain_id"),
        tenant_id: s(&acc, "project_id"),
    };
    let resources: HashSet<String> = opts.resources.iter().cloned().collect();
    let mut jobs = Vec::new();
    for r in &regions {
        let Some(crid) = ids.get(&r.external_id) else {
            continue;
        };
        let driver = provider.region(&r.external_id).map_err(|e| fatal(&e))?;
        jobs.push(RegionJob {
            db: db.clone(),
            owner: owner.clone(),
            cloudregion_id: crid.clone(),
            region_ext: r.external_id.clone(),
            driver,
            resources: resources.clone(),
            full: opts.full_sync,
            fleet: region.cloud.fleet(&manager_id, &r.external_id),
        });
    }
    let names: Vec<String> = jobs.iter().map(|j| j.region_ext.clone()).collect();
    let mut total = Outcome::default();
    let mut stream = futures::stream::iter(jobs.into_iter().map(|job| {
        let db = db.clone();
        let manager_id = manager_id.clone();
        async move {
            let crid = job.cloudregion_id.clone();
            let started = Instant::now();
            let _ = set_provider_region(&db, &manager_id, &crid, json!({"sync_status": "syncing",
                "last_sync": cloudpods_apis::time::now()})).await;
            let out = job.run().await;
            let err = out
                .errors
                .iter()
                .take(5)
                .map(|e| format!("{} {}: {}", e.resource, e.external_id, e.error))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = set_provider_region(&db, &manager_id, &crid, json!({"sync_status": "idle",
                "last_sync_end_at": cloudpods_apis::time::now(), "sync_error": err,
                "sync_result": {"seconds": started.elapsed().as_secs_f64(), "resources": out.counts}})).await;
            out
        }
    }))
    .buffer_unordered(region.cloud.region_workers);
    while let Some(out) = stream.next().await {
        total.merge(out);
    }
    Ok((total, names))
}

async fn set_provider_region(
    db: &Db,
    manager_id: &str,
    cloudregion_id: &str,
    v: Value,
) -> Result<(), DbError> {
    let ch: Row = v.as_object().cloned().unwrap_or_default();
    let mut q =
        Sql::new("SELECT `row_id` FROM `cloudprovider_regions_tbl` WHERE `cloudprovider_id` = ");
    q.bind(manager_id)
        .push(" AND `cloudregion_id` = ")
        .bind(cloudregion_id);
    let rows = crud::fetch_rows(db.read(), &CLOUDPROVIDER_REGIONS, &q).await?;
    match rows.first() {
        Some(r) => {
            crud::update(db.write(), &CLOUDPROVIDER_REGIONS, &s(r, "row_id"), &ch).await?;
        }
        None => {
            let mut r = ch;
            r.insert("cloudprovider_id".into(), json!(manager_id));
            r.insert("cloudregion_id".into(), json!(cloudregion_id));
            crud::prepare_insert(&CLOUDPROVIDER_REGIONS, &mut r);
            match crud::insert(db.write(), &CLOUDPROVIDER_REGIONS, &r).await {
                Ok(_) | Err(DbError::Duplicate(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The account's provider row (AWS has one per account), created on first
/// sync.
pub async fn ensure_provider(db: &Db, acc: &Row) -> Result<Row, DbError> {
    let rows =
        crate::store::rows_in(db, &CLOUDPROVIDERS, "cloudaccount_id", &[s(acc, "id")]).await?;
    if let Some(r) = rows.into_iter().next() {
        return Ok(r);
    }
    let mut r: Row = json!({
        "name": s(acc, "name"), "cloudaccount_id": s(acc, "id"), "provider": s(acc, "provider"),
        "brand": s(acc, "brand"), "access_url": s(acc, "access_url"), "account": s(acc, "account"),
        "external_id": s(acc, "account_id"), "is_public_cloud": acc.get("is_public_cloud").cloned().unwrap_or(json!(true)),
        "health_status": "normal", "status": "connected", "project_id": s(acc, "project_id"),
        "domain_id": s(acc, "domain_id"), "enabled": true,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    crud::prepare_insert(&CLOUDPROVIDERS, &mut r);
    crud::insert(db.write(), &CLOUDPROVIDERS, &r).await?;
    Ok(r)
}

/// Start the automatic sync: accounts whose interval has passed are
/// queued; syncs interrupted by a restart are reset first.
pub fn start_background(region: &Arc<Region>) {
    let r = region.clone();
    tokio::spawn(async move {
        let mut q = Sql::new(
            "UPDATE `cloudaccounts_tbl` SET `sync_status` = 'idle' WHERE `sync_status` IN ('queued', 'syncing')",
        );
        q.push("");
        if let Ok(q) = q.query() {
            let _ = q.execute(r.db.write()).await;
        }
        let mut tick = tokio::time::interval(r.cloud.auto_sync_check);
        loop {
            tick.tick().await;
            if let Err(e) = auto_sync(&r).await {
                tracing::warn!(error = %e.details, "automatic cloud sync check failed");
            }
        }
    });
}

async fn auto_sync(region: &Arc<Region>) -> Result<(), HttpError> {
    let spec = cloudpods_db::ListSpec {
        conds: vec![
            crud::eq("enabled", true),
            crud::eq("enable_auto_sync", true),
            crud::eq("sync_status", "idle"),
        ],
        ..Default::default()
    };
    let accounts = crud::list(&region.db, &CLOUDACCOUNTS, &spec).await?.0;
    let now = chrono::Utc::now();
    for a in accounts {
        let interval = crate::store::i(&a, "sync_interval_seconds").max(60);
        let last = cloudpods_apis::time::parse(&s(&a, "last_sync"));
        let due = match last {
            Some(t) => (now - t).num_seconds() >= interval,
            None => true,
        };
        if due {
            let mut ch = Row::new();
            ch.insert("last_auto_sync".into(), json!(cloudpods_apis::time::now()));
            crud::update(region.db.write(), &CLOUDACCOUNTS, &s(&a, "id"), &ch).await?;
            trigger_sync(region, &s(&a, "id"), SyncOptions::default()).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// brand / provider / cloud_env on every managed resource.

/// List conditions for `brand`, `provider`, `cloud_env`, `manager` and
/// `cloudaccount` on a table with `manager_id` (or a `provider` column).
pub fn brand_filter(desc: &ModelDesc, q: &Object, conds: &mut Vec<Sql>) {
    // Regions, zones and SKUs are shared by a provider's accounts: they
    // carry no manager.
    let has_manager =
        desc.has("manager_id") && !matches!(desc.keyword, "cloudregion" | "zone" | "serversku");
    let brand = get_str(q, "brand").or_else(|| {
        // `provider` is a column of some tables; the generic filter
        // handles it there.
        if desc.has("provider") {
            None
        } else {
            get_str(q, "provider")
        }
    });
    let local = "(`manager_id` IS NULL OR `manager_id` = '')";
    if let Some(b) = brand {
        let onecloud = b.eq_ignore_ascii_case("onecloud");
        if desc.has("provider") && !has_manager {
            let mut c = Sql::new("LOWER(`provider`) = LOWER(");
            c.bind(b).push(")");
            conds.push(c);
        } else if has_manager {
            if onecloud {
                conds.push(Sql::new(local));
            } else {
                let mut c = Sql::new(
                    "`manager_id` IN (SELECT `id` FROM `cloudproviders_tbl` WHERE `deleted` = 0 AND LOWER(`brand`) = LOWER(",
                );
                c.bind(b).push("))");
                conds.push(c);
            }
        } else if desc.keyword == "zone" {
            let mut c = Sql::new(
                "`cloudregion_id` IN (SELECT `id` FROM `cloudregions_tbl` WHERE `deleted` = 0 AND LOWER(`provider`) = LOWER(",
            );
            c.bind(b).push("))");
            conds.push(c);
        }
    }
    if let Some(env) = get_str(q, "cloud_env") {
        if has_manager {
            match env.as_str() {
                "onpremise" => conds.push(Sql::new(local)),
                "public" => conds.push(Sql::new(
                    "`manager_id` IN (SELECT `id` FROM `cloudproviders_tbl` WHERE `deleted` = 0 AND `is_public_cloud` = 1)",
                )),
                "private" => conds.push(Sql::new(
                    "`manager_id` IN (SELECT `id` FROM `cloudproviders_tbl` WHERE `deleted` = 0 AND `is_public_cloud` = 0)",
                )),
                _ => conds.push(Sql::new("1 = 0")),
            }
        } else if desc.keyword == "cloudregion" {
            match env.as_str() {
                "onpremise" => conds.push(Sql::new("`provider` = 'OneCloud'")),
                "public" => conds.push(Sql::new("`provider` <> 'OneCloud'")),
                _ => conds.push(Sql::new("1 = 0")),
            }
        }
    }
    if has_manager
        && let Some(m) = get_str_any(q, &["manager", "cloudprovider", "cloudprovider_id"])
    {
        let mut c = Sql::new(
            "`manager_id` IN (SELECT `id` FROM `cloudproviders_tbl` WHERE `deleted` = 0 AND (`id` = ",
        );
        c.bind(m.clone()).push(" OR `name` = ").bind(m).push("))");
        conds.push(c);
    }
    if has_manager && let Some(a) = get_str_any(q, &["cloudaccount", "cloudaccount_id", "account"])
    {
        let mut c = Sql::new(
            "`manager_id` IN (SELECT p.`id` FROM `cloudproviders_tbl` p JOIN `cloudaccounts_tbl` a ON p.`cloudaccount_id` = a.`id` WHERE p.`deleted` = 0 AND (a.`id` = ",
        );
        c.bind(a.clone()).push(" OR a.`name` = ").bind(a).push("))");
        conds.push(c);
    }
}

/// `brand`, `provider`, `cloud_env`, `manager`, `account` (and the cloud
/// region's name) of rows about to be returned.
pub async fn brand_details(db: &Db, desc: &ModelDesc, rows: &mut [Row]) -> Result<(), HttpError> {
    if desc.keyword == "cloudregion" {
        for r in rows.iter_mut() {
            let p = s(r, "provider");
            let p = if p.is_empty() {
                "OneCloud".to_string()
            } else {
                p
            };
            let env = if p == "OneCloud" {
                "onpremise"
            } else {
                "public"
            };
            r.insert("brand".into(), json!(p));
            r.insert("cloud_env".into(), json!(env));
        }
        return Ok(());
    }
    if !desc.has("manager_id") || desc.keyword == "zone" || desc.keyword == "serversku" {
        return Ok(());
    }
    let mids: Vec<String> = rows.iter().map(|r| s(r, "manager_id")).collect();
    let provs = crate::store::by_id(db, &CLOUDPROVIDERS, &mids).await?;
    let accs: HashMap<String, Row> = if provs.is_empty() {
        HashMap::new()
    } else {
        let ids: Vec<String> = provs.values().map(|p| s(p, "cloudaccount_id")).collect();
        crate::store::by_id(db, &CLOUDACCOUNTS, &ids).await?
    };
    let crids: Vec<String> = rows
        .iter()
        .map(|r| s(r, "cloudregion_id"))
        .filter(|c| !c.is_empty())
        .collect();
    let regions = if crids.is_empty() {
        HashMap::new()
    } else {
        crate::store::by_id(db, &CLOUDREGIONS, &crids).await?
    };
    for r in rows.iter_mut() {
        match provs.get(&s(r, "manager_id")) {
            Some(p) => {
                let brand = s(p, "brand");
                r.insert("brand".into(), json!(brand));
                r.insert("provider".into(), json!(s(p, "provider")));
                r.insert(
                    "cloud_env".into(),
                    json!(if crate::store::b(p, "is_public_cloud") {
                        "public"
                    } else {
                        "private"
                    }),
                );
                r.insert("manager".into(), json!(s(p, "name")));
                r.insert("cloudprovider".into(), json!(s(p, "name")));
                let aid = s(p, "cloudaccount_id");
                r.insert("account_id".into(), json!(aid));
                if let Some(a) = accs.get(&aid) {
                    r.insert("account".into(), json!(s(a, "name")));
                }
            }
            None if !desc.has("provider") => {
                r.insert("brand".into(), json!("OneCloud"));
                r.insert("provider".into(), json!("OneCloud"));
                r.insert("cloud_env".into(), json!("onpremise"));
            }
            None => {}
        }
        if let Some(cr) = regions.get(&s(r, "cloudregion_id")) {
            r.insert("cloudregion".into(), json!(s(cr, "name")));
            r.insert("region_external_id".into(), json!(s(cr, "external_id")));
        }
    }
    Ok(())
}

/// Soft-delete every row a provider manages (its account was deleted).
pub async fn purge_managed(db: &Db, manager_id: &str) -> Result<(), DbError> {
    let guests: Vec<String> = crud::list(
        db,
        &GUESTS,
        &cloudpods_db::ListSpec {
            conds: vec![crud::eq("manager_id", manager_id)],
            columns: Some(vec!["id".into()]),
            ..Default::default()
        },
    )
    .await?
    .0
    .iter()
    .map(|r| s(r, "id"))
    .collect();
    let mut tx = db.begin().await?;
    for chunk in guests.chunks(500) {
        for t in ["guestnetworks_tbl", "guestdisks_tbl", "guestsecgroups_tbl"] {
            let mut q = Sql::new(format!("DELETE FROM `{t}` WHERE "));
            q.append(crud::in_list("guest_id", chunk.iter().map(String::as_str)));
            q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
        }
    }
    let mut q = Sql::new(
        "DELETE FROM `secgrouprules_tbl` WHERE `secgroup_id` IN (SELECT `id` FROM `secgroups_tbl` WHERE `manager_id` = ",
    );
    q.bind(manager_id).push(")");
    q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
    for desc in [
        &*GUESTS,
        &*DISKS,
        &*EIPS,
        &*SNAPSHOTS,
        &*SECGROUPS,
        &*NETWORKS,
        &*WIRES,
        &*VPCS,
        &*HOSTS,
        &*STORAGES,
        &*CACHEDIMAGES,
    ] {
        let mut q = Sql::new(format!(
            "UPDATE `{}` SET `deleted` = 1, `deleted_at` = ",
            desc.table
        ));
        q.bind(cloudpods_apis::time::now())
            .push(" WHERE `deleted` = 0 AND `manager_id` = ")
            .bind(manager_id);
        q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
    }
    let mut q = Sql::new("DELETE FROM `cloudprovider_regions_tbl` WHERE `cloudprovider_id` = ");
    q.bind(manager_id);
    q.query()?.execute(&mut *tx).await.map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}
