//! Compute (region) wire types: server create input as Cloudpods takes it
//! (`pkg/apis/compute/api.go ServerCreateInput`), including the legacy flat
//! `disk.0` / `net.0` strings that older clients still send, and the guest
//! status names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lenient::de;

/// Guest statuses (`pkg/apis/compute/guest_const.go`).
pub mod status {
    pub const INIT: &str = "init";
    pub const SCHEDULE: &str = "schedule";
    pub const SCHED_FAIL: &str = "sched_fail";
    pub const NETWORK: &str = "network";
    pub const NET_FAIL: &str = "net_fail";
    pub const DISK: &str = "disk";
    pub const DISK_FAIL: &str = "disk_fail";
    pub const DEPLOYING: &str = "deploying";
    pub const DEPLOY_FAIL: &str = "deploy_fail";
    pub const READY: &str = "ready";
    pub const START_START: &str = "start_start";
    pub const STARTING: &str = "starting";
    pub const RUNNING: &str = "running";
    pub const START_FAIL: &str = "start_fail";
    pub const START_STOP: &str = "start_stop";
    pub const STOPPING: &str = "stopping";
    pub const STOP_FAIL: &str = "stop_fail";
    pub const START_DELETE: &str = "start_delete";
    pub const DELETING: &str = "deleting";
    pub const DELETE_FAIL: &str = "delete_fail";
    pub const CHANGE_FLAVOR: &str = "change_flavor";
    pub const CHANGE_FLAVOR_FAIL: &str = "change_flavor_fail";
    pub const START_MIGRATE: &str = "start_migrate";
    pub const MIGRATING: &str = "migrating";
    pub const MIGRATE_FAILED: &str = "migrate_failed";
    pub const START_LIVE_MIGRATE: &str = "start_live_migrate";
    pub const LIVE_MIGRATING: &str = "live_migrating";
    pub const LIVE_MIGRATE_FAILED: &str = "live_migrate_failed";
    pub const REBUILD_ROOT: &str = "rebuild_root";
    pub const REBUILD_ROOT_FAIL: &str = "rebuild_root_fail";
    pub const ATTACH_DISK: &str = "attach_disk";
    pub const ATTACH_DISK_FAIL: &str = "attach_disk_fail";
    pub const DETACH_DISK: &str = "detach_disk";
    pub const DETACH_DISK_FAIL: &str = "detach_disk_fail";
    pub const SNAPSHOT_START: &str = "snapshot_start";
    pub const SNAPSHOT: &str = "snapshot";
    pub const SNAPSHOT_FAILED: &str = "snapshot_failed";
    pub const SYNC_CONFIG: &str = "sync_config";
    pub const SYNC_FAIL: &str = "sync_fail";
    pub const DEPLOY: &str = "deploy";
    pub const UNKNOWN: &str = "unknown";
    pub const CRASHED: &str = "crashed";

    /// Statuses in which a guest holds no resources (creation failed and
    /// was undone): they do not count towards quota usage.
    pub const CREATE_FAILED: &[&str] = &[SCHED_FAIL, NET_FAIL, DISK_FAIL, DEPLOY_FAIL];
    /// Statuses a running task owns: the guest is neither deleted (without
    /// purge) nor re-synced from its host while in one.
    pub const BUSY: &[&str] = &[
        START_START,
        STARTING,
        START_STOP,
        STOPPING,
        START_DELETE,
        DELETING,
        SCHEDULE,
        NETWORK,
        DISK,
        DEPLOYING,
        CHANGE_FLAVOR,
        START_MIGRATE,
        MIGRATING,
        START_LIVE_MIGRATE,
        LIVE_MIGRATING,
        ATTACH_DISK,
        DETACH_DISK,
        SNAPSHOT_START,
        SNAPSHOT,
        REBUILD_ROOT,
    ];
}

/// One disk of a server (`DiskConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DiskConfig {
    #[serde(
        deserialize_with = "de::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub index: Option<i64>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub image_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub snapshot_id: String,
    /// MB; -1 = the rest of the storage (not supported for local disks here).
    #[serde(
        deserialize_with = "de::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub size: Option<i64>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub disk_type: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string",
        alias = "storage_type"
    )]
    pub backend: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub medium: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string",
        alias = "storage"
    )]
    pub storage_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string",
        alias = "disk"
    )]
    pub disk_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub driver: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub cache: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub fs: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub mountpoint: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub format: String,
}

/// One NIC of a server (`NetworkConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NetworkConfig {
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string",
        alias = "network_id"
    )]
    pub network: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string",
        alias = "wire_id"
    )]
    pub wire: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub address: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub mac: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "de::string"
    )]
    pub driver: String,
    #[serde(
        deserialize_with = "de::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub bw_limit: Option<i64>,
    #[serde(
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_default: Option<bool>,
    #[serde(
        deserialize_with = "de::vec_string",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secgroups: Vec<String>,
    #[serde(
        deserialize_with = "de::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub reserved: Option<bool>,
}

/// Parse a legacy disk string: `"10g"`, `"10g:centos"`, `"centos:20g:ssd"`,
/// `"image_id=xxx,size=10G,backend=local"` (climc's `--disk`).
pub fn parse_disk_string(s: &str) -> Result<DiskConfig, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty disk description".into());
    }
    let mut d = DiskConfig::default();
    if s.contains('=') {
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("disk {s:?}: {part:?} is not key=value"))?;
            let v = v.trim();
            match k.trim() {
                "image_id" | "image" => d.image_id = v.into(),
                "snapshot_id" | "snapshot" => d.snapshot_id = v.into(),
                "size" => {
                    d.size = Some(
                        crate::lenient::size_mb(v)
                            .ok_or_else(|| format!("disk {s:?}: bad size {v:?}"))?,
                    )
                }
                "backend" | "storage_type" => d.backend = v.into(),
                "medium" => d.medium = v.into(),
                "storage" | "storage_id" => d.storage_id = v.into(),
                "driver" => d.driver = v.into(),
                "cache" => d.cache = v.into(),
                "fs" => d.fs = v.into(),
                "mountpoint" => d.mountpoint = v.into(),
                "format" => d.format = v.into(),
                "disk_type" => d.disk_type = v.into(),
                "disk_id" | "disk" => d.disk_id = v.into(),
                other => return Err(format!("disk {s:?}: unknown key {other:?}")),
            }
        }
        return Ok(d);
    }
    for part in s.split(':') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if let Some(mb) = crate::lenient::size_mb(part) {
            d.size = Some(mb);
        } else if ["ssd", "rotate", "hybrid"].contains(&part) {
            d.medium = part.into();
        } else if ["local", "rbd", "nfs", "lvm", "gpfs"].contains(&part) {
            d.backend = part.into();
        } else if ["qcow2", "raw"].contains(&part) {
            d.format = part.into();
        } else if ["virtio", "ide", "scsi", "sata"].contains(&part) {
            d.driver = part.into();
        } else if part.starts_with('/') {
            d.mountpoint = part.into();
        } else if ["ext4", "xfs", "swap"].contains(&part) {
            d.fs = part.into();
        } else {
            d.image_id = part.into();
        }
    }
    Ok(d)
}

/// Parse a legacy NIC string: `"net1"`, `"192.168.222.3:net1"`,
/// `"net1:virtio:[mac]"`.
pub fn parse_net_string(s: &str) -> Result<NetworkConfig, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty network description".into());
    }
    let mut n = NetworkConfig::default();
    if s.contains('=') {
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("net {s:?}: {part:?} is not key=value"))?;
            let v = v.trim();
            match k.trim() {
                "network" | "network_id" | "net" => n.network = v.into(),
                "address" | "ip" => n.address = v.into(),
                "mac" => n.mac = v.into(),
                "driver" => n.driver = v.into(),
                "wire" => n.wire = v.into(),
                other => return Err(format!("net {s:?}: unknown key {other:?}")),
            }
        }
        return Ok(n);
    }
    for part in s.split(':') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if part.parse::<std::net::Ipv4Addr>().is_ok() {
            n.address = part.into();
        } else if part.len() == 17
            && part.chars().filter(|c| *c == ':').count() == 0
            && part.contains('-')
        {
            n.mac = part.replace('-', ":");
        } else if ["virtio", "e1000", "rtl8139", "vmxnet3"].contains(&part) {
            n.driver = part.into();
        } else {
            n.network = part.into();
        }
    }
    Ok(n)
}

/// Collect `disks` / `nets` from both the structured arrays and the legacy
/// flat keys (`disk.0`, `net.0` → after query parsing `{"disk": [...]}`).
pub fn collect_configs(
    input: &Map<String, Value>,
) -> Result<(Vec<DiskConfig>, Vec<NetworkConfig>), String> {
    let mut disks = Vec::new();
    if let Some(v) = input.get("disks") {
        let arr = v.as_array().ok_or("disks must be a list")?;
        for d in arr {
            disks.push(match d {
                Value::String(s) => parse_disk_string(s)?,
                other => {
                    serde_json::from_value(other.clone()).map_err(|e| format!("disks: {e}"))?
                }
            });
        }
    }
    for key in ["disk"] {
        match input.get(key) {
            Some(Value::Array(a)) => {
                for d in a {
                    if let Value::String(s) = d {
                        disks.push(parse_disk_string(s)?);
                    }
                }
            }
            Some(Value::Object(o)) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort_by_key(|k| k.parse::<u32>().unwrap_or(u32::MAX));
                for k in keys {
                    if let Some(Value::String(s)) = o.get(k) {
                        disks.push(parse_disk_string(s)?);
                    }
                }
            }
            Some(Value::String(s)) => disks.push(parse_disk_string(s)?),
            _ => {}
        }
    }
    // `"disk.0": "..."` kept literally (JSON bodies with dotted keys).
    let mut flat: Vec<(u32, &String)> = input
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("disk.")
                .and_then(|i| i.parse::<u32>().ok())
                .and_then(|i| v.as_str().map(|_| (i, k)))
        })
        .collect();
    flat.sort();
    for (_, k) in flat {
        if let Some(Value::String(s)) = input.get(k) {
            disks.push(parse_disk_string(s)?);
        }
    }

    let mut nets = Vec::new();
    if let Some(v) = input.get("nets") {
        let arr = v.as_array().ok_or("nets must be a list")?;
        for n in arr {
            nets.push(match n {
                Value::String(s) => parse_net_string(s)?,
                other => serde_json::from_value(other.clone()).map_err(|e| format!("nets: {e}"))?,
            });
        }
    }
    match input.get("net") {
        Some(Value::Array(a)) => {
            for n in a {
                if let Value::String(s) = n {
                    nets.push(parse_net_string(s)?);
                }
            }
        }
        Some(Value::Object(o)) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by_key(|k| k.parse::<u32>().unwrap_or(u32::MAX));
            for k in keys {
                if let Some(Value::String(s)) = o.get(k) {
                    nets.push(parse_net_string(s)?);
                }
            }
        }
        Some(Value::String(s)) => nets.push(parse_net_string(s)?),
        _ => {}
    }
    let mut flat: Vec<(u32, &String)> = input
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("net.")
                .and_then(|i| i.parse::<u32>().ok())
                .map(|i| (i, k))
        })
        .collect();
    flat.sort();
    for (_, k) in flat {
        if let Some(Value::String(s)) = input.get(k) {
            nets.push(parse_net_string(s)?);
        }
    }
    Ok((disks, nets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn legacy_disk_strings() {
        let d = parse_disk_string("10g:centos").unwrap();
        assert_eq!((d.size, d.image_id.as_str()), (Some(10240), "centos"));
        let d = parse_disk_string("image_id=abc,size=20G,backend=local").unwrap();
        assert_eq!(
            (d.size, d.image_id.as_str(), d.backend.as_str()),
            (Some(20480), "abc", "local")
        );
        assert!(parse_disk_string("size=abc").is_err());
        assert!(parse_disk_string("").is_err());
    }

    #[test]
    fn legacy_net_strings() {
        let n = parse_net_string("192.168.222.3:inf0").unwrap();
        assert_eq!(
            (n.address.as_str(), n.network.as_str()),
            ("192.168.222.3", "inf0")
        );
        let n = parse_net_string("network=n1,address=10.0.0.2").unwrap();
        assert_eq!((n.address.as_str(), n.network.as_str()), ("10.0.0.2", "n1"));
    }

    #[test]
    fn collects_every_form() {
        let input = json!({
            "disks": [{"size": "1024", "image_id": "img"}, "2g"],
            "disk.0": "5g",
            "nets": [{"network": "n1", "address": "10.0.0.9"}],
            "net": {"0": "n2"},
        });
        let (d, n) = collect_configs(input.as_object().unwrap()).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].size, Some(1024));
        assert_eq!(d[2].size, Some(5120));
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].network, "n2");
    }
}
