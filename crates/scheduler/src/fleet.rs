//! The candidate cache: the static shape of the fleet ([`Fleet`], immutable,
//! shared by `Arc` so requests filter it without a lock) and the numbers that
//! change with every placement ([`Dyn`], behind the service's mutex).
//!
//! Everything is indexed by position (`u32`) so that filters and scores touch
//! plain structs; hosts are sorted by id, so "lowest index" is the
//! deterministic tie-break.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::snapshot::{HostSpec, NetworkSpec, Snapshot, StorageSpec};

/// Guest statuses of a creation in flight (the "creating" priority).
pub(crate) const CREATING: &[&str] = &["init", "schedule", "network", "disk", "deploying"];

/// Guest statuses in which the guest's disks and NICs may not exist yet, so
/// the database does not show their storage and addresses.
pub(crate) const BEFORE_RESOURCES: &[&str] = &["init", "schedule", "network", "disk"];

#[derive(Debug, Clone)]
pub struct Host {
    pub id: String,
    pub name: String,
    pub zone_id: String,
    pub zone: Option<u32>,
    pub region: Option<u32>,
    pub host_type: String,
    pub domain_id: String,
    pub is_public: bool,
    pub public_scope: String,
    pub storages: Vec<u32>,
    pub wires: Vec<u32>,
    /// Sorted.
    pub tags: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub id: String,
    pub name: String,
    pub storage_type: String,
    pub medium_type: String,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub wire_id: String,
    pub wire: Option<u32>,
    pub start: u32,
    pub end: u32,
    pub server_type: String,
    pub is_auto_alloc: bool,
    pub is_public: bool,
    pub public_scope: String,
    pub tenant_id: String,
    pub domain_id: String,
    pub status: String,
}

impl Network {
    pub fn size(&self) -> u32 {
        if self.start > self.end {
            0
        } else {
            (self.end - self.start).saturating_add(1)
        }
    }

    pub fn contains(&self, ip: u32) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    pub fn usable(&self) -> bool {
        self.status.is_empty() || self.status == "available"
    }

    /// May `project` (of `domain`) put a NIC here without naming it?
    pub fn visible_to(&self, project: &str, domain: &str) -> bool {
        if project.is_empty() || self.tenant_id == project {
            return true;
        }
        self.is_public
            && (self.public_scope != "domain" || domain.is_empty() || self.domain_id == domain)
    }
}

#[derive(Debug, Clone)]
pub struct Wire {
    pub id: String,
    pub name: String,
    pub zone: Option<u32>,
    pub networks: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub region: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Region {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub id: String,
    pub name: String,
    pub default_strategy: String,
    pub resource_type: String,
}

#[derive(Debug, Clone)]
pub struct Sku {
    pub id: String,
    pub name: String,
    pub cpu: i64,
    pub mem: i64,
    pub zone: Option<u32>,
    pub region: Option<u32>,
    pub zone_id: String,
    pub cloudregion_id: String,
    pub enabled: bool,
    pub status: String,
}

/// Lookup by id first, then by name.
#[derive(Debug, Clone, Default)]
pub struct Index {
    ids: HashMap<String, u32>,
    names: HashMap<String, u32>,
}

impl Index {
    fn build<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> Index {
        let mut ix = Index::default();
        for (i, (id, name)) in items.enumerate() {
            ix.ids.insert(id.to_string(), i as u32);
            if !name.is_empty() {
                // A name shared by two rows is ambiguous: only ids find them.
                ix.names
                    .entry(name.to_string())
                    .and_modify(|v| *v = u32::MAX)
                    .or_insert(i as u32);
            }
        }
        ix
    }

    pub fn id(&self, id: &str) -> Option<u32> {
        self.ids.get(id).copied()
    }

    pub fn find(&self, key: &str) -> Option<u32> {
        self.ids
            .get(key)
            .or_else(|| self.names.get(key))
            .copied()
            .filter(|v| *v != u32::MAX)
    }
}

/// The static part of the cache.
#[derive(Debug, Default)]
pub struct Fleet {
    pub generation: u64,
    pub hosts: Vec<Host>,
    pub storages: Vec<Storage>,
    pub networks: Vec<Network>,
    pub wires: Vec<Wire>,
    pub zones: Vec<Zone>,
    pub regions: Vec<Region>,
    pub tags: Vec<Tag>,
    pub skus: Vec<Sku>,
    pub host_ix: Index,
    pub storage_ix: Index,
    pub network_ix: Index,
    pub wire_ix: Index,
    pub zone_ix: Index,
    pub region_ix: Index,
    pub tag_ix: Index,
    pub sku_ix: Index,
}

#[derive(Debug, Clone)]
pub struct HostDyn {
    pub enabled: bool,
    pub host_status: Arc<str>,
    pub status: Arc<str>,
    pub maintenance: bool,
    /// Gone from the database (until the next rebuild drops it).
    pub deleted: bool,
    pub cpu_count: i64,
    pub cpu_cmtbound: f64,
    pub cpu_reserved: i64,
    pub mem_size: i64,
    pub mem_cmtbound: f64,
    pub mem_reserved: i64,
    /// vCPUs / MB a host may commit: (size − reserved) × bound, as
    /// Cloudpods' `GetVirtualCPUCount`/`GetVirtualMemorySize` compute it.
    pub cpu_total: f64,
    pub mem_total: f64,
    /// Held by guests in the database.
    pub cpu_used: i64,
    pub mem_used: i64,
    pub guests: u32,
    /// Guests in a creating status in the database.
    pub creating: u32,
    /// Held by placements not (yet) visible in the database.
    pub res_cpu: i64,
    pub res_mem: i64,
    pub res_count: u32,
}

impl HostDyn {
    pub fn online(&self) -> bool {
        &*self.host_status == "online"
    }

    pub fn cpu_free(&self) -> f64 {
        self.cpu_total - (self.cpu_used + self.res_cpu) as f64
    }

    pub fn mem_free(&self) -> f64 {
        self.mem_total - (self.mem_used + self.res_mem) as f64
    }

    pub fn in_flight(&self) -> u32 {
        self.creating + self.res_count
    }
}

#[derive(Debug, Clone)]
pub struct StorageDyn {
    pub enabled: bool,
    pub status: Arc<str>,
    pub capacity: i64,
    pub cmtbound: f64,
    pub reserved: i64,
    /// capacity × cmtbound − reserved (the region's storage arithmetic).
    pub total: f64,
    pub used: i64,
    pub res: i64,
}

impl StorageDyn {
    pub fn online(&self) -> bool {
        self.status.is_empty() || &*self.status == "online"
    }

    pub fn free(&self) -> f64 {
        self.total - (self.used + self.res) as f64
    }
}

#[derive(Debug, Clone, Default)]
pub struct NetDyn {
    /// Held addresses inside the allocation range.
    pub used: HashSet<u32>,
    /// Addresses promised to pending placements (auto-allocated NICs).
    pub res: u32,
    /// Requested addresses promised to pending placements.
    pub res_addrs: HashMap<u32, u32>,
    /// Addresses confirmed without a database to show which (in-memory
    /// caches only).
    pub extra: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct GuestUse {
    pub host: u32,
    pub cpu: i64,
    pub mem: i64,
    /// Its disks and NICs may not be in the database yet.
    pub before_resources: bool,
}

/// The changing part of the cache.
#[derive(Debug, Default)]
pub struct Dyn {
    pub hosts: Vec<HostDyn>,
    pub storages: Vec<StorageDyn>,
    pub nets: Vec<NetDyn>,
    pub guests: HashMap<String, GuestUse>,
}

impl Dyn {
    pub fn net_free(&self, fleet: &Fleet, n: u32) -> i64 {
        let d = &self.nets[n as usize];
        let reserved: u32 = d.res + d.res_addrs.values().sum::<u32>();
        fleet.networks[n as usize].size() as i64
            - d.used.len() as i64
            - reserved as i64
            - d.extra as i64
    }

    pub fn addr_free(&self, n: u32, ip: u32) -> bool {
        let d = &self.nets[n as usize];
        !d.used.contains(&ip) && !d.res_addrs.contains_key(&ip)
    }
}

fn arc(s: &str) -> Arc<str> {
    Arc::from(s)
}

pub(crate) fn host_dyn(h: &HostSpec) -> HostDyn {
    let bound = |b: f64| if b.is_finite() && b > 0.0 { b } else { 1.0 };
    HostDyn {
        enabled: h.enabled,
        host_status: arc(&h.host_status),
        status: arc(&h.status),
        maintenance: h.is_maintenance,
        deleted: false,
        cpu_count: h.cpu_count,
        cpu_cmtbound: h.cpu_cmtbound,
        cpu_reserved: h.cpu_reserved,
        mem_size: h.mem_size,
        mem_cmtbound: h.mem_cmtbound,
        mem_reserved: h.mem_reserved,
        cpu_total: ((h.cpu_count - h.cpu_reserved).max(0) as f64) * bound(h.cpu_cmtbound),
        mem_total: ((h.mem_size - h.mem_reserved).max(0) as f64) * bound(h.mem_cmtbound),
        cpu_used: 0,
        mem_used: 0,
        guests: 0,
        creating: 0,
        res_cpu: 0,
        res_mem: 0,
        res_count: 0,
    }
}

pub(crate) fn storage_dyn(s: &StorageSpec) -> StorageDyn {
    let bound = if s.cmtbound.is_finite() && s.cmtbound > 0.0 {
        s.cmtbound
    } else {
        1.0
    };
    StorageDyn {
        enabled: s.enabled,
        status: arc(&s.status),
        capacity: s.capacity,
        cmtbound: s.cmtbound,
        reserved: s.reserved,
        total: s.capacity as f64 * bound - s.reserved as f64,
        used: s.used,
        res: 0,
    }
}

pub(crate) fn net_dyn(n: &NetworkSpec) -> NetDyn {
    NetDyn {
        used: n
            .used
            .iter()
            .copied()
            .filter(|ip| (n.start..=n.end).contains(ip))
            .collect(),
        res: 0,
        res_addrs: HashMap::new(),
        extra: 0,
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Build the cache from a snapshot. Reservations are applied by the caller.
pub fn build(snap: &Snapshot, generation: u64) -> (Fleet, Dyn) {
    let mut regions: Vec<Region> = snap
        .regions
        .iter()
        .map(|r| Region {
            id: r.id.clone(),
            name: r.name.clone(),
        })
        .collect();
    regions.sort_by(|a, b| a.id.cmp(&b.id));
    let region_ix = Index::build(regions.iter().map(|r| (r.id.as_str(), r.name.as_str())));

    let mut zones: Vec<Zone> = snap
        .zones
        .iter()
        .map(|z| Zone {
            id: z.id.clone(),
            name: z.name.clone(),
            region: region_ix.id(&z.cloudregion_id),
        })
        .collect();
    zones.sort_by(|a, b| a.id.cmp(&b.id));
    let zone_ix = Index::build(zones.iter().map(|z| (z.id.as_str(), z.name.as_str())));

    let mut tags: Vec<Tag> = snap
        .schedtags
        .iter()
        .map(|t| Tag {
            id: t.id.clone(),
            name: t.name.clone(),
            default_strategy: t.default_strategy.to_ascii_lowercase(),
            resource_type: t.resource_type.clone(),
        })
        .collect();
    tags.sort_by(|a, b| a.id.cmp(&b.id));
    let tag_ix = Index::build(tags.iter().map(|t| (t.id.as_str(), t.name.as_str())));

    let mut wires: Vec<Wire> = snap
        .wires
        .iter()
        .map(|w| Wire {
            id: w.id.clone(),
            name: w.name.clone(),
            zone: zone_ix.id(&w.zone_id),
            networks: Vec::new(),
        })
        .collect();
    wires.sort_by(|a, b| a.id.cmp(&b.id));
    let wire_ix = Index::build(wires.iter().map(|w| (w.id.as_str(), w.name.as_str())));

    let mut net_specs: Vec<&NetworkSpec> = snap.networks.iter().collect();
    net_specs.sort_by(|a, b| a.id.cmp(&b.id));
    let networks: Vec<Network> = net_specs
        .iter()
        .map(|n| Network {
            id: n.id.clone(),
            name: n.name.clone(),
            wire_id: n.wire_id.clone(),
            wire: wire_ix.id(&n.wire_id),
            start: n.start,
            end: n.end,
            server_type: n.server_type.clone(),
            is_auto_alloc: n.is_auto_alloc,
            is_public: n.is_public,
            public_scope: n.public_scope.clone(),
            tenant_id: n.tenant_id.clone(),
            domain_id: n.domain_id.clone(),
            status: n.status.clone(),
        })
        .collect();
    for (i, n) in networks.iter().enumerate() {
        if let Some(w) = n.wire {
            wires[w as usize].networks.push(i as u32);
        }
    }
    let network_ix = Index::build(networks.iter().map(|n| (n.id.as_str(), n.name.as_str())));

    let mut st_specs: Vec<&StorageSpec> = snap.storages.iter().collect();
    st_specs.sort_by(|a, b| a.id.cmp(&b.id));
    let storages: Vec<Storage> = st_specs
        .iter()
        .map(|s| Storage {
            id: s.id.clone(),
            name: s.name.clone(),
            storage_type: s.storage_type.clone(),
            medium_type: s.medium_type.clone(),
        })
        .collect();
    let storage_ix = Index::build(storages.iter().map(|s| (s.id.as_str(), s.name.as_str())));

    let mut skus: Vec<Sku> = snap
        .skus
        .iter()
        .map(|s| Sku {
            id: s.id.clone(),
            name: s.name.clone(),
            cpu: s.cpu_core_count,
            mem: s.memory_size_mb,
            zone: zone_ix.id(&s.zone_id),
            region: region_ix.id(&s.cloudregion_id),
            zone_id: s.zone_id.clone(),
            cloudregion_id: s.cloudregion_id.clone(),
            enabled: s.enabled,
            status: s.status.clone(),
        })
        .collect();
    skus.sort_by(|a, b| a.id.cmp(&b.id));
    let sku_ix = Index::build(skus.iter().map(|s| (s.id.as_str(), s.name.as_str())));

    let mut host_specs: Vec<&HostSpec> = snap.hosts.iter().collect();
    host_specs.sort_by(|a, b| a.id.cmp(&b.id));
    let hosts: Vec<Host> = host_specs
        .iter()
        .map(|h| {
            let zone = zone_ix.id(&h.zone_id);
            Host {
                id: h.id.clone(),
                name: h.name.clone(),
                zone_id: h.zone_id.clone(),
                zone,
                region: zone.and_then(|z| zones[z as usize].region),
                host_type: h.host_type.clone(),
                domain_id: h.domain_id.clone(),
                is_public: h.is_public,
                public_scope: h.public_scope.clone(),
                storages: sorted(&h.storages)
                    .iter()
                    .filter_map(|s| storage_ix.id(s))
                    .collect(),
                wires: sorted(&h.wires)
                    .iter()
                    .filter_map(|w| wire_ix.id(w))
                    .collect(),
                tags: {
                    let mut t: Vec<u32> = h.schedtags.iter().filter_map(|t| tag_ix.id(t)).collect();
                    t.sort_unstable();
                    t.dedup();
                    t
                },
            }
        })
        .collect();
    let host_ix = Index::build(hosts.iter().map(|h| (h.id.as_str(), h.name.as_str())));

    let mut dy = Dyn {
        hosts: host_specs.iter().map(|h| host_dyn(h)).collect(),
        storages: st_specs.iter().map(|s| storage_dyn(s)).collect(),
        nets: net_specs.iter().map(|n| net_dyn(n)).collect(),
        guests: HashMap::new(),
    };
    for g in &snap.guests {
        let Some(h) = host_ix.id(&g.host_id) else {
            continue;
        };
        add_guest(&mut dy, h, g);
    }
    let fleet = Fleet {
        generation,
        hosts,
        storages,
        networks,
        wires,
        zones,
        regions,
        tags,
        skus,
        host_ix,
        storage_ix,
        network_ix,
        wire_ix,
        zone_ix,
        region_ix,
        tag_ix,
        sku_ix,
    };
    (fleet, dy)
}

pub(crate) fn add_guest(dy: &mut Dyn, h: u32, g: &crate::snapshot::GuestSpec) {
    let hd = &mut dy.hosts[h as usize];
    hd.cpu_used += g.vcpu_count.max(0);
    hd.mem_used += g.vmem_size.max(0);
    hd.guests += 1;
    if CREATING.contains(&g.status.as_str()) {
        hd.creating += 1;
    }
    dy.guests.insert(
        g.id.clone(),
        GuestUse {
            host: h,
            cpu: g.vcpu_count.max(0),
            mem: g.vmem_size.max(0),
            before_resources: BEFORE_RESOURCES.contains(&g.status.as_str()),
        },
    );
}

impl Fleet {
    /// Does `spec` describe host `h` with the same static shape (so that a
    /// reload may update its numbers in place)?
    pub fn host_same_shape(&self, h: u32, spec: &HostSpec) -> bool {
        let host = &self.hosts[h as usize];
        let ids = |list: &[String], ix: &Index| -> Option<Vec<u32>> {
            let mut v = Vec::with_capacity(list.len());
            for x in list {
                v.push(ix.id(x)?);
            }
            v.sort_unstable();
            v.dedup();
            Some(v)
        };
        host.name == spec.name
            && host.zone_id == spec.zone_id
            && host.host_type == spec.host_type
            && host.domain_id == spec.domain_id
            && host.is_public == spec.is_public
            && host.public_scope == spec.public_scope
            && ids(&spec.storages, &self.storage_ix).as_ref() == Some(&host.storages)
            && ids(&spec.wires, &self.wire_ix).as_ref() == Some(&host.wires)
            && ids(&spec.schedtags, &self.tag_ix).as_ref() == Some(&host.tags)
    }

    pub fn storage_same_shape(&self, s: u32, spec: &StorageSpec) -> bool {
        let st = &self.storages[s as usize];
        st.name == spec.name
            && st.storage_type == spec.storage_type
            && st.medium_type == spec.medium_type
    }

    pub fn network_same_shape(&self, n: u32, spec: &NetworkSpec) -> bool {
        let net = &self.networks[n as usize];
        net.name == spec.name
            && net.wire_id == spec.wire_id
            && net.start == spec.start
            && net.end == spec.end
            && net.server_type == spec.server_type
            && net.is_auto_alloc == spec.is_auto_alloc
            && net.is_public == spec.is_public
            && net.public_scope == spec.public_scope
            && net.tenant_id == spec.tenant_id
            && net.domain_id == spec.domain_id
            && net.status == spec.status
    }
}
