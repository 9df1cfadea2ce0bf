//! The region end to end with a simulated host: create a batch of servers
//! that walk the status machine to running with distinct addresses, stop,
//! start, delete.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::json;

#[tokio::test]
async fn twenty_servers_reach_running_with_distinct_addresses() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let r = p.region_url();
    let resp = admin
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "vm", "vcpu_count": 1, "vmem_size": 512,
                               "disks": [{"size": 1024}], "nets": [{"network": "net0"}], "auto_start": true},
                   "count": 20}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["servers"].as_array().map(Vec::len), Some(20));
    let list = wait_until(
        &admin,
        &format!("{r}/servers?scope=system&limit=50"),
        60,
        |b| {
            b["servers"]
                .as_array()
                .is_some_and(|a| a.len() == 20 && a.iter().all(|s| s["status"] == "running"))
        },
    )
    .await;
    let ips: HashSet<String> = list["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s["ips"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ips.len(), 20, "{ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("10.0.0.")));

    // Stop, start, delete one.
    let id = list["servers"][0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        admin
            .post(&format!("{r}/servers/{id}/stop"), json!({}))
            .await
            .status,
        200
    );
    wait_until(&admin, &format!("{r}/servers/{id}"), 20, |b| {
        b["server"]["status"] == "ready"
    })
    .await;
    let again = admin
        .post(&format!("{r}/servers/{id}/stop"), json!({}))
        .await;
    assert_error(&again, 400, "InvalidStatusError");
    assert_eq!(
        admin
            .post(&format!("{r}/servers/{id}/start"), json!({}))
            .await
            .status,
        200
    );
    wait_until(&admin, &format!("{r}/servers/{id}"), 20, |b| {
        b["server"]["status"] == "running"
    })
    .await;
    assert_eq!(admin.delete(&format!("{r}/servers/{id}")).await.status, 200);
    wait_until(&admin, &format!("{r}/servers/{id}"), 20, |b| {
        b["code"] == 404
    })
    .await;
    let disks = admin.get(&format!("{r}/disks?scope=system")).await;
    assert_eq!(disks.body["total"], 19, "{disks:?}");
}
