//! climc commands end to end against a small fake keystone.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cloudpods_apis::querystring::parse_query;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
struct Rec {
    method: String,
    path: String,
    query: Map<String, Value>,
    body: Value,
}

struct Fake {
    port: u16,
    reqs: Mutex<Vec<Rec>>,
}

impl Fake {
    fn find(&self, method: &str, path: &str) -> Option<Rec> {
        self.reqs
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|r| r.method == method && r.path == path)
            .cloned()
    }
}

fn err(status: StatusCode, class: &str, details: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": status.as_u16(), "class": class, "details": details})),
    )
        .into_response()
}

fn token_body(port: u16) -> Value {
    json!({
        "catalog": [{"id": "s1", "name": "keystone", "type": "identity", "endpoints": [
            {"id": "e1", "interface": "public", "region_id": "region0", "url": format!("http://127.0.0.1:{port}/v3")},
            {"id": "e2", "interface": "internal", "region_id": "region0", "url": "http://unreachable.invalid:1/v3"},
        ]}],
        "expires_at": "2999-01-01T00:00:00.000000Z",
        "issued_at": "2024-01-01T00:00:00.000000Z",
        "methods": ["password"],
        "policies": {"system": ["sysadmin"]},
        "project": {"id": "p1", "name": "system", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "admin"}],
        "user": {"id": "u1", "name": "sysadmin", "domain": {"id": "default", "name": "Default"}},
    })
}

async fn handle(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let jb: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.reqs.lock().expect("lock").push(Rec {
        method: method.to_string(),
        path: path.clone(),
        query: parse_query(uri.query().unwrap_or("")),
        body: jb.clone(),
    });
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["v3", "auth", "tokens"]) => {
            let mut r = axum::Json(json!({"id": "tok", "token": token_body(fake.port)})).into_response();
            r.headers_mut()
                .insert("x-subject-token", HeaderValue::from_static("tok"));
            r
        }
        ("GET", ["v3", "users"]) => axum::Json(json!({
            "users": [
                {"id": "u1", "name": "sysadmin", "domain_id": "default", "enabled": true, "domain": "Default"},
                {"id": "u2", "name": "alice", "domain_id": "default", "enabled": false, "email": "a@x"},
            ],
            "total": 2, "limit": 20,
        }))
        .into_response(),
        ("GET", ["v3", "users", "missing"]) => {
            err(StatusCode::NOT_FOUND, "ResourceNotFoundError", "user missing not found")
        }
        ("GET", ["v3", kind, name]) => {
            let kw = kind.trim_end_matches('s');
            axum::Json(json!({ kw: {"id": format!("{kw}-{name}-id"), "name": name} })).into_response()
        }
        ("POST", ["v3", "policies"]) => {
            let mut p = jb["policy"].clone();
            p["id"] = json!("pol1");
            axum::Json(json!({"policy": p})).into_response()
        }
        ("POST", ["v3", "users"]) => {
            let mut u = jb["user"].clone();
            u["id"] = json!("u9");
            axum::Json(json!({"user": u})).into_response()
        }
        ("PUT", ["v3", "projects", _, "users", _, "roles", _]) => StatusCode::NO_CONTENT.into_response(),
        ("PUT" | "DELETE", ["v3", "groups", _, "users", _]) => axum::Json(json!({})).into_response(),
        ("GET", ["v3", "role_assignments"]) => axum::Json(json!({
            "role_assignments": [{"scope": {"project": {"id": "p1", "name": "system"}}, "user": {"id": "u1", "name": "sysadmin"}, "role": {"id": "r1", "name": "admin"}}],
            "total": 1,
        }))
        .into_response(),
        _ => err(StatusCode::NOT_FOUND, "NotFoundError", "no route"),
    }
}

async fn start() -> Arc<Fake> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = Arc::new(Fake {
        port,
        reqs: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    fake
}

async fn climc(fake: &Fake, args: &[&str]) -> (anyhow::Result<()>, String) {
    let url = format!("http://127.0.0.1:{}/v3", fake.port);
    let mut full = vec![
        "--os-auth-url",
        url.as_str(),
        "--os-username",
        "sysadmin",
        "--os-password",
        "pw",
        "--os-project-name",
        "system",
        "--os-endpoint-type",
        "publicURL",
        "--no-cache",
    ];
    full.extend_from_slice(args);
    climc::run_captured(&full).await
}

#[tokio::test]
async fn user_list_prints_the_cloudpods_table() {
    let fake = start().await;
    let (r, out) = climc(&fake, &["user-list", "--filter", "name.contains(a)"]).await;
    r.expect("user-list");
    let want = "\
+----+----------+-----------+---------+-------+
| ID |   Name   | Domain_Id | Enabled | Email |
+----+----------+-----------+---------+-------+
| u1 | sysadmin | default   | true    |       |
| u2 | alice    | default   | false   | a@x   |
+----+----------+-----------+---------+-------+
***  Total: 2 Pages: 1 Limit: 20 Offset: 0 Page: 1  ***
";
    assert_eq!(out, want);
    let req = fake.find("GET", "/v3/users").expect("list request");
    assert_eq!(
        Value::Object(req.query),
        json!({"limit": "20", "details": "false", "filter": ["name.contains(a)"]})
    );
    let auth = fake.find("POST", "/v3/auth/tokens").expect("auth");
    assert_eq!(auth.body["auth"]["context"], json!({"source": "cli"}));

    let (r, out) = climc(&fake, &["user-list", "--field", "name", "--field", "id"]).await;
    r.expect("user-list --field");
    assert!(
        out.starts_with("+----------+----+\n|   name   | id |\n"),
        "{out}"
    );

    let (r, out) = climc(&fake, &["--output-format", "json", "user-list"]).await;
    r.expect("json");
    let v: Value = serde_json::from_str(&out).expect("json output");
    assert_eq!(v["total"], json!(2));
    assert_eq!(v["users"][1]["name"], json!("alice"));
}

#[tokio::test]
async fn errors_carry_the_cloudpods_class() {
    let fake = start().await;
    let (r, _) = climc(&fake, &["user-show", "missing"]).await;
    let e = r.expect_err("404");
    assert_eq!(
        climc::error_line(&e),
        "Error: ResourceNotFoundError(404): user missing not found"
    );
}

#[tokio::test]
async fn create_resolves_references_and_wraps_the_body() {
    let fake = start().await;
    let (r, out) = climc(
        &fake,
        &[
            "user-create",
            "bob",
            "--password",
            "s3cret",
            "--domain",
            "Default",
            "--enabled",
            "--email",
            "b@x",
        ],
    )
    .await;
    r.expect("user-create");
    assert!(fake.find("GET", "/v3/domains/Default").is_some());
    assert_eq!(
        fake.find("POST", "/v3/users").expect("create").body,
        json!({"user": {"name": "bob", "password": "s3cret", "domain_id": "domain-Default-id", "email": "b@x", "enabled": true}})
    );
    assert!(out.contains("| id        | u9                |"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("p.json");
    std::fs::write(
        &f,
        r#"{"policy": {"compute": {"servers": {"*": "allow"}}}}"#,
    )
    .expect("write");
    let fs = f.to_string_lossy().into_owned();
    let (r, _) = climc(
        &fake,
        &[
            "policy-create",
            "vmadmin",
            "--scope",
            "project",
            "--file",
            fs.as_str(),
        ],
    )
    .await;
    r.expect("policy-create");
    assert_eq!(
        fake.find("POST", "/v3/policies").expect("policy").body,
        json!({"policy": {"name": "vmadmin", "type": "vmadmin", "blob": {"policy": {"compute": {"servers": {"*": "allow"}}}}, "scope": "project"}})
    );
}

#[tokio::test]
async fn membership_commands_use_keystone_routes() {
    let fake = start().await;
    let (r, _) = climc(
        &fake,
        &["project-add-user", "system", "alice", "admin", "member"],
    )
    .await;
    r.expect("project-add-user");
    for role in ["admin", "member"] {
        let path =
            format!("/v3/projects/project-system-id/users/user-alice-id/roles/role-{role}-id");
        assert!(fake.find("PUT", &path).is_some(), "{path}");
    }
    let (r, _) = climc(&fake, &["group-add-user", "devs", "alice"]).await;
    r.expect("group-add-user");
    assert!(
        fake.find("PUT", "/v3/groups/group-devs-id/users/user-alice-id")
            .is_some()
    );
    let (r, _) = climc(&fake, &["group-remove-user", "devs", "alice"]).await;
    r.expect("group-remove-user");
    assert!(
        fake.find("DELETE", "/v3/groups/group-devs-id/users/user-alice-id")
            .is_some()
    );

    let (r, out) = climc(
        &fake,
        &[
            "role-assignment-list",
            "--user",
            "alice",
            "--scope-project",
            "system",
            "--effective",
            "--include-names",
        ],
    )
    .await;
    r.expect("role-assignment-list");
    assert_eq!(
        Value::Object(fake.find("GET", "/v3/role_assignments").expect("ra").query),
        json!({"user": {"id": "user-alice-id"}, "scope": {"project": {"id": "project-system-id"}}, "effective": "true", "include_names": "true"})
    );
    assert!(out.contains("***  Total: 1  ***"), "{out}");
}

#[tokio::test]
async fn token_and_catalog_commands() {
    let fake = start().await;
    let (r, out) = climc(&fake, &["token-issue"]).await;
    r.expect("token-issue");
    assert!(out.contains("| id              | tok "), "{out}");
    assert!(out.contains("| roles           | admin "), "{out}");
    assert!(out.contains("| system_policies | sysadmin "), "{out}");
    let (r, out) = climc(&fake, &["catalog-list"]).await;
    r.expect("catalog-list");
    assert!(
        out.contains("| keystone | identity | public    | region0 |"),
        "{out}"
    );
    let (r, _) = climc(&fake, &["catalog-show", "nope"]).await;
    assert!(r.is_err());
}
