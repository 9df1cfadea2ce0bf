//! The QEMU driver through the agent's HTTP API, with real guests (TCG when
//! KVM is not usable): the test image from `scripts/build-test-image` is
//! served by a glance-like HTTP server, cached, used as a backing file, and
//! booted to its marker with the hostname from the seed and the IP handed
//! out by the agent's DHCP.
//!
//! Needs root (bridges, taps, nftables) and QEMU (scripts/test-deps); a
//! test without them fails, naming what is missing (it never skips). Each
//! test uses its own bridge, nftables table and data dir, and a guard
//! removes them and kills its QEMUs even when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path as AxPath, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use cloudpods_host::Driver;
use cloudpods_host::imagecache::{ImageCache, UrlSource};
use cloudpods_host::qemu::{QemuDriver, QemuOptions};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test image (built once, cached).
fn test_image() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/build-test-image"))
        .output()
        .expect("run scripts/build-test-image");
    assert!(
        out.status.success(),
        "build-test-image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes what a test made, even when it panics.
struct Guard {
    dir: PathBuf,
    bridge: String,
    table: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // QEMUs and dnsmasqs started for this test carry its dir in their
        // command line.
        let servers = self.dir.join("d/servers");
        let tap_name = cloudpods_host::net::tap_name;
        cloudpods_testkit::clean_host(&self.dir, &servers, &self.bridge, &self.table, tap_name);
    }
}

struct Glance {
    url: String,
    gets: Arc<AtomicU64>,
}

/// A glance v1 look-alike serving files: `GET|HEAD /images/{id}`.
async fn glance(images: Vec<(String, PathBuf)>) -> Glance {
    #[derive(Clone)]
    struct St {
        images: Arc<Vec<(String, PathBuf, String)>>,
        gets: Arc<AtomicU64>,
    }
    let images: Vec<(String, PathBuf, String)> = images
        .into_iter()
        .map(|(id, p)| {
            let out = Command::new("md5sum").arg(&p).output().expect("md5sum");
            let sum = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            (id, p, sum)
        })
        .collect();
    let gets = Arc::new(AtomicU64::new(0));
    let st = St {
        images: Arc::new(images),
        gets: gets.clone(),
    };
    async fn serve(
        State(st): State<St>,
        method: axum::http::Method,
        AxPath(id): AxPath<String>,
    ) -> axum::response::Response {
        let Some((id, path, sum)) = st.images.iter().find(|(i, _, _)| *i == id).cloned() else {
            return (axum::http::StatusCode::NOT_FOUND, "no such image").into_response();
        };
        let mut h = HeaderMap::new();
        h.insert("x-image-meta-id", id.parse().unwrap());
        h.insert("x-image-meta-name", id.parse().unwrap());
        h.insert("x-image-meta-checksum", sum.parse().unwrap());
        if method == axum::http::Method::HEAD {
            return (h, "").into_response();
        }
        st.gets.fetch_add(1, Ordering::SeqCst);
        let data = tokio::fs::read(&path).await.unwrap_or_default();
        (h, data).into_response()
    }
    let app = axum::Router::new()
        .route("/images/{id}", axum::routing::get(serve).head(serve))
        .with_state(st);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    Glance { url, gets }
}

struct Env {
    // Fields drop in this order: the guard reads the data dir (which
    // guests had taps), so it goes before the temporary directory.
    _guard: Guard,
    _tmp: tempfile::TempDir,
    data: PathBuf,
    driver: Arc<QemuDriver>,
    agent: String,
    /// The key requests are signed with (as the region does).
    secret: String,
    http: reqwest::Client,
    bridge: String,
    /// `10.x.y` of this test's network.
    prefix: String,
    glance: Glance,
    storage_mb: i64,
}

async fn env(tag: &str) -> Env {
    cloudpods_sdk::init_tls();
    let tmp = tempfile::Builder::new().prefix("cph").tempdir().unwrap();
    let data = tmp.path().join("d");
    let n: u32 = rand_u32();
    let table = format!("cp{:04x}{tag}", n & 0xffff);
    let bridge = format!("cpbr{:04x}{tag}", n & 0xffff);
    let guard = Guard {
        dir: tmp.path().to_path_buf(),
        bridge: bridge.clone(),
        table: table.clone(),
    };
    let image = test_image();
    let broken = tmp.path().join("broken.qcow2");
    assert!(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&broken)
            .arg("32M")
            .status()
            .unwrap()
            .success()
    );
    let glance = glance(vec![("testimg".into(), image), ("blank".into(), broken)]).await;
    let images = Arc::new(ImageCache::new(
        data.join("image_cache"),
        Some(Arc::new(UrlSource {
            base: glance.url.clone(),
            http: reqwest::Client::new(),
        })),
    ));
    let mut opts = QemuOptions::new(data.clone());
    opts.storage_mb = 20 * 1024;
    opts.nft_table = table;
    let storage_mb = opts.storage_mb;
    let driver = Arc::new(QemuDriver::new(opts, images).unwrap());
    let secret = cloudpods_apis::agent_auth::generate_secret();
    let agent = serve_agent(driver.clone(), &secret).await;
    Env {
        _guard: guard,
        _tmp: tmp,
        data,
        driver,
        agent,
        secret,
        http: reqwest::Client::new(),
        bridge,
        prefix: format!("10.{}.{}", 100 + (n >> 16) % 100, (n >> 8) % 250),
        glance,
        storage_mb,
    }
}

/// The agent's API over `driver`: storage `st`, callbacks only to the
/// (absent) region at 127.0.0.1:9.
async fn serve_agent(driver: Arc<QemuDriver>, secret: &str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let cfg = cloudpods_host::agent::AgentConfig::new(secret, "http://127.0.0.1:9", driver.roots())
        .unwrap();
    cfg.set_storages(vec!["st".into()]);
    let d: Arc<dyn Driver> = driver;
    tokio::spawn(async move { axum::serve(l, cloudpods_host::agent::router(d, cfg)).await });
    url
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}

impl Env {
    /// A synchronous agent call: (status, body).
    async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        self.call_as(&self.secret, path, body, None).await
    }

    /// A POST signed with `secret`, optionally with task headers.
    async fn call_as(
        &self,
        secret: &str,
        path: &str,
        body: Value,
        task: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let r = cloudpods_host::agent::signed_request(
            &self.http,
            secret,
            reqwest::Method::POST,
            &format!("{}{path}", self.agent),
            Some(&body),
            task,
        )
        .unwrap()
        .send()
        .await
        .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A signed GET.
    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.agent);
        let get = reqwest::Method::GET;
        let req =
            cloudpods_host::agent::signed_request(&self.http, &self.secret, get, &url, None, None);
        cloudpods_testkit::json_of(req.unwrap()).await
    }

    async fn ok(&self, path: &str, body: Value) -> Value {
        let (st, v) = self.call(path, body).await;
        assert_eq!(st, 200, "{path}: {v}");
        v
    }

    fn desc(&self, id: &str, name: &str, disk: &str, mac: &str, host: u8) -> Value {
        json!({
            "uuid": id, "name": name, "hostname": name, "cpu": 1, "mem": 256,
            "nics": [{"index": 0, "mac": mac, "ip": format!("{}.{host}", self.prefix),
                      "masklen": 24, "gateway": format!("{}.1", self.prefix), "dns": "",
                      "bridge": self.bridge, "bw": 100, "driver": "virtio"}],
            "disks": [{"disk_id": disk, "index": 0, "format": "qcow2",
                       "path": self.data.join("disks").join(format!("{disk}.qcow2")),
                       "driver": "virtio", "boot_index": 0}],
            "secgroup_rules": [{"direction": "in", "protocol": "tcp", "ports": "22", "cidr": "0.0.0.0/0", "action": "allow", "priority": 50}],
            "src_ip_check": true, "src_mac_check": true
        })
    }

    fn serial(&self, id: &str) -> String {
        std::fs::read_to_string(self.driver.paths(id).serial()).unwrap_or_default()
    }

    async fn wait_serial(&self, id: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.serial(id);
            if s.contains(needle) {
                return s;
            }
            if Instant::now() > deadline {
                let qlog =
                    std::fs::read_to_string(self.driver.paths(id).qemu_log()).unwrap_or_default();
                panic!(
                    "{needle:?} not on the serial console of {id} after {secs}s:\n{s}\nqemu.log: {qlog}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status(&self, id: &str) -> String {
        let v = self.get(&format!("/servers/{id}/status")).await;
        v["status"].as_str().unwrap_or_default().to_string()
    }
}

fn link_exists(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}")).exists()
}

fn qemu_pids_under(dir: &Path) -> usize {
    cloudpods_testkit::procs_matching(&dir.display().to_string(), "qemu-system")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_lifecycle_boots_networked_and_leaves_nothing() {
    cloudpods_testkit::require_qemu();
    let e = env("a").await;
    let id = "6f1c2a9e-0b7d-4b36-8a55-000000000001";
    let disk = "d0000001";
    let mac = "00:22:6f:00:00:01";

    let v = e
        .ok(
            &format!("/disks/st/create/{disk}"),
            json!({"disk": {"size": 64, "image_id": "testimg", "disk_type": "sys"}}),
        )
        .await;
    assert!(v["disk_path"].as_str().unwrap().ends_with(".qcow2"), "{v}");
    let desc = e.desc(id, "vm-alpha", disk, mac, 10);
    e.ok(
        &format!("/servers/{id}/deploy"),
        json!({"desc": desc, "params": {"hostname": "vm-alpha", "password": "Passw0rd!"}}),
    )
    .await;
    assert_eq!(e.status(id).await, "ready");
    let t0 = Instant::now();
    let v = e
        .ok(&format!("/servers/{id}/start"), json!({"desc": desc}))
        .await;
    assert_eq!(v["status"], "running");
    let started = t0.elapsed();
    e.wait_serial(id, "CLOUDPODS-GUEST-BOOTED", 120).await;
    let booted = t0.elapsed();
    let serial = e.wait_serial(id, "CLOUDPODS-READY", 60).await;
    eprintln!("start answered in {started:?}, marker after {booted:?}");
    assert!(serial.contains("CLOUDPODS-HOSTNAME=vm-alpha"), "{serial}");
    let want_ip = format!("CLOUDPODS-IP={}.10", e.prefix);
    assert!(serial.contains(&want_ip), "{serial}");
    assert_eq!(e.status(id).await, "running");
    let tap = cloudpods_host::net::tap_name(id, 0);
    assert!(link_exists(&tap) && link_exists(&e.bridge));

    // VNC answers with the RFB greeting.
    let vnc: Value = e.get(&format!("/servers/{id}/vnc")).await;
    let port = vnc["port"].as_u64().unwrap() as u16;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf)
        .await
        .unwrap();
    assert!(buf.starts_with(b"RFB "), "{buf:?}");
    drop(s);

    // Graceful stop: the guest powers off on the ACPI button.
    let t = Instant::now();
    let v = e
        .ok(
            &format!("/servers/{id}/stop"),
            json!({"is_force": false, "timeout": 30}),
        )
        .await;
    assert_eq!(v["status"], "ready");
    assert!(
        e.serial(id).contains("CLOUDPODS-POWEROFF"),
        "not an ACPI stop: {}",
        e.serial(id)
    );
    eprintln!("ACPI stop took {:?}", t.elapsed());
    assert_eq!(e.status(id).await, "ready");
    assert!(!link_exists(&tap), "tap left after stop");

    // Start again, reset, then delete everything.
    e.ok(&format!("/servers/{id}/start"), json!({"desc": desc}))
        .await;
    e.wait_serial(id, "CLOUDPODS-READY", 120).await;
    e.ok(&format!("/servers/{id}/reset"), json!({})).await;
    assert_eq!(e.status(id).await, "running");

    e.ok(&format!("/servers/{id}/delete"), json!({})).await;
    e.ok(&format!("/disks/st/delete/{disk}"), json!({})).await;
    assert_eq!(e.status(id).await, "notfound");
    assert_eq!(qemu_pids_under(&e.data), 0, "QEMU left behind");
    assert!(!link_exists(&tap), "tap left behind");
    assert!(!link_exists(&e.bridge), "bridge left behind");
    assert!(!e.data.join("disks").join(format!("{disk}.qcow2")).exists());
    assert!(!e.driver.paths(id).dir.exists());
    assert!(
        !e.data.join("net/bridges").join(&e.bridge).exists(),
        "dnsmasq state (leases) left behind"
    );
    let nft = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&nft.stdout).contains(&e._guard.table));
    assert_eq!(e.glance.gets.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_fail_with_the_reason_and_leave_nothing() {
    cloudpods_testkit::require_qemu();
    let e = env("b").await;

    // Only the region's signature opens the API; nothing is made otherwise.
    let g9 = "6f1c2a9e-0b7d-4b36-8a55-0000000000b9";
    let d9 = e.desc(g9, "vm-9", "d9", "00:22:6f:00:00:b9", 19);
    let raw = e
        .http
        .post(format!("{}/servers/{g9}/deploy", e.agent))
        .json(&json!({"desc": d9, "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let v: Value = raw.json().await.unwrap();
    assert_eq!(
        (v["code"].as_i64(), v["class"].as_str()),
        (Some(401), Some("UnauthorizedError")),
        "{v}"
    );
    let wrong = cloudpods_apis::agent_auth::generate_secret();
    let (st, v) = e
        .call_as(
            &wrong,
            &format!("/servers/{g9}/deploy"),
            json!({"desc": d9, "params": {}}),
            None,
        )
        .await;
    assert_eq!(
        (st, v["class"].as_str()),
        (401, Some("UnauthorizedError")),
        "{v}"
    );
    let (st, _) = e
        .call_as(
            &wrong,
            "/disks/st/create/d9",
            json!({"disk": {"size": 64}}),
            None,
        )
        .await;
    assert_eq!(st, 401);
    let unsigned = e
        .http
        .get(format!("{}/servers/{g9}/status", e.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let ping = cloudpods_testkit::json_of(e.http.get(format!("{}/ping", e.agent))).await;
    assert_eq!(ping, json!({}));
    // Signed, but the result would go somewhere else than the region.
    let (st, v) = e
        .call_as(
            &e.secret,
            "/disks/st/create/d9",
            json!({"disk": {"size": 64}}),
            Some(("t1", "http://10.255.255.1:9/tasks/t1?stage=a&key=b")),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    cloudpods_testkit::assert_details(&v, "X-Task-Notify-Url");
    // Paths outside the storage, ids that are not ids, other storages,
    // machine types outside the list.
    let mut outside = d9.clone();
    outside["disks"][0]["path"] = json!("/etc/shadow");
    let mut dotdot = d9.clone();
    dotdot["disks"][0]["path"] = json!(format!(
        "{}/../../etc/shadow",
        e.data.join("disks").display()
    ));
    let mut machine = d9.clone();
    machine["machine"] = json!("pc,accel=kvm");
    for (path, body, needle) in [
        (
            format!("/servers/{g9}/deploy"),
            json!({"desc": outside, "params": {}}),
            "outside",
        ),
        (
            format!("/servers/{g9}/deploy"),
            json!({"desc": dotdot, "params": {}}),
            "..",
        ),
        (
            format!("/servers/{g9}/deploy"),
            json!({"desc": machine, "params": {}}),
            "machine",
        ),
        (
            "/servers/a.b/deploy".to_string(),
            json!({"desc": d9, "params": {}}),
            "server id",
        ),
        (
            "/disks/other/create/d9".to_string(),
            json!({"disk": {"size": 64}}),
            "storage",
        ),
        (
            "/disks/st/create/d.9".to_string(),
            json!({"disk": {"size": 64}}),
            "disk id",
        ),
        (
            "/disks/st/reset/d9".to_string(),
            json!({"snapshot_id": "s1", "location": "/etc/shadow"}),
            "outside",
        ),
    ] {
        let (st, v) = e.call(&path, body).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(v["class"], "InputParameterError", "{path}: {v}");
        cloudpods_testkit::assert_details(&v, needle);
    }
    assert!(!e.driver.paths(g9).dir.exists());
    assert!(!e.data.join("disks/d9.qcow2").exists());
    assert_eq!(qemu_pids_under(&e.data), 0);

    // Not bootable.
    let (st, v) = e
        .call(
            "/disks/st/create/dblank",
            json!({"disk": {"size": 64, "image_id": "blank", "disk_type": "sys"}}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    cloudpods_testkit::assert_details(&v, "not bootable");
    assert!(!e.data.join("disks/dblank.qcow2").exists());

    // Larger than the storage.
    let (st, v) = e
        .call(
            "/disks/st/create/dhuge",
            json!({"disk": {"size": e.storage_mb + 1}}),
        )
        .await;
    assert_eq!(st, 400);
    cloudpods_testkit::assert_details(&v, "larger than the storage");
    assert!(!e.data.join("disks/dhuge.qcow2").exists());

    // Unknown guest.
    let (st, v) = e.call("/servers/nosuch/start", json!({})).await;
    assert_eq!(st, 404);
    assert_eq!(v["class"], "NotFoundError", "{v}");
    cloudpods_testkit::assert_details(&v, "not on this host");

    // QEMU refusing a CPU model: QEMU's own words, no tap left.
    e.ok(
        "/disks/st/create/dcpu",
        json!({"disk": {"size": 64, "image_id": "testimg"}}),
    )
    .await;
    let id = "6f1c2a9e-0b7d-4b36-8a55-0000000000b1";
    let mut desc = e.desc(id, "vm-cpu", "dcpu", "00:22:6f:00:00:b1", 11);
    desc["cpu_model"] = json!("no-such-cpu");
    e.ok(
        &format!("/servers/{id}/deploy"),
        json!({"desc": desc, "params": {}}),
    )
    .await;
    let (st, v) = e
        .call(&format!("/servers/{id}/start"), json!({"desc": desc}))
        .await;
    assert_eq!(st, 400, "{v}");
    let reason = v["details"].as_str().unwrap();
    assert!(
        reason.contains("no-such-cpu") && reason.contains("qemu-system"),
        "{reason}"
    );
    assert!(!link_exists(&cloudpods_host::net::tap_name(id, 0)));
    assert!(!link_exists(&e.bridge), "bridge left after failed start");
    assert_eq!(qemu_pids_under(&e.data), 0);
    assert_eq!(e.status(id).await, "ready");

    // A MAC another guest of this host has.
    let id2 = "6f1c2a9e-0b7d-4b36-8a55-0000000000b2";
    let desc2 = e.desc(id2, "vm-mac", "dcpu", "00:22:6f:00:00:b1", 12);
    let (st, v) = e
        .call(
            &format!("/servers/{id2}/deploy"),
            json!({"desc": desc2, "params": {}}),
        )
        .await;
    assert_eq!(st, 400);
    cloudpods_testkit::assert_details(&v, "already used by guest");
    assert!(!e.driver.paths(id2).dir.exists());

    // A desc changed on disk behind the agent's back is checked again
    // before the command line is built.
    let id3 = "6f1c2a9e-0b7d-4b36-8a55-0000000000b3";
    let desc3 = e.desc(id3, "vm-m", "dcpu", "00:22:6f:00:00:b3", 13);
    e.ok(
        &format!("/servers/{id3}/deploy"),
        json!({"desc": desc3, "params": {}}),
    )
    .await;
    let mut tampered = desc3.clone();
    tampered["machine"] = json!("pc -object memory-backend-file,mem-path=/etc");
    std::fs::write(e.driver.paths(id3).desc(), tampered.to_string()).unwrap();
    let (st, v) = e.call(&format!("/servers/{id3}/start"), json!({})).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["details"].as_str().unwrap().contains("machine"), "{v}");
    assert_eq!(qemu_pids_under(&e.data), 0);
    e.ok(&format!("/servers/{id3}/delete"), json!({})).await;

    e.ok(&format!("/servers/{id}/delete"), json!({})).await;
    e.ok("/disks/st/delete/dcpu", json!({})).await;
    assert!(!e.driver.paths(id).dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guests_survive_an_agent_restart_and_a_killed_qemu_is_noticed() {
    cloudpods_testkit::require_qemu();
    let e = env("c").await;
    let id = "6f1c2a9e-0b7d-4b36-8a55-0000000000c1";
    e.ok(
        "/disks/st/create/dc1",
        json!({"disk": {"size": 64, "image_id": "testimg"}}),
    )
    .await;
    let desc = e.desc(id, "vm-c", "dc1", "00:22:6f:00:00:c1", 20);
    e.ok(
        &format!("/servers/{id}/deploy"),
        json!({"desc": desc, "params": {}}),
    )
    .await;
    e.ok(&format!("/servers/{id}/start"), json!({"desc": desc}))
        .await;
    assert!(e.driver.changed().await.is_empty());

    // A second driver over the same data dir (the agent restarted).
    let mut opts = QemuOptions::new(e.data.clone());
    opts.nft_table = e._guard.table.clone();
    let images = e.driver.images().clone();
    let again = Arc::new(QemuDriver::new(opts, images).unwrap());
    assert_eq!(again.status(id).await, "running");
    assert_eq!(
        again.guests().await,
        vec![(id.to_string(), "running".to_string())]
    );

    // Killing QEMU: the next poll reports it, the tap goes.
    let pid = again.running_pid(id).unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let changes = loop {
        let c = again.changed().await;
        if !c.is_empty() || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(changes, vec![(id.to_string(), "ready".to_string())]);
    assert!(!link_exists(&cloudpods_host::net::tap_name(id, 0)));
    again.delete(id).await.unwrap();
    again.disk_delete("st", "dc1").await.unwrap();
    assert!(!link_exists(&e.bridge));
}

/// Peers on a test's bridge: each a network namespace with one end of a
/// veth pair and an address in the guests' subnet, the other end a port of
/// the bridge. The guard removes namespaces and veths even when the test
/// fails.
struct Peers {
    /// (namespace, host-side veth)
    made: Vec<(String, String)>,
}

impl Peers {
    fn new() -> Peers {
        Peers { made: Vec::new() }
    }

    /// A namespace `ns` reaching `bridge` with `addr/24`.
    fn add(&mut self, ns: &str, bridge: &str, addr: &str) {
        let host_end = format!("{ns}h");
        let ns_end = format!("{ns}n");
        self.made.push((ns.to_string(), host_end.clone()));
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let cidr = format!("{addr}/24");
        sh(&["netns", "add", ns]);
        sh(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ]);
        sh(&["link", "set", &ns_end, "netns", ns]);
        sh(&["-n", ns, "addr", "add", &cidr, "dev", &ns_end]);
        sh(&["-n", ns, "link", "set", "lo", "up"]);
        sh(&["-n", ns, "link", "set", &ns_end, "up"]);
        sh(&["link", "set", &host_end, "master", bridge, "up"]);
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for (ns, host_end) in &self.made {
            // Deleting the namespace deletes its veth end, and the pair
            // with it; the host end is removed too in case the namespace
            // end never got there.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
            if link_exists(host_end) {
                let _ = Command::new("ip").args(["link", "del", host_end]).status();
            }
        }
    }
}

/// What a TCP connection from a peer namespace to the guest got.
#[derive(Debug, PartialEq)]
enum Tcp {
    /// Connected; what the guest's httpd answered to `GET /`.
    Answered(String),
    /// An RST: the guest's kernel answered, nothing listens there.
    Refused,
    /// No answer at all: the SYN was dropped on the way.
    Blocked,
    Other(String),
}

/// Connect to `addr` from inside namespace `ns` (on a thread of its own:
/// `setns` moves only the calling thread, which ends afterwards).
async fn tcp_from(ns: &str, addr: std::net::SocketAddr, wait: Duration) -> Tcp {
    let path = format!("/run/netns/{ns}");
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&path).expect("open the peer's namespace");
            // SAFETY: setns on a valid namespace fd; it changes only this
            // thread's network namespace.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            match std::net::TcpStream::connect_timeout(&addr, wait) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                    let mut body = String::new();
                    match s.read_to_string(&mut body) {
                        Ok(_) => Tcp::Answered(body),
                        Err(e) => Tcp::Other(format!("connected, then {e}: {body:?}")),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Tcp::Refused,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Tcp::Blocked,
                Err(e) => Tcp::Other(e.to_string()),
            }
        })
        .join()
        .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_group_rules_filter_real_packets_from_a_peer() {
    cloudpods_testkit::require_qemu();
    let e = env("s").await;
    let id = "6f1c2a9e-0b7d-4b36-8a55-000000000051";
    let disk = "ds1";
    e.ok(
        &format!("/disks/st/create/{disk}"),
        json!({"disk": {"size": 64, "image_id": "testimg", "disk_type": "sys"}}),
    )
    .await;
    // The guest listens on 8001 and 8002 (the test image's httpds); the
    // group allows 8001 and 8003 (where nothing listens) from anywhere and
    // says nothing of 8002: inbound is denied unless a rule allows it (as
    // Cloudpods' implicit lowest `in:deny any`).
    let mut desc = e.desc(id, "vm-sg", disk, "00:22:6f:00:00:51", 30);
    let rule = |ports: &str, cidr: &str, action: &str, priority: i64| {
        json!({"direction": "in", "protocol": "tcp", "ports": ports, "cidr": cidr,
               "action": action, "priority": priority})
    };
    desc["secgroup_rules"] = json!([
        rule("8001", "0.0.0.0/0", "allow", 50),
        rule("8003", "", "allow", 50)
    ]);
    e.ok(
        &format!("/servers/{id}/deploy"),
        json!({"desc": desc, "params": {}}),
    )
    .await;
    e.ok(&format!("/servers/{id}/start"), json!({"desc": desc}))
        .await;
    let serial = e.wait_serial(id, "CLOUDPODS-READY", 180).await;
    assert!(
        serial.contains("CLOUDPODS-LISTEN=8001,8002"),
        "the guest's listeners did not start: {serial}"
    );
    let guest_ip = format!("{}.30", e.prefix);
    assert!(
        serial.contains(&format!("CLOUDPODS-IP={guest_ip}")),
        "{serial}"
    );

    // Two peers on the wire, .50 and .60.
    let suffix = e.bridge.trim_start_matches("cpbr").to_string();
    let (na, nb) = (format!("cpa{suffix}"), format!("cpb{suffix}"));
    let mut peers = Peers::new();
    peers.add(&na, &e.bridge, &format!("{}.50", e.prefix));
    peers.add(&nb, &e.bridge, &format!("{}.60", e.prefix));

    let table = e._guard.table.clone();
    let ruleset = || {
        let out = Command::new("nft")
            .args(["list", "table", "bridge", &table])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let to = |port: u16| -> std::net::SocketAddr { format!("{guest_ip}:{port}").parse().unwrap() };
    let wait = Duration::from_secs(4);
    let answer = |port: u16| Tcp::Answered(format!("CLOUDPODS-HTTP host=vm-sg port={port}\n"));
    let body = |t: Tcp| match t {
        Tcp::Answered(s) => Tcp::Answered(s.split("\r\n\r\n").nth(1).unwrap_or(&s).to_string()),
        other => other,
    };

    // Allowed and listening: the guest answers. Allowed, nothing listening:
    // the guest's RST comes back. Listening but not allowed: the SYN never
    // arrives.
    for (ns, port, want) in [
        (&na, 8001, answer(8001)),
        (&na, 8003, Tcp::Refused),
        (&na, 8002, Tcp::Blocked),
        (&nb, 8001, answer(8001)),
        (&nb, 8002, Tcp::Blocked),
    ] {
        let got = body(tcp_from(ns, to(port), wait).await);
        assert_eq!(got, want, "{ns} → {guest_ip}:{port}\n{}", ruleset());
    }

    // New rules on the running guest (the region's sync): 8002 from .50
    // only, and 8001 denied to .60 by a rule above the allow-all.
    desc["secgroup_rules"] = json!([
        rule("8001", "0.0.0.0/0", "allow", 50),
        rule("8002", &format!("{}.50/32", e.prefix), "allow", 60),
        rule("8001", &format!("{}.60", e.prefix), "deny", 70)
    ]);
    e.ok(&format!("/servers/{id}/sync"), json!({"desc": desc}))
        .await;
    for (ns, port, want) in [
        (&na, 8002, answer(8002)),
        (&na, 8001, answer(8001)),
        (&nb, 8002, Tcp::Blocked),
        (&nb, 8001, Tcp::Blocked),
        // 8003 lost its rule.
        (&na, 8003, Tcp::Blocked),
    ] {
        let got = body(tcp_from(ns, to(port), wait).await);
        assert_eq!(got, want, "{ns} → {guest_ip}:{port}\n{}", ruleset());
    }

    // A rule that would reach nft unparsed is refused before anything
    // changes.
    let mut bad = desc.clone();
    bad["secgroup_rules"] = json!([rule("8001 } accept", "", "allow", 1)]);
    let (st, v) = e
        .call(&format!("/servers/{id}/sync"), json!({"desc": bad}))
        .await;
    assert_eq!(
        (st, v["class"].as_str()),
        (400, Some("InputParameterError")),
        "{v}"
    );
    assert_eq!(
        body(tcp_from(&na, to(8002), wait).await),
        answer(8002),
        "{}",
        ruleset()
    );

    e.ok(&format!("/servers/{id}/delete"), json!({})).await;
    e.ok(&format!("/disks/st/delete/{disk}"), json!({})).await;
    assert!(ruleset().is_empty(), "nft table left: {}", ruleset());
    drop(peers);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(!ns.contains(&na) && !ns.contains(&nb), "{ns}");
    assert!(!link_exists(&format!("{na}h")) && !link_exists(&format!("{nb}h")));
}
