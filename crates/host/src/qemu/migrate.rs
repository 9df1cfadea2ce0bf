//! Live migration on the QEMU driver.
//!
//! Target: empty qcow2 disks of the source's exact sizes, QEMU started
//! paused with `-incoming defer`, an NBD server exporting those disks
//! writable, then `migrate-incoming`. Source: each disk mirrored
//! (`blockdev-mirror`, `sync=full`) into the target's export; once every
//! mirror is in step, `migrate`; when the memory is across (the source is
//! paused) the mirrors are completed (`block-job-cancel` of a ready mirror
//! flushes what is left and detaches), and the source QEMU quits. The
//! target then stops its NBD server and runs (`cont`): it never runs before
//! its disks are complete. NBD and the migration stream are TLS with the
//! migration's pre-shared key; the ports listen on the management address
//! only while the migration lasts.
//!
//! Until the source QEMU quits, a failure leaves the guest running on the
//! source (a paused source is continued) and the target is removed by the
//! region's undo.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use super::*;
use crate::launch::{MIGRATE_TLS_ID, node_name};
use crate::livemigrate::{MigrateDisk, Prepare, Send, SourceInfo, Stats, Target};

/// Job and node ids of the mirrors (their NBD client nodes share them).
const MIRROR_PREFIX: &str = "cpmig-";
/// How long a disk mirror or the memory copy may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn mirror_id(disk_id: &str) -> String {
    format!("{MIRROR_PREFIX}{}", node_name(disk_id))
}

/// `keys.psk` for QEMU's `tls-creds-psk` (user `qemu`, the default).
fn write_psk(dir: &Path, psk: &str) -> Result<(), DriverError> {
    std::fs::create_dir_all(dir).map_err(io_err("migration key directory"))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("keys.psk"))
        .map_err(io_err("migration key"))?;
    writeln!(f, "qemu:{psk}").map_err(io_err("migration key"))
}

/// A port free on `host` now (QEMU binds it right after; a lost race is
/// retried by the caller).
fn free_port(host: &str) -> Result<u16, DriverError> {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| DriverError(format!("no free port on {host}: {e}")))
}

fn uri_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// device (`-drive id`) → (root node name, virtual size) of a QEMU.
async fn block_nodes(qmp_path: &Path) -> Result<HashMap<String, (String, u64)>, DriverError> {
    let v = qmp::run(qmp_path, "query-block", None)
        .await
        .map_err(qmp_err)?;
    let mut out = HashMap::new();
    for b in v.as_array().cloned().unwrap_or_default() {
        let ins = &b["inserted"];
        if let (Some(dev), Some(node)) = (b["device"].as_str(), ins["node-name"].as_str()) {
            let size = ins["image"]["virtual-size"].as_u64().unwrap_or(0);
            out.insert(dev.to_string(), (node.to_string(), size));
        }
    }
    Ok(out)
}

/// Our mirror jobs: id → ready.
async fn mirror_jobs(qmp_path: &Path) -> Result<BTreeMap<String, (bool, u64)>, DriverError> {
    let v = qmp::run(qmp_path, "query-block-jobs", None)
        .await
        .map_err(qmp_err)?;
    Ok(v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|j| {
            let id = j["device"].as_str()?;
            id.starts_with(MIRROR_PREFIX).then(|| {
                (
                    id.to_string(),
                    (
                        j["ready"].as_bool().unwrap_or(false),
                        j["offset"].as_u64().unwrap_or(0),
                    ),
                )
            })
        })
        .collect())
}

fn disk_ids(desc: &Value) -> Vec<String> {
    desc["disks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d["disk_id"].as_str().map(str::to_string))
        .collect()
}

impl QemuDriver {
    fn running_desc(&self, id: &str) -> Result<(GuestPaths, Value), DriverError> {
        let p = self.paths(id);
        let desc = self
            .read_desc(&p)
            .ok_or_else(|| DriverError::unknown_guest(id))?;
        if self.running_pid(id).is_none() {
            return Err(DriverError(format!("guest {id} is not running here")));
        }
        Ok((p, desc))
    }

    pub(super) async fn lm_info(&self, id: &str) -> Result<SourceInfo, DriverError> {
        let (p, desc) = self.running_desc(id)?;
        let nodes = block_nodes(&p.qmp()).await?;
        let mut disks = Vec::new();
        for d in disk_ids(&desc) {
            let (_, size) = nodes.get(&node_name(&d)).ok_or_else(|| {
                DriverError(format!("disk {d} is not attached to the running guest"))
            })?;
            disks.push(MigrateDisk {
                disk_id: d,
                virtual_size: *size,
            });
        }
        Ok(SourceInfo { disks })
    }

    pub(super) async fn lm_prepare(
        &self,
        id: &str,
        desc: &Value,
        prep: &Prepare,
    ) -> Result<Target, DriverError> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        let st = self.read_state(&p);
        if self.running_pid(id).is_some() {
            // A retried request finds its own waiting QEMU.
            return st
                .incoming
                .ok_or_else(|| DriverError(format!("guest {id} already runs on this host")));
        }
        if let Some(msg) = self.mac_clash(id, desc) {
            return Err(DriverError(msg));
        }
        let mut desc = desc.clone();
        if desc["uuid"].as_str().unwrap_or_default().is_empty() {
            desc["uuid"] = json!(id);
        }
        let mut disk_paths = BTreeMap::new();
        let mut sizes = Vec::new();
        for d in desc["disks"].as_array_mut().into_iter().flatten() {
            let did = d["disk_id"].as_str().unwrap_or_default().to_string();
            validate::id("disk", &did)?;
            let size = prep
                .disks
                .iter()
                .find(|m| m.disk_id == did)
                .map(|m| m.virtual_size)
                .ok_or_else(|| DriverError(format!("disk {did}: the source gave no size")))?;
            let path = self.disk_path(&did).display().to_string();
            d["path"] = json!(path);
            d["format"] = json!("qcow2");
            disk_paths.insert(did.clone(), path.clone());
            sizes.push((did, path, size));
        }
        if sizes.len() != prep.disks.len() {
            return Err(DriverError(
                "the disks to migrate are not the guest's disks".into(),
            ));
        }
        let total_mb: u64 = sizes.iter().map(|(_, _, b)| b.div_ceil(1 << 20)).sum();
        if total_mb as i64 > self.opts.storage_mb {
            return Err(DriverError(format!(
                "the guest's disks ({total_mb} MB) do not fit this host's storage ({} MB)",
                self.opts.storage_mb
            )));
        }
        let fresh = !p.dir.exists();
        let mut made: Vec<PathBuf> = Vec::new();
        let result = async {
            for (did, path, _) in &sizes {
                if Path::new(path).exists() {
                    return Err(DriverError(format!(
                        "disk {did} already exists on this host"
                    )));
                }
            }
            for (_, path, bytes) in &sizes {
                crate::cmd::qcow2_create(Path::new(path), &bytes.to_string(), None).await?;
                made.push(PathBuf::from(path));
            }
            std::fs::create_dir_all(&p.dir).map_err(io_err("guest directory"))?;
            Seed::from_desc(&desc, &json!({"reset_password": false, "migrate": true}))
                .write_iso(&p.seed())
                .await?;
            write_atomic(
                &p.desc(),
                &serde_json::to_string_pretty(&desc).unwrap_or_default(),
            )?;
            write_psk(&p.migrate_tls(), &prep.psk)?;
            self.launch_with(id, &desc, true).await?;
            let target = self
                .listen_incoming(&p, &disk_ids(&desc), disk_paths)
                .await?;
            let mut st = self.read_state(&p);
            st.incoming = Some(target.clone());
            st.migrated_out = None;
            // The waiting QEMU is this task's doing, not a change to report.
            st.last_status = self.status_of(id);
            self.write_state(&p, &st)?;
            Ok(target)
        }
        .await;
        if result.is_err() {
            let _ = self.halt(id, true, Duration::from_secs(1)).await;
            let _ = self.net.unplug(id).await;
            for f in &made {
                let _ = std::fs::remove_file(f);
            }
            if fresh {
                let _ = std::fs::remove_dir_all(&p.dir);
            } else {
                let _ = std::fs::remove_dir_all(p.migrate_tls());
            }
        }
        result
    }

    /// Start the NBD server and the incoming migration on free ports.
    async fn listen_incoming(
        &self,
        p: &GuestPaths,
        disks: &[String],
        disk_paths: BTreeMap<String, String>,
    ) -> Result<Target, DriverError> {
        let q = p.qmp();
        let host = self.opts.migrate_address.clone();
        qmp::run(
            &q,
            "migrate-set-parameters",
            Some(json!({"tls-creds": MIGRATE_TLS_ID})),
        )
        .await
        .map_err(qmp_err)?;
        let mut nbd_port = 0;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port(&host)?;
            match qmp::run(
                &q,
                "nbd-server-start",
                Some(json!({"addr": {"type": "inet", "data": {"host": host, "port": port.to_string()}},
                            "tls-creds": MIGRATE_TLS_ID})),
            )
            .await
            {
                Ok(_) => {
                    nbd_port = port;
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        if nbd_port == 0 {
            return Err(DriverError(format!("cannot start the NBD server: {last}")));
        }
        let nodes = block_nodes(&q).await?;
        for d in disks {
            let dev = node_name(d);
            let (node, _) = nodes
                .get(&dev)
                .ok_or_else(|| DriverError(format!("disk {d} is not attached")))?;
            qmp::run(
                &q,
                "block-export-add",
                Some(json!({"type": "nbd", "id": mirror_id(d), "node-name": node,
                            "name": dev, "writable": true})),
            )
            .await
            .map_err(qmp_err)?;
        }
        let mut migrate_port = 0;
        for _ in 0..5 {
            let port = free_port(&host)?;
            match qmp::run(
                &q,
                "migrate-incoming",
                Some(json!({"uri": format!("tcp:{}:{port}", uri_host(&host))})),
            )
            .await
            {
                Ok(_) => {
                    migrate_port = port;
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        if migrate_port == 0 {
            return Err(DriverError(format!(
                "cannot listen for the migration: {last}"
            )));
        }
        Ok(Target {
            host,
            migrate_port,
            nbd_port,
            disk_paths,
        })
    }

    pub(super) async fn lm_send(&self, id: &str, send: &Send) -> Result<Stats, DriverError> {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let p = self.paths(id);
        if self.running_pid(id).is_none() {
            // A retried request after the move.
            return self
                .read_state(&p)
                .migrated_out
                .ok_or_else(|| DriverError(format!("guest {id} is not running here")));
        }
        let desc = self
            .read_desc(&p)
            .ok_or_else(|| DriverError::unknown_guest(id))?;
        write_psk(&p.migrate_tls(), &send.psk)?;
        let result = self.transfer(&p, &disk_ids(&desc), &send.target).await;
        let out = match result {
            Ok(stats) => {
                let mut st = self.read_state(&p);
                st.migrated_out = Some(stats.clone());
                st.stop_requested = true;
                self.write_state(&p, &st)?;
                // The guest runs on the target from now on: this QEMU only
                // holds a paused copy.
                self.halt(id, true, Duration::from_secs(1)).await?;
                self.net.unplug(id).await?;
                self.record_status(id);
                Ok(stats)
            }
            Err(e) => {
                self.abort_send(&p, &disk_ids(&desc)).await;
                Err(e)
            }
        };
        let _ = std::fs::remove_dir_all(p.migrate_tls());
        out
    }

    async fn transfer(
        &self,
        p: &GuestPaths,
        disks: &[String],
        t: &Target,
    ) -> Result<Stats, DriverError> {
        let q = p.qmp();
        let t0 = Instant::now();
        // A previous attempt's leftovers.
        self.abort_send(p, disks).await;
        qmp::run(
            &q,
            "object-add",
            Some(
                json!({"qom-type": "tls-creds-psk", "id": MIGRATE_TLS_ID, "endpoint": "client",
                        "dir": p.migrate_tls().display().to_string()}),
            ),
        )
        .await
        .map_err(qmp_err)?;
        qmp::run(
            &q,
            "migrate-set-parameters",
            Some(json!({"tls-creds": MIGRATE_TLS_ID, "downtime-limit": 300,
                        "max-bandwidth": 4u64 << 30})),
        )
        .await
        .map_err(qmp_err)?;
        for d in disks {
            let job = mirror_id(d);
            qmp::run(
                &q,
                "blockdev-add",
                Some(json!({"driver": "nbd", "node-name": job,
                            "server": {"type": "inet", "host": t.host, "port": t.nbd_port.to_string()},
                            "export": node_name(d), "tls-creds": MIGRATE_TLS_ID})),
            )
            .await
            .map_err(|e| DriverError(format!("cannot reach the target's disk {d}: {e}")))?;
            qmp::run(
                &q,
                "blockdev-mirror",
                Some(json!({"job-id": job, "device": node_name(d), "target": job,
                            "sync": "full"})),
            )
            .await
            .map_err(|e| DriverError(format!("cannot mirror disk {d}: {e}")))?;
        }
        let deadline = Instant::now() + TRANSFER_TIMEOUT;
        let disk_bytes = loop {
            let jobs = mirror_jobs(&q).await?;
            if jobs.len() < disks.len() {
                return Err(DriverError(
                    "a disk mirror to the target failed (see the source's qemu.log)".into(),
                ));
            }
            if jobs.values().all(|(ready, _)| *ready) {
                break jobs.values().map(|(_, off)| off).sum::<u64>();
            }
            if Instant::now() > deadline {
                return Err(DriverError("the disk mirror did not finish in time".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let m0 = Instant::now();
        qmp::run(
            &q,
            "migrate",
            Some(json!({"uri": format!("tcp:{}:{}", uri_host(&t.host), t.migrate_port)})),
        )
        .await
        .map_err(qmp_err)?;
        let info = loop {
            let m = qmp::run(&q, "query-migrate", None).await.map_err(qmp_err)?;
            match m["status"].as_str().unwrap_or_default() {
                "completed" => break m,
                "failed" | "cancelled" => {
                    return Err(DriverError(format!(
                        "the memory migration {}: {}",
                        m["status"].as_str().unwrap_or_default(),
                        m["error-desc"].as_str().unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(DriverError(
                    "the memory migration did not converge in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let memory_ms = m0.elapsed().as_millis() as u64;
        // The source is paused: complete the mirrors (a ready mirror
        // cancelled flushes the rest and detaches from the target).
        for d in disks {
            qmp::run(
                &q,
                "block-job-cancel",
                Some(json!({"device": mirror_id(d)})),
            )
            .await
            .map_err(qmp_err)?;
        }
        let flush_deadline = Instant::now() + Duration::from_secs(120);
        while !mirror_jobs(&q).await?.is_empty() {
            if Instant::now() > flush_deadline {
                return Err(DriverError(
                    "the disk mirrors did not complete after the memory moved".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Stats {
            total_ms: t0.elapsed().as_millis() as u64,
            memory_ms,
            downtime_ms: info["downtime"].as_u64().unwrap_or(0),
            ram_bytes: info["ram"]["transferred"].as_u64().unwrap_or(0),
            disk_bytes,
        })
    }

    /// Undo what a send did in the source QEMU: the migration, the mirrors,
    /// their NBD clients, the TLS object; a source paused by a completed
    /// migration runs again.
    async fn abort_send(&self, p: &GuestPaths, disks: &[String]) {
        let q = p.qmp();
        let _ = qmp::run(&q, "migrate_cancel", None).await;
        if let Ok(jobs) = mirror_jobs(&q).await {
            for job in jobs.keys() {
                let _ = qmp::run(
                    &q,
                    "block-job-cancel",
                    Some(json!({"device": job, "force": true})),
                )
                .await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while mirror_jobs(&q).await.is_ok_and(|j| !j.is_empty()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for d in disks {
            let _ = qmp::run(&q, "blockdev-del", Some(json!({"node-name": mirror_id(d)}))).await;
        }
        let _ = qmp::run(&q, "object-del", Some(json!({"id": MIGRATE_TLS_ID}))).await;
        if let Ok(st) = qmp::run(&q, "query-status", None).await
            && st["running"] != json!(true)
            && matches!(
                st["status"].as_str(),
                Some("postmigrate" | "paused" | "finish-migrate")
            )
        {
            let _ = qmp::run(&q, "cont", None).await;
        }
    }

    pub(super) async fn lm_resume(&self, id: &str) -> DriverResult {
        let lock = self.lock(id);
        let _g = lock.lock().await;
        let (p, _) = self.running_desc(id)?;
        let q = p.qmp();
        let st = qmp::run(&q, "query-status", None).await.map_err(qmp_err)?;
        if st["status"] == "inmigrate" {
            return Err(DriverError(format!(
                "guest {id}: its memory has not arrived from the source"
            )));
        }
        let _ = qmp::run(&q, "nbd-server-stop", None).await;
        if st["running"] != json!(true) {
            qmp::run(&q, "cont", None).await.map_err(qmp_err)?;
        }
        let mut gs = self.read_state(&p);
        gs.incoming = None;
        self.write_state(&p, &gs)?;
        let _ = std::fs::remove_dir_all(p.migrate_tls());
        self.record_status(id);
        Ok(json!({"status": "running"}))
    }

    /// Not under the guest's lock: it stops a send that is running (its
    /// loop sees the migration or a mirror end and gives up).
    pub(super) async fn lm_cancel(&self, id: &str) -> DriverResult {
        let p = self.paths(id);
        if self.running_pid(id).is_none() {
            if self.read_state(&p).migrated_out.is_some() {
                // Too late: the guest only lives on the target now; undoing
                // the target would lose it.
                return Err(DriverError(format!(
                    "guest {id} has already moved to the target; it cannot be cancelled"
                )));
            }
            return Ok(json!({}));
        }
        if let Some(desc) = self.read_desc(&p) {
            self.abort_send(&p, &disk_ids(&desc)).await;
        }
        Ok(json!({}))
    }
}
