//! Keystone routes outside the generic resource shapes: tokens, version
//! discovery, role assignments and group membership.

use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cloudpods_apis::identity::AuthRequest;
use cloudpods_db::{Row, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::context::Grant;
use cloudpods_rest::dispatch::{empty, ok_json};
use cloudpods_rest::params::{flag, get_str};
use cloudpods_rest::{ApiRequest, Ctx, HttpError, Result, Service};
use serde_json::{Value, json};

use crate::Keystone;
use crate::models::*;
use crate::privilege;
use crate::store::{self, s};

pub fn register(svc: Service, ks: Arc<Keystone>) -> Service {
    let svc = svc.route_with(Method::GET, "/", false, &ks, versions);
    let svc = svc.route_with(Method::GET, "/v3", false, &ks, version);
    let svc = svc.route_with(Method::POST, "/v3/auth/tokens", false, &ks, issue_token);
    let svc = svc.route_with(Method::GET, "/v3/auth/tokens", true, &ks, validate_token);
    let svc = svc.route_with(Method::DELETE, "/v3/auth/tokens", true, &ks, revoke_token);
    let svc = svc.route_with(
        Method::GET,
        "/v3/auth/tokens/invalid",
        true,
        &ks,
        invalid_tokens,
    );
    let svc = svc.route_with(Method::GET, "/v3/auth/projects", true, &ks, auth_projects);
    let svc = svc.route_with(Method::GET, "/v3/auth/catalog", true, &ks, auth_catalog);
    let svc = svc.route_with(
        Method::GET,
        "/v3/role_assignments",
        true,
        &ks,
        role_assignments,
    );
    let svc = svc.route_with(
        Method::GET,
        "/v3/users/{user}/projects",
        true,
        &ks,
        user_projects,
    );
    let svc = svc.route_with(
        Method::GET,
        "/v3/users/{user}/groups",
        true,
        &ks,
        user_groups,
    );
    let svc = svc.route_with(
        Method::GET,
        "/v3/groups/{group}/users",
        true,
        &ks,
        group_users,
    );
    let svc = svc.route_with(
        Method::PUT,
        "/v3/groups/{group}/users/{user}",
        true,
        &ks,
        group_add_user,
    );
    let svc = svc.route_with(
        Method::DELETE,
        "/v3/groups/{group}/users/{user}",
        true,
        &ks,
        group_remove_user,
    );
    let svc = svc.route_with(
        Method::GET,
        "/v3/groups/{group}/users/{user}",
        true,
        &ks,
        group_check_user,
    );
    // The four assignment route families differ only in their literal
    // segments; each registration tags its requests with the kinds.
    macro_rules! tagged {
        ($svc:expr, $method:expr, $path:expr, $target:expr, $actor:expr, $f:ident) => {{
            let ks = ks.clone();
            $svc.route($method, $path, true, move |mut r: ApiRequest| {
                let ks = ks.clone();
                r.params.insert("kind_target".into(), $target.to_string());
                r.params.insert("kind_actor".into(), $actor.to_string());
                async move { $f(ks, r).await }
            })
        }};
    }
    let mut svc = svc;
    for target in ["projects", "domains"] {
        let path = format!("/v3/{target}/{{target}}/users/{{actor}}/roles");
        svc = tagged!(svc, Method::GET, &path, target, "users", list_roles);
        for actor in ["users", "groups"] {
            let path = format!("/v3/{target}/{{target}}/{actor}/{{actor}}/roles/{{role}}");
            svc = tagged!(svc, Method::PUT, &path, target, actor, grant_role);
            svc = tagged!(svc, Method::DELETE, &path, target, actor, revoke_role);
            svc = tagged!(svc, Method::GET, &path, target, actor, check_role);
        }
    }
    svc
}

fn version_entry(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

fn base_url(r: &ApiRequest) -> String {
    let host = r.header("host").unwrap_or("127.0.0.1:30500");
    let proto = r.header("x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}")
}

/// `GET /`: Keystone's version list (300 Multiple Choices, as OpenStack).
async fn versions(_ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let mut resp = ok_json(json!({"versions": {"values": [version_entry(&base_url(&r))]}}));
    *resp.status_mut() = StatusCode::MULTIPLE_CHOICES;
    Ok(resp)
}

/// `GET /v3`: version discovery, unauthenticated (OpenStack clients loop on 401).
async fn version(_ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    Ok(ok_json(json!({"version": version_entry(&base_url(&r))})))
}

fn token_response(token: &str, body: Value, status: StatusCode) -> Response {
    let mut resp = ok_json(body);
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

async fn issue_token(ks: Arc<Keystone>, mut r: ApiRequest) -> Result<Response> {
    let body = r
        .json()
        .await?
        .ok_or_else(|| HttpError::no_request_key("auth"))?;
    let req: AuthRequest = serde_json::from_value(body)
        .map_err(|e| HttpError::input(format!("invalid auth request: {e}")))?;
    let ip = r
        .header("x-forwarded-for")
        .or_else(|| r.header("x-real-ip"))
        .unwrap_or("")
        .to_string();
    let (token, body) = ks.issue(req, &ip).await?;
    let body = serde_json::to_value(&body).map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(token_response(
        &token,
        json!({"id": token, "token": body}),
        StatusCode::OK,
    ))
}

fn subject(r: &ApiRequest) -> Result<String> {
    r.header("x-subject-token")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| HttpError::missing("X-Subject-Token header is required"))
}

/// Callers may validate their own tokens; validating others' needs
/// `identity.tokens.get` (services use an admin token).
fn may_inspect(ctx: &Ctx, subject_user: &str) -> bool {
    subject_user == ctx.identity.user_id
        || ctx.max_scope("tokens", "get", None) == Some(Scope::System)
}

async fn validate_token(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let token = subject(&r)?;
    let v = ks
        .validate(&token)
        .await
        .map_err(|_| HttpError::not_found("token not found or expired"))?;
    if !may_inspect(ctx, &v.identity.user_id) {
        return Err(HttpError::forbidden(
            "not allowed to validate other users' tokens",
        ));
    }
    let body = ks.token_body(&v.identity).await?;
    let body = serde_json::to_value(&body).map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(token_response(
        &token,
        json!({"token": body}),
        StatusCode::OK,
    ))
}

async fn revoke_token(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let token = subject(&r)?;
    let v = ks
        .validate(&token)
        .await
        .map_err(|_| HttpError::not_found("token not found or expired"))?;
    if !may_inspect(ctx, &v.identity.user_id) {
        return Err(HttpError::forbidden(
            "not allowed to revoke other users' tokens",
        ));
    }
    ks.revoke_token(&token).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Revocation feed for token caches in other processes.
async fn invalid_tokens(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    if ctx.max_scope("tokens", "list", None) != Some(Scope::System) {
        return Err(HttpError::forbidden(
            "only system admins may read the revocation feed",
        ));
    }
    let since = get_str(&r.query, "since").unwrap_or_else(|| "1970-01-01T00:00:00.000000Z".into());
    let rows = store::revoked_since(&ks.db, &since).await?;
    let events: Vec<Value> = rows
        .iter()
        .map(|e| json!({"audit_id": s(e, "audit_id"), "user_id": s(e, "user_id"), "issued_before": s(e, "issued_before")}))
        .collect();
    let audit_ids: Vec<String> = rows
        .iter()
        .map(|e| s(e, "audit_id"))
        .filter(|a| !a.is_empty())
        .collect();
    Ok(ok_json(
        json!({"tokens": audit_ids, "events": events, "now": cloudpods_apis::time::now()}),
    ))
}

async fn projects_json(ks: &Keystone, ids: &[String]) -> Result<Vec<Value>> {
    let mut rows = crud::get_many(&ks.db, &PROJECTS, ids).await?;
    rows.sort_by_key(|r| s(r, "name"));
    let mut out = Vec::new();
    for r in rows {
        let dname = ks
            .tenants
            .domain_name(&s(&r, "domain_id"))
            .await?
            .unwrap_or_default();
        let mut r = r;
        r.insert("project_domain".into(), json!(dname));
        out.push(Value::Object(r));
    }
    Ok(out)
}

async fn auth_projects(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let ids = store::user_project_ids(&ks.db, &ctx.identity.user_id).await?;
    let projects = projects_json(&ks, &ids).await?;
    Ok(ok_json(
        json!({"projects": projects, "links": {"self": null, "next": null, "previous": null}}),
    ))
}

async fn auth_catalog(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    r.ctx()?;
    let cat = ks.catalog().await?;
    Ok(ok_json(json!({"catalog": cat})))
}

/// Find a live row by id or name, scoped like the generic lookup: invisible
/// objects answer 404.
async fn find(
    ks: &Keystone,
    ctx: &Ctx,
    desc: &'static cloudpods_db::ModelDesc,
    ident: &str,
    what: &str,
) -> Result<Row> {
    let scope = ctx
        .max_scope_on(desc, "get", None)
        .ok_or_else(|| HttpError::not_found(format!("{what} {ident} not found")))?;
    let mut conds: Vec<cloudpods_db::Sql> = ctx.visibility(desc, scope).into_iter().collect();
    conds.extend(privilege::scope_filter(ks, ctx, desc).await?);
    store::find_ident(&ks.db, desc, ident, what, conds).await
}

struct AssignmentPath {
    kind: &'static str,
    actor: Row,
    target: Row,
    role: Row,
}

/// The actor and target of an assignment route, looked up as the caller
/// may address them, with the caller's grant on assignments.
struct AssignmentParties {
    grant: Grant,
    actor_what: &'static str,
    target_what: &'static str,
    actor: Row,
    target: Row,
}

async fn assignment_parties(
    ks: &Keystone,
    r: &ApiRequest,
    action: &str,
) -> Result<AssignmentParties> {
    let ctx = r.ctx()?;
    let grant = ctx.require("assignments", action, None)?;
    let (target_desc, target_what): (&'static cloudpods_db::ModelDesc, &'static str) =
        if r.params.get("kind_target").map(String::as_str) == Some("domains") {
            (&DOMAINS, "domain")
        } else {
            (&PROJECTS, "project")
        };
    let (actor_desc, actor_what): (&'static cloudpods_db::ModelDesc, &'static str) =
        if r.params.get("kind_actor").map(String::as_str) == Some("groups") {
            (&GROUPS, "group")
        } else {
            (&USERS, "user")
        };
    let target = find(ks, ctx, target_desc, r.param("target"), target_what).await?;
    // Domain admins manage their own domain only; project owners their own
    // project only.
    let target_domain = if target_what == "domain" {
        s(&target, "id")
    } else {
        s(&target, "domain_id")
    };
    let outside = (grant.scope != Scope::System && target_domain != ctx.identity.domain_id)
        || (grant.scope == Scope::Project
            && (target_what != "project" || s(&target, "id") != ctx.identity.project_id));
    if outside {
        return Err(HttpError::forbidden(format!(
            "not allowed to manage roles in {target_what} {}",
            s(&target, "name")
        )));
    }
    // Below system scope the actor is addressed within the target's domain
    // (a project owner adds users it cannot list to its project).
    let actor = if grant.scope == Scope::System {
        find(ks, ctx, actor_desc, r.param("actor"), actor_what).await?
    } else {
        let conds = vec![crud::eq("domain_id", target_domain.as_str())];
        store::find_ident(&ks.db, actor_desc, r.param("actor"), actor_what, conds).await?
    };
    Ok(AssignmentParties {
        grant,
        actor_what,
        target_what,
        actor,
        target,
    })
}

async fn assignment_path(ks: &Keystone, r: &ApiRequest, action: &str) -> Result<AssignmentPath> {
    let ctx = r.ctx()?;
    let p = assignment_parties(ks, r, action).await?;
    let role = find(ks, ctx, &ROLES, r.param("role"), "role").await?;
    // No one hands out more than it holds.
    if action != "list" {
        privilege::check_ceiling(
            p.grant.scope,
            privilege::role_ceiling(ks, &s(&role, "id")).await?,
            &format!("role {}", s(&role, "name")),
        )?;
    }
    let kind = match (p.actor_what, p.target_what) {
        ("user", "project") => "UserProject",
        ("group", "project") => "GroupProject",
        ("user", _) => "UserDomain",
        _ => "GroupDomain",
    };
    Ok(AssignmentPath {
        kind,
        actor: p.actor,
        target: p.target,
        role,
    })
}

async fn grant_role(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let a = assignment_path(&ks, &r, "create").await?;
    store::add_assignment(
        &ks.db,
        a.kind,
        &s(&a.actor, "id"),
        &s(&a.target, "id"),
        &s(&a.role, "id"),
    )
    .await?;
    ks.cache.forget_user(None);
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn revoke_role(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let a = assignment_path(&ks, &r, "delete").await?;
    let existed = store::remove_assignment(
        &ks.db,
        a.kind,
        &s(&a.actor, "id"),
        &s(&a.target, "id"),
        &s(&a.role, "id"),
    )
    .await?;
    if !existed {
        return Err(HttpError::not_found("role assignment not found"));
    }
    ks.cache.forget_user(None);
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn check_role(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let a = assignment_path(&ks, &r, "list").await?;
    let rows = store::list_assignments(
        &ks.db,
        &[a.kind],
        Some(&[s(&a.actor, "id")]),
        Some(&s(&a.target, "id")),
        Some(&s(&a.role, "id")),
    )
    .await?;
    if rows.is_empty() {
        return Err(HttpError::not_found("role assignment not found"));
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn list_roles(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let p = assignment_parties(&ks, &r, "list").await?;
    let ids = store::role_ids(
        &ks.db,
        &s(&p.actor, "id"),
        &s(&p.target, "id"),
        p.target_what == "domain",
    )
    .await?;
    let roles: Vec<Value> = crud::get_many(&ks.db, &ROLES, &ids)
        .await?
        .into_iter()
        .map(Value::Object)
        .collect();
    Ok(ok_json(json!({"roles": roles})))
}

/// `GET /v3/role_assignments` with Keystone's and Cloudpods' filters:
/// `user.id`, `group.id`, `role.id`, `scope.project.id`, `scope.domain.id`,
/// `effective`, `include_names`.
async fn role_assignments(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let grant = ctx.require("assignments", "list", None)?;
    let q = &r.query;
    let nested = |a: &str, b: &str| -> Option<String> {
        q.get(a)
            .and_then(|v| v.get(b))
            .and_then(cloudpods_rest::params::str_of)
            .or_else(|| get_str(q, &format!("{a}_{b}")))
            .or_else(|| get_str(q, &format!("{a}.{b}")))
            .filter(|s| !s.is_empty())
    };
    let scope_project = q
        .get("scope")
        .and_then(|v| v.get("project"))
        .and_then(|v| v.get("id"))
        .and_then(cloudpods_rest::params::str_of)
        .or_else(|| get_str(q, "project_id"))
        .or_else(|| get_str(q, "project"));
    let scope_domain = q
        .get("scope")
        .and_then(|v| v.get("domain"))
        .and_then(|v| v.get("id"))
        .and_then(cloudpods_rest::params::str_of);
    // Keystone takes `?effective` without a value as true.
    let present = |k: &str| -> Result<bool> {
        match q.get(k) {
            Some(Value::String(v)) if v.is_empty() => Ok(true),
            _ => flag(q, k),
        }
    };
    let effective = present("effective")?;
    let include_names = present("include_names")?;

    let user = match nested("user", "id") {
        Some(u) => Some(find(&ks, ctx, &USERS, &u, "user").await?),
        None => None,
    };
    let group = match nested("group", "id") {
        Some(g) => Some(find(&ks, ctx, &GROUPS, &g, "group").await?),
        None => None,
    };
    let role = match nested("role", "id") {
        Some(x) => Some(find(&ks, ctx, &ROLES, &x, "role").await?),
        None => None,
    };
    let project = match scope_project {
        Some(p) => Some(find(&ks, ctx, &PROJECTS, &p, "project").await?),
        None => None,
    };
    let domain = match scope_domain {
        Some(d) => Some(find(&ks, ctx, &DOMAINS, &d, "domain").await?),
        None => None,
    };

    let mut types: Vec<&str> = vec!["UserProject", "GroupProject", "UserDomain", "GroupDomain"];
    if project.is_some() {
        types.retain(|t| t.ends_with("Project"));
    }
    if domain.is_some() {
        types.retain(|t| t.ends_with("Domain"));
    }
    let mut actors: Option<Vec<String>> = None;
    if let Some(u) = &user {
        let mut a = vec![s(u, "id")];
        if effective {
            a.extend(store::user_group_ids(&ks.db, &s(u, "id")).await?);
        } else {
            types.retain(|t| t.starts_with("User"));
        }
        actors = Some(a);
    }
    if let Some(g) = &group {
        types.retain(|t| t.starts_with("Group"));
        actors = Some(vec![s(g, "id")]);
    }
    let target = project.as_ref().or(domain.as_ref()).map(|t| s(t, "id"));
    let role_id = role.as_ref().map(|x| s(x, "id"));
    let rows = store::list_assignments(
        &ks.db,
        &types,
        actors.as_deref(),
        target.as_deref(),
        role_id.as_deref(),
    )
    .await?;

    // Expand group assignments to their members when effective.
    let mut expanded: Vec<(String, String, String, String)> = Vec::new(); // (kind, actor, target, role)
    for a in &rows {
        let kind = s(a, "type");
        if effective && kind.starts_with("Group") {
            let members = store::group_member_ids(&ks.db, &s(a, "actor_id")).await?;
            for m in members {
                if user.as_ref().is_none_or(|u| s(u, "id") == m) {
                    expanded.push((
                        kind.replace("Group", "User"),
                        m,
                        s(a, "target_id"),
                        s(a, "role_id"),
                    ));
                }
            }
        } else {
            expanded.push((kind, s(a, "actor_id"), s(a, "target_id"), s(a, "role_id")));
        }
    }
    expanded.sort();
    expanded.dedup();

    let mut out = Vec::new();
    for (kind, actor, target, role) in expanded {
        // Restrict to what the caller's scope covers.
        let (target_desc, key) = if kind.ends_with("Project") {
            (&PROJECTS, "project")
        } else {
            (&DOMAINS, "domain")
        };
        let target_row = crud::get(ks.db.read(), target_desc, &target).await?;
        let Some(target_row) = target_row else {
            continue;
        };
        let target_domain = if key == "project" {
            s(&target_row, "domain_id")
        } else {
            s(&target_row, "id")
        };
        if grant.scope == Scope::Domain && target_domain != ctx.identity.domain_id {
            continue;
        }
        if grant.scope == Scope::Project && (key != "project" || target != ctx.identity.project_id)
        {
            continue;
        }
        let actor_key = if kind.starts_with("User") {
            "user"
        } else {
            "group"
        };
        let mut actor_obj = json!({"id": actor});
        let mut target_obj = json!({"id": target});
        let mut role_obj = json!({"id": role});
        if include_names {
            let actor_desc = if actor_key == "user" { &USERS } else { &GROUPS };
            if let Some(a) = crud::get(ks.db.read(), actor_desc, &actor).await? {
                actor_obj["name"] = json!(s(&a, "name"));
                let dn = ks
                    .tenants
                    .domain_name(&s(&a, "domain_id"))
                    .await?
                    .unwrap_or_default();
                actor_obj["domain"] = json!({"id": s(&a, "domain_id"), "name": dn});
            }
            target_obj["name"] = json!(s(&target_row, "name"));
            if key == "project" {
                let dn = ks
                    .tenants
                    .domain_name(&target_domain)
                    .await?
                    .unwrap_or_default();
                target_obj["domain"] = json!({"id": target_domain, "name": dn});
            }
            if let Some(ro) = crud::get(ks.db.read(), &ROLES, &role).await? {
                role_obj["name"] = json!(s(&ro, "name"));
            }
        }
        let mut item = json!({"role": role_obj, "scope": {key: target_obj}});
        item[actor_key] = actor_obj;
        out.push(item);
    }
    let total = out.len();
    Ok(ok_json(
        json!({"role_assignments": out, "total": total, "links": {"self": null, "next": null, "previous": null}}),
    ))
}

async fn user_projects(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let user = find(&ks, ctx, &USERS, r.param("user"), "user").await?;
    let ids = store::user_project_ids(&ks.db, &s(&user, "id")).await?;
    let projects = projects_json(&ks, &ids).await?;
    Ok(ok_json(
        json!({"projects": projects, "total": projects.len(), "links": {"self": null, "next": null, "previous": null}}),
    ))
}

async fn user_groups(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let user = find(&ks, ctx, &USERS, r.param("user"), "user").await?;
    let ids = store::user_group_ids(&ks.db, &s(&user, "id")).await?;
    let groups: Vec<Value> = crud::get_many(&ks.db, &GROUPS, &ids)
        .await?
        .into_iter()
        .map(Value::Object)
        .collect();
    Ok(ok_json(json!({"groups": groups, "total": groups.len()})))
}

async fn group_users(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let group = find(&ks, ctx, &GROUPS, r.param("group"), "group").await?;
    let ids = store::group_member_ids(&ks.db, &s(&group, "id")).await?;
    let mut users = crud::get_many(&ks.db, &USERS, &ids).await?;
    cloudpods_rest::generic::strip_secrets(&USERS, &mut users);
    let users: Vec<Value> = users.into_iter().map(Value::Object).collect();
    Ok(ok_json(json!({"users": users, "total": users.len()})))
}

async fn membership(ks: &Keystone, r: &ApiRequest, action: &str) -> Result<(Row, Row)> {
    let ctx = r.ctx()?;
    let grant = ctx.require_on(&GROUPS, "perform", Some(action))?;
    let group = find(ks, ctx, &GROUPS, r.param("group"), "group").await?;
    let user = find(ks, ctx, &USERS, r.param("user"), "user").await?;
    if grant.scope != Scope::System && s(&group, "domain_id") != ctx.identity.domain_id {
        return Err(HttpError::forbidden("not allowed to change this group"));
    }
    // Joining a group gives its roles; leaving it changes the user.
    privilege::check_may_manage(ks, &GROUPS, &group, grant.scope).await?;
    privilege::check_may_manage(ks, &USERS, &user, grant.scope).await?;
    Ok((group, user))
}

async fn group_add_user(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let (group, user) = membership(&ks, &r, "add-users").await?;
    store::add_user_to_group(&ks.db, &s(&user, "id"), &s(&group, "id")).await?;
    ks.cache.forget_user(Some(&s(&user, "id")));
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn group_remove_user(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let (group, user) = membership(&ks, &r, "remove-users").await?;
    if !store::remove_user_from_group(&ks.db, &s(&user, "id"), &s(&group, "id")).await? {
        return Err(HttpError::not_found("user is not in the group"));
    }
    ks.cache.forget_user(Some(&s(&user, "id")));
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn group_check_user(ks: Arc<Keystone>, r: ApiRequest) -> Result<Response> {
    let ctx = r.ctx()?;
    let group = find(&ks, ctx, &GROUPS, r.param("group"), "group").await?;
    let user = find(&ks, ctx, &USERS, r.param("user"), "user").await?;
    let members = store::group_member_ids(&ks.db, &s(&group, "id")).await?;
    if !members.contains(&s(&user, "id")) {
        return Err(HttpError::not_found("user is not in the group"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
