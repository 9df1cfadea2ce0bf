//! Typed rows of the core region tables ([`cloudpods_db::TypedRow`]),
//! decoded once where they are read from the database. Fields are named as
//! the columns; `rows_name_only_columns` checks that they are.

use cloudpods_db::{ModelDesc, TypedRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::*;

macro_rules! typed_row {
    ($name:ident, $desc:expr) => {
        impl TypedRow for $name {
            fn desc() -> &'static ModelDesc {
                &$desc
            }
        }
    };
}

/// A server (`guests_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Guest {
    pub id: String,
    pub name: String,
    pub status: String,
    pub tenant_id: String,
    pub domain_id: String,
    pub host_id: String,
    pub hypervisor: String,
    pub hostname: String,
    pub vcpu_count: i64,
    pub vmem_size: i64,
    pub os_type: String,
    pub bios: String,
    pub machine: String,
    pub vga: String,
    pub vdi: String,
    pub keypair_id: String,
    pub src_ip_check: bool,
    pub src_mac_check: bool,
    pub external_id: String,
    pub create_params: Value,
}
typed_row!(Guest, GUESTS);

/// A virtual disk (`disks_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    pub id: String,
    pub name: String,
    pub status: String,
    pub tenant_id: String,
    pub domain_id: String,
    pub storage_id: String,
    pub disk_format: String,
    pub disk_size: i64,
    pub access_path: String,
    pub template_id: String,
    pub snapshot_id: String,
    pub disk_type: String,
    pub external_id: String,
}
typed_row!(Disk, DISKS);

/// A guest's place on a disk (`guestdisks_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestDisk {
    pub guest_id: String,
    pub disk_id: String,
    pub index: i64,
    pub boot_index: i64,
    pub driver: String,
    pub cache_mode: String,
}
typed_row!(GuestDisk, GUESTDISKS);

/// A guest's NIC on a network (`guestnetworks_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestNetwork {
    pub guest_id: String,
    pub network_id: String,
    pub mac_addr: String,
    pub ip_addr: String,
    pub driver: String,
    pub bw_limit: i64,
    pub ifname: String,
    pub index: i64,
}
typed_row!(GuestNetwork, GUESTNETWORKS);

/// A network (subnet) with its address range (`networks_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub status: String,
    pub wire_id: String,
    pub guest_ip_start: String,
    pub guest_ip_end: String,
    pub guest_ip_mask: i64,
    pub guest_gateway: String,
    pub guest_dns: String,
    pub guest_domain: String,
    pub vlan_id: i64,
}
typed_row!(Network, NETWORKS);

/// A host's attachment to a wire (`hostwires_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostWire {
    pub host_id: String,
    pub wire_id: String,
    pub bridge: String,
    pub interface: String,
}
typed_row!(HostWire, HOSTWIRES);

/// A hypervisor (`hosts_tbl`); the agent secret is not read through this.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    pub id: String,
    pub name: String,
    pub status: String,
    pub enabled: bool,
    pub zone_id: String,
    pub host_type: String,
    pub host_status: String,
    pub access_ip: String,
    pub manager_uri: String,
    pub cpu_count: i64,
    pub cpu_reserved: i64,
    /// Overcommit ratios; an unset ratio is 1 (no overcommit).
    #[serde(default = "one")]
    pub cpu_cmtbound: f64,
    pub mem_size: i64,
    pub mem_reserved: i64,
    #[serde(default = "one")]
    pub mem_cmtbound: f64,
    pub is_maintenance: bool,
    pub external_id: String,
}
typed_row!(Host, HOSTS);

fn one() -> f64 {
    1.0
}

/// A storage (`storages_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Storage {
    pub id: String,
    pub name: String,
    pub status: String,
    pub enabled: bool,
    pub zone_id: String,
    pub capacity: i64,
    pub reserved: i64,
    pub storage_type: String,
    pub medium_type: String,
    #[serde(default = "one")]
    pub cmtbound: f64,
    pub storagecache_id: String,
}
typed_row!(Storage, STORAGES);

/// A host's attachment to a storage (`hoststorages_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostStorage {
    pub host_id: String,
    pub storage_id: String,
    pub mount_point: String,
}
typed_row!(HostStorage, HOSTSTORAGES);

/// A security group rule (`secgrouprules_tbl`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecgroupRule {
    pub id: String,
    pub secgroup_id: String,
    pub priority: i64,
    pub protocol: String,
    pub ports: String,
    pub direction: String,
    pub cidr: String,
    pub action: String,
}
typed_row!(SecgroupRule, SECGROUPRULES);

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpods_db::typed::check_columns;

    #[test]
    fn rows_name_only_columns() {
        let wrong: Vec<(&str, Vec<String>)> = vec![
            ("Guest", check_columns::<Guest>()),
            ("Disk", check_columns::<Disk>()),
            ("GuestDisk", check_columns::<GuestDisk>()),
            ("GuestNetwork", check_columns::<GuestNetwork>()),
            ("Network", check_columns::<Network>()),
            ("HostWire", check_columns::<HostWire>()),
            ("Host", check_columns::<Host>()),
            ("SecgroupRule", check_columns::<SecgroupRule>()),
            ("Storage", check_columns::<Storage>()),
            ("HostStorage", check_columns::<HostStorage>()),
        ]
        .into_iter()
        .filter(|(_, w)| !w.is_empty())
        .collect();
        assert!(wrong.is_empty(), "fields that are not columns: {wrong:?}");
    }

    #[test]
    fn null_columns_take_the_default() {
        let row: cloudpods_db::Row = serde_json::from_value(serde_json::json!({
            "id": "g1", "hostname": null, "vcpu_count": 2, "src_ip_check": true,
            "unknown_column": "ignored"
        }))
        .unwrap_or_default();
        let g = Guest::from_row(&row).unwrap_or_default();
        assert_eq!(
            (g.id.as_str(), g.hostname.as_str(), g.vcpu_count),
            ("g1", "", 2)
        );
        assert!(g.src_ip_check);
    }
}
