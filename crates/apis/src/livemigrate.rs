//! The region ↔ agent messages of a live migration (`POST
//! /servers/{id}/live-migrate-*` on the agents, docs/AGENT_PROTOCOL.md).
//!
//! The target QEMU waits for the guest's memory (`-incoming`) and serves
//! its empty disks over NBD; the source mirrors its disks into those, then
//! migrates the memory. Both channels are TLS with a pre-shared key the
//! region derives for this migration alone ([`crate::agent_auth::derive_key`]),
//! so nobody else who reaches the target's ports can write into the guest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One disk of the guest and its exact size in bytes (the target's copy
/// must have the same size for the mirror to start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateDisk {
    pub disk_id: String,
    pub virtual_size: u64,
}

/// `live-migrate-info` on the source: the running guest's disks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceInfo {
    pub disks: Vec<MigrateDisk>,
}

/// `live-migrate-prepare` on the target (`params`; the guest's desc is
/// `desc` as for deploy).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepare {
    /// 32 bytes, hex.
    pub psk: String,
    pub disks: Vec<MigrateDisk>,
}

/// What the target listens on, and where it put the disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The target host's management address.
    pub host: String,
    pub migrate_port: u16,
    pub nbd_port: u16,
    /// disk id → path on the target.
    pub disk_paths: BTreeMap<String, String>,
}

/// `live-migrate` on the source (`params`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Send {
    pub psk: String,
    pub target: Target,
}

/// How the move went (the source's answer to `live-migrate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// From the start of the disk mirror to the guest paused on the source.
    pub total_ms: u64,
    /// Of that, the time the memory migration took.
    pub memory_ms: u64,
    /// QEMU's measured downtime (the guest paused on neither side running).
    pub downtime_ms: u64,
    pub ram_bytes: u64,
    pub disk_bytes: u64,
}

/// The checks both agents apply before anything reaches QEMU.
impl Prepare {
    pub fn check(&self) -> Result<(), String> {
        check_psk(&self.psk)?;
        if self.disks.is_empty() {
            return Err("a live migration needs the guest's disks".into());
        }
        for d in &self.disks {
            if d.virtual_size == 0 || d.virtual_size % 512 != 0 {
                return Err(format!(
                    "disk {}: virtual size {} is not a positive multiple of 512",
                    d.disk_id, d.virtual_size
                ));
            }
        }
        Ok(())
    }
}

impl Send {
    pub fn check(&self) -> Result<(), String> {
        check_psk(&self.psk)?;
        let t = &self.target;
        if t.migrate_port == 0 || t.nbd_port == 0 {
            return Err("the target's ports are missing".into());
        }
        check_host(&t.host)
    }
}

/// 64 hex digits.
pub fn check_psk(psk: &str) -> Result<(), String> {
    if psk.len() == 64 && psk.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("the migration key must be 32 bytes of hex".into())
    }
}

/// An IP address or a DNS name (it reaches QEMU's socket address).
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid target host {host:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked() {
        assert!(check_psk(&"a".repeat(64)).is_ok());
        assert!(check_psk("short").is_err());
        assert!(check_psk(&"g".repeat(64)).is_err());
        assert!(check_host("10.0.0.1").is_ok());
        assert!(check_host("host-1.example").is_ok());
        assert!(check_host("a,b").is_err());
        assert!(check_host("x;rm").is_err());
        let p = Prepare {
            psk: "0".repeat(64),
            disks: vec![MigrateDisk {
                disk_id: "d".into(),
                virtual_size: 1000,
            }],
        };
        assert!(p.check().is_err());
    }
}
