//! Keystone end to end, through the real binary, on SQLite and MariaDB
//! (`CLOUDPODS_TEST_MYSQL`; a missing server fails the tests).

mod common;

use common::*;
use serde_json::{Value, json};

async fn create(api: &Api, base: &str, plural: &str, keyword: &str, body: Value) -> Value {
    let r = api
        .post(&format!("{base}/{plural}"), json!({ keyword: body }))
        .await;
    assert_eq!(r.status, 200, "create {plural}: {r:?}");
    r.body[keyword].clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn token_lifecycle_on_every_backend() {
    for backend in backends() {
        let p = Platform::start_with(Opts {
            backend: Some(backend.clone()),
            ..Default::default()
        });
        let url = &p.auth_url;

        // Version discovery needs no token (OpenStack clients loop on 401).
        let anon = Api::with_token("");
        let v = anon.get(url).await;
        assert_eq!(v.status, 200, "{v:?}");
        assert_eq!(v.body["version"]["status"], "stable");
        let root = anon.get(url.trim_end_matches("/v3")).await;
        assert_eq!(root.status, 300);

        // Password login, user domain omitted (unique name), project by name.
        let (status, token, body) = issue(
            url,
            password_auth("sysadmin", &p.admin_password, Some("system"), None),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(token.starts_with("gAAAAA"), "{token}");
        assert_eq!(body["id"], json!(token));
        let t = &body["token"];
        assert_eq!(t["project"]["name"], "system");
        assert_eq!(t["project"]["domain"]["name"], "Default");
        assert_eq!(t["user"]["name"], "sysadmin");
        assert!(
            t["roles"]
                .as_array()
                .expect("roles")
                .iter()
                .any(|r| r["name"] == "admin")
        );
        assert_eq!(t["policies"]["system"], json!(["sysadmin"]));
        assert!(
            t["catalog"]
                .as_array()
                .expect("catalog")
                .iter()
                .any(|s| s["type"] == "identity")
        );
        let exp =
            cloudpods_apis::time::parse(t["expires_at"].as_str().expect("expires")).expect("parse");
        let hours = (exp - chrono::Utc::now()).num_minutes() as f64 / 60.0;
        assert!((23.9..=24.1).contains(&hours), "ttl {hours}");

        // Validate, rescope with the token method, revoke.
        let admin = Api::with_token(&token);
        let mut req = admin
            .client
            .get(format!("{url}/auth/tokens"))
            .header("X-Auth-Token", &token);
        req = req.header("X-Subject-Token", &token);
        let r = req.send().await.expect("validate");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-subject-token"], token.as_str());
        let vb: Value = r.json().await.expect("json");
        assert_eq!(vb["token"]["user"]["name"], "sysadmin");

        let (s2, t2, b2) = issue(
            url,
            json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                             "scope": {"project": {"name": "system", "domain": {"id": "default"}}}}}),
        )
        .await;
        assert_eq!(s2, 200, "{b2}");
        assert_ne!(t2, token);
        assert_eq!(
            b2["token"]["expires_at"], t["expires_at"],
            "a rescoped token keeps the original expiry"
        );

        let r = admin
            .client
            .delete(format!("{url}/auth/tokens"))
            .header("X-Auth-Token", &t2)
            .header("X-Subject-Token", &token)
            .send()
            .await
            .expect("revoke");
        assert_eq!(r.status(), 204);
        let after = admin.get(&format!("{url}/users")).await;
        assert_error(&after, 401, "InvalidToken");
        // The other token still works.
        let still = Api::with_token(&t2).get(&format!("{url}/users")).await;
        assert_eq!(still.status, 200, "{still:?}");

        // Unscoped: no catalog, lists projects; cannot manage identity.
        let (s3, t3, b3) = issue(
            url,
            password_auth("sysadmin", &p.admin_password, None, Some("Default")),
        )
        .await;
        assert_eq!(s3, 200, "{b3}");
        assert!(b3["token"]["project"].is_null());
        assert!(
            b3["token"]["projects"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["name"] == "system"))
        );
        let r = Api::with_token(&t3)
            .post(&format!("{url}/users"), json!({"user": {"name": "x"}}))
            .await;
        assert_eq!(r.status, 403, "{r:?}");

        // Wrong password and unknown user answer the same.
        let (s4, _, b4) = issue(
            url,
            password_auth("sysadmin", "nope-nope", Some("system"), None),
        )
        .await;
        let (s5, _, b5) = issue(
            url,
            password_auth("ghost", "nope-nope", Some("system"), None),
        )
        .await;
        assert_eq!((s4, s5), (401, 401));
        assert_eq!(b4["details"], b5["details"]);
        // Garbage tokens.
        for bad in ["", "x", "gAAAAAB-not-a-token", &"A".repeat(9000)] {
            let r = Api::with_token(bad).get(&format!("{url}/users")).await;
            assert_eq!(r.status, 401, "{bad}: {r:?}");
        }
    }
}

#[tokio::test]
async fn expiry_and_key_rotation() {
    let p = Platform::start_with(Opts {
        env: vec![
            ("CLOUDPODS_KEYSTONE__TOKEN_TTL_SECONDS".into(), "3".into()),
            (
                "CLOUDPODS_KEYSTONE__FERNET_RELOAD_SECONDS".into(),
                "1".into(),
            ),
        ],
        ..Default::default()
    });
    let url = p.auth_url.clone();
    let (_, short, _) = issue(
        &url,
        password_auth("sysadmin", &p.admin_password, Some("system"), None),
    )
    .await;
    assert_eq!(
        Api::with_token(&short)
            .get(&format!("{url}/projects"))
            .await
            .status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let r = Api::with_token(&short)
        .get(&format!("{url}/projects"))
        .await;
    assert_error(&r, 401, "InvalidToken");
    drop(p);

    // Rotation: max 3 active keys → a token survives one rotation, not two.
    let p = Platform::start_with(Opts {
        env: vec![(
            "CLOUDPODS_KEYSTONE__FERNET_RELOAD_SECONDS".into(),
            "1".into(),
        )],
        ..Default::default()
    });
    let url = p.auth_url.clone();
    let (_, t1, _) = issue(
        &url,
        password_auth("sysadmin", &p.admin_password, Some("system"), None),
    )
    .await;
    let out = p.run_subcommand("fernet-rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        Api::with_token(&t1)
            .get(&format!("{url}/projects"))
            .await
            .status,
        200,
        "valid after one rotation"
    );
    // A token issued now uses the new primary and is valid too.
    let (_, t2, _) = issue(
        &url,
        password_auth("sysadmin", &p.admin_password, Some("system"), None),
    )
    .await;
    assert_eq!(
        Api::with_token(&t2)
            .get(&format!("{url}/projects"))
            .await
            .status,
        200
    );
    let out = p.run_subcommand("fernet-rotate");
    assert!(out.status.success());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = Api::with_token(&t1).get(&format!("{url}/projects")).await;
    assert_error(&r, 401, "InvalidToken");
    assert_eq!(
        Api::with_token(&t2)
            .get(&format!("{url}/projects"))
            .await
            .status,
        200,
        "t2's key is still active"
    );
}

#[tokio::test]
async fn lockout_disable_and_password_change() {
    let p = Platform::start();
    let url = p.auth_url.clone();
    let admin = p.admin().await;
    let u = create(
        &admin,
        &url,
        "users",
        "user",
        json!({"name": "alice", "password": "alice-pw-1"}),
    )
    .await;
    let r = admin
        .put(
            &format!("{url}/projects/system/users/{}/roles/member", id(&u)),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let ok = Api::login(&url, "alice", "alice-pw-1", "system", None)
        .await
        .expect("alice login");

    for _ in 0..4 {
        let (s, _, _) = issue(
            &url,
            password_auth("alice", "wrong-pw", Some("system"), None),
        )
        .await;
        assert_eq!(s, 401);
    }
    let (s, _, b) = issue(
        &url,
        password_auth("alice", "wrong-pw", Some("system"), None),
    )
    .await;
    assert_eq!(s, 423, "{b}");
    assert_eq!(b["class"], "UserLocked");
    // Even the right password is refused while locked.
    let (s, _, b) = issue(
        &url,
        password_auth("alice", "alice-pw-1", Some("system"), None),
    )
    .await;
    assert_eq!(s, 423, "{b}");
    let shown = admin.get(&format!("{url}/users/alice")).await;
    assert_eq!(shown.body["user"]["is_locked"], true);
    assert!(shown.body["user"].get("password_hash").is_none());
    let r = admin
        .post(&format!("{url}/users/alice/unlock"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        Api::login(&url, "alice", "alice-pw-1", "system", None)
            .await
            .is_ok()
    );

    // Changing the password revokes existing tokens.
    let r = admin
        .put(
            &format!("{url}/users/alice"),
            Some(json!({"user": {"password": "alice-pw-2"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_error(
        &ok.get(&format!("{url}/users/alice")).await,
        401,
        "InvalidToken",
    );
    let again = Api::login(&url, "alice", "alice-pw-2", "system", None)
        .await
        .expect("new password");

    // Disabling the user revokes and refuses.
    let r = admin
        .put(
            &format!("{url}/users/alice"),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(again.get(&format!("{url}/users/alice")).await.status, 401);
    let (s, _, b) = issue(
        &url,
        password_auth("alice", "alice-pw-2", Some("system"), None),
    )
    .await;
    assert_eq!(s, 423, "{b}");
    assert_eq!(b["class"], "UserDisabled");

    // Too-short passwords are refused, and nothing is written.
    let r = admin
        .post(
            &format!("{url}/users"),
            json!({"user": {"name": "bob", "password": "x"}}),
        )
        .await;
    assert_error(&r, 400, "InputParameterError");
    assert_eq!(admin.get(&format!("{url}/users/bob")).await.status, 404);
}

#[tokio::test]
async fn assignments_groups_and_policies() {
    for backend in backends() {
        let p = Platform::start_with(Opts {
            backend: Some(backend),
            ..Default::default()
        });
        let url = p.auth_url.clone();
        let admin = p.admin().await;
        let proj = create(&admin, &url, "projects", "project", json!({"name": "demo"})).await;
        let user = create(
            &admin,
            &url,
            "users",
            "user",
            json!({"name": "carol", "password": "carol-pw-1"}),
        )
        .await;
        let group = create(&admin, &url, "groups", "group", json!({"name": "devs"})).await;

        // No role yet: cannot scope to the project.
        let (s, _, b) = issue(
            &url,
            password_auth("carol", "carol-pw-1", Some("demo"), None),
        )
        .await;
        assert_eq!(s, 401, "{b}");

        // Role through a group.
        assert_eq!(
            admin
                .put(&format!("{url}/groups/devs/users/carol"), None)
                .await
                .status,
            204
        );
        assert_eq!(
            admin
                .put(
                    &format!("{url}/projects/demo/groups/devs/roles/member"),
                    None
                )
                .await
                .status,
            204
        );
        let carol = Api::login(&url, "carol", "carol-pw-1", "demo", None)
            .await
            .expect("carol via group");
        assert_eq!(
            carol.body["token"]["policies"]["project"],
            json!(["member"])
        );

        let ra = admin
            .get(&format!(
                "{url}/role_assignments?user.id={}&effective&include_names",
                id(&user)
            ))
            .await;
        assert_eq!(ra.status, 200, "{ra:?}");
        let items = ra.body["role_assignments"]
            .as_array()
            .expect("list")
            .clone();
        assert_eq!(items.len(), 1, "{ra:?}");
        assert_eq!(items[0]["scope"]["project"]["name"], "demo");
        assert_eq!(items[0]["role"]["name"], "member");
        // Direct listing of the group assignment.
        let ra = admin
            .get(&format!("{url}/role_assignments?group.id={}", id(&group)))
            .await;
        assert_eq!(
            ra.body["role_assignments"].as_array().map(Vec::len),
            Some(1)
        );

        // A member can read but not manage identity.
        assert_eq!(carol.get(&format!("{url}/projects")).await.status, 200);
        let r = carol
            .post(
                &format!("{url}/projects"),
                json!({"project": {"name": "evil"}}),
            )
            .await;
        assert_error(&r, 403, "ForbiddenError");
        let r = carol
            .put(
                &format!("{url}/projects/demo/users/carol/roles/admin"),
                None,
            )
            .await;
        assert_eq!(r.status, 403, "{r:?}");

        // Direct assignment, check, revoke.
        let r = admin
            .put(
                &format!("{url}/projects/{}/users/carol/roles/admin", id(&proj)),
                None,
            )
            .await;
        assert_eq!(r.status, 204);
        let r = admin
            .get(&format!("{url}/projects/demo/users/carol/roles/admin"))
            .await;
        assert_eq!(r.status, 204);
        let r = admin
            .get(&format!("{url}/projects/demo/users/carol/roles"))
            .await;
        assert_eq!(r.body["roles"].as_array().map(Vec::len), Some(2), "{r:?}");
        let r = admin
            .delete(&format!("{url}/projects/demo/users/carol/roles/admin"))
            .await;
        assert_eq!(r.status, 204);
        let r = admin
            .delete(&format!("{url}/projects/demo/users/carol/roles/admin"))
            .await;
        assert_eq!(r.status, 404);

        // A custom policy bound to a custom role, restricted to one project.
        let pol = create(
            &admin,
            &url,
            "policies",
            "policy",
            json!({"name": "read-only", "scope": "project",
                   "blob": {"policy": {"*": {"*": {"list": "allow", "get": "allow"}}}}}),
        )
        .await;
        assert_eq!(pol["blob"]["policy"]["*"]["*"]["list"], "allow");
        let role = create(&admin, &url, "roles", "role", json!({"name": "viewer"})).await;
        let r = admin
            .post(&format!("{url}/role_policies"), json!({"role_policy": {"role": "viewer", "policy": "read-only", "project": "demo"}}))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let dave = create(
            &admin,
            &url,
            "users",
            "user",
            json!({"name": "dave", "password": "dave-pw-1"}),
        )
        .await;
        admin
            .put(
                &format!("{url}/projects/demo/users/dave/roles/{}", id(&role)),
                None,
            )
            .await;
        let d = Api::login(&url, "dave", "dave-pw-1", "demo", None)
            .await
            .expect("dave");
        assert_eq!(d.body["token"]["policies"]["project"], json!(["read-only"]));
        assert_eq!(d.get(&format!("{url}/users/dave")).await.status, 200);
        assert_eq!(
            d.put(
                &format!("{url}/users/dave"),
                Some(json!({"user": {"displayname": "x"}}))
            )
            .await
            .status,
            403
        );

        // Invalid policy blobs are refused with PolicyDefinitionError.
        let r = admin
            .post(&format!("{url}/policies"), json!({"policy": {"name": "bad", "scope": "project", "blob": {"policy": {"compute": {"servers": {"perform": 5}}}}}}))
            .await;
        assert_error(&r, 409, "PolicyDefinitionError");
        let _ = dave;
    }
}

#[tokio::test]
async fn domains_isolate_their_objects() {
    let p = Platform::start();
    let url = p.auth_url.clone();
    let admin = p.admin().await;
    let d2 = create(&admin, &url, "domains", "domain", json!({"name": "acme"})).await;
    let proj = create(
        &admin,
        &url,
        "projects",
        "project",
        json!({"name": "ops", "project_domain": "acme"}),
    )
    .await;
    assert_eq!(proj["domain_id"], d2["id"]);
    let boss = create(
        &admin,
        &url,
        "users",
        "user",
        json!({"name": "boss", "password": "boss-pw-1", "domain_id": id(&d2)}),
    )
    .await;
    assert_eq!(boss["domain_id"], d2["id"]);
    let r = admin
        .put(
            &format!(
                "{url}/projects/{}/users/{}/roles/domainadmin",
                id(&proj),
                id(&boss)
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    // The same user name may exist in two domains.
    create(
        &admin,
        &url,
        "users",
        "user",
        json!({"name": "boss", "password": "boss-pw-2"}),
    )
    .await;
    // ...then the user domain is required to log in.
    let (s, _, b) = issue(&url, password_auth("boss", "boss-pw-1", None, None)).await;
    assert_eq!(s, 409, "{b}");
    let mut auth = password_auth("boss", "boss-pw-1", None, Some("acme"));
    auth["auth"]["scope"] = json!({"project": {"name": "ops", "domain": {"name": "acme"}}});
    let (s, token, b) = issue(&url, auth).await;
    assert_eq!(s, 200, "{b}");
    let boss_api = Api::with_token(&token);

    // The domain admin sees its domain only: other users answer 404.
    let users = boss_api.get(&format!("{url}/users?scope=domain")).await;
    assert_eq!(users.status, 200, "{users:?}");
    let names: Vec<&str> = users.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["boss"]);
    let sys_admin_id = admin.body["token"]["user"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_error(
        &boss_api.get(&format!("{url}/users/{sys_admin_id}")).await,
        404,
        "ResourceNotFoundError",
    );
    assert_eq!(
        boss_api
            .get(&format!("{url}/users?scope=system"))
            .await
            .status,
        403
    );
    // It can create users in its domain, not in another.
    let r = boss_api
        .post(
            &format!("{url}/users"),
            json!({"user": {"name": "worker", "password": "worker-pw-1"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["user"]["domain_id"], d2["id"]);
    let r = boss_api
        .post(
            &format!("{url}/users"),
            json!({"user": {"name": "spy", "password": "spy-pw-123", "domain_id": "default"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");

    // Domains can't be deleted while enabled or not empty.
    let r = admin.delete(&format!("{url}/domains/acme")).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_error(
        &admin.delete(&format!("{url}/domains/default")).await,
        403,
        "ProtectedResourceError",
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let p = Platform::start();
    let url = p.auth_url.clone();
    let admin = p.admin().await;
    let count = |v: &Value| v["total"].as_u64().unwrap_or(0);
    let before = count(&admin.get(&format!("{url}/users?scope=system")).await.body);

    let raw = |body: &'static str, path: &str| {
        let client = admin.client.clone();
        let token = admin.token.clone();
        let u = format!("{url}{path}");
        async move {
            let r = client
                .post(u)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    for (body, path, code) in [
        ("{not json", "/users", 400),
        ("[1,2]", "/users", 400),
        ("{\"name\": \"x\"}", "/users", 400),
        (
            "{\"user\": {\"name\": 5, \"password\": \"long-enough\"}}",
            "/users",
            200,
        ),
        (
            "{\"user\": {\"name\": \"y\", \"password\": \"long-enough\", \"bogus\": 1}}",
            "/users",
            400,
        ),
        (
            "{\"user\": {\"name\": \"z\", \"password\": \"long-enough\", \"enabled\": \"maybe\"}}",
            "/users",
            400,
        ),
        (
            "{\"user\": {\"name\": \"x'; DROP TABLE users; --\", \"password\": \"long-enough\"}}",
            "/users",
            400,
        ),
        ("{\"auth\": 5}", "/auth/tokens", 400),
        ("{}", "/auth/tokens", 400),
    ] {
        let (status, b) = raw(body, path).await;
        assert_eq!(status, code, "{body} → {b}");
        if status >= 400 {
            assert_eq!(b["code"], json!(code));
            assert!(b["class"].is_string());
        }
    }
    // The numeric name was accepted as the string "5"; nothing else was written.
    let after = count(&admin.get(&format!("{url}/users?scope=system")).await.body);
    assert_eq!(after, before + 1);

    // Oversized body: announced as 9 MiB; the server answers 413 without
    // waiting for the rest (a raw socket, since a client still writing may
    // see the connection close instead of the answer).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("addr")
            .to_string();
        let mut sock = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /v3/users HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"user\": {{\"name\": \"big\", \"description\": \"",
            admin.token,
            9 << 20
        );
        sock.write_all(head.as_bytes()).await.expect("write");
        sock.write_all(&vec![b'x'; 64 << 10]).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("TooLargeEntity"), "{text}");
    }

    // SQL metacharacters in query parameters never reach SQL as text.
    for q in [
        "order_by=name;drop%20table%20users",
        "filter=name.equals('x'%20OR%201=1')",
        "search=%25'%20OR%20'1'='1",
        "name='%20OR%20''='",
        "limit=1;DELETE",
        "filter=password_hash.isnotnull()",
    ] {
        let r = admin.get(&format!("{url}/users?{q}")).await;
        assert!(
            r.status == 400
                || (r.status == 200 && r.body["users"].as_array().is_some_and(|a| a.is_empty())),
            "{q}: {r:?}"
        );
    }
    let r = admin.get(&format!("{url}/users/x'%20OR%20'1'='1")).await;
    assert_error(&r, 404, "ResourceNotFoundError");
    let final_count = count(&admin.get(&format!("{url}/users?scope=system")).await.body);
    assert_eq!(final_count, after);
}
