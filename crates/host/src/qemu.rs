//! The QEMU driver: guests are QEMU processes launched directly (no
//! libvirt) and driven over QMP, disks are qcow2 files on local storage
//! backed by the image cache.
//!
//! Everything about a guest lives in `<data>/servers/<id>/` (desc, the
//! generated `startvm`, pid, QMP socket, serial and QEMU logs, NoCloud
//! seed), so an agent restarted while guests run finds them again: a guest
//! is running when the pid in `qemu.pid` is alive and is that guest's QEMU.
//! QEMU runs in the foreground of `startvm`, which records its exit code:
//! 0 (powered off or quit) or a kill by SIGTERM/SIGKILL is `ready`, any
//! other failure is `crashed`.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cmd::run;
use crate::imagecache::{CachedImage, ImageCache};
use crate::launch::{self, Accel, GuestPaths, LaunchDisk, LaunchSpec};
use crate::net::{NetManager, Nic};
use crate::proc;
use crate::qmp;
use crate::seed::Seed;
use crate::validate::{self, Roots};
use crate::{Driver, DriverError, DriverResult};

mod migrate;

/// Configuration of the QEMU driver.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// Guest directories go under `<data_dir>/servers`, network state under
    /// `<data_dir>/net`, the image cache under `<data_dir>/image_cache`.
    pub data_dir: PathBuf,
    /// Where disks live (the local storage's mount point).
    pub storage_dir: PathBuf,
    /// Capacity reported to the region; a disk larger than this is refused.
    pub storage_mb: i64,
    pub qemu: String,
    /// `None` = detect (KVM when usable, TCG otherwise).
    pub accel: Option<Accel>,
    /// Address VNC listens on, and the host to tell clients.
    pub vnc_listen: String,
    pub vnc_host: String,
    /// This agent's nftables table.
    pub nft_table: String,
    /// How long a QEMU gets to come up (its QMP socket answering).
    pub start_timeout: Duration,
    /// `-cpu` for guests whose desc names none (`None`: `host` under KVM,
    /// `qemu64` under TCG).
    pub cpu_model: Option<String>,
    /// This host's management address: where a live migration's target
    /// listens for the memory and the disks.
    pub migrate_address: String,
}

impl QemuOptions {
    pub fn new(data_dir: PathBuf) -> QemuOptions {
        QemuOptions {
            storage_dir: data_dir.join("disks"),
            data_dir,
            storage_mb: 100 * 1024,
            qemu: "qemu-system-x86_64".into(),
            accel: None,
            vnc_listen: "127.0.0.1".into(),
            vnc_host: "127.0.0.1".into(),
            nft_table: "cloudpods".into(),
            start_timeout: Duration::from_secs(30),
            cpu_model: None,
            migrate_address: "127.0.0.1".into(),
        }
    }
}

/// Per-guest facts kept beside the desc.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GuestState {
    vnc_port: u16,
    /// Disks currently given to the running QEMU.
    attached: Vec<String>,
    /// The agent stopped it (a kill then still means `ready`).
    stop_requested: bool,
    /// Status last reported to the region (to notice changes).
    last_status: String,
    /// A live migration's target: what it listens on until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incoming: Option<crate::livemigrate::Target>,
    /// A live migration's source after the move: its result, for a retried
    /// request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    migrated_out: Option<crate::livemigrate::Stats>,
}

pub struct QemuDriver {
    opts: QemuOptions,
    accel: Accel,
    images: Arc<ImageCache>,
    net: NetManager,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises VNC port picks.
    ports: tokio::sync::Mutex<()>,
    /// Disk copies from other hosts: no overall timeout (a disk takes as
    /// long as it takes), a bounded connect.
    copies: reqwest::Client,
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> DriverError + '_ {
    move |e| DriverError(format!("{what}: {e}"))
}

impl QemuDriver {
    pub fn new(opts: QemuOptions, images: Arc<ImageCache>) -> Result<QemuDriver, DriverError> {
        for d in [
            opts.data_dir.join("servers"),
            opts.storage_dir.clone(),
            opts.storage_dir.join("snapshots"),
        ] {
            std::fs::create_dir_all(&d).map_err(io_err("creating agent directories"))?;
        }
        let accel = opts.accel.unwrap_or_else(Accel::detect);
        let net = NetManager::new(opts.data_dir.join("net"), opts.nft_table.clone());
        Ok(QemuDriver {
            opts,
            accel,
            images,
            net,
            locks: Mutex::new(HashMap::new()),
            ports: tokio::sync::Mutex::new(()),
            copies: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn images(&self) -> &Arc<ImageCache> {
        &self.images
    }

    pub fn net(&self) -> &NetManager {
        &self.net
    }

    pub fn paths(&self, id: &str) -> GuestPaths {
        GuestPaths::new(self.opts.data_dir.join("servers").join(safe_id(id)))
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_string()).or_default().clone()
    }

    fn disk_path(&self, disk_id: &str) -> PathBuf {
        self.opts
            .storage_dir
            .join(format!("{}.qcow2", safe_id(disk_id)))
    }

    /// Where a disk's copy for another host is made (cold migrate); removed
    /// with the disk.
    fn export_path(&self, disk_id: &str) -> PathBuf {
        self.opts
            .storage_dir
            .join("exports")
            .join(format!("{}.qcow2", safe_id(disk_id)))
    }

    fn snapshot_path(&self, snapshot_id: &str) -> PathBuf {
        self.opts
            .storage_dir
            .join("snapshots")
            .join(format!("{}.qcow2", safe_id(snapshot_id)))
    }

    fn read_state(&self, p: &GuestPaths) -> GuestState {
        std::fs::read_to_string(p.state())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn write_state(&self, p: &GuestPaths, st: &GuestState) -> Result<(), DriverError> {
        write_atomic(
            &p.state(),
            &serde_json::to_string_pretty(st).unwrap_or_default(),
        )
    }

    fn read_desc(&self, p: &GuestPaths) -> Option<Value> {
        std::fs::read_to_string(p.desc())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The pid of the guest's QEMU when it runs.
    pub fn running_pid(&self, id: &str) -> Option<i32> {
        let p = self.paths(id);
        let pid = std::fs::read_to_string(p.pid())
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()?;
        let mine = proc::alive(pid) && proc::cmdline(pid).contains(&p.dir.display().to_string());
        mine.then_some(pid)
    }

    fn status_of(&self, id: &str) -> String {
        let p = self.paths(id);
        if !p.desc().exists() {
            return "notfound".into();
        }
        if self.running_pid(id).is_some() {
            return "running".into();
        }
        if self.read_state(&p).stop_requested {
            return "ready".into();
        }
        match std::fs::read_to_string(p.exit())
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            // Powered off, quit, or killed by TERM/KILL: stopped.
            None | Some(0) | Some(137) | Some(143) => "ready".into(),
            Some(_) => "crashed".into(),
        }
    }

    /// The directories this driver's files may be in.
    pub fn roots(&self) -> Roots {
        Roots {
            storage: vec![self.opts.storage_dir.clone()],
            image_cache: Some(self.opts.data_dir.join("image_cache")),
        }
    }

    /// Disks of a desc, with their files checked: ids, and paths inside
    /// this host's storage.
    fn launch_disks(&self, desc: &Value) -> Result<Vec<LaunchDisk>, DriverError> {
        let mut disks = desc["disks"].as_array().cloned().unwrap_or_default();
        disks.sort_by_key(|d| d["index"].as_i64().unwrap_or(0));
        let roots = self.roots();
        let mut out = Vec::new();
        for d in disks {
            let disk_id = d["disk_id"].as_str().unwrap_or_default().to_string();
            validate::id("disk", &disk_id)?;
            let path = d["path"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| self.disk_path(&disk_id).display().to_string());
            roots.check("disk path", &path, false)?;
            if !Path::new(&path).exists() {
                return Err(DriverError(format!(
                    "disk {disk_id} does not exist on this host ({path})"
                )));
            }
            out.push(LaunchDisk {
                disk_id,
                path,
                format: d["format"]
                    .as_str()
                    .filter(|f| !f.is_empty())
                    .unwrap_or("qcow2")
                    .to_string(),
                driver: d["driver"].as_str().unwrap_or("virtio").to_string(),
                boot_index: d["boot_index"].as_i64(),
            });
        }
        Ok(out)
    }

    /// Another guest of this host with that MAC.
    fn mac_clash(&self, id: &str, desc: &Value) -> Option<String> {
        let macs: Vec<String> = desc["nics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n["mac"].as_str().map(str::to_lowercase))
            .collect();
        for (i, m) in macs.iter().enumerate() {
            if macs[..i].contains(m) {
                return Some(format!("MAC {m} is given to two NICs of guest {id}"));
            }
        }
        for (other, _) in self.guest_list() {
            if other == id {
                continue;
            }
            let Some(d) = self.read_desc(&self.paths(&other)) else {
                continue;
            };
            for n in d["nics"].as_array().cloned().unwrap_or_default() {
                if let Some(m) = n["mac"].as_str().map(str::to_lowercase)
                    && macs.contains(&m)
                {
                    return Some(format!(
                        "MAC {m} is already used by guest {other} on this host"
                    ));
                }
            }
        }
        for m in &macs {
            if let Some(owner) = self.net.mac_owner(m, id) {
                return Some(format!(
                    "MAC {m} is already used by guest {owner} on this host"
                ));
            }
        }
        None
    }

    fn guest_list(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.opts.data_dir.join("servers")) {
            for e in rd.flatten() {
                if e.path().join("desc.json").exists() {
                    out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
                }
            }
        }
        out
    }

    /// A free VNC port, not used by another guest of this agent.
    async fn pick_vnc_port(&self, id: &str) -> Result<u16, DriverError> {
        let taken: Vec<u16> = self
            .guest_list()
            .into_iter()
            .filter(|(g, _)| g != id)
            .map(|(g, _)| self.read_state(&self.paths(&g)).vnc_port)
            .collect();
        for port in 5900u16..6900 {
            if taken.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind((self.opts.vnc_listen.as_str(), port)).is_ok() {
                return Ok(port);
            }
        }
        Err(DriverError("no free VNC port in 5900-6899".into()))
    }

    async fn launch(&self, id: &str, desc: &Value) -> Result<(), DriverError> {
        self.launch_with(id, desc, false).await
    }

    /// Launch QEMU; with `incoming` paused, waiting for a live migration's
    /// memory (the TLS key is in `migrate_tls()`).
    async fn launch_with(&self, id: &str, desc: &Value, incoming: bool) -> Result<(), DriverError> {
        let p = self.paths(id);
        let disks = self.launch_disks(desc)?;
        let nics = Nic::from_desc(desc)?;
        let vnc_port;
        {
            let _g = self.ports.lock().await;
            vnc_port = self.pick_vnc_port(id).await?;
            let mut st = self.read_state(&p);
            st.vnc_port = vnc_port;
            st.stop_requested = false;
            st.attached = disks.iter().map(|d| d.disk_id.clone()).collect();
            self.write_state(&p, &st)?;
        }
        let seed = p.seed();
        let args = launch::qemu_args(&LaunchSpec {
            qemu: &self.opts.qemu,
            accel: self.accel,
            desc,
            paths: &p,
            disks: &disks,
            nics: &nics,
            vnc_listen: &self.opts.vnc_listen,
            vnc_port,
            seed: seed.exists().then_some(seed.as_path()),
            default_cpu_model: self.opts.cpu_model.as_deref(),
            incoming: incoming.then(|| p.migrate_tls()).as_deref(),
        })?;
        let script = launch::startvm_script(&self.opts.qemu, &args, &p);
        write_atomic(&p.startvm(), &script)?;
        for f in [p.pid(), p.qmp(), p.exit()] {
            let _ = std::fs::remove_file(f);
        }
        self.net.plug(&nics).await?;
        let spawned = std::process::Command::new("/bin/sh")
            .arg(p.startvm())
            .current_dir(&p.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: signals to the agent's group (Ctrl-C)
            // do not reach guests.
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = self.net.unplug(id).await;
                return Err(DriverError(format!("cannot run startvm: {e}")));
            }
        };
        // Reap the wrapper whenever it ends (it outlives nothing of ours).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            if p.exit().exists() {
                let _ = self.net.unplug(id).await;
                let log = std::fs::read_to_string(p.qemu_log()).unwrap_or_default();
                // It never ran: the guest stays `ready`, not `crashed`.
                let _ = std::fs::remove_file(p.exit());
                let msg = log.trim();
                return Err(DriverError(if msg.is_empty() {
                    "QEMU exited while starting".into()
                } else {
                    format!("QEMU failed to start: {msg}")
                }));
            }
            if p.qmp().exists()
                && let Ok(st) = qmp::run(&p.qmp(), "query-status", None).await
                && (st["running"] == json!(true) || (incoming && st["status"] == "inmigrate"))
            {
                if let Ok(v) = qmp::run(&p.qmp(), "query-vnc", None).await
                    && let Some(port) = v["service"].as_str().and_then(|s| s.parse::<u16>().ok())
                    && port != vnc_port
                {
                    let mut st = self.read_state(&p);
                    st.vnc_port = port;
                    self.write_state(&p, &st)?;
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                if let Some(pid) = self.running_pid(id) {
                    proc::signal(pid, 9);
                }
                let _ = self.net.unplug(id).await;
                return Err(DriverError(format!(
                    "QEMU did not come up within {:?}",
                    self.opts.start_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop the QEMU: ACPI power button first unless `force`, then quit,
    /// then SIGKILL.
    async fn halt(&self, id: &str, force: bool, timeout: Duration) -> Result<(), DriverError> {
        let p = self.paths(id);
        let Some(pid) = self.running_pid(id) else {
            return Ok(());
        };
        let mut st = self.read_state(&p);
        st.stop_requested = true;
        self.write_state(&p, &st)?;
        if !force && qmp::run(&p.qmp(), "system_powerdown", None).await.is_ok() {
            if wait_gone(pid, timeout).await {
                return Ok(());
            }
            tracing::info!(guest = id, "no ACPI shutdown in time; quitting QEMU");
        }
        let _ = qmp::run(&p.qmp(), "quit", None).await;
        if !wait_gone(pid, Duration::from_secs(5)).await {
            proc::signal(pid, 9);
            if !wait_gone(pid, Duration::from_secs(5)).await {
                return Err(DriverError(format!(
                    "QEMU of guest {id} (pid {pid}) does not die"
                )));
            }
        }
        Ok(())
    }

    /// The running guest that has this disk.
    fn user_of_disk(&self, disk_id: &str) -> Option<String> {
        self.guest_list().into_iter().find_map(|(g, _)| {
            let st = self.read_state(&self.paths(&g));
            (st.attached.iter().any(|d| d == disk_id) && self.running_pid(&g).is_some())
                .then_some(g)
        })
    }

    /// Hot-plug and unplug disks so the running guest matches `desc`.
    async fn sync_disks(&self, id: &str, desc: &Value) -> Result<(), DriverError> {
        let p = self.paths(id);
        let wanted = self.launch_disks(desc)?;
        let mut st = self.read_state(&p);
        let qmp_path = p.qmp();
        for d in &wanted {
            if st.attached.contains(&d.disk_id) {
                continue;
            }
            let node = launch::node_name(&d.disk_id);
            let mut q = qmp::Qmp::connect(&qmp_path).await.map_err(qmp_err)?;
            q.execute(
                "blockdev-add",
                Some(json!({"driver": d.format, "node-name": node,
                            "file": {"driver": "file", "filename": d.path}})),
            )
            .await
            .map_err(qmp_err)?;
            let driver = if d.driver == "ide" {
                "ide-hd"
            } else {
                "virtio-blk-pci"
            };
            if let Err(e) = q
                .execute(
                    "device_add",
                    Some(json!({"driver": driver, "drive": node, "id": launch::device_name(&d.disk_id)})),
                )
                .await
            {
                let _ = q
                    .execute("blockdev-del", Some(json!({"node-name": node})))
                    .await;
                return Err(qmp_err(e));
            }
            st.attached.push(d.disk_id.clone());
            self.write_state(&p, &st)?;
        }
        let gone: Vec<String> = st
            .attached
            .iter()
            .filter(|a| !wanted.iter().any(|w| &w.disk_id == *a))
            .cloned()
            .collect();
        for disk_id in gone {
            let mut q = qmp::Qmp::connect(&qmp_path).await.map_err(qmp_err)?;
            let dev = launch::device_name(&disk_id);
            q.execute("device_del", Some(json!({"id": dev})))
                .await
                .map_err(qmp_err)?;
            if q.wait_event("DEVICE_DELETED", Duration::from_secs(15))
                .await
                .is_none()
            {
                return Err(DriverError(format!(
                    "the guest did not release disk {disk_id} (no ACPI hot-unplug?)"
                )));
            }
            // -drive backends go with their device; blockdev-add'ed ones
            // need deleting.
            let _ = q
                .execute(
                    "blockdev-del",
                    Some(json!({"node-name": launch::node_name(&disk_id)})),
                )
                .await;
            st.attached.retain(|a| a != &disk_id);
            self.write_state(&p, &st)?;
        }
        Ok(())
    }

    /// Status changes since last asked: `(guest, new status)`. The agent's
    /// heartbeat passes them to the region; a guest that stopped on its own
    /// also loses its taps here.
    pub async fn changes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (id, _) in self.guest_list() {
            let p = self.paths(&id);
            let now = self.status_of(&id);
            let mut st = self.read_state(&p);
            if st.last_status != now {
                let was = std::mem::replace(&mut st.last_status, now.clone());
                let _ = self.write_state(&p, &st);
                if was == "running" && now != "running" {
                    let _ = self.net.unplug(&id).await;
                }
                if !was.is_empty() {
                    out.push((id, now));
                }
            }
        }
        out
    }

    fn record_status(&self, id: &str) {
        let p = self.paths(id);
        let mut st = self.read_state(&p);
        st.last_status = self.status_of(id);
        let _ = self.write_state(&p, &st);
    }

    async fn create_from_image(
        &self,
        path: &Path,
        img: &CachedImage,
        size_mb: i64,
    ) -> Result<i64, DriverError> {
        let min_mb = img.virtual_size.div_ceil(1024 * 1024) as i64;
        let size_mb = size_mb.max(min_mb);
        crate::cmd::qcow2_create(path, &format!("{size_mb}M"), Some((&img.path, &img.format)))
            .await?;
        Ok(size_mb)
    }
}

fn qmp_err(e: qmp::QmpError) -> DriverError {
    DriverError(e.to_string())
}

async fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !proc::alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !proc::alive(pid)
}

fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_atomic(path: &Path, text: &str) -> Result<(), DriverError> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).map_err(io_err("writing guest files"))?;
    std::fs::rename(&tmp, path).map_err(io_err("writing guest files"))
}

#[async_trait]
impl Driver for QemuDriver {
    async fn deploy(&self, id: &str, desc: &Value, params: &Value) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        let fresh = !p.desc().exists();
        let result = async {
            if let Some(msg) = self.mac_clash(id, desc) {
                return Err(DriverError(msg));
            }
            self.launch_disks(desc)?;
            std::fs::create_dir_all(&p.dir).map_err(io_err("guest directory"))?;
            let mut desc = desc.clone();
            if desc["uuid"].as_str().unwrap_or_default().is_empty() {
                desc["uuid"] = json!(id);
            }
            Seed::from_desc(&desc, params).write_iso(&p.seed()).await?;
            write_atomic(
                &p.desc(),
                &serde_json::to_string_pretty(&desc).unwrap_or_default(),
            )?;
            self.record_status(id);
            Ok(json!({"os_type": "Linux"}))
        }
        .await;
        if result.is_err() && fresh {
            let _ = std::fs::remove_dir_all(&p.dir);
        }
        result
    }

    async fn start(&self, id: &str, desc: &Value) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        if !p.desc().exists() {
            return Err(DriverError::unknown_guest(id));
        }
        if self.running_pid(id).is_some() {
            return Ok(json!({"status": "running"}));
        }
        // The region's desc wins (change-config while stopped).
        let desc = if desc.get("uuid").is_some() || desc.get("disks").is_some() {
            let mut d = desc.clone();
            if d["uuid"].as_str().unwrap_or_default().is_empty() {
                d["uuid"] = json!(id);
            }
            if let Some(msg) = self.mac_clash(id, &d) {
                return Err(DriverError(msg));
            }
            write_atomic(
                &p.desc(),
                &serde_json::to_string_pretty(&d).unwrap_or_default(),
            )?;
            d
        } else {
            self.read_desc(&p)
                .ok_or_else(|| DriverError(format!("guest {id} has no desc")))?
        };
        let r = self.launch(id, &desc).await;
        self.record_status(id);
        r?;
        Ok(json!({"status": "running"}))
    }

    async fn stop(&self, id: &str, force: bool, timeout_secs: u64) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        if !self.paths(id).desc().exists() {
            return Err(DriverError::unknown_guest(id));
        }
        self.halt(id, force, Duration::from_secs(timeout_secs.clamp(1, 600)))
            .await?;
        self.net.unplug(id).await?;
        self.record_status(id);
        Ok(json!({"status": "ready"}))
    }

    async fn reset(&self, id: &str) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        if !p.desc().exists() {
            return Err(DriverError::unknown_guest(id));
        }
        if self.running_pid(id).is_none() {
            return Err(DriverError(format!("guest {id} is not running")));
        }
        qmp::run(&p.qmp(), "system_reset", None)
            .await
            .map_err(qmp_err)?;
        Ok(json!({"status": "running"}))
    }

    async fn delete(&self, id: &str) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        self.halt(id, true, Duration::from_secs(1)).await?;
        self.net.unplug(id).await?;
        if p.dir.exists() {
            std::fs::remove_dir_all(&p.dir).map_err(io_err("removing guest files"))?;
        }
        Ok(json!({}))
    }

    async fn sync(&self, id: &str, desc: &Value) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        if !p.desc().exists() {
            return Err(DriverError::unknown_guest(id));
        }
        let mut d = desc.clone();
        if d["uuid"].as_str().unwrap_or_default().is_empty() {
            d["uuid"] = json!(id);
        }
        if self.running_pid(id).is_some() {
            self.sync_disks(id, &d).await?;
            self.net.update_rules(&Nic::from_desc(&d)?).await?;
        } else {
            self.launch_disks(&d)?;
        }
        write_atomic(
            &p.desc(),
            &serde_json::to_string_pretty(&d).unwrap_or_default(),
        )?;
        Ok(json!({}))
    }

    async fn status(&self, id: &str) -> String {
        self.status_of(id)
    }

    async fn vnc(&self, id: &str) -> DriverResult {
        let p = self.paths(id);
        if self.running_pid(id).is_none() {
            return Err(DriverError(format!("guest {id} is not running here")));
        }
        let st = self.read_state(&p);
        Ok(
            json!({"protocol": "vnc", "host": self.opts.vnc_host, "port": st.vnc_port,
                  "consoles": ["vnc", "serial"]}),
        )
    }

    async fn console(
        &self,
        id: &str,
        protocol: crate::console::Protocol,
    ) -> Result<crate::console::Endpoint, DriverError> {
        let p = self.paths(id);
        if self.running_pid(id).is_none() {
            return Err(DriverError(format!("guest {id} is not running here")));
        }
        Ok(match protocol {
            crate::console::Protocol::Vnc => {
                let st = self.read_state(&p);
                // QEMU listens where the agent told it; a wildcard listen is
                // reached on loopback.
                let ip: std::net::IpAddr = match self.opts.vnc_listen.parse() {
                    Ok(ip) if !std::net::IpAddr::is_unspecified(&ip) => ip,
                    _ => std::net::Ipv4Addr::LOCALHOST.into(),
                };
                if st.vnc_port < 5900 {
                    return Err(DriverError(format!("guest {id} has no VNC display")));
                }
                crate::console::Endpoint::Vnc((ip, st.vnc_port).into())
            }
            crate::console::Protocol::Serial => {
                let socket = p.serial_socket();
                if !socket.exists() {
                    return Err(DriverError(format!(
                        "guest {id} was started without a serial console socket (start it again to have one)"
                    )));
                }
                crate::console::Endpoint::Serial {
                    socket,
                    log: p.serial(),
                }
            }
        })
    }

    async fn disk_create(&self, _storage_id: &str, disk_id: &str, disk: &Value) -> DriverResult {
        let lock = self.lock(&format!("disk:{disk_id}"));
        let _g = lock.lock().await;
        let path = self.disk_path(disk_id);
        let size_mb = disk["size"].as_i64().unwrap_or(0);
        if path.exists() {
            return Ok(json!({"disk_path": path.display().to_string(), "disk_size": size_mb}));
        }
        if size_mb > self.opts.storage_mb {
            return Err(DriverError(format!(
                "disk of {size_mb} MB is larger than the storage ({} MB at {})",
                self.opts.storage_mb,
                self.opts.storage_dir.display()
            )));
        }
        let migrate_from = disk.get("migrate_from").filter(|m| !m.is_null());
        let image = disk["image_id"].as_str().unwrap_or_default();
        let snapshot = disk["snapshot_id"].as_str().unwrap_or_default();
        let tmp = path.with_extension("creating");
        let result = async {
            let size = if let Some(from) = migrate_from {
                // Cold migrate: the source host's copy, checksummed.
                crate::diskcopy::fetch(&self.copies, from, &tmp).await?;
                size_mb
            } else if !image.is_empty() {
                let img = self.images.get(image).await?;
                if disk["disk_type"].as_str() != Some("data") && !img.bootable {
                    return Err(DriverError(format!(
                        "image {image} is not bootable: its first sector has no boot signature"
                    )));
                }
                self.create_from_image(&tmp, &img, size_mb).await?
            } else if !snapshot.is_empty() {
                let snap = self.snapshot_path(snapshot);
                crate::cmd::qcow2_convert(&snap, &tmp, false).await?;
                if size_mb > 0 {
                    let _ = run(
                        "qemu-img",
                        [
                            "resize".to_string(),
                            tmp.display().to_string(),
                            format!("{size_mb}M"),
                        ],
                    )
                    .await;
                }
                size_mb
            } else {
                if size_mb <= 0 {
                    return Err(DriverError(format!("disk {disk_id}: size is required")));
                }
                crate::cmd::qcow2_create(&tmp, &format!("{size_mb}M"), None).await?;
                size_mb
            };
            std::fs::rename(&tmp, &path).map_err(io_err("disk"))?;
            Ok(size)
        }
        .await;
        match result {
            Ok(size) => Ok(json!({"disk_path": path.display().to_string(), "disk_size": size})),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    async fn disk_delete(&self, _storage_id: &str, disk_id: &str) -> DriverResult {
        if let Some(g) = self.user_of_disk(disk_id) {
            return Err(DriverError(format!(
                "disk {disk_id} is in use by running guest {g}"
            )));
        }
        let path = self.disk_path(disk_id);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io_err("removing disk"))?;
        }
        let _ = std::fs::remove_file(self.export_path(disk_id));
        Ok(json!({}))
    }

    async fn disk_export(
        &self,
        _storage_id: &str,
        disk_id: &str,
    ) -> Result<crate::diskcopy::DiskExport, DriverError> {
        let lock = self.lock(&format!("disk:{disk_id}"));
        let _g = lock.lock().await;
        let path = self.disk_path(disk_id);
        if !path.exists() {
            return Err(DriverError(format!("disk {disk_id} does not exist here")));
        }
        if let Some(g) = self.user_of_disk(disk_id) {
            return Err(DriverError(format!(
                "disk {disk_id} is in use by running guest {g}: stop it to copy the disk"
            )));
        }
        crate::diskcopy::export(&path, &self.export_path(disk_id)).await
    }

    async fn disk_resize(&self, _storage_id: &str, disk_id: &str, size_mb: i64) -> DriverResult {
        let path = self.disk_path(disk_id);
        if !path.exists() {
            return Err(DriverError(format!("disk {disk_id} does not exist")));
        }
        if size_mb > self.opts.storage_mb {
            return Err(DriverError(format!(
                "disk of {size_mb} MB is larger than the storage ({} MB)",
                self.opts.storage_mb
            )));
        }
        if let Some(g) = self.user_of_disk(disk_id) {
            // A disk given at launch (`-drive id=…`) is a block device of
            // that name; a hot-plugged one (`blockdev-add`) only a node.
            let qmp_path = self.paths(&g).qmp();
            let node = launch::node_name(disk_id);
            let bytes = size_mb * 1024 * 1024;
            let by_device = qmp::run(
                &qmp_path,
                "block_resize",
                Some(json!({"device": node, "size": bytes})),
            )
            .await;
            if by_device.is_err() {
                qmp::run(
                    &qmp_path,
                    "block_resize",
                    Some(json!({"node-name": node, "size": bytes})),
                )
                .await
                .map_err(qmp_err)?;
            }
        } else {
            run(
                "qemu-img",
                [
                    "resize".to_string(),
                    "-q".into(),
                    path.display().to_string(),
                    format!("{size_mb}M"),
                ],
            )
            .await?;
        }
        Ok(json!({"disk_size": size_mb}))
    }

    async fn disk_snapshot(
        &self,
        _storage_id: &str,
        disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult {
        let path = self.disk_path(disk_id);
        if !path.exists() {
            return Err(DriverError(format!("disk {disk_id} does not exist")));
        }
        let snap = self.snapshot_path(snapshot_id);
        if !snap.exists() {
            // Shared: a running guest holds the image's lock.
            crate::cmd::qcow2_convert_into(&path, &snap, true).await?;
        }
        Ok(json!({"location": snap.display().to_string()}))
    }

    async fn disk_delete_snapshot(
        &self,
        _storage_id: &str,
        _disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult {
        let _ = std::fs::remove_file(self.snapshot_path(snapshot_id));
        Ok(json!({}))
    }

    async fn disk_reset(
        &self,
        _storage_id: &str,
        disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult {
        if let Some(g) = self.user_of_disk(disk_id) {
            return Err(DriverError(format!(
                "disk {disk_id} is in use by running guest {g}"
            )));
        }
        let snap = self.snapshot_path(snapshot_id);
        if !snap.exists() {
            return Err(DriverError(format!(
                "snapshot {snapshot_id} of disk {disk_id} does not exist"
            )));
        }
        let path = self.disk_path(disk_id);
        let tmp = path.with_extension("resetting");
        std::fs::copy(&snap, &tmp).map_err(io_err("disk reset"))?;
        std::fs::rename(&tmp, &path).map_err(io_err("disk reset"))?;
        Ok(json!({}))
    }

    async fn live_migrate_info(
        &self,
        id: &str,
    ) -> Result<crate::livemigrate::SourceInfo, DriverError> {
        self.lm_info(id).await
    }

    async fn live_migrate_prepare(
        &self,
        id: &str,
        desc: &Value,
        p: &crate::livemigrate::Prepare,
    ) -> Result<crate::livemigrate::Target, DriverError> {
        self.lm_prepare(id, desc, p).await
    }

    async fn live_migrate_send(
        &self,
        id: &str,
        p: &crate::livemigrate::Send,
    ) -> Result<crate::livemigrate::Stats, DriverError> {
        self.lm_send(id, p).await
    }

    async fn live_migrate_resume(&self, id: &str) -> DriverResult {
        self.lm_resume(id).await
    }

    async fn live_migrate_cancel(&self, id: &str) -> DriverResult {
        self.lm_cancel(id).await
    }

    async fn guests(&self) -> Vec<(String, String)> {
        self.guest_list()
            .into_iter()
            .map(|(id, _)| {
                let st = self.status_of(&id);
                (id, st)
            })
            .collect()
    }

    async fn changed(&self) -> Vec<(String, String)> {
        self.changes().await
    }

    async fn cached_images(&self) -> Value {
        json!({"images": self.images.list(), "downloads": self.images.downloads()})
    }
}
