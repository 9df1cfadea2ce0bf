//! Virtual resources through the real binaries with a simulated host:
//! disks, snapshots, keypairs, security groups, EIPs, quotas, usages,
//! capabilities — their life cycles, failure paths, bad input, quota
//! refusals and tenant isolation — and their climc commands.

mod common;

use common::*;
use serde_json::{Value, json};

const RSA_PUB: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDTfHuXNpk/pAvh7kCEMM7FimpECpeku23OhPINUM16lyMXQP2fysQPyNViW+gfUl0daY0pkbKklXHU40S4p34OsXfmGskzW+VZp892/W0APYFHGaDi8wTG7grUiLCpHhlNhPDyNhbX4W6lcPz7LLdoGWJ2nCj2OJk/c0hVqoI8oTGAylj+R+qzLZnLYOdqYbAJQELBWgjwlCkXOj9u/Gi233oGUN/W02FSkcpwyalO5jRuG1t2Nl0sDccJKQOxHl1MzFOaQrI+4vBSu/Gr+RwayagrIroGC6Zcd0P5S15uYMi5fXGt7A1+C7J/xgcwXI/6iIRG2GLrdEcIlS7i2TVD test@example";
const RSA_FP: &str = "SHA256:Ggvgun+xCq1erj4EqKmLRBvrQq8NlE+8+0RnKBuWTIM";

fn total(v: &Value, plural: &str) -> usize {
    v[plural].as_array().map(Vec::len).unwrap_or(0)
}

async fn wait_status(api: &Api, url: &str, key: &str, status: &str) -> Value {
    let body = wait_until(api, url, 30, |b| {
        let st = b[key]["status"].as_str().unwrap_or_default();
        st == status || st.ends_with("_fail") || st.ends_with("_failed")
    })
    .await;
    assert_eq!(body[key]["status"], status, "{body}");
    body
}

async fn wait_gone(api: &Api, url: &str) {
    wait_until(api, url, 30, |b| b["code"] == 404).await;
}

async fn server(admin: &Api, r: &str, name: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "vcpu_count": 1, "vmem_size": 256,
                          "disks": [{"size": 1024}], "nets": [{"network": "net0"}]});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let resp = admin
        .post(&format!("{r}/servers"), json!({ "server": body }))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.body["server"]["id"].as_str().expect("id").to_string();
    wait_until(admin, &format!("{r}/servers/{id}"), 60, |b| {
        b["server"]["status"] == "ready" || b["server"]["status"] == "running"
    })
    .await;
    id
}

#[tokio::test]
async fn disks_snapshots_walk_their_status_machines() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let host = p.sim_host(SimOpts::default());
    let r = p.region_url();

    // Bad input: nothing is written.
    for (body, code, class) in [
        (
            json!({"name": "bad", "size": -5}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "bad", "size": "-5g"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "bad", "size": 0}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "bad", "size": "lots"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "bad", "size": "99999t"}),
            400,
            "InputParameterError",
        ),
        (json!({"name": "bad"}), 400, "MissingParameterError"),
        (
            json!({"name": "bad", "size": 1024, "storage": "nope"}),
            404,
            "ResourceNotFoundError",
        ),
        (
            json!({"name": "bad", "size": 1024, "format": "vhdx"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "bad", "size": 1024, "bogus": 1}),
            400,
            "InputParameterError",
        ),
    ] {
        let resp = admin
            .post(&format!("{r}/disks"), json!({ "disk": body }))
            .await;
        assert_error(&resp, code, class);
    }
    let list = admin.get(&format!("{r}/disks?scope=system")).await;
    assert_eq!(total(&list.body, "disks"), 0, "{list:?}");

    // Create: init → ready on the host's storage.
    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "d1", "size": "2g"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.body["disk"]["id"].as_str().expect("id").to_string();
    let d = wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;
    assert_eq!(d["disk"]["disk_size"], 2048);
    assert_eq!(d["disk"]["disk_type"], "data");
    assert_eq!(d["disk"]["storage_type"], "local");
    assert_eq!(d["disk"]["host"], "host0");
    assert_eq!(d["disk"]["storage"], "host0-local");
    assert!(
        d["disk"]["access_path"]
            .as_str()
            .unwrap_or_default()
            .contains(&id)
    );
    assert_eq!(host.state()["disks"][&id], 2048, "{}", host.state());
    let tasks = admin
        .get(&format!("{r}/tasks?obj_id={id}&scope=system"))
        .await;
    assert_eq!(
        tasks.body["tasks"][0]["task_name"], "DiskCreateTask",
        "{tasks:?}"
    );
    assert_eq!(tasks.body["tasks"][0]["status"], "complete", "{tasks:?}");

    // Show by name, list, filter, update, duplicate name.
    let by_name = admin.get(&format!("{r}/disks/d1")).await;
    assert_eq!(by_name.body["disk"]["id"], id.as_str());
    let list = admin
        .get(&format!("{r}/disks?storage=host0-local&unused=true"))
        .await;
    assert_eq!(total(&list.body, "disks"), 1, "{list:?}");
    let upd = admin
        .put(
            &format!("{r}/disks/{id}"),
            Some(json!({"disk": {"description": "data"}})),
        )
        .await;
    assert_eq!(upd.body["disk"]["description"], "data", "{upd:?}");
    let dup = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "d1", "size": 1024}}),
        )
        .await;
    assert_error(&dup, 409, "DuplicateNameError");

    // Resize: only grows.
    let small = admin
        .post(
            &format!("{r}/disks/{id}/resize"),
            json!({"disk": {"size": 1024}}),
        )
        .await;
    assert_error(&small, 400, "InputParameterError");
    let neg = admin
        .post(
            &format!("{r}/disks/{id}/resize"),
            json!({"disk": {"size": -1}}),
        )
        .await;
    assert_error(&neg, 400, "InputParameterError");
    let grow = admin
        .post(
            &format!("{r}/disks/{id}/resize"),
            json!({"disk": {"size": "4g"}}),
        )
        .await;
    assert_eq!(grow.status, 200, "{grow:?}");
    assert_eq!(grow.body["disk"]["status"], "resizing");
    let again = admin
        .post(
            &format!("{r}/disks/{id}/resize"),
            json!({"disk": {"size": "8g"}}),
        )
        .await;
    assert_error(&again, 400, "InvalidStatusError");
    let d = wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;
    assert_eq!(d["disk"]["disk_size"], 4096, "{d}");
    assert_eq!(host.state()["disks"][&id], 4096);

    // Snapshot: creating → ready, sized like the disk.
    let bad = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "s0"}}),
        )
        .await;
    assert_error(&bad, 400, "MissingParameterError");
    let bad = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "s0", "disk": "nope"}}),
        )
        .await;
    assert_error(&bad, 404, "ResourceNotFoundError");
    let resp = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "s1", "disk": "d1"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let sid = resp.id_of("snapshot");
    let s = wait_status(&admin, &format!("{r}/snapshots/{sid}"), "snapshot", "ready").await;
    assert_eq!(s["snapshot"]["size"], 4096);
    assert_eq!(s["snapshot"]["disk_name"], "d1");
    assert!(
        s["snapshot"]["location"]
            .as_str()
            .unwrap_or_default()
            .contains(&sid),
        "{s}"
    );
    assert_eq!(host.state()["snapshots"][&sid], id.as_str());

    // A disk from the snapshot.
    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "d2", "snapshot": "s1"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let d2 = resp.body["disk"]["id"].as_str().expect("id").to_string();
    let d = wait_status(&admin, &format!("{r}/disks/{d2}"), "disk", "ready").await;
    assert_eq!(d["disk"]["disk_size"], 4096);
    assert_eq!(d["disk"]["snapshot_id"], sid.as_str());

    // Reset d1 to s1; a snapshot of another disk is refused.
    let wrong = admin
        .post(
            &format!("{r}/disks/{d2}/reset"),
            json!({"disk": {"snapshot_id": sid}}),
        )
        .await;
    assert_error(&wrong, 400, "InputParameterError");
    let missing = admin
        .post(&format!("{r}/disks/{id}/reset"), json!({"disk": {}}))
        .await;
    assert_error(&missing, 400, "MissingParameterError");
    let reset = admin
        .post(
            &format!("{r}/disks/{id}/reset"),
            json!({"disk": {"snapshot_id": "s1"}}),
        )
        .await;
    assert_eq!(reset.status, 200, "{reset:?}");
    assert_eq!(reset.body["disk"]["status"], "resetting");
    wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;

    // A disk attached to a server cannot be deleted, nor reset while the
    // server runs.
    let vm = server(&admin, &r, "vm1", json!({"auto_start": true})).await;
    wait_until(&admin, &format!("{r}/servers/{vm}"), 60, |b| {
        b["server"]["status"] == "running"
    })
    .await;
    let attached = admin.get(&format!("{r}/disks?server={vm}")).await;
    assert_eq!(total(&attached.body, "disks"), 1, "{attached:?}");
    let sys = attached.body["disks"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(attached.body["disks"][0]["guest"], "vm1");
    let del = admin.delete(&format!("{r}/disks/{sys}")).await;
    assert_error(&del, 406, "NotEmptyError");
    cloudpods_testkit::assert_details(&del.body, "vm1");
    let resp = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "sys-snap", "disk": sys}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let sys_snap = resp.id_of("snapshot");
    wait_status(
        &admin,
        &format!("{r}/snapshots/{sys_snap}"),
        "snapshot",
        "ready",
    )
    .await;
    let busy = admin
        .post(
            &format!("{r}/disks/{sys}/reset"),
            json!({"disk": {"snapshot_id": sys_snap}}),
        )
        .await;
    assert_error(&busy, 400, "InvalidStatusError");
    let by_server = admin.get(&format!("{r}/snapshots?server={vm}")).await;
    assert_eq!(total(&by_server.body, "snapshots"), 1, "{by_server:?}");

    // Delete: snapshots, then disks, gone from the host too.
    for s in [&sid, &sys_snap] {
        let del = admin.delete(&format!("{r}/snapshots/{s}")).await;
        assert_eq!(del.status, 200, "{del:?}");
        wait_gone(&admin, &format!("{r}/snapshots/{s}")).await;
    }
    assert!(host.state()["snapshots"].get(&sid).is_none());
    for d in [&id, &d2] {
        let del = admin.delete(&format!("{r}/disks/{d}")).await;
        assert_eq!(del.status, 200, "{del:?}");
        wait_gone(&admin, &format!("{r}/disks/{d}")).await;
        assert!(host.state()["disks"].get(d.as_str()).is_none());
    }
}

#[tokio::test]
async fn disk_and_snapshot_failures_end_in_fail_statuses() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts {
        fail: vec![
            "disk_resize".into(),
            "disk_snapshot".into(),
            "disk_reset".into(),
        ],
        ..Default::default()
    });
    let r = p.region_url();
    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "d1", "size": 1024}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.body["disk"]["id"].as_str().expect("id").to_string();
    wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;

    let grow = admin
        .post(
            &format!("{r}/disks/{id}/resize"),
            json!({"disk": {"size": 2048}}),
        )
        .await;
    assert_eq!(grow.status, 200, "{grow:?}");
    let d = wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "resize_failed").await;
    assert_eq!(d["disk"]["disk_size"], 1024, "{d}");
    assert!(
        d["disk"]["fail_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("simulated failure of disk_resize"),
        "{d}"
    );
    // The growth reserved for the resize was released.
    let q = admin.get(&format!("{r}/quotas")).await;
    assert_eq!(q.body["quotas"][0]["usage.storage"], 1024, "{q:?}");

    let resp = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "s1", "disk": "d1"}}),
        )
        .await;
    assert_error(&resp, 400, "InvalidStatusError"); // disk is resize_failed
    let resp = admin
        .post(
            &format!("{r}/disks/{id}/resize"),
            json!({"disk": {"size": 4096}}),
        )
        .await;
    assert_eq!(resp.status, 200, "retry from resize_failed: {resp:?}");
    wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "resize_failed").await;

    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "d2", "size": 1024}}),
        )
        .await;
    let d2 = resp.body["disk"]["id"].as_str().expect("id").to_string();
    wait_status(&admin, &format!("{r}/disks/{d2}"), "disk", "ready").await;
    let resp = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "s2", "disk": "d2"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let sid = resp.id_of("snapshot");
    let s = wait_status(
        &admin,
        &format!("{r}/snapshots/{sid}"),
        "snapshot",
        "create_failed",
    )
    .await;
    assert!(
        s["snapshot"]["fail_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("simulated failure of disk_snapshot"),
        "{s}"
    );
    // A failed snapshot counts nothing and can be deleted.
    let q = admin.get(&format!("{r}/quotas")).await;
    assert_eq!(q.body["quotas"][0]["usage.snapshot"], 0, "{q:?}");
    let resp = admin
        .post(
            &format!("{r}/disks/{d2}/reset"),
            json!({"disk": {"snapshot_id": sid}}),
        )
        .await;
    assert_error(&resp, 400, "InvalidStatusError");
    assert_eq!(
        admin.delete(&format!("{r}/snapshots/{sid}")).await.status,
        200
    );
    wait_gone(&admin, &format!("{r}/snapshots/{sid}")).await;

    // Failed disks are deleted too.
    assert_eq!(admin.delete(&format!("{r}/disks/{id}")).await.status, 200);
    wait_gone(&admin, &format!("{r}/disks/{id}")).await;
}

#[tokio::test]
async fn failed_allocation_holds_nothing() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let host = p.sim_host(SimOpts {
        fail: vec!["disk_create".into()],
        ..Default::default()
    });
    let r = p.region_url();
    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "d1", "size": 1024}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.body["disk"]["id"].as_str().expect("id").to_string();
    let d = wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "alloc_failed").await;
    assert!(
        d["disk"]["fail_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("simulated failure of disk_create"),
        "{d}"
    );
    let q = admin.get(&format!("{r}/quotas")).await;
    assert_eq!(q.body["quotas"][0]["usage.storage"], 0, "{q:?}");
    assert_eq!(admin.delete(&format!("{r}/disks/{id}")).await.status, 200);
    wait_gone(&admin, &format!("{r}/disks/{id}")).await;
    assert!(
        host.state()["disks"]
            .as_object()
            .is_none_or(|m| m.is_empty())
    );

    // No room anywhere: refused at once, nothing recorded.
    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "huge", "size": "15t"}}),
        )
        .await;
    assert_error(&resp, 400, "InsufficientResourceError");
    let list = admin.get(&format!("{r}/disks?scope=system")).await;
    assert_eq!(total(&list.body, "disks"), 0, "{list:?}");
}

#[tokio::test]
async fn keypairs_show_the_private_key_once() {
    let p = Platform::start();
    let admin = p.admin().await;
    let r = p.region_url();

    let resp = admin
        .post(&format!("{r}/keypairs"), json!({"keypair": {"name": "k1"}}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let k = &resp.body["keypair"];
    let id = k["id"].as_str().expect("id").to_string();
    assert_eq!(k["scheme"], "ED25519");
    assert!(k.get("private_key").is_none(), "{k}");
    assert!(k["private_key_len"].as_i64().unwrap_or(0) > 0, "{k}");
    let public = k["public_key"].as_str().expect("public key").to_string();
    assert!(
        public.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"),
        "{public}"
    );
    let fp = k["fingerprint"].as_str().expect("fingerprint").to_string();
    assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");

    let key = admin.get(&format!("{r}/keypairs/{id}/privatekey")).await;
    assert_eq!(key.status, 200, "{key:?}");
    let pem = key.body["keypair"]["private_key"]
        .as_str()
        .expect("key")
        .to_string();
    assert!(
        pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        "{pem}"
    );
    assert!(pem.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
    let again = admin.get(&format!("{r}/keypairs/{id}/privatekey")).await;
    assert_error(&again, 404, "ResourceNotFoundError");
    cloudpods_testkit::assert_details(&again.body, "only once");
    let shown = admin.get(&format!("{r}/keypairs/{id}")).await;
    assert_eq!(shown.body["keypair"]["private_key_len"], 0, "{shown:?}");

    // OpenSSH reads the key and derives the same public key.
    if std::path::Path::new("/usr/bin/ssh-keygen").exists() {
        let path = p.dir.path().join("k1");
        std::fs::write(&path, &pem).expect("write key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        let out = std::process::Command::new("/usr/bin/ssh-keygen")
            .args(["-y", "-f"])
            .arg(&path)
            .output()
            .expect("ssh-keygen");
        let derived = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            derived.split_whitespace().take(2).collect::<Vec<_>>(),
            public.split_whitespace().take(2).collect::<Vec<_>>()
        );
    }

    // Imported keys: validated and fingerprinted like ssh-keygen does.
    let resp = admin
        .post(
            &format!("{r}/keypairs"),
            json!({"keypair": {"name": "k2", "public_key": RSA_PUB}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["keypair"]["scheme"], "RSA");
    assert_eq!(resp.body["keypair"]["fingerprint"], RSA_FP);
    assert_eq!(resp.body["keypair"]["private_key_len"], 0);
    let k2 = resp.body["keypair"]["id"].as_str().expect("id").to_string();
    let none = admin.get(&format!("{r}/keypairs/{k2}/privatekey")).await;
    assert_error(&none, 404, "ResourceNotFoundError");
    for garbage in [
        "hello",
        "ssh-rsa notbase64!!!",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==",
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQDTfHuX",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAAQC=",
    ] {
        let resp = admin
            .post(
                &format!("{r}/keypairs"),
                json!({"keypair": {"name": "bad", "public_key": garbage}}),
            )
            .await;
        assert_error(&resp, 400, "InputParameterError");
    }
    let resp = admin
        .post(
            &format!("{r}/keypairs"),
            json!({"keypair": {"name": "bad", "scheme": "RSA"}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
    let dup = admin
        .post(&format!("{r}/keypairs"), json!({"keypair": {"name": "k1"}}))
        .await;
    assert_error(&dup, 409, "DuplicateNameError");
    let list = admin.get(&format!("{r}/keypairs")).await;
    assert_eq!(total(&list.body, "keypairs"), 2, "{list:?}");

    // Another user sees none of them, and cannot read the private key.
    let (other, _) = p.member(&admin, "p2", "u2").await;
    let resp = other
        .post(&format!("{r}/keypairs"), json!({"keypair": {"name": "k3"}}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let k3 = resp.body["keypair"]["id"].as_str().expect("id").to_string();
    assert_error(
        &other.get(&format!("{r}/keypairs/{id}")).await,
        404,
        "ResourceNotFoundError",
    );
    assert_error(
        &other.delete(&format!("{r}/keypairs/{id}")).await,
        404,
        "ResourceNotFoundError",
    );
    let mine = other.get(&format!("{r}/keypairs")).await;
    assert_eq!(total(&mine.body, "keypairs"), 1, "{mine:?}");
    let stolen = admin
        .get(&format!("{r}/keypairs/{k3}/privatekey?scope=system"))
        .await;
    assert!(stolen.status == 403 || stolen.status == 404, "{stolen:?}");
    let own = other.get(&format!("{r}/keypairs/{k3}/privatekey")).await;
    assert_eq!(own.status, 200, "{own:?}");

    // In use by a server: refused; afterwards deleted.
    p.basic_network(&admin).await;
    let _host = p.sim_host(SimOpts::default());
    let vm = server(&admin, &r, "vm1", json!({"keypair": "k2"})).await;
    let del = admin.delete(&format!("{r}/keypairs/{k2}")).await;
    assert_error(&del, 406, "NotEmptyError");
    let shown = admin.get(&format!("{r}/keypairs/{k2}")).await;
    assert_eq!(shown.body["keypair"]["linked_guest_count"], 1, "{shown:?}");
    assert_eq!(admin.delete(&format!("{r}/servers/{vm}")).await.status, 200);
    wait_gone(&admin, &format!("{r}/servers/{vm}")).await;
    assert_eq!(
        admin.delete(&format!("{r}/keypairs/{k2}")).await.status,
        200
    );
    assert_error(
        &admin.get(&format!("{r}/keypairs/{k2}")).await,
        404,
        "ResourceNotFoundError",
    );
}

#[tokio::test]
async fn secgroups_and_rules_are_validated() {
    let p = Platform::start();
    let admin = p.admin().await;
    let r = p.region_url();

    let resp = admin
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "web", "rules": [
                {"direction": "in", "protocol": "tcp", "ports": "22", "cidr": "10.0.0.0/8", "priority": 90},
                {"direction": "in", "protocol": "tcp", "ports": "80,443", "action": "allow"},
                {"direction": "out", "protocol": "any"},
            ]}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let sg = &resp.body["secgroup"];
    let id = sg["id"].as_str().expect("id").to_string();
    assert_eq!(sg["status"], "ready");
    assert_eq!(sg["rules"].as_array().map(Vec::len), Some(3), "{sg}");
    assert_eq!(sg["in_rules"].as_array().map(Vec::len), Some(2), "{sg}");
    assert_eq!(sg["out_rules"][0]["cidr"], "0.0.0.0/0", "{sg}");
    assert_eq!(sg["rules"][0]["priority"], 90, "{sg}");
    assert_eq!(sg["guest_cnt"], 0);

    let bad_rules = [
        json!({"direction": "up"}),
        json!({"protocol": "tcp"}),
        json!({"direction": "in", "protocol": "gre"}),
        json!({"direction": "in", "protocol": "tcp", "ports": "0"}),
        json!({"direction": "in", "protocol": "tcp", "ports": "70000"}),
        json!({"direction": "in", "protocol": "tcp", "ports": "100-10"}),
        json!({"direction": "in", "protocol": "tcp", "ports": "ssh"}),
        json!({"direction": "in", "protocol": "icmp", "ports": "22"}),
        json!({"direction": "in", "protocol": "any", "ports": "22"}),
        json!({"direction": "in", "cidr": "10.0.0.0/33"}),
        json!({"direction": "in", "cidr": "300.1.1.1"}),
        json!({"direction": "in", "cidr": "banana"}),
        json!({"direction": "in", "action": "maybe"}),
        json!({"direction": "in", "priority": 0}),
        json!({"direction": "in", "priority": 101}),
    ];
    for rule in &bad_rules {
        let resp = admin
            .post(
                &format!("{r}/secgroups"),
                json!({"secgroup": {"name": "bad", "rules": [rule]}}),
            )
            .await;
        assert_eq!(resp.status, 400, "{rule}: {resp:?}");
        let mut body = rule.clone();
        body["secgroup_id"] = json!(id);
        let resp = admin
            .post(
                &format!("{r}/secgrouprules"),
                json!({ "secgrouprule": body }),
            )
            .await;
        assert_eq!(resp.status, 400, "{rule}: {resp:?}");
    }
    let groups = admin.get(&format!("{r}/secgroups")).await;
    assert_eq!(total(&groups.body, "secgroups"), 1, "{groups:?}");
    let rules = admin.get(&format!("{r}/secgrouprules?secgroup=web")).await;
    assert_eq!(total(&rules.body, "secgrouprules"), 3, "{rules:?}");

    // Rules through the group's context and on their own.
    let resp = admin
        .post(
            &format!("{r}/secgroups/{id}/secgrouprules"),
            json!({"secgrouprule": {"direction": "in", "protocol": "udp", "ports": "1000-2000", "cidr": "192.168.1.7/24"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["secgrouprule"]["cidr"], "192.168.1.0/24");
    assert_eq!(resp.body["secgrouprule"]["secgroup"], "web");
    let rid = resp.id_of("secgrouprule");
    let upd = admin
        .put(
            &format!("{r}/secgrouprules/{rid}"),
            Some(json!({"secgrouprule": {"ports": "53", "action": "deny"}})),
        )
        .await;
    assert_eq!(upd.status, 200, "{upd:?}");
    assert_eq!(upd.body["secgrouprule"]["ports"], "53");
    assert_eq!(upd.body["secgrouprule"]["action"], "deny");
    let upd = admin
        .put(
            &format!("{r}/secgrouprules/{rid}"),
            Some(json!({"secgrouprule": {"ports": "99999"}})),
        )
        .await;
    assert_error(&upd, 400, "InputParameterError");
    let listed = admin
        .get(&format!("{r}/secgroups/{id}/secgrouprules"))
        .await;
    assert_eq!(total(&listed.body, "secgrouprules"), 4, "{listed:?}");
    assert_eq!(
        admin
            .delete(&format!("{r}/secgrouprules/{rid}"))
            .await
            .status,
        200
    );
    let resp = admin
        .post(
            &format!("{r}/secgroups/{id}/add-rule"),
            json!({"secgroup": {"direction": "in", "protocol": "icmp"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.body["secgroup"]["rules"].as_array().map(Vec::len),
        Some(4)
    );
    let dup = admin
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "web"}}),
        )
        .await;
    assert_error(&dup, 409, "DuplicateNameError");

    // Another project sees neither the group nor its rules.
    let (other, _) = p.member(&admin, "p2", "u2").await;
    assert_error(
        &other.get(&format!("{r}/secgroups/{id}")).await,
        404,
        "ResourceNotFoundError",
    );
    let their = other.get(&format!("{r}/secgrouprules")).await;
    assert_eq!(total(&their.body, "secgrouprules"), 0, "{their:?}");
    let resp = other
        .post(
            &format!("{r}/secgrouprules"),
            json!({"secgrouprule": {"secgroup_id": id, "direction": "in"}}),
        )
        .await;
    assert_error(&resp, 404, "ResourceNotFoundError");
    // Members manage rules of their own groups.
    let resp = other
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "mine"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = other
        .post(
            &format!("{r}/secgrouprules"),
            json!({"secgrouprule": {"secgroup": "mine", "direction": "in", "protocol": "tcp", "ports": "22"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");

    // Used by a server: refused.
    p.basic_network(&admin).await;
    let _host = p.sim_host(SimOpts::default());
    let vm = server(&admin, &r, "vm1", json!({"secgroups": ["web"]})).await;
    let sg = admin.get(&format!("{r}/secgroups/{id}")).await;
    assert_eq!(sg.body["secgroup"]["guest_cnt"], 1, "{sg:?}");
    assert_error(
        &admin.delete(&format!("{r}/secgroups/{id}")).await,
        406,
        "NotEmptyError",
    );
    assert_eq!(admin.delete(&format!("{r}/servers/{vm}")).await.status, 200);
    wait_gone(&admin, &format!("{r}/servers/{vm}")).await;
    assert_eq!(
        admin.delete(&format!("{r}/secgroups/{id}")).await.status,
        200
    );
    let rules = admin
        .get(&format!("{r}/secgrouprules?scope=system&secgroup_id={id}"))
        .await;
    assert_eq!(total(&rules.body, "secgrouprules"), 0, "{rules:?}");
}

#[tokio::test]
async fn eips_allocate_associate_and_release() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    let resp = admin
        .post(
            &format!("{r}/networks"),
            json!({"network": {"name": "eipnet", "wire": "wire0", "guest_ip_start": "192.168.100.10",
                   "guest_ip_end": "192.168.100.12", "guest_ip_mask": 24, "guest_gateway": "192.168.100.1",
                   "server_type": "eip", "is_public": true, "public_scope": "system"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");

    for (body, code, class) in [
        (
            json!({"name": "x", "network": "net0"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "x", "network": "nope"}),
            404,
            "ResourceNotFoundError",
        ),
        (
            json!({"name": "x", "network": "eipnet", "ip": "10.9.9.9"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "x", "network": "eipnet", "ip": "banana"}),
            400,
            "InputParameterError",
        ),
        (
            json!({"name": "x", "bandwidth": -1}),
            400,
            "InputParameterError",
        ),
    ] {
        let resp = admin
            .post(&format!("{r}/eips"), json!({ "eip": body }))
            .await;
        assert_error(&resp, code, class);
    }

    let resp = admin
        .post(
            &format!("{r}/eips"),
            json!({"eip": {"name": "e1", "bandwidth": 100}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let e1 = resp.body["eip"]["id"].as_str().expect("id").to_string();
    assert_eq!(resp.body["eip"]["status"], "ready");
    assert_eq!(resp.body["eip"]["ip_addr"], "192.168.100.10");
    assert_eq!(resp.body["eip"]["network"], "eipnet");
    let resp = admin
        .post(
            &format!("{r}/eips"),
            json!({"eip": {"name": "e2", "network": "eipnet", "ip": "192.168.100.12"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let e2 = resp.body["eip"]["id"].as_str().expect("id").to_string();
    let taken = admin
        .post(
            &format!("{r}/eips"),
            json!({"eip": {"name": "e3", "network": "eipnet", "ip": "192.168.100.12"}}),
        )
        .await;
    assert_error(&taken, 409, "ConflictError");
    let resp = admin
        .post(&format!("{r}/eips"), json!({"eip": {"name": "e3"}}))
        .await;
    assert_eq!(resp.body["eip"]["ip_addr"], "192.168.100.11", "{resp:?}");
    let e3 = resp.body["eip"]["id"].as_str().expect("id").to_string();
    let full = admin
        .post(&format!("{r}/eips"), json!({"eip": {"name": "e4"}}))
        .await;
    assert_error(&full, 400, "InsufficientResourceError");
    let list = admin.get(&format!("{r}/eips")).await;
    assert_eq!(total(&list.body, "eips"), 3, "{list:?}");

    // Associate with a server (DB-level for local EIPs).
    let vm = server(&admin, &r, "vm1", json!({})).await;
    let vm2 = server(&admin, &r, "vm2", json!({})).await;
    let bad = admin
        .post(
            &format!("{r}/eips/{e1}/associate"),
            json!({"eip": {"instance_id": "nope"}}),
        )
        .await;
    assert_error(&bad, 404, "ResourceNotFoundError");
    let bad = admin
        .post(
            &format!("{r}/eips/{e1}/associate"),
            json!({"eip": {"instance_id": vm, "instance_type": "loadbalancer"}}),
        )
        .await;
    assert_error(&bad, 400, "InputParameterError");
    let ok = admin
        .post(
            &format!("{r}/eips/{e1}/associate"),
            json!({"eip": {"instance_id": vm, "instance_type": "server"}}),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["eip"]["associate_id"], vm.as_str());
    assert_eq!(ok.body["eip"]["associate_type"], "server");
    let shown = admin.get(&format!("{r}/eips/{e1}")).await;
    assert_eq!(shown.body["eip"]["associate_name"], "vm1", "{shown:?}");
    let again = admin
        .post(
            &format!("{r}/eips/{e1}/associate"),
            json!({"eip": {"instance_id": vm2}}),
        )
        .await;
    assert_error(&again, 400, "InvalidStatusError");
    let second = admin
        .post(
            &format!("{r}/eips/{e2}/associate"),
            json!({"eip": {"instance": "vm1"}}),
        )
        .await;
    assert_error(&second, 400, "InvalidStatusError");
    let usable = admin.get(&format!("{r}/eips?usable=true")).await;
    assert_eq!(total(&usable.body, "eips"), 2, "{usable:?}");
    assert_error(
        &admin.delete(&format!("{r}/eips/{e1}")).await,
        406,
        "NotEmptyError",
    );

    let off = admin
        .post(&format!("{r}/eips/{e1}/dissociate"), json!({}))
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    assert!(off.body["eip"]["associate_id"].is_null(), "{off:?}");
    let off = admin
        .post(&format!("{r}/eips/{e1}/dissociate"), json!({}))
        .await;
    assert_error(&off, 400, "InvalidStatusError");

    // Delete: the addresses go back to the network.
    for e in [&e1, &e2, &e3] {
        assert_eq!(admin.delete(&format!("{r}/eips/{e}")).await.status, 200);
        assert_error(
            &admin.get(&format!("{r}/eips/{e}")).await,
            404,
            "ResourceNotFoundError",
        );
    }
    let usage = admin.get(&format!("{r}/quotas")).await;
    assert_eq!(usage.body["quotas"][0]["usage.eip"], 0, "{usage:?}");
}

#[tokio::test]
async fn quotas_refuse_creates_and_tenants_are_isolated() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    let (other, pid) = p.member(&admin, "p2", "u2").await;

    // Shape of GET /quotas.
    let q = admin.get(&format!("{r}/quotas")).await;
    assert_eq!(q.status, 200, "{q:?}");
    let rec = &q.body["quotas"][0];
    for k in [
        "domain_id",
        "tenant_id",
        "cpu",
        "memory",
        "storage",
        "count",
        "eip",
        "snapshot",
        "usage.cpu",
        "usage.storage",
        "usage.eip",
    ] {
        assert!(rec.get(k).is_some(), "{k} missing in {rec}");
    }

    // Bad quota values.
    for body in [
        json!({"quotas": {"cpu": -1}}),
        json!({"quotas": {"cpu": 1.5}}),
        json!({"quotas": {"cpu": "lots"}}),
        json!({"quotas": {"warp_drives": 1}}),
        json!({"quotas": {"cpu": 1, "action": "explode"}}),
    ] {
        let resp = admin
            .post(&format!("{r}/quotas/projects/p2"), body.clone())
            .await;
        assert_error(&resp, 400, "InputParameterError");
    }
    let resp = admin
        .post(
            &format!("{r}/quotas/projects/p2"),
            json!({"quotas": {"storage": 1024, "snapshot": 0, "secgroup": 1, "eip": 0}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["quotas"][0]["storage"], 1024);
    assert_eq!(resp.body["quotas"][0]["tenant_id"], pid.as_str());
    let got = admin.get(&format!("{r}/quotas/projects/{pid}")).await;
    assert_eq!(got.body["quotas"][0]["secgroup"], 1, "{got:?}");
    // Members read their own quota but cannot change it, nor see others'.
    let mine = other.get(&format!("{r}/quotas")).await;
    assert_eq!(mine.body["quotas"][0]["storage"], 1024, "{mine:?}");
    assert_error(
        &other
            .post(
                &format!("{r}/quotas"),
                json!({"quotas": {"storage": 999999}}),
            )
            .await,
        403,
        "ForbiddenError",
    );
    assert_error(
        &other.get(&format!("{r}/quotas/projects/system")).await,
        403,
        "ForbiddenError",
    );

    // Over quota: 400 OutOfQuotaError, nothing created.
    let resp = other
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "big", "size": 2048}}),
        )
        .await;
    assert_error(&resp, 400, "OutOfQuotaError");
    let resp = other
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "ok", "size": 1024}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let d = resp.body["disk"]["id"].as_str().expect("id").to_string();
    wait_status(&other, &format!("{r}/disks/{d}"), "disk", "ready").await;
    let resize = other
        .post(
            &format!("{r}/disks/{d}/resize"),
            json!({"disk": {"size": 2048}}),
        )
        .await;
    assert_error(&resize, 400, "OutOfQuotaError");
    let snap = other
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "s", "disk": d}}),
        )
        .await;
    assert_error(&snap, 400, "OutOfQuotaError");
    assert_eq!(
        other
            .post(
                &format!("{r}/secgroups"),
                json!({"secgroup": {"name": "a"}})
            )
            .await
            .status,
        200
    );
    assert_error(
        &other
            .post(
                &format!("{r}/secgroups"),
                json!({"secgroup": {"name": "b"}}),
            )
            .await,
        400,
        "OutOfQuotaError",
    );
    let net = admin
        .post(
            &format!("{r}/networks"),
            json!({"network": {"name": "eipnet", "wire": "wire0", "guest_ip_start": "192.168.100.10",
                   "guest_ip_end": "192.168.100.20", "guest_ip_mask": 24, "server_type": "eip",
                   "is_public": true, "public_scope": "system"}}),
        )
        .await;
    assert_eq!(net.status, 200, "{net:?}");
    assert_error(
        &other
            .post(&format!("{r}/eips"), json!({"eip": {"name": "e"}}))
            .await,
        400,
        "OutOfQuotaError",
    );
    let mine = other.get(&format!("{r}/disks")).await;
    assert_eq!(total(&mine.body, "disks"), 1, "{mine:?}");
    assert_eq!(
        total(
            &other.get(&format!("{r}/snapshots")).await.body,
            "snapshots"
        ),
        0
    );
    assert_eq!(
        total(
            &other.get(&format!("{r}/secgroups")).await.body,
            "secgroups"
        ),
        1
    );
    assert_eq!(
        total(
            &admin.get(&format!("{r}/eips?scope=system")).await.body,
            "eips"
        ),
        0
    );
    let q = other.get(&format!("{r}/quotas")).await;
    assert_eq!(q.body["quotas"][0]["usage.storage"], 1024, "{q:?}");
    assert_eq!(q.body["quotas"][0]["usage.secgroup"], 1, "{q:?}");

    // Cross-tenant: the admin's objects are invisible to the member.
    let resp = admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "admin-disk", "size": 512}}),
        )
        .await;
    let ad = resp.body["disk"]["id"].as_str().expect("id").to_string();
    wait_status(&admin, &format!("{r}/disks/{ad}"), "disk", "ready").await;
    let resp = admin
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "admin-snap", "disk": ad}}),
        )
        .await;
    let asnap = resp.id_of("snapshot");
    let resp = admin
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "admin-sg"}}),
        )
        .await;
    let asg = resp.id_of("secgroup");
    let resp = admin
        .post(&format!("{r}/eips"), json!({"eip": {"name": "admin-eip"}}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let aeip = resp.body["eip"]["id"].as_str().expect("id").to_string();
    for (plural, id) in [
        ("disks", &ad),
        ("snapshots", &asnap),
        ("secgroups", &asg),
        ("eips", &aeip),
    ] {
        let url = format!("{r}/{plural}/{id}");
        assert_error(&other.get(&url).await, 404, "ResourceNotFoundError");
        assert_error(&other.delete(&url).await, 404, "ResourceNotFoundError");
        let list = other.get(&format!("{r}/{plural}")).await;
        assert!(
            list.body[plural]
                .as_array()
                .is_some_and(|a| a.iter().all(|o| o["id"] != id.as_str())),
            "{plural}: {list:?}"
        );
        let sys = other.get(&format!("{r}/{plural}?scope=system")).await;
        assert_error(&sys, 403, "ForbiddenError");
    }
    let snap = other
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "x", "disk": ad}}),
        )
        .await;
    assert_error(&snap, 404, "ResourceNotFoundError");
    let resize = other
        .post(
            &format!("{r}/disks/{ad}/resize"),
            json!({"disk": {"size": 4096}}),
        )
        .await;
    assert_error(&resize, 404, "ResourceNotFoundError");
    let all = admin.get(&format!("{r}/disks?scope=system")).await;
    assert_eq!(total(&all.body, "disks"), 2, "{all:?}");

    // Usages: the member's project; the whole region for the admin.
    let u = other.get(&format!("{r}/usages")).await;
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["usage"]["disks"], 1024, "{u:?}");
    assert_eq!(u.body["usage"]["disks.count"], 1, "{u:?}");
    assert_error(
        &other.get(&format!("{r}/usages?scope=system")).await,
        403,
        "ForbiddenError",
    );
    let u = admin.get(&format!("{r}/usages?scope=system")).await;
    assert_eq!(u.body["usage"]["all.disks.count"], 2, "{u:?}");
    assert_eq!(u.body["usage"]["hosts"], 1, "{u:?}");
    assert_eq!(u.body["usage"]["enabled_hosts"], 1, "{u:?}");
    assert_eq!(u.body["usage"]["all.eip"], 1, "{u:?}");
    assert!(
        u.body["usage"]["storages"].as_i64().unwrap_or(0) > 0,
        "{u:?}"
    );

    // Capabilities.
    let c = other.get(&format!("{r}/capabilities")).await;
    assert_eq!(c.status, 200, "{c:?}");
    assert_eq!(c.body["hypervisors"], json!(["kvm"]), "{c:?}");
    assert_eq!(c.body["brands"], json!(["OneCloud"]));
    assert_eq!(c.body["storage_types"], json!(["local"]));
    assert_eq!(c.body["usable"], true);

    // Reset to the defaults.
    let resp = admin
        .post(
            &format!("{r}/quotas/projects/p2"),
            json!({"quotas": {"action": "reset"}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.body["quotas"][0]["storage"].as_i64().unwrap_or(0) > 1024,
        "{resp:?}"
    );
}

#[tokio::test]
async fn climc_manages_virtual_resources() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    let run = |args: &[&str]| {
        let (ok, out, err) = p.climc(args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    };

    let out = run(&["disk-create", "cd1", "1g"]);
    assert!(out.contains("cd1"), "{out}");
    let id = admin.get(&format!("{r}/disks/cd1")).await.id_of("disk");
    wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;
    let out = run(&["disk-list"]);
    assert!(out.contains("cd1") && out.contains("host0-local"), "{out}");
    run(&["disk-resize", "cd1", "2g"]);
    let d = wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;
    assert_eq!(d["disk"]["disk_size"], 2048);
    run(&["snapshot-create", "cs1", "--disk", "cd1"]);
    wait_until(&admin, &format!("{r}/snapshots/cs1"), 30, |b| {
        b["snapshot"]["status"] == "ready"
    })
    .await;
    let out = run(&["snapshot-list"]);
    assert!(out.contains("cs1"), "{out}");
    run(&["disk-reset", "cd1", "cs1"]);
    wait_status(&admin, &format!("{r}/disks/{id}"), "disk", "ready").await;
    let out = run(&["task-list", "--obj-id", &id]);
    assert!(
        out.contains("DiskResetTask") && out.contains("DiskResizeTask"),
        "{out}"
    );
    let out = run(&["task-list", "--is-open"]);
    assert!(!out.contains("DiskResetTask"), "{out}");

    // Keypairs: the private key printed once.
    let out = run(&["keypair-create", "ck1"]);
    assert!(out.contains("BEGIN OPENSSH PRIVATE KEY"), "{out}");
    let (ok, out, err) = p.climc(&["keypair-privatekey", "ck1"]);
    assert!(!ok && (out + &err).contains("only once"));
    let out = run(&["keypair-create", "ck2", "--public-key", RSA_PUB]);
    assert!(
        out.contains(RSA_FP) && !out.contains("PRIVATE KEY"),
        "{out}"
    );
    let out = run(&["keypair-list"]);
    assert!(out.contains("ck1") && out.contains("ck2"), "{out}");

    // Security groups and rules.
    run(&["secgroup-create", "csg"]);
    run(&[
        "secgroup-rule-create",
        "csg",
        "--direction",
        "in",
        "--protocol",
        "tcp",
        "--ports",
        "22",
        "--cidr",
        "0.0.0.0/0",
        "--action",
        "allow",
        "--priority",
        "50",
    ]);
    let (ok, out, err) = p.climc(&[
        "secgroup-rule-create",
        "csg",
        "--direction",
        "in",
        "--protocol",
        "tcp",
        "--ports",
        "99999",
    ]);
    assert!(!ok && (out + &err).contains("InputParameterError"));
    let out = run(&["secgroup-rule-list", "--secgroup", "csg"]);
    assert!(out.contains("22") && out.contains("tcp"), "{out}");
    let out = run(&["secgroup-show", "csg"]);
    assert!(out.contains("in_rules"), "{out}");

    // EIPs.
    let net = admin
        .post(
            &format!("{r}/networks"),
            json!({"network": {"name": "eipnet", "wire": "wire0", "guest_ip_start": "192.168.100.10",
                   "guest_ip_end": "192.168.100.20", "guest_ip_mask": 24, "server_type": "eip"}}),
        )
        .await;
    assert_eq!(net.status, 200, "{net:?}");
    let out = run(&["eip-create", "ce1", "--bandwidth", "10"]);
    assert!(out.contains("192.168.100.10"), "{out}");
    let vm = server(&admin, &r, "cvm", json!({})).await;
    run(&["eip-associate", "ce1", &vm]);
    let out = run(&["eip-list"]);
    assert!(out.contains("cvm"), "{out}");
    run(&["eip-dissociate", "ce1"]);
    run(&["eip-delete", "ce1"]);

    // Quotas, usages, capabilities.
    let out = run(&["quota-show"]);
    assert!(out.contains("usage.cpu"), "{out}");
    let out = run(&[
        "quota-set",
        "--project",
        "system",
        "--snapshot",
        "100",
        "--eip",
        "5",
    ]);
    assert!(out.contains("100"), "{out}");
    let (ok, _, err) = p.climc(&["quota-set", "--project", "system", "--cpu", "-3"]);
    assert!(!ok, "{err}");
    let out = run(&["usage-show"]);
    assert!(out.contains("disks"), "{out}");
    let out = run(&["usage-show", "--scope", "system"]);
    assert!(out.contains("all.servers"), "{out}");
    let out = run(&["capability-show"]);
    assert!(out.contains("kvm"), "{out}");

    // Cleanup through climc.
    run(&["snapshot-delete", "cs1"]);
    wait_gone(&admin, &format!("{r}/snapshots/cs1")).await;
    run(&["disk-delete", "cd1"]);
    wait_gone(&admin, &format!("{r}/disks/{id}")).await;
    run(&["keypair-delete", "ck1", "ck2"]);
    run(&["secgroup-delete", "csg"]);
}
