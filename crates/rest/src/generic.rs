//! The generic operations behind every route: list, get, create, update,
//! delete, actions, specs, joints. Written once against [`Model`] and the
//! table descriptor; resources customise them through the model hooks.

use std::collections::HashSet;

use cloudpods_apis::filter::{FilterOp, parse_filter};
use cloudpods_apis::lenient::normalize_keys;
use cloudpods_db::crud::{self, ListSpec, Order};
use cloudpods_db::{ColFlags, ColType, Column, ModelDesc, Owner, Row, Sql, SqlValue};
use cloudpods_rbac::Scope;
use serde_json::{Map, Value, json};

use crate::context::{Ctx, requested_scope};
use crate::error::{HttpError, Result};
use crate::metadata;
use crate::model::{JointModel, Model};
use crate::params::{Object, flag, get_bool, get_i64, get_str, get_str_any, get_strs, str_of};

/// Default and maximum page size (Cloudpods `consts.go`).
pub const MAX_LIMIT: u64 = 2048;

/// Most `filter` clauses, tag conditions and tag values one list accepts.
/// Each is one more level of the SQL expression tree, and SQLite refuses
/// trees deeper than 1000 — a storage error (500) instead of a 400.
pub const MAX_CLAUSES: usize = 200;

/// Most values bound in one list query (`?id=a&id=b…`, `in(…)` filters).
/// SQLite refuses more than 32766 variables, MySQL more than 65535.
pub const MAX_BOUND_VALUES: usize = 10_000;

/// Refuse list queries the database would refuse (see [`MAX_CLAUSES`] and
/// [`MAX_BOUND_VALUES`]).
fn check_query_size(clauses: usize, conds: &[Sql]) -> Result<()> {
    if clauses > MAX_CLAUSES {
        return Err(HttpError::input(format!(
            "too many filter conditions ({clauses}, at most {MAX_CLAUSES})"
        )));
    }
    let values: usize = conds.iter().map(|c| c.args.len()).sum();
    if values > MAX_BOUND_VALUES {
        return Err(HttpError::input(format!(
            "too many filter values ({values}, at most {MAX_BOUND_VALUES})"
        )));
    }
    Ok(())
}

/// Keys accepted on every create besides the settable columns.
const GENERIC_CREATE_KEYS: &[&str] = &[
    "generate_name",
    "count",
    "project_id",
    "project",
    "tenant",
    "tenant_id",
    "project_domain_id",
    "project_domain",
    "domain",
    "__meta__",
    "metadata",
    "dry_run",
    "id",
];

/// Keys the generic details add to objects (ignored on update).
const DETAIL_KEYS: &[&str] = &[
    "project",
    "tenant",
    "project_id",
    "project_domain",
    "domain",
    "can_delete",
    "can_update",
    "metadata",
];

/// List parameters that are never column filters.
const LIST_PARAMS: &[&str] = &[
    "limit",
    "offset",
    "order_by",
    "order",
    "details",
    "search",
    "filter",
    "filter_any",
    "joint_filter",
    "field",
    "scope",
    "admin",
    "system",
    "paging_marker",
    "paging_order",
    "pending_delete",
    "pending_delete_all",
    "with_meta",
    "with_user_meta",
    "with_cloud_meta",
    "show_fail_reason",
    "summary_stats",
    "force_no_paging",
    "tags",
    "no_tags",
    "project_id",
    "project",
    "tenant",
    "tenant_id",
    "project_domain_id",
    "project_domain",
    "domain_id",
    "export_keys",
    "export_limit",
];

// ---------------------------------------------------------------------------
// lookup

/// Find a live object by id or name among the rows visible at `scope`.
/// Names resolve within the caller's project first; an ambiguous name is a
/// 409 asking for the id.
pub async fn find<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    ident: &str,
    scope: Scope,
    shared: bool,
) -> Result<Option<Row>> {
    let desc = m.desc();
    let mut conds = Vec::new();
    let mut c = Sql::default();
    c.ident(desc.pk()).push(" = ").bind(ident);
    if desc.standalone {
        c.push(" OR `name` = ").bind(ident);
    }
    conds.push(c);
    if let Some(v) = visibility(ctx, desc, scope, shared) {
        conds.push(v);
    }
    if let Some(v) = m.scope_filter(ctx, scope).await? {
        conds.push(v);
    }
    if desc.pending_delete {
        // Pending-deleted objects stay addressable (cancel-delete, purge).
    }
    let spec = ListSpec {
        conds,
        limit: Some(50),
        ..Default::default()
    };
    let (rows, _) = crud::list(m.db(), desc, &spec).await?;
    if let Some(r) = rows.iter().find(|r| pk_of(desc, r) == ident) {
        return Ok(Some(r.clone()));
    }
    match rows.len() {
        0 => Ok(None),
        1 => Ok(rows.into_iter().next()),
        _ => {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| {
                    r.get("tenant_id").and_then(Value::as_str) == Some(&ctx.identity.project_id)
                })
                .collect();
            if mine.len() == 1 {
                return Ok(Some(mine[0].clone()));
            }
            Err(HttpError::duplicate_name(format!(
                "there are {} {} named {ident:?}, use the id",
                rows.len(),
                desc.plural
            )))
        }
    }
}

fn visibility(ctx: &Ctx, desc: &ModelDesc, scope: Scope, shared: bool) -> Option<Sql> {
    if shared {
        ctx.visibility(desc, scope)
    } else {
        let mut d = desc.clone();
        d.sharable = false;
        ctx.visibility(&d, scope)
    }
}

fn pk_of(desc: &ModelDesc, r: &Row) -> String {
    match r.get(desc.pk()) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn not_found(desc: &ModelDesc, ident: &str) -> HttpError {
    HttpError::not_found(format!("{} {ident} not found", desc.keyword))
}

/// Look up an object for a read (`get`, specs).
pub async fn lookup_get<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    ident: &str,
    extra: Option<&str>,
) -> Result<Row> {
    let desc = m.desc();
    let scope = ctx.max_scope_on(desc, "get", extra);
    let Some(spec) = extra else {
        // Without read permission nothing is visible: 404.
        let scope = scope.ok_or_else(|| not_found(desc, ident))?;
        return find(m, ctx, ident, scope, true)
            .await?
            .ok_or_else(|| not_found(desc, ident));
    };
    // A spec (`get.vnc`): find the object with plain read rights too, so
    // that a visible object whose spec is denied answers 403, like actions
    // do; invisible objects stay 404.
    let read = ctx.max_scope_on(desc, "get", None);
    let search = match (read, scope) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return Err(not_found(desc, ident)),
    };
    let obj = find(m, ctx, ident, search, true)
        .await?
        .ok_or_else(|| not_found(desc, ident))?;
    match scope {
        Some(s) if ctx.can_see(desc, &obj, s, true) => Ok(obj),
        _ => Err(HttpError::forbidden(format!(
            "not allowed to get {spec} of {} {ident}",
            desc.keyword
        ))),
    }
}

/// Look up an object for `action` (update, delete, perform): invisible
/// objects answer 404; visible ones the caller may not change answer 403.
pub async fn lookup_for<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    ident: &str,
    action: &str,
    extra: Option<&str>,
) -> Result<Row> {
    let desc = m.desc();
    let read = ctx.max_scope_on(desc, "get", None);
    let act = ctx.max_scope_on(desc, action, extra);
    let search_scope = match (read, act) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return Err(not_found(desc, ident)),
    };
    let obj = find(m, ctx, ident, search_scope, read.is_some())
        .await?
        .ok_or_else(|| not_found(desc, ident))?;
    match act {
        Some(scope) if ctx.can_see(desc, &obj, scope, false) => Ok(obj),
        _ => Err(HttpError::forbidden(format!(
            "not allowed to {action}{} {} {ident}",
            extra.map(|e| format!(" ({e})")).unwrap_or_default(),
            desc.keyword
        ))),
    }
}

// ---------------------------------------------------------------------------
// list

/// `GET /{plural}` (and context lists, with `extra` conditions).
pub async fn list<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    q: &Object,
    extra: Vec<Sql>,
) -> Result<Value> {
    let desc = m.desc();
    let granted = ctx.require_on(desc, "list", None)?.scope;
    let mut conds = extra;

    // Ownership filters widen the default scope to what is granted.
    let owner_filter = owner_conditions(ctx, desc, q, granted).await?;
    let has_owner_filter = !owner_filter.is_empty();
    conds.extend(owner_filter);
    let scope = match requested_scope(q)? {
        Some(s) if s > granted => {
            return Err(HttpError::forbidden(format!(
                "not allowed to list {} at {} scope",
                desc.plural,
                s.as_str()
            )));
        }
        Some(s) => s,
        None if has_owner_filter => granted,
        None if ctx.identity.is_project_scoped() => Scope::Project,
        None => Scope::Domain.min(granted),
    };
    if let Some(v) = ctx.visibility(desc, scope) {
        conds.push(v);
    }
    if let Some(v) = m.scope_filter(ctx, scope).await? {
        conds.push(v);
    }

    column_filters(desc, q, &mut conds)?;
    if let Some(s) = get_str(q, "search") {
        conds.push(search_condition(desc, &s));
    }
    let filters = get_strs(q, "filter");
    check_query_size(filters.len(), &[])?;
    if !filters.is_empty() {
        let mut parts = Vec::new();
        for f in &filters {
            parts.push(filter_condition(desc, f)?);
        }
        let any = flag(q, "filter_any")?;
        conds.push(join_conds(parts, if any { " OR " } else { " AND " }));
    }
    let tag_clauses = tag_filters(desc, q, &mut conds)?;
    check_query_size(filters.len() + tag_clauses, &conds)?;
    if desc.pending_delete {
        // Cloudpods also accepts `pending_delete=all`.
        let all = get_str(q, "pending_delete").is_some_and(|v| v.eq_ignore_ascii_case("all"));
        if all || flag(q, "pending_delete_all")? {
        } else if flag(q, "pending_delete")? {
            conds.push(Sql::new("`pending_deleted` = 1"));
        } else {
            conds.push(Sql::new("`pending_deleted` = 0"));
        }
    }
    m.list_filter(ctx, q, scope, &mut conds).await?;

    let mut limit = match get_i64(q, "limit")? {
        Some(l) if l > 0 => l as u64,
        _ => MAX_LIMIT,
    };
    if limit > MAX_LIMIT && !flag(q, "force_no_paging")? {
        limit = MAX_LIMIT;
    }
    let offset = match get_i64(q, "offset")? {
        Some(o) if o < 0 => return Err(HttpError::input("offset must not be negative")),
        Some(o) => o as u64,
        None => 0,
    };
    let details = get_bool(q, "details")?.unwrap_or(true);
    let fields = projection(desc, q)?;

    // Marker paging: stable pages by primary key, no COUNT.
    if q.contains_key("paging_marker") {
        let order = parse_order(get_str(q, "paging_order").as_deref())?.unwrap_or(Order::Desc);
        if let Some(marker) = get_str(q, "paging_marker") {
            let mut c = Sql::default();
            c.ident(desc.pk())
                .push(if order == Order::Desc { " < " } else { " > " })
                .bind(marker);
            conds.push(c);
        }
        let spec = ListSpec {
            conds,
            order: vec![(desc.pk().to_string(), order)],
            // One extra row tells whether there is a next page; keep the
            // LIMIT within a signed 64-bit integer (force_no_paging allows
            // limit=i64::MAX, and SQLite refuses a larger LIMIT).
            limit: Some(limit.saturating_add(1).min(i64::MAX as u64)),
            offset: 0,
            count: false,
            columns: None,
            include_deleted: false,
        };
        let (mut rows, _) = crud::list(m.db(), desc, &spec).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| pk_of(desc, r))
        } else {
            None
        };
        finish_rows(m, ctx, &mut rows, q, details).await?;
        let rows = project(rows, fields.as_deref());
        let mut out = Map::new();
        out.insert(desc.plural.into(), Value::Array(rows));
        out.insert("limit".into(), json!(limit));
        if let Some(n) = next {
            out.insert("next_marker".into(), json!(n));
        }
        out.insert("marker_field".into(), json!(desc.pk()));
        out.insert(
            "marker_order".into(),
            json!(if order == Order::Desc { "DESC" } else { "ASC" }),
        );
        return Ok(Value::Object(out));
    }

    let spec = ListSpec {
        conds,
        order: list_order(desc, q)?,
        limit: Some(limit),
        offset,
        count: true,
        columns: None,
        include_deleted: false,
    };
    let (mut rows, total) = crud::list(m.db(), desc, &spec).await?;
    finish_rows(m, ctx, &mut rows, q, details).await?;
    let rows = project(rows, fields.as_deref());
    Ok(list_envelope(
        desc.plural,
        rows,
        total.unwrap_or(0),
        limit,
        offset,
    ))
}

/// `{"<plural>": [...], "total": N, "limit": L, "offset": O}` with zero
/// values omitted, as Cloudpods writes it.
pub fn list_envelope(plural: &str, rows: Vec<Value>, total: u64, limit: u64, offset: u64) -> Value {
    let mut out = Map::new();
    // Cloudpods answers a query matching nothing with the bare envelope
    // (`ListItems` returns an empty `ListResult`): `{"servers":[]}`, no
    // limit or offset even when the caller sent them.
    let empty = total == 0 && rows.is_empty();
    out.insert(plural.into(), Value::Array(rows));
    if empty {
        return Value::Object(out);
    }
    if total > 0 {
        out.insert("total".into(), json!(total));
    }
    if limit > 0 {
        out.insert("limit".into(), json!(limit));
    }
    if offset > 0 {
        out.insert("offset".into(), json!(offset));
    }
    Value::Object(out)
}

/// The project named by `project_id`/`project`/`tenant` (with an optional
/// `project_domain` hint) and whether a caller granted `scope` may act in it.
async fn named_project(
    ctx: &Ctx,
    input: &Object,
    scope: Scope,
    verb: &str,
    what: &str,
) -> Result<Option<crate::tenant::Tenant>> {
    let Some(p) = get_str_any(input, &["project_id", "project", "tenant", "tenant_id"]) else {
        return Ok(None);
    };
    let domain_id = match get_str_any(input, &["project_domain_id", "project_domain"]) {
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
        .find_project(&p, domain_id.as_deref())
        .await?
        .ok_or_else(|| {
            HttpError::new(
                cloudpods_apis::ErrorClass::TenantNotFoundError,
                format!("project {p} not found"),
            )
        })?;
    let allowed = t.id == ctx.identity.project_id
        || scope == Scope::System
        || (scope == Scope::Domain && t.domain_id == ctx.identity.domain_id);
    if !allowed {
        return Err(HttpError::forbidden(format!(
            "not allowed to {verb} {what} in project {p}"
        )));
    }
    Ok(Some(t))
}

async fn owner_conditions(
    ctx: &Ctx,
    desc: &ModelDesc,
    q: &Object,
    granted: Scope,
) -> Result<Vec<Sql>> {
    let mut conds = Vec::new();
    let project = if desc.owner == Owner::Project {
        named_project(ctx, q, granted, "list", desc.plural).await?
    } else {
        None
    };
    if let Some(t) = project {
        conds.push(crud::eq("tenant_id", t.id));
    } else if desc.owner != Owner::None
        && let Some(d) = get_str_any(q, &["project_domain_id", "project_domain", "domain_id"])
    {
        let (id, _) = ctx
            .tenants
            .find_domain(&d)
            .await?
            .ok_or_else(|| HttpError::not_found(format!("domain {d} not found")))?;
        if granted != Scope::System && id != ctx.identity.domain_id {
            return Err(HttpError::forbidden(format!(
                "not allowed to list {} of domain {d}",
                desc.plural
            )));
        }
        conds.push(crud::eq("domain_id", id));
    }
    Ok(conds)
}

/// `?col=v` and `?col=v1&col=v2` for every list-filterable column.
fn column_filters(desc: &ModelDesc, q: &Object, conds: &mut Vec<Sql>) -> Result<()> {
    for (key, _) in q.iter() {
        if LIST_PARAMS.contains(&key.as_str()) {
            continue;
        }
        let Some(col) = desc.column(key) else {
            continue;
        };
        if !col.flags.has(ColFlags::LIST) || col.flags.has(ColFlags::SECRET) {
            continue;
        }
        let vals = get_strs(q, key);
        if vals.is_empty() {
            continue;
        }
        let mut bound = Vec::with_capacity(vals.len());
        for v in &vals {
            bound.push(bind_for(col, v)?);
        }
        conds.push(crud::in_list(col.name, bound));
    }
    Ok(())
}

/// Convert a filter argument to the column's type, refusing garbage with a
/// 400 instead of letting the database compare mismatched types.
fn bind_for(col: &Column, v: &str) -> Result<SqlValue> {
    Ok(match col.ty {
        ColType::Int | ColType::BigInt | ColType::AutoId => {
            SqlValue::Int(v.trim().parse::<i64>().map_err(|_| {
                HttpError::input(format!("{} must be an integer, got {v:?}", col.name))
            })?)
        }
        ColType::Float => SqlValue::Float(parse_finite(v).ok_or_else(|| {
            HttpError::input(format!("{} must be a number, got {v:?}", col.name))
        })?),
        ColType::Bool => {
            SqlValue::Int(cloudpods_apis::lenient::parse_bool(v).ok_or_else(|| {
                HttpError::input(format!("{} must be a boolean, got {v:?}", col.name))
            })? as i64)
        }
        _ => SqlValue::Text(v.to_string()),
    })
}

/// A finite number: Rust also parses `nan` and `inf`, which JSON cannot
/// carry (they would be stored as NULL) and MySQL refuses.
fn parse_finite(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

fn search_condition(desc: &ModelDesc, s: &str) -> Sql {
    let cols: Vec<&Column> = desc
        .columns
        .iter()
        .filter(|c| c.flags.has(ColFlags::SEARCH))
        .collect();
    if cols.is_empty() {
        return Sql::new("1 = 1");
    }
    let pattern = format!("%{}%", like_escape(s));
    let parts = cols
        .iter()
        .map(|c| {
            let mut p = Sql::default();
            p.ident(c.name)
                .push(" LIKE ")
                .bind(pattern.clone())
                .push(" ESCAPE '!'");
            p
        })
        .collect();
    join_conds(parts, " OR ")
}

fn join_conds(parts: Vec<Sql>, sep: &str) -> Sql {
    let mut out = Sql::default();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push("(");
        out.append(p);
        out.push(")");
    }
    out
}

/// One `filter=field.op(args)` clause as SQL.
pub fn filter_condition(desc: &ModelDesc, text: &str) -> Result<Sql> {
    let f = parse_filter(text)?;
    let col = desc
        .column(&f.field)
        .filter(|c| !c.flags.has(ColFlags::SECRET))
        .ok_or_else(|| {
            HttpError::input(format!(
                "filter {text:?}: {} has no field {}",
                desc.plural, f.field
            ))
        })?;
    let mut s = Sql::default();
    s.ident(col.name);
    let arg = |i: usize| -> Result<SqlValue> {
        bind_for(col, f.args.get(i).map(String::as_str).unwrap_or(""))
    };
    let like = |s: &mut Sql, pattern: String| {
        s.push(" LIKE ").bind(pattern).push(" ESCAPE '!'");
    };
    match f.op {
        FilterOp::In | FilterOp::NotIn => {
            let vals = f
                .args
                .iter()
                .map(|a| bind_for(col, a))
                .collect::<Result<Vec<_>>>()?;
            s.push(if f.op == FilterOp::In {
                " IN "
            } else {
                " NOT IN "
            });
            s.bind_list(vals);
        }
        FilterOp::Between => {
            s.push(" >= ")
                .bind(arg(0)?)
                .push(" AND ")
                .ident(col.name)
                .push(" <= ")
                .bind(arg(1)?);
        }
        FilterOp::Ge => {
            s.push(" >= ").bind(arg(0)?);
        }
        FilterOp::Gt => {
            s.push(" > ").bind(arg(0)?);
        }
        FilterOp::Le => {
            s.push(" <= ").bind(arg(0)?);
        }
        FilterOp::Lt => {
            s.push(" < ").bind(arg(0)?);
        }
        FilterOp::Equals => {
            s.push(" = ").bind(arg(0)?);
        }
        FilterOp::NotEquals => {
            s.push(" <> ").bind(arg(0)?);
        }
        FilterOp::Like => like(&mut s, f.args[0].clone()),
        FilterOp::Contains => like(&mut s, format!("%{}%", like_escape(&f.args[0]))),
        FilterOp::StartsWith => like(&mut s, format!("{}%", like_escape(&f.args[0]))),
        FilterOp::EndsWith => like(&mut s, format!("%{}", like_escape(&f.args[0]))),
        FilterOp::IsNull => {
            s.push(" IS NULL");
        }
        FilterOp::IsNotNull => {
            s.push(" IS NOT NULL");
        }
        FilterOp::IsEmpty => {
            s.push(" = ''");
        }
        FilterOp::IsNotEmpty => {
            s.push(" <> ''");
        }
        FilterOp::IsNullOrEmpty => {
            s.push(" IS NULL OR ").ident(col.name).push(" = ''");
        }
    }
    Ok(s)
}

/// `tags.0.key=k&tags.0.value=v` (and `no_tags`) on standalone models.
/// Returns the number of clauses added (for [`check_query_size`]).
fn tag_filters(desc: &ModelDesc, q: &Object, conds: &mut Vec<Sql>) -> Result<usize> {
    let mut clauses = 0;
    if !desc.metadata {
        return Ok(clauses);
    }
    for (param, negate) in [("tags", false), ("no_tags", true)] {
        let Some(v) = q.get(param) else { continue };
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(_) => vec![v],
            _ => {
                return Err(HttpError::input(format!(
                    "{param} must be tags.N.key/value pairs"
                )));
            }
        };
        for item in items {
            let Some(obj) = item.as_object() else {
                return Err(HttpError::input(format!(
                    "{param} must be tags.N.key/value pairs"
                )));
            };
            let key = get_str(obj, "key")
                .ok_or_else(|| HttpError::input(format!("{param}: key missing")))?;
            let values = get_strs(obj, "value");
            clauses += values.len().max(1);
            if clauses > MAX_CLAUSES {
                // Stop before building thousands of subqueries.
                return Ok(clauses);
            }
            let cond = if values.is_empty() {
                metadata::has_tag(desc.keyword, desc.table, &key, None)
            } else {
                join_conds(
                    values
                        .iter()
                        .map(|v| metadata::has_tag(desc.keyword, desc.table, &key, Some(v)))
                        .collect(),
                    " OR ",
                )
            };
            if negate {
                let mut n = Sql::new("NOT (");
                n.append(cond);
                n.push(")");
                conds.push(n);
            } else {
                conds.push(cond);
            }
        }
    }
    Ok(clauses)
}

fn parse_order(s: Option<&str>) -> Result<Option<Order>> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(None),
        Some("asc") => Ok(Some(Order::Asc)),
        Some("desc") => Ok(Some(Order::Desc)),
        Some(o) => Err(HttpError::input(format!(
            "order must be asc or desc, got {o:?}"
        ))),
    }
}

fn list_order(desc: &ModelDesc, q: &Object) -> Result<Vec<(String, Order)>> {
    let dir = parse_order(get_str(q, "order").as_deref())?.unwrap_or(Order::Desc);
    let mut order = Vec::new();
    for c in get_strs(q, "order_by") {
        let col = desc
            .column(&c)
            .filter(|c| !c.flags.has(ColFlags::SECRET))
            .ok_or_else(|| HttpError::input(format!("cannot order {} by {c:?}", desc.plural)))?;
        // A repeated column adds nothing (and SQLite caps ORDER BY terms).
        if !order.iter().any(|(o, _)| o == col.name) {
            order.push((col.name.to_string(), dir));
        }
    }
    if order.is_empty() {
        order.push(("created_at".into(), dir));
    }
    // A unique tie-breaker keeps paging stable.
    if !order.iter().any(|(c, _)| c == desc.pk()) {
        order.push((desc.pk().to_string(), dir));
    }
    Ok(order)
}

fn projection(desc: &ModelDesc, q: &Object) -> Result<Option<Vec<String>>> {
    let fields = get_strs(q, "field");
    if fields.is_empty() {
        return Ok(None);
    }
    for f in &fields {
        if desc
            .column(f)
            .is_some_and(|c| c.flags.has(ColFlags::SECRET))
        {
            return Err(HttpError::input(format!("field {f} cannot be selected")));
        }
    }
    Ok(Some(fields))
}

fn project(rows: Vec<Row>, fields: Option<&[String]>) -> Vec<Value> {
    rows.into_iter()
        .map(|mut r| {
            if let Some(fields) = fields {
                r.retain(|k, _| fields.iter().any(|f| f == k));
            }
            Value::Object(r)
        })
        .collect()
}

/// Details, secrets removed: what every returned row goes through.
pub async fn finish_rows<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    rows: &mut [Row],
    q: &Object,
    details: bool,
) -> Result<()> {
    let desc = m.desc();
    if details && !rows.is_empty() {
        owner_details(ctx, desc, rows).await?;
        if desc.metadata && (flag(q, "with_meta")? || flag(q, "with_user_meta")?) {
            let ids: Vec<String> = rows.iter().map(|r| pk_of(desc, r)).collect();
            let mut metas = metadata::get_many(m.db(), desc.keyword, &ids).await?;
            let user_only = !flag(q, "with_meta")?;
            for r in rows.iter_mut() {
                let mut meta = metas.remove(&pk_of(desc, r)).unwrap_or_default();
                if user_only {
                    meta.retain(|k, _| k.starts_with(metadata::USER_TAG_PREFIX));
                }
                r.insert("metadata".into(), Value::Object(meta));
            }
        }
        m.details(ctx, rows, q).await?;
    }
    strip_secrets(desc, rows);
    Ok(())
}

pub fn strip_secrets(desc: &ModelDesc, rows: &mut [Row]) {
    let secret: Vec<&str> = desc
        .columns
        .iter()
        .filter(|c| c.flags.has(ColFlags::SECRET))
        .map(|c| c.name)
        .collect();
    if secret.is_empty() {
        return;
    }
    for r in rows {
        for s in &secret {
            r.remove(*s);
        }
    }
}

/// `tenant`, `project_id`, `project`, `project_domain`, `domain` names.
async fn owner_details(ctx: &Ctx, desc: &ModelDesc, rows: &mut [Row]) -> Result<()> {
    match desc.owner {
        Owner::Project => {
            let ids: Vec<String> = rows
                .iter()
                .filter_map(|r| {
                    r.get("tenant_id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            let tenants = ctx.tenants.projects_by_id(&ids).await?;
            for r in rows.iter_mut() {
                let tid = r
                    .get("tenant_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                r.insert("project_id".into(), json!(tid));
                if let Some(t) = tenants.get(&tid) {
                    r.insert("tenant".into(), json!(t.name));
                    r.insert("project".into(), json!(t.name));
                    r.insert("project_domain".into(), json!(t.domain));
                }
            }
        }
        Owner::Domain | Owner::User => {
            let mut names = std::collections::HashMap::new();
            for r in rows.iter() {
                if let Some(d) = r.get("domain_id").and_then(Value::as_str)
                    && !names.contains_key(d)
                {
                    let n = ctx.tenants.domain_name(d).await?;
                    names.insert(d.to_string(), n);
                }
            }
            for r in rows.iter_mut() {
                let d = r
                    .get("domain_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Some(Some(n)) = names.get(&d) {
                    r.insert("project_domain".into(), json!(n));
                    r.insert("domain".into(), json!(n));
                }
            }
        }
        Owner::None => {}
    }
    for r in rows.iter_mut() {
        let can_delete = !r
            .get("disable_delete")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            && !r.get("protected").and_then(Value::as_bool).unwrap_or(false);
        r.entry("can_delete").or_insert(json!(can_delete));
        r.entry("can_update").or_insert(json!(true));
    }
    Ok(())
}

/// `GET /{plural}/{id}`.
pub async fn get<M: Model + ?Sized>(m: &M, ctx: &Ctx, ident: &str, q: &Object) -> Result<Value> {
    let obj = lookup_get(m, ctx, ident, None).await?;
    object_response(m, ctx, obj, q).await
}

/// Details and envelope for one object.
pub async fn object_response<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    obj: Row,
    q: &Object,
) -> Result<Value> {
    let mut rows = [obj];
    finish_rows(m, ctx, &mut rows, q, true).await?;
    let [obj] = rows;
    Ok(json!({ m.desc().keyword: obj }))
}

/// Re-read an object by primary key and wrap it.
pub async fn reload_response<M: Model + ?Sized>(m: &M, ctx: &Ctx, id: &str) -> Result<Value> {
    let obj = crud::must_get(m.db().read(), m.desc(), id).await?;
    object_response(m, ctx, obj, &Object::new()).await
}

// ---------------------------------------------------------------------------
// create

/// Validate and convert one input value for a column.
pub fn coerce_input(col: &Column, v: &Value) -> Result<Value> {
    let bad = |what: &str| HttpError::input(format!("{} must be {what}", col.name));
    Ok(match col.ty {
        _ if v.is_null() => Value::Null,
        ColType::Str(n) => {
            let s = str_of(v).ok_or_else(|| bad("a string"))?;
            if s.chars().count() > n as usize {
                return Err(HttpError::input(format!(
                    "{} is too long ({} characters, at most {n})",
                    col.name,
                    s.chars().count()
                )));
            }
            Value::String(s)
        }
        ColType::Text => Value::String(str_of(v).ok_or_else(|| bad("a string"))?),
        ColType::Int | ColType::BigInt | ColType::AutoId => {
            let mut o = Object::new();
            o.insert(col.name.into(), v.clone());
            let i = get_i64(&o, col.name)?.ok_or_else(|| bad("an integer"))?;
            if col.ty == ColType::Int && i32::try_from(i).is_err() {
                return Err(bad("a 32-bit integer"));
            }
            json!(i)
        }
        ColType::Float => match v {
            Value::Number(n) => json!(n.as_f64().unwrap_or_default()),
            Value::String(s) => json!(parse_finite(s).ok_or_else(|| bad("a number"))?),
            _ => return Err(bad("a number")),
        },
        ColType::Bool => {
            let mut o = Object::new();
            o.insert(col.name.into(), v.clone());
            json!(get_bool(&o, col.name)?.ok_or_else(|| bad("a boolean"))?)
        }
        ColType::Time => {
            let s = str_of(v).ok_or_else(|| bad("a timestamp"))?;
            let t = cloudpods_apis::time::parse(&s).ok_or_else(|| bad("an RFC 3339 timestamp"))?;
            json!(cloudpods_apis::time::format(t))
        }
        ColType::Json => v.clone(),
    })
}

/// Names are data, but a name is also a handle typed into shells and URLs:
/// refuse control characters and quoting characters outright.
pub fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(HttpError::input("name must not be empty"));
    }
    if name.chars().count() > 128 {
        return Err(HttpError::input(
            "name is too long (at most 128 characters)",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '\'' | '"' | '`' | ';' | '<' | '>' | '\\' | '/'))
    {
        return Err(HttpError::input(format!(
            "name {name:?} contains the invalid character {c:?}"
        )));
    }
    if name.trim() != name {
        return Err(HttpError::input(
            "name must not start or end with whitespace",
        ));
    }
    Ok(())
}

/// Build the row of a new object from the input's settable columns,
/// rejecting unknown keys and values of the wrong type.
pub fn row_from_input(ctx_scope: Scope, desc: &ModelDesc, input: &Object) -> Result<Row> {
    let mut row = Row::new();
    for (k, v) in input {
        match desc.column(k) {
            Some(col) if col.flags.has(ColFlags::CREATE) => {
                if col.flags.has(ColFlags::ADMIN) && ctx_scope != Scope::System {
                    return Err(HttpError::forbidden(format!(
                        "only system admins may set {k}"
                    )));
                }
                row.insert(col.name.to_string(), coerce_input(col, v)?);
            }
            Some(_) => {} // read-only column echoed back by a client: ignored
            None => {
                if !GENERIC_CREATE_KEYS.contains(&k.as_str())
                    && !desc.extra_create_fields.contains(&k.as_str())
                {
                    return Err(HttpError::input(format!(
                        "unknown field {k:?} for {}",
                        desc.keyword
                    )));
                }
            }
        }
    }
    Ok(row)
}

/// Required columns must be set once the model's hook has filled in what it
/// derives (e.g. `role_id` from `role`).
pub fn check_required(desc: &ModelDesc, row: &Row) -> Result<()> {
    for col in &desc.columns {
        if col.flags.has(ColFlags::REQUIRED)
            && row.get(col.name).is_none_or(|v| v.is_null() || v == "")
        {
            return Err(HttpError::missing(format!("{} is required", col.name)));
        }
    }
    Ok(())
}

/// Where a new object goes: the caller's project, or the one named by
/// `project_id`/`project` (needs domain or system scope).
async fn assign_owner(
    ctx: &Ctx,
    desc: &ModelDesc,
    scope: Scope,
    input: &Object,
    row: &mut Row,
) -> Result<()> {
    match desc.owner {
        Owner::Project => {
            if let Some(t) = named_project(ctx, input, scope, "create", desc.keyword).await? {
                row.insert("tenant_id".into(), json!(t.id));
                row.insert("domain_id".into(), json!(t.domain_id));
            } else if !ctx.identity.is_project_scoped() {
                return Err(HttpError::new(
                    cloudpods_apis::ErrorClass::NoProjectError,
                    format!("a project is required to create {}", desc.keyword),
                ));
            }
        }
        Owner::Domain | Owner::User => {
            if let Some(d) = get_str_any(
                input,
                &["project_domain_id", "project_domain", "domain_id", "domain"],
            ) {
                let (id, _) = ctx
                    .tenants
                    .find_domain(&d)
                    .await?
                    .ok_or_else(|| HttpError::not_found(format!("domain {d} not found")))?;
                if scope != Scope::System && id != ctx.identity.domain_id {
                    return Err(HttpError::forbidden(format!(
                        "not allowed to create {} in domain {d}",
                        desc.keyword
                    )));
                }
                row.insert("domain_id".into(), json!(id));
            }
        }
        Owner::None => {}
    }
    ctx.owner_columns(desc, row);
    Ok(())
}

/// Is `name` taken among live rows of the same owner?
pub async fn name_taken<M: Model + ?Sized>(
    m: &M,
    row: &Row,
    name: &str,
    except_id: Option<&str>,
) -> Result<bool> {
    let desc = m.desc();
    let mut q = Sql::new(format!(
        "SELECT COUNT(*) FROM `{}` WHERE `name` = ",
        desc.table
    ));
    q.bind(name);
    if desc.soft_delete {
        q.push(" AND `deleted` = 0");
    }
    let owner_col = match desc.owner {
        Owner::Project => Some("tenant_id"),
        Owner::Domain => Some("domain_id"),
        Owner::User => Some("user_id"),
        Owner::None => None,
    };
    if let Some(c) = owner_col {
        let v = row.get(c).and_then(Value::as_str).unwrap_or_default();
        q.push(" AND ").ident(c).push(" = ").bind(v);
    }
    if let Some(id) = except_id {
        q.push(" AND ").ident(desc.pk()).push(" <> ").bind(id);
    }
    Ok(crud::fetch_i64(m.db().read(), &q).await? > 0)
}

/// `POST /{plural}` (and `POST /{ctx}/{id}/{plural}` with `fixed` columns).
pub async fn create<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    body: Option<Value>,
    fixed: Vec<(&'static str, Value)>,
) -> Result<Value> {
    let desc = m.desc();
    let scope = ctx.require_on(desc, "create", None)?.scope;
    let count = match body.as_ref().and_then(|b| b.get("count")) {
        None | Some(Value::Null) => 1,
        Some(v) => {
            let mut o = Object::new();
            o.insert("count".into(), v.clone());
            get_i64(&o, "count")?.unwrap_or(1)
        }
    };
    if count < 1 || count > m.max_batch() {
        return Err(HttpError::input(format!(
            "count must be between 1 and {}, got {count}",
            m.max_batch()
        )));
    }
    let input = crate::params::unwrap_envelope(body, &[desc.keyword], true)?;
    let Value::Object(mut input) = normalize_keys(Value::Object(input)) else {
        return Err(HttpError::input("request body must be a JSON object"));
    };
    for (k, v) in &fixed {
        input.insert((*k).to_string(), v.clone());
    }
    let mut row = row_from_input(scope, desc, &input)?;
    if desc.id_style == cloudpods_db::IdStyle::Given
        && let Some(id) = get_str(&input, "id")
    {
        validate_name(&id)?;
        row.insert("id".into(), json!(id));
    }
    for (k, v) in fixed {
        row.insert(k.to_string(), v);
    }
    assign_owner(ctx, desc, scope, &input, &mut row).await?;

    // Names: explicit, generated, and per-instance suffixes for batches.
    let generate = get_str(&input, "generate_name");
    if desc.standalone {
        let base = match (row.get("name").and_then(Value::as_str), &generate) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) => g.clone(),
            _ => return Err(HttpError::missing("name is required")),
        };
        validate_name(&base.replace('#', "1"))?;
        row.insert("name".into(), json!(base));
    }
    m.validate_create(ctx, &mut row, &input).await?;
    check_required(desc, &row)?;

    let mut rows = Vec::with_capacity(count as usize);
    let mut used: HashSet<String> = HashSet::new();
    for i in 0..count {
        let mut r = row.clone();
        if desc.standalone {
            let base = r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let name = unique_name(m, &r, &base, generate.is_some(), count, i, &mut used).await?;
            r.insert("name".into(), json!(name));
        }
        if i > 0 || desc.id_style != cloudpods_db::IdStyle::Given {
            r.remove("id");
        }
        crud::prepare_insert(desc, &mut r);
        rows.push(r);
    }
    if flag(&input, "dry_run")? {
        // The prepared rows hold whatever the input set, secrets included.
        let mut rows = rows;
        strip_secrets(desc, &mut rows);
        let vals: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        return Ok(json!({ desc.plural: vals }));
    }
    let meta = match input.get("__meta__").or_else(|| input.get("metadata")) {
        Some(Value::Object(meta)) if desc.metadata => {
            // Check before inserting: a refused key must not leave the
            // object created behind a 400.
            metadata::validate_keys(meta)?;
            Some(meta)
        }
        _ => None,
    };
    let created = m.create(ctx, rows, &input).await?;
    if let Some(meta) = meta {
        for r in &created {
            metadata::set(m.db(), desc.keyword, &pk_of(desc, r), meta, None).await?;
        }
    }
    m.post_create(ctx, &created, &input).await?;

    let ids: Vec<String> = created.iter().map(|r| pk_of(desc, r)).collect();
    let mut fresh = Vec::with_capacity(ids.len());
    for id in &ids {
        fresh.push(
            crud::get(m.db().write(), desc, id)
                .await?
                .unwrap_or_default(),
        );
    }
    finish_rows(m, ctx, &mut fresh, &Object::new(), true).await?;
    if count == 1 {
        let obj = fresh.into_iter().next().unwrap_or_default();
        return Ok(json!({ desc.keyword: obj }));
    }
    let items: Vec<Value> = fresh
        .into_iter()
        .map(|r| json!({"status": 200, "body": r}))
        .collect();
    Ok(json!({ desc.plural: items }))
}

#[allow(clippy::too_many_arguments)]
async fn unique_name<M: Model + ?Sized>(
    m: &M,
    row: &Row,
    base: &str,
    generated: bool,
    count: i64,
    index: i64,
    used: &mut HashSet<String>,
) -> Result<String> {
    let desc = m.desc();
    let check = desc.unique_name;
    if !generated && count == 1 {
        if check && name_taken(m, row, base, None).await? {
            return Err(HttpError::duplicate_name(format!(
                "{} name {base:?} is already in use",
                desc.keyword
            )));
        }
        return Ok(base.to_string());
    }
    let mut n = index + 1;
    loop {
        let candidate = if base.contains('#') {
            base.replace('#', &n.to_string())
        } else if count == 1 && n == 1 {
            base.to_string()
        } else {
            format!("{base}-{n}")
        };
        let free = !used.contains(&candidate)
            && !((check || generated) && name_taken(m, row, &candidate, None).await?);
        if free {
            used.insert(candidate.clone());
            return Ok(candidate);
        }
        n += count.max(1);
        if n > index + 1 + 100_000 {
            return Err(HttpError::duplicate_name(format!(
                "cannot generate a free name from {base:?}"
            )));
        }
    }
}

/// Default [`Model::create`]: insert every row in one transaction.
pub async fn insert_rows<M: Model + ?Sized>(
    m: &M,
    _ctx: &Ctx,
    rows: Vec<Row>,
    _input: &Object,
) -> Result<Vec<Row>> {
    let desc = m.desc();
    let mut tx = m.db().begin().await?;
    for r in &rows {
        crud::insert(&mut *tx, desc, r).await?;
    }
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    Ok(rows)
}

// ---------------------------------------------------------------------------
// update / delete

/// `PUT|PATCH /{plural}/{id}`.
pub async fn update<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    ident: &str,
    body: Option<Value>,
) -> Result<Value> {
    let desc = m.desc();
    let obj = lookup_for(m, ctx, ident, "update", None).await?;
    let scope = ctx
        .max_scope_on(desc, "update", None)
        .unwrap_or(Scope::Project);
    let input = crate::params::unwrap_envelope(body, &[desc.keyword], false)?;
    let Value::Object(input) = normalize_keys(Value::Object(input)) else {
        return Err(HttpError::input("request body must be a JSON object"));
    };
    let mut changes = Row::new();
    for (k, v) in &input {
        match desc.column(k) {
            Some(col) if col.flags.has(ColFlags::UPDATE) => {
                if col.flags.has(ColFlags::ADMIN) && scope != Scope::System {
                    return Err(HttpError::forbidden(format!(
                        "only system admins may change {k}"
                    )));
                }
                changes.insert(col.name.to_string(), coerce_input(col, v)?);
            }
            Some(_) => {}
            None => {
                // Fields our own details add are ignored, so a client can PUT
                // back an object it fetched.
                if !desc.extra_update_fields.contains(&k.as_str())
                    && !DETAIL_KEYS.contains(&k.as_str())
                {
                    return Err(HttpError::input(format!(
                        "unknown field {k:?} for {}",
                        desc.keyword
                    )));
                }
            }
        }
    }
    if desc.standalone && changes.get("name").is_some_and(Value::is_null) {
        // `{"name": null}` would leave the object without a handle.
        return Err(HttpError::input("name must not be empty"));
    }
    if let Some(name) = changes
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        validate_name(&name)?;
        let id = pk_of(desc, &obj);
        if desc.unique_name && name_taken(m, &obj, &name, Some(&id)).await? {
            return Err(HttpError::duplicate_name(format!(
                "{} name {name:?} is already in use",
                desc.keyword
            )));
        }
    }
    m.validate_update(ctx, &obj, &mut changes, &input).await?;
    let id = pk_of(desc, &obj);
    if !changes.is_empty() {
        crud::update(m.db().write(), desc, &id, &changes).await?;
        m.post_update(ctx, &obj, &changes).await?;
    }
    reload_response(m, ctx, &id).await
}

/// Generic refusal reasons shared by every delete.
pub fn validate_delete_common(desc: &ModelDesc, obj: &Row) -> Result<()> {
    if obj.get("disable_delete").and_then(Value::as_bool) == Some(true) {
        return Err(HttpError::protected(format!(
            "{} {} has delete protection, disable it first",
            desc.keyword,
            obj.get("name").and_then(Value::as_str).unwrap_or_default()
        )));
    }
    if obj.get("protected").and_then(Value::as_bool) == Some(true) {
        return Err(HttpError::protected(format!(
            "{} is protected",
            desc.keyword
        )));
    }
    Ok(())
}

/// `DELETE /{plural}/{id}`.
pub async fn delete<M: Model + ?Sized>(m: &M, ctx: &Ctx, ident: &str, q: Object) -> Result<Value> {
    let desc = m.desc();
    let obj = lookup_for(m, ctx, ident, "delete", None).await?;
    m.validate_delete(ctx, &obj, &q).await?;
    let out = m.delete(ctx, obj, &q).await?;
    let mut rows = [out];
    finish_rows(m, ctx, &mut rows, &Object::new(), true).await?;
    let [out] = rows;
    Ok(json!({ desc.keyword: out }))
}

/// Default [`Model::delete`]: soft delete (or move to the recycle bin when
/// the model has pending delete and the caller did not override it).
pub async fn delete_row<M: Model + ?Sized>(
    m: &M,
    _ctx: &Ctx,
    mut obj: Row,
    q: &Object,
) -> Result<Row> {
    let desc = m.desc();
    let id = pk_of(desc, &obj);
    if desc.pending_delete
        && !flag(q, "override_pending_delete")?
        && !flag(q, "purge")?
        && pending_delete_enabled()
    {
        let mut ch = Row::new();
        ch.insert("pending_deleted".into(), json!(true));
        ch.insert(
            "pending_deleted_at".into(),
            json!(cloudpods_apis::time::now()),
        );
        crud::update(m.db().write(), desc, &id, &ch).await?;
        obj.extend(ch);
        return Ok(obj);
    }
    crud::delete(m.db().write(), desc, &id).await?;
    if desc.metadata {
        metadata::clear(m.db(), desc.keyword, &id).await?;
    }
    obj.insert("deleted".into(), json!(true));
    Ok(obj)
}

static PENDING_DELETE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether deletes of recyclable resources go to the recycle bin
/// (`enable_pending_delete`, off by default as in Cloudpods).
pub fn pending_delete_enabled() -> bool {
    PENDING_DELETE.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn set_pending_delete_enabled(on: bool) {
    PENDING_DELETE.store(on, std::sync::atomic::Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// actions, specs, properties

/// `POST /{plural}/{id}/{action}`: permission, lookup, then the model.
pub async fn perform<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    ident: &str,
    action: &str,
    body: Option<Value>,
) -> Result<Value> {
    let desc = m.desc();
    let obj = lookup_for(m, ctx, ident, "perform", Some(action)).await?;
    let input = crate::params::unwrap_envelope(body, &[desc.keyword], false)?;
    // The input of the metadata actions is a user-defined map whose keys are
    // tag names (`{"Env": "prod"}` → `user:Env`): keep them as sent.
    let input = if METADATA_ACTIONS.contains(&action) {
        input
    } else {
        let Value::Object(input) = normalize_keys(Value::Object(input)) else {
            return Err(HttpError::input("request body must be a JSON object"));
        };
        input
    };
    let id = pk_of(desc, &obj);
    let mut out = m.perform(ctx, obj, action, input).await?;
    // Actions commonly answer the reloaded row; secret columns never leave
    // the API, whatever the model's action returned.
    if let Value::Object(o) = &mut out
        && o.get(desc.pk())
            .is_some_and(|v| str_of(v).as_deref() == Some(id.as_str()))
    {
        strip_secrets(desc, std::slice::from_mut(o));
    }
    Ok(json!({ desc.keyword: out }))
}

/// Actions whose input is a map of metadata keys.
const METADATA_ACTIONS: &[&str] = &["metadata", "user-metadata", "set-user-metadata", "set-tags"];

/// Actions every model understands.
pub async fn perform_common<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    obj: Row,
    action: &str,
    input: Object,
) -> Result<Value> {
    let desc = m.desc();
    let id = pk_of(desc, &obj);
    let scope = ctx
        .max_scope_on(desc, "perform", Some(action))
        .unwrap_or(Scope::Project);
    match action {
        a if METADATA_ACTIONS.contains(&a) && desc.metadata => {
            let user = action != "metadata";
            let mut kv = Map::new();
            for (k, v) in input {
                let key = if user && !k.starts_with(metadata::USER_TAG_PREFIX) {
                    format!("{}{k}", metadata::USER_TAG_PREFIX)
                } else {
                    k
                };
                kv.insert(key, v);
            }
            let replace = matches!(action, "set-user-metadata" | "set-tags")
                .then_some(metadata::USER_TAG_PREFIX);
            metadata::set(m.db(), desc.keyword, &id, &kv, replace).await?;
            Ok(Value::Object(
                metadata::get(m.db(), desc.keyword, &id).await?,
            ))
        }
        "status" if desc.status.is_some() => {
            if scope != Scope::System {
                return Err(HttpError::forbidden("only system admins may set status"));
            }
            let status = get_str(&input, "status")
                .ok_or_else(|| HttpError::missing("status is required"))?;
            // Checked like any input to the column (length), so MySQL's
            // strict mode never sees an over-long value.
            let status = match desc.column("status") {
                Some(col) => coerce_input(col, &json!(status))?,
                None => json!(status),
            };
            let mut ch = Row::new();
            ch.insert("status".into(), status);
            crud::update(m.db().write(), desc, &id, &ch).await?;
            reload_row(m, &id).await
        }
        "enable" | "disable" if desc.enabled.is_some() => {
            let mut ch = Row::new();
            ch.insert("enabled".into(), json!(action == "enable"));
            crud::update(m.db().write(), desc, &id, &ch).await?;
            reload_row(m, &id).await
        }
        "public" if desc.sharable => {
            let s = get_str(&input, "scope").unwrap_or_else(|| "system".into());
            let target: Scope = s
                .parse()
                .map_err(|e: cloudpods_rbac::ParseError| HttpError::input(e.to_string()))?;
            if target == Scope::Project {
                return Err(HttpError::input("public scope must be domain or system"));
            }
            if target > scope {
                return Err(HttpError::forbidden(format!(
                    "not allowed to share at {} scope",
                    target.as_str()
                )));
            }
            let mut ch = Row::new();
            ch.insert("is_public".into(), json!(true));
            ch.insert("public_scope".into(), json!(target.as_str()));
            ch.insert("public_src".into(), json!("local"));
            crud::update(m.db().write(), desc, &id, &ch).await?;
            reload_row(m, &id).await
        }
        "private" if desc.sharable => {
            let mut ch = Row::new();
            ch.insert("is_public".into(), json!(false));
            ch.insert("public_scope".into(), json!("none"));
            crud::update(m.db().write(), desc, &id, &ch).await?;
            reload_row(m, &id).await
        }
        "cancel-delete" if desc.pending_delete => {
            if obj.get("pending_deleted").and_then(Value::as_bool) != Some(true) {
                return Err(HttpError::invalid_status(format!(
                    "{} is not pending delete",
                    desc.keyword
                )));
            }
            let mut ch = Row::new();
            ch.insert("pending_deleted".into(), json!(false));
            ch.insert("pending_deleted_at".into(), Value::Null);
            crud::update(m.db().write(), desc, &id, &ch).await?;
            reload_row(m, &id).await
        }
        "change-owner" if desc.owner == Owner::Project => {
            let mut row = Row::new();
            assign_owner(ctx, desc, scope, &input, &mut row).await?;
            if get_str_any(&input, &["project_id", "project", "tenant", "tenant_id"]).is_none() {
                return Err(HttpError::missing("project_id is required"));
            }
            let mut ch = Row::new();
            ch.insert(
                "tenant_id".into(),
                row.get("tenant_id").cloned().unwrap_or_default(),
            );
            ch.insert(
                "domain_id".into(),
                row.get("domain_id").cloned().unwrap_or_default(),
            );
            crud::update(m.db().write(), desc, &id, &ch).await?;
            reload_row(m, &id).await
        }
        _ => Err(HttpError::action_not_found(format!(
            "{} has no action {action}",
            desc.plural
        ))),
    }
}

async fn reload_row<M: Model + ?Sized>(m: &M, id: &str) -> Result<Value> {
    let mut rows = [crud::must_get(m.db().write(), m.desc(), id).await?];
    strip_secrets(m.desc(), &mut rows);
    let [r] = rows;
    Ok(Value::Object(r))
}

/// `GET /{plural}/{id}/{spec}`.
pub async fn spec<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    ident: &str,
    spec: &str,
    q: &Object,
) -> Result<Value> {
    let desc = m.desc();
    let obj = lookup_get(m, ctx, ident, Some(spec)).await?;
    let out = m.get_spec(ctx, obj, spec, q).await?;
    Ok(json!({ desc.keyword: out }))
}

/// Specs every model understands.
pub async fn spec_common<M: Model + ?Sized>(
    m: &M,
    _ctx: &Ctx,
    obj: Row,
    spec: &str,
    _q: &Object,
) -> Result<Value> {
    let desc = m.desc();
    match spec {
        "status" if desc.status.is_some() => Ok(json!({
            "id": obj.get(desc.pk()),
            "status": obj.get("status"),
        })),
        "metadata" if desc.metadata => Ok(Value::Object(
            metadata::get(m.db(), desc.keyword, &pk_of(desc, &obj)).await?,
        )),
        _ => Err(HttpError::spec_not_found(format!(
            "{} has no spec {spec}",
            desc.plural
        ))),
    }
}

/// `GET /{plural}/{property}` defaults: `distinct-field?field=x`.
pub async fn property_common<M: Model + ?Sized>(
    m: &M,
    ctx: &Ctx,
    name: &str,
    q: &Object,
) -> Result<Value> {
    let desc = m.desc();
    match name {
        "distinct-field" => {
            let field =
                get_str(q, "field").ok_or_else(|| HttpError::missing("field is required"))?;
            let col = desc
                .column(&field)
                .filter(|c| !c.flags.has(ColFlags::SECRET))
                .ok_or_else(|| HttpError::input(format!("{} has no field {field}", desc.plural)))?;
            let scope = ctx.list_scope(desc, q)?;
            let mut sql = Sql::new(format!(
                "SELECT DISTINCT `{}` FROM `{}` WHERE 1 = 1",
                col.name, desc.table
            ));
            if desc.soft_delete {
                sql.push(" AND `deleted` = 0");
            }
            // Like the list: rows in the recycle bin are not offered.
            if desc.pending_delete {
                sql.push(" AND `pending_deleted` = 0");
            }
            if let Some(v) = ctx.visibility(desc, scope) {
                sql.push(" AND (").append(v).push(")");
            }
            if let Some(v) = m.scope_filter(ctx, scope).await? {
                sql.push(" AND (").append(v).push(")");
            }
            sql.push(&format!(" ORDER BY `{}` LIMIT 2048", col.name));
            let rows = sql
                .query()?
                .fetch_all(m.db().read())
                .await
                .map_err(cloudpods_db::DbError::from)?;
            let mut vals = Vec::new();
            for r in &rows {
                let v = cloudpods_db::sql::raw_column(r, 0)?;
                if !v.is_null() {
                    vals.push(v);
                }
            }
            Ok(json!({ field: vals }))
        }
        _ => Err(HttpError::spec_not_found(format!(
            "{} has no property {name}",
            desc.plural
        ))),
    }
}

// ---------------------------------------------------------------------------
// joints

/// List joint rows (`GET /guestdisks`, `GET /servers/{id}/disks`).
pub async fn joint_list<J: JointModel + ?Sized>(
    j: &J,
    ctx: &Ctx,
    conds: Vec<Sql>,
    q: &Object,
) -> Result<Value> {
    let desc = j.desc();
    ctx.require(desc.plural, "list", None)?;
    let limit = match get_i64(q, "limit")? {
        Some(l) if l > 0 => (l as u64).min(MAX_LIMIT),
        _ => MAX_LIMIT,
    };
    let offset = match get_i64(q, "offset")? {
        Some(o) if o < 0 => return Err(HttpError::input("offset must not be negative")),
        o => o.unwrap_or(0) as u64,
    };
    let mut conds = conds;
    column_filters(desc, q, &mut conds)?;
    let filters = get_strs(q, "filter");
    check_query_size(filters.len(), &[])?;
    for f in &filters {
        conds.push(filter_condition(desc, f)?);
    }
    check_query_size(filters.len(), &conds)?;
    let spec = ListSpec {
        conds,
        order: vec![(desc.pk().to_string(), Order::Asc)],
        limit: Some(limit),
        offset,
        count: true,
        ..Default::default()
    };
    let (mut rows, total) = crud::list(j.db(), desc, &spec).await?;
    if get_bool(q, "details")?.unwrap_or(true) {
        j.details(ctx, &mut rows).await?;
    }
    strip_secrets(desc, &mut rows);
    Ok(list_envelope(
        desc.plural,
        rows.into_iter().map(Value::Object).collect(),
        total.unwrap_or(0),
        limit,
        offset,
    ))
}

/// Default [`JointModel::update`]: settable joint columns.
pub async fn update_joint<J: JointModel + ?Sized>(
    j: &J,
    _ctx: &Ctx,
    joint: Row,
    input: Object,
) -> Result<Row> {
    let desc = j.desc();
    let mut changes = Row::new();
    for (k, v) in &input {
        match desc.column(k) {
            Some(col) if col.flags.has(ColFlags::UPDATE) => {
                changes.insert(col.name.to_string(), coerce_input(col, v)?);
            }
            Some(_) => {}
            None => {
                return Err(HttpError::input(format!(
                    "unknown field {k:?} for {}",
                    desc.keyword
                )));
            }
        }
    }
    let id = pk_of(desc, &joint);
    if !changes.is_empty() {
        crud::update(j.db().write(), desc, &id, &changes).await?;
    }
    crud::must_get(j.db().read(), desc, &id)
        .await
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc() -> ModelDesc {
        ModelDesc::new("server", "servers", "guests_tbl")
            .owner(Owner::Project)
            .standalone()
            .status("init")
            .col(Column::int("vcpu_count").update().list())
            .col(Column::str("secret", 64).secret().create())
            .build()
    }

    #[test]
    fn filters_become_bound_sql() {
        let d = desc();
        let s = filter_condition(&d, "name.in('a','b')").unwrap();
        assert_eq!(s.text, "`name` IN (?, ?)");
        let s = filter_condition(&d, "vcpu_count.between(1,4)").unwrap();
        assert_eq!(s.text, "`vcpu_count` >= ? AND `vcpu_count` <= ?");
        assert_eq!(s.args, vec![SqlValue::Int(1), SqlValue::Int(4)]);
        let s = filter_condition(&d, "name.contains(50%_off)").unwrap();
        assert_eq!(s.args, vec![SqlValue::Text("%50!%!_off%".into())]);
        assert!(filter_condition(&d, "vcpu_count.equals(abc)").is_err());
        assert!(filter_condition(&d, "secret.equals(x)").is_err());
        assert!(filter_condition(&d, "nope.equals(x)").is_err());
        assert!(filter_condition(&d, "name.drop(x)").is_err());
    }

    #[test]
    fn create_input_is_checked() {
        let d = desc();
        let input: Object =
            serde_json::from_value(json!({"name": "a", "vcpu_count": "2"})).unwrap();
        let row = row_from_input(Scope::Project, &d, &input).unwrap();
        assert_eq!(row["vcpu_count"], json!(2));
        let input: Object = serde_json::from_value(json!({"name": "a", "bogus": 1})).unwrap();
        assert!(row_from_input(Scope::Project, &d, &input).is_err());
        let input: Object =
            serde_json::from_value(json!({"name": "a", "vcpu_count": "x"})).unwrap();
        assert!(row_from_input(Scope::Project, &d, &input).is_err());
        // Read-only columns are ignored, not assigned.
        let input: Object =
            serde_json::from_value(json!({"name": "a", "status": "running"})).unwrap();
        assert!(
            !row_from_input(Scope::Project, &d, &input)
                .unwrap()
                .contains_key("status")
        );
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("web-01").is_ok());
        assert!(validate_name("数据库").is_ok());
        for bad in ["", " a", "a'b", "a;b", "x\n", "a/b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn envelope_omits_zero() {
        let v = list_envelope("servers", vec![], 0, 0, 0);
        assert_eq!(v, json!({"servers": []}));
        let v = list_envelope("servers", vec![], 5, 20, 0);
        assert_eq!(v, json!({"servers": [], "total": 5, "limit": 20}));
        // Nothing matched: the bare envelope, whatever the page was.
        let v = list_envelope("servers", vec![], 0, 2048, 10);
        assert_eq!(v, json!({"servers": []}));
    }
}
