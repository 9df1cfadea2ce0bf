//! A simulated hypervisor: guests and disks are records whose state changes
//! after a configurable delay. It speaks the real agent protocol, so the
//! region, scheduler and tests exercise everything except QEMU. State can
//! be kept in a JSON file so a restarted simulated agent still knows its
//! guests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Driver, DriverError, DriverResult};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SimState {
    /// guest id → status (`ready`, `running`)
    guests: HashMap<String, String>,
    /// disk id → size MB
    disks: HashMap<String, i64>,
    snapshots: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// How long each action takes.
    pub delay: Duration,
    /// Actions that fail (`deploy`, `start`, `disk_create`…), for fault tests.
    pub fail: Vec<String>,
    /// Where to keep the state across restarts.
    pub state_file: Option<PathBuf>,
    /// The storage directory the simulated disks are said to be in (the
    /// mount point the host registers); `/sim` when empty. Nothing is
    /// written there.
    pub storage_dir: PathBuf,
}

pub struct SimDriver {
    opts: SimOptions,
    state: Mutex<SimState>,
}

impl SimDriver {
    pub fn new(opts: SimOptions) -> SimDriver {
        let state = opts
            .state_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        SimDriver {
            opts,
            state: Mutex::new(state),
        }
    }

    async fn act(&self, action: &str) -> Result<(), DriverError> {
        if !self.opts.delay.is_zero() {
            tokio::time::sleep(self.opts.delay).await;
        }
        if self.opts.fail.iter().any(|f| f == action) {
            return Err(DriverError(format!("simulated failure of {action}")));
        }
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let out = f(&mut st);
        if let Some(path) = &self.opts.state_file
            && let Ok(text) = serde_json::to_string(&*st)
        {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
        out
    }

    fn storage_dir(&self) -> PathBuf {
        if self.opts.storage_dir.as_os_str().is_empty() {
            PathBuf::from("/sim")
        } else {
            self.opts.storage_dir.clone()
        }
    }

    fn known(&self, id: &str) -> Result<(), DriverError> {
        if self.with(|s| s.guests.contains_key(id)) {
            Ok(())
        } else {
            Err(DriverError::unknown_guest(id))
        }
    }
}

#[async_trait]
impl Driver for SimDriver {
    async fn deploy(&self, id: &str, desc: &Value, _params: &Value) -> DriverResult {
        self.act("deploy").await?;
        for d in desc["disks"].as_array().cloned().unwrap_or_default() {
            let did = d["disk_id"].as_str().unwrap_or_default();
            if !self.with(|s| s.disks.contains_key(did)) {
                return Err(DriverError(format!(
                    "disk {did} does not exist on this host"
                )));
            }
        }
        self.with(|s| {
            s.guests
                .entry(id.to_string())
                .or_insert_with(|| "ready".into());
        });
        Ok(json!({"os_type": "Linux"}))
    }

    async fn start(&self, id: &str, _desc: &Value) -> DriverResult {
        self.act("start").await?;
        self.known(id)?;
        self.with(|s| s.guests.insert(id.to_string(), "running".into()));
        Ok(json!({"status": "running"}))
    }

    async fn stop(&self, id: &str, _force: bool, _timeout: u64) -> DriverResult {
        self.act("stop").await?;
        self.known(id)?;
        self.with(|s| s.guests.insert(id.to_string(), "ready".into()));
        Ok(json!({"status": "ready"}))
    }

    async fn reset(&self, id: &str) -> DriverResult {
        self.act("reset").await?;
        self.known(id)?;
        self.with(|s| s.guests.insert(id.to_string(), "running".into()));
        Ok(json!({"status": "running"}))
    }

    async fn delete(&self, id: &str) -> DriverResult {
        self.act("delete").await?;
        // Idempotent: deleting an unknown guest succeeds.
        self.with(|s| s.guests.remove(id));
        Ok(json!({}))
    }

    async fn sync(&self, id: &str, desc: &Value) -> DriverResult {
        self.act("sync").await?;
        self.known(id)?;
        // Hot-plugged disks must exist here, as for a deploy.
        for d in desc["disks"].as_array().cloned().unwrap_or_default() {
            let did = d["disk_id"].as_str().unwrap_or_default();
            if !self.with(|s| s.disks.contains_key(did)) {
                return Err(DriverError(format!(
                    "disk {did} does not exist on this host"
                )));
            }
        }
        Ok(json!({}))
    }

    async fn status(&self, id: &str) -> String {
        self.with(|s| s.guests.get(id).cloned())
            .unwrap_or_else(|| "notfound".into())
    }

    async fn vnc(&self, id: &str) -> DriverResult {
        self.known(id)?;
        Ok(json!({"protocol": "vnc", "host": "127.0.0.1", "port": 5900}))
    }

    async fn disk_create(&self, storage_id: &str, disk_id: &str, disk: &Value) -> DriverResult {
        self.act("disk_create").await?;
        let size = disk["size"].as_i64().unwrap_or(0);
        self.with(|s| s.disks.insert(disk_id.to_string(), size));
        let _ = storage_id;
        let path = self.storage_dir().join(disk_id);
        Ok(json!({"disk_path": path.display().to_string(), "disk_size": size}))
    }

    async fn disk_delete(&self, _storage_id: &str, disk_id: &str) -> DriverResult {
        self.act("disk_delete").await?;
        self.with(|s| s.disks.remove(disk_id));
        Ok(json!({}))
    }

    async fn disk_resize(&self, _storage_id: &str, disk_id: &str, size_mb: i64) -> DriverResult {
        self.act("disk_resize").await?;
        let known = self.with(|s| s.disks.get_mut(disk_id).map(|v| *v = size_mb).is_some());
        if !known {
            return Err(DriverError(format!("disk {disk_id} does not exist")));
        }
        Ok(json!({"disk_size": size_mb}))
    }

    async fn disk_snapshot(
        &self,
        _storage_id: &str,
        disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult {
        self.act("disk_snapshot").await?;
        self.with(|s| {
            s.snapshots
                .insert(snapshot_id.to_string(), disk_id.to_string())
        });
        let path = self.storage_dir().join("snapshots").join(snapshot_id);
        Ok(json!({"location": path.display().to_string()}))
    }

    async fn disk_delete_snapshot(
        &self,
        _storage_id: &str,
        _disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult {
        self.act("disk_delete_snapshot").await?;
        self.with(|s| s.snapshots.remove(snapshot_id));
        Ok(json!({}))
    }

    async fn disk_reset(
        &self,
        _storage_id: &str,
        disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult {
        self.act("disk_reset").await?;
        let of = self.with(|s| s.snapshots.get(snapshot_id).cloned());
        if of.as_deref() != Some(disk_id) {
            return Err(DriverError(format!(
                "snapshot {snapshot_id} of disk {disk_id} does not exist"
            )));
        }
        Ok(json!({}))
    }

    async fn live_migrate_info(
        &self,
        id: &str,
    ) -> Result<crate::livemigrate::SourceInfo, DriverError> {
        self.act("live_migrate_info").await?;
        self.known(id)?;
        // Simulated disks have no exact size: the region uses its own.
        Ok(crate::livemigrate::SourceInfo::default())
    }

    async fn live_migrate_prepare(
        &self,
        id: &str,
        _desc: &Value,
        p: &crate::livemigrate::Prepare,
    ) -> Result<crate::livemigrate::Target, DriverError> {
        self.act("live_migrate_prepare").await?;
        let dir = self.storage_dir();
        let mut paths = std::collections::BTreeMap::new();
        self.with(|s| {
            for d in &p.disks {
                s.disks
                    .insert(d.disk_id.clone(), (d.virtual_size >> 20) as i64);
                paths.insert(
                    d.disk_id.clone(),
                    dir.join(&d.disk_id).display().to_string(),
                );
            }
            s.guests.insert(id.to_string(), "ready".into());
        });
        Ok(crate::livemigrate::Target {
            host: "127.0.0.1".into(),
            migrate_port: 49152,
            nbd_port: 49153,
            disk_paths: paths,
        })
    }

    async fn live_migrate_send(
        &self,
        id: &str,
        _p: &crate::livemigrate::Send,
    ) -> Result<crate::livemigrate::Stats, DriverError> {
        self.act("live_migrate_send").await?;
        self.known(id)?;
        self.with(|s| s.guests.insert(id.to_string(), "ready".into()));
        Ok(crate::livemigrate::Stats::default())
    }

    async fn live_migrate_resume(&self, id: &str) -> DriverResult {
        self.act("live_migrate_resume").await?;
        self.known(id)?;
        self.with(|s| s.guests.insert(id.to_string(), "running".into()));
        Ok(json!({"status": "running"}))
    }

    async fn live_migrate_cancel(&self, id: &str) -> DriverResult {
        self.act("live_migrate_cancel").await?;
        self.with(|s| {
            if let Some(st) = s.guests.get_mut(id) {
                *st = "running".into();
            }
        });
        Ok(json!({}))
    }

    async fn guests(&self) -> Vec<(String, String)> {
        self.with(|s| {
            s.guests
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}

impl SimDriver {
    /// Number of disks the simulated host holds (tests check for leaks).
    pub fn disk_count(&self) -> usize {
        self.with(|s| s.disks.len())
    }
}
