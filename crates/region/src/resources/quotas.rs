//! Quotas, usages and capabilities: `GET|POST /quotas`,
//! `/quotas/projects[/{id}]`, `/quotas/domains[/{id}]`, `GET /usages`,
//! `GET /capabilities`.
//!
//! Quotas answer in Cloudpods' shape, a list of quota records keyed by
//! owner with the limits and the live usage as `usage.<name>`:
//! `{"quotas": [{"domain_id", "tenant_id", "count", "cpu", …, "usage.cpu", …}]}`.
//! `count` is the number of servers. A limit of -1 means unlimited (only
//! the defaults use it; limits set through the API are non-negative).

use std::sync::Arc;

use axum::http::Method;
use cloudpods_db::{Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::dispatch::ok_json;
use cloudpods_rest::params::{Object, get_str, get_str_any};
use cloudpods_rest::{ApiRequest, Ctx, HttpError, Result, Service};
use serde_json::{Map, Value, json};

use crate::Region;
use crate::models::*;
use crate::quota::{self, Limits};
use crate::store::{i, s};

/// Wire name of each limit (in [`Limits::pairs`] order).
const WIRE: [&str; 9] = [
    "cpu", "memory", "storage", "port", "eip", "snapshot", "count", "keypair", "secgroup",
];

/// Keys of a quota body that identify the owner rather than set a limit.
const KEY_FIELDS: &[&str] = &[
    "domain_id",
    "tenant_id",
    "project_id",
    "project",
    "tenant",
    "domain",
    "project_domain",
    "project_domain_id",
    "tenant",
    "action",
    "refresh",
    "primary",
    "region",
    "zone",
    "hypervisor",
    "provider",
    "brand",
    "cloud_env",
];

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let svc = svc.route_with(Method::GET, "/quotas", true, region, get_own);
    let svc = svc.route_with(Method::POST, "/quotas", true, region, set_own);
    let svc = svc.route_with(Method::GET, "/quotas/projects", true, region, list_projects);
    let svc = svc.route_with(
        Method::GET,
        "/quotas/projects/{id}",
        true,
        region,
        get_project,
    );
    let svc = svc.route_with(
        Method::POST,
        "/quotas/projects/{id}",
        true,
        region,
        set_project,
    );
    let svc = svc.route_with(Method::GET, "/quotas/domains", true, region, list_domains);
    let svc = svc.route_with(
        Method::GET,
        "/quotas/domains/{id}",
        true,
        region,
        get_domain,
    );
    let svc = svc.route_with(
        Method::POST,
        "/quotas/domains/{id}",
        true,
        region,
        set_domain,
    );
    let svc = svc.route_with(Method::GET, "/usages", true, region, usages);
    svc.route_with(Method::GET, "/capabilities", true, region, capabilities)
}

// ---------------------------------------------------------------------------
// quotas

/// Whose quota a request is about.
#[derive(Debug, Clone)]
struct Target {
    scope_type: &'static str,
    id: String,
    name: String,
    domain_id: String,
    domain: String,
}

async fn project_target(ctx: &Ctx, ident: &str, q: &Object) -> Result<Target> {
    let domain_id = match get_str_any(q, &["project_domain", "project_domain_id", "domain_id"]) {
        Some(d) => Some(
            ctx.tenants
                .find_domain(&d)
                .await?
                .map(|(id, _)| id)
                .ok_or_else(|| HttpError::not_found(format!("domain {d} not found")))?,
        ),
        None => None,
    };
    let t = ctx
        .tenants
        .find_project(ident, domain_id.as_deref())
        .await?
        .ok_or_else(|| {
            HttpError::new(
                cloudpods_apis::ErrorClass::TenantNotFoundError,
                format!("project {ident} not found"),
            )
        })?;
    Ok(Target {
        scope_type: "project",
        id: t.id,
        name: t.name,
        domain_id: t.domain_id,
        domain: t.domain,
    })
}

async fn domain_target(ctx: &Ctx, ident: &str) -> Result<Target> {
    let (id, name) = ctx
        .tenants
        .find_domain(ident)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("domain {ident} not found")))?;
    Ok(Target {
        scope_type: "domain",
        id: id.clone(),
        name: name.clone(),
        domain_id: id,
        domain: name,
    })
}

/// The caller's own project (or domain, with `scope=domain` or a
/// domain-scoped token).
async fn own_target(ctx: &Ctx, q: &Object) -> Result<Target> {
    let id = &ctx.identity;
    let domain = get_str(q, "scope").as_deref() == Some("domain") || id.project_id.is_empty();
    if domain {
        return domain_target(ctx, &id.domain_id).await;
    }
    project_target(ctx, &id.project_id, &Object::new()).await
}

/// May the caller `action` (get/update) the quota of `t`? Its own project
/// may be read by anyone in it; everything else needs domain scope in the
/// same domain, or system scope. Domain quotas are set by system admins.
fn authorize(ctx: &Ctx, t: &Target, action: &str) -> Result<()> {
    let scope = ctx.max_scope("quotas", action, None);
    let id = &ctx.identity;
    let own_project = t.scope_type == "project" && t.id == id.project_id;
    let allowed = match (scope, t.scope_type, action) {
        (Some(Scope::System), _, _) => true,
        (Some(Scope::Domain), "project", _) => t.domain_id == id.domain_id,
        (Some(Scope::Domain), "domain", "get") => t.id == id.domain_id,
        (Some(_), "project", "get") => own_project,
        _ => false,
    };
    if !allowed {
        return Err(HttpError::forbidden(format!(
            "not allowed to {action} the quota of {} {}",
            t.scope_type, t.name
        )));
    }
    Ok(())
}

fn defaults(region: &Region, scope_type: &str) -> Limits {
    if scope_type == "domain" {
        Limits::unlimited()
    } else {
        region.opts.default_quota
    }
}

/// One quota record: owner keys, limits and `usage.*`.
async fn record(region: &Region, ctx: &Ctx, t: &Target) -> Result<Value> {
    let db = &region.db;
    let limits = quota::effective_limits(
        db.read(),
        t.scope_type,
        &t.id,
        defaults(region, t.scope_type),
    )
    .await?;
    let mut tx = db.begin().await?;
    let mut usage = quota::usage(&mut tx, db.dialect(), t.scope_type, &t.id).await?;
    drop(tx);
    // Keypairs belong to users: the caller's own count is shown for its
    // own project.
    if t.scope_type == "project" && t.id == ctx.identity.project_id {
        usage.keypair = quota::keypair_usage(db.read(), ctx.user_id()).await?;
    }
    let mut out = Map::new();
    out.insert("domain_id".into(), json!(t.domain_id));
    out.insert("domain".into(), json!(t.domain));
    if t.scope_type == "project" {
        out.insert("tenant_id".into(), json!(t.id));
        out.insert("tenant".into(), json!(t.name));
        out.insert("project_domain".into(), json!(t.domain));
    }
    for (idx, (_, v)) in limits.pairs().iter().enumerate() {
        out.insert(WIRE[idx].into(), json!(v));
    }
    for (idx, (_, v)) in usage.pairs().iter().enumerate() {
        out.insert(format!("usage.{}", WIRE[idx]), json!(v));
    }
    Ok(Value::Object(out))
}

fn answer(records: Vec<Value>) -> Result<axum::response::Response> {
    Ok(ok_json(json!({ "quotas": records })))
}

async fn get_own(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    let ctx = req.ctx()?;
    let t = own_target(ctx, &req.query).await?;
    authorize(ctx, &t, "get").or_else(|e| {
        // Reading one's own domain quota is part of reading one's quotas.
        if t.scope_type == "domain" && t.id == ctx.identity.domain_id {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    answer(vec![record(&region, ctx, &t).await?])
}

async fn get_project(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    let ctx = req.ctx()?;
    let t = project_target(ctx, req.param("id"), &req.query).await?;
    authorize(ctx, &t, "get")?;
    answer(vec![record(&region, ctx, &t).await?])
}

async fn get_domain(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    let ctx = req.ctx()?;
    let t = domain_target(ctx, req.param("id")).await?;
    authorize(ctx, &t, "get")?;
    answer(vec![record(&region, ctx, &t).await?])
}

/// Owners with stored limits of `scope_type`.
async fn stored(region: &Region, scope_type: &str) -> Result<Vec<String>> {
    let mut q = Sql::new(format!(
        "SELECT {} FROM `quotas_tbl` WHERE `scope_type` = ",
        crud::column_list(&QUOTAS)
    ));
    q.bind(scope_type).push(" ORDER BY `scope_id` LIMIT 2048");
    Ok(crud::fetch_rows(region.db.read(), &QUOTAS, &q)
        .await?
        .iter()
        .map(|r| s(r, "scope_id"))
        .collect())
}

async fn list_projects(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    let ctx = req.ctx()?;
    let scope = ctx.max_scope("quotas", "list", None);
    if !matches!(scope, Some(Scope::System | Scope::Domain)) {
        return Err(HttpError::forbidden(
            "not allowed to list the quotas of projects",
        ));
    }
    let ids = stored(&region, "project").await?;
    let projects = ctx.tenants.projects_by_id(&ids).await?;
    let mut out = Vec::new();
    for id in ids {
        let Some(p) = projects.get(&id) else { continue };
        if scope != Some(Scope::System) && p.domain_id != ctx.identity.domain_id {
            continue;
        }
        let t = Target {
            scope_type: "project",
            id: p.id.clone(),
            name: p.name.clone(),
            domain_id: p.domain_id.clone(),
            domain: p.domain.clone(),
        };
        out.push(record(&region, ctx, &t).await?);
    }
    answer(out)
}

async fn list_domains(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    let ctx = req.ctx()?;
    if ctx.max_scope("quotas", "list", None) != Some(Scope::System) {
        return Err(HttpError::forbidden(
            "not allowed to list the quotas of domains",
        ));
    }
    let mut out = Vec::new();
    for id in stored(&region, "domain").await? {
        if let Ok(t) = domain_target(ctx, &id).await {
            out.push(record(&region, ctx, &t).await?);
        }
    }
    answer(out)
}

/// Parse a quota body: `{"quotas": {"cpu": 100, ..., "action": "update"}}`.
/// Values are non-negative integers; unknown keys are refused.
pub fn parse_set(body: Option<Value>) -> Result<(String, Vec<(usize, i64)>)> {
    let input = cloudpods_rest::params::unwrap_envelope(body, &["quotas", "quota"], false)?;
    let action = get_str(&input, "action").unwrap_or_else(|| "update".into());
    if !["update", "replace", "reset", "add", "sub", "delete"].contains(&action.as_str()) {
        return Err(HttpError::input(format!(
            "action must be update, replace, reset, add, sub or delete; got {action:?}"
        )));
    }
    let mut vals = Vec::new();
    for (k, v) in &input {
        let idx = match k.as_str() {
            "server" | "servers" => Some(6),
            other => WIRE.iter().position(|w| *w == other),
        };
        let Some(idx) = idx else {
            if KEY_FIELDS.contains(&k.as_str()) || k.starts_with("usage.") {
                continue;
            }
            return Err(HttpError::input(format!("unknown quota {k:?}")));
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(t) => t.trim().parse::<i64>().ok(),
            _ => None,
        }
        .ok_or_else(|| HttpError::input(format!("quota {k} must be an integer, got {v}")))?;
        if n < 0 {
            return Err(HttpError::input(format!(
                "quota {k} must not be negative, got {n}"
            )));
        }
        if n > i64::from(i32::MAX) && k != "storage" {
            return Err(HttpError::input(format!("quota {k} is too large: {n}")));
        }
        vals.push((idx, n));
    }
    Ok((action, vals))
}

async fn apply(region: &Region, t: &Target, body: Option<Value>) -> Result<()> {
    let (action, vals) = parse_set(body)?;
    let db = &region.db;
    let default = defaults(region, t.scope_type);
    if action == "reset" || action == "delete" {
        let mut q = Sql::new("DELETE FROM `quotas_tbl` WHERE `scope_type` = ");
        q.bind(t.scope_type)
            .push(" AND `scope_id` = ")
            .bind(t.id.as_str());
        q.query()?
            .execute(db.write())
            .await
            .map_err(cloudpods_db::DbError::from)?;
        return Ok(());
    }
    let cur = quota::effective_limits(db.read(), t.scope_type, &t.id, default).await?;
    let mut pairs = if action == "replace" {
        let mut z = cur.pairs();
        for p in z.iter_mut() {
            p.1 = 0;
        }
        z
    } else {
        cur.pairs()
    };
    for (idx, n) in vals {
        let slot = &mut pairs[idx].1;
        *slot = match action.as_str() {
            "add" if *slot >= 0 => slot.saturating_add(n),
            "sub" if *slot >= 0 => (*slot - n).max(0),
            "add" | "sub" => *slot,
            _ => n,
        };
    }
    quota::set_limits(db, t.scope_type, &t.id, &quota::from_pairs(&pairs)).await?;
    Ok(())
}

async fn set_own(region: Arc<Region>, mut req: ApiRequest) -> Result<axum::response::Response> {
    let body = req.json().await?;
    let ctx = req.ctx()?;
    let t = own_target(ctx, &req.query).await?;
    authorize(ctx, &t, "update")?;
    apply(&region, &t, body).await?;
    answer(vec![record(&region, ctx, &t).await?])
}

async fn set_project(region: Arc<Region>, mut req: ApiRequest) -> Result<axum::response::Response> {
    let body = req.json().await?;
    let ctx = req.ctx()?;
    let t = project_target(ctx, req.param("id"), &req.query).await?;
    authorize(ctx, &t, "update")?;
    apply(&region, &t, body).await?;
    answer(vec![record(&region, ctx, &t).await?])
}

async fn set_domain(region: Arc<Region>, mut req: ApiRequest) -> Result<axum::response::Response> {
    let body = req.json().await?;
    let ctx = req.ctx()?;
    let t = domain_target(ctx, req.param("id")).await?;
    authorize(ctx, &t, "update")?;
    apply(&region, &t, body).await?;
    answer(vec![record(&region, ctx, &t).await?])
}

// ---------------------------------------------------------------------------
// usages

async fn count(region: &Region, sql: Sql) -> Result<i64> {
    Ok(crud::fetch_i64(region.db.read(), &sql).await?)
}

/// `GET /usages`: what the caller's project (or, with `scope=domain|system`,
/// domain or whole region) holds. Keys follow Cloudpods: no prefix for a
/// project, `domain.` for a domain, `all.` for the system (plus the
/// region's infrastructure).
async fn usages(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    let ctx = req.ctx()?;
    let granted = ctx
        .max_scope("usages", "get", None)
        .ok_or_else(|| HttpError::forbidden("not allowed to get usages"))?;
    let requested = cloudpods_rest::context::requested_scope(&req.query)?.unwrap_or(
        if ctx.identity.is_project_scoped() {
            Scope::Project
        } else {
            Scope::Domain
        },
    );
    if requested > granted {
        return Err(HttpError::forbidden(format!(
            "not allowed to get usages at {} scope",
            requested.as_str()
        )));
    }
    let (prefix, owner): (&str, Option<(&str, String)>) = match requested {
        Scope::System => ("all.", None),
        Scope::Domain => (
            "domain.",
            Some(("domain_id", ctx.identity.domain_id.clone())),
        ),
        _ => ("", Some(("tenant_id", ctx.identity.project_id.clone()))),
    };
    let dialect = region.db.dialect();
    let cond = |alias: &str| -> Sql {
        let mut c = Sql::new("");
        if let Some((col, v)) = &owner {
            c.push(&format!(" AND {alias}`{col}` = ")).bind(v.as_str());
        }
        c
    };
    let mut u = Map::new();
    let mut put = |k: &str, v: Value| {
        u.insert(format!("{prefix}{k}"), v);
    };

    // Servers, by state.
    for (key, extra) in [
        ("servers", " AND `pending_deleted` = 0"),
        (
            "running_servers",
            " AND `pending_deleted` = 0 AND `status` = 'running'",
        ),
        (
            "ready_servers",
            " AND `pending_deleted` = 0 AND `status` = 'ready'",
        ),
        ("pending_delete_servers", " AND `pending_deleted` = 1"),
    ] {
        let mut q = Sql::new(format!(
            "SELECT COUNT(*) FROM `guests_tbl` WHERE `deleted` = 0{extra}"
        ));
        q.append(cond(""));
        put(key, json!(count(&region, q).await?));
        for (sub, col) in [("cpu", "vcpu_count"), ("memory", "vmem_size")] {
            let mut q = Sql::new(format!(
                "SELECT {} FROM `guests_tbl` WHERE `deleted` = 0{extra}",
                dialect.sum_int(&format!("`{col}`"))
            ));
            q.append(cond(""));
            put(&format!("{key}.{sub}"), json!(count(&region, q).await?));
        }
    }

    // Disks: all, attached, detached.
    for (key, extra) in [
        ("disks", ""),
        (
            "disks.attached",
            " AND `id` IN (SELECT `disk_id` FROM `guestdisks_tbl`)",
        ),
        (
            "disks.detached",
            " AND `id` NOT IN (SELECT `disk_id` FROM `guestdisks_tbl`)",
        ),
    ] {
        let mut q = Sql::new(format!(
            "SELECT {} FROM `disks_tbl` WHERE `deleted` = 0{extra}",
            dialect.sum_int("`disk_size`")
        ));
        q.append(cond(""));
        put(key, json!(count(&region, q).await?));
        let mut q = Sql::new(format!(
            "SELECT COUNT(*) FROM `disks_tbl` WHERE `deleted` = 0{extra}"
        ));
        q.append(cond(""));
        put(&format!("{key}.count"), json!(count(&region, q).await?));
    }

    // Ports: guest NICs.
    let mut q = Sql::new(
        "SELECT COUNT(*) FROM `guestnetworks_tbl` n JOIN `guests_tbl` g ON g.`id` = n.`guest_id` WHERE g.`deleted` = 0",
    );
    q.append(cond("g."));
    let ports = count(&region, q).await?;
    put("ports", json!(ports));
    put("nics.guest", json!(ports));

    // EIPs, snapshots, security groups.
    let mut q = Sql::new("SELECT COUNT(*) FROM `elasticips_tbl` WHERE `deleted` = 0");
    q.append(cond(""));
    let eips = count(&region, q).await?;
    put("eip", json!(eips));
    put("eip.floating_ip", json!(eips));
    let mut q = Sql::new(
        "SELECT COUNT(*) FROM `elasticips_tbl` WHERE `deleted` = 0 AND `associate_id` IS NOT NULL AND `associate_id` <> ''",
    );
    q.append(cond(""));
    put("eip.used", json!(count(&region, q).await?));
    let mut q = Sql::new("SELECT COUNT(*) FROM `snapshots_tbl` WHERE `deleted` = 0");
    q.append(cond(""));
    put("snapshots", json!(count(&region, q).await?));
    let mut q = Sql::new(format!(
        "SELECT {} FROM `snapshots_tbl` WHERE `deleted` = 0",
        dialect.sum_int("`size`")
    ));
    q.append(cond(""));
    put("snapshots.size", json!(count(&region, q).await?));
    let mut q = Sql::new("SELECT COUNT(*) FROM `secgroups_tbl` WHERE `deleted` = 0");
    q.append(cond(""));
    put("secgroups", json!(count(&region, q).await?));

    if requested == Scope::System {
        infra_usage(&region, &mut u).await?;
    }
    Ok(ok_json(json!({ "usage": u })))
}

/// The region's infrastructure (system scope only).
async fn infra_usage(region: &Region, u: &mut Map<String, Value>) -> Result<()> {
    let dialect = region.db.dialect();
    for (key, table) in [
        ("regions", "cloudregions_tbl"),
        ("zones", "zones_tbl"),
        ("all.vpcs", "vpcs_tbl"),
        ("all.wires", "wires_tbl"),
        ("all.networks", "networks_tbl"),
    ] {
        let q = Sql::new(format!(
            "SELECT COUNT(*) FROM `{table}` WHERE `deleted` = 0"
        ));
        u.insert(key.into(), json!(count(region, q).await?));
    }
    for (key, extra) in [
        ("hosts", ""),
        (
            "enabled_hosts",
            " AND `enabled` = 1 AND `host_status` = 'online'",
        ),
    ] {
        let q = Sql::new(format!(
            "SELECT COUNT(*) FROM `hosts_tbl` WHERE `deleted` = 0{extra}"
        ));
        u.insert(key.into(), json!(count(region, q).await?));
        for (sub, col) in [("cpu", "cpu_count"), ("memory", "mem_size")] {
            let q = Sql::new(format!(
                "SELECT {} FROM `hosts_tbl` WHERE `deleted` = 0{extra}",
                dialect.sum_int(&format!("`{col}`"))
            ));
            u.insert(format!("{key}.{sub}"), json!(count(region, q).await?));
        }
    }
    let q = Sql::new(format!(
        "SELECT {} FROM `storages_tbl` WHERE `deleted` = 0 AND `enabled` = 1",
        dialect.sum_int("`capacity`")
    ));
    let capacity = count(region, q).await?;
    u.insert("storages".into(), json!(capacity));
    let used = u.get("all.disks").and_then(Value::as_i64).unwrap_or(0);
    let rate = if capacity > 0 {
        (used as f64 / capacity as f64 * 100.0).round() / 100.0
    } else {
        0.0
    };
    u.insert("storages.commit_rate".into(), json!(rate));
    Ok(())
}

// ---------------------------------------------------------------------------
// capabilities

/// `GET /capabilities`: what can be created here (unwrapped, as Cloudpods
/// answers it).
async fn capabilities(region: Arc<Region>, req: ApiRequest) -> Result<axum::response::Response> {
    req.ctx()?;
    let db = &region.db;
    let hosts = crud::list(db, &HOSTS, &Default::default()).await?.0;
    let usable_hosts: Vec<&Row> = hosts
        .iter()
        .filter(|h| {
            store_bool(h, "enabled")
                && s(h, "host_status") == "online"
                && ["hypervisor", "kvm"].contains(&s(h, "host_type").as_str())
        })
        .collect();
    let mut archs: Vec<String> = usable_hosts
        .iter()
        .map(|h| s(h, "cpu_architecture"))
        .filter(|a| !a.is_empty())
        .collect();
    archs.sort();
    archs.dedup();
    let hypervisors: Vec<&str> = if hosts
        .iter()
        .any(|h| ["hypervisor", "kvm"].contains(&s(h, "host_type").as_str()))
    {
        vec!["kvm"]
    } else {
        vec![]
    };
    let storages = crud::list(db, &STORAGES, &Default::default()).await?.0;
    let mut q = Sql::new(format!(
        "SELECT `storage_id`, {} FROM `disks_tbl` WHERE `deleted` = 0 GROUP BY `storage_id`",
        db.dialect().sum_int("`disk_size`")
    ));
    let _ = &mut q;
    let rows = q
        .query()?
        .fetch_all(db.read())
        .await
        .map_err(cloudpods_db::DbError::from)?;
    let mut used = std::collections::HashMap::new();
    for r in &rows {
        let sid = cloudpods_db::sql::raw_column(r, 0)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        used.insert(
            sid,
            cloudpods_db::sql::raw_column(r, 1)?.as_i64().unwrap_or(0),
        );
    }
    let mut types: Vec<String> = Vec::new();
    let mut types2: Vec<String> = Vec::new();
    let mut types3 = Map::new();
    let mut data_types: Vec<String> = Vec::new();
    for st in storages.iter().filter(|st| store_bool(st, "enabled")) {
        let ty = s(st, "storage_type");
        let key = format!("{ty}/{}", s(st, "medium_type"));
        if !types.contains(&ty) {
            types.push(ty.clone());
        }
        if !types2.contains(&key) {
            types2.push(key.clone());
        }
        if !data_types.contains(&key) {
            data_types.push(key.clone());
        }
        let cap = i(st, "capacity");
        let u = used.get(&s(st, "id")).copied().unwrap_or(0);
        let entry = types3.entry(key).or_insert_with(|| {
            json!({"capacity": 0, "used_capacity": 0, "free_capacity": 0, "reserved": 0,
                   "virtual_capacity": 0, "is_sys_disk_store": false})
        });
        let add = |e: &mut Value, k: &str, v: i64| {
            e[k] = json!(e[k].as_i64().unwrap_or(0) + v);
        };
        add(entry, "capacity", cap);
        add(entry, "used_capacity", u);
        add(entry, "free_capacity", cap - i(st, "reserved") - u);
        add(entry, "reserved", i(st, "reserved"));
        add(entry, "virtual_capacity", cap);
        if store_bool(st, "is_sys_disk_store") {
            entry["is_sys_disk_store"] = json!(true);
        }
    }
    let brands: Vec<&str> = if hypervisors.is_empty() {
        vec![]
    } else {
        vec!["OneCloud"]
    };
    Ok(ok_json(json!({
        "hypervisors": hypervisors,
        "brands": brands,
        "enabled_brands": brands,
        "disabled_brands": [],
        "compute_engine_brands": brands,
        "network_manage_brands": brands,
        "cloud_id_brands": [],
        "resource_types": ["shared"],
        "storage_types": types,
        "storage_types2": {"kvm": types2},
        "storage_types3": {"kvm": types3},
        "data_storage_types": data_types,
        "data_storage_types2": {"kvm": data_types},
        "gpu_models": [],
        "host_cpu_archs": archs,
        "sched_policy_support": true,
        "usable": !usable_hosts.is_empty(),
        "available_host_count": usable_hosts.len(),
        "min_nic_count": 0,
        "max_nic_count": 8,
        "min_data_disk_count": 0,
        "max_data_disk_count": 15,
    })))
}

fn store_bool(r: &Row, k: &str) -> bool {
    crate::store::b(r, k)
}
