//! What the cache is built from: plain records of the region tables, read
//! from the database ([`crate::load`]) or assembled in memory (tests, the
//! benchmark).

/// A host (`hosts_tbl`) with its storages, wires and schedtags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSpec {
    pub id: String,
    pub name: String,
    pub zone_id: String,
    pub host_type: String,
    pub host_status: String,
    pub status: String,
    pub enabled: bool,
    pub is_maintenance: bool,
    pub domain_id: String,
    pub is_public: bool,
    pub public_scope: String,
    pub cpu_count: i64,
    pub cpu_cmtbound: f64,
    pub cpu_reserved: i64,
    /// MB.
    pub mem_size: i64,
    pub mem_cmtbound: f64,
    /// MB.
    pub mem_reserved: i64,
    pub storages: Vec<String>,
    pub wires: Vec<String>,
    pub schedtags: Vec<String>,
}

impl HostSpec {
    /// An online, enabled KVM host shared with every domain.
    pub fn new(id: &str, cpu: i64, mem_mb: i64) -> HostSpec {
        HostSpec {
            id: id.to_string(),
            name: id.to_string(),
            host_type: "hypervisor".into(),
            host_status: "online".into(),
            status: "running".into(),
            enabled: true,
            domain_id: "default".into(),
            is_public: true,
            public_scope: "system".into(),
            cpu_count: cpu,
            cpu_cmtbound: 1.0,
            mem_size: mem_mb,
            mem_cmtbound: 1.0,
            ..Default::default()
        }
    }
}

/// A storage (`storages_tbl`) and its usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageSpec {
    pub id: String,
    pub name: String,
    pub zone_id: String,
    pub storage_type: String,
    pub medium_type: String,
    pub enabled: bool,
    pub status: String,
    /// MB.
    pub capacity: i64,
    pub cmtbound: f64,
    /// MB.
    pub reserved: i64,
    /// MB held by disks.
    pub used: i64,
}

impl StorageSpec {
    /// An enabled, online local SSD storage.
    pub fn new(id: &str, capacity_mb: i64) -> StorageSpec {
        StorageSpec {
            id: id.to_string(),
            name: id.to_string(),
            storage_type: "local".into(),
            medium_type: "ssd".into(),
            enabled: true,
            status: "online".into(),
            capacity: capacity_mb,
            cmtbound: 1.0,
            ..Default::default()
        }
    }
}

/// A guest network (`networks_tbl`) and the addresses held in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSpec {
    pub id: String,
    pub name: String,
    pub wire_id: String,
    /// First and last address of the allocation range.
    pub start: u32,
    pub end: u32,
    pub server_type: String,
    pub is_auto_alloc: bool,
    pub is_public: bool,
    pub public_scope: String,
    pub tenant_id: String,
    pub domain_id: String,
    pub status: String,
    /// Addresses held now (guests, hosts, EIPs, reservations) or released
    /// too recently to be reused.
    pub used: Vec<u32>,
}

impl NetworkSpec {
    /// A public, auto-allocated guest network on `wire`.
    pub fn new(id: &str, wire: &str, start: u32, end: u32) -> NetworkSpec {
        NetworkSpec {
            id: id.to_string(),
            name: id.to_string(),
            wire_id: wire.to_string(),
            start,
            end,
            server_type: "guest".into(),
            is_auto_alloc: true,
            is_public: true,
            public_scope: "system".into(),
            domain_id: "default".into(),
            status: "available".into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireSpec {
    pub id: String,
    pub name: String,
    pub zone_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneSpec {
    pub id: String,
    pub name: String,
    pub cloudregion_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionSpec {
    pub id: String,
    pub name: String,
}

/// A schedtag (`aggregates_tbl`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedtagSpec {
    pub id: String,
    pub name: String,
    /// Applied to requests that do not name the tag: `require`, `exclude`,
    /// `prefer`, `avoid` or empty.
    pub default_strategy: String,
    pub resource_type: String,
}

/// A server SKU (`serverskus_tbl`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkuSpec {
    pub id: String,
    pub name: String,
    pub cpu_core_count: i64,
    pub memory_size_mb: i64,
    pub zone_id: String,
    pub cloudregion_id: String,
    pub enabled: bool,
    pub status: String,
}

/// A guest placed on a host, holding resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestSpec {
    pub id: String,
    pub host_id: String,
    pub vcpu_count: i64,
    pub vmem_size: i64,
    pub status: String,
}

/// Everything the cache holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub hosts: Vec<HostSpec>,
    pub storages: Vec<StorageSpec>,
    pub networks: Vec<NetworkSpec>,
    pub wires: Vec<WireSpec>,
    pub zones: Vec<ZoneSpec>,
    pub regions: Vec<RegionSpec>,
    pub schedtags: Vec<SchedtagSpec>,
    pub skus: Vec<SkuSpec>,
    pub guests: Vec<GuestSpec>,
}
