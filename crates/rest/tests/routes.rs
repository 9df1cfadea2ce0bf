//! In-process tests of the generic REST layer: every route shape, query
//! parsing, error answers, authorization and the default routes, driven
//! through the real router with `tower::ServiceExt::oneshot`.

mod common;

use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// 1. route shapes

#[tokio::test]
async fn list_envelope_omits_zero_values() {
    let env = Env::new().await;
    let r = env.get("/servers", ALICE).await;
    // Empty list is literally {"servers":[]}.
    assert_eq!(r.ok(), &json!({"servers": []}));
    assert_eq!(r.raw, br#"{"servers":[]}"#);

    env.server(ALICE, "a", json!({})).await;
    env.server(ALICE, "b", json!({})).await;
    let r = env.get("/servers", ALICE).await;
    let v = r.ok();
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["total"], json!(2));
    assert_eq!(v["limit"], json!(2048));
    assert!(v.get("offset").is_none(), "{v}");

    let v = env.get("/servers?offset=1&limit=1", ALICE).await;
    let v = v.ok();
    assert_eq!(v["total"], json!(2));
    assert_eq!(v["limit"], json!(1));
    assert_eq!(v["offset"], json!(1));
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(1));

    // An offset past the end: rows empty, but total is still reported.
    let v = env.get("/servers?offset=10", ALICE).await;
    assert_eq!(v.ok()["total"], json!(2));
    assert_eq!(v.ok()["servers"], json!([]));

    // Filters that match nothing: the bare empty envelope again.
    let v = env.get("/servers?name=nothing", ALICE).await;
    assert_eq!(v.ok(), &json!({"servers": []}));
}

#[tokio::test]
async fn get_by_id_and_by_name() {
    let env = Env::new().await;
    let id = env.server(ALICE, "web01", json!({"vcpu_count": 2})).await;
    let by_id = env.get(&format!("/servers/{id}"), ALICE).await;
    let s = &by_id.ok()["server"];
    assert_eq!(s["id"], json!(id));
    assert_eq!(s["name"], json!("web01"));
    assert_eq!(s["vcpu_count"], json!(2));
    assert_eq!(s["status"], json!("init"));
    assert_eq!(s["tenant_id"], json!("p1"));
    assert_eq!(s["project_id"], json!("p1"));
    assert_eq!(s["tenant"], json!("proj1"));
    assert_eq!(s["project_domain"], json!("Default"));
    assert_eq!(s["can_delete"], json!(true));

    let by_name = env.get("/servers/web01", ALICE).await;
    assert_eq!(by_name.ok()["server"]["id"], json!(id));
    // Names match case-insensitively (MySQL collation).
    let by_name = env.get("/servers/WEB01", ALICE).await;
    assert_eq!(by_name.ok()["server"]["id"], json!(id));

    env.get("/servers/nope", ALICE)
        .await
        .assert_error(404, "ResourceNotFoundError");
}

#[tokio::test]
async fn create_requires_the_envelope() {
    let env = Env::new().await;
    for body in [
        json!({"name": "x"}),
        json!({}),
        json!({"servers": {"name": "x"}}),
    ] {
        let r = env.post("/servers", ALICE, body).await;
        r.assert_error(400, "InputParameterError");
        assert_eq!(r.details(), "No request key: server");
    }
    // No body at all.
    let r = env.call("POST", "/servers", Some(ALICE), None).await;
    r.assert_error(400, "InputParameterError");
    assert_eq!(r.details(), "No request key: server");
    // A null envelope is an empty input: the name is then missing.
    let r = env.post("/servers", ALICE, json!({"server": null})).await;
    r.assert_error(400, "MissingParameterError");
    assert_eq!(env.count("guests_tbl").await, 0);

    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "ok", "vcpu_count": "4"}}),
        )
        .await;
    let s = &r.ok()["server"];
    assert_eq!(s["vcpu_count"], json!(4));
    assert_eq!(s["tenant_id"], json!("p1"));
    assert_eq!(s["domain_id"], json!("default"));
    // Read-only columns in the input are ignored, not assigned.
    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "ro", "status": "running", "deleted": true, "update_version": 9}}),
        )
        .await;
    let s = &r.ok()["server"];
    assert_eq!(s["status"], json!("init"));
    assert_eq!(s["tenant_id"], json!("p1"));
    assert_eq!(s["deleted"], json!(false));
    assert_eq!(s["update_version"], json!(0));
    // tenant_id is an alias of project_id: naming another project is refused.
    env.post(
        "/servers",
        ALICE,
        json!({"server": {"name": "t", "tenant_id": "p2"}}),
    )
    .await
    .assert_error(403, "ForbiddenError");
}

#[tokio::test]
async fn batch_create_with_count() {
    let env = Env::new().await;
    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "web", "vcpu_count": 1}, "count": 3}),
        )
        .await;
    let items = r.ok()["servers"].as_array().expect("servers").clone();
    assert_eq!(items.len(), 3);
    let mut names: Vec<String> = items
        .iter()
        .map(|i| {
            assert_eq!(i["status"], json!(200));
            assert_eq!(i.as_object().map(|o| o.len()), Some(2), "{i}");
            assert_eq!(i["body"]["vcpu_count"], json!(1));
            i["body"]["name"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
    assert_eq!(env.count("guests_tbl").await, 3);

    // `#` marks where the number goes.
    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "db#x"}, "count": "2"}),
        )
        .await;
    let mut names: Vec<String> = r.ok()["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|i| i["body"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["db1x", "db2x"]);

    for bad in [
        json!(0),
        json!(-1),
        json!(11),
        json!("many"),
        json!(1.5),
        json!([2]),
    ] {
        env.post(
            "/servers",
            ALICE,
            json!({"server": {"name": "x"}, "count": bad}),
        )
        .await
        .assert_error(400, "InputParameterError");
    }
    assert_eq!(env.count("guests_tbl").await, 5);
}

#[tokio::test]
async fn put_and_patch_update() {
    let env = Env::new().await;
    let id = env.server(ALICE, "u1", json!({"vcpu_count": 1})).await;
    let r = env
        .call(
            "PUT",
            &format!("/servers/{id}"),
            Some(ALICE),
            Some(json!({"server": {"vcpu_count": 8}})),
        )
        .await;
    assert_eq!(r.ok()["server"]["vcpu_count"], json!(8));
    // PATCH with a bare body, camelCase keys accepted.
    let r = env
        .call(
            "PATCH",
            "/servers/u1",
            Some(ALICE),
            Some(json!({"vcpuCount": "3", "description": "hello"})),
        )
        .await;
    let s = &r.ok()["server"];
    assert_eq!(s["vcpu_count"], json!(3));
    assert_eq!(s["description"], json!("hello"));
    assert_eq!(s["update_version"], json!(2));
    // Rename, then address by the new name.
    let r = env
        .call(
            "PUT",
            "/servers/u1",
            Some(ALICE),
            Some(json!({"name": "u2"})),
        )
        .await;
    assert_eq!(r.ok()["server"]["name"], json!("u2"));
    assert_eq!(
        env.get("/servers/u2", ALICE).await.ok()["server"]["id"],
        json!(id)
    );
    // Empty update: nothing changes, the object is returned.
    let r = env.call("PUT", "/servers/u2", Some(ALICE), None).await;
    assert_eq!(r.ok()["server"]["update_version"], json!(3));
    // Columns that are create-only cannot be updated (silently ignored).
    let r = env
        .call(
            "PUT",
            "/servers/u2",
            Some(ALICE),
            Some(json!({"hostname": "h"})),
        )
        .await;
    assert!(r.ok()["server"].get("hostname").is_none_or(Value::is_null));
}

#[tokio::test]
async fn delete_merges_query_and_body() {
    let env = Env::new().await;
    let id = env.server(ALICE, "d1", json!({})).await;
    let r = env
        .call(
            "DELETE",
            &format!("/servers/{id}?purge=false&from_query=1"),
            Some(ALICE),
            Some(json!({"server": {"fromBody": "2"}})),
        )
        .await;
    let s = &r.ok()["server"];
    assert_eq!(s["id"], json!(id));
    assert_eq!(s["deleted"], json!(true));
    assert_eq!(s["delete_input"]["from_query"], json!("1"));
    assert_eq!(s["delete_input"]["from_body"], json!("2"));
    assert_eq!(s["delete_input"]["purge"], json!("false"));
    env.get(&format!("/servers/{id}"), ALICE)
        .await
        .assert_error(404, "ResourceNotFoundError");
    assert_eq!(
        env.get("/servers", ALICE).await.ok(),
        &json!({"servers": []})
    );

    // Bare body, no query.
    let id = env.server(ALICE, "d2", json!({})).await;
    let r = env
        .call(
            "DELETE",
            "/servers/d2",
            Some(ALICE),
            Some(json!({"x": true})),
        )
        .await;
    assert_eq!(r.ok()["server"]["delete_input"]["x"], json!(true));
    assert_eq!(r.ok()["server"]["id"], json!(id));
}

#[tokio::test]
async fn status_spec_and_unknown_spec() {
    let env = Env::new().await;
    let id = env.server(ALICE, "s1", json!({})).await;
    let r = env.get(&format!("/servers/{id}/status"), ALICE).await;
    assert_eq!(r.ok(), &json!({"server": {"id": id, "status": "init"}}));
    let r = env.get("/servers/s1/vnc", ALICE).await;
    assert_eq!(r.ok()["server"]["port"], json!(5900));
    env.get("/servers/s1/nonsense", ALICE)
        .await
        .assert_error(404, "SpecNotFoundError");
    // The spec of a missing object is the object's 404.
    env.get("/servers/missing/status", ALICE)
        .await
        .assert_error(404, "ResourceNotFoundError");
}

#[tokio::test]
async fn perform_with_and_without_envelope() {
    let env = Env::new().await;
    let id = env.server(ALICE, "p", json!({})).await;
    let r = env
        .post(
            &format!("/servers/{id}/echo"),
            ALICE,
            json!({"server": {"a": 1}}),
        )
        .await;
    assert_eq!(r.ok(), &json!({"server": {"a": 1}}));
    let r = env
        .post(&format!("/servers/{id}/echo"), ALICE, json!({"a": 2}))
        .await;
    assert_eq!(r.ok(), &json!({"server": {"a": 2}}));
    let r = env
        .call("POST", &format!("/servers/{id}/echo"), Some(ALICE), None)
        .await;
    assert_eq!(r.ok(), &json!({"server": {}}));

    // start needs "ready"; the status action is admin only.
    let r = env
        .post(&format!("/servers/{id}/start"), ALICE, json!({}))
        .await;
    r.assert_error(400, "InvalidStatusError");
    assert_eq!(r.details(), "Cannot do start server in status init");
    env.post(
        &format!("/servers/{id}/status"),
        ALICE,
        json!({"status": "ready"}),
    )
    .await
    .assert_error(403, "ForbiddenError");
    let r = env
        .post(
            &format!("/servers/{id}/status"),
            ADMIN,
            json!({"server": {"status": "ready"}}),
        )
        .await;
    assert_eq!(r.ok()["server"]["status"], json!("ready"));
    let r = env
        .post(&format!("/servers/{id}/start"), ALICE, json!({}))
        .await;
    assert_eq!(r.ok()["server"]["status"], json!("running"));
    assert_eq!(
        env.get(&format!("/servers/{id}/status"), ALICE).await.ok()["server"]["status"],
        json!("running")
    );

    env.post(&format!("/servers/{id}/fly"), ALICE, json!({}))
        .await
        .assert_error(404, "ActionNotFoundError");
}

#[tokio::test]
async fn class_action_and_class_property() {
    let env = Env::new().await;
    let r = env
        .post(
            "/servers/batch-echo",
            ALICE,
            json!({"servers": {"x": 1, "someKey": 2}}),
        )
        .await;
    assert_eq!(r.ok(), &json!({"servers": {"x": 1, "some_key": 2}}));
    // The singular key and a bare body are accepted too.
    let r = env
        .post("/servers/batch-echo", ALICE, json!({"server": {"y": 1}}))
        .await;
    assert_eq!(r.ok(), &json!({"servers": {"y": 1}}));
    let r = env
        .post("/servers/batch-echo", ALICE, json!({"z": 1}))
        .await;
    assert_eq!(r.ok(), &json!({"servers": {"z": 1}}));
    env.post("/servers/nothing-here", ALICE, json!({}))
        .await
        .assert_error(404, "ActionNotFoundError");

    let a = env.server(ALICE, "a", json!({})).await;
    env.server(ALICE, "b", json!({})).await;
    env.post(
        &format!("/servers/{a}/status"),
        ADMIN,
        json!({"status": "ready"}),
    )
    .await
    .ok();
    env.server(BOB, "c", json!({})).await;
    let r = env.get("/servers/distinct-field?field=status", ALICE).await;
    assert_eq!(r.ok(), &json!({"status": ["init", "ready"]}));
    let r = env
        .get(
            "/servers/distinct-field?field=tenant_id&scope=system",
            ADMIN,
        )
        .await;
    assert_eq!(r.ok(), &json!({"tenant_id": ["p1", "p2"]}));
    let r = env
        .get("/servers/distinct-field?field=tenant_id", ALICE)
        .await;
    assert_eq!(r.ok(), &json!({"tenant_id": ["p1"]}));
    env.get("/servers/distinct-field", ALICE)
        .await
        .assert_error(400, "MissingParameterError");
    env.get("/servers/distinct-field?field=secret", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    env.get("/servers/distinct-field?field=nope", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    env.get("/servers/distinct-field?field=status&scope=system", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
}

#[tokio::test]
async fn context_list_and_create() {
    let env = Env::new().await;
    let z1 = env
        .post("/zones", ADMIN, json!({"zone": {"name": "z1"}}))
        .await;
    let z1 = z1.ok()["zone"]["id"].as_str().expect("id").to_string();
    env.post("/zones", ADMIN, json!({"zone": {"name": "z2"}}))
        .await
        .ok();

    let r = env
        .post(
            &format!("/zones/{z1}/hosts"),
            ADMIN,
            json!({"host": {"name": "h1"}}),
        )
        .await;
    let h1 = r.ok()["host"].clone();
    assert_eq!(h1["zone_id"], json!(z1));
    // By zone name; the path's zone wins over a zone_id in the body.
    let r = env
        .post(
            "/zones/z2/hosts",
            ADMIN,
            json!({"host": {"name": "h2", "zone_id": z1}}),
        )
        .await;
    assert_ne!(r.ok()["host"]["zone_id"], json!(z1));
    env.post("/hosts", ADMIN, json!({"host": {"name": "h3"}}))
        .await
        .ok();

    let r = env.get(&format!("/zones/{z1}/hosts"), ADMIN).await;
    assert_eq!(names(r.ok(), "hosts"), ["h1"]);
    assert_eq!(r.ok()["total"], json!(1));
    let r = env.get("/zones/z2/hosts", ADMIN).await;
    assert_eq!(names(r.ok(), "hosts"), ["h2"]);
    let r = env.get("/hosts", ADMIN).await;
    assert_eq!(names(r.ok(), "hosts"), ["h1", "h2", "h3"]);

    let r = env.get("/zones/z1/hosts/h1", ADMIN).await;
    assert_eq!(r.ok()["host"]["id"], h1["id"]);
    // A host of another zone is not found under this one.
    env.get("/zones/z1/hosts/h2", ADMIN)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.get("/zones/nozone/hosts", ADMIN)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.post(
        "/zones/nozone/hosts",
        ADMIN,
        json!({"host": {"name": "h9"}}),
    )
    .await
    .assert_error(404, "ResourceNotFoundError");
    let r = env
        .call(
            "PUT",
            "/zones/z1/hosts/h1",
            Some(ADMIN),
            Some(json!({"description": "d"})),
        )
        .await;
    assert_eq!(r.ok()["host"]["description"], json!("d"));
    env.call("DELETE", "/zones/z1/hosts", Some(ADMIN), None)
        .await
        .assert_error(405, "MethodNotAllowed");
    let r = env
        .call("DELETE", "/zones/z1/hosts/h1", Some(ADMIN), None)
        .await;
    assert_eq!(r.ok()["host"]["deleted"], json!(true));
    assert_eq!(
        env.get("/zones/z1/hosts", ADMIN).await.ok(),
        &json!({"hosts": []})
    );
}

#[tokio::test]
async fn joint_routes() {
    let env = Env::new().await;
    let sid = env.server(ALICE, "vm", json!({})).await;
    let d1 = env
        .post(
            "/disks",
            ALICE,
            json!({"disk": {"name": "d1", "disk_size": 10}}),
        )
        .await;
    let d1 = d1.ok()["disk"]["id"].as_str().expect("id").to_string();
    env.post("/disks", ALICE, json!({"disk": {"name": "d2"}}))
        .await
        .ok();

    assert_eq!(
        env.get("/guestdisks", ALICE).await.ok(),
        &json!({"guestdisks": []})
    );
    // Static segments win: this is the joint list, not spec "disks".
    assert_eq!(
        env.get(&format!("/servers/{sid}/disks"), ALICE).await.ok(),
        &json!({"guestdisks": []})
    );

    let r = env
        .post(
            &format!("/servers/{sid}/disks/{d1}"),
            ALICE,
            json!({"guestdisk": {"index": 1}}),
        )
        .await;
    let j = &r.ok()["guestdisk"];
    assert_eq!(j["guest_id"], json!(sid));
    assert_eq!(j["disk_id"], json!(d1));
    assert_eq!(j["index"], json!(1));
    assert_eq!(j["guest"], json!("vm"));
    // Reversed order, by names.
    let r = env.post("/disks/d2/servers/vm", ALICE, json!({})).await;
    assert_eq!(r.ok()["guestdisk"]["guest_id"], json!(sid));
    env.post("/disks/d2/servers/vm", ALICE, json!({}))
        .await
        .assert_error(409, "ConflictError");

    let r = env.get("/guestdisks", ALICE).await;
    assert_eq!(r.ok()["guestdisks"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.ok()["total"], json!(2));
    let r = env.get("/servers/vm/disks", ALICE).await;
    assert_eq!(r.ok()["guestdisks"].as_array().map(Vec::len), Some(2));
    let r = env.get(&format!("/disks/{d1}/servers"), ALICE).await;
    let rows = r.ok()["guestdisks"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["guest_id"], json!(sid));
    let r = env
        .get("/guestdisks?disk_id=".to_string().as_str(), ALICE)
        .await;
    assert_eq!(r.ok()["guestdisks"].as_array().map(Vec::len), Some(2));
    let r = env.get(&format!("/guestdisks?disk_id={d1}"), ALICE).await;
    assert_eq!(r.ok()["guestdisks"].as_array().map(Vec::len), Some(1));

    let r = env.get(&format!("/servers/{sid}/disks/{d1}"), ALICE).await;
    assert_eq!(r.ok()["guestdisk"]["index"], json!(1));
    let r = env.get(&format!("/disks/{d1}/servers/{sid}"), ALICE).await;
    assert_eq!(r.ok()["guestdisk"]["disk_id"], json!(d1));
    let r = env
        .call(
            "PUT",
            &format!("/servers/{sid}/disks/{d1}"),
            Some(ALICE),
            Some(json!({"guestdisk": {"index": 5}})),
        )
        .await;
    assert_eq!(r.ok()["guestdisk"]["index"], json!(5));
    env.call(
        "PUT",
        &format!("/servers/{sid}/disks/{d1}"),
        Some(ALICE),
        Some(json!({"bogus": 5})),
    )
    .await
    .assert_error(400, "InputParameterError");

    let r = env
        .call(
            "DELETE",
            &format!("/servers/{sid}/disks/{d1}"),
            Some(ALICE),
            None,
        )
        .await;
    assert_eq!(r.ok()["guestdisk"]["disk_id"], json!(d1));
    env.get(&format!("/servers/{sid}/disks/{d1}"), ALICE)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.call(
        "DELETE",
        &format!("/servers/{sid}/disks/{d1}"),
        Some(ALICE),
        None,
    )
    .await
    .assert_error(404, "ResourceNotFoundError");
    // Joint lists take no POST.
    env.post(&format!("/servers/{sid}/disks"), ALICE, json!({}))
        .await
        .assert_error(405, "MethodNotAllowed");
    env.post("/guestdisks", ALICE, json!({}))
        .await
        .assert_error(405, "MethodNotAllowed");

    // Another project sees none of it.
    assert_eq!(
        env.get("/guestdisks", BOB).await.ok(),
        &json!({"guestdisks": []})
    );
    env.get(&format!("/servers/{sid}/disks"), BOB)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.post(&format!("/servers/{sid}/disks/d2"), BOB, json!({}))
        .await
        .assert_error(404, "ResourceNotFoundError");
    let r = env.get("/guestdisks?scope=system", ADMIN).await;
    assert_eq!(r.ok()["guestdisks"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn empty_segments_collapse() {
    let env = Env::new().await;
    let id = env.server(ALICE, "c1", json!({})).await;
    for uri in ["//servers", "/servers/", "//servers//", "/servers?"] {
        let r = env.get(uri, ALICE).await;
        assert_eq!(names(r.ok(), "servers"), ["c1"], "{uri}");
    }
    for uri in [
        format!("//servers//{id}"),
        format!("/servers/{id}/"),
        "/servers///c1".into(),
    ] {
        let r = env.get(&uri, ALICE).await;
        assert_eq!(r.ok()["server"]["id"], json!(id), "{uri}");
    }
    let r = env
        .post("//servers/", ALICE, json!({"server": {"name": "c2"}}))
        .await;
    assert_eq!(r.ok()["server"]["name"], json!("c2"));
    // Percent-encoded names are decoded.
    env.server(ALICE, "my vm", json!({})).await;
    let r = env.get("/servers/my%20vm", ALICE).await;
    assert_eq!(r.ok()["server"]["name"], json!("my vm"));
}

#[tokio::test]
async fn head_answers_status_only() {
    let env = Env::new().await;
    let id = env.server(ALICE, "h", json!({})).await;
    let r = env
        .call("HEAD", &format!("/servers/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.raw.is_empty(),
        "HEAD body: {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    assert!(r.header("x-request-id").is_some());
    let r = env.call("HEAD", "/servers/nope", Some(ALICE), None).await;
    assert_eq!(r.status, 404);
    assert!(r.raw.is_empty());
    let r = env.call("HEAD", "/servers", Some(ALICE), None).await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty());
    let r = env.call("HEAD", "/ping", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty());
}

#[tokio::test]
async fn wrong_method_and_unknown_paths() {
    let env = Env::new().await;
    let id = env.server(ALICE, "m", json!({})).await;
    for (method, uri) in [
        ("DELETE", "/servers".to_string()),
        ("PUT", "/servers".to_string()),
        ("PATCH", "/servers".to_string()),
        ("PUT", format!("/servers/{id}/start")),
        ("DELETE", format!("/servers/{id}/status")),
        ("OPTIONS", format!("/servers/{id}")),
        ("PUT", "/guestdisks".to_string()),
        ("DELETE", "/ping".to_string()),
        ("PUT", "/version".to_string()),
        ("POST", "/metrics".to_string()),
    ] {
        let r = env.call(method, &uri, Some(ALICE), None).await;
        r.assert_error(405, "MethodNotAllowed");
    }
    for uri in [
        "/nothing",
        "/nothing/x",
        "/",
        "/servers/a/b/c/d/e",
        "/servers/x/y/z/w",
    ] {
        let r = env.get(uri, ALICE).await;
        assert_eq!(r.status, 404, "{uri}: {}", r.body);
        r.assert_error(404, r.body["class"].as_str().unwrap_or_default());
    }
    // Unknown resources answer 404 before asking for a token.
    env.call("GET", "/nothing", None, None)
        .await
        .assert_error(404, "NotFoundError");
}

#[tokio::test]
async fn url_prefix() {
    let env = Env::with(|mut s| {
        s.prefix = "/v3";
        s
    })
    .await;
    let r = env
        .post("/v3/servers", ALICE, json!({"server": {"name": "pre"}}))
        .await;
    let id = r.ok()["server"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        names(env.get("//v3//servers/", ALICE).await.ok(), "servers"),
        ["pre"]
    );
    env.get(&format!("/v3/servers/{id}/status"), ALICE)
        .await
        .ok();
    env.get("/servers", ALICE)
        .await
        .assert_error(404, "NotFoundError");
    env.get("/v3", ALICE)
        .await
        .assert_error(404, "NotFoundError");
    env.get("/v3/nothing", ALICE)
        .await
        .assert_error(404, "NotFoundError");
    // Default routes are not under the prefix.
    env.call("GET", "/ping", None, None).await.ok();
    env.call("DELETE", "/ping", None, None)
        .await
        .assert_error(405, "MethodNotAllowed");
    let doc = env.call("GET", "/openapi.json", None, None).await;
    assert!(doc.ok()["paths"].get("/v3/servers/{id}").is_some());
}

// ---------------------------------------------------------------------------
// 2. query parsing

async fn five_servers(env: &Env) {
    for i in 1..=5 {
        env.server(
            ALICE,
            &format!("srv{i}"),
            json!({"vcpu_count": i, "hostname": if i % 2 == 0 { "even-host" } else { "odd" }}),
        )
        .await;
    }
}

fn vcpus(v: &Value) -> Vec<i64> {
    v["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|r| r["vcpu_count"].as_i64().unwrap_or(-1))
        .collect()
}

#[tokio::test]
async fn limit_offset_order() {
    let env = Env::new().await;
    five_servers(&env).await;
    let r = env
        .get(
            "/servers?order_by=vcpu_count&order=asc&limit=2&offset=1",
            ALICE,
        )
        .await;
    assert_eq!(vcpus(r.ok()), [2, 3]);
    assert_eq!(r.ok()["total"], json!(5));
    let r = env
        .get("/servers?order_by=vcpu_count&order=DESC", ALICE)
        .await;
    assert_eq!(vcpus(r.ok()), [5, 4, 3, 2, 1]);
    let r = env.get("/servers?order_by.0=name&order=asc", ALICE).await;
    assert_eq!(vcpus(r.ok()), [1, 2, 3, 4, 5]);
    // Default order: newest first.
    let r = env.get("/servers", ALICE).await;
    assert_eq!(vcpus(r.ok()), [5, 4, 3, 2, 1]);
    env.get("/servers?order=sideways", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    env.get("/servers?limit=abc", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    env.get("/servers?offset=-1", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    // Zero / negative limit: default page.
    let r = env.get("/servers?limit=0", ALICE).await;
    assert_eq!(r.ok()["limit"], json!(2048));
    let r = env.get("/servers?limit=-5", ALICE).await;
    assert_eq!(r.ok()["limit"], json!(2048));
    // Capped at 2048.
    let r = env.get("/servers?limit=5000", ALICE).await;
    assert_eq!(r.ok()["limit"], json!(2048));
    let r = env
        .get("/servers?limit=5000&force_no_paging=true", ALICE)
        .await;
    assert_eq!(r.ok()["servers"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn details_and_lenient_booleans() {
    let env = Env::new().await;
    env.server(ALICE, "d", json!({})).await;
    for (q, details) in [
        ("", true),
        ("?details", true),
        ("?details=", true),
        ("?details=True", true),
        ("?details=YES", true),
        ("?details=1", true),
        ("?details=on", true),
        ("?details=off", false),
        ("?details=False", false),
        ("?details=no", false),
        ("?details=0", false),
    ] {
        let r = env.get(&format!("/servers{q}"), ALICE).await;
        let row = &r.ok()["servers"][0];
        assert_eq!(row.get("tenant").is_some(), details, "{q}: {row}");
        assert_eq!(row.get("can_delete").is_some(), details, "{q}");
        assert_eq!(row["tenant_id"], json!("p1"));
    }
    env.get("/servers?details=maybe", ALICE)
        .await
        .assert_error(400, "InputParameterError");
}

#[tokio::test]
async fn search_and_column_filters() {
    let env = Env::new().await;
    five_servers(&env).await;
    env.server(ALICE, "other", json!({"vcpu_count": 9})).await;
    let r = env.get("/servers?search=srv", ALICE).await;
    assert_eq!(r.ok()["total"], json!(5));
    // hostname is a search column too.
    let r = env.get("/servers?search=even", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["srv2", "srv4"]);
    // LIKE metacharacters are literal.
    assert_eq!(
        env.get("/servers?search=%25", ALICE).await.ok(),
        &json!({"servers": []})
    );
    assert_eq!(
        env.get("/servers?search=_", ALICE).await.ok(),
        &json!({"servers": []})
    );
    let r = env.get("/servers?vcpu_count=2&vcpu_count=3", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["srv2", "srv3"]);
    let r = env.get("/servers?name=SRV1", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["srv1"]);
    env.get("/servers?vcpu_count=two", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    // Non-list columns and unknown keys are not filters.
    let r = env.get("/servers?hostname=odd&whatever=1", ALICE).await;
    assert_eq!(r.ok()["total"], json!(6));
}

#[tokio::test]
async fn filters() {
    let env = Env::new().await;
    five_servers(&env).await;
    let cases: &[(&str, &[&str])] = &[
        ("name.equals(srv1)", &["srv1"]),
        ("name.equals('srv1')", &["srv1"]),
        ("name.notequals(srv1)", &["srv2", "srv3", "srv4", "srv5"]),
        ("name.in(srv1,'srv3')", &["srv1", "srv3"]),
        ("name.notin(srv1,srv3)", &["srv2", "srv4", "srv5"]),
        ("vcpu_count.between(2,4)", &["srv2", "srv3", "srv4"]),
        ("vcpu_count.ge(4)", &["srv4", "srv5"]),
        ("vcpu_count.gt(4)", &["srv5"]),
        ("vcpu_count.le(2)", &["srv1", "srv2"]),
        ("vcpu_count.lt(2)", &["srv1"]),
        ("name.contains(rv3)", &["srv3"]),
        (
            "name.startswith(srv)",
            &["srv1", "srv2", "srv3", "srv4", "srv5"],
        ),
        ("name.endswith(5)", &["srv5"]),
        (
            "name.like('srv_')",
            &["srv1", "srv2", "srv3", "srv4", "srv5"],
        ),
        ("hostname.contains(even)", &["srv2", "srv4"]),
        (
            "description.isnull()",
            &["srv1", "srv2", "srv3", "srv4", "srv5"],
        ),
        ("description.isnotnull()", &[]),
        ("status.isempty()", &[]),
        (
            "status.isnotempty()",
            &["srv1", "srv2", "srv3", "srv4", "srv5"],
        ),
        (
            "description.isnullorempty()",
            &["srv1", "srv2", "srv3", "srv4", "srv5"],
        ),
        ("NAME.EQUALS(srv1)", &[]),
    ];
    for (f, want) in cases {
        let uri = format!("/servers?filter={}", urlencode(f));
        let r = env.get(&uri, ALICE).await;
        if *f == "NAME.EQUALS(srv1)" {
            // Field names are case-sensitive: unknown field.
            r.assert_error(400, "InputParameterError");
            continue;
        }
        assert_eq!(names(r.ok(), "servers"), *want, "{f}");
    }
    // Several filters AND; filter_any ORs them.
    let both = format!(
        "/servers?filter={}&filter={}",
        urlencode("vcpu_count.ge(2)"),
        urlencode("vcpu_count.le(3)")
    );
    assert_eq!(
        names(env.get(&both, ALICE).await.ok(), "servers"),
        ["srv2", "srv3"]
    );
    let any = format!(
        "/servers?filter.0={}&filter.1={}&filter_any=true",
        urlencode("name.equals(srv1)"),
        urlencode("name.equals(srv5)")
    );
    assert_eq!(
        names(env.get(&any, ALICE).await.ok(), "servers"),
        ["srv1", "srv5"]
    );
    // filter_any must not widen visibility: Bob's server stays invisible.
    env.server(BOB, "srv9", json!({})).await;
    let any = format!(
        "/servers?filter={}&filter={}&filter_any=1",
        urlencode("name.equals(srv1)"),
        urlencode("name.equals(srv9)")
    );
    assert_eq!(names(env.get(&any, ALICE).await.ok(), "servers"), ["srv1"]);

    for bad in [
        "nofield.equals(x)",
        "secret.equals(x)",
        "name.explode(x)",
        "name.equals(a,b)",
        "vcpu_count.between(1)",
        "name.isnull(x)",
        "vcpu_count.gt(abc)",
        "vcpu_count.in(1,x)",
        "name",
        "name.equals(x",
        "'; DROP TABLE guests_tbl; --",
    ] {
        let r = env
            .get(&format!("/servers?filter={}", urlencode(bad)), ALICE)
            .await;
        r.assert_error(400, "InputParameterError");
    }
}

#[tokio::test]
async fn field_projection_and_scope() {
    let env = Env::new().await;
    let id = env.server(ALICE, "f1", json!({})).await;
    env.server(BOB, "f2", json!({})).await;
    env.server(ADMIN, "f3", json!({})).await;
    let r = env.get("/servers?field=id&field=name", ALICE).await;
    assert_eq!(
        r.ok(),
        &json!({"servers": [{"id": id, "name": "f1"}], "total": 1, "limit": 2048})
    );
    // A detail field can be projected.
    let r = env.get("/servers?field=tenant", ALICE).await;
    assert_eq!(r.ok()["servers"], json!([{"tenant": "proj1"}]));
    env.get("/servers?field=secret", ALICE)
        .await
        .assert_error(400, "InputParameterError");

    // Admin: own project by default, everything at system scope.
    assert_eq!(
        names(env.get("/servers", ADMIN).await.ok(), "servers"),
        ["f3"]
    );
    let r = env.get("/servers?scope=system", ADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["f1", "f2", "f3"]);
    let r = env.get("/servers?admin=true", ADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["f1", "f2", "f3"]);
    let r = env.get("/servers?scope=domain", ADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["f1", "f2", "f3"]);
    env.get("/servers?scope=galaxy", ADMIN)
        .await
        .assert_error(400, "InputParameterError");
    let r = env.get("/servers?project_id=p2", ADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["f2"]);
    let r = env.get("/servers?project=proj1", ADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["f1"]);
    env.get("/servers?project=nosuch", ADMIN)
        .await
        .assert_error(404, "TenantNotFoundError");
}

#[tokio::test]
async fn tags_from_user_metadata() {
    let env = Env::new().await;
    let a = env.server(ALICE, "t1", json!({})).await;
    let b = env.server(ALICE, "t2", json!({})).await;
    env.server(ALICE, "t3", json!({})).await;
    let r = env
        .post(
            &format!("/servers/{a}/user-metadata"),
            ALICE,
            json!({"env": "prod", "Team": "Core"}),
        )
        .await;
    let meta = r.ok()["server"].clone();
    assert_eq!(meta["user:env"], json!("prod"));
    // Tag keys are user data: their case is kept.
    assert_eq!(meta["user:Team"], json!("Core"), "{meta}");
    env.post(
        &format!("/servers/{b}/user-metadata"),
        ALICE,
        json!({"server": {"env": "dev"}}),
    )
    .await
    .ok();

    let r = env
        .get("/servers?tags.0.key=user:env&tags.0.value=prod", ALICE)
        .await;
    assert_eq!(names(r.ok(), "servers"), ["t1"]);
    let r = env.get("/servers?tags.0.key=user:env", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["t1", "t2"]);
    let r = env
        .get(
            "/servers?tags.0.key=user:env&tags.0.value=prod&tags.0.value=dev",
            ALICE,
        )
        .await;
    assert_eq!(names(r.ok(), "servers"), ["t1", "t2"]);
    let r = env.get("/servers?no_tags.0.key=user:env", ALICE).await;
    assert_eq!(names(r.ok(), "servers"), ["t3"]);
    let r = env
        .get("/servers?tags.0.key=user:env&tags.1.key=user:Team", ALICE)
        .await;
    assert_eq!(names(r.ok(), "servers"), ["t1"]);
    env.get("/servers?tags=user:env", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    env.get("/servers?tags.0.value=x", ALICE)
        .await
        .assert_error(400, "InputParameterError");

    // Metadata in details and as a spec.
    let r = env.get("/servers/t1?with_meta=true", ALICE).await;
    assert_eq!(r.ok()["server"]["metadata"]["user:env"], json!("prod"));
    let r = env.get("/servers?with_user_meta=true&name=t1", ALICE).await;
    assert_eq!(r.ok()["servers"][0]["metadata"]["user:env"], json!("prod"));
    let r = env.get("/servers/t1/metadata", ALICE).await;
    assert_eq!(r.ok()["server"]["user:env"], json!("prod"));
    // set-user-metadata replaces all user tags.
    env.post(
        &format!("/servers/{a}/set-user-metadata"),
        ALICE,
        json!({"x": "1"}),
    )
    .await
    .ok();
    let r = env.get("/servers/t1/metadata", ALICE).await;
    assert_eq!(r.ok()["server"], json!({"user:x": "1"}));
    // Deleting the object clears its metadata.
    env.call("DELETE", "/servers/t1", Some(ALICE), None)
        .await
        .ok();
    env.call("DELETE", "/servers/t2", Some(ALICE), None)
        .await
        .ok();
    assert_eq!(env.count("metadata_tbl").await, 0);
}

#[tokio::test]
async fn marker_paging_covers_every_row_once() {
    let env = Env::new().await;
    for i in 0..11 {
        env.server(ALICE, &format!("m{i}"), json!({})).await;
    }
    env.server(BOB, "bobs", json!({})).await;
    for order in ["", "&paging_order=asc", "&paging_order=DESC"] {
        let mut seen = Vec::new();
        let mut marker = String::new();
        let mut pages = 0;
        loop {
            let r = env
                .get(
                    &format!("/servers?limit=3&paging_marker={marker}{order}"),
                    ALICE,
                )
                .await;
            let v = r.ok().clone();
            pages += 1;
            assert!(pages < 10, "marker paging does not end");
            assert_eq!(v["marker_field"], json!("id"));
            assert_eq!(v["limit"], json!(3));
            for s in v["servers"].as_array().expect("servers") {
                seen.push(s["name"].as_str().unwrap_or_default().to_string());
            }
            match v.get("next_marker").and_then(Value::as_str) {
                Some(m) => marker = m.to_string(),
                None => break,
            }
        }
        assert_eq!(pages, 4, "{order}");
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "duplicates {order}");
        assert_eq!(n, 11, "{order}");
        assert!(!seen.contains(&"bobs".to_string()));
    }
    env.get("/servers?paging_marker=&paging_order=up", ALICE)
        .await
        .assert_error(400, "InputParameterError");
    // Huge limits do not overflow the SQL LIMIT.
    let r = env
        .get(
            "/servers?paging_marker=&limit=9223372036854775807&force_no_paging=1",
            ALICE,
        )
        .await;
    assert_eq!(r.ok()["servers"].as_array().map(Vec::len), Some(11));
}

// ---------------------------------------------------------------------------
// 3. errors

#[tokio::test]
async fn request_id_on_every_answer() {
    let env = Env::new().await;
    for (method, uri, token) in [
        ("GET", "/servers", Some(ALICE)),
        ("GET", "/servers", None),
        ("GET", "/nothing", None),
        ("DELETE", "/servers", Some(ALICE)),
        ("GET", "/ping", None),
        ("GET", "/version", None),
        ("GET", "/openapi.json", None),
    ] {
        let r = env.call(method, uri, token, None).await;
        let id = r.header("x-request-id").expect("request id");
        assert!(!id.is_empty());
        let r = env
            .raw(method, uri, token, None, &[("x-request-id", "my-req-42")])
            .await;
        assert_eq!(
            r.header("x-request-id"),
            Some("my-req-42"),
            "{method} {uri}"
        );
    }
    // Ids are per request.
    let a = env.get("/servers", ALICE).await;
    let b = env.get("/servers", ALICE).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn malformed_bodies() {
    let env = Env::new().await;
    let id = env.server(ALICE, "b", json!({})).await;
    let targets = [
        ("POST", "/servers".to_string()),
        ("PUT", format!("/servers/{id}")),
        ("PATCH", format!("/servers/{id}")),
        ("POST", format!("/servers/{id}/echo")),
        ("POST", "/servers/batch-echo".to_string()),
        ("DELETE", format!("/servers/{id}")),
        ("POST", "/zones/z/hosts".to_string()),
        ("POST", format!("/servers/{id}/disks/x")),
    ];
    let before = env.fingerprint().await;
    for (method, uri) in &targets {
        for body in [
            &b"{"[..],
            b"{\"server\": }",
            b"not json",
            b"\xff\xfe",
            b"{\"a\":1}{",
            b"[1,2]",
            b"\"str\"",
            b"42",
            b"true",
            b"null",
            b"{\"server\": [1]}",
            b"{\"server\": \"x\"}",
            b"{\"server\": 5}",
        ] {
            let r = env
                .raw(
                    method,
                    uri,
                    Some(ALICE),
                    Some(body.to_vec()),
                    &[("content-type", "application/json")],
                )
                .await;
            assert!(
                (400..500).contains(&r.status),
                "{method} {uri} {:?}: {} {}",
                String::from_utf8_lossy(body),
                r.status,
                r.body
            );
            r.assert_error(r.status, r.body["class"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(env.fingerprint().await, before);
    let r = env
        .raw(
            "POST",
            "/servers",
            Some(ALICE),
            Some(b"{".to_vec()),
            &[("content-type", "application/json")],
        )
        .await;
    r.assert_error(400, "InputParameterError");
    assert!(r.details().contains("invalid JSON"), "{}", r.details());
}

#[tokio::test]
async fn wrong_types_unknown_fields_long_strings() {
    let env = Env::new().await;
    let id = env.server(ALICE, "w", json!({})).await;
    let before = env.fingerprint().await;
    let long = "x".repeat(300);
    let bad_inputs = [
        json!({"name": "a", "vcpu_count": "abc"}),
        json!({"name": "a", "vcpu_count": 1.5}),
        json!({"name": "a", "vcpu_count": true}),
        json!({"name": "a", "vcpu_count": [1]}),
        json!({"name": "a", "vcpu_count": {"n": 1}}),
        json!({"name": "a", "vcpu_count": 4_294_967_296_i64}),
        json!({"name": "a", "vcpu_count": 1e300}),
        json!({"name": "a", "bogus_field": 1}),
        json!({"name": "a", "description": long}),
        json!({"name": "a", "hostname": "h".repeat(61)}),
        json!({"name": "n".repeat(129)}),
        json!({"name": ["a"]}),
        json!({"name": {"a": 1}}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "a'b"}),
        json!({"name": "a;b"}),
        json!({"name": "a\nb"}),
        json!({"name": " lead"}),
        json!({"name": "x/y"}),
        json!({"vcpu_count": 1}),
        json!({"name": "a", "dry_run": "perhaps"}),
        json!({"name": "a", "secret": ["x"]}),
    ];
    for input in &bad_inputs {
        let r = env.post("/servers", ALICE, json!({"server": input})).await;
        assert!(r.status == 400, "create {input}: {} {}", r.status, r.body);
        r.assert_error(400, r.body["class"].as_str().unwrap_or_default());
    }
    for upd in [
        json!({"vcpu_count": "abc"}),
        json!({"vcpu_count": 1.5}),
        json!({"vcpu_count": true}),
        json!({"vcpu_count": [1]}),
        json!({"vcpu_count": {"n": 1}}),
        json!({"vcpu_count": 4_294_967_296_i64}),
        json!({"server": {"vcpu_count": 1e300}}),
        json!({"server": {"bogus": 1}}),
        json!({"name": "n".repeat(129)}),
        json!({"name": "bad'name"}),
        json!({"name": ""}),
        json!({"description": long}),
        json!({"nope": 1}),
        json!({"vcpu_count": "x"}),
    ] {
        env.call("PATCH", &format!("/servers/{id}"), Some(ALICE), Some(upd))
            .await
            .assert_error(400, "InputParameterError");
    }
    assert_eq!(env.fingerprint().await, before);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let env = Env::new().await;
    let id = env.server(ALICE, "big", json!({})).await;
    let before = env.fingerprint().await;
    let limit = cloudpods_rest::service::DEFAULT_BODY_LIMIT;
    let big = format!(
        "{{\"server\":{{\"name\":\"big2\",\"description\":\"{}\"}}}}",
        "x".repeat(limit)
    );
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
                Some(big.clone().into_bytes()),
                &[("content-type", "application/json")],
            )
            .await;
        r.assert_error(413, "TooLargeEntity");
    }
    assert_eq!(env.fingerprint().await, before);

    // A configured smaller limit applies; a body just under it passes.
    let env = Env::with(|s| s.with_body_limit(256)).await;
    let ok = json!({"server": {"name": "small", "description": "d".repeat(100)}});
    env.post("/servers", ALICE, ok).await.ok();
    let too_big = json!({"server": {"name": "small2", "description": "d".repeat(250)}});
    env.post("/servers", ALICE, too_big)
        .await
        .assert_error(413, "TooLargeEntity");
}

#[tokio::test]
async fn order_by_refuses_unknown_and_sql() {
    let env = Env::new().await;
    five_servers(&env).await;
    for bad in [
        "name;DROP TABLE guests_tbl",
        "name desc",
        "`name`",
        "1",
        "(select 1)",
        "secret",
        "name--",
        "nosuch",
    ] {
        env.get(&format!("/servers?order_by={}", urlencode(bad)), ALICE)
            .await
            .assert_error(400, "InputParameterError");
    }
    for bad in ["asc;", "desc--", "asc, name"] {
        env.get(
            &format!("/servers?order_by=name&order={}", urlencode(bad)),
            ALICE,
        )
        .await
        .assert_error(400, "InputParameterError");
    }
    assert_eq!(env.count("guests_tbl").await, 5);
}

const SQL_BITS: &[&str] = &[
    "'",
    "\"",
    "`",
    "' OR '1'='1",
    "\" OR \"1\"=\"1",
    "x' OR 1=1 --",
    "1; DROP TABLE guests_tbl; --",
    "') OR ('a'='a",
    "%",
    "_",
    "\\",
    "\\'",
    "' UNION SELECT secret FROM guests_tbl --",
    "\u{0}",
    "名前",
    "*/",
];

#[tokio::test]
async fn sql_metacharacters_everywhere() {
    let env = Env::new().await;
    five_servers(&env).await;
    let sid = env
        .server(BOB, "bobsrv", json!({"secret": "hunter2"}))
        .await;
    let before = env.fingerprint().await;
    for bit in SQL_BITS {
        let e = urlencode(bit);
        let read_uris = [
            format!("/servers/{e}"),
            format!("/servers/{e}/status"),
            format!("/servers/{e}/disks"),
            format!("/servers/{e}/disks/{e}"),
            format!("/zones/{e}/hosts"),
            format!("/servers?search={e}"),
            format!("/servers?name={e}"),
            format!("/servers?id={e}"),
            format!("/servers?status={e}&status={e}"),
            format!("/servers?filter=name.equals({e})"),
            format!("/servers?filter=name.in({e},{e})"),
            format!("/servers?filter=name.contains({e})"),
            format!("/servers?filter=name.like({e})"),
            format!("/servers?filter={e}"),
            format!("/servers?order_by={e}"),
            format!("/servers?order={e}"),
            format!("/servers?field={e}"),
            format!("/servers?scope={e}"),
            format!("/servers?project_id={e}"),
            format!("/servers?domain_id={e}"),
            format!("/servers?paging_marker={e}"),
            format!("/servers?tags.0.key={e}&tags.0.value={e}"),
            format!("/servers/distinct-field?field={e}"),
            format!("/guestdisks?guest_id={e}"),
            format!("/{e}"),
        ];
        for uri in &read_uris {
            let r = env.get(uri, ALICE).await;
            assert!(r.status < 500, "{uri}: {} {}", r.status, r.body);
            if r.status == 200 {
                // Never a row of another project, never the secret.
                let text = String::from_utf8_lossy(&r.raw);
                assert!(
                    !text.contains("bobsrv") && !text.contains("hunter2"),
                    "{uri}: {text}"
                );
            } else {
                r.assert_error(r.status, r.body["class"].as_str().unwrap_or_default());
            }
        }
        // Writes with metacharacters in names, ids and actions: refused,
        // or (for free-text columns) stored verbatim — never interpreted.
        for (method, uri, body) in [
            (
                "POST",
                "/servers".to_string(),
                json!({"server": {"name": "ok", "project_id": bit}}),
            ),
            (
                "POST",
                "/servers".to_string(),
                json!({"server": {"name": "ok", "vcpu_count": bit}}),
            ),
            (
                "POST",
                "/servers".to_string(),
                json!({"server": {"name": "ok", (*bit): 1}}),
            ),
            ("PUT", format!("/servers/{e}"), json!({"name": "x"})),
            ("PUT", format!("/servers/{sid}"), json!({"name": bit})),
            ("DELETE", format!("/servers/{e}"), json!({})),
            ("POST", format!("/servers/{e}/start"), json!({})),
            ("POST", format!("/servers/srv1/{e}"), json!({})),
            ("POST", format!("/servers/{e}"), json!({})),
            (
                "POST",
                format!("/zones/{e}/hosts"),
                json!({"host": {"name": "h"}}),
            ),
            ("POST", format!("/servers/{e}/disks/{e}"), json!({})),
        ] {
            let r = env
                .call(method, &uri, Some(ALICE), Some(body.clone()))
                .await;
            assert!(
                (400..500).contains(&r.status),
                "{method} {uri} {body}: {} {}",
                r.status,
                r.body
            );
        }
    }
    assert_eq!(env.fingerprint().await, before);

    // Free-text columns keep metacharacters verbatim.
    for (i, bit) in SQL_BITS.iter().enumerate() {
        let id = env
            .server(
                ALICE,
                &format!("txt{i}"),
                json!({"description": bit, "hostname": bit}),
            )
            .await;
        let r = env.get(&format!("/servers/{id}"), ALICE).await;
        assert_eq!(r.ok()["server"]["description"], json!(bit));
        let r = env
            .get(
                &format!(
                    "/servers?filter=description.equals('{}')",
                    urlencode(&bit.replace('\\', "\\\\").replace('\'', "\\'"))
                ),
                ALICE,
            )
            .await;
        assert!(
            names(r.ok(), "servers").contains(&format!("txt{i}")),
            "{bit}: {}",
            r.body
        );
        let r = env
            .get(&format!("/servers?search={}", urlencode(bit)), ALICE)
            .await;
        assert!(
            names(r.ok(), "servers").contains(&format!("txt{i}")),
            "{bit}: {}",
            r.body
        );
    }
    assert_eq!(env.count("guests_tbl").await, 6 + SQL_BITS.len() as i64);

    // Names: quoting characters are refused, the rest stored verbatim.
    let mut created = 0;
    for bit in SQL_BITS {
        let r = env
            .post("/servers", ALICE, json!({"server": {"name": bit}}))
            .await;
        if r.status == 200 {
            created += 1;
            assert_eq!(r.body["server"]["name"], json!(bit));
            let got = env
                .get(&format!("/servers/{}", urlencode(bit)), ALICE)
                .await;
            assert_eq!(got.ok()["server"]["name"], json!(bit));
        } else {
            r.assert_error(400, "InputParameterError");
        }
    }
    assert_eq!(created, 3, "%, _ and 名前 are valid names");
    assert_eq!(
        env.count("guests_tbl").await,
        6 + SQL_BITS.len() as i64 + created
    );
}

// ---------------------------------------------------------------------------
// 4. authorization

#[tokio::test]
async fn tokens_are_required() {
    let env = Env::new().await;
    let id = env.server(ALICE, "a", json!({})).await;
    for (method, uri) in [
        ("GET", "/servers".to_string()),
        ("GET", format!("/servers/{id}")),
        ("POST", "/servers".to_string()),
        ("PUT", format!("/servers/{id}")),
        ("DELETE", format!("/servers/{id}")),
        ("POST", format!("/servers/{id}/start")),
        ("GET", format!("/servers/{id}/status")),
        ("GET", "/guestdisks".to_string()),
        ("GET", "/zones/z/hosts".to_string()),
        ("GET", "/servers/distinct-field?field=status".to_string()),
    ] {
        let r = env
            .call(method, &uri, None, Some(json!({"server": {"name": "x"}})))
            .await;
        r.assert_error(401, "UnauthorizedError");
        assert_eq!(r.details(), "Unauthorized");
        let r = env
            .call(
                method,
                &uri,
                Some("forged"),
                Some(json!({"server": {"name": "x"}})),
            )
            .await;
        r.assert_error(401, "InvalidToken");
        assert_eq!(r.details(), "InvalidToken");
        // Empty tokens are missing tokens; Bearer works too.
        let r = env
            .raw(method, &uri, None, None, &[("x-auth-token", " ")])
            .await;
        r.assert_error(401, "UnauthorizedError");
    }
    let r = env
        .raw(
            "GET",
            "/servers",
            None,
            None,
            &[("authorization", &format!("Bearer {ALICE}"))],
        )
        .await;
    assert_eq!(names(r.ok(), "servers"), ["a"]);
    assert_eq!(env.count("guests_tbl").await, 1);
}

#[tokio::test]
async fn projects_are_isolated() {
    let env = Env::new().await;
    let mine = env.server(ALICE, "mine", json!({})).await;
    let theirs = env.server(BOB, "theirs", json!({})).await;
    assert_eq!(
        names(env.get("/servers", ALICE).await.ok(), "servers"),
        ["mine"]
    );
    assert_eq!(
        names(env.get("/servers", BOB).await.ok(), "servers"),
        ["theirs"]
    );
    // Ownership filters cannot reach another project's rows either.
    assert_eq!(
        env.get(&format!("/servers?id={theirs}"), ALICE).await.ok(),
        &json!({"servers": []})
    );
    let f = format!("/servers?filter={}", urlencode("tenant_id.equals(p2)"));
    assert_eq!(env.get(&f, ALICE).await.ok(), &json!({"servers": []}));

    let before = env.fingerprint().await;
    for ident in [theirs.as_str(), "theirs"] {
        for (method, uri, body) in [
            ("GET", format!("/servers/{ident}"), None),
            ("HEAD", format!("/servers/{ident}"), None),
            ("GET", format!("/servers/{ident}/status"), None),
            ("GET", format!("/servers/{ident}/metadata"), None),
            (
                "PUT",
                format!("/servers/{ident}"),
                Some(json!({"name": "pwned"})),
            ),
            (
                "PATCH",
                format!("/servers/{ident}"),
                Some(json!({"vcpu_count": 1})),
            ),
            ("DELETE", format!("/servers/{ident}"), None),
            ("POST", format!("/servers/{ident}/start"), Some(json!({}))),
            ("POST", format!("/servers/{ident}/echo"), Some(json!({}))),
            (
                "POST",
                format!("/servers/{ident}/user-metadata"),
                Some(json!({"a": "b"})),
            ),
            (
                "POST",
                format!("/servers/{ident}/change-owner"),
                Some(json!({"project_id": "p1"})),
            ),
            ("GET", format!("/servers/{ident}/disks"), None),
        ] {
            let r = env.call(method, &uri, Some(ALICE), body).await;
            assert_eq!(r.status, 404, "{method} {uri}: {}", r.body);
            if method != "HEAD" {
                r.assert_error(404, "ResourceNotFoundError");
                // The answer does not tell the object exists.
                assert!(!r.details().contains("not allowed"), "{}", r.details());
            }
        }
    }
    assert_eq!(env.fingerprint().await, before);
    // The owner still can.
    env.get(&format!("/servers/{mine}"), ALICE).await.ok();

    // Scope and project filters beyond the grant are refused.
    env.get("/servers?scope=system", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
    env.get("/servers?scope=domain", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
    env.get("/servers?admin=True", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
    env.get("/servers?project_id=p2", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
    env.get("/servers?tenant=proj2", ALICE)
        .await
        .assert_error(403, "ForbiddenError");
    // Naming one's own project is fine.
    assert_eq!(
        names(
            env.get("/servers?project_id=p1", ALICE).await.ok(),
            "servers"
        ),
        ["mine"]
    );
    // Creating into another project is refused.
    env.post(
        "/servers",
        ALICE,
        json!({"server": {"name": "x", "project_id": "p2"}}),
    )
    .await
    .assert_error(403, "ForbiddenError");
    assert_eq!(env.count("guests_tbl").await, 2);

    // The admin sees everything at system scope.
    let r = env.get("/servers?scope=system", ADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["mine", "theirs"]);
    env.get(&format!("/servers/{theirs}"), ADMIN).await.ok();
}

#[tokio::test]
async fn admin_creates_into_another_project() {
    let env = Env::new().await;
    let r = env
        .post(
            "/servers",
            ADMIN,
            json!({"server": {"name": "forbob", "project_id": "p2"}}),
        )
        .await;
    let s = &r.ok()["server"];
    assert_eq!(s["tenant_id"], json!("p2"));
    assert_eq!(s["tenant"], json!("proj2"));
    assert_eq!(s["domain_id"], json!("default"));
    let r = env
        .post(
            "/servers",
            ADMIN,
            json!({"server": {"name": "ford2", "project": "proj3"}}),
        )
        .await;
    assert_eq!(r.ok()["server"]["domain_id"], json!("d2"));
    let r = env
        .post(
            "/servers",
            ADMIN,
            json!({"server": {"name": "x", "project": "proj1", "project_domain": "Default"}}),
        )
        .await;
    assert_eq!(r.ok()["server"]["tenant_id"], json!("p1"));
    env.post(
        "/servers",
        ADMIN,
        json!({"server": {"name": "x", "project_id": "nosuch"}}),
    )
    .await
    .assert_error(404, "TenantNotFoundError");
    assert_eq!(
        names(env.get("/servers", BOB).await.ok(), "servers"),
        ["forbob"]
    );
    // change-owner moves it.
    let r = env
        .post(
            "/servers/forbob/change-owner",
            ADMIN,
            json!({"project_id": "p1"}),
        )
        .await;
    assert_eq!(r.ok()["server"]["tenant_id"], json!("p1"));
    assert_eq!(env.get("/servers", BOB).await.ok(), &json!({"servers": []}));
}

#[tokio::test]
async fn domain_admin_sees_its_domain() {
    let env = Env::new().await;
    env.server(ALICE, "in-default", json!({})).await;
    env.post(
        "/servers",
        ADMIN,
        json!({"server": {"name": "in-d2", "project_id": "p3"}}),
    )
    .await
    .ok();
    let r = env.get("/servers", DADMIN).await;
    assert_eq!(names(r.ok(), "servers"), ["in-d2"]);
    env.get("/servers/in-default", DADMIN)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.get("/servers?scope=system", DADMIN)
        .await
        .assert_error(403, "ForbiddenError");
    env.get("/servers?project_id=p1", DADMIN)
        .await
        .assert_error(403, "ForbiddenError");
    // A domain token has no project: creating needs one.
    env.post("/servers", DADMIN, json!({"server": {"name": "x"}}))
        .await
        .assert_error(403, "NoProjectError");
    let r = env
        .post(
            "/servers",
            DADMIN,
            json!({"server": {"name": "x", "project_id": "p3"}}),
        )
        .await;
    assert_eq!(r.ok()["server"]["tenant_id"], json!("p3"));
    env.post(
        "/servers",
        DADMIN,
        json!({"server": {"name": "y", "project_id": "p1"}}),
    )
    .await
    .assert_error(403, "ForbiddenError");
    let r = env
        .call(
            "PUT",
            "/servers/in-d2",
            Some(DADMIN),
            Some(json!({"vcpu_count": 2})),
        )
        .await;
    assert_eq!(r.ok()["server"]["vcpu_count"], json!(2));
    // Domain-owned zones.
    env.post("/zones", DADMIN, json!({"zone": {"name": "dz"}}))
        .await
        .ok();
    env.post("/zones", ADMIN, json!({"zone": {"name": "sz"}}))
        .await
        .ok();
    assert_eq!(names(env.get("/zones", DADMIN).await.ok(), "zones"), ["dz"]);
    let r = env.get("/zones?scope=system", ADMIN).await;
    assert_eq!(names(r.ok(), "zones"), ["dz", "sz"]);
    let r = env.get("/zones?scope=system&name=dz", ADMIN).await;
    assert_eq!(r.ok()["zones"][0]["domain"], json!("other"));
    assert_eq!(r.ok()["zones"][0]["domain_id"], json!("d2"));
}

#[tokio::test]
async fn denied_action_is_forbidden_but_reads_work() {
    let env = Env::new().await;
    let id = env.server(ALICE, "ns", json!({})).await;
    env.post(
        &format!("/servers/{id}/status"),
        ADMIN,
        json!({"status": "ready"}),
    )
    .await
    .ok();
    let r = env
        .post(&format!("/servers/{id}/start"), NOSTART, json!({}))
        .await;
    r.assert_error(403, "ForbiddenError");
    assert_eq!(
        env.get("/servers/ns", NOSTART).await.ok()["server"]["status"],
        json!("ready")
    );
    assert_eq!(
        names(env.get("/servers", NOSTART).await.ok(), "servers"),
        ["ns"]
    );
    // Other actions are fine.
    env.post(&format!("/servers/{id}/echo"), NOSTART, json!({}))
        .await
        .ok();
    // Alice (same project) may start it.
    let r = env
        .post(&format!("/servers/{id}/start"), ALICE, json!({}))
        .await;
    assert_eq!(r.ok()["server"]["status"], json!("running"));
}

#[tokio::test]
async fn denied_spec_is_forbidden_when_visible() {
    let env = Env::new().await;
    let id = env.server(ALICE, "v", json!({})).await;
    let theirs = env.server(BOB, "bv", json!({})).await;
    env.get(&format!("/servers/{id}/vnc"), ALICE).await.ok();
    env.get(&format!("/servers/{id}/vnc"), NOVNC)
        .await
        .assert_error(403, "ForbiddenError");
    env.get(&format!("/servers/{id}/status"), NOVNC).await.ok();
    env.get(&format!("/servers/{id}"), NOVNC).await.ok();
    // Invisible objects stay 404.
    env.get(&format!("/servers/{theirs}/vnc"), NOVNC)
        .await
        .assert_error(404, "ResourceNotFoundError");
    env.get("/servers/nothing/vnc", NOVNC)
        .await
        .assert_error(404, "ResourceNotFoundError");
}

#[tokio::test]
async fn read_only_role() {
    let env = Env::new().await;
    let id = env.server(ALICE, "ro", json!({})).await;
    let before = env.fingerprint().await;
    assert_eq!(
        names(env.get("/servers", READER).await.ok(), "servers"),
        ["ro"]
    );
    env.get(&format!("/servers/{id}"), READER).await.ok();
    env.get(&format!("/servers/{id}/status"), READER).await.ok();
    env.get(&format!("/servers/{id}/disks"), READER).await.ok();
    env.post("/servers", READER, json!({"server": {"name": "x"}}))
        .await
        .assert_error(403, "ForbiddenError");
    for (method, uri) in [
        ("PUT", format!("/servers/{id}")),
        ("DELETE", format!("/servers/{id}")),
        ("POST", format!("/servers/{id}/echo")),
        ("POST", format!("/servers/{id}/user-metadata")),
        ("POST", "/servers/batch-echo".to_string()),
        ("POST", format!("/servers/{id}/disks/nodisk")),
    ] {
        env.call(
            method,
            &uri,
            Some(READER),
            Some(json!({"description": "x"})),
        )
        .await
        .assert_error(403, "ForbiddenError");
    }
    assert_eq!(env.fingerprint().await, before);
}

#[tokio::test]
async fn a_panicking_hook_answers_500() {
    let env = Env::new().await;
    let id = env.server(ALICE, "boom", json!({})).await;
    let r = env
        .raw(
            "POST",
            &format!("/servers/{id}/boom"),
            Some(ALICE),
            None,
            &[("x-request-id", "rq-boom")],
        )
        .await;
    r.assert_error(500, "InternalServerError");
    assert_eq!(r.header("x-request-id"), Some("rq-boom"));
    // Nothing of the panic message reaches the client.
    assert!(!r.details().contains("model hook"), "{}", r.details());
    // The service keeps answering.
    env.get(&format!("/servers/{id}"), ALICE).await.ok();
}

#[tokio::test]
async fn secrets_never_leave() {
    let env = Env::new().await;
    let mut bodies: Vec<Value> = Vec::new();
    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "sec", "secret": "hunter2"}}),
        )
        .await;
    bodies.push(r.ok().clone());
    let id = r.ok()["server"]["id"].as_str().expect("id").to_string();
    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "secb", "secret": "hunter2"}, "count": 2}),
        )
        .await;
    bodies.push(r.ok().clone());
    let r = env
        .post(
            "/servers",
            ALICE,
            json!({"server": {"name": "dry", "secret": "hunter2", "dry_run": true}}),
        )
        .await;
    bodies.push(r.ok().clone());
    bodies.push(env.get("/servers", ALICE).await.ok().clone());
    bodies.push(env.get("/servers?details=false", ALICE).await.ok().clone());
    bodies.push(env.get("/servers?paging_marker=", ALICE).await.ok().clone());
    bodies.push(env.get(&format!("/servers/{id}"), ALICE).await.ok().clone());
    bodies.push(
        env.get(&format!("/servers/{id}/status"), ALICE)
            .await
            .ok()
            .clone(),
    );
    let r = env
        .call(
            "PUT",
            &format!("/servers/{id}"),
            Some(ALICE),
            Some(json!({"vcpu_count": 2})),
        )
        .await;
    bodies.push(r.ok().clone());
    let r = env
        .post(
            &format!("/servers/{id}/status"),
            ADMIN,
            json!({"status": "ready"}),
        )
        .await;
    bodies.push(r.ok().clone());
    let r = env
        .post(&format!("/servers/{id}/start"), ALICE, json!({}))
        .await;
    bodies.push(r.ok().clone());
    let r = env
        .post(
            &format!("/servers/{id}/user-metadata"),
            ALICE,
            json!({"k": "v"}),
        )
        .await;
    bodies.push(r.ok().clone());
    let r = env
        .call("DELETE", &format!("/servers/{id}"), Some(ALICE), None)
        .await;
    bodies.push(r.ok().clone());
    for b in &bodies {
        let mut keys = Vec::new();
        all_keys(b, &mut keys);
        assert!(!keys.iter().any(|k| k == "secret"), "secret key in {b}");
        assert!(!b.to_string().contains("hunter2"), "secret value in {b}");
    }
    // It was stored, though.
    let mut q = cloudpods_db::Sql::new("SELECT COUNT(*) FROM `guests_tbl` WHERE `secret` = ");
    q.bind("hunter2");
    let n = cloudpods_db::crud::fetch_i64(env.db.read(), &q)
        .await
        .expect("count");
    assert_eq!(n, 3);
    // And the secret is not a filter, order or search oracle.
    env.get("/servers?secret=hunter2", ALICE).await.ok();
    assert_eq!(
        names(
            env.get("/servers?secret=nomatch", ALICE).await.ok(),
            "servers"
        )
        .len(),
        2
    );
}

// ---------------------------------------------------------------------------
// 6. default routes

#[tokio::test]
async fn openapi_metrics_version_ping() {
    let env = Env::new().await;
    env.server(ALICE, "x", json!({})).await;
    env.get("/servers", ALICE).await.ok();
    env.get("/nothing", ALICE).await;

    let r = env.call("GET", "/openapi.json", None, None).await;
    let doc = r.ok();
    assert_eq!(doc["openapi"], json!("3.0.3"));
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/servers",
        "/servers/{id}",
        "/servers/{id}/{action}",
        "/zones",
        "/hosts",
        "/zones/{ctx_id}/hosts",
        "/disks",
        "/guestdisks",
        "/servers/{id}/disks",
        "/servers/{id}/disks/{sid}",
        "/ping",
        "/version",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    let err = &doc["components"]["schemas"]["Error"];
    for k in ["code", "class", "details", "time"] {
        assert!(err["properties"].get(k).is_some(), "error schema lacks {k}");
    }
    let server = &doc["components"]["schemas"]["Server"]["properties"];
    assert!(server.get("vcpu_count").is_some());
    assert!(server.get("secret").is_none(), "secret in schema");
    // Every path parameter in a template is declared.
    for (p, item) in paths {
        let mut declared: Vec<String> = Vec::new();
        let mut collect = |v: &Value| {
            for prm in v["parameters"].as_array().into_iter().flatten() {
                if prm["in"] == "path" {
                    declared.push(prm["name"].as_str().unwrap_or_default().to_string());
                }
            }
        };
        collect(item);
        for op in item.as_object().expect("item").values() {
            collect(op);
        }
        for seg in p.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    declared.iter().any(|d| d == name),
                    "{p}: {name} not declared"
                );
            }
        }
    }
    // Operation ids are unique.
    let mut ids = Vec::new();
    for item in paths.values() {
        for op in item.as_object().expect("item").values() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                ids.push(id.to_string());
            }
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operation ids");

    let r = env.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.raw).to_string();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"GET /servers\""), "{text}");
    assert!(text.contains("http_request_duration_seconds"), "{text}");

    let r = env.call("GET", "/version", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.raw), env!("CARGO_PKG_VERSION"));
    let r = env.call("GET", "/ping", None, None).await;
    assert_eq!(r.ok(), &json!({}));
    let r = env.call("POST", "/ping", None, None).await;
    assert_eq!(r.ok(), &json!({}));
    // A bad token on an optional-auth route is ignored.
    let r = env.call("GET", "/ping", Some("forged"), None).await;
    assert_eq!(r.ok(), &json!({}));
    let r = env.call("GET", "/version.json", None, None).await;
    assert_eq!(r.ok()["service"], json!("region"));
}

#[tokio::test]
async fn openapi_documents_every_route_shape() {
    let env = Env::new().await;
    let doc = env
        .call("GET", "/openapi.json", None, None)
        .await
        .ok()
        .clone();
    let paths = doc["paths"].as_object().expect("paths");
    let expect: &[(&str, &[&str])] = &[
        ("/servers", &["get", "post"]),
        (
            "/servers/{id}",
            &["get", "head", "put", "patch", "delete", "post"],
        ),
        ("/servers/{id}/{action}", &["get", "post"]),
        ("/servers/distinct-field", &["get"]),
        ("/zones/{ctx_id}/hosts", &["get", "post"]),
        (
            "/zones/{ctx_id}/hosts/{id}",
            &["get", "put", "patch", "delete"],
        ),
        ("/guestdisks", &["get"]),
        ("/servers/{id}/disks", &["get"]),
        ("/disks/{id}/servers", &["get"]),
        (
            "/servers/{id}/disks/{sid}",
            &["get", "post", "put", "delete"],
        ),
        (
            "/disks/{id}/servers/{sid}",
            &["get", "post", "put", "delete"],
        ),
    ];
    for (path, methods) in expect {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} missing"));
        for m in *methods {
            let op = item.get(*m).unwrap_or_else(|| panic!("{m} {path} missing"));
            if *path != "/guestdisks" {
                assert!(
                    op["responses"].get("404").is_some(),
                    "{m} {path} lacks the error responses"
                );
            }
        }
    }
}

#[tokio::test]
async fn metric_labels_stay_bounded() {
    let env = Env::new().await;
    for i in 0..5 {
        env.get(&format!("/servers/x/random{i}/y"), ALICE).await;
        env.get(&format!("/servers/x/unique-seg-{i}/z"), ALICE)
            .await;
        env.get(&format!("/nothing-{i}"), ALICE).await;
        env.raw(&format!("WEIRD{i}"), "/servers", Some(ALICE), None, &[])
            .await;
    }
    let text =
        String::from_utf8_lossy(&env.call("GET", "/metrics", None, None).await.raw).to_string();
    assert!(
        !text.contains("unique-seg-"),
        "path segment in a metric label"
    );
    assert!(!text.contains("nothing-"), "path segment in a metric label");
    assert!(!text.contains("WEIRD"), "method in a metric label");
}

// ---------------------------------------------------------------------------
// helpers

pub fn urlencode(s: &str) -> String {
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
