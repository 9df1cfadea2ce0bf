//! apigateway: the one origin of the web console, following Cloudpods'
//! apigateway contract (`/api/v1/auth/*`, resources at
//! `/api/v{1,2}/<plural>[/<id>[/<spec|action>]]` with the gateway's
//! reshaping, the backend proxy `/api/s/<service>/…`).
//!
//! Stateless: the session is an AEAD-sealed keystone token in a cookie
//! ([`session`]), so gateways sharing the key serve each other's sessions.
//! The gateway holds no credentials of its own: services are found in the
//! catalog read with the caller's token, and every call is forwarded with
//! the caller's token, so the services' authorization decides.

pub mod auth;
pub mod error;
pub mod proxy;
pub mod session;
pub mod web;
pub mod webconsole;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, header};
use axum::routing::{any, get, post};
use cloudpods_rbac::Scope;
use cloudpods_rest::{Identity, TokenVerifier};
use serde_json::Value;

use crate::error::{GatewayError, Result};
use crate::session::{COOKIE, Sealer, SessionData};

/// A resource the gateway routes, as its service declares it.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub plural: String,
    pub keyword: String,
    /// Policy service name (`compute`, `identity`, `image`).
    pub service: String,
    pub read_scope: Scope,
    pub manage_scope: Scope,
}

pub struct GatewayOptions {
    /// Keystone's v3 URL (`http://host:30357/v3`).
    pub keystone_url: String,
    pub region_id: String,
    /// The key sessions are sealed under; every gateway of a deployment
    /// needs the same one.
    pub cookie_key: [u8; 32],
    /// Mark cookies `Secure` whatever the request says (behind a TLS
    /// proxy that does not send `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    pub resources: Vec<ResourceInfo>,
}

/// How long a catalog read with some caller's token is reused.
const CATALOG_TTL: Duration = Duration::from_secs(30);

pub struct Gateway {
    opts: GatewayOptions,
    http: reqwest::Client,
    verifier: Arc<dyn TokenVerifier>,
    sealer: Sealer,
    by_plural: HashMap<String, ResourceInfo>,
    catalog: RwLock<Option<(Instant, HashMap<String, String>)>>,
}

/// The caller of one request: its token, what keystone says of it, and
/// whether it came by cookie (then cross-site checks apply).
pub struct Caller {
    pub token: String,
    pub identity: Arc<Identity>,
    pub session: SessionData,
    pub by_cookie: bool,
}

impl Gateway {
    pub fn new(
        opts: GatewayOptions,
        verifier: Arc<dyn TokenVerifier>,
        http: reqwest::Client,
    ) -> Result<Arc<Gateway>> {
        let sealer = Sealer::new(&opts.cookie_key)?;
        let by_plural = opts
            .resources
            .iter()
            .map(|r| (r.plural.clone(), r.clone()))
            .collect();
        Ok(Arc::new(Gateway {
            opts,
            http,
            verifier,
            sealer,
            by_plural,
            catalog: RwLock::new(None),
        }))
    }

    pub fn resource(&self, plural: &str) -> Option<&ResourceInfo> {
        self.by_plural.get(plural)
    }

    fn keystone(&self, path: &str) -> String {
        format!("{}{path}", self.opts.keystone_url.trim_end_matches('/'))
    }

    /// Who is calling: the session cookie (or `Authorization: Bearer` with
    /// the sealed session), opened and its token verified by keystone.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller> {
        // Scripts and SDKs may present a keystone token as they would to
        // the services (no cookie, so no cross-site question).
        if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
            let identity = self
                .verifier
                .verify(token)
                .await
                .map_err(|_| GatewayError::BadSession)?;
            let expires = chrono::DateTime::parse_from_rfc3339(&identity.expires_at)
                .map(|t| t.timestamp())
                .unwrap_or_default();
            return Ok(Caller {
                token: token.to_string(),
                session: SessionData {
                    token: token.to_string(),
                    expires,
                    user_id: identity.user_id.clone(),
                },
                identity,
                by_cookie: false,
            });
        }
        let (sealed, by_cookie) = match bearer(headers) {
            Some(b) => (b, false),
            None => (
                cookie(headers, COOKIE)
                    .and_then(|v| session::sealed_of_cookie(&v))
                    .ok_or(GatewayError::NoSession)?,
                true,
            ),
        };
        let data = self.sealer.open(&sealed, chrono::Utc::now().timestamp())?;
        let identity = self
            .verifier
            .verify(&data.token)
            .await
            .map_err(|_| GatewayError::BadSession)?;
        Ok(Caller {
            token: data.token.clone(),
            identity,
            session: data,
            by_cookie,
        })
    }

    /// The endpoint of a service type, from the catalog (read with the
    /// caller's token, kept a little while).
    pub async fn endpoint(&self, token: &str, service_type: &str) -> Result<String> {
        if let Ok(g) = self.catalog.read()
            && let Some((at, m)) = g.as_ref()
            && at.elapsed() < CATALOG_TTL
            && let Some(u) = m.get(service_type)
        {
            return Ok(u.clone());
        }
        let resp = self
            .http
            .get(self.keystone("/auth/catalog"))
            .header("X-Auth-Token", token)
            .send()
            .await?;
        let body: Value = resp.json().await?;
        let mut map = HashMap::new();
        for svc in body["catalog"].as_array().into_iter().flatten() {
            let ty = svc["type"].as_str().unwrap_or_default();
            let eps = svc["endpoints"].as_array().cloned().unwrap_or_default();
            let pick = eps
                .iter()
                .filter(|e| {
                    e["region_id"].as_str().unwrap_or(&self.opts.region_id) == self.opts.region_id
                })
                .min_by_key(|e| match e["interface"].as_str() {
                    Some("public") => 0,
                    Some("internal") => 1,
                    _ => 2,
                });
            if let Some(url) = pick.and_then(|e| e["url"].as_str()) {
                map.insert(ty.to_string(), url.trim_end_matches('/').to_string());
            }
        }
        let found = map.get(service_type).cloned();
        if let Ok(mut g) = self.catalog.write() {
            *g = Some((Instant::now(), map));
        }
        found.ok_or_else(|| {
            GatewayError::NotFound(format!("no {service_type} service in the catalog"))
        })
    }

    /// Whether cookies should be `Secure` for this request.
    fn secure(&self, headers: &HeaderMap) -> bool {
        self.opts.secure_cookies
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    }
}

/// One path segment of a URL to a service, percent-encoded (ids keep their
/// dashes).
pub fn segment(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// The catalog type of a policy service.
pub fn catalog_type(service: &str) -> &str {
    match service {
        "compute" => "compute_v2",
        other => other,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(t.trim().to_string())
}

/// One cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// CSRF: a state-changing call that a browser sends from another origin
/// is refused. Browsers say where a request comes from (`Sec-Fetch-Site`,
/// `Origin`); scripts send neither and are not exposed to CSRF. With the
/// SameSite=Strict session cookie this is the second of two locks.
pub fn check_same_origin(method: &Method, headers: &HeaderMap) -> Result<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = h("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(GatewayError::CrossSite(format!("Sec-Fetch-Site: {site}")));
    }
    check_origin(headers)
}

/// A browser's `Origin`, when it sends one, is this gateway. (WebSocket
/// upgrades are GETs that browsers send cross-site with cookies; this is
/// their check.)
pub fn check_origin(headers: &HeaderMap) -> Result<()> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(origin) = h("origin").filter(|o| *o != "null") {
        let host = h("x-forwarded-host")
            .or_else(|| h("host"))
            .unwrap_or_default();
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Err(GatewayError::CrossSite(format!(
                "origin {origin} is not this gateway ({host})"
            )));
        }
    }
    Ok(())
}

/// The gateway's routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/api/v1/auth/regions", get(auth::regions))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", get(auth::logout).post(auth::logout))
        .route("/api/v1/auth/user", get(auth::user))
        .route(
            "/api/v1/auth/permissions",
            get(auth::permissions).post(auth::permissions),
        )
        .route("/api/v1/auth/scoped_resources", get(auth::scoped_resources))
        .route("/api/v1/webconsole/server/{id}", post(webconsole::open))
        .route("/websockify", get(webconsole::websockify))
        .route("/websockify/", get(webconsole::websockify))
        .route("/api/{*rest}", any(proxy::api))
        .fallback(web::asset)
        .with_state(gw)
}
