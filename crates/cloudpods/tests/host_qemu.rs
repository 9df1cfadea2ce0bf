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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn test_image() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image");
    let out = Command::new(script).output().expect("build-test-image");
    assert!(
        out.status.success(),
        "build-test-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn rand16() -> u16 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ((n >> 8) as u16) ^ (std::process::id() as u16)
}

/// A real host agent — its own process, or inside all-in-one (`child` is
/// then `None` and `data` the platform's data dir); on drop the process is
/// killed, and its guests, taps, bridge and nftables table are removed.
struct RealHost {
    child: Option<Child>,
    dir: tempfile::TempDir,
    data: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    host_id: String,
    manager_uri: String,
    bridge: String,
    table: String,
}

impl RealHost {
    fn start(p: &Platform, wire: &str, ping_seconds: u64) -> RealHost {
        let dir = tempfile::Builder::new().prefix("cph").tempdir().unwrap();
        let tag = rand16();
        let bridge = format!("cpbr{tag:04x}");
        let table = format!("cpt{tag:04x}");
        let args: Vec<String> = vec![
            "--data-dir".into(),
            dir.path().join("d").display().to_string(),
            "--log".into(),
            "info".into(),
            "host".into(),
            "--port".into(),
            "0".into(),
            "--name".into(),
            format!("qemu-host-{tag:04x}"),
            "--zone".into(),
            "zone0".into(),
            "--wire".into(),
            format!("{wire}:{bridge}"),
            "--nft-table".into(),
            table.clone(),
            "--storage-gb".into(),
            "64".into(),
            "--ping-seconds".into(),
            ping_seconds.to_string(),
            "--ready-file".into(),
            dir.path().join("ready.json").display().to_string(),
        ];
        let env = p.agent_env();
        let data = dir.path().join("d");
        let mut h = RealHost {
            child: None,
            dir,
            data,
            args,
            env,
            host_id: String::new(),
            manager_uri: String::new(),
            bridge,
            table,
        };
        h.spawn();
        h
    }

    fn data(&self) -> PathBuf {
        self.data.clone()
    }

    /// A request to the agent signed with its secret, as the region signs.
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::RequestBuilder {
        let secret =
            std::fs::read_to_string(self.data().join("agent.secret")).expect("agent.secret");
        cloudpods_host::agent::signed_request(
            &reqwest::Client::new(),
            &secret,
            method,
            &format!("{}{path}", self.manager_uri),
            body,
            None,
        )
        .expect("sign")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// The agent inside `p` (started with [`in_process_args`]).
    fn in_process(p: &Platform, tag: u16) -> RealHost {
        let h = &p.ready["host"];
        assert!(h.is_object(), "no host in the ready file: {}", p.ready);
        RealHost {
            child: None,
            dir: tempfile::Builder::new().prefix("cph").tempdir().unwrap(),
            data: p.data_dir(),
            args: Vec::new(),
            env: Vec::new(),
            host_id: h["host_id"].as_str().unwrap_or_default().into(),
            manager_uri: h["manager_uri"].as_str().unwrap_or_default().into(),
            bridge: format!("cpbr{tag:04x}"),
            table: format!("cpt{tag:04x}"),
        }
    }

    fn spawn(&mut self) {
        let (child, ready) = spawn_agent(self.dir.path(), &self.args, &self.env);
        self.child = Some(child);
        self.host_id = ready["host_id"].as_str().unwrap_or_default().into();
        self.manager_uri = ready["manager_uri"].as_str().unwrap_or_default().into();
    }

    /// SIGKILL the agent (its guests keep running).
    fn kill(&mut self) {
        stop_child(&mut self.child);
    }

    fn serial(&self, guest: &str) -> String {
        std::fs::read_to_string(self.data().join("servers").join(guest).join("serial.log"))
            .unwrap_or_default()
    }

    async fn wait_serial(&self, guest: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.serial(guest);
            if s.contains(needle) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not on the console of {guest}:\n{s}\nagent log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn qemu_pid(&self, guest: &str) -> Option<i32> {
        let t = std::fs::read_to_string(self.data().join("servers").join(guest).join("qemu.pid"))
            .ok()?;
        let pid: i32 = t.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    fn qemu_count(&self) -> usize {
        procs_matching(&self.data().display().to_string(), "qemu-system")
    }
}

fn procs_matching(needle: &str, prefix: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.starts_with(prefix) && cmd.contains(needle)
        })
        .count()
}

impl Drop for RealHost {
    fn drop(&mut self) {
        self.kill();
        let needle = self.data.display().to_string();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(&needle)
                    && let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>()
                {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.data().join("servers")) {
            for g in rd.flatten() {
                let id = g.file_name().to_string_lossy().into_owned();
                for i in 0..8 {
                    let tap = cloudpods_host::net::tap_name(&id, i);
                    if Path::new(&format!("/sys/class/net/{tap}")).exists() {
                        let _ = Command::new("ip").args(["link", "del", &tap]).status();
                    }
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "bridge", &self.table])
            .stderr(Stdio::null())
            .status();
    }
}

fn link_exists(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}")).exists()
}

struct Cloud {
    p: Platform,
    admin: Api,
    image_id: String,
    /// `10.x.y` of the test network.
    prefix: String,
}

/// `all-in-one --with-host` arguments: its own bridge and nftables table.
fn in_process_args(tag: u16, ping_seconds: u64) -> Vec<String> {
    [
        "--with-host",
        "--agent-port",
        "0",
        "--name",
        &format!("aio-host-{tag:04x}"),
        "--wire",
        &format!("wire0:cpbr{tag:04x}"),
        "--nft-table",
        &format!("cpt{tag:04x}"),
        "--storage-gb",
        "64",
        "--ping-seconds",
        &ping_seconds.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// All-in-one with the host agent in the same process, the test image in
/// glance, and a network on `wire0` (zone0 and wire0 come from the
/// agent's registration).
async fn single_node(ping_seconds: u64) -> (Cloud, RealHost) {
    let tag = rand16();
    let p = Platform::start_with(Opts {
        command_args: in_process_args(tag, ping_seconds),
        ..Default::default()
    });
    let h = RealHost::in_process(&p, tag);
    let c = cloud_on(p, false).await;
    (c, h)
}

/// All-in-one, the test image in glance, and a network on `wire0`.
async fn cloud() -> Cloud {
    cloud_on(Platform::start(), true).await
}

async fn cloud_on(p: Platform, create_wire: bool) -> Cloud {
    let admin = p.admin().await;
    let image = test_image();
    let (ok, out, err) = p.climc(&[
        "image-upload",
        "cirrus-test",
        &image.display().to_string(),
        "--format",
        "qcow2",
        "--wait",
        "--no-progress",
    ]);
    assert!(ok, "image-upload: {out} {err}\n{}", p.log());
    let g = p.service_url("glance");
    let g = g.trim_end_matches('/').trim_end_matches("/v1");
    let list = admin.get(&format!("{g}/v1/images?name=cirrus-test")).await;
    let image_id = list.body["images"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("uploaded image not listed: {list:?}"))
        .to_string();
    let r = p.region_url();
    let tag = rand16();
    let prefix = format!("10.{}.{}", 100 + (tag >> 8) % 100, tag & 0xff);
    let mut creates = Vec::new();
    if create_wire {
        creates.push((format!("{r}/zones"), json!({"zone": {"name": "zone0"}})));
        creates.push((
            format!("{r}/wires"),
            json!({"wire": {"name": "wire0", "zone": "zone0"}}),
        ));
    }
    for (url, body) in creates.into_iter().chain([(
            format!("{r}/networks"),
            json!({"network": {"name": "net0", "wire": "wire0",
                   "guest_ip_start": format!("{prefix}.10"), "guest_ip_end": format!("{prefix}.200"),
                   "guest_ip_mask": 24, "guest_gateway": format!("{prefix}.1"),
                   "is_public": true, "public_scope": "system"}}),
        )]) {
        let resp = admin.post(&url, body).await;
        assert_eq!(resp.status, 200, "{url}: {resp:?}");
    }
    Cloud {
        p,
        admin,
        image_id,
        prefix,
    }
}

impl Cloud {
    async fn server_id(&self, name: &str) -> String {
        let r = self
            .admin
            .get(&format!("{}/servers/{name}", self.p.region_url()))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body["server"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn wait_status(&self, id: &str, want: &str, secs: u64) -> Value {
        let url = format!("{}/servers/{id}", self.p.region_url());
        wait_until(&self.admin, &url, secs, |v| v["server"]["status"] == want).await
    }
}

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
    let (ok, out, err) = c.p.climc(&["server-delete", &id]);
    assert!(ok, "{out} {err}");
    let url = format!("{}/servers/{id}", c.p.region_url());
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.admin.get(&url).await.status != 404 {
        assert!(Instant::now() < deadline, "server not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let cache: Value = h
        .signed(reqwest::Method::GET, "/disks/image_cache", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

/// `climc server-create NAME --disk DISK --net net0 --mem-spec 256`.
fn create(c: &Cloud, name: &str, disk: &str, auto_start: bool) -> (bool, String, String) {
    let mut args = vec![
        "server-create",
        name,
        "--disk",
        disk,
        "--net",
        "net0",
        "--mem-spec",
        "256",
    ];
    if auto_start {
        args.push("--auto-start");
    }
    c.p.climc(&args)
}

/// Wait until the server's status is a failure (`*_fail`); returns it.
/// Wait for the server to fail, then check the status (when given) and
/// that the reason says `needle`.
async fn assert_fails_with(c: &Cloud, id: &str, secs: u64, status: Option<&str>, needle: &str) {
    let url = format!("{}/servers/{id}", c.p.region_url());
    let g = wait_until(&c.admin, &url, secs, |v| {
        v["server"]["status"]
            .as_str()
            .is_some_and(|s| s.ends_with("fail"))
    })
    .await["server"]
        .clone();
    if let Some(status) = status {
        assert_eq!(g["status"], status, "{g}");
    }
    assert!(
        g["fail_reason"]
            .as_str()
            .is_some_and(|r| r.contains(needle)),
        "{g}"
    );
}

fn qcow2_files(h: &RealHost) -> Vec<PathBuf> {
    std::fs::read_dir(h.data().join("disks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "qcow2"))
                .collect()
        })
        .unwrap_or_default()
}

async fn delete_and_wait(c: &Cloud, id: &str) {
    let (ok, out, err) = c.p.climc(&["server-delete", id]);
    assert!(ok, "{out} {err}");
    let url = format!("{}/servers/{id}", c.p.region_url());
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.admin.get(&url).await.status != 404 {
        assert!(Instant::now() < deadline, "server {id} not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    assert!(
        body["details"]
            .as_str()
            .is_some_and(|d| d.contains("not on this host")),
        "{body}"
    );
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
