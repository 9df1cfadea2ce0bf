//! The whole platform with real guests: `cloudpods all-in-one --with-host`
//! (keystone, region, scheduler, glance and the host agent in one process),
//! or all-in-one plus `cloudpods host` as its own process, running QEMU
//! (TCG when KVM is not usable). The test image from `scripts/build-test-image` is uploaded
//! to glance, a network created, and `climc server-create --auto-start`
//! boots a guest whose serial console shows the marker, the hostname from
//! the API and the IP the region allocated.
//!
//! Needs root (bridges, taps, nftables) and QEMU (scripts/test-deps); a
//! test without them fails, naming what is missing (it never skips). Each
//! test has its own bridge and nftables table, removed by a guard even when
//! it fails.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::qemu::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn climc_server_create_boots_a_networked_guest_and_delete_leaves_nothing() {
    cloudpods_testkit::require_qemu();
    let (c, h) = single_node(2).await;
    let disk = format!("1g:{}", c.image_id);
    let (ok, out, err) = c.p.climc(&[
        "server-create",
        "vm-e2e",
        "--disk",
        &disk,
        "--net",
        "net0",
        "--mem-spec",
        "256",
        "--ncpu",
        "1",
        "--hostname",
        "vm-e2e-host",
        "--auto-start",
    ]);
    assert!(ok, "server-create: {out} {err}");
    let id = c.server_id("vm-e2e").await;
    let v = c.wait_status(&id, "running", 120).await;
    let ip = v["server"]["ips"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with(&c.prefix), "allocated IP {ip:?}; server {v}");
    h.wait_serial(&id, "CLOUDPODS-GUEST-BOOTED", 120).await;
    let serial = h.wait_serial(&id, "CLOUDPODS-READY", 60).await;
    assert!(
        serial.contains("CLOUDPODS-HOSTNAME=vm-e2e-host"),
        "{serial}"
    );
    assert!(
        serial.contains(&format!("CLOUDPODS-IP={ip}\n"))
            || serial.contains(&format!("CLOUDPODS-IP={ip}\r")),
        "{serial}"
    );

    // VNC through the region.
    let vnc = c
        .admin
        .get(&format!("{}/servers/{id}/vnc", c.p.region_url()))
        .await;
    assert_eq!(vnc.status, 200, "{vnc:?}");

    // Stop, start, restart.
    let (ok, out, err) = c.p.climc(&["server-stop", &id]);
    assert!(ok, "{out} {err}");
    c.wait_status(&id, "ready", 60).await;
    assert!(h.qemu_pid(&id).is_none());
    let (ok, out, err) = c.p.climc(&["server-start", &id]);
    assert!(ok, "{out} {err}");
    c.wait_status(&id, "running", 60).await;
    h.wait_serial(&id, "CLOUDPODS-READY", 120).await;
    let (ok, out, err) = c.p.climc(&["server-restart", &id]);
    assert!(ok, "{out} {err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.wait_status(&id, "running", 90).await;
    h.wait_serial(&id, "CLOUDPODS-READY", 120).await;

    // Delete: no QEMU, tap, disk file, lease left.
    delete_and_wait(&c, &id).await;
    assert_eq!(h.qemu_count(), 0, "QEMU left");
    assert!(
        !link_exists(&cloudpods_host::net::tap_name(&id, 0)),
        "tap left"
    );
    let disks: Vec<_> = std::fs::read_dir(h.data().join("disks"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "qcow2"))
        .collect();
    assert!(disks.is_empty(), "disk files left: {disks:?}");
    assert!(!h.data().join("servers").join(&id).exists());
    assert!(
        !h.data().join("net/bridges").join(&h.bridge).exists(),
        "dnsmasq leases left"
    );
    assert_eq!(
        procs_matching(&h.data().display().to_string(), "dnsmasq"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_guests_at_once_download_the_image_once() {
    cloudpods_testkit::require_qemu();
    let (c, h) = single_node(2).await;
    let disk = format!("1g:{}", c.image_id);
    let (ok, out, err) = c.p.climc(&[
        "server-create",
        "vm-five-#",
        "--count",
        "5",
        "--disk",
        &disk,
        "--net",
        "net0",
        "--mem-spec",
        "256",
        "--auto-start",
    ]);
    assert!(ok, "server-create: {out} {err}");
    let list = c
        .admin
        .get(&format!(
            "{}/servers?search=vm-five&limit=10",
            c.p.region_url()
        ))
        .await;
    let ids: Vec<String> = list.body["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 5, "{list:?}");
    for id in &ids {
        c.wait_status(id, "running", 180).await;
    }
    for id in &ids {
        h.wait_serial(id, "CLOUDPODS-READY", 240).await;
    }
    let cache =
        cloudpods_testkit::json_of(h.signed(reqwest::Method::GET, "/disks/image_cache", None))
            .await;
    assert_eq!(cache["downloads"], 1, "{cache}");
    assert_eq!(cache["images"].as_array().map(Vec::len), Some(1), "{cache}");
    // The region learns what the host has cached within a heartbeat.
    let r = c.p.region_url();
    let joints = wait_until(
        &c.admin,
        &format!("{r}/storagecachedimages?details=true"),
        30,
        |v| v["total"].as_i64() == Some(1),
    )
    .await;
    let j = &joints["storagecachedimages"][0];
    assert_eq!(j["cachedimage_id"], c.image_id.as_str(), "{joints}");
    assert_eq!(j["status"], "active", "{joints}");
    let ci = c
        .admin
        .get(&format!("{r}/cachedimages/{}", c.image_id))
        .await;
    assert_eq!(ci.status, 200, "{ci:?}");
    assert_eq!(ci.body["cachedimage"]["name"], "cirrus-test", "{ci:?}");
    let sc = c
        .admin
        .get(&format!("{r}/storagecaches?master_host={}", h.host_id))
        .await;
    assert_eq!(sc.body["total"], 1, "{sc:?}");
    // Every guest got its own allocated address.
    let mut ips = Vec::new();
    for id in &ids {
        let s = h.serial(id);
        let ip = s
            .lines()
            .find_map(|l| l.trim().strip_prefix("CLOUDPODS-IP="))
            .unwrap_or("none")
            .to_string();
        assert!(ip.starts_with(&c.prefix), "{id}: {s}");
        ips.push(ip);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 5);
    for id in &ids {
        let (ok, out, err) = c.p.climc(&["server-delete", id]);
        assert!(ok, "{out} {err}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while h.qemu_count() > 0 {
        assert!(Instant::now() < deadline, "QEMUs left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_restart_keeps_guests_and_a_killed_qemu_shows_stopped() {
    cloudpods_testkit::require_qemu();
    let c = cloud().await;
    let mut h = RealHost::start(&c.p, "wire0", 2);
    let disk = format!("1g:{}", c.image_id);
    let (ok, out, err) = c.p.climc(&[
        "server-create",
        "vm-keep",
        "--disk",
        &disk,
        "--net",
        "net0",
        "--mem-spec",
        "256",
        "--auto-start",
    ]);
    assert!(ok, "{out} {err}");
    let id = c.server_id("vm-keep").await;
    c.wait_status(&id, "running", 120).await;
    let pid = h.qemu_pid(&id).expect("QEMU runs");

    // Kill the agent: the guest keeps running; a new agent adopts it.
    h.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "guest died with the agent"
    );
    h.spawn();
    let (ok, out, err) = c.p.climc(&["server-syncstatus", &id]);
    assert!(ok, "{out} {err}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.wait_status(&id, "running", 30).await;
    assert_eq!(h.qemu_pid(&id), Some(pid));

    // Kill the guest's QEMU: the region shows it stopped within a
    // heartbeat (2 s here) plus the sync.
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    c.wait_status(&id, "ready", 15).await;
    eprintln!("killed QEMU seen as ready after {:?}", t.elapsed());
    let (ok, out, err) = c.p.climc(&["server-delete", &id]);
    assert!(ok, "{out} {err}");
}

/// Through the whole platform (all-in-one with the agent): QEMU refusing
/// its CPU model, an image that cannot boot, a MAC already taken, a disk
/// larger than the storage and a guest the agent does not know each fail
/// with the reason, and leave no QEMU, tap or disk file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_fails_with_the_reason_and_leaves_nothing() {
    cloudpods_testkit::require_qemu();
    let tag = rand16();
    let mut args = in_process_args(tag, 2);
    args.extend(["--cpu-model".to_string(), "bogus-cpu".to_string()]);
    let p = Platform::start_with(Opts {
        command_args: args,
        ..Default::default()
    });
    let h = RealHost::in_process(&p, tag);
    let c = cloud_on(p, false).await;
    let r = c.p.region_url();
    let disk = format!("1g:{}", c.image_id);

    // QEMU refuses the CPU model: its own words are the reason.
    let (ok, out, err) = create(&c, "vm-badcpu", &disk, true);
    assert!(ok, "{out} {err}");
    let id = c.server_id("vm-badcpu").await;
    assert_fails_with(&c, &id, 120, None, "bogus-cpu").await;
    assert_eq!(h.qemu_count(), 0, "QEMU left");
    assert!(!link_exists(&cloudpods_host::net::tap_name(&id, 0)));
    delete_and_wait(&c, &id).await;
    assert!(qcow2_files(&h).is_empty(), "{:?}", qcow2_files(&h));

    // An image whose first sector cannot boot.
    let junk = h.dir.path().join("junk.raw");
    std::fs::write(&junk, vec![0x41u8; 1 << 20]).unwrap();
    let (ok, out, err) = c.p.climc(&[
        "image-upload",
        "not-bootable",
        &junk.display().to_string(),
        "--format",
        "raw",
        "--wait",
        "--no-progress",
    ]);
    assert!(ok, "{out} {err}");
    let (ok, out, err) = create(&c, "vm-noboot", "1g:not-bootable", false);
    assert!(ok, "{out} {err}");
    let id = c.server_id("vm-noboot").await;
    assert_fails_with(&c, &id, 120, Some("disk_fail"), "not bootable").await;
    assert!(qcow2_files(&h).is_empty(), "{:?}", qcow2_files(&h));
    delete_and_wait(&c, &id).await;

    // A MAC already in use by another guest.
    let body = |name: &str| {
        json!({"server": {"name": name, "vcpu_count": 1, "vmem_size": 256,
               "disks": [{"size": 1024}],
               "nets": [{"network": "net0", "mac": "00:22:aa:bb:cc:01"}]}})
    };
    let first = c.admin.post(&format!("{r}/servers"), body("vm-mac1")).await;
    assert_eq!(first.status, 200, "{first:?}");
    let id1 = c.server_id("vm-mac1").await;
    c.wait_status(&id1, "ready", 120).await;
    let second = c.admin.post(&format!("{r}/servers"), body("vm-mac2")).await;
    assert_eq!(second.status, 200, "{second:?}");
    let id2 = c.server_id("vm-mac2").await;
    assert_fails_with(&c, &id2, 60, Some("net_fail"), "already in use").await;
    delete_and_wait(&c, &id2).await;
    delete_and_wait(&c, &id1).await;

    // A disk larger than the host's storage (64 GiB): no host can take it.
    let (ok, out, err) = create(&c, "vm-huge", "100g", false);
    assert!(ok, "{out} {err}");
    let id = c.server_id("vm-huge").await;
    assert_fails_with(&c, &id, 60, Some("sched_fail"), "storage").await;
    delete_and_wait(&c, &id).await;

    // A guest the agent does not know.
    let unknown = "00000000-0000-4000-8000-000000000001";
    let resp = h
        .signed(
            reqwest::Method::POST,
            &format!("/servers/{unknown}/start"),
            Some(&json!({})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 404, "{body}");
    cloudpods_testkit::assert_details(&body, "not on this host");
    // Unsigned, the agent does nothing: no guest directory, no QEMU.
    let resp = reqwest::Client::new()
        .post(format!("{}/servers/{unknown}/deploy", h.manager_uri))
        .json(
            &json!({"desc": {"uuid": unknown, "cpu": 1, "mem": 256, "disks": [], "nics": []},
                      "params": {}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["class"], "UnauthorizedError", "{body}");
    assert!(!h.data().join("servers").join(unknown).exists());
    // A machine type outside the list is refused by the region, nothing
    // written; the agent refuses it too when asked directly (signed).
    let resp = c
        .admin
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "vm-machine", "vcpu_count": 1, "vmem_size": 256,
                   "disks": [{"size": 1024}], "nets": [{"network": "net0"}],
                   "machine": "pc,accel=kvm"}}),
        )
        .await;
    assert_error(&resp, 400, "InputParameterError");
    let list = c.admin.get(&format!("{r}/servers?name=vm-machine")).await;
    assert_eq!(
        list.body["servers"].as_array().map(Vec::len),
        Some(0),
        "{list:?}"
    );
    let resp = h
        .signed(
            reqwest::Method::POST,
            &format!("/servers/{unknown}/deploy"),
            Some(
                &json!({"desc": {"uuid": unknown, "cpu": 1, "mem": 256, "machine": "virt",
                                  "disks": [], "nics": []}, "params": {}}),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(!h.data().join("servers").join(unknown).exists());

    // …and through the region: a guest the agent lost (its directory
    // removed behind its back) fails to start with that reason.
    let (ok, out, err) = create(&c, "vm-lost", "1g", false);
    assert!(ok, "{out} {err}");
    let id = c.server_id("vm-lost").await;
    c.wait_status(&id, "ready", 120).await;
    std::fs::remove_dir_all(h.data().join("servers").join(&id)).unwrap();
    let (ok, out, err) = c.p.climc(&["server-start", &id]);
    assert!(ok, "{out} {err}");
    assert_fails_with(&c, &id, 60, None, "not on this host").await;
    delete_and_wait(&c, &id).await;

    assert_eq!(h.qemu_count(), 0, "QEMU left");
    assert!(qcow2_files(&h).is_empty(), "{:?}", qcow2_files(&h));
}
