//! The SDK against a small in-process fake of keystone + region + glance.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use cloudpods_apis::identity::{IdName, TokenBody, UserRef};
use cloudpods_apis::querystring::parse_query;
use cloudpods_sdk::reqwest::header::{HeaderMap as ReqHeaderMap, HeaderValue};
use cloudpods_sdk::{Client, Config, CreateResult, Session, TokenCache};
use futures::StreamExt;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Map<String, Value>,
    headers: HeaderMap,
    body: Value,
    raw_len: usize,
}

struct Fake {
    port: u16,
    auths: AtomicUsize,
    reject_all: AtomicBool,
    valid: Mutex<Vec<String>>,
    requests: Mutex<Vec<Recorded>>,
}

impl Fake {
    fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
    fn last(&self, method: &str, path: &str) -> Recorded {
        self.recorded()
            .into_iter()
            .rev()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("no {method} {path} recorded"))
    }
    fn set_valid(&self, tokens: &[&str]) {
        *self.valid.lock().expect("lock") = tokens.iter().map(|s| (*s).to_owned()).collect();
    }
    fn is_valid(&self, t: &str) -> bool {
        self.valid.lock().expect("lock").iter().any(|v| v == t)
    }
}

fn token_body(port: u16) -> Value {
    let base = format!("http://127.0.0.1:{port}");
    json!({
        "catalog": [
            {"id": "s1", "name": "keystone", "type": "identity", "endpoints": [
                {"id": "e1", "interface": "public", "region": "region0", "region_id": "region0", "url": format!("{base}/v3")},
            ]},
            {"id": "s2", "name": "region2", "type": "compute_v2", "endpoints": [
                {"id": "e2", "interface": "internal", "region": "region0", "region_id": "region0", "url": base.clone()},
            ]},
            {"id": "s3", "name": "glance", "type": "image", "endpoints": [
                {"id": "e3", "interface": "public", "region": "region0", "region_id": "region0", "url": format!("{base}/v1")},
            ]},
        ],
        "expires_at": cloudpods_apis::time::format(Utc::now() + TimeDelta::days(1)),
        "issued_at": cloudpods_apis::time::now(),
        "methods": ["password"],
        "project": {"id": "p1", "name": "system", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "admin"}],
        "user": {"id": "u1", "name": "sysadmin", "domain": {"id": "default", "name": "Default"}},
    })
}

fn err(status: StatusCode, class: &str, details: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": status.as_u16(), "class": class, "details": details, "time": "2024-01-01T00:00:00Z"})),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("srv-rid"));
    r
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.requests.lock().expect("lock").push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: parse_query(uri.query().unwrap_or("")),
        headers: headers.clone(),
        body: json_body.clone(),
        raw_len: body.len(),
    });
    let hdr = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };

    if method == Method::POST && path == "/v3/auth/tokens" {
        let user = &json_body["auth"]["identity"]["password"]["user"];
        let token_id = &json_body["auth"]["identity"]["token"]["id"];
        let accepted = (user["name"] == "sysadmin" && user["password"] == "pw")
            || token_id.as_str().is_some_and(|t| fake.is_valid(t));
        if !accepted {
            return err(
                StatusCode::UNAUTHORIZED,
                "UnauthorizedError",
                "wrong password",
            );
        }
        let n = fake.auths.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("tok-{n}");
        fake.valid.lock().expect("lock").push(id.clone());
        let mut r = ok(json!({"id": id, "token": token_body(fake.port)}));
        r.headers_mut().insert(
            "x-subject-token",
            HeaderValue::from_str(&id).expect("header"),
        );
        return r;
    }

    if fake.reject_all.load(Ordering::SeqCst) || !fake.is_valid(&hdr("x-auth-token")) {
        return err(StatusCode::UNAUTHORIZED, "InvalidToken", "InvalidToken");
    }

    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["v3", "auth", "tokens"]) => {
            let subject = hdr("x-subject-token");
            if subject == "selfcheck-forbidden" || !fake.is_valid(&subject) {
                return err(StatusCode::NOT_FOUND, "NotFoundError", "token not found");
            }
            ok(json!({"token": token_body(fake.port)}))
        }
        ("DELETE", ["v3", "auth", "tokens"]) => ok(Value::Null),
        ("PUT", ["v3", "projects", _, "users", _, "roles", _]) => ok(Value::Null),
        ("GET", ["servers"]) => ok(json!({
            "servers": [{"id": "s1", "name": "vm1"}, {"id": "s2", "name": "vm2"}],
            "total": 2, "limit": 20,
        })),
        ("GET", ["zones", zone, "servers"]) => ok(json!({"servers": [{"id": "s1", "zone": zone}]})),
        ("POST", ["servers"]) => {
            let count = json_body["count"].as_u64().unwrap_or(1);
            let mut obj = json_body["server"].clone();
            if obj.is_null() {
                return err(
                    StatusCode::BAD_REQUEST,
                    "InputParameterError",
                    "No request key: server",
                );
            }
            obj["id"] = json!("new");
            if count > 1 {
                let items: Vec<Value> = (0..count)
                    .map(|i| {
                        let mut o = obj.clone();
                        o["id"] = json!(format!("new-{i}"));
                        json!({"status": 200, "body": o})
                    })
                    .collect();
                ok(json!({"servers": items}))
            } else {
                ok(json!({"server": obj}))
            }
        }
        ("POST", ["servers", "check-create-data"]) => ok(json!({"servers": json_body["servers"]})),
        ("GET", ["servers", "missing"]) => err(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundError",
            "server missing not found",
        ),
        ("GET", ["servers", id]) => ok(json!({"server": {"id": id, "name": "vm"}})),
        ("GET", ["servers", id, "vnc"]) => ok(json!({"server": {"id": id, "url": "vnc://x"}})),
        ("PUT", ["servers", id]) => {
            let mut o = json_body["server"].clone();
            o["id"] = json!(id);
            ok(json!({"server": o}))
        }
        ("DELETE", ["servers", id]) => ok(json!({"server": {"id": id, "status": "deleting"}})),
        ("POST", ["servers", id, action]) => {
            ok(json!({"server": {"id": id, "action": action, "input": json_body["server"]}}))
        }
        ("POST", ["v1", "images"]) => ok(json!({"image": {
            "name": hdr("x-image-meta-name"),
            "content_type": hdr("content-type"),
            "size": body.len(),
        }})),
        ("GET", ["v1", "images", _, "download"]) => {
            (StatusCode::OK, Bytes::from_static(b"hello image bytes")).into_response()
        }
        _ => err(StatusCode::NOT_FOUND, "NotFoundError", "no such route"),
    }
}

async fn start() -> Arc<Fake> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = Arc::new(Fake {
        port,
        auths: AtomicUsize::new(0),
        reject_all: AtomicBool::new(false),
        valid: Mutex::new(Vec::new()),
        requests: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    fake
}

fn config(fake: &Fake) -> Config {
    Config::new(format!("http://127.0.0.1:{}/v3", fake.port))
        .with_password("sysadmin", "pw")
        .with_project("system")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[tokio::test]
async fn authenticates_and_lists_with_headers() {
    cloudpods_sdk::init_tls();
    let fake = start().await;
    let client = Client::new(config(&fake)).await.expect("client");
    assert_eq!(fake.auths.load(Ordering::SeqCst), 1);
    assert_eq!(client.token().id(), "tok-1");
    assert_eq!(client.token().token().user.name, "sysadmin");
    assert_eq!(client.catalog().len(), 3);

    let auth = fake.last("POST", "/v3/auth/tokens");
    assert_eq!(
        auth.body,
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "pw"}}},
            "scope": {"project": {"name": "system", "domain": {"name": "Default"}}},
        }})
    );

    let servers = client.resource("compute_v2", "server", "servers");
    let params =
        obj(json!({"limit": 20, "details": false, "filter": ["a", "b"], "scope": "system"}));
    let page = servers.list(&params).await.expect("list");
    assert_eq!(page.items.len(), 2);
    assert_eq!((page.total, page.limit, page.offset), (2, 20, 0));

    let req = fake.last("GET", "/servers");
    assert_eq!(
        Value::Object(req.query.clone()),
        json!({"limit": "20", "details": "false", "filter": ["a", "b"], "scope": "system"})
    );
    let h = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(h("x-auth-token"), "tok-1");
    assert_eq!(h("content-type"), "application/json");
    assert!(
        h("user-agent").starts_with("cloudpods-rs-sdk/"),
        "{}",
        h("user-agent")
    );
    assert!(!h("x-request-id").is_empty());

    // internal endpoint missing for image: public is used, /v1 kept
    assert_eq!(
        client.endpoint("image").expect("image"),
        format!("http://127.0.0.1:{}/v1", fake.port)
    );
    assert_eq!(
        client.endpoint("compute_v2").expect("region"),
        format!("http://127.0.0.1:{}", fake.port)
    );
    let e = client.endpoint("scheduler").expect_err("no scheduler");
    assert!(matches!(e, cloudpods_sdk::SdkError::NoEndpoint { .. }));
}

#[tokio::test]
async fn envelopes() {
    let fake = start().await;
    let client = Client::new(config(&fake)).await.expect("client");
    let servers = client.resource("compute_v2", "server", "servers");

    let created = servers
        .create(obj(json!({"name": "vm1"})), None)
        .await
        .expect("create");
    assert_eq!(
        created,
        CreateResult::One(json!({"name": "vm1", "id": "new"}))
    );
    assert_eq!(
        fake.last("POST", "/servers").body,
        json!({"server": {"name": "vm1"}})
    );

    let batch = servers
        .create(obj(json!({"name": "vm"})), Some(2))
        .await
        .expect("batch");
    assert_eq!(
        fake.last("POST", "/servers").body,
        json!({"server": {"name": "vm"}, "count": 2})
    );
    let objs = batch.into_objects();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[1]["id"], json!("new-1"));

    let got = servers.get("s9", &Map::new()).await.expect("get");
    assert_eq!(got, json!({"id": "s9", "name": "vm"}));

    let e = servers.get("missing", &Map::new()).await.expect_err("404");
    assert!(e.is_not_found());
    assert_eq!(e.class(), Some("ResourceNotFoundError"));
    assert_eq!(
        e.to_string(),
        "ResourceNotFoundError(404): server missing not found"
    );

    let upd = servers
        .update("s1", obj(json!({"name": "renamed"})))
        .await
        .expect("update");
    assert_eq!(upd, json!({"name": "renamed", "id": "s1"}));
    assert_eq!(
        fake.last("PUT", "/servers/s1").body,
        json!({"server": {"name": "renamed"}})
    );

    let act = servers
        .perform_action("s1", "start", obj(json!({"auto_start": true})))
        .await
        .expect("action");
    assert_eq!(act["action"], json!("start"));
    assert_eq!(
        fake.last("POST", "/servers/s1/start").body,
        json!({"server": {"auto_start": true}})
    );

    let class = servers
        .perform_class_action("check-create-data", obj(json!({"name": "x"})))
        .await
        .expect("class action");
    assert_eq!(class, json!({"name": "x"}));
    assert_eq!(
        fake.last("POST", "/servers/check-create-data").body,
        json!({"servers": {"name": "x"}})
    );

    let vnc = servers
        .get_specific("s1", "vnc", &Map::new())
        .await
        .expect("spec");
    assert_eq!(vnc["url"], json!("vnc://x"));

    let del = servers
        .delete("s1", &obj(json!({"override_pending_delete": true})))
        .await
        .expect("delete");
    assert_eq!(del["status"], json!("deleting"));
    assert_eq!(
        Value::Object(fake.last("DELETE", "/servers/s1").query),
        json!({"override_pending_delete": "true"})
    );

    let ctx = servers
        .list_in_context("zones", "z1", &Map::new())
        .await
        .expect("ctx list");
    assert_eq!(ctx.items[0]["zone"], json!("z1"));
    assert_eq!(ctx.total, 0);

    // names with reserved characters are escaped in the path
    let _ = servers.get("a b/c", &Map::new()).await;
    assert!(
        fake.recorded()
            .iter()
            .any(|r| r.path == "/servers/a%20b%2Fc")
    );
}

#[tokio::test]
async fn cached_token_refused_reauthenticates_once() {
    let fake = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&fake).with_token_cache_dir(dir.path());
    let cache = TokenCache::in_dir(dir.path(), &cfg);

    // a cached token the server no longer knows
    let stale: TokenBody = serde_json::from_value(token_body(fake.port)).expect("body");
    cache
        .store(&Session::new("stale-token", stale))
        .expect("store");

    let client = Client::new(cfg.clone()).await.expect("client");
    assert_eq!(fake.auths.load(Ordering::SeqCst), 0, "cache must be used");
    assert_eq!(client.token().id(), "stale-token");
    assert!(client.token().from_cache());

    let servers = client.resource("compute_v2", "server", "servers");
    let page = servers.list(&Map::new()).await.expect("list after retry");
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        fake.auths.load(Ordering::SeqCst),
        1,
        "exactly one re-authentication"
    );
    let lists: Vec<String> = fake
        .recorded()
        .into_iter()
        .filter(|r| r.path == "/servers")
        .map(|r| {
            r.headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(lists, ["stale-token", "tok-1"]);

    // the cache now holds the fresh token; a new client reuses it
    assert_eq!(cache.load().expect("cached").id(), "tok-1");
    let again = Client::new(cfg).await.expect("client");
    assert_eq!(again.token().id(), "tok-1");
    assert_eq!(fake.auths.load(Ordering::SeqCst), 1);

    // a cached token refused, then the fresh one refused too: an error
    // after exactly one re-authentication, not a loop
    let dir2 = tempfile::tempdir().expect("tempdir");
    let cfg2 = config(&fake).with_token_cache_dir(dir2.path());
    let stale: TokenBody = serde_json::from_value(token_body(fake.port)).expect("body");
    TokenCache::in_dir(dir2.path(), &cfg2)
        .store(&Session::new("stale-2", stale))
        .expect("store");
    let c2 = Client::new(cfg2).await.expect("client");
    fake.reject_all.store(true, Ordering::SeqCst);
    let before = fake.auths.load(Ordering::SeqCst);
    let e = c2
        .resource("compute_v2", "server", "servers")
        .list(&Map::new())
        .await
        .expect_err("refused twice");
    assert!(e.is_unauthorized());
    assert_eq!(fake.auths.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn fresh_token_refused_is_not_retried() {
    let fake = start().await;
    let client = Client::new(config(&fake)).await.expect("client");
    fake.set_valid(&["someone-else"]);
    let e = client
        .resource("compute_v2", "server", "servers")
        .list(&Map::new())
        .await
        .expect_err("401");
    assert!(e.is_unauthorized());
    assert_eq!(e.class(), Some("InvalidToken"));
    assert_eq!(fake.auths.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn wrong_password_is_an_http_error() {
    let fake = start().await;
    let e = Client::new(config(&fake).with_password("sysadmin", "bad"))
        .await
        .expect_err("401");
    assert!(e.is_unauthorized());
    assert_eq!(e.to_string(), "UnauthorizedError(401): wrong password");
}

#[tokio::test]
async fn keystone_helpers_raw_upload_and_stream() {
    let fake = start().await;
    let client = Client::new(config(&fake)).await.expect("client");

    // raw keystone route; a leading /v3 is not doubled
    client
        .raw(
            cloudpods_sdk::reqwest::Method::PUT,
            "identity",
            "/v3/projects/p1/users/u1/roles/r1",
            None,
            None,
            ReqHeaderMap::new(),
        )
        .await
        .expect("raw put");
    let put = fake.last("PUT", "/v3/projects/p1/users/u1/roles/r1");
    assert_eq!(put.raw_len, 0);

    let body = client.validate_token("tok-1").await.expect("validate");
    assert_eq!(body.user.name, "sysadmin");
    let v = fake.last("GET", "/v3/auth/tokens");
    assert_eq!(
        v.headers
            .get("x-subject-token")
            .and_then(|h| h.to_str().ok()),
        Some("tok-1")
    );
    assert!(
        client
            .validate_token("nope")
            .await
            .expect_err("404")
            .is_not_found()
    );
    client.revoke_token("tok-1").await.expect("revoke");
    assert!(
        fake.recorded()
            .iter()
            .any(|r| r.method == "DELETE" && r.path == "/v3/auth/tokens")
    );

    // upload: octet-stream, custom headers
    let mut h = ReqHeaderMap::new();
    h.insert("x-image-meta-name", HeaderValue::from_static("cirros"));
    let up = client
        .upload(
            cloudpods_sdk::reqwest::Method::POST,
            "image",
            "/images",
            None,
            cloudpods_sdk::reqwest::Body::from(vec![7u8; 1000]),
            h,
        )
        .await
        .expect("upload");
    assert_eq!(
        up.body,
        json!({"image": {"name": "cirros", "content_type": "application/octet-stream", "size": 1000}})
    );

    // streaming download
    let resp = client
        .raw_stream(
            cloudpods_sdk::reqwest::Method::GET,
            "image",
            "/images/i1/download",
            None,
            ReqHeaderMap::new(),
        )
        .await
        .expect("stream");
    let mut stream = resp.bytes_stream();
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        all.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(all, b"hello image bytes");
}

#[tokio::test]
async fn existing_token_is_verified_not_reissued() {
    let fake = start().await;
    let first = Client::new(config(&fake)).await.expect("client");
    let token = first.token().id().to_owned();
    let cfg = Config::new(format!("http://127.0.0.1:{}/v3", fake.port)).with_token(&token);
    let client = Client::new(cfg).await.expect("token client");
    assert_eq!(client.token().id(), token);
    assert_eq!(fake.auths.load(Ordering::SeqCst), 1);
    assert_eq!(
        fake.last("GET", "/v3/auth/tokens")
            .headers
            .get("x-subject-token")
            .and_then(|h| h.to_str().ok()),
        Some(token.as_str())
    );
    let page = client
        .resource("compute_v2", "server", "servers")
        .list(&Map::new())
        .await
        .expect("list");
    assert_eq!(page.total, 2);
}

#[test]
fn user_ref_shape_is_what_keystone_sends() {
    // guard: the fake's token body must decode as the SDK expects
    let b: TokenBody = serde_json::from_value(token_body(1)).expect("decode");
    assert_eq!(
        b.user,
        UserRef {
            id: "u1".into(),
            name: "sysadmin".into(),
            domain: IdName {
                id: "default".into(),
                name: "Default".into()
            },
            password_expires_at: None
        }
    );
}
