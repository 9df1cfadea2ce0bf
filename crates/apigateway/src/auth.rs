//! `/api/v1/auth/*`: login, logout, who am I, what may I do.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudpods_rbac::Scope;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{GatewayError, Result};
use crate::session::{self, COOKIE, SessionData};
use crate::{Caller, Gateway, check_same_origin};

/// `GET /api/v1/auth/regions`: what the login page needs before login.
pub async fn regions(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let api_server = api_server(&headers);
    axum::Json(json!({
        "regions": [gw.opts.region_id],
        "domains": ["Default"],
        "return_full_domains": false,
        "idps": [],
        "encrypt_passwd": false,
        "api_server": api_server,
    }))
    .into_response()
}

/// The gateway's own address as the browser reached it.
pub fn api_server(headers: &HeaderMap) -> String {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let host = h("x-forwarded-host")
        .or_else(|| h("host"))
        .unwrap_or("localhost");
    let proto = h("x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginInput {
    username: String,
    password: String,
    domain: String,
    region: String,
    /// Switch the session to this project (Cloudpods' project switcher).
    #[serde(rename = "tenantId", alias = "project_id")]
    tenant_id: String,
}

/// `POST /api/v1/auth/login`: a password login (or, with `tenantId` and a
/// session, a switch of project). Answers 200 with an empty body and the
/// session cookie.
pub async fn login(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    match do_login(&gw, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn do_login(gw: &Gateway, headers: &HeaderMap, body: &[u8]) -> Result<Response> {
    check_same_origin(&Method::POST, headers)?;
    let input: LoginInput = if body.iter().all(u8::is_ascii_whitespace) {
        LoginInput::default()
    } else {
        serde_json::from_slice(body)
            .or_else(|_| form_login(body))
            .map_err(|_| GatewayError::Input("the login body is not JSON".into()))?
    };
    let (token, tbody) = if input.username.is_empty() && !input.tenant_id.is_empty() {
        let caller = gw.caller(headers).await?;
        gw.issue(
            json!({"identity": {"methods": ["token"], "token": {"id": caller.token}},
                        "scope": {"project": {"id": input.tenant_id}}}),
        )
        .await?
    } else {
        password_login(gw, &input).await?
    };
    let expires = expiry(&tbody);
    let user = tbody["token"]["user"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let data = SessionData {
        token,
        expires,
        user_id: tbody["token"]["user"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let sealed = gw.sealer.seal(&data)?;
    let secure = gw.secure(headers);
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    let value = session::cookie_value(&sealed, &data, &user);
    append_cookie(
        h,
        &session::set_cookie(COOKIE, &value, Some(expires), secure, true),
    );
    if let Some(p) = tbody["token"]["project"]["id"].as_str() {
        append_cookie(
            h,
            &session::set_cookie("tenant", p, Some(expires), secure, false),
        );
    }
    Ok(resp)
}

fn form_login(body: &[u8]) -> std::result::Result<LoginInput, ()> {
    let mut i = LoginInput::default();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "username" => i.username = v.into_owned(),
            "password" => i.password = v.into_owned(),
            "domain" => i.domain = v.into_owned(),
            "region" => i.region = v.into_owned(),
            "tenantId" | "project_id" => i.tenant_id = v.into_owned(),
            _ => {}
        }
    }
    if i.username.is_empty() {
        Err(())
    } else {
        Ok(i)
    }
}

async fn password_login(gw: &Gateway, input: &LoginInput) -> Result<(String, Value)> {
    if input.username.is_empty() || input.password.is_empty() {
        return Err(GatewayError::Input(
            "username and password are required".into(),
        ));
    }
    if !input.region.is_empty() && input.region != gw.opts.region_id {
        return Err(GatewayError::Input(format!("no region {}", input.region)));
    }
    let domain = if input.domain.is_empty() {
        "Default"
    } else {
        input.domain.as_str()
    };
    // `project/user` picks the project (Cloudpods' parseLoginUser).
    let (project, user) = match input.username.split_once('/') {
        Some((p, u)) if !p.is_empty() && !u.is_empty() => (Some(p), u),
        _ => (None, input.username.as_str()),
    };
    let password = session::decode_password(&input.password);
    let identity = json!({"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": domain}, "password": password}}});
    let scope = match (project, input.tenant_id.as_str()) {
        (_, id) if !id.is_empty() => Some(json!({"project": {"id": id}})),
        (Some(p), _) => Some(json!({"project": {"name": p, "domain": {"name": domain}}})),
        _ => None,
    };
    if let Some(scope) = scope {
        return gw
            .issue(json!({"identity": identity, "scope": scope}))
            .await;
    }
    // No project asked for: log in unscoped, pick one of the user's
    // projects, and trade the unscoped token for a scoped one.
    let (unscoped, body) = gw.issue(json!({"identity": identity})).await?;
    let projects = gw.user_projects(&unscoped).await.unwrap_or_default();
    let Some(pick) = pick_project(&projects, user) else {
        return Ok((unscoped, body));
    };
    let scoped = gw
        .issue(
            json!({"identity": {"methods": ["token"], "token": {"id": unscoped}},
                      "scope": {"project": {"id": pick}}}),
        )
        .await;
    gw.revoke(&unscoped).await;
    scoped
}

/// Cloudpods picks the project with the widest role, else one named like
/// the user, else the first. The system project (where the system admin
/// role is held) comes first.
fn pick_project(projects: &[Value], user: &str) -> Option<String> {
    let id = |p: &Value| p["id"].as_str().map(str::to_string);
    projects
        .iter()
        .find(|p| p["name"] == "system")
        .or_else(|| projects.iter().find(|p| p["name"] == user))
        .or_else(|| projects.first())
        .and_then(id)
}

fn expiry(tbody: &Value) -> i64 {
    tbody["token"]["expires_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() + 3600)
}

fn append_cookie(h: &mut HeaderMap, c: &str) {
    if let Ok(v) = HeaderValue::from_str(c) {
        h.append(header::SET_COOKIE, v);
    }
}

impl Gateway {
    /// `POST /v3/auth/tokens`: the token and its body. A refused password
    /// reads the same for an unknown user and a wrong password.
    async fn issue(&self, auth: Value) -> Result<(String, Value)> {
        let resp = self
            .http
            .post(self.keystone("/auth/tokens"))
            .json(&json!({ "auth": auth }))
            .send()
            .await?;
        let status = resp.status();
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match (status.is_success(), token) {
            (true, Some(t)) => Ok((t, body)),
            _ if status == StatusCode::UNAUTHORIZED => Err(GatewayError::WrongCredentials),
            _ => Err(upstream_error(status.as_u16(), &body)),
        }
    }

    /// `DELETE /v3/auth/tokens` of the caller's own token (best effort).
    async fn revoke(&self, token: &str) {
        let r = self
            .http
            .delete(self.keystone("/auth/tokens"))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "revoking a session token failed");
        }
    }

    async fn user_projects(&self, token: &str) -> Result<Vec<Value>> {
        let resp = self
            .http
            .get(self.keystone("/auth/projects"))
            .header("X-Auth-Token", token)
            .send()
            .await?;
        let body: Value = resp.json().await?;
        Ok(body["projects"].as_array().cloned().unwrap_or_default())
    }
}

/// A service's error answer as a gateway error (class and details kept).
pub fn upstream_error(status: u16, body: &Value) -> GatewayError {
    let class = body["class"]
        .as_str()
        .and_then(cloudpods_apis::ErrorClass::from_name)
        .unwrap_or_else(|| cloudpods_apis::ErrorClass::from_code(status));
    let details = body["details"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    GatewayError::Upstream { class, details }
}

/// `GET|POST /api/v1/auth/logout`: revoke the token, expire the cookie.
pub async fn logout(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_same_origin(&Method::POST, &headers) {
        return e.into_response();
    }
    if let Ok(c) = gw.caller(&headers).await {
        gw.revoke(&c.token).await;
    }
    let mut resp = axum::Json(json!({})).into_response();
    let secure = gw.secure(&headers);
    append_cookie(
        resp.headers_mut(),
        &session::set_cookie(COOKIE, "", None, secure, true),
    );
    resp
}

/// `GET /api/v1/auth/user`: who the caller is, its projects, what scopes
/// it can act at.
pub async fn user(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    match user_info(&gw, &headers).await {
        Ok(v) => axum::Json(json!({ "data": v })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn user_info(gw: &Gateway, headers: &HeaderMap) -> Result<Value> {
    let c = gw.caller(headers).await?;
    let id = &c.identity;
    let projects = gw.user_projects(&c.token).await.unwrap_or_default();
    let names = &id.policy_names;
    let projects: Vec<Value> = projects
        .iter()
        .map(|p| {
            json!({"id": p["id"], "name": p["name"], "domain_id": p["domain_id"],
                   "domain": p["domain"]["name"].as_str().or(p["domain_id"].as_str())})
        })
        .collect();
    let services = gw.service_types(&c.token).await;
    Ok(json!({
        "id": id.user_id, "name": id.user, "displayname": id.user,
        "domain": {"id": id.user_domain_id, "name": id.user_domain},
        "projectId": id.project_id, "projectName": id.project,
        "projectDomainId": id.domain_id, "projectDomain": id.domain,
        "roles": id.roles,
        "projects": projects,
        "system_capable": !names.system.is_empty(),
        "domain_capable": !names.domain.is_empty() || !names.system.is_empty(),
        "project_capable": true,
        "system_policies": names.system, "domain_policies": names.domain,
        "policies": names.project,
        "services": services.iter().map(|t| json!({"type": t, "status": true})).collect::<Vec<_>>(),
        "regions": [gw.opts.region_id],
        "menus": [], "k8sdashboard": [],
        "system_totp_on": false, "enable_quota_check": false,
        "expires_at": id.expires_at,
    }))
}

impl Gateway {
    async fn service_types(&self, token: &str) -> Vec<String> {
        // Reading one endpoint fills the cached catalog.
        let _ = self.endpoint(token, "identity").await;
        let mut types: Vec<String> = self
            .catalog
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(_, m)| m.keys().cloned().collect()))
            .unwrap_or_default();
        types.sort();
        types
    }
}

/// `GET|POST /api/v1/auth/permissions`: for each key
/// `[scope, service, resource, action(, extra)]`, the same list with
/// `allow` or `deny` appended — what the caller's policies say, and
/// whether that reaches the scope the resource is managed (or read) at.
pub async fn permissions(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let c = match gw.caller(&headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let asked: Map<String, Value> = if method == Method::POST && !body.is_empty() {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return GatewayError::Input("permissions: a JSON object is expected".into())
                    .into_response();
            }
        }
    } else {
        Map::new()
    };
    let mut out = Map::new();
    for (k, v) in asked {
        let Some(parts) = v.as_array() else { continue };
        let p: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
        let mut answer = parts.clone();
        answer.push(json!(if allows(&gw, &c, &p) { "allow" } else { "deny" }));
        out.insert(k, Value::Array(answer));
    }
    axum::Json(Value::Object(out)).into_response()
}

fn allows(gw: &Gateway, c: &Caller, p: &[&str]) -> bool {
    let [scope, service, resource, action, rest @ ..] = p else {
        return false;
    };
    let Some(wanted) = parse_scope(scope) else {
        return false;
    };
    let extra = rest.first().copied();
    let Some(granted) =
        cloudpods_rest::context::allowed_scope(&c.identity, service, resource, action, extra)
    else {
        return false;
    };
    let needed = gw.resource(resource).map_or(Scope::Project, |r| {
        if matches!(*action, "list" | "get") {
            r.read_scope
        } else {
            r.manage_scope
        }
    });
    granted >= wanted && granted >= needed
}

fn parse_scope(s: &str) -> Option<Scope> {
    match s {
        "system" => Some(Scope::System),
        "domain" => Some(Scope::Domain),
        "project" | "" => Some(Scope::Project),
        _ => None,
    }
}

/// `GET /api/v1/auth/scoped_resources`: which resources are managed at
/// which scope, per service.
pub async fn scoped_resources(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = gw.caller(&headers).await {
        return e.into_response();
    }
    let mut by_scope: Map<String, Value> = Map::new();
    for key in ["system", "domain", "project", "user"] {
        by_scope.insert(key.into(), json!({}));
    }
    for r in gw.opts.resources.iter() {
        let key = match r.manage_scope {
            Scope::System => "system",
            Scope::Domain => "domain",
            Scope::Project => "project",
        };
        if let Some(Value::Object(svcs)) = by_scope.get_mut(key) {
            let list = svcs.entry(r.service.clone()).or_insert_with(|| json!([]));
            if let Value::Array(a) = list {
                a.push(json!(r.plural));
            }
        }
    }
    axum::Json(Value::Object(by_scope)).into_response()
}
