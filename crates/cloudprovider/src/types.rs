//! Cloud resources as drivers report them. Every resource carries the
//! cloud's global id (`external_id`), its status in Cloudpods' vocabulary and
//! its tags; references to other resources are their external ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloudRegion {
    /// `us-east-1`.
    pub external_id: String,
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    /// `us-east-1a`.
    pub external_id: String,
    pub name: String,
    /// `enable` / `disable`.
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vpc {
    pub external_id: String,
    pub name: String,
    pub cidr: String,
    pub is_default: bool,
    /// `available` / `pending`.
    pub status: String,
    pub tags: Tags,
}

/// A subnet: lives in one VPC and one zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub external_id: String,
    pub name: String,
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr: String,
    pub status: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecRule {
    /// `in` / `out`.
    pub direction: String,
    /// `any`, `tcp`, `udp`, `icmp`.
    pub protocol: String,
    /// `""` (all), `"22"`, `"1-1024"`.
    pub ports: String,
    pub cidr: String,
    /// Always `allow` on AWS.
    pub action: String,
    pub priority: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecGroup {
    pub external_id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub rules: Vec<SecRule>,
    pub tags: Tags,
}

/// A hypervisor host; public clouds report one virtual host per zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub external_id: String,
    pub name: String,
    pub zone_id: String,
    /// `aws`.
    pub host_type: String,
}

/// A kind of disk in a zone (`gp3` in `us-east-1a`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub external_id: String,
    pub name: String,
    pub zone_id: String,
    /// `gp2`, `gp3`, `io1`, `standard`…
    pub storage_type: String,
    pub medium_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub external_id: String,
    pub network_id: String,
    pub ip: String,
    pub mac: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    pub external_id: String,
    pub name: String,
    /// Guest status: `running`, `ready`, `starting`, `stopping`,
    /// `deleting`, `unknown`.
    pub status: String,
    pub instance_type: String,
    pub vcpu: i64,
    pub mem_mb: i64,
    pub zone_id: String,
    pub image_id: String,
    pub os_type: String,
    pub nics: Vec<Nic>,
    /// Attached disks, root first.
    pub disk_ids: Vec<String>,
    pub secgroup_ids: Vec<String>,
    /// Public address (an EIP's or an auto-assigned one).
    pub public_ip: String,
    pub created_at: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub external_id: String,
    pub name: String,
    pub size_gb: i64,
    pub zone_id: String,
    pub storage_type: String,
    /// `ready`, `allocating`, `deleting`…
    pub status: String,
    /// The VM it is attached to, if any.
    pub vm_id: String,
    pub device: String,
    /// `sys` or `data`.
    pub disk_type: String,
    pub snapshot_id: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Eip {
    /// Allocation id.
    pub external_id: String,
    pub name: String,
    pub ip: String,
    /// The VM it is associated with, if any.
    pub vm_id: String,
    /// `ready` (free) or `associate`d… in Cloudpods' terms.
    pub status: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub external_id: String,
    pub name: String,
    /// `active`, `saving`, `deleted`…
    pub status: String,
    pub os_type: String,
    pub os_arch: String,
    pub size_gb: i64,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub external_id: String,
    pub name: String,
    pub disk_id: String,
    pub size_gb: i64,
    /// `ready`, `creating`, `create_failed`.
    pub status: String,
    pub tags: Tags,
}

/// An instance type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sku {
    pub name: String,
    pub family: String,
    pub cpu: i64,
    pub mem_mb: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub external_id: String,
    pub name: String,
    pub created_at: String,
}

/// Input of [`crate::RegionDriver::create_vm`].
#[derive(Debug, Clone, Default)]
pub struct CreateVm {
    pub name: String,
    pub image_id: String,
    pub instance_type: String,
    /// Subnet; empty = the zone's default subnet.
    pub network_id: String,
    pub zone_id: String,
    pub secgroup_ids: Vec<String>,
    pub sys_disk_gb: i64,
    pub sys_disk_type: String,
    pub data_disks_gb: Vec<i64>,
    pub keypair: String,
    pub user_data: String,
    pub private_ip: String,
    /// Idempotency token: the same token never launches twice, so a task
    /// step that runs again after a crash finds the VM it made.
    pub client_token: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr: String,
}

/// Which volumes [`crate::RegionDriver::disks_where`] lists.
#[derive(Debug, Clone, PartialEq)]
pub enum DiskFilter {
    /// Attached to one of these instances.
    AttachedTo(Vec<String>),
    /// Not attached to anything (creating, available, deleting, error).
    Unattached,
    /// These volumes (ids the cloud no longer has are left out).
    Ids(Vec<String>),
}
