//! The API gateway (Cloudpods' apigateway contract) over a real platform:
//! login and the session cookie, reshaped resources, batches answered 207,
//! permissions, cross-site refusals, logout, and two stateless gateways
//! serving one session.

mod common;

use common::gateway::*;
use common::*;
use serde_json::{Value, json};

fn vm(name: &str) -> Value {
    json!({"name": name, "vcpu_count": 1, "vmem_size": 256, "disks": [{"size": 512}],
           "nets": [{"network": "net0"}], "auto_start": true})
}

async fn wait_status(b: &Browser, id: &str, want: &str) -> Value {
    for _ in 0..300 {
        let a = b.get(&format!("/api/v2/servers/{id}")).await;
        if a.body["status"] == want {
            return a.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("server {id} did not reach {want}");
}

#[tokio::test]
async fn login_resources_batches_permissions_and_logout_through_the_gateway() {
    let p = Platform::start();
    let admin_api = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let gw = p.gateway_url();
    assert!(
        !gw.is_empty(),
        "all-in-one serves the gateway: {:?}",
        p.ready
    );
    let mut b = Browser::new(&gw);

    // The login page's bootstrap needs no session.
    let regions = b.get("/api/v1/auth/regions").await;
    assert_eq!(regions.status, 200);
    assert_eq!(regions.body["regions"], json!(["region0"]));

    // No session: 401 in the shape that sends the browser to the login page.
    let none = b.get("/api/v2/servers").await;
    assert_eq!(none.status, 401, "{:?}", none.body);
    assert_eq!(none.body["class"], "InvalidCredentialError");
    assert!(
        none.body["details"]
            .as_str()
            .unwrap_or_default()
            .contains("No token in header")
    );

    // A wrong password and an unknown user read the same.
    let wrong = b.login("sysadmin", "not-the-password").await;
    let unknown = b.login("nobody-here", "not-the-password").await;
    assert_eq!(wrong.status, 401, "{:?}", wrong.body);
    assert_eq!(wrong.body["class"], unknown.body["class"]);
    assert_eq!(wrong.body["details"], unknown.body["details"]);
    assert!(b.cookie.is_none());

    // A locked user is told so (keystone's 423), even with the right
    // password, and gets no session.
    let r = admin_api
        .post(
            &format!("{}/users", p.auth_url),
            json!({"user": {"name": "gw-locky", "password": "Locky-Pw-123"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut locky = Browser::new(&gw);
    // Wrong passwords until keystone locks the user (its configured count).
    let mut tries = 0;
    while locky.login("gw-locky", "wrong-Pw-123").await.status == 401 {
        tries += 1;
        assert!(tries < 20, "keystone never locked gw-locky");
    }
    let locked = locky.login("gw-locky", "Locky-Pw-123").await;
    assert_eq!(locked.status, 423, "{:?}", locked.body);
    assert_eq!(locked.body["class"], "UserLocked", "{:?}", locked.body);
    assert!(locky.cookie.is_none());

    let ok = b.login("sysadmin", "Test-Admin-Pw1").await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let set = ok
        .set_cookies
        .iter()
        .find(|c| c.starts_with("yunionauth="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Expires="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    // The cookie does not carry the token in the clear.
    let admin_token = admin_api.token.clone();
    assert!(!set.contains(&admin_token));

    let me = b.get("/api/v1/auth/user").await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["data"]["name"], "sysadmin");
    assert_eq!(me.body["data"]["projectName"], "system");
    assert_eq!(me.body["data"]["system_capable"], true);
    assert!(
        me.body["data"]["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["type"] == "compute_v2")),
        "{:?}",
        me.body
    );

    // Bare bodies in, bare objects out, lists under data.
    let created = b.post("/api/v2/servers", vm("gw-vm")).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["id"]
        .as_str()
        .expect("a bare server")
        .to_string();
    assert_eq!(created.body["name"], "gw-vm");
    wait_status(&b, &id, "running").await;
    let list = b.get("/api/v2/servers?details=true&limit=20").await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["total"], 1, "{:?}", list.body);
    assert_eq!(list.body["limit"], 20);
    assert!(
        list.body.get("offset").is_none(),
        "zero counts are left out: {:?}",
        list.body
    );
    assert_eq!(list.body["data"][0]["id"], id);
    let one = b.get(&format!("/api/v2/servers/{id}")).await;
    assert_eq!(one.body["name"], "gw-vm");
    // v1 and v2 reach the same resources.
    assert_eq!(b.get("/api/v1/servers").await.body["total"], 1);
    // Identity and images through the same gateway.
    let users = b.get("/api/v1/users?limit=5").await;
    assert_eq!(users.status, 200, "{:?}", users.body);
    assert!(users.body["data"].as_array().is_some_and(|u| !u.is_empty()));
    assert_eq!(b.get("/api/v1/images").await.status, 200);
    // Capabilities come as data[0].
    let caps = b.get("/api/v2/capabilities").await;
    assert_eq!(caps.status, 200, "{:?}", caps.body);
    assert!(caps.body["data"][0].is_object(), "{:?}", caps.body);
    // Errors keep their class and details.
    let missing = b.get("/api/v2/servers/no-such-server").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body["class"], "ResourceNotFoundError",
        "{:?}",
        missing.body
    );
    let bad = b.get("/api/v2/no-such-resources").await;
    assert_eq!(bad.status, 404, "{:?}", bad.body);

    // Batch: one per item, 207.
    let batch = b
        .post(
            &format!("/api/v2/servers/stop?id={id}&id=no-such-server"),
            json!({}),
        )
        .await;
    assert_eq!(batch.status, 207, "{:?}", batch.body);
    let items = batch.body["data"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["status"], 200, "{items:?}");
    assert_eq!(items[1]["status"], 404, "{items:?}");
    wait_status(&b, &id, "ready").await;
    let twice = b
        .post(
            "/api/v2/servers",
            json!({"__count__": 2, "name": "pair", "vcpu_count": 1,
                                        "vmem_size": 256, "disks": [{"size": 512}],
                                        "nets": [{"network": "net0"}]}),
        )
        .await;
    assert_eq!(twice.status, 207, "{:?}", twice.body);
    assert_eq!(twice.body["data"].as_array().map(Vec::len), Some(2));

    // The scheduler's forecast, as the create wizard asks it.
    let f = b
        .post(
            "/api/v1/rpc/schedulers/forecast",
            json!({"vcpu_count": 1, "vmem_size": 1 << 20, "disks": [{"size": 512}],
                   "nets": [{"network": "net0"}]}),
        )
        .await;
    assert_eq!(f.status, 200, "{:?}", f.body);
    assert_eq!(f.body["can_create"], false, "{:?}", f.body);
    assert!(f.body.to_string().contains("memory"), "{:?}", f.body);

    // Cross-site state changes are refused; the same call from the page works.
    let evil = b
        .send(
            "POST",
            &format!("/api/v2/servers/{id}/start"),
            Some(json!({})),
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(evil.status, 403, "{:?}", evil.body);
    let evil2 = b
        .send(
            "DELETE",
            &format!("/api/v2/servers/{id}"),
            None,
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_eq!(evil2.status, 403, "{:?}", evil2.body);
    let host = gw.trim_start_matches("http://").to_string();
    let origin = format!("http://{host}");
    let same = b
        .send(
            "POST",
            &format!("/api/v2/servers/{id}/start"),
            Some(json!({})),
            &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(same.status, 200, "{:?}", same.body);

    // Permissions as the console asks them.
    let perms = b
        .post(
            "/api/v1/auth/permissions",
            json!({"hosts_create": ["system", "compute", "hosts", "create"],
                   "servers_list": ["project", "compute", "servers", "list"]}),
        )
        .await;
    assert_eq!(perms.status, 200, "{:?}", perms.body);
    assert_eq!(perms.body["hosts_create"][4], "allow", "{:?}", perms.body);
    assert_eq!(perms.body["servers_list"][4], "allow");

    // A tenant member: its own project only, and no infrastructure.
    let (_dave_api, _) = p.member(&admin_api, "demo", "dave").await;
    let mut d = Browser::new(&gw);
    assert_eq!(d.login("dave", "Member-Pw-123").await.status, 200);
    let dme = d.get("/api/v1/auth/user").await;
    assert_eq!(dme.body["data"]["projectName"], "demo", "{:?}", dme.body);
    assert_eq!(dme.body["data"]["system_capable"], false);
    let dl = d.get("/api/v2/servers?scope=system").await;
    assert!(
        dl.status == 403 || dl.body["total"].is_null(),
        "{:?}",
        dl.body
    );
    assert_eq!(d.get("/api/v2/servers").await.body.get("total"), None);
    assert_eq!(d.get(&format!("/api/v2/servers/{id}")).await.status, 404);
    let dp = d
        .post(
            "/api/v1/auth/permissions",
            json!({"hosts_create": ["system", "compute", "hosts", "create"],
                   "hosts_create_p": ["project", "compute", "hosts", "create"],
                   "servers_create": ["project", "compute", "servers", "create"]}),
        )
        .await;
    assert_eq!(dp.body["hosts_create"][4], "deny", "{:?}", dp.body);
    assert_eq!(dp.body["hosts_create_p"][4], "deny", "{:?}", dp.body);
    assert_eq!(dp.body["servers_create"][4], "allow", "{:?}", dp.body);
    let dh = d.post("/api/v2/hosts", json!({"name": "h"})).await;
    assert_eq!(dh.status, 403, "{:?}", dh.body);

    // Tampering with the cookie ends the session.
    let mut forged = Browser::new(&gw);
    let mut c = b.cookie.clone().expect("cookie");
    c.replace_range(c.len() - 3.., "AAA");
    forged.cookie = Some(c);
    assert_eq!(forged.get("/api/v1/auth/user").await.status, 401);

    // Logout revokes the token: the old cookie no longer works.
    let old = b.cookie.clone();
    let out = b.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(out.status, 200);
    assert!(
        out.set_cookies
            .iter()
            .any(|c| c.starts_with("yunionauth=;") && c.contains("Max-Age=0")),
        "{:?}",
        out.set_cookies
    );
    let mut stale = Browser::new(&gw);
    stale.cookie = old;
    let after = stale.get("/api/v1/auth/user").await;
    assert_eq!(after.status, 401, "{:?}", after.body);
    assert_eq!(after.body["class"], "InvalidCredentialError");
}

fn gateway(p: &Platform, key: &str) -> Platform {
    Platform::start_with(Opts {
        command: Some("apigateway".into()),
        env: vec![
            ("CLOUDPODS_AUTH__AUTH_URL".into(), p.auth_url.clone()),
            ("CLOUDPODS_AUTH__ADMIN_USER".into(), "sysadmin".into()),
            (
                "CLOUDPODS_AUTH__ADMIN_PASSWORD".into(),
                "Test-Admin-Pw1".into(),
            ),
            ("CLOUDPODS_AUTH__ADMIN_PROJECT".into(), "system".into()),
            ("CLOUDPODS_APIGATEWAY__COOKIE_KEY".into(), key.into()),
        ],
        ..Opts::default()
    })
}

#[tokio::test]
async fn two_stateless_gateways_serve_one_session_and_a_foreign_key_asks_to_log_in() {
    let p = Platform::start();
    let _admin = p.admin_with_network().await;
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let g1 = gateway(&p, key);
    let g2 = gateway(&p, key);
    let (u1, u2) = (g1.gateway_url(), g2.gateway_url());
    assert!(!u1.is_empty() && u1 != u2, "{u1} {u2}");
    let mut b1 = Browser::new(&u1);
    assert_eq!(b1.login("sysadmin", "Test-Admin-Pw1").await.status, 200);
    let mut b2 = Browser::new(&u2);
    b2.cookie = b1.cookie.clone();
    // Round robin: every other request to the other gateway.
    for i in 0..6 {
        let b = if i % 2 == 0 { &b1 } else { &b2 };
        let me = b.get("/api/v1/auth/user").await;
        assert_eq!(me.status, 200, "gateway {}: {:?}", i % 2, me.body);
        assert_eq!(me.body["data"]["name"], "sysadmin");
        let l = b.get("/api/v2/zones").await;
        assert_eq!(l.status, 200, "{:?}", l.body);
        assert_eq!(l.body["data"][0]["name"], "zone0");
    }
    // A gateway with another key (a redeploy that lost it) does not crash
    // on the stale cookie: it asks to log in again, and the login works.
    let g3 = gateway(&p, "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=");
    let mut b3 = Browser::new(&g3.gateway_url());
    b3.cookie = b1.cookie.clone();
    let stale = b3.get("/api/v1/auth/user").await;
    assert_eq!(stale.status, 401, "{:?}", stale.body);
    assert_eq!(stale.body["class"], "InvalidCredentialError");
    assert_eq!(b3.login("sysadmin", "Test-Admin-Pw1").await.status, 200);
    assert_eq!(b3.get("/api/v1/auth/user").await.status, 200);
}

#[tokio::test]
async fn the_console_is_served_from_the_binary() {
    let p = Platform::start();
    let gw = p.gateway_url();
    init_tls();
    let http = reqwest::Client::new();
    let index = http.get(format!("{gw}/")).send().await.expect("index");
    assert_eq!(index.status(), 200);
    let h = index.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    // What the build produced, byte for byte.
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    assert_eq!(
        html,
        std::fs::read_to_string(dist.join("index.html")).unwrap()
    );
    // Nothing from elsewhere: no CDN, no external fonts.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // A client-side route is the app too.
    let deep = http.get(format!("{gw}/servers/abc")).send().await.unwrap();
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.text().await.unwrap(), html);
    // Its scripts come with a long cache life.
    let script = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .expect("a script in index.html");
    let js = http.get(format!("{gw}{script}")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        js.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    // An unknown API path is a JSON 404, never the app.
    let api = http.get(format!("{gw}/api/v9")).send().await.unwrap();
    assert_eq!(api.status(), 401, "no session first");
}

#[tokio::test]
async fn cloudpods_encoded_passwords_log_in() {
    use base64::Engine;
    use cbc::cipher::block_padding::Pkcs7;
    use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
    let p = Platform::start();
    let mut key = [b'0'; 32];
    key[..9].copy_from_slice(b"cloudpods");
    let iv = [9u8; 16];
    let ct = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec::<Pkcs7>(b"Test-Admin-Pw1");
    let mut blob = iv.to_vec();
    blob.extend(ct);
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    let mut b = Browser::new(&p.gateway_url());
    let a = b.login("sysadmin", &encoded).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // project/user picks the project.
    let mut c = Browser::new(&p.gateway_url());
    assert_eq!(
        c.login("system/sysadmin", "Test-Admin-Pw1").await.status,
        200
    );
    assert_eq!(
        c.get("/api/v1/auth/user").await.body["data"]["projectName"],
        "system"
    );
}
