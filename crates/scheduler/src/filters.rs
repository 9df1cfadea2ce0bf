//! The filters (Cloudpods' predicates). Each is a small function that
//! answers `None` (the host passes) or the [`Reject`] saying why not.
//!
//! Static filters look only at the fleet's shape and the request, so they
//! run once per request without the cache lock; the capacity filters read
//! the live numbers (database usage plus pending placements) and run under
//! it. Order follows Cloudpods' predicate order, and the first static
//! failure is the one reported; the capacity filters report every
//! resource that is short.

use std::sync::Arc;

use crate::fleet::{Dyn, Fleet, Host, HostDyn};
use crate::request::{MAX_DISKS, MAX_NICS, Request, Strategy, host_type_runs};

/// Why a host cannot take an instance. Numbers, not text: the text is
/// written only when someone reads it ([`crate::reasons`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Reject {
    Hypervisor,
    Excluded,
    Zone,
    Region,
    Wire,
    Domain,
    TagRequired(u32),
    TagExcluded(u32),
    Sku,
    IsolatedDevice,
    /// No storage of the disk's type / medium / id is attached.
    NoStorage { disk: u8 },
    /// No network the NIC may use is reachable (no wire to it).
    NoNetwork { nic: u8 },
    Disabled,
    Offline(Arc<str>),
    Maintenance,
    Deleted,
    Cpu { free: f64, want: i64 },
    Memory { free: f64, want: i64 },
    /// Matching storages exist but none is enabled and online.
    StorageDown { disk: u8 },
    /// The most free matching storage has `free` MB.
    StorageFull { disk: u8, free: f64 },
    /// The reachable networks have `free` addresses left between them.
    NetworkFull { nic: u8, free: i64 },
    AddressInUse { nic: u8 },
}

impl Reject {
    /// The filter's name (`filter_name` of a filtered candidate).
    pub fn filter(&self) -> &'static str {
        match self {
            Reject::Hypervisor => "host_hypervisor",
            Reject::Excluded => "host_exclude",
            Reject::Zone => "host_zone",
            Reject::Region => "host_cloudregion",
            Reject::Wire => "host_wire",
            Reject::Domain => "host_domain",
            Reject::TagRequired(_) | Reject::TagExcluded(_) => "host_schedtag",
            Reject::Sku => "server_sku",
            Reject::IsolatedDevice => "isolated_device",
            Reject::NoStorage { .. } => "storage_type",
            Reject::NoNetwork { .. } => "network",
            Reject::Disabled | Reject::Offline(_) | Reject::Maintenance | Reject::Deleted => {
                "host_status"
            }
            Reject::Cpu { .. } => "host_cpu",
            Reject::Memory { .. } => "host_memory",
            Reject::StorageDown { .. } | Reject::StorageFull { .. } => "host_storage",
            Reject::NetworkFull { .. } | Reject::AddressInUse { .. } => "network_free",
        }
    }

    /// What the aggregated line says ("7 hosts: not enough memory").
    pub fn summary(&self) -> &'static str {
        match self {
            Reject::Hypervisor => "run another hypervisor",
            Reject::Excluded => "excluded by the request",
            Reject::Zone => "not in the requested zone",
            Reject::Region => "not in the requested region",
            Reject::Wire => "not on the requested wire",
            Reject::Domain => "private to another domain",
            Reject::TagRequired(_) => "missing a required schedtag",
            Reject::TagExcluded(_) => "carrying an excluded schedtag",
            Reject::Sku => "outside the server SKU's zone or region",
            Reject::IsolatedDevice => "no free isolated device",
            Reject::NoStorage { .. } => "no storage of the requested type",
            Reject::NoNetwork { .. } => "no reachable network",
            Reject::Disabled => "disabled",
            Reject::Offline(_) => "offline",
            Reject::Maintenance => "in maintenance",
            Reject::Deleted => "deleted",
            Reject::Cpu { .. } => "not enough CPU",
            Reject::Memory { .. } => "not enough memory",
            Reject::StorageDown { .. } => "storage disabled or offline",
            Reject::StorageFull { .. } => "not enough storage",
            Reject::NetworkFull { .. } => "no free IP address",
            Reject::AddressInUse { .. } => "requested address in use",
        }
    }
}

// ---------------------------------------------------------------------------
// static filters

pub fn hypervisor(req: &Request, host: &Host) -> Option<Reject> {
    (!host_type_runs(&req.hypervisor, &host.host_type)).then_some(Reject::Hypervisor)
}

pub fn excluded(req: &Request, h: u32) -> Option<Reject> {
    req.exclude.binary_search(&h).is_ok().then_some(Reject::Excluded)
}

pub fn zone(req: &Request, host: &Host) -> Option<Reject> {
    req.zone
        .is_some_and(|z| host.zone != Some(z))
        .then_some(Reject::Zone)
}

pub fn region(req: &Request, host: &Host) -> Option<Reject> {
    req.region
        .is_some_and(|r| host.region != Some(r))
        .then_some(Reject::Region)
}

pub fn wire(req: &Request, host: &Host) -> Option<Reject> {
    req.wire
        .is_some_and(|w| !host.wires.contains(&w))
        .then_some(Reject::Wire)
}

/// A host private to a domain serves only that domain's projects; a
/// public one every domain (scope `system`) or its own (scope `domain`).
pub fn domain(req: &Request, host: &Host) -> Option<Reject> {
    if req.domain.is_empty() || host.domain_id == req.domain {
        return None;
    }
    let shared = host.is_public && host.public_scope != "domain" && host.public_scope != "none";
    (!shared).then_some(Reject::Domain)
}

/// `require` and `exclude` tags; `prefer` and `avoid` only rank.
pub fn schedtags(req: &Request, host: &Host) -> Option<Reject> {
    for &(t, s) in &req.tags {
        let has = host.tags.binary_search(&t).is_ok();
        match s {
            Strategy::Require if !has => return Some(Reject::TagRequired(t)),
            Strategy::Exclude if has => return Some(Reject::TagExcluded(t)),
            _ => {}
        }
    }
    None
}

/// A SKU bound to a zone or region is offered only there.
pub fn sku(fleet: &Fleet, req: &Request, host: &Host) -> Option<Reject> {
    let s = &fleet.skus[req.sku? as usize];
    let zone_ok = s.zone_id.is_empty() || s.zone.is_some_and(|z| host.zone == Some(z));
    let region_ok =
        s.cloudregion_id.is_empty() || s.region.is_some_and(|r| host.region == Some(r));
    (!(zone_ok && region_ok)).then_some(Reject::Sku)
}

/// No host reports isolated devices (GPUs, USB) yet: a request for any is
/// refused by every host, with a reason that says so.
pub fn isolated_devices(req: &Request) -> Option<Reject> {
    (req.isolated_devices > 0).then_some(Reject::IsolatedDevice)
}

/// Images are not cached per host yet: every host can fetch any image.
pub fn image(_req: &Request, _host: &Host) -> Option<Reject> {
    None
}

/// Quota is checked (and reserved) by the region in the same transaction
/// that creates the guests; checking it again here would count those
/// guests twice. Kept as a filter so the predicate list matches Cloudpods.
pub fn quota(_req: &Request) -> Option<Reject> {
    None
}

pub fn storage_type(req: &Request, host: &Host) -> Option<Reject> {
    for (i, d) in req.disks.iter().enumerate() {
        if !host.storages.iter().any(|&s| d.ok[s as usize]) {
            return Some(Reject::NoStorage { disk: i as u8 });
        }
    }
    None
}

pub fn network_reach(req: &Request, host: &Host) -> Option<Reject> {
    for (i, n) in req.nics.iter().enumerate() {
        if !n.any || !host.wires.iter().any(|&w| !n.by_wire[w as usize].is_empty()) {
            return Some(Reject::NoNetwork { nic: i as u8 });
        }
    }
    None
}

/// Every static filter, in order; the first failure.
pub fn static_check(fleet: &Fleet, req: &Request, h: u32) -> Option<Reject> {
    let host = &fleet.hosts[h as usize];
    hypervisor(req, host)
        .or_else(|| excluded(req, h))
        .or_else(|| domain(req, host))
        .or_else(|| region(req, host))
        .or_else(|| zone(req, host))
        .or_else(|| wire(req, host))
        .or_else(|| schedtags(req, host))
        .or_else(|| sku(fleet, req, host))
        .or_else(|| image(req, host))
        .or_else(|| isolated_devices(req))
        .or_else(|| storage_type(req, host))
        .or_else(|| network_reach(req, host))
        .or_else(|| quota(req))
}

// ---------------------------------------------------------------------------
// live filters

pub fn status(hd: &HostDyn) -> Option<Reject> {
    if hd.deleted {
        Some(Reject::Deleted)
    } else if !hd.enabled {
        Some(Reject::Disabled)
    } else if !hd.online() {
        Some(Reject::Offline(hd.host_status.clone()))
    } else if hd.maintenance {
        Some(Reject::Maintenance)
    } else {
        None
    }
}

/// Usage of the guests being re-placed on this host (change-config,
/// migrate), which the new placement replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Credit {
    pub cpu: i64,
    pub mem: i64,
}

pub fn cpu(hd: &HostDyn, req: &Request, credit: Credit) -> Option<Reject> {
    let free = hd.cpu_free() + credit.cpu as f64;
    (req.cpu > 0 && free < req.cpu as f64).then(|| Reject::Cpu {
        free,
        want: req.cpu,
    })
}

pub fn memory(hd: &HostDyn, req: &Request, credit: Credit) -> Option<Reject> {
    let free = hd.mem_free() + credit.mem as f64;
    (req.mem > 0 && free < req.mem as f64).then(|| Reject::Memory {
        free,
        want: req.mem,
    })
}

/// Where one instance's disks and NICs go on a host.
#[derive(Debug, Clone, Copy)]
pub struct Assign {
    pub disks: [u32; MAX_DISKS],
    pub nets: [u32; MAX_NICS],
}

/// Pick a storage per disk: among the host's enabled, online storages of
/// the right kind, the one with the most room left (disks of one instance
/// may share a storage; what earlier disks took counts).
pub fn storages(
    fleet: &Fleet,
    dy: &Dyn,
    req: &Request,
    h: u32,
    out: &mut [u32; MAX_DISKS],
) -> Result<(), Reject> {
    let host = &fleet.hosts[h as usize];
    let mut taken: [(u32, i64); MAX_DISKS] = [(u32::MAX, 0); MAX_DISKS];
    let mut ntaken = 0usize;
    for (i, d) in req.disks.iter().enumerate() {
        let mut best: Option<(u32, f64)> = None;
        let mut any_up = false;
        for &s in &host.storages {
            if !d.ok[s as usize] {
                continue;
            }
            let sd = &dy.storages[s as usize];
            if !sd.enabled || !sd.online() {
                continue;
            }
            any_up = true;
            let already: i64 = taken[..ntaken]
                .iter()
                .filter(|t| t.0 == s)
                .map(|t| t.1)
                .sum();
            let free = sd.free() - already as f64;
            if best.is_none_or(|(_, f)| free > f) {
                best = Some((s, free));
            }
        }
        match best {
            None if !any_up => return Err(Reject::StorageDown { disk: i as u8 }),
            Some((s, free)) if free >= d.size as f64 => {
                out[i] = s;
                taken[ntaken] = (s, d.size);
                ntaken += 1;
            }
            other => {
                return Err(Reject::StorageFull {
                    disk: i as u8,
                    free: other.map(|(_, f)| f).unwrap_or(0.0),
                });
            }
        }
    }
    Ok(())
}

/// Pick a network per NIC: the requested one, or among those the NIC may
/// use on the host's wires the one with the most free addresses.
pub fn networks(
    fleet: &Fleet,
    dy: &Dyn,
    req: &Request,
    h: u32,
    out: &mut [u32; MAX_NICS],
) -> Result<(), Reject> {
    let host = &fleet.hosts[h as usize];
    for (i, n) in req.nics.iter().enumerate() {
        let mut best: Option<(u32, i64)> = None;
        let mut total_free = 0i64;
        for &w in &host.wires {
            for &net in &n.by_wire[w as usize] {
                let already = out[..i].iter().filter(|x| **x == net).count() as i64;
                let free = dy.net_free(fleet, net) - already;
                if let Some(a) = n.addr {
                    if !fleet.networks[net as usize].contains(a) {
                        continue;
                    }
                    if !dy.addr_free(net, a) {
                        return Err(Reject::AddressInUse { nic: i as u8 });
                    }
                    best = Some((net, free.max(1)));
                    continue;
                }
                total_free += free.max(0);
                if free > 0 && best.is_none_or(|(_, f)| free > f) {
                    best = Some((net, free));
                }
            }
        }
        match best {
            Some((net, _)) => out[i] = net,
            None => {
                return Err(if host
                    .wires
                    .iter()
                    .any(|&w| !n.by_wire[w as usize].is_empty())
                {
                    Reject::NetworkFull {
                        nic: i as u8,
                        free: total_free,
                    }
                } else {
                    Reject::NoNetwork { nic: i as u8 }
                });
            }
        }
    }
    Ok(())
}

/// Can host `h` take one more instance now? On success, where its disks and
/// NICs go; otherwise every resource that is short.
pub fn fit(fleet: &Fleet, dy: &Dyn, req: &Request, h: u32, credit: Credit) -> Result<Assign, Vec<Reject>> {
    let hd = &dy.hosts[h as usize];
    let c = cpu(hd, req, credit);
    let m = memory(hd, req, credit);
    let mut a = Assign {
        disks: [u32::MAX; MAX_DISKS],
        nets: [u32::MAX; MAX_NICS],
    };
    let s = storages(fleet, dy, req, h, &mut a.disks).err();
    let n = networks(fleet, dy, req, h, &mut a.nets).err();
    if c.is_none() && m.is_none() && s.is_none() && n.is_none() {
        return Ok(a);
    }
    Err([c, m, s, n].into_iter().flatten().collect())
}
