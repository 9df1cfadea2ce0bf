//! Cross-tenant visibility of servers, disks and tasks, and bad server
//! input refused with nothing allocated.

mod common;

use common::*;
use serde_json::{Value, json};

on_both_databases!(
    members_see_only_their_project,
    bad_server_input_allocates_nothing,
);

fn vm(name: &str) -> Value {
    json!({"server": {"name": name, "vcpu_count": 1, "vmem_size": 256, "disks": [{"size": 512}],
                       "nets": [{"network": "net0"}], "auto_start": true}})
}

async fn members_see_only_their_project(backend: Backend) {
    let p = Platform::start_on(backend);
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    // A second project with its own member.
    let (dave, _) = p.member(&admin, "demo", "dave").await;

    let mine = admin.post(&format!("{r}/servers"), vm("admin-vm")).await;
    assert_eq!(mine.status, 200, "{mine:?}");
    let admin_vm = mine.body["server"]["id"].as_str().expect("id").to_string();
    let theirs = dave.post(&format!("{r}/servers"), vm("dave-vm")).await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
    let dave_vm = theirs.id_of("server");
    for (api, id) in [(&admin, &admin_vm), (&dave, &dave_vm)] {
        wait_until(api, &format!("{r}/servers/{id}"), 30, |b| {
            b["server"]["status"] == "running"
        })
        .await;
    }

    // Lists: each sees its own; the admin sees everything at system scope.
    let names = |b: &Value| -> Vec<String> {
        let mut v: Vec<String> = b["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&dave.get(&format!("{r}/servers")).await.body),
        ["dave-vm"]
    );
    assert_eq!(
        names(&admin.get(&format!("{r}/servers")).await.body),
        ["admin-vm"]
    );
    assert_eq!(
        names(&admin.get(&format!("{r}/servers?scope=system")).await.body),
        ["admin-vm", "dave-vm"]
    );
    assert_error(
        &dave.get(&format!("{r}/servers?scope=system")).await,
        403,
        "ForbiddenError",
    );

    // Another project's objects answer 404, by id and by name, for reads
    // and for actions.
    assert_error(
        &dave.get(&format!("{r}/servers/{admin_vm}")).await,
        404,
        "ResourceNotFoundError",
    );
    assert_error(
        &dave.get(&format!("{r}/servers/admin-vm")).await,
        404,
        "ResourceNotFoundError",
    );
    assert_error(
        &dave
            .post(&format!("{r}/servers/{admin_vm}/stop"), json!({}))
            .await,
        404,
        "ResourceNotFoundError",
    );
    assert_error(
        &dave.delete(&format!("{r}/servers/{admin_vm}")).await,
        404,
        "ResourceNotFoundError",
    );
    let admin_disk =
        admin.get(&format!("{r}/servers/{admin_vm}")).await.body["server"]["disks_info"][0]["id"]
            .as_str()
            .expect("disk")
            .to_string();
    assert_error(
        &dave.get(&format!("{r}/disks/{admin_disk}")).await,
        404,
        "ResourceNotFoundError",
    );
    let disks = dave.get(&format!("{r}/disks")).await;
    assert!(
        disks.body["disks"].as_array().is_some_and(|d| d.len() == 1
            && d[0]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("dave-vm"))),
        "{disks:?}"
    );
    // Tasks likewise.
    let admin_tasks = admin.get(&format!("{r}/servers/{admin_vm}/tasks")).await;
    let task_id = admin_tasks.body["server"]["tasks"][0]["id"]
        .as_str()
        .expect("task")
        .to_string();
    assert_error(
        &dave.get(&format!("{r}/tasks/{task_id}")).await,
        404,
        "ResourceNotFoundError",
    );
    assert_error(
        &dave.get(&format!("{r}/servers/{admin_vm}/tasks")).await,
        404,
        "ResourceNotFoundError",
    );
    let tasks = dave.get(&format!("{r}/tasks?limit=100")).await;
    for t in tasks.body["tasks"].as_array().expect("tasks") {
        assert_ne!(t["obj_id"], json!(admin_vm), "{t}");
    }
    assert!(
        admin
            .get(&format!("{r}/tasks?scope=system&obj_id={dave_vm}"))
            .await
            .body["tasks"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
}

async fn bad_server_input_allocates_nothing(backend: Backend) {
    let p = Platform::start_on(backend);
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    assert_eq!(
        admin
            .post(&format!("{r}/servers"), vm("taken"))
            .await
            .status,
        200
    );
    wait_until(&admin, &format!("{r}/servers/taken"), 30, |b| {
        b["server"]["status"] == "running"
    })
    .await;
    let counts = |a: &Api| {
        let a = a.clone();
        let r = r.clone();
        async move {
            let s = a.get(&format!("{r}/servers?scope=system")).await.body["total"]
                .as_u64()
                .unwrap_or(0);
            let n = a.get(&format!("{r}/guestnetworks?scope=system")).await.body["total"]
                .as_u64()
                .unwrap_or(0);
            let d = a.get(&format!("{r}/disks?scope=system")).await.body["total"]
                .as_u64()
                .unwrap_or(0);
            let t = a.get(&format!("{r}/tasks?scope=system")).await.body["total"]
                .as_u64()
                .unwrap_or(0);
            (s, n, d, t)
        }
    };
    let before = counts(&admin).await;
    let base = |f: &dyn Fn(&mut Value)| {
        let mut b = vm("new-vm");
        f(&mut b);
        b
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            base(&|b| b["server"]["disks"] = json!([{"size": -1}])),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["disks"] = json!([{"size": 0}])),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["disks"] = json!([])),
            400,
            "MissingParameterError",
        ),
        (
            base(&|b| b["server"]["vcpu_count"] = json!(0)),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["vcpu_count"] = json!("lots")),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["vmem_size"] = json!(-512)),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["nets"] = json!([{"network": "nosuchnet"}])),
            404,
            "ResourceNotFoundError",
        ),
        (
            base(&|b| b["server"]["nets"] = json!([{"network": "net0", "address": "10.9.9.9"}])),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["nets"] = json!([{"network": "net0", "address": "not-an-ip"}])),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["nets"] = json!([{"network": "net0", "mac": "zz:zz"}])),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["hypervisor"] = json!("xen")),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["name"] = json!("taken")),
            409,
            "DuplicateNameError",
        ),
        (
            base(&|b| b["server"]["name"] = json!("bad'name")),
            400,
            "InputParameterError",
        ),
        (
            base(&|b| b["server"]["bogus_field"] = json!(1)),
            400,
            "InputParameterError",
        ),
        (base(&|b| b["count"] = json!(0)), 400, "InputParameterError"),
        (
            base(&|b| b["count"] = json!(10000)),
            400,
            "InputParameterError",
        ),
        (base(&|b| b["count"] = json!(2)), 200, ""),
    ];
    for (body, code, class) in cases {
        if code == 200 {
            continue;
        }
        let resp = admin.post(&format!("{r}/servers"), body.clone()).await;
        assert_error(&resp, code, class);
        let _ = body;
    }
    // Two servers with one fixed address is refused too.
    let mut two = vm("pair");
    two["server"]["nets"] = json!([{"network": "net0", "address": "10.0.0.200"}]);
    two["count"] = json!(2);
    assert_error(
        &admin.post(&format!("{r}/servers"), two).await,
        400,
        "InputParameterError",
    );
    // A wrong status for an action.
    let resp = admin
        .post(&format!("{r}/servers/taken/start"), json!({}))
        .await;
    assert_error(&resp, 400, "InvalidStatusError");
    cloudpods_testkit::assert_details(&resp.body, "in status running");
    assert_eq!(
        counts(&admin).await,
        before,
        "nothing may be allocated by refused requests"
    );
}
