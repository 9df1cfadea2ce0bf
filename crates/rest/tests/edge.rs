//! Edge cases of the generic layer: oversized queries, names, column
//! types, shared resources.

mod common;

use common::*;
use serde_json::{Value, json};

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn huge_queries_are_refused_not_failed() {
    let env = Env::new().await;
    env.server(ALICE, "q", json!({})).await;
    let many = |key: &str, val: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("{}={}", key.replace("{i}", &i.to_string()), enc(val)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let cases = [
        format!("/servers?{}", many("filter", "name.isnull()", 1200)),
        format!(
            "/servers?{}&filter_any=true",
            many("filter", "name.isnotnull()", 1200)
        ),
        format!("/servers?{}", many("tags.{i}.key", "user:x", 1200)),
        format!("/servers?{}", many("no_tags.{i}.key", "user:x", 1200)),
        format!("/servers?tags.0.key=k&{}", many("tags.0.value", "v", 3500)),
        format!("/servers?{}", many("id", "x", 12000)),
        format!(
            "/servers?{}",
            many("filter", "name.in(a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p)", 150)
        ),
        format!("/guestdisks?{}", many("filter", "index.isnull()", 1200)),
        format!("/guestdisks?{}", many("guest_id", "x", 5000)),
    ];
    for uri in &cases {
        // (URIs are limited to 64 KiB by the http crate, and so by hyper.)
        assert!(uri.len() < 65_000, "{}", uri.len());
        let r = env.get(uri, ALICE).await;
        assert!(r.status < 500, "{}...: {} {}", &uri[..60], r.status, r.body);
        if r.status != 200 {
            r.assert_error(400, "InputParameterError");
        }
    }
    // Repeating an order column is harmless.
    let uri = format!("/servers?{}", many("order_by", "name", 2100));
    let r = env.get(&uri, ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["q"]);
    // Reasonable sizes still work.
    let uri = format!("/servers?{}&id=q", many("id", "x", 2048));
    assert_eq!(env.get(&uri, ALICE).await.status, 200);
    let uri = format!("/servers?{}", many("filter", "name.isnotnull()", 50));
    assert_eq!(names(env.get(&uri, ALICE).await.ok(), "servers"), ["q"]);
}

#[tokio::test]
async fn duplicate_and_unique_names() {
    let env = Env::new().await;
    // Server names need not be unique; a name then no longer resolves.
    let a = env.server(ALICE, "dup", json!({})).await;
    env.server(ALICE, "dup", json!({})).await;
    let r = env.get("/servers/dup", ALICE).await;
    r.assert_error(409, "DuplicateNameError");
    env.get(&format!("/servers/{a}"), ALICE).await.ok();
    // Names in other projects do not make one's own name ambiguous.
    env.server(BOB, "solo", json!({})).await;
    env.server(ALICE, "solo", json!({})).await;
    assert_eq!(
        env.get("/servers/solo", ALICE).await.ok()["server"]["tenant_id"],
        json!("p1")
    );
    assert_eq!(
        env.get("/servers/solo", BOB).await.ok()["server"]["tenant_id"],
        json!("p2")
    );

    // Zones have unique names within their domain.
    env.post("/zones", ADMIN, json!({"zone": {"name": "z"}}))
        .await
        .ok();
    env.post("/zones", ADMIN, json!({"zone": {"name": "Z"}}))
        .await
        .assert_error(409, "DuplicateNameError");
    // Another domain may reuse it.
    env.post("/zones", DADMIN, json!({"zone": {"name": "z"}}))
        .await
        .ok();
    env.post("/zones", ADMIN, json!({"zone": {"name": "z2"}}))
        .await
        .ok();
    env.call("PUT", "/zones/z2", Some(ADMIN), Some(json!({"name": "z"})))
        .await
        .assert_error(409, "DuplicateNameError");
    // Renaming to its own name is fine.
    env.call("PUT", "/zones/z2", Some(ADMIN), Some(json!({"name": "z2"})))
        .await
        .ok();
    // generate_name picks a free name.
    let r = env
        .post("/zones", ADMIN, json!({"zone": {"generate_name": "z"}}))
        .await;
    let n = r.ok()["zone"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(n != "z" && n.starts_with('z'), "{n}");
    let r = env
        .post(
            "/zones",
            ADMIN,
            json!({"zone": {"generate_name": "gz"}, "count": 3}),
        )
        .await;
    let mut got: Vec<String> = r.ok()["zones"]
        .as_array()
        .expect("zones")
        .iter()
        .map(|z| z["body"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["gz-1", "gz-2", "gz-3"]);
}

#[tokio::test]
async fn names_cannot_be_cleared() {
    let env = Env::new().await;
    let id = env.server(ALICE, "keep", json!({})).await;
    for body in [
        json!({"name": null}),
        json!({"server": {"name": null}}),
        json!({"name": ""}),
    ] {
        let r = env
            .call(
                "PUT",
                &format!("/servers/{id}"),
                Some(ALICE),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    assert_eq!(
        env.get(&format!("/servers/{id}"), ALICE).await.ok()["server"]["name"],
        json!("keep")
    );
    // Other nullable columns can be cleared.
    env.call(
        "PUT",
        &format!("/servers/{id}"),
        Some(ALICE),
        Some(json!({"description": "d"})),
    )
    .await
    .ok();
    let r = env
        .call(
            "PUT",
            &format!("/servers/{id}"),
            Some(ALICE),
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(r.ok()["server"]["description"], Value::Null);
}

#[tokio::test]
async fn status_action_checks_the_column() {
    let env = Env::new().await;
    let id = env.server(ALICE, "st", json!({})).await;
    let before = env.fingerprint().await;
    for body in [
        json!({"status": "x".repeat(37)}),
        json!({"status": ["running"]}),
        json!({"status": {"a": 1}}),
        json!({}),
    ] {
        let r = env
            .post(&format!("/servers/{id}/status"), ADMIN, body.clone())
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    assert_eq!(env.fingerprint().await, before);
    let r = env
        .post(
            &format!("/servers/{id}/status"),
            ADMIN,
            json!({"status": "x".repeat(36)}),
        )
        .await;
    assert_eq!(r.ok()["server"]["status"], json!("x".repeat(36)));
}

#[tokio::test]
async fn typed_columns() {
    let env = Env::new().await;
    let r = env
        .post(
            "/disks",
            ALICE,
            json!({"disk": {
                "name": "t",
                "ratio": "1.5",
                "expires_at": "2024-01-02T03:04:05+08:00",
                "auto_delete": "Yes",
                "extra": {"a": [1, {"b": null}], "CamelKey": 1},
            }}),
        )
        .await;
    let d = &r.ok()["disk"];
    assert_eq!(d["ratio"], json!(1.5));
    assert_eq!(d["expires_at"], json!("2024-01-01T19:04:05.000000Z"));
    assert_eq!(d["auto_delete"], json!(true));
    assert_eq!(d["extra"], json!({"a": [1, {"b": null}], "CamelKey": 1}));
    let id = d["id"].as_str().expect("id").to_string();
    env.post(
        "/disks",
        ALICE,
        json!({"disk": {"name": "u", "ratio": 3, "auto_delete": false}}),
    )
    .await
    .ok();

    for (q, want) in [
        ("ratio=1.5", vec!["t"]),
        ("auto_delete=true", vec!["t"]),
        ("auto_delete=OFF", vec!["u"]),
        ("filter=ratio.gt(2)", vec!["u"]),
        ("filter=ratio.between(1,2)", vec!["t"]),
        ("filter=expires_at.lt('2025-01-01')", vec!["t"]),
        ("filter=expires_at.isnull()", vec!["u"]),
        ("filter=auto_delete.equals(1)", vec!["t"]),
    ] {
        let r = env.get(&format!("/disks?{q}"), ALICE).await;
        assert_eq!(names(r.ok(), "disks"), want, "{q}");
    }
    let before = env.fingerprint().await;
    for q in [
        "ratio=nan",
        "ratio=inf",
        "ratio=abc",
        "auto_delete=maybe",
        "filter=ratio.gt(nan)",
        "filter=ratio.le(-inf)",
        "filter=ratio.in(1,infinity)",
        "filter=auto_delete.equals(perhaps)",
        "disk_size=1.5",
    ] {
        env.get(
            &format!("/disks?{}", q.replace('(', "%28").replace(')', "%29")),
            ALICE,
        )
        .await
        .assert_error(400, "InputParameterError");
    }
    for body in [
        json!({"ratio": "nan"}),
        json!({"ratio": "inf"}),
        json!({"ratio": "-Infinity"}),
        json!({"ratio": "x"}),
        json!({"ratio": true}),
        json!({"expires_at": "tomorrow"}),
        json!({"expires_at": 5}),
        json!({"auto_delete": "perhaps"}),
        json!({"auto_delete": [true]}),
        json!({"disk_size": "1.5"}),
        json!({"disk_size": 2_147_483_648_i64}),
    ] {
        let r = env
            .call(
                "PUT",
                &format!("/disks/{id}"),
                Some(ALICE),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let mut create = body.clone();
        create["name"] = json!("new");
        let r = env.post("/disks", ALICE, json!({"disk": create})).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    assert_eq!(env.fingerprint().await, before);
    // Integers at the edge of the 32-bit column.
    let r = env
        .call(
            "PUT",
            &format!("/disks/{id}"),
            Some(ALICE),
            Some(json!({"disk_size": 2_147_483_647})),
        )
        .await;
    assert_eq!(r.ok()["disk"]["disk_size"], json!(2_147_483_647));
    let r = env
        .call(
            "PUT",
            &format!("/disks/{id}"),
            Some(ALICE),
            Some(json!({"disk_size": "-2147483648"})),
        )
        .await;
    assert_eq!(r.ok()["disk"]["disk_size"], json!(-2_147_483_648_i64));
}

#[tokio::test]
async fn shared_resources() {
    let env = Env::new().await;
    let r = env
        .post("/disks", BOB, json!({"disk": {"name": "bobdisk"}}))
        .await;
    let did = r.ok()["disk"]["id"].as_str().expect("id").to_string();
    env.get(&format!("/disks/{did}"), ALICE)
        .await
        .assert_error(404, "ResourceNotFoundError");
    // A project member may not share beyond its scope.
    env.post(
        &format!("/disks/{did}/public"),
        BOB,
        json!({"scope": "system"}),
    )
    .await
    .assert_error(403, "ForbiddenError");
    env.post(
        &format!("/disks/{did}/public"),
        BOB,
        json!({"scope": "project"}),
    )
    .await
    .assert_error(400, "InputParameterError");
    let r = env
        .post(
            &format!("/disks/{did}/public"),
            ADMIN,
            json!({"scope": "system"}),
        )
        .await;
    assert_eq!(r.ok()["disk"]["is_public"], json!(true));
    assert_eq!(r.ok()["disk"]["public_scope"], json!("system"));

    // Visible to everyone now: list, get, distinct-field.
    assert_eq!(
        names(env.get("/disks", ALICE).await.ok(), "disks"),
        ["bobdisk"]
    );
    assert_eq!(
        names(env.get("/disks", DADMIN).await.ok(), "disks"),
        ["bobdisk"]
    );
    env.get("/disks/bobdisk", ALICE).await.ok();
    let r = env.get("/disks/distinct-field?field=name", ALICE).await;
    assert_eq!(r.ok(), &json!({"name": ["bobdisk"]}));
    // ...but not changeable by them: visible, so 403 rather than 404.
    let before = env.fingerprint().await;
    env.call(
        "PUT",
        &format!("/disks/{did}"),
        Some(ALICE),
        Some(json!({"disk_size": 1})),
    )
    .await
    .assert_error(403, "ForbiddenError");
    env.call("DELETE", &format!("/disks/{did}"), Some(ALICE), None)
        .await
        .assert_error(403, "ForbiddenError");
    env.post(&format!("/disks/{did}/private"), ALICE, json!({}))
        .await
        .assert_error(403, "ForbiddenError");
    assert_eq!(env.fingerprint().await, before);
    // The owner still can.
    env.call(
        "PUT",
        &format!("/disks/{did}"),
        Some(BOB),
        Some(json!({"disk_size": 1})),
    )
    .await
    .ok();

    // Domain sharing stays in the domain.
    env.post(
        &format!("/disks/{did}/public"),
        ADMIN,
        json!({"scope": "domain"}),
    )
    .await
    .ok();
    assert_eq!(
        names(env.get("/disks", ALICE).await.ok(), "disks"),
        ["bobdisk"]
    );
    assert_eq!(env.get("/disks", DADMIN).await.ok(), &json!({"disks": []}));
    env.get("/disks/bobdisk", DADMIN)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.post(&format!("/disks/{did}/private"), BOB, json!({}))
        .await
        .ok();
    assert_eq!(env.get("/disks", ALICE).await.ok(), &json!({"disks": []}));

    // Joint lists refuse scopes beyond the grant.
    env.get("/guestdisks?scope=system", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
}

#[tokio::test]
async fn deeply_nested_input() {
    let env = Env::new().await;
    let id = env.server(ALICE, "deep", json!({})).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    for body in [&deep, &obj] {
        for (method, uri) in [
            ("POST", "/servers".to_string()),
            ("PUT", format!("/servers/{id}")),
            ("POST", format!("/servers/{id}/echo")),
            ("DELETE", format!("/servers/{id}")),
        ] {
            let r = env
                .raw(
                    method,
                    &uri,
                    Some(ALICE),
                    Some(body.clone().into_bytes()),
                    &[("content-type", "application/json")],
                )
                .await;
            r.assert_error(400, "InputParameterError");
        }
    }
    // Deep query keys stop at 16 levels and are not filters.
    let key = (0..40)
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join(".");
    let r = env
        .get(&format!("/servers?{key}=1&name.a.b=2"), ALICE)
        .await;
    assert_eq!(names(r.ok(), "servers"), ["deep"]);
    // A legitimately nested JSON column value round-trips.
    let nested = (0..20).fold(json!(1), |acc, i| json!({ format!("l{i}"): acc }));
    let r = env
        .post(
            "/disks",
            ALICE,
            json!({"disk": {"name": "n", "extra": nested}}),
        )
        .await;
    assert_eq!(r.ok()["disk"]["extra"], nested);
    let r = env.get("/disks/n", ALICE).await;
    assert_eq!(r.ok()["disk"]["extra"], nested);
}
