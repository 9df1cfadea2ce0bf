//! Server actions through the real binaries with simulated hosts: each
//! action's happy path, its refusals in the wrong status, its failure path
//! (a simulated host failing that action) ending in the documented `*_fail`
//! status with nothing left behind, cold migration between hosts, the
//! recycle bin, and `climc server-create --wait`.

mod common;

use std::path::PathBuf;
use std::process::Child;

use common::*;
use serde_json::{Value, json};

on_both_databases!(
    actions_walk_the_status_machine,
    change_config_is_checked_against_the_host_and_undone_on_failure,
    failing_actions_end_in_their_fail_status_with_nothing_leaked,
);

// ---------------------------------------------------------------------------
// helpers

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

async fn server(admin: &Api, r: &str, id: &str) -> Value {
    admin.get(&format!("{r}/servers/{id}")).await.body["server"].clone()
}

async fn wait_status(admin: &Api, r: &str, id: &str, want: &str) -> Value {
    wait_until(admin, &format!("{r}/servers/{id}"), 60, |b| {
        b["server"]["status"] == want
    })
    .await["server"]
        .clone()
}

/// Create one server and wait until it settles in `want`.
async fn create(admin: &Api, r: &str, body: Value, want: &str) -> Value {
    let mut srv = json!({"vcpu_count": 1, "vmem_size": 512, "disks": [{"size": 1024}],
                         "nets": [{"network": "net0"}]});
    if let (Some(o), Some(extra)) = (srv.as_object_mut(), body.as_object()) {
        o.extend(extra.clone());
    }
    let resp = admin
        .post(&format!("{r}/servers"), json!({ "server": srv }))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = id_of(&resp.body["server"]);
    wait_status(admin, r, &id, want).await
}

async fn act(admin: &Api, r: &str, id: &str, action: &str, body: Value) -> Resp {
    admin
        .post(
            &format!("{r}/servers/{id}/{action}"),
            json!({ "server": body }),
        )
        .await
}

async fn act_ok(admin: &Api, r: &str, id: &str, action: &str, body: Value) -> Value {
    let resp = act(admin, r, id, action, body).await;
    assert_eq!(resp.status, 200, "{action}: {resp:?}");
    resp.body["server"].clone()
}

fn refused(resp: &Resp, action: &str, status: &str) {
    assert_error(resp, 400, "InvalidStatusError");
    assert_eq!(
        resp.body["details"],
        json!(format!("Cannot do {action} server in status {status}")),
        "{resp:?}"
    );
}

async fn disk_ids(admin: &Api, r: &str, id: &str) -> Vec<String> {
    server(admin, r, id).await["disks_info"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(id_of)
        .collect()
}

/// Disks the region knows (every project).
async fn all_disks(admin: &Api, r: &str) -> Vec<Value> {
    admin
        .get(&format!("{r}/disks?scope=system&limit=2048"))
        .await
        .body["disks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sim_disks(state: &Value) -> Vec<String> {
    state["disks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn sim_guests(state: &Value) -> Vec<String> {
    state["guests"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

async fn tasks_of(admin: &Api, r: &str, id: &str) -> Value {
    admin.get(&format!("{r}/servers/{id}/tasks")).await.body["server"].clone()
}

/// A simulated host whose failure list can change across restarts while
/// it keeps its records (the state file outlives the process).
struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    name: String,
    env: Vec<(String, String)>,
    host_id: String,
}

impl Agent {
    fn start(p: &Platform, name: &str, fail: &[&str]) -> Agent {
        let env = p.agent_env();
        let mut a = Agent {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            name: name.to_string(),
            env,
            host_id: String::new(),
        };
        a.spawn(fail);
        a
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("sim-state.json")
    }

    fn state(&self) -> Value {
        std::fs::read_to_string(self.state_file())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// (Re)start the agent failing `fail`; its records stay.
    fn spawn(&mut self, fail: &[&str]) {
        stop_child(&mut self.child);
        let args = SimOpts {
            name: self.name.clone(),
            fail: fail.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }
        .args(self.dir.path());
        let (child, ready) = spawn_agent(self.dir.path(), &args, &self.env);
        self.child = Some(child);
        self.host_id = ready["host_id"].as_str().unwrap_or_default().to_string();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

// ---------------------------------------------------------------------------
// happy paths and refusals

async fn actions_walk_the_status_machine(backend: Backend) {
    let p = Platform::start_on(backend);
    let admin = p.admin_with_network().await;
    let host = p.sim_host(SimOpts::default());
    let r = p.region_url();

    let vm = create(&admin, &r, json!({"name": "vm1"}), "ready").await;
    let id = id_of(&vm);

    // change-config: more CPUs and memory, grow the system disk, add a data disk.
    let bad = act(
        &admin,
        &r,
        &id,
        "change-config",
        json!({"vcpu_count": 1, "vmem_size": 512}),
    )
    .await;
    assert_error(&bad, 400, "InputParameterError");
    let shrink = act(
        &admin,
        &r,
        &id,
        "change-config",
        json!({"disks": [{"size": 10}]}),
    )
    .await;
    assert_error(&shrink, 400, "InputParameterError");
    let out = act_ok(
        &admin,
        &r,
        &id,
        "change-config",
        json!({"vcpu_count": 2, "vmem_size": "2g", "disks": [{"size": 2048}, {"size": 512}]}),
    )
    .await;
    assert_eq!(
        out["vcpu_count"], 2,
        "the new size is reserved at once: {out}"
    );
    let vm = wait_status(&admin, &r, &id, "ready").await;
    assert_eq!(
        (vm["vcpu_count"].clone(), vm["vmem_size"].clone()),
        (json!(2), json!(2048))
    );
    let sizes: Vec<i64> = vm["disks_info"]
        .as_array()
        .expect("disks_info")
        .iter()
        .map(|d| d["size"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(sizes, [2048, 512], "{vm}");
    assert_eq!(vm["pending_storage"], json!(0));

    // Running: change-config is refused, the rest works on a live guest.
    act_ok(&admin, &r, &id, "start", json!({})).await;
    wait_status(&admin, &r, &id, "running").await;
    let resp = act(&admin, &r, &id, "change-config", json!({"vcpu_count": 4})).await;
    refused(&resp, "change-config", "running");

    // A second server gives up its data disk, which vm1 then takes.
    let vm2 = create(
        &admin,
        &r,
        json!({"name": "vm2", "disks": [{"size": 1024}, {"size": 256}]}),
        "ready",
    )
    .await;
    let id2 = id_of(&vm2);
    let data = disk_ids(&admin, &r, &id2).await[1].clone();
    let sys2 = disk_ids(&admin, &r, &id2).await[0].clone();
    let resp = act(&admin, &r, &id2, "detachdisk", json!({"disk_id": sys2})).await;
    assert_error(&resp, 400, "InputParameterError");
    act_ok(&admin, &r, &id2, "detachdisk", json!({"disk_id": data})).await;
    wait_status(&admin, &r, &id2, "ready").await;
    assert_eq!(disk_ids(&admin, &r, &id2).await.len(), 1);
    let d = admin.get(&format!("{r}/disks/{data}")).await;
    assert_eq!(d.body["disk"]["status"], "ready", "{d:?}");

    act_ok(&admin, &r, &id, "attachdisk", json!({"disk_id": data})).await;
    wait_status(&admin, &r, &id, "running").await;
    assert!(disk_ids(&admin, &r, &id).await.contains(&data));
    let twice = act(&admin, &r, &id2, "attachdisk", json!({"disk_id": data})).await;
    assert_error(&twice, 400, "InputParameterError");
    // Detach and delete it, from the running guest.
    act_ok(
        &admin,
        &r,
        &id,
        "detachdisk",
        json!({"disk_id": data, "keep_disk": false}),
    )
    .await;
    wait_status(&admin, &r, &id, "running").await;
    wait_until(&admin, &format!("{r}/disks/{data}"), 30, |b| {
        b["code"] == 404
    })
    .await;

    // Snapshot of the system disk of the running guest.
    let sys = disk_ids(&admin, &r, &id).await[0].clone();
    act_ok(&admin, &r, &id, "disk-snapshot", json!({"name": "snap1"})).await;
    wait_status(&admin, &r, &id, "running").await;
    let snaps = admin
        .get(&format!("{r}/snapshots?disk_id={sys}&scope=system"))
        .await;
    assert_eq!(snaps.body["snapshots"][0]["name"], "snap1", "{snaps:?}");
    assert_eq!(snaps.body["snapshots"][0]["status"], "ready", "{snaps:?}");
    let dup = act(&admin, &r, &id, "disk-snapshot", json!({"name": "snap1"})).await;
    assert_error(&dup, 409, "DuplicateNameError");

    // A new password, deployed while running; never shown by the task API.
    let short = act(&admin, &r, &id, "set-password", json!({"password": "abc"})).await;
    assert_error(&short, 400, "InputParameterError");
    act_ok(
        &admin,
        &r,
        &id,
        "set-password",
        json!({"password": "Sup3r-Secret"}),
    )
    .await;
    wait_status(&admin, &r, &id, "running").await;
    let tasks = tasks_of(&admin, &r, &id).await;
    assert!(
        tasks["tasks"].as_array().is_some_and(|a| a
            .iter()
            .any(|t| t["task_name"] == "GuestDeployTask" && t["status"] == "complete")),
        "{tasks}"
    );
    assert!(!tasks.to_string().contains("Sup3r-Secret"));
    assert!(
        !server(&admin, &r, &id)
            .await
            .to_string()
            .contains("Sup3r-Secret")
    );

    // Rebuild the system disk from another image: a new disk, running again.
    act_ok(
        &admin,
        &r,
        &id,
        "rebuild-root",
        json!({"image_id": "img-2"}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "running").await;
    let new_sys = &vm["disks_info"][0];
    assert_ne!(id_of(new_sys), sys, "{vm}");
    assert_eq!(new_sys["image_id"], "img-2");
    assert_eq!(new_sys["size"], 2048);
    wait_until(&admin, &format!("{r}/disks/{sys}"), 30, |b| {
        b["code"] == 404
    })
    .await;
    // Nothing leaked on the host: it holds exactly the disks the region knows.
    let mut known: Vec<String> = all_disks(&admin, &r).await.iter().map(id_of).collect();
    let mut held = sim_disks(&host.state());
    known.sort();
    held.sort();
    assert_eq!(known, held);

    // Console.
    let vnc = admin.get(&format!("{r}/servers/{id}/vnc")).await;
    assert_eq!(vnc.status, 200, "{vnc:?}");
    assert_eq!(vnc.body["server"]["port"], 5900);

    // Security groups, synced to the running guest.
    let sg = admin
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "sg1"}}),
        )
        .await;
    assert_eq!(sg.status, 200, "{sg:?}");
    let groups = |vm: &Value| -> Vec<String> {
        let mut g: Vec<String> = vm["secgroups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|x| x["name"].as_str().unwrap_or_default().to_string())
            .collect();
        g.sort();
        g
    };
    // Created without a choice, the server is in the project's default group.
    assert_eq!(groups(&server(&admin, &r, &id).await), ["default"]);
    act_ok(
        &admin,
        &r,
        &id,
        "add-secgroup",
        json!({"secgroup_ids": ["sg1"]}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "running").await;
    assert_eq!(groups(&vm), ["default", "sg1"], "{vm}");
    let dup = act(
        &admin,
        &r,
        &id,
        "add-secgroup",
        json!({"secgroup_ids": ["sg1"]}),
    )
    .await;
    assert_error(&dup, 400, "InputParameterError");
    let missing = act(
        &admin,
        &r,
        &id,
        "add-secgroup",
        json!({"secgroup_ids": ["nope"]}),
    )
    .await;
    assert_error(&missing, 404, "ResourceNotFoundError");
    act_ok(
        &admin,
        &r,
        &id,
        "del-secgroup",
        json!({"secgroup_ids": ["sg1"]}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "running").await;
    assert_eq!(groups(&vm), ["default"]);
    act_ok(
        &admin,
        &r,
        &id,
        "set-secgroup",
        json!({"secgroup_ids": ["sg1"]}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "running").await;
    assert_eq!(groups(&vm), ["sg1"]);
    assert_eq!(vm["secgroup"], "sg1");

    // Stopped: no console; migrate needs another host.
    act_ok(&admin, &r, &id, "stop", json!({})).await;
    wait_status(&admin, &r, &id, "ready").await;
    let resp = admin.get(&format!("{r}/servers/{id}/vnc")).await;
    assert_error(&resp, 400, "InvalidStatusError");
    let resp = act(&admin, &r, &id, "migrate", json!({})).await;
    assert_error(&resp, 400, "InsufficientResourceError");
    assert_eq!(server(&admin, &r, &id).await["status"], "ready");
    let resp = act(&admin, &r, &id, "detachdisk", json!({})).await;
    assert_error(&resp, 400, "MissingParameterError");

    // Purge forgets vm2 (admin only).
    act_ok(&admin, &r, &id2, "purge", json!({})).await;
    wait_until(&admin, &format!("{r}/servers/{id2}"), 30, |b| {
        b["code"] == 404
    })
    .await;
    wait_until(
        &admin,
        &format!("{r}/tasks?scope=system&is_open=true"),
        30,
        |b| b["tasks"].as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
}

// ---------------------------------------------------------------------------
// migration

/// A status report from an agent while a task changes the guest (say, a
/// live-migration target's agent seeing its waiting QEMU) does not
/// overwrite the task's status: the migration still ends on the target.
#[tokio::test]
async fn syncstatus_leaves_a_guest_a_task_is_changing_alone() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let slow = |name: &str| SimOpts {
        name: name.into(),
        delay_ms: 1500,
        ..Default::default()
    };
    let _a = p.sim_host(slow("host-a"));
    let _b = p.sim_host(slow("host-b"));
    let r = p.region_url();
    let vm = create(
        &admin,
        &r,
        json!({"name": "busy", "prefer_host": "host-a", "auto_start": true}),
        "running",
    )
    .await;
    let id = id_of(&vm);
    act_ok(
        &admin,
        &r,
        &id,
        "live-migrate",
        json!({"prefer_host": "host-b"}),
    )
    .await;
    let busy = wait_until(&admin, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["status"] == "live_migrating"
    })
    .await;
    assert_eq!(busy["server"]["host"], "host-a", "{busy}");
    let resp = act(&admin, &r, &id, "syncstatus", json!({})).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["server"]["status"], "live_migrating", "{resp:?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let now = server(&admin, &r, &id).await;
    assert_ne!(now["status"], "running", "synced back mid-migration: {now}");
    let vm = wait_status(&admin, &r, &id, "running").await;
    assert_eq!(vm["host"], "host-b", "{vm}");
}

#[tokio::test]
async fn cold_migration_moves_guest_and_disks_and_undoes_failures() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let a = p.sim_host(SimOpts {
        name: "host-a".into(),
        ..Default::default()
    });
    let b = p.sim_host(SimOpts {
        name: "host-b".into(),
        ..Default::default()
    });
    let bad_disk = p.sim_host(SimOpts {
        name: "host-c".into(),
        fail: vec!["disk_create".into()],
        ..Default::default()
    });
    let bad_deploy = p.sim_host(SimOpts {
        name: "host-d".into(),
        fail: vec!["deploy".into()],
        ..Default::default()
    });
    let r = p.region_url();

    let vm = create(
        &admin,
        &r,
        json!({"name": "mig", "prefer_host": "host-a", "disks": [{"size": 1024}, {"size": 512}],
               "auto_start": true}),
        "running",
    )
    .await;
    let id = id_of(&vm);
    let ip = vm["ips"].clone();
    let resp = act(&admin, &r, &id, "migrate", json!({"prefer_host": "host-b"})).await;
    refused(&resp, "migrate", "running");
    let resp = act(&admin, &r, &id, "stop", json!({})).await;
    assert_eq!(resp.status, 200);
    wait_status(&admin, &r, &id, "ready").await;
    let resp = act(&admin, &r, &id, "migrate", json!({"prefer_host": "host-a"})).await;
    assert_error(&resp, 400, "InputParameterError");

    act_ok(&admin, &r, &id, "migrate", json!({"prefer_host": "host-b"})).await;
    let vm = wait_status(&admin, &r, &id, "ready").await;
    assert_eq!(vm["host"], "host-b", "{vm}");
    assert_eq!(vm["ips"], ip, "the addresses stay");
    let storages: Vec<String> = vm["disks_info"]
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| d["storage_id"].as_str().unwrap_or_default().to_string())
        .collect();
    for st in &storages {
        let s = admin.get(&format!("{r}/storages/{st}")).await;
        assert!(
            s.body["storage"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("host-b")),
            "{s:?}"
        );
    }
    let disks = disk_ids(&admin, &r, &id).await;
    wait_until(&admin, &format!("{r}/servers/{id}/tasks"), 30, |_| {
        sim_disks(&a.state()).is_empty()
    })
    .await;
    assert!(sim_guests(&a.state()).is_empty(), "{}", a.state());
    let mut on_b = sim_disks(&b.state());
    on_b.sort();
    let mut want = disks.clone();
    want.sort();
    assert_eq!(on_b, want);
    assert_eq!(sim_guests(&b.state()), vec![id.clone()]);
    act_ok(&admin, &r, &id, "start", json!({})).await;
    wait_status(&admin, &r, &id, "running").await;
    act_ok(&admin, &r, &id, "stop", json!({})).await;
    wait_status(&admin, &r, &id, "ready").await;

    // The target cannot create the disks: nothing moves.
    act_ok(&admin, &r, &id, "migrate", json!({"prefer_host": "host-c"})).await;
    let vm = wait_status(&admin, &r, &id, "migrate_failed").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("simulated failure of disk_create")),
        "{vm}"
    );
    assert_eq!(vm["host"], "host-b");
    assert!(sim_disks(&bad_disk.state()).is_empty());
    assert_eq!(sim_disks(&b.state()).len(), 2);
    // Recover, then a target whose deploy fails: its disk copies go again.
    act_ok(&admin, &r, &id, "syncstatus", json!({})).await;
    wait_status(&admin, &r, &id, "ready").await;
    act_ok(&admin, &r, &id, "migrate", json!({"prefer_host": "host-d"})).await;
    let vm = wait_status(&admin, &r, &id, "migrate_failed").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("deploy")),
        "{vm}"
    );
    assert_eq!(vm["host"], "host-b");
    assert!(
        sim_disks(&bad_deploy.state()).is_empty(),
        "{}",
        bad_deploy.state()
    );
    assert!(sim_guests(&bad_deploy.state()).is_empty());
    assert_eq!(sim_disks(&b.state()).len(), 2);
    let storages_after: Vec<String> = vm["disks_info"]
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| d["storage_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(storages_after, storages);

    wait_until(
        &admin,
        &format!("{r}/tasks?scope=system&is_open=true"),
        30,
        |b| b["tasks"].as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
}

// ---------------------------------------------------------------------------
// capacity, quota and failing actions

async fn change_config_is_checked_against_the_host_and_undone_on_failure(backend: Backend) {
    let p = Platform::start_on(backend);
    let admin = p.admin_with_network().await;
    let _small = p.sim_host(SimOpts {
        name: "small".into(),
        cpu: 2,
        mem_mb: 4096,
        ..Default::default()
    });
    let bad = p.sim_host(SimOpts {
        name: "bad-resize".into(),
        fail: vec!["disk_resize".into()],
        ..Default::default()
    });
    let r = p.region_url();
    let vm = create(
        &admin,
        &r,
        json!({"name": "cc", "prefer_host": "small"}),
        "ready",
    )
    .await;
    let id = id_of(&vm);

    let resp = act(&admin, &r, &id, "change-config", json!({"vmem_size": 8192})).await;
    assert_error(&resp, 400, "InsufficientResourceError");
    let details = resp.body["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("small") && details.contains("memory"),
        "{details}"
    );
    let resp = act(&admin, &r, &id, "change-config", json!({"vcpu_count": 64})).await;
    assert_error(&resp, 400, "InsufficientResourceError");
    cloudpods_testkit::assert_details(&resp.body, "CPU");
    // Its own usage is not counted against it: 4 GB of 4 GB fits.
    act_ok(&admin, &r, &id, "change-config", json!({"vmem_size": 4096})).await;
    let vm = wait_status(&admin, &r, &id, "ready").await;
    assert_eq!(vm["vmem_size"], 4096);
    let after = server(&admin, &r, &id).await;
    assert_eq!(
        (after["vcpu_count"].clone(), after["status"].clone()),
        (json!(1), json!("ready"))
    );

    // A host that cannot grow disks: change_flavor_fail, everything undone.
    let vm = create(
        &admin,
        &r,
        json!({"name": "cc2", "prefer_host": "bad-resize"}),
        "ready",
    )
    .await;
    let id2 = id_of(&vm);
    let before_disks = all_disks(&admin, &r).await.len();
    act_ok(
        &admin,
        &r,
        &id2,
        "change-config",
        json!({"vcpu_count": 4, "vmem_size": 2048, "disks": [{"size": 4096}, {"size": 1024}]}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id2, "change_flavor_fail").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("simulated failure of disk_resize")),
        "{vm}"
    );
    assert_eq!(
        (vm["vcpu_count"].clone(), vm["vmem_size"].clone()),
        (json!(1), json!(512))
    );
    assert_eq!(vm["pending_storage"], json!(0));
    assert_eq!(vm["disks_info"].as_array().map(Vec::len), Some(1));
    assert_eq!(vm["disks_info"][0]["size"], 1024);
    assert_eq!(vm["disks_info"][0]["status"], "ready");
    assert_eq!(all_disks(&admin, &r).await.len(), before_disks);
    assert_eq!(sim_disks(&bad.state()).len(), 1, "{}", bad.state());
    // Wrong status until recovered.
    let resp = act(&admin, &r, &id2, "start", json!({})).await;
    refused(&resp, "start", "change_flavor_fail");
    act_ok(&admin, &r, &id2, "syncstatus", json!({})).await;
    wait_status(&admin, &r, &id2, "ready").await;

    // Quota: a project limited to 2 CPUs cannot grow past them.
    let q = admin
        .post(&format!("{r}/quotas"), json!({"quota": {"cpu": 2}}))
        .await;
    if q.status == 200 {
        let resp = act(&admin, &r, &id2, "change-config", json!({"vcpu_count": 8})).await;
        assert_error(&resp, 400, "OutOfQuotaError");
        assert_eq!(server(&admin, &r, &id2).await["vcpu_count"], 1);
    }
}

async fn failing_actions_end_in_their_fail_status_with_nothing_leaked(backend: Backend) {
    let p = Platform::start_on(backend);
    let admin = p.admin_with_network().await;
    let r = p.region_url();
    let _no_start = p.sim_host(SimOpts {
        name: "no-start".into(),
        fail: vec!["start".into(), "disk_snapshot".into()],
        ..Default::default()
    });
    let no_sync = p.sim_host(SimOpts {
        name: "no-sync".into(),
        fail: vec!["sync".into()],
        ..Default::default()
    });
    let mut flaky = Agent::start(&p, "flaky", &[]);

    // start fails: start_fail with the simulated reason; the guest keeps
    // its address and disk (it exists, it just does not run).
    let vm = create(
        &admin,
        &r,
        json!({"name": "nostart", "prefer_host": "no-start", "auto_start": true}),
        "start_fail",
    )
    .await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("simulated failure of start")),
        "{vm}"
    );
    let id = id_of(&vm);
    // snapshot fails: snapshot_failed, no snapshot left behind.
    let resp = act(&admin, &r, &id, "disk-snapshot", json!({})).await;
    refused(&resp, "snapshot", "start_fail");
    act_ok(&admin, &r, &id, "syncstatus", json!({})).await;
    wait_status(&admin, &r, &id, "ready").await;
    act_ok(&admin, &r, &id, "disk-snapshot", json!({"name": "never"})).await;
    let vm = wait_status(&admin, &r, &id, "snapshot_failed").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("disk_snapshot")),
        "{vm}"
    );
    let snaps = admin.get(&format!("{r}/snapshots?scope=system")).await;
    assert_eq!(snaps.body["snapshots"], json!([]), "{snaps:?}");

    // Hot-plug fails on a running guest: attach_disk_fail, disk free again.
    let vm = create(
        &admin,
        &r,
        json!({"name": "nosync", "prefer_host": "no-sync", "auto_start": true,
               "disks": [{"size": 1024}, {"size": 128}]}),
        "running",
    )
    .await;
    let id = id_of(&vm);
    let helper = create(
        &admin,
        &r,
        json!({"name": "helper", "prefer_host": "no-sync", "disks": [{"size": 1024}, {"size": 128}]}),
        "ready",
    )
    .await;
    let hid = id_of(&helper);
    let spare = disk_ids(&admin, &r, &hid).await[1].clone();
    act_ok(&admin, &r, &hid, "detachdisk", json!({"disk_id": spare})).await;
    wait_status(&admin, &r, &hid, "ready").await;
    act_ok(&admin, &r, &id, "attachdisk", json!({"disk_id": spare})).await;
    let vm = wait_status(&admin, &r, &id, "attach_disk_fail").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("sync")),
        "{vm}"
    );
    assert!(!disk_ids(&admin, &r, &id).await.contains(&spare));
    let d = admin.get(&format!("{r}/disks/{spare}")).await;
    assert_eq!(d.body["disk"]["status"], "ready", "{d:?}");
    let joints = admin
        .get(&format!("{r}/guestdisks?scope=system&disk_id={spare}"))
        .await;
    assert_eq!(joints.body["guestdisks"], json!([]), "{joints:?}");
    assert_eq!(sim_disks(&no_sync.state()).len(), 4);
    // A security group change that cannot reach the running guest:
    // sync_fail, the groups as they were.
    act_ok(&admin, &r, &id, "syncstatus", json!({})).await;
    wait_status(&admin, &r, &id, "running").await;
    let sg = admin
        .post(
            &format!("{r}/secgroups"),
            json!({"secgroup": {"name": "web"}}),
        )
        .await;
    assert_eq!(sg.status, 200, "{sg:?}");
    act_ok(
        &admin,
        &r,
        &id,
        "add-secgroup",
        json!({"secgroup_ids": ["web"]}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "sync_fail").await;
    let names: Vec<&str> = vm["secgroups"]
        .as_array()
        .map(|a| a.iter().filter_map(|g| g["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["default"], "{vm}");

    // Deploys fail on a host whose agent restarted with a fault: set-password
    // ends in deploy_fail, rebuild-root in rebuild_root_fail with the old
    // system disk untouched and the new one gone.
    let vm = create(
        &admin,
        &r,
        json!({"name": "redeploy", "prefer_host": "flaky", "auto_start": true}),
        "running",
    )
    .await;
    let id = id_of(&vm);
    let sys = disk_ids(&admin, &r, &id).await[0].clone();
    let disks_before = all_disks(&admin, &r).await.len();
    flaky.spawn(&["deploy"]);
    act_ok(
        &admin,
        &r,
        &id,
        "rebuild-root",
        json!({"image_id": "img-x"}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "rebuild_root_fail").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("simulated failure of deploy")),
        "{vm}"
    );
    assert_eq!(disk_ids(&admin, &r, &id).await, vec![sys.clone()]);
    assert_eq!(all_disks(&admin, &r).await.len(), disks_before);
    assert_eq!(
        sim_disks(&flaky.state()),
        vec![sys.clone()],
        "{}",
        flaky.state()
    );
    // The guest was brought back up as it was.
    assert_eq!(vm["power_states"], "on", "{vm}");
    act_ok(&admin, &r, &id, "syncstatus", json!({})).await;
    wait_status(&admin, &r, &id, "running").await;
    act_ok(
        &admin,
        &r,
        &id,
        "set-password",
        json!({"reset_password": true}),
    )
    .await;
    let vm = wait_status(&admin, &r, &id, "deploy_fail").await;
    assert!(
        vm["fail_reason"]
            .as_str()
            .is_some_and(|f| f.contains("deploy")),
        "{vm}"
    );
    // After the fault is gone the guest recovers and deploys.
    flaky.spawn(&[]);
    act_ok(&admin, &r, &id, "syncstatus", json!({})).await;
    wait_status(&admin, &r, &id, "running").await;
    act_ok(
        &admin,
        &r,
        &id,
        "rebuild-root",
        json!({"image_id": "img-x"}),
    )
    .await;
    wait_status(&admin, &r, &id, "running").await;
    let now = disk_ids(&admin, &r, &id).await;
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], sys);
    let _ = &flaky.host_id;

    let open = wait_until(
        &admin,
        &format!("{r}/tasks?scope=system&is_open=true"),
        30,
        |b| b["tasks"].as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
    assert_eq!(open["tasks"], json!([]));
}

// ---------------------------------------------------------------------------
// the recycle bin

#[tokio::test]
async fn pending_delete_lifecycle() {
    let p = Platform::start_with(Opts {
        env: vec![
            (
                "CLOUDPODS_REGION__ENABLE_PENDING_DELETE".into(),
                "true".into(),
            ),
            (
                "CLOUDPODS_REGION__PENDING_DELETE_EXPIRE_SECONDS".into(),
                "6".into(),
            ),
        ],
        ..Default::default()
    });
    let admin = p.admin_with_network().await;
    let host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    let vm = create(
        &admin,
        &r,
        json!({"name": "bin", "auto_start": true}),
        "running",
    )
    .await;
    let id = id_of(&vm);

    // DELETE parks the stopped server in the recycle bin.
    let resp = admin.delete(&format!("{r}/servers/{id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let parked = wait_until(&admin, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["pending_deleted"] == true && b["server"]["status"] == "ready"
    })
    .await;
    assert_eq!(parked["server"]["power_states"], "off");
    let list = admin.get(&format!("{r}/servers?scope=system")).await;
    assert_eq!(list.body["servers"], json!([]), "{list:?}");
    let list = admin
        .get(&format!("{r}/servers?scope=system&pending_delete=true"))
        .await;
    assert_eq!(list.body["servers"][0]["id"], json!(id), "{list:?}");
    let resp = act(&admin, &r, &id, "start", json!({})).await;
    assert_error(&resp, 400, "InvalidStatusError");

    // cancel-delete brings it back.
    act_ok(&admin, &r, &id, "cancel-delete", json!({})).await;
    let back = server(&admin, &r, &id).await;
    assert_eq!(back["pending_deleted"], false);
    let list = admin.get(&format!("{r}/servers?scope=system")).await;
    assert_eq!(list.body["servers"][0]["id"], json!(id));
    let resp = act(&admin, &r, &id, "cancel-delete", json!({})).await;
    assert_error(&resp, 400, "InvalidStatusError");

    // Parked again, it is deleted for real once the expiry passes: the
    // address and the disk go too.
    let resp = admin.delete(&format!("{r}/servers/{id}")).await;
    assert_eq!(resp.status, 200);
    wait_until(&admin, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["pending_deleted"] == true
    })
    .await;
    wait_until(&admin, &format!("{r}/servers/{id}"), 60, |b| {
        b["code"] == 404
    })
    .await;
    assert_eq!(all_disks(&admin, &r).await, Vec::<Value>::new());
    let nics = admin.get(&format!("{r}/guestnetworks?scope=system")).await;
    assert_eq!(nics.body["guestnetworks"], json!([]), "{nics:?}");
    wait_until(&admin, &format!("{r}/servers?scope=system"), 30, |_| {
        sim_guests(&host.state()).is_empty() && sim_disks(&host.state()).is_empty()
    })
    .await;

    // override_pending_delete skips the bin.
    let vm = create(&admin, &r, json!({"name": "now"}), "ready").await;
    let id = id_of(&vm);
    let resp = admin
        .delete(&format!("{r}/servers/{id}?override_pending_delete=true"))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_until(&admin, &format!("{r}/servers/{id}"), 30, |b| {
        b["code"] == 404
    })
    .await;
}

// ---------------------------------------------------------------------------
// climc

#[tokio::test]
async fn climc_creates_servers_and_waits() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _good = p.sim_host(SimOpts::default());
    let _bad = p.sim_host(SimOpts {
        name: "bad".into(),
        fail: vec!["deploy".into()],
        ..Default::default()
    });
    let r = p.region_url();

    let (ok, out, err) = p.climc(&[
        "server-create",
        "web",
        "--ncpu",
        "1",
        "--mem-spec",
        "512m",
        "--disk",
        "1g",
        "--net",
        "net0",
        "--count",
        "5",
        "--auto-start",
        "--prefer-host",
        "host0",
        "--wait",
    ]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.matches("running").count(), 5, "{out}");
    assert!(out.contains("10.0.0."), "{out}");
    let list = admin.get(&format!("{r}/servers?scope=system")).await;
    let servers = list.body["servers"].as_array().cloned().unwrap_or_default();
    assert_eq!(servers.len(), 5);
    assert!(servers.iter().all(|s| s["status"] == "running"));

    let (ok, out, _) = p.climc(&["server-list", "--scope", "system", "--status", "running"]);
    assert!(ok);
    for col in ["Host", "Ips", "Vcpu_count", "Vmem_size", "Hypervisor"] {
        assert!(
            out.to_lowercase().contains(&col.to_lowercase()),
            "{col}: {out}"
        );
    }
    assert!(out.contains("host0"), "{out}");

    // Stop two with --wait, then their tasks.
    let a = id_of(&servers[0]);
    let b = id_of(&servers[1]);
    let (ok, out, err) = p.climc(&["server-stop", &a, &b, "--wait"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(server(&admin, &r, &a).await["status"], "ready");
    assert_eq!(server(&admin, &r, &b).await["status"], "ready");
    let (ok, out, _) = p.climc(&["server-tasks", &a]);
    assert!(ok && out.contains("GuestStopTask"), "{out}");
    let (ok, out, err) = p.climc(&[
        "server-change-config",
        &a,
        "--ncpu",
        "2",
        "--mem-spec",
        "1g",
        "--wait",
    ]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(server(&admin, &r, &a).await["vcpu_count"], 2);
    let (ok, _, err) = p.climc(&["server-start", &a]);
    assert!(ok, "{err}");
    let (ok, _, err) = p.climc(&["server-change-config", &b, "--ncpu", "1000"]);
    assert!(!ok);
    assert!(err.contains("InputParameterError"), "{err}");

    // A host that cannot deploy: --wait fails and says why.
    let (ok, out, err) = p.climc(&[
        "server-create",
        "broken",
        "--disk",
        "1g",
        "--net",
        "net0",
        "--prefer-host",
        "bad",
        "--wait",
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("deploy_fail") && err.contains("simulated failure of deploy"),
        "{err}"
    );

    // Delete with --wait.
    let (ok, _, err) = p.climc(&["server-delete", &b, "--wait"]);
    assert!(ok, "{err}");
    assert_eq!(admin.get(&format!("{r}/servers/{b}")).await.status, 404);
}

// ---------------------------------------------------------------------------
// The action tasks in the omicron style, in process: every step run twice
// ends as a single run would, and a failure injected after each step is
// undone and leaves the guest in its `*_fail` status with the host holding
// exactly the disks the database knows. The simulated hypervisor is the
// real `SimDriver` behind the real agent router.

/// Steps of each action task (as the task types declare them).
const SAGAS: &[(&str, &[&str])] = &[
    (
        "GuestChangeConfigTask",
        &["reserve", "resize", "newdisks", "finish"],
    ),
    ("GuestAttachDiskTask", &["attach", "sync", "finish"]),
    ("GuestDetachDiskTask", &["detach", "sync", "finish"]),
    ("GuestDiskSnapshotTask", &["snapshot", "finish"]),
    (
        "GuestRebuildRootTask",
        &["stop", "create", "deploy", "swap", "finish"],
    ),
    ("GuestDeployTask", &["deploy"]),
    (
        "GuestMigrateTask",
        &["prepare", "disks", "deploy", "switch", "cleanup", "finish"],
    ),
    (
        "GuestLiveMigrateTask",
        &["prepare", "target", "send", "resume", "cleanup", "finish"],
    ),
    ("GuestSyncConfigTask", &["sync"]),
    ("AgentRequestTask", &["request"]),
];

/// Run `task`'s action once on a fresh guest; with `fail` the task must
/// fail and leave everything as it was, else succeed.
async fn saga_case(lab: &saga::Lab, task: &str, fail: Option<&str>) {
    use saga::st;
    let what = format!("{task} failing at {fail:?}");
    let ok = fail.is_none();
    match task {
        "GuestChangeConfigTask" => {
            let g = lab.create("h1", &[1024], false).await;
            let t = lab
                .perform(
                    &g,
                    "change-config",
                    json!({"vcpu_count": 2, "vmem_size": 1024, "disks": [{"size": 2048}, {"size": 512}]}),
                    task,
                )
                .await;
            let guest = lab.guest(&g).await;
            let sizes: Vec<i64> = {
                let mut v = Vec::new();
                for d in lab.disks(&g).await {
                    v.push(
                        lab.disk(&d).await.expect("disk")["disk_size"]
                            .as_i64()
                            .unwrap_or(0),
                    );
                }
                v
            };
            assert_eq!(guest["pending_storage"], json!(0), "{what}");
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "ready"), "{what}");
                assert_eq!(guest["vcpu_count"], json!(2));
                assert_eq!(sizes, [2048, 512], "{what}");
            } else {
                assert_eq!(
                    (st(&t), st(&guest)),
                    ("failed", "change_flavor_fail"),
                    "{what}"
                );
                assert_eq!(
                    (guest["vcpu_count"].clone(), guest["vmem_size"].clone()),
                    (json!(1), json!(512)),
                    "{what}"
                );
                // A grown disk stays grown (disks do not shrink); the new one is gone.
                assert_eq!(sizes.len(), 1, "{what}");
            }
        }
        "GuestAttachDiskTask" => {
            let g = lab.create("h1", &[512], true).await;
            let d = lab.spare_disk("h1").await;
            let t = lab
                .perform(&g, "attachdisk", json!({"disk_id": d}), task)
                .await;
            let guest = lab.guest(&g).await;
            let disk = lab.disk(&d).await.expect("disk");
            assert_eq!(st(&disk), "ready", "{what}");
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "running"), "{what}");
                assert!(lab.disks(&g).await.contains(&d));
            } else {
                assert_eq!(
                    (st(&t), st(&guest)),
                    ("failed", "attach_disk_fail"),
                    "{what}"
                );
                assert!(!lab.disks(&g).await.contains(&d), "{what}");
            }
        }
        "GuestDetachDiskTask" => {
            let g = lab.create("h1", &[512, 256], true).await;
            let d = lab.disks(&g).await[1].clone();
            let t = lab
                .perform(
                    &g,
                    "detachdisk",
                    json!({"disk_id": d, "keep_disk": false}),
                    task,
                )
                .await;
            let guest = lab.guest(&g).await;
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "running"), "{what}");
                assert!(lab.disk(&d).await.is_none(), "{what}");
                assert_eq!(lab.disks(&g).await.len(), 1);
            } else {
                assert_eq!(
                    (st(&t), st(&guest)),
                    ("failed", "detach_disk_fail"),
                    "{what}"
                );
                assert!(lab.disks(&g).await.contains(&d), "{what}");
                assert_eq!(st(&lab.disk(&d).await.expect("disk")), "ready", "{what}");
            }
        }
        "GuestDiskSnapshotTask" => {
            let g = lab.create("h1", &[512], true).await;
            let d = lab.disks(&g).await[0].clone();
            let t = lab
                .perform(&g, "disk-snapshot", json!({"disk_id": d}), task)
                .await;
            let guest = lab.guest(&g).await;
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "running"), "{what}");
                assert_eq!(lab.live_snapshots(&d).await, 1, "{what}");
            } else {
                assert_eq!(
                    (st(&t), st(&guest)),
                    ("failed", "snapshot_failed"),
                    "{what}"
                );
                assert_eq!(lab.live_snapshots(&d).await, 0, "{what}");
            }
        }
        "GuestRebuildRootTask" => {
            let g = lab.create("h1", &[512], true).await;
            let sys = lab.disks(&g).await[0].clone();
            let t = lab
                .perform(&g, "rebuild-root", json!({"image_id": "img-new"}), task)
                .await;
            let guest = lab.guest(&g).await;
            let now = lab.disks(&g).await;
            assert_eq!(now.len(), 1, "{what}");
            assert_eq!(guest["deploy_params"], Value::Null, "{what}");
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "running"), "{what}");
                assert_ne!(now[0], sys);
                assert!(lab.disk(&sys).await.is_none(), "{what}");
            } else {
                assert_eq!(
                    (st(&t), st(&guest)),
                    ("failed", "rebuild_root_fail"),
                    "{what}"
                );
                assert_eq!(now[0], sys, "{what}");
            }
        }
        "GuestDeployTask" => {
            let g = lab.create("h1", &[512], true).await;
            let t = lab
                .perform(&g, "set-password", json!({"password": "Passw0rd-1"}), task)
                .await;
            let guest = lab.guest(&g).await;
            assert_eq!(guest["deploy_params"], Value::Null, "{what}");
            let want = if ok {
                ("complete", "running")
            } else {
                ("failed", "deploy_fail")
            };
            assert_eq!((st(&t), st(&guest)), want, "{what}");
        }
        "GuestMigrateTask" | "AgentRequestTask" => {
            let g = lab.create("h1", &[512, 256], false).await;
            let disks = lab.disks(&g).await;
            let on_h2 = lab.hosts[1].1.disk_count();
            let t = lab
                .perform(
                    &g,
                    "migrate",
                    json!({"prefer_host": "h2"}),
                    "GuestMigrateTask",
                )
                .await;
            let guest = lab.guest(&g).await;
            assert_eq!(lab.disks(&g).await, disks, "{what}");
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "ready"), "{what}");
                assert_eq!(guest["host_id"], "h2");
                assert_eq!(lab.hosts[1].1.disk_count(), on_h2 + 2);
                for d in &disks {
                    assert_eq!(lab.disk(d).await.expect("disk")["storage_id"], "st2");
                }
            } else if fail == Some("finish") && task == "GuestMigrateTask" {
                // Past the cleanup the migration rolls forward: the guest
                // stays on the target, its source copies gone.
                assert_eq!((st(&t), st(&guest)), ("failed", "migrate_failed"), "{what}");
                assert_eq!(guest["host_id"], "h2", "{what}");
                assert_eq!(lab.hosts[1].1.disk_count(), on_h2 + 2, "{what}");
            } else {
                assert_eq!((st(&t), st(&guest)), ("failed", "migrate_failed"), "{what}");
                assert_eq!(guest["host_id"], "h1", "{what}");
                assert_eq!(lab.hosts[1].1.disk_count(), on_h2, "{what}");
                for d in &disks {
                    assert_eq!(
                        lab.disk(d).await.expect("disk")["storage_id"],
                        "st1",
                        "{what}"
                    );
                }
            }
            // Back home for the next case's accounting.
            if ok {
                let t = lab
                    .perform(
                        &g,
                        "migrate",
                        json!({"prefer_host": "h1"}),
                        "GuestMigrateTask",
                    )
                    .await;
                assert_eq!(st(&t), "complete");
            }
        }
        "GuestLiveMigrateTask" => {
            let g = lab.create("h1", &[512, 256], true).await;
            let disks = lab.disks(&g).await;
            let on_h2 = lab.hosts[1].1.disk_count();
            let t = lab
                .perform(&g, "live-migrate", json!({"prefer_host": "h2"}), task)
                .await;
            let guest = lab.guest(&g).await;
            assert_eq!(lab.disks(&g).await, disks, "{what}");
            // Before the source answered `send` the guest stays on h1 and the
            // target's half is undone; after it the guest lives on h2 whatever
            // fails (the records moved, the target resumed).
            let moved = ok || matches!(fail, Some("resume" | "cleanup" | "finish"));
            let want = if ok {
                ("complete", "running")
            } else {
                ("failed", "live_migrate_failed")
            };
            assert_eq!((st(&t), st(&guest)), want, "{what}");
            let (host, storage) = if moved { ("h2", "st2") } else { ("h1", "st1") };
            assert_eq!(guest["host_id"], host, "{what}");
            for d in &disks {
                assert_eq!(
                    lab.disk(d).await.expect("disk")["storage_id"],
                    storage,
                    "{what}"
                );
            }
            let sims = |h: usize| {
                let sim = lab.hosts[h].1.clone();
                let g = g.clone();
                async move {
                    cloudpods_host::Driver::guests(sim.as_ref())
                        .await
                        .into_iter()
                        .find(|(id, _)| *id == g)
                        .map(|(_, s)| s)
                }
            };
            if moved {
                assert_eq!(sims(1).await.as_deref(), Some("running"), "{what}");
                assert_eq!(lab.hosts[1].1.disk_count(), on_h2 + 2, "{what}");
                assert_eq!(sims(0).await, None, "{what}: the source's guest is left");
            } else {
                assert_eq!(sims(0).await.as_deref(), Some("running"), "{what}");
                assert_eq!(sims(1).await, None, "{what}: the target's guest is left");
                assert_eq!(lab.hosts[1].1.disk_count(), on_h2, "{what}");
            }
        }
        "GuestSyncConfigTask" => {
            let g = lab.create("h1", &[512], true).await;
            let before = lab.groups(&g).await;
            let sg = format!("sg{}", rand::random::<u32>());
            let mut row: cloudpods_db::Row =
                json!({"name": sg, "tenant_id": "p1", "domain_id": "default",
                                                    "status": "ready"})
                .as_object()
                .cloned()
                .unwrap_or_default();
            cloudpods_db::crud::prepare_insert(&cloudpods_region::models::SECGROUPS, &mut row);
            cloudpods_db::crud::insert(
                lab.db().write(),
                &cloudpods_region::models::SECGROUPS,
                &row,
            )
            .await
            .expect("secgroup");
            let sg_id = row["id"].as_str().unwrap_or_default().to_string();
            let t = lab
                .perform(&g, "add-secgroup", json!({"secgroup_ids": [sg_id]}), task)
                .await;
            let guest = lab.guest(&g).await;
            if ok {
                assert_eq!((st(&t), st(&guest)), ("complete", "running"), "{what}");
                assert!(lab.groups(&g).await.contains(&sg_id));
            } else {
                assert_eq!((st(&t), st(&guest)), ("failed", "sync_fail"), "{what}");
                assert_eq!(lab.groups(&g).await, before, "{what}");
            }
        }
        other => panic!("no case for {other}"),
    }
    lab.no_leak(&what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_step_run_twice_ends_like_once() {
    let lab = saga::lab(2).await;
    lab.hooks(true, None);
    for (task, _) in SAGAS {
        saga_case(&lab, task, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_every_action_step_is_undone() {
    let lab = saga::lab(2).await;
    for (task, steps) in SAGAS {
        for step in *steps {
            lab.hooks(false, Some((task, step)));
            saga_case(&lab, task, Some(step)).await;
        }
    }
    lab.hooks(false, None);
}
