//! Tasks survive crashes and several region processes: kill -9 in the
//! middle of 50 creates, and two regions sharing one MariaDB.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

on_both_databases!(kill_9_during_fifty_creates_then_restart,);

const TERMINAL_FAIL: &[&str] = &[
    "sched_fail",
    "net_fail",
    "disk_fail",
    "deploy_fail",
    "start_fail",
];

fn server_body(name: &str) -> Value {
    json!({"server": {"name": name, "vcpu_count": 1, "vmem_size": 256, "disks": [{"size": 512}],
                       "nets": [{"network": "net0"}], "auto_start": true}})
}

/// Every server settled (running or a failure with a reason), every task
/// finished, no address or disk leaked, nothing duplicated.
async fn check_consistent(
    admin: &Api,
    region: &str,
    host: &SimHost,
    expect_at_least: usize,
) -> Vec<Value> {
    let url = format!("{region}/servers?scope=system&limit=2048");
    let settled = |b: &Value| {
        b["servers"].as_array().is_some_and(|a| {
            a.len() >= expect_at_least
                && a.iter().all(|s| {
                    let st = s["status"].as_str().unwrap_or_default();
                    st == "running" || TERMINAL_FAIL.contains(&st)
                })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let list = loop {
        let r = admin.get(&url).await;
        if settled(&r.body) {
            break r.body;
        }
        if std::time::Instant::now() > deadline {
            // Say what is missing rather than dump every row.
            let rows = r.body["servers"].as_array().cloned().unwrap_or_default();
            let unsettled: Vec<String> = rows
                .iter()
                .filter(|s| {
                    let st = s["status"].as_str().unwrap_or_default();
                    st != "running" && !TERMINAL_FAIL.contains(&st)
                })
                .map(|s| format!("{} {}", s["name"], s["status"]))
                .collect();
            panic!(
                "not settled after 180 s: {} servers for {expect_at_least} accepted creates; \
                 not running nor failed: {unsettled:?}",
                rows.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let servers = list["servers"].as_array().cloned().unwrap_or_default();
    for s in &servers {
        let st = s["status"].as_str().unwrap_or_default();
        if st != "running" {
            assert!(
                s["fail_reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{s}"
            );
        }
    }
    // No task left open.
    let open = wait_until(
        admin,
        &format!("{region}/tasks?scope=system&is_open=true&limit=10"),
        120,
        |b| b["tasks"].as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
    assert_eq!(open["tasks"], json!([]));
    // One NIC with a distinct address per running server; none for failed ones.
    let nics = admin
        .get(&format!("{region}/guestnetworks?scope=system&limit=2048"))
        .await;
    let nics = nics.body["guestnetworks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let running: HashSet<String> = servers
        .iter()
        .filter(|s| s["status"] == "running")
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut per_guest: HashMap<String, usize> = HashMap::new();
    let mut ips = HashSet::new();
    for n in &nics {
        *per_guest
            .entry(n["guest_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        assert!(
            ips.insert(n["ip_addr"].as_str().unwrap_or_default().to_string()),
            "duplicate address {n}"
        );
    }
    for g in &running {
        assert_eq!(
            per_guest.get(g),
            Some(&1),
            "server {g} must have exactly one NIC"
        );
    }
    assert_eq!(
        per_guest.len(),
        running.len(),
        "NICs of failed servers were not released: {per_guest:?}"
    );
    // Disks: one per running server, and the hypervisor holds exactly those.
    let disks = admin
        .get(&format!("{region}/disks?scope=system&limit=2048"))
        .await;
    let disks = disks.body["disks"].as_array().cloned().unwrap_or_default();
    assert_eq!(disks.len(), running.len(), "disks leaked or duplicated");
    let state = host.state();
    let sim_disks = state["disks"].as_object().map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        sim_disks,
        running.len(),
        "the hypervisor holds {sim_disks} disks for {} servers",
        running.len()
    );
    servers
}

async fn kill_9_during_fifty_creates_then_restart(backend: Backend) {
    let mut p = Platform::start_on(backend);
    let admin = p.admin_with_network().await;
    // Slow agent actions keep creates in flight when the kill comes.
    let host = p.sim_host(SimOpts {
        delay_ms: 150,
        ..Default::default()
    });
    let region = p.region_url();

    let mut handles = Vec::new();
    for i in 0..50 {
        let api = admin.clone();
        let url = format!("{region}/servers");
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 15)).await;
            api.client
                .post(url)
                .header("X-Auth-Token", &api.token)
                .json(&server_body(&format!("crash-{i:02}")))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    // Kill while requests and tasks are in flight.
    tokio::time::sleep(Duration::from_millis(450)).await;
    p.kill();
    let mut accepted = 0;
    for h in handles {
        if h.await.unwrap_or(0) == 200 {
            accepted += 1;
        }
    }
    assert!(accepted > 0, "nothing was accepted before the kill");
    p.restart();
    let admin = p.admin().await;
    let region = p.region_url();
    let servers = check_consistent(&admin, &region, &host, accepted).await;
    let running = servers.iter().filter(|s| s["status"] == "running").count();
    eprintln!(
        "{accepted} creates accepted before the kill; {} servers, {running} running",
        servers.len()
    );
    assert!(
        running >= accepted,
        "every accepted server should end running on a healthy host"
    );
    // Names are unique: nothing was created twice.
    let names: HashSet<&str> = servers.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names.len(), servers.len());
    // Quota usage matches what exists.
    let usage = admin
        .get(&format!("{region}/servers?scope=system&limit=1"))
        .await;
    assert_eq!(usage.body["total"].as_u64(), Some(servers.len() as u64));
}

#[tokio::test]
async fn two_regions_on_one_mariadb_run_each_task_once() {
    let url = cloudpods_testkit::mysql_url();
    let a = Platform::start_with(Opts {
        backend: Some(Backend::Mysql(url)),
        ..Default::default()
    });
    let admin = a.admin_with_network().await;
    let host = a.sim_host(SimOpts {
        delay_ms: 30,
        ..Default::default()
    });
    // A second region process on the same database, validating tokens with
    // the first one's keystone.
    let database = a.database_url().expect("mysql database");
    let mut env = a.climc_env();
    env.push(("OS_ENDPOINT_TYPE".into(), "public".into()));
    let b = Platform::start_with(Opts {
        command: Some("region".into()),
        args: vec!["--database".into(), database],
        env,
        ..Default::default()
    });
    let ra = a.region_url();
    let rb = b.region_url();
    assert_ne!(ra, rb);

    let mut handles = Vec::new();
    for i in 0..100 {
        let api = admin.clone();
        let url = format!("{}/servers", if i % 2 == 0 { &ra } else { &rb });
        handles.push(tokio::spawn(async move {
            let r = api.post(&url, server_body(&format!("dual-{i:03}"))).await;
            r.status
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap_or(0), 200);
    }
    let servers = check_consistent(&admin, &ra, &host, 100).await;
    assert_eq!(servers.len(), 100);
    assert!(servers.iter().all(|s| s["status"] == "running"));

    // Every step of every create task completed exactly once, and both
    // processes did work.
    let tasks = admin
        .get(&format!(
            "{ra}/tasks?scope=system&limit=2048&task_name=GuestCreateTask"
        ))
        .await;
    let archived = admin
        .get(&format!(
            "{ra}/archivedtasks?scope=system&limit=2048&task_name=GuestCreateTask"
        ))
        .await;
    let mut all: Vec<Value> = tasks.body["tasks"].as_array().cloned().unwrap_or_default();
    all.extend(
        archived.body["archivedtasks"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    assert_eq!(all.len(), 100, "one create task per server");
    let mut nodes = HashSet::new();
    for t in &all {
        assert_eq!(t["status"], "complete", "{t}");
        let trace = t["state"]["__trace"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let steps: Vec<&str> = trace.iter().filter_map(|e| e["step"].as_str()).collect();
        assert_eq!(steps, ["network", "disk", "deploy", "finish"], "{t}");
        for e in &trace {
            nodes.insert(e["node"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(nodes.len(), 2, "both region processes ran tasks: {nodes:?}");
}

/// `rc_admin` points at the running keystone, also after a restart on new
/// (random) ports, when the password is no longer known to the process.
#[test]
fn rc_admin_follows_keystone_across_restarts() {
    let mut p = Platform::start();
    for _ in 0..2 {
        let rc = std::fs::read_to_string(p.data_dir().join("rc_admin")).expect("rc_admin");
        let ks = p.service_url("keystone");
        assert!(
            rc.lines().any(|l| l == format!("export OS_AUTH_URL={ks}")),
            "{rc}\nkeystone at {ks}"
        );
        assert!(rc.contains("export OS_PASSWORD='"), "{rc}");
        p.restart();
    }
}
