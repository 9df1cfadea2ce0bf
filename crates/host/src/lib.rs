//! The host agent: registration and heartbeat with the region, and the
//! agent side of the region → host protocol (docs/AGENT_PROTOCOL.md).
//!
//! What runs guests is a [`Driver`]. [`sim::SimDriver`] simulates a
//! hypervisor (guests are records that change state after a delay); it lets
//! the region, the scheduler and their tests run without QEMU.
//! [`qemu::QemuDriver`] runs real guests: QEMU launched directly and driven
//! over QMP ([`qmp`]), disks backed by the image cache ([`imagecache`]),
//! bridges, taps, DHCP and nftables ([`net`]), NoCloud seeds ([`seed`]).

pub mod agent;
pub mod cmd;
pub mod console;
pub mod diskcopy;
pub mod facts;
pub mod imagecache;
pub mod launch;
pub mod net;
pub mod proc;
pub mod qemu;
pub mod qmp;
pub mod register;
pub mod seed;
pub mod sim;
pub mod validate;

use async_trait::async_trait;
use serde_json::Value;

/// A failure reported to the region as the task's reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

const UNKNOWN_GUEST: &str = " is not on this host";

impl DriverError {
    /// The guest is not on this host (answered 404 to direct calls).
    pub fn unknown_guest(id: &str) -> DriverError {
        DriverError(format!("guest {id}{UNKNOWN_GUEST}"))
    }

    pub fn is_unknown_guest(&self) -> bool {
        self.0.starts_with("guest ") && self.0.ends_with(UNKNOWN_GUEST)
    }
}

pub type DriverResult = Result<Value, DriverError>;

pub use cloudpods_apis::livemigrate;

fn not_live(id: &str) -> DriverError {
    DriverError(format!(
        "guest {id}: this hypervisor driver cannot live-migrate"
    ))
}

/// What the agent does for each protocol action.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Create the guest's configuration (and customisation seed).
    async fn deploy(&self, id: &str, desc: &Value, params: &Value) -> DriverResult;
    async fn start(&self, id: &str, desc: &Value) -> DriverResult;
    async fn stop(&self, id: &str, force: bool, timeout_secs: u64) -> DriverResult;
    async fn reset(&self, id: &str) -> DriverResult;
    /// Remove the guest (process and files; not its disks).
    async fn delete(&self, id: &str) -> DriverResult;
    /// Bring a running guest in line with `desc` (hot-plug or unplug disks,
    /// apply security group rules…).
    async fn sync(&self, id: &str, desc: &Value) -> DriverResult {
        let _ = desc;
        Err(DriverError(format!(
            "this driver cannot change guest {id} while it runs"
        )))
    }
    /// `running`, `ready`, `crashed` or `notfound`.
    async fn status(&self, id: &str) -> String;
    async fn vnc(&self, id: &str) -> DriverResult;
    /// Where the guest's `protocol` console is on this host, for the agent
    /// to relay (`GET /servers/{id}/console/{protocol}`). Drivers without
    /// consoles say so; `vnc()` lists the ones there are (`consoles`).
    async fn console(
        &self,
        id: &str,
        protocol: console::Protocol,
    ) -> Result<console::Endpoint, DriverError> {
        Err(DriverError(format!(
            "guest {id} has no {protocol} console on this hypervisor"
        )))
    }
    async fn disk_create(&self, storage_id: &str, disk_id: &str, disk: &Value) -> DriverResult;
    async fn disk_delete(&self, storage_id: &str, disk_id: &str) -> DriverResult;
    /// A stand-alone copy of a stopped guest's disk for another host to
    /// fetch (`GET /disks/{storage}/export/{disk}`, cold migrate).
    async fn disk_export(
        &self,
        _storage_id: &str,
        disk_id: &str,
    ) -> Result<diskcopy::DiskExport, DriverError> {
        Err(DriverError(format!(
            "disk {disk_id}: this driver cannot export disks"
        )))
    }
    async fn disk_resize(&self, storage_id: &str, disk_id: &str, size_mb: i64) -> DriverResult;
    async fn disk_snapshot(
        &self,
        storage_id: &str,
        disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult;
    async fn disk_delete_snapshot(
        &self,
        storage_id: &str,
        disk_id: &str,
        snapshot_id: &str,
    ) -> DriverResult;
    /// Bring a disk back to a snapshot of it.
    async fn disk_reset(
        &self,
        _storage_id: &str,
        _disk_id: &str,
        _snapshot_id: &str,
    ) -> DriverResult {
        Err(DriverError(
            "disk reset is not supported by this driver".into(),
        ))
    }
    /// Live migration, source side: the running guest's disks and sizes.
    async fn live_migrate_info(&self, id: &str) -> Result<livemigrate::SourceInfo, DriverError> {
        Err(not_live(id))
    }
    /// Live migration, target side: make the disks, start the guest
    /// waiting for its memory, serve the disks to the source.
    async fn live_migrate_prepare(
        &self,
        id: &str,
        _desc: &Value,
        _p: &livemigrate::Prepare,
    ) -> Result<livemigrate::Target, DriverError> {
        Err(not_live(id))
    }
    /// Live migration, source side: mirror the disks, move the memory;
    /// when it answers the guest is paused on the target and gone here.
    async fn live_migrate_send(
        &self,
        id: &str,
        _p: &livemigrate::Send,
    ) -> Result<livemigrate::Stats, DriverError> {
        Err(not_live(id))
    }
    /// Live migration, target side: the disks are complete, run the guest.
    async fn live_migrate_resume(&self, id: &str) -> DriverResult {
        Err(not_live(id))
    }
    /// Live migration, source side: stop a migration that has not finished
    /// (the guest keeps running here).
    async fn live_migrate_cancel(&self, id: &str) -> DriverResult {
        Err(not_live(id))
    }
    /// Guests this driver knows about, with their status (re-adoption).
    async fn guests(&self) -> Vec<(String, String)>;
    /// Guests whose status changed on their own since the last call (a
    /// QEMU that died): the heartbeat asks the region to sync them.
    async fn changed(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The images this host has cached (`GET /disks/image_cache`).
    async fn cached_images(&self) -> Value {
        serde_json::json!({"images": []})
    }
}
