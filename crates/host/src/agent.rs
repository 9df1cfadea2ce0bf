//! The agent's HTTP API.
//!
//! `POST /servers/{id}/{action}` and `POST /disks/{storage}/{action}/{disk}`
//! with `X-Task-Notify-Url` are accepted at once (`{}`) and answered later
//! by a `POST` to the notify URL with the result, or
//! `{"__status__": "error", "__reason__": …}`. Without the header the
//! action runs synchronously and the result is the response (the region's
//! undo steps use this).
//!
//! Every route but `GET /ping` answers only requests the region signed with
//! this host's agent secret ([`cloudpods_apis::agent_auth`]); a notify URL
//! must point at the region the agent registered with (`{region}/tasks/…`);
//! ids, paths and desc fields are checked ([`crate::validate`]) before any
//! work starts.

use std::path::Path as FsPath;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cloudpods_apis::agent_auth::{self, AuthError, SIGNATURE_HEADER, Signed, TIMESTAMP_HEADER};
use serde_json::{Value, json};

use crate::validate::{self, Limits, Roots};
use crate::{Driver, DriverError, DriverResult, console};

/// Largest request body the agent reads (a guest desc is a few KB).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Who the agent answers and what it accepts.
#[derive(Clone)]
pub struct AgentConfig {
    key: Arc<Vec<u8>>,
    /// `{region}/tasks/` of the region registered with, then of every
    /// compute endpoint seen in the catalog since.
    notify: Arc<RwLock<Vec<reqwest::Url>>>,
    /// Where to re-read the catalog when a notify URL is not known (a
    /// region restarted on another address, a second region process).
    catalog: Option<cloudpods_sdk::Client>,
    refresh: Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
    roots: Roots,
    storages: Arc<RwLock<Vec<String>>>,
}

/// How often a notify URL that is not known may trigger a catalog read.
const CATALOG_REFRESH: Duration = Duration::from_secs(2);

impl AgentConfig {
    /// `secret`: this host's agent secret (hex, as registered);
    /// `region_url`: the region's base URL (its compute endpoint) — task
    /// callbacks are posted only under `{region_url}/tasks/`; `roots`:
    /// where this agent's files may be.
    pub fn new(secret: &str, region_url: &str, roots: Roots) -> Result<AgentConfig, DriverError> {
        let key = agent_auth::parse_secret(secret)
            .ok_or_else(|| DriverError("the agent secret is not 32 bytes of hex".into()))?;
        let notify = tasks_url(region_url)
            .ok_or_else(|| DriverError(format!("region URL {region_url:?} is not a URL")))?;
        Ok(AgentConfig {
            key: Arc::new(key),
            notify: Arc::new(RwLock::new(vec![notify])),
            catalog: None,
            refresh: Arc::default(),
            roots,
            storages: Arc::default(),
        })
    }

    /// Also accept the compute endpoints of `client`'s catalog, re-read
    /// (token validation, at most every 2 s) when a notify URL matches
    /// none of the known ones.
    pub fn with_catalog(mut self, client: cloudpods_sdk::Client) -> AgentConfig {
        self.catalog = Some(client);
        self
    }

    fn known(&self) -> Vec<reqwest::Url> {
        match self.notify.read() {
            Ok(n) => n.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether the notify URL is the region's, re-reading the catalog once
    /// when it is not known.
    async fn notify_allowed(&self, url: &str) -> bool {
        if self.known().iter().any(|b| notify_matches(b, url)) {
            return true;
        }
        let Some(client) = &self.catalog else {
            return false;
        };
        let mut last = self.refresh.lock().await;
        // Another request may have refreshed while this one waited.
        if self.known().iter().any(|b| notify_matches(b, url)) {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < CATALOG_REFRESH) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        let session = client.token();
        match client.validate_token(session.id()).await {
            Ok(token) => {
                let found: Vec<reqwest::Url> = token
                    .catalog
                    .iter()
                    .filter(|s| s.service_type == "compute_v2")
                    .flat_map(|s| s.endpoints.iter())
                    .filter_map(|e| {
                        tasks_url(&cloudpods_sdk::endpoint::service_base(&e.url, "compute_v2"))
                    })
                    .collect();
                let mut n = match self.notify.write() {
                    Ok(n) => n,
                    Err(p) => p.into_inner(),
                };
                for f in found {
                    if !n.contains(&f) {
                        tracing::info!(region = %f, "a region endpoint from the catalog may receive callbacks");
                        n.push(f);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the catalog failed"),
        }
        self.known().iter().any(|b| notify_matches(b, url))
    }

    /// The storages registered for this host (known after registration;
    /// disk requests for any other storage are refused).
    pub fn set_storages(&self, storages: Vec<String>) {
        match self.storages.write() {
            Ok(mut s) => *s = storages,
            Err(p) => *p.into_inner() = storages,
        }
    }

    fn limits(&self) -> Limits {
        let storages = match self.storages.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Limits {
            roots: self.roots.clone(),
            storages,
        }
    }
}

/// `{base}/tasks/` as a URL.
fn tasks_url(base: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(&format!("{}/tasks/", base.trim_end_matches('/'))).ok()
}

/// Whether a notify URL points under `base` (`{region}/tasks/`): same
/// scheme and host, one path segment below, no credentials. The port may
/// differ: several region processes share a machine and a database, and a
/// region restarted on another port keeps its tasks (the whole URL is
/// covered by the region's signature anyway).
fn notify_matches(base: &reqwest::Url, url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    u.scheme() == base.scheme()
        && u.host_str() == base.host_str()
        && u.username().is_empty()
        && u.password().is_none()
        && u.path().starts_with(base.path())
        && u.path().len() > base.path().len()
        && !u.path()[base.path().len()..].contains(['/', '\\'])
}

/// Load this agent's secret from `path`, or create it (32 random bytes,
/// hex, mode 0600) on first start.
pub fn load_or_create_secret(path: &FsPath) -> Result<String, DriverError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(s) = std::fs::read_to_string(path)
        && agent_auth::parse_secret(&s).is_some()
    {
        return Ok(s.trim().to_string());
    }
    let s = agent_auth::generate_secret();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| DriverError(format!("creating {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| DriverError(format!("writing {}: {e}", tmp.display())))?;
    f.write_all(s.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| DriverError(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| DriverError(format!("writing {}: {e}", path.display())))?;
    Ok(s)
}

/// A request to an agent signed with `secret` as the region signs it (for
/// tools and tests that talk to an agent directly; the region has its own
/// client in `cloudpods_region::agent`). `task` = `(X-Task-Id,
/// X-Task-Notify-Url)`.
pub fn signed_request(
    http: &reqwest::Client,
    secret: &str,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    task: Option<(&str, &str)>,
) -> Result<reqwest::RequestBuilder, DriverError> {
    let key = agent_auth::parse_secret(secret)
        .ok_or_else(|| DriverError("the agent secret is not 32 bytes of hex".into()))?;
    let parsed =
        reqwest::Url::parse(url).map_err(|e| DriverError(format!("agent URL {url:?}: {e}")))?;
    let mut pq = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let bytes = match body {
        Some(b) => serde_json::to_vec(b).map_err(|e| DriverError(e.to_string()))?,
        None => Vec::new(),
    };
    let ts = agent_auth::now();
    let (task_id, notify) = task.unwrap_or(("", ""));
    let sig = agent_auth::sign(
        &key,
        &Signed {
            method: method.as_str(),
            path_and_query: &pq,
            timestamp: ts,
            task_id,
            notify_url: notify,
            body: &bytes,
        },
    );
    let mut req = http
        .request(method, parsed)
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sig);
    if let Some((id, n)) = task {
        req = req.header("X-Task-Id", id).header("X-Task-Notify-Url", n);
    }
    if body.is_some() {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
    }
    Ok(req)
}

#[derive(Clone)]
pub struct AgentState {
    pub driver: Arc<dyn Driver>,
    pub http: reqwest::Client,
    cfg: AgentConfig,
    serial: console::SerialHubs,
}

pub fn router(driver: Arc<dyn Driver>, cfg: AgentConfig) -> Router {
    let state = AgentState {
        driver,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default(),
        cfg,
        serial: console::SerialHubs::default(),
    };
    Router::new()
        .route("/servers/{id}/{action}", post(server_action))
        .route("/servers/{id}/status", get(server_status))
        .route("/servers/{id}/vnc", get(server_vnc))
        .route("/servers/{id}/console/{protocol}", get(server_console))
        .route("/disks/{storage}/{action}/{disk}", post(disk_action))
        .route("/disks/{storage}/export/{disk}", get(disk_export))
        .route(
            "/disks/image_cache",
            get(|State(st): State<AgentState>| async move {
                axum::Json(st.driver.cached_images().await)
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // The only unauthenticated route: a liveness probe that says
        // nothing.
        .route("/ping", get(|| async { axum::Json(json!({})) }))
        .with_state(state)
}

fn error(status: StatusCode, class: &str, details: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": status.as_u16(), "class": class, "details": details})),
    )
        .into_response()
}

fn unauthorized(path: &str, e: AuthError) -> Response {
    let msg = e.message();
    tracing::warn!(path, reason = %msg, "refused a request not signed by the region");
    error(StatusCode::UNAUTHORIZED, "UnauthorizedError", &msg)
}

fn invalid(e: DriverError) -> Response {
    error(StatusCode::BAD_REQUEST, "InputParameterError", &e.0)
}

/// Verify the region's signature (and the notify URL) before any handler
/// runs.
async fn authenticate(State(st): State<AgentState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let header = |k: &str| -> Result<Option<&str>, ()> {
        match parts.headers.get(k) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| ()),
        }
    };
    let (Ok(Some(ts)), Ok(Some(sig))) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER)) else {
        return unauthorized(&path, AuthError::Missing);
    };
    let Ok(ts) = ts.trim().parse::<i64>() else {
        return unauthorized(&path, AuthError::BadTimestamp);
    };
    let (Ok(task_id), Ok(notify)) = (header("x-task-id"), header("x-task-notify-url")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InputParameterError",
            "X-Task-Id and X-Task-Notify-Url must be visible ASCII",
        );
    };
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InputParameterError",
                &format!("request body: {e}"),
            );
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(&path);
    let signed = Signed {
        method: parts.method.as_str(),
        path_and_query,
        timestamp: ts,
        task_id: task_id.unwrap_or_default(),
        notify_url: notify.unwrap_or_default(),
        body: &bytes,
    };
    if let Err(e) = agent_auth::verify(&st.cfg.key, &signed, sig, agent_auth::now()) {
        return unauthorized(&path, e);
    }
    if let Some(n) = notify
        && !st.cfg.notify_allowed(n).await
    {
        tracing::warn!(path, "refused a notify URL outside the region");
        return error(
            StatusCode::BAD_REQUEST,
            "InputParameterError",
            "X-Task-Notify-Url must be under a region endpoint this host knows ({region}/tasks/…)",
        );
    }
    let mut parts = parts;
    parts.headers.remove("x-auth-token");
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Run `work` now or in the background with a callback.
async fn dispatch<F>(st: &AgentState, headers: &HeaderMap, work: F) -> Response
where
    F: std::future::Future<Output = DriverResult> + Send + 'static,
{
    let notify = headers
        .get("x-task-notify-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match notify {
        None => match work.await {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) if e.is_unknown_guest() => error(StatusCode::NOT_FOUND, "NotFoundError", &e.0),
            Err(e) => error(StatusCode::BAD_REQUEST, "BadRequestError", &e.0),
        },
        Some(url) => {
            // Checked by `authenticate` already; kept here so no path can
            // post elsewhere.
            if !st.cfg.known().iter().any(|b| notify_matches(b, &url)) {
                return invalid(DriverError(
                    "X-Task-Notify-Url must be under the region this host registered with".into(),
                ));
            }
            let http = st.http.clone();
            tokio::spawn(async move {
                let result = work.await;
                let body = match result {
                    Ok(v) => v,
                    Err(e) => json!({"__status__": "error", "__reason__": e.0}),
                };
                // Retry like Cloudpods' agents: the region may be
                // restarting. The key in the URL authenticates the
                // callback; no token is sent.
                for attempt in 0..30 {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                            return;
                        }
                        Ok(r) => {
                            tracing::warn!(status = %r.status(), attempt, "callback refused")
                        }
                        Err(e) => tracing::warn!(error = %e, attempt, "callback failed"),
                    }
                    tokio::time::sleep(Duration::from_millis(500 * (attempt + 1).min(10))).await;
                }
            });
            axum::Json(json!({})).into_response()
        }
    }
}

/// The checks of a server action's input.
fn check_server(st: &AgentState, id: &str, body: &Value) -> Result<(), DriverError> {
    validate::id("server", id)?;
    let lim = st.cfg.limits();
    validate::desc(&body["desc"], &lim)?;
    if let Some(h) = body["params"]["hostname"].as_str() {
        validate::hostname(h)?;
    }
    Ok(())
}

/// The checks of a disk action's input.
fn check_disk(
    st: &AgentState,
    storage: &str,
    action: &str,
    disk: &str,
    body: &Value,
) -> Result<(), DriverError> {
    let lim = st.cfg.limits();
    lim.storage(storage)?;
    validate::id("disk", disk)?;
    match action {
        "create" => validate::disk_spec(&body["disk"])?,
        "snapshot" | "delete-snapshot" | "reset" => {
            validate::id("snapshot", body["snapshot_id"].as_str().unwrap_or_default())?;
            if let Some(loc) = body["location"].as_str().filter(|l| !l.is_empty()) {
                lim.roots.check("snapshot location", loc, false)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The typed `params` of a live-migration action, checked.
fn live_params<T: serde::de::DeserializeOwned>(
    body: &Value,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<T, DriverError> {
    let p: T = serde_json::from_value(body["params"].clone())
        .map_err(|e| DriverError(format!("invalid live-migration parameters: {e}")))?;
    check(&p).map_err(DriverError)?;
    Ok(p)
}

async fn server_action(
    State(st): State<AgentState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or(json!({}));
    if let Err(e) = check_server(&st, &id, &body) {
        return invalid(e);
    }
    let d = st.driver.clone();
    let desc = body.get("desc").cloned().unwrap_or(Value::Null);
    let work: std::pin::Pin<Box<dyn std::future::Future<Output = DriverResult> + Send>> =
        match action.as_str() {
            "deploy" | "create" => {
                let params = body.get("params").cloned().unwrap_or(Value::Null);
                Box::pin(async move { d.deploy(&id, &desc, &params).await })
            }
            "start" => Box::pin(async move { d.start(&id, &desc).await }),
            "stop" => {
                let force = body
                    .get("is_force")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let timeout = body.get("timeout").and_then(Value::as_u64).unwrap_or(30);
                Box::pin(async move { d.stop(&id, force, timeout).await })
            }
            "reset" => Box::pin(async move { d.reset(&id).await }),
            "sync" => Box::pin(async move { d.sync(&id, &desc).await }),
            "delete" => Box::pin(async move { d.delete(&id).await }),
            "live-migrate-info" => {
                Box::pin(async move { d.live_migrate_info(&id).await.map(|v| json!(v)) })
            }
            "live-migrate-prepare" => {
                let p = match live_params::<crate::livemigrate::Prepare>(&body, |p| p.check()) {
                    Ok(p) => p,
                    Err(e) => return invalid(e),
                };
                Box::pin(async move {
                    d.live_migrate_prepare(&id, &desc, &p)
                        .await
                        .map(|v| json!(v))
                })
            }
            "live-migrate" => {
                let p = match live_params::<crate::livemigrate::Send>(&body, |p| p.check()) {
                    Ok(p) => p,
                    Err(e) => return invalid(e),
                };
                Box::pin(async move { d.live_migrate_send(&id, &p).await.map(|v| json!(v)) })
            }
            "live-migrate-resume" => Box::pin(async move { d.live_migrate_resume(&id).await }),
            "live-migrate-cancel" => Box::pin(async move { d.live_migrate_cancel(&id).await }),
            other => {
                return error(
                    StatusCode::NOT_FOUND,
                    "ActionNotFoundError",
                    &format!("unknown server action {other}"),
                );
            }
        };
    dispatch(&st, &headers, work).await
}

async fn server_status(State(st): State<AgentState>, Path(id): Path<String>) -> Response {
    if let Err(e) = validate::id("server", &id) {
        return invalid(e);
    }
    axum::Json(json!({"status": st.driver.status(&id).await})).into_response()
}

async fn server_vnc(State(st): State<AgentState>, Path(id): Path<String>) -> Response {
    if let Err(e) = validate::id("server", &id) {
        return invalid(e);
    }
    match st.driver.vnc(&id).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(DriverError(e)) => error(StatusCode::NOT_FOUND, "NotFoundError", &e),
    }
}

/// `GET /servers/{id}/console/{vnc|serial}`: a WebSocket to the guest's
/// console (signed like every call; the region pre-signs it for the
/// gateway). Whatever keeps the console from opening is an HTTP error
/// before the upgrade.
async fn server_console(
    State(st): State<AgentState>,
    Path((id, protocol)): Path<(String, String)>,
    ws: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    if let Err(e) = validate::id("server", &id) {
        return invalid(e);
    }
    let Ok(ws) = ws else {
        return error(
            StatusCode::BAD_REQUEST,
            "InputParameterError",
            "this is a WebSocket: connect with an upgrade",
        );
    };
    let Some(protocol) = console::Protocol::parse(&protocol) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InputParameterError",
            "the console is vnc or serial",
        );
    };
    let endpoint = match st.driver.console(&id, protocol).await {
        Ok(e) => e,
        Err(DriverError(e)) => return error(StatusCode::BAD_REQUEST, "InvalidStatusError", &e),
    };
    let ws = ws.protocols(["binary"]);
    match endpoint {
        console::Endpoint::Vnc(addr) => match console::connect_vnc(addr).await {
            Ok(tcp) => ws
                .on_upgrade(move |socket| console::relay_vnc(socket, tcp))
                .into_response(),
            Err(DriverError(e)) => error(StatusCode::BAD_GATEWAY, "BadGateway", &e),
        },
        console::Endpoint::Serial { socket, log } => {
            match st.serial.join(&id, &socket, &log).await {
                Ok(viewer) => ws
                    .on_upgrade(move |socket| console::relay_serial(socket, viewer))
                    .into_response(),
                Err(DriverError(e)) => error(StatusCode::BAD_GATEWAY, "BadGateway", &e),
            }
        }
    }
}

/// `GET /disks/{storage}/export/{disk}`: a stopped guest's disk as one
/// qcow2 for another host (cold migrate), with its SHA-256 in
/// `X-Disk-Sha256`. Reached with the region's pre-signed grant for this
/// path only.
async fn disk_export(
    State(st): State<AgentState>,
    Path((storage, disk)): Path<(String, String)>,
) -> Response {
    if let Err(e) = st
        .cfg
        .limits()
        .storage(&storage)
        .and_then(|_| validate::id("disk", &disk))
    {
        return invalid(e);
    }
    let export = match st.driver.disk_export(&storage, &disk).await {
        Ok(x) => x,
        Err(DriverError(e)) => return error(StatusCode::BAD_REQUEST, "InvalidStatusError", &e),
    };
    let file = match tokio::fs::File::open(&export.path).await {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &format!("opening the disk copy: {e}"),
            );
        }
    };
    // A read error ends the body early: the target sees a short copy.
    let chunks = futures::stream::unfold(Some(file), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (axum::http::header::CONTENT_LENGTH, export.size.to_string()),
            (
                axum::http::HeaderName::from_static(crate::diskcopy::SHA256_HEADER),
                export.sha256,
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

async fn disk_action(
    State(st): State<AgentState>,
    Path((storage, action, disk)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or(json!({}));
    if let Err(e) = check_disk(&st, &storage, &action, &disk, &body) {
        return invalid(e);
    }
    let d = st.driver.clone();
    let work: std::pin::Pin<Box<dyn std::future::Future<Output = DriverResult> + Send>> =
        match action.as_str() {
            "create" => {
                let spec = body.get("disk").cloned().unwrap_or(Value::Null);
                Box::pin(async move { d.disk_create(&storage, &disk, &spec).await })
            }
            "delete" => Box::pin(async move { d.disk_delete(&storage, &disk).await }),
            "resize" => {
                let size = body
                    .get("size")
                    .or_else(|| body.get("disk").and_then(|x| x.get("size")))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                Box::pin(async move { d.disk_resize(&storage, &disk, size).await })
            }
            "snapshot" => {
                let snap = body
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Box::pin(async move { d.disk_snapshot(&storage, &disk, &snap).await })
            }
            "reset" => {
                let snap = body
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Box::pin(async move { d.disk_reset(&storage, &disk, &snap).await })
            }
            "delete-snapshot" => {
                let snap = body
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Box::pin(async move { d.disk_delete_snapshot(&storage, &disk, &snap).await })
            }
            other => {
                return error(
                    StatusCode::NOT_FOUND,
                    "ActionNotFoundError",
                    &format!("unknown disk action {other}"),
                );
            }
        };
    dispatch(&st, &headers, work).await
}
