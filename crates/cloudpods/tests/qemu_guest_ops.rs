//! Server actions on real QEMU guests (TCG when KVM is not usable), through
//! the region API of `all-in-one --with-host`, each checked from inside the
//! guest: the test image (`scripts/build-test-image`) reports on its serial
//! console its CPUs, memory, the sha256 of the seed's password, a boot
//! counter kept in a raw sector of its system disk, and its virtio disks
//! with their sizes — again whenever they change (hot-plug, unplug,
//! resize).
//!
//! Needs root (bridges, taps, nftables) and QEMU (scripts/test-deps). Each
//! test boots one guest (a few times); each has its own bridge and
//! nftables table, removed by a guard even when it fails.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::qemu::*;
use common::*;
use serde_json::{Value, json};

/// Seconds a (re)boot may take under TCG on a busy machine.
const BOOT_SECS: u64 = 180;

/// The last value the guest printed for `CLOUDPODS-<key>=`.
fn report(serial: &str, key: &str) -> Option<String> {
    let prefix = format!("CLOUDPODS-{key}=");
    serial
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
}

/// Wait for the guest's boot report (`CLOUDPODS-READY`); its console is
/// rewritten by each QEMU start, so after a start this is that boot's.
async fn booted(h: &RealHost, id: &str) -> String {
    h.wait_serial(id, "CLOUDPODS-READY", BOOT_SECS).await
}

/// The guest's virtio disks as it last reported them: `(name, MB)`.
fn disks(serial: &str) -> Vec<(String, i64)> {
    report(serial, "DISKS")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|d| {
            let (n, mb) = d.split_once(':')?;
            Some((n.to_string(), mb.parse().ok()?))
        })
        .collect()
}

/// Wait until the guest reports disks for which `pred` holds.
async fn wait_disks(
    h: &RealHost,
    id: &str,
    what: &str,
    pred: impl Fn(&[(String, i64)]) -> bool,
) -> Vec<(String, i64)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = h.serial(id);
        let d = disks(&s);
        if pred(&d) {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never reported {what}; its console:\n{s}\nagent log:\n{}",
            h.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn num(serial: &str, key: &str) -> i64 {
    report(serial, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no CLOUDPODS-{key}= on the console:\n{serial}"))
}

async fn act(c: &Cloud, id: &str, action: &str, body: Value) -> Resp {
    c.admin
        .post(&format!("{}/servers/{id}/{action}", c.p.region_url()), body)
        .await
}

async fn act_ok(c: &Cloud, id: &str, action: &str, body: Value) {
    let r = act(c, id, action, body).await;
    assert_eq!(r.status, 200, "{action}: {r:?}");
}

/// A guest of `c` created and started with climc; its id once it runs.
async fn running_guest(c: &Cloud, name: &str) -> String {
    let (ok, out, err) = create(c, name, &format!("1g:{}", c.image_id), true);
    assert!(ok, "server-create: {out} {err}");
    let id = c.server_id(name).await;
    c.wait_status(&id, "running", BOOT_SECS).await;
    id
}

/// A platform with a real host and one guest booted on it: the cloud, the
/// host, the guest's id and its first boot report.
async fn one_guest(name: &str) -> (Cloud, RealHost, String, String) {
    cloudpods_testkit::require_qemu();
    let (c, h) = single_node(2).await;
    let id = running_guest(&c, name).await;
    let s = booted(&h, &id).await;
    (c, h, id, s)
}

/// The boot counter the guest found and the one it left.
fn marker(serial: &str) -> (i64, i64) {
    (num(serial, "MARKER-WAS"), num(serial, "MARKER-NOW"))
}

async fn reset_disk(c: &Cloud, disk: &str, snapshot: &str) -> Resp {
    let url = format!("{}/disks/{disk}/reset", c.p.region_url());
    c.admin.post(&url, json!({"snapshot_id": snapshot})).await
}

async fn stop(c: &Cloud, id: &str) {
    act_ok(c, id, "stop", json!({})).await;
    c.wait_status(id, "ready", 90).await;
}

async fn start(c: &Cloud, id: &str) {
    act_ok(c, id, "start", json!({})).await;
    c.wait_status(id, "running", BOOT_SECS).await;
}

/// Disk ids of the server, system disk first.
async fn disk_ids(c: &Cloud, id: &str) -> Vec<String> {
    let v = c
        .admin
        .get(&format!("{}/servers/{id}?details=true", c.p.region_url()))
        .await;
    let mut disks = v.body["server"]["disks_info"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    disks.sort_by_key(|d| d["index"].as_i64().unwrap_or(0));
    let ids: Vec<String> = disks
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_string))
        .collect();
    assert!(!ids.is_empty(), "no disks_info: {v:?}");
    ids
}

async fn wait_disk(c: &Cloud, disk: &str, status: &str) -> Value {
    let url = format!("{}/disks/{disk}", c.p.region_url());
    wait_until(&c.admin, &url, 120, |v| v["disk"]["status"] == status).await["disk"].clone()
}

fn sha256(text: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", text])
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// attachdisk hot-plugs a new disk into the running guest, a resize of it
/// reaches the guest at once, detachdisk unplugs it — each seen by the
/// guest's own list of virtio disks; then reset reboots it in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_hotplug_resize_unplug_and_reset_are_seen_by_the_running_guest() {
    let (c, h, id, s) = one_guest("vm-disks").await;
    let r = c.p.region_url();
    let before = disks(&s);
    assert!(before.contains(&("vda".into(), 1024)), "{s}");
    assert!(!before.iter().any(|(_, mb)| *mb == 512), "{s}");

    // A new 512 MB disk on the guest's host, attached while it runs.
    let resp = c
        .admin
        .post(
            &format!("{r}/disks"),
            json!({"disk": {"name": "vm-disks-data", "size": 512, "prefer_host": h.host_id}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let data = resp.body["disk"]["id"].as_str().unwrap().to_string();
    wait_disk(&c, &data, "ready").await;
    act_ok(&c, &id, "attachdisk", json!({"disk_id": data})).await;
    c.wait_status(&id, "running", 60).await;
    assert!(disk_ids(&c, &id).await.contains(&data));
    let now = wait_disks(&h, &id, "a 512 MB disk", |d| {
        d.iter().any(|(_, mb)| *mb == 512)
    })
    .await;
    let name = now.iter().find(|(_, mb)| *mb == 512).unwrap().0.clone();
    assert_eq!(now.len(), before.len() + 1, "{now:?}");

    // Grow it while attached: the guest sees the new capacity.
    let resp = c
        .admin
        .post(&format!("{r}/disks/{data}/resize"), json!({"size": 768}))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let d = wait_disk(&c, &data, "ready").await;
    assert_eq!(d["disk_size"], 768, "{d}");
    wait_disks(&h, &id, &format!("{name} of 768 MB"), |d| {
        d.iter().any(|(n, mb)| *n == name && *mb == 768)
    })
    .await;

    // Detach it from the running guest: gone from the guest, kept as a
    // ready disk.
    act_ok(&c, &id, "detachdisk", json!({"disk_id": data})).await;
    c.wait_status(&id, "running", 60).await;
    let after = wait_disks(&h, &id, &format!("no {name}"), |d| {
        !d.iter().any(|(n, _)| *n == name)
    })
    .await;
    assert_eq!(after, before);
    assert!(!disk_ids(&c, &id).await.contains(&data));
    wait_disk(&c, &data, "ready").await;

    // Reset (the virtual reset button): the same QEMU boots the guest
    // again, which finds the boot counter its first boot left.
    assert_eq!(marker(&h.serial(&id)), (0, 1));
    act_ok(&c, &id, "reset", json!({})).await;
    c.wait_status(&id, "running", 60).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(BOOT_SECS);
    while h.serial(&id).matches("CLOUDPODS-READY").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no second boot after reset:\n{}",
            h.serial(&id)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(marker(&h.serial(&id)), (1, 2), "{}", h.serial(&id));
    delete_and_wait(&c, &id).await;
}

/// A snapshot of the system disk, then a boot that changes the guest's
/// boot counter on that disk; the disk reset to the snapshot boots with
/// the old counter again; rebuild-root gives a fresh disk from the image
/// (no counter at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_reset_and_rebuild_root_change_what_the_guest_boots() {
    let (c, h, id, s) = one_guest("vm-snap").await;
    let r = c.p.region_url();
    assert_eq!(marker(&s), (0, 1), "{s}");
    let sys = disk_ids(&c, &id).await[0].clone();

    // Snapshot the running guest's system disk (counter 1 on it).
    act_ok(&c, &id, "disk-snapshot", json!({"name": "vm-snap-1"})).await;
    c.wait_status(&id, "running", 120).await;
    let snap = wait_until(&c.admin, &format!("{r}/snapshots/vm-snap-1"), 120, |v| {
        v["snapshot"]["status"] == "ready"
    })
    .await["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The next boot finds 1 and leaves 2.
    stop(&c, &id).await;
    start(&c, &id).await;
    let s = booted(&h, &id).await;
    assert_eq!(marker(&s), (1, 2), "{s}");

    // A running guest's disk cannot be reset; stopped, it can.
    let resp = reset_disk(&c, &sys, &snap).await;
    assert_error(&resp, 400, "InvalidStatusError");
    stop(&c, &id).await;
    let resp = reset_disk(&c, &sys, &snap).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_disk(&c, &sys, "ready").await;
    start(&c, &id).await;
    let s = booted(&h, &id).await;
    assert_eq!(
        marker(&s),
        (1, 2),
        "the counter of the snapshot is back: {s}"
    );

    // Rebuild the root of the running guest: a new disk from the image,
    // booted again (the counter starts over).
    act_ok(&c, &id, "rebuild-root", json!({"image_id": c.image_id})).await;
    c.wait_status(&id, "running", BOOT_SECS).await;
    let new_sys = disk_ids(&c, &id).await[0].clone();
    assert_ne!(new_sys, sys, "the system disk was not replaced");
    let s = booted(&h, &id).await;
    assert_eq!(marker(&s), (0, 1), "{s}");
    assert!(disks(&s).contains(&("vda".into(), 1024)), "{s}");
    delete_and_wait(&c, &id).await;
}

/// set-password on a running guest rewrites its seed, change-config of the
/// stopped guest gives it more vCPUs and memory: both are what the guest
/// has on its next boot. Cold migrate of a guest on this (real QEMU) host
/// is refused with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_config_and_set_password_reach_the_guest() {
    let (c, h, id, s) = one_guest("vm-conf").await;
    assert_eq!(num(&s, "NPROC"), 1, "{s}");
    let mem1 = num(&s, "MEM-MB");
    assert!((128..=256).contains(&mem1), "{s}");
    let pw = "Guest-Pw-4711";
    assert_ne!(
        report(&s, "PASSWORD-SHA256").as_deref(),
        Some(sha256(pw).as_str())
    );

    act_ok(&c, &id, "set-password", json!({"password": pw})).await;
    c.wait_status(&id, "running", 120).await;

    stop(&c, &id).await;
    act_ok(
        &c,
        &id,
        "change-config",
        json!({"vcpu_count": 2, "vmem_size": 384}),
    )
    .await;
    let v = c.wait_status(&id, "ready", 120).await;
    assert_eq!(
        (&v["server"]["vcpu_count"], &v["server"]["vmem_size"]),
        (&json!(2), &json!(384)),
        "{v}"
    );

    // Cold migrate with no other host: refused, the guest stays ready on
    // its host (the move itself: cold_migrate_copies_the_disk_…).
    let resp = act(&c, &id, "migrate", json!({})).await;
    assert_error(&resp, 400, "InsufficientResourceError");
    let v = c.wait_status(&id, "ready", 5).await;
    assert_eq!(v["server"]["host_id"], h.host_id.as_str(), "{v}");

    start(&c, &id).await;
    let s = booted(&h, &id).await;
    assert_eq!(num(&s, "NPROC"), 2, "{s}");
    let mem2 = num(&s, "MEM-MB");
    assert!(
        mem2 > mem1 + 100 && mem2 <= 384,
        "{mem1} MB then {mem2} MB:\n{s}"
    );
    assert_eq!(
        report(&s, "PASSWORD-SHA256").as_deref(),
        Some(sha256(pw).as_str()),
        "{s}"
    );
    delete_and_wait(&c, &id).await;
}

/// Of two hosts, the one the guest runs on and the other.
async fn source_and_target<'h>(
    c: &Cloud,
    id: &str,
    hosts: &'h [RealHost; 2],
) -> (&'h RealHost, &'h RealHost) {
    let v = c
        .admin
        .get(&format!("{}/servers/{id}", c.p.region_url()))
        .await;
    if v.body["server"]["host_id"] == hosts[0].host_id.as_str() {
        (&hosts[0], &hosts[1])
    } else {
        (&hosts[1], &hosts[0])
    }
}

/// Cold migrate of a real guest between two QEMU hosts (each its own
/// `cloudpods host` process, its own bridge and storage): the disk is
/// copied host to host, checksummed, and the guest boots on the target
/// from the moved disk — its boot counter goes on from the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_migrate_copies_the_disk_to_another_host_and_the_guest_boots_from_it() {
    cloudpods_testkit::require_qemu();
    let c = cloud().await;
    let hosts = [
        RealHost::start(&c.p, "wire0", 2),
        RealHost::start(&c.p, "wire0", 2),
    ];
    let id = running_guest(&c, "vm-move").await;
    let r = c.p.region_url();
    let (src, dst) = source_and_target(&c, &id, &hosts).await;
    let s = booted(src, &id).await;
    assert_eq!(num(&s, "MARKER-NOW"), 1, "{s}");
    assert_eq!(qcow2_files(dst).len(), 0);

    // Running: refused (cold migrate moves stopped guests).
    let resp = act(&c, &id, "migrate", json!({})).await;
    assert_error(&resp, 400, "InvalidStatusError");
    stop(&c, &id).await;

    // Nobody but the region's grant reads a disk export.
    let disk = disk_ids(&c, &id).await.remove(0);
    let storage = c.admin.get(&format!("{r}/disks/{disk}")).await.body["disk"]["storage_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let anon = reqwest::Client::new()
        .get(format!("{}/disks/{storage}/export/{disk}", src.manager_uri))
        .send()
        .await
        .expect("the agent answers");
    assert_eq!(anon.status(), 401, "an unsigned export");

    act_ok(&c, &id, "migrate", json!({"auto_start": true})).await;
    let v = c.wait_status(&id, "running", 300).await;
    assert_eq!(v["server"]["host_id"], dst.host_id.as_str(), "{v}");
    let s = booted(dst, &id).await;
    assert_eq!(
        num(&s, "MARKER-WAS"),
        1,
        "the guest boots from the moved disk (the source's boot counter):\n{s}"
    );
    assert_eq!(num(&s, "MARKER-NOW"), 2, "{s}");
    // The source keeps nothing: no disk, no export, no QEMU.
    assert_eq!(
        qcow2_files(src),
        Vec::<std::path::PathBuf>::new(),
        "source disks left"
    );
    assert!(
        std::fs::read_dir(src.data().join("disks/exports"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "the source's export copy is left"
    );
    assert!(src.qemu_pid(&id).is_none());
    delete_and_wait(&c, &id).await;
    assert_eq!(qcow2_files(dst).len(), 0, "target disks left");
}

/// Type a line on the guest's serial console (its socket); the guest's
/// echo job answers `CLOUDPODS-ECHO=<line>` into serial.log.
fn type_on_serial(h: &RealHost, guest: &str, line: &str) {
    use std::io::Write;
    let sock = h.data().join("servers").join(guest).join("serial.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock)
        .unwrap_or_else(|e| panic!("serial socket {}: {e}", sock.display()));
    s.write_all(format!("{line}\n").as_bytes())
        .expect("type on the serial console");
}

/// Type `line` until the guest echoes it (the first bytes after a connect
/// may be lost while the chardev attaches).
async fn echoed(h: &RealHost, guest: &str, line: &str, secs: u64) -> String {
    let needle = format!("CLOUDPODS-ECHO={line}");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        type_on_serial(h, guest, line);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = h.serial(guest);
        if s.contains(&needle) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not on the console of {guest}:\n{s}\nagent log:\n{}",
            h.log()
        );
    }
}

/// Wait until the server is `want` on `host`; a failed status ends the
/// wait at once with both agents' logs.
async fn wait_on_host(c: &Cloud, id: &str, want: &str, host: &RealHost, other: &RealHost) -> Value {
    let url = format!("{}/servers/{id}", c.p.region_url());
    let deadline = Instant::now() + Duration::from_secs(BOOT_SECS);
    loop {
        let v = c.admin.get(&url).await.body;
        let st = v["server"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if st == want && v["server"]["host_id"] == host.host_id.as_str() {
            return v;
        }
        if st.ends_with("_failed") || Instant::now() > deadline {
            let plog = c.p.log();
            let tail: Vec<&str> = plog.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "server {id}: {st} (want {want} on {}):\n{v}\n--- region:\n{}\n--- agent of {}:\n{}\n--- agent of {}:\n{}",
                host.host_id,
                tail.join("\n"),
                host.host_id,
                host.log(),
                other.host_id,
                other.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Live migration of a real running guest between two QEMU hosts: the
/// memory and the disk move while it runs; on the target it answers on its
/// console without having booted again; host maintenance moves it back;
/// after a restart it boots from the moved disk (the boot counter goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the migration stream's TLS handshake stalls (the source never sends its ClientHello); see docs/AGENT_PROTOCOL.md, live migration"]
async fn live_migrate_moves_a_running_guest_without_a_reboot() {
    cloudpods_testkit::require_qemu();
    let c = cloud().await;
    let hosts = [
        RealHost::start(&c.p, "wire0", 2),
        RealHost::start(&c.p, "wire0", 2),
    ];
    let id = running_guest(&c, "vm-live").await;
    let r = c.p.region_url();
    let (src, dst) = source_and_target(&c, &id, &hosts).await;
    let s = booted(src, &id).await;
    assert_eq!(marker(&s), (0, 1), "{s}");
    echoed(src, &id, "before-move", 60).await;

    act_ok(&c, &id, "live-migrate", json!({})).await;
    wait_on_host(&c, &id, "running", dst, src).await;
    assert!(dst.qemu_pid(&id).is_some(), "the guest runs on the target");
    assert!(src.qemu_pid(&id).is_none(), "the source QEMU is gone");
    assert_eq!(
        qcow2_files(src),
        Vec::<std::path::PathBuf>::new(),
        "source disks left"
    );
    let s = echoed(dst, &id, "after-move", 60).await;
    assert!(
        !s.contains("CLOUDPODS-READY"),
        "the guest booted again on the target:\n{s}"
    );

    // Maintenance of the target moves it back, live.
    let m = c
        .admin
        .post(
            &format!("{r}/hosts/{}/host-maintenance", dst.host_id),
            json!({}),
        )
        .await;
    assert_eq!(m.status, 200, "{m:?}");
    let moved = &m.body["guests"];
    assert_eq!(moved[0]["id"], id.as_str(), "{}", m.body);
    assert_eq!(moved[0]["moving"], true, "{}", m.body);
    wait_on_host(&c, &id, "running", src, dst).await;
    let s = echoed(src, &id, "back-again", 60).await;
    assert!(!s.contains("CLOUDPODS-READY"), "{s}");

    // The disk moved with every write: a restart finds the first boot's count.
    stop(&c, &id).await;
    start(&c, &id).await;
    let s = booted(src, &id).await;
    assert_eq!(marker(&s), (1, 2), "{s}");
    delete_and_wait(&c, &id).await;
    assert_eq!(qcow2_files(dst).len(), 0, "target disks left");
}
