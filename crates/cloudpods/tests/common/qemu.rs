//! Real QEMU guests through the whole platform: the test image, a host
//! agent (its own process or inside all-in-one) cleaned up on drop, and a
//! cloud with the image in glance and a network. Shared by host_qemu.rs
//! and qemu_guest_ops.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

pub fn test_image() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image");
    let out = Command::new(script).output().expect("build-test-image");
    assert!(
        out.status.success(),
        "build-test-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn rand16() -> u16 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ((n >> 8) as u16) ^ (std::process::id() as u16)
}

/// A real host agent — its own process, or inside all-in-one (`child` is
/// then `None` and `data` the platform's data dir); on drop the process is
/// killed, and its guests, taps, bridge and nftables table are removed.
pub struct RealHost {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub host_id: String,
    pub manager_uri: String,
    pub bridge: String,
    pub table: String,
}

impl RealHost {
    pub fn start(p: &Platform, wire: &str, ping_seconds: u64) -> RealHost {
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

    pub fn data(&self) -> PathBuf {
        self.data.clone()
    }

    /// A request to the agent signed with its secret, as the region signs.
    pub fn signed(
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// The agent inside `p` (started with [`in_process_args`]).
    pub fn in_process(p: &Platform, tag: u16) -> RealHost {
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

    /// Start the agent process (again) and wait until it has registered.
    pub fn spawn(&mut self) {
        let (child, v) = spawn_agent(self.dir.path(), &self.args, &self.env);
        self.child = Some(child);
        self.host_id = v["host_id"].as_str().unwrap_or_default().into();
        self.manager_uri = v["manager_uri"].as_str().unwrap_or_default().into();
    }

    /// SIGKILL the agent (its guests keep running).
    pub fn kill(&mut self) {
        stop_child(&mut self.child);
    }

    pub fn serial(&self, guest: &str) -> String {
        std::fs::read_to_string(self.data().join("servers").join(guest).join("serial.log"))
            .unwrap_or_default()
    }

    pub async fn wait_serial(&self, guest: &str, needle: &str, secs: u64) -> String {
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

    pub fn qemu_pid(&self, guest: &str) -> Option<i32> {
        let t = std::fs::read_to_string(self.data().join("servers").join(guest).join("qemu.pid"))
            .ok()?;
        let pid: i32 = t.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    pub fn qemu_count(&self) -> usize {
        procs_matching(&self.data().display().to_string(), "qemu-system")
    }
}

pub use cloudpods_testkit::procs_matching;

impl Drop for RealHost {
    fn drop(&mut self) {
        self.kill();
        let servers = self.data.join("servers");
        let tap_name = cloudpods_host::net::tap_name;
        cloudpods_testkit::clean_host(&self.data, &servers, &self.bridge, &self.table, tap_name);
    }
}

pub fn link_exists(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}")).exists()
}

pub struct Cloud {
    pub p: Platform,
    pub admin: Api,
    pub image_id: String,
    /// `10.x.y` of the test network.
    pub prefix: String,
}

/// `all-in-one --with-host` arguments: its own bridge and nftables table.
pub fn in_process_args(tag: u16, ping_seconds: u64) -> Vec<String> {
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
pub async fn single_node(ping_seconds: u64) -> (Cloud, RealHost) {
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
pub async fn cloud() -> Cloud {
    cloud_on(Platform::start(), true).await
}

pub async fn cloud_on(p: Platform, create_wire: bool) -> Cloud {
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
    pub async fn server_id(&self, name: &str) -> String {
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

    pub async fn wait_status(&self, id: &str, want: &str, secs: u64) -> Value {
        let url = format!("{}/servers/{id}", self.p.region_url());
        wait_until(&self.admin, &url, secs, |v| v["server"]["status"] == want).await
    }
}

/// `climc server-create NAME --disk DISK --net net0 --mem-spec 256`.
pub fn create(c: &Cloud, name: &str, disk: &str, auto_start: bool) -> (bool, String, String) {
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
pub async fn assert_fails_with(c: &Cloud, id: &str, secs: u64, status: Option<&str>, needle: &str) {
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

pub fn qcow2_files(h: &RealHost) -> Vec<PathBuf> {
    std::fs::read_dir(h.data().join("disks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "qcow2"))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn delete_and_wait(c: &Cloud, id: &str) {
    let (ok, out, err) = c.p.climc(&["server-delete", id]);
    assert!(ok, "{out} {err}");
    let url = format!("{}/servers/{id}", c.p.region_url());
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.admin.get(&url).await.status != 404 {
        assert!(Instant::now() < deadline, "server {id} not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
