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
    NoStorage {
        disk: u8,
    },
    /// No network the NIC may use is reachable (no wire to it).
    NoNetwork {
        nic: u8,
    },
    Disabled,
    Offline(Arc<str>),
    Maintenance,
    Deleted,
    Cpu {
        free: f64,
        want: i64,
    },
    Memory {
        free: f64,
        want: i64,
    },
    /// Matching storages exist but none is enabled and online.
    StorageDown {
        disk: u8,
    },
    /// The most free matching storage has `free` MB.
    StorageFull {
        disk: u8,
        free: f64,
    },
    /// The reachable networks have `free` addresses left between them.
    NetworkFull {
        nic: u8,
        free: i64,
    },
    AddressInUse {
        nic: u8,
    },
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
        SUMMARIES[self.kind()]
    }

    /// Index of [`Reject::summary`] in [`SUMMARIES`].
    pub fn kind(&self) -> usize {
        match self {
            Reject::Hypervisor => 0,
            Reject::Excluded => 1,
            Reject::Zone => 2,
            Reject::Region => 3,
            Reject::Wire => 4,
            Reject::Domain => 5,
            Reject::TagRequired(_) => 6,
            Reject::TagExcluded(_) => 7,
            Reject::Sku => 8,
            Reject::IsolatedDevice => 9,
            Reject::NoStorage { .. } => 10,
            Reject::NoNetwork { .. } => 11,
            Reject::Disabled => 12,
            Reject::Offline(_) => 13,
            Reject::Maintenance => 14,
            Reject::Deleted => 15,
            Reject::Cpu { .. } => 16,
            Reject::Memory { .. } => 17,
            Reject::StorageDown { .. } => 18,
            Reject::StorageFull { .. } => 19,
            Reject::NetworkFull { .. } => 20,
            Reject::AddressInUse { .. } => 21,
        }
    }
}

/// The aggregated labels, by [`Reject::kind`].
pub const SUMMARIES: [&str; 22] = [
    "run another hypervisor",
    "excluded by the request",
    "not in the requested zone",
    "not in the requested region",
    "not on the requested wire",
    "private to another domain",
    "missing a required schedtag",
    "carrying an excluded schedtag",
    "outside the server SKU's zone or region",
    "no free isolated device",
    "no storage of the requested type",
    "no reachable network",
    "disabled",
    "offline",
    "in maintenance",
    "deleted",
    "not enough CPU",
    "not enough memory",
    "storage disabled or offline",
    "not enough storage",
    "no free IP address",
    "requested address in use",
];

// ---------------------------------------------------------------------------
// static filters

pub fn hypervisor(req: &Request, host: &Host) -> Option<Reject> {
    (!host_type_runs(&req.hypervisor, &host.host_type)).then_some(Reject::Hypervisor)
}

pub fn excluded(req: &Request, h: u32) -> Option<Reject> {
    req.exclude
        .binary_search(&h)
        .is_ok()
        .then_some(Reject::Excluded)
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
    let region_ok = s.cloudregion_id.is_empty() || s.region.is_some_and(|r| host.region == Some(r));
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
        if !n.any
            || !host
                .wires
                .iter()
                .any(|&w| !n.by_wire[w as usize].is_empty())
        {
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
    (req.cpu > 0 && free < req.cpu as f64).then_some(Reject::Cpu {
        free,
        want: req.cpu,
    })
}

pub fn memory(hd: &HostDyn, req: &Request, credit: Credit) -> Option<Reject> {
    let free = hd.mem_free() + credit.mem as f64;
    (req.mem > 0 && free < req.mem as f64).then_some(Reject::Memory {
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
                return Err(
                    if host
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
                    },
                );
            }
        }
    }
    Ok(())
}

/// Can host `h` take one more instance now? On success, where its disks and
/// NICs go; otherwise every resource that is short.
pub fn fit(
    fleet: &Fleet,
    dy: &Dyn,
    req: &Request,
    h: u32,
    credit: Credit,
) -> Result<Assign, Vec<Reject>> {
    let mut sink = Vec::new();
    match fit_into(fleet, dy, req, h, credit, &mut sink) {
        Some(a) => Ok(a),
        None => Err(sink.into_iter().map(|(_, r)| r).collect()),
    }
}

/// [`fit`] writing the reasons into `sink` (no allocation per host).
pub fn fit_into(
    fleet: &Fleet,
    dy: &Dyn,
    req: &Request,
    h: u32,
    credit: Credit,
    sink: &mut Vec<(u32, Reject)>,
) -> Option<Assign> {
    let hd = &dy.hosts[h as usize];
    let mut a = Assign {
        disks: [u32::MAX; MAX_DISKS],
        nets: [u32::MAX; MAX_NICS],
    };
    let mut ok = true;
    for r in [cpu(hd, req, credit), memory(hd, req, credit)]
        .into_iter()
        .flatten()
    {
        sink.push((h, r));
        ok = false;
    }
    if !req.disks.is_empty()
        && let Err(r) = storages(fleet, dy, req, h, &mut a.disks)
    {
        sink.push((h, r));
        ok = false;
    }
    if !req.nics.is_empty()
        && let Err(r) = networks(fleet, dy, req, h, &mut a.nets)
    {
        sink.push((h, r));
        ok = false;
    }
    ok.then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn host<'a>(f: &'a Fleet, id: &str) -> &'a Host {
        &f.hosts[h(f, id) as usize]
    }

    #[test]
    fn hypervisor_filter() {
        let (f, _) = fleet();
        let r = req(&f, &input(1, 512));
        assert_eq!(hypervisor(&r, host(&f, "h1")), None);
        let mut i = input(1, 512);
        i.hypervisor = "baremetal".into();
        let r = req(&f, &i);
        assert_eq!(hypervisor(&r, host(&f, "h1")), Some(Reject::Hypervisor));
    }

    #[test]
    fn excluded_filter() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        i.exclude_hosts = vec!["h2".into(), "gone".into()];
        let r = req(&f, &i);
        assert_eq!(excluded(&r, h(&f, "h2")), Some(Reject::Excluded));
        assert_eq!(excluded(&r, h(&f, "h1")), None);
    }

    #[test]
    fn zone_region_wire_filters() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        i.prefer_zone = "zone1".into();
        i.prefer_region = "r1".into();
        i.prefer_wire = "w1".into();
        let r = req(&f, &i);
        assert_eq!(zone(&r, host(&f, "h1")), None);
        assert_eq!(zone(&r, host(&f, "h3")), Some(Reject::Zone));
        assert_eq!(region(&r, host(&f, "h1")), None);
        assert_eq!(region(&r, host(&f, "h3")), Some(Reject::Region));
        assert_eq!(wire(&r, host(&f, "h2")), None);
        assert_eq!(wire(&r, host(&f, "h3")), Some(Reject::Wire));
    }

    #[test]
    fn domain_filter() {
        let mut s = snapshot();
        s.hosts[0].is_public = false;
        s.hosts[0].domain_id = "d1".into();
        s.hosts[1].public_scope = "domain".into();
        s.hosts[1].domain_id = "d1".into();
        let (f, _) = crate::fleet::build(&s, 1);
        let mut i = input(1, 512);
        i.project_domain = "d2".into();
        let r = req(&f, &i);
        assert_eq!(domain(&r, host(&f, "h1")), Some(Reject::Domain));
        assert_eq!(domain(&r, host(&f, "h2")), Some(Reject::Domain));
        assert_eq!(domain(&r, host(&f, "h3")), None);
        i.project_domain = "d1".into();
        let r = req(&f, &i);
        assert_eq!(domain(&r, host(&f, "h1")), None);
    }

    #[test]
    fn schedtag_filter() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        i.schedtags = vec![tag("ssd", "require"), tag("slow", "exclude")];
        let r = req(&f, &i);
        assert_eq!(schedtags(&r, host(&f, "h1")), None);
        assert!(matches!(
            schedtags(&r, host(&f, "h2")),
            Some(Reject::TagRequired(_))
        ));
        i.schedtags = vec![tag("slow", "exclude")];
        let r = req(&f, &i);
        assert!(matches!(
            schedtags(&r, host(&f, "h3")),
            Some(Reject::TagExcluded(_))
        ));
        // prefer / avoid never filter.
        i.schedtags = vec![tag("ssd", "avoid"), tag("slow", "prefer")];
        let r = req(&f, &i);
        assert_eq!(schedtags(&r, host(&f, "h1")), None);
        assert_eq!(schedtags(&r, host(&f, "h2")), None);
    }

    #[test]
    fn schedtag_default_strategy_applies() {
        let mut s = snapshot();
        s.schedtags[1].default_strategy = "exclude".into();
        let (f, _) = crate::fleet::build(&s, 1);
        let r = req(&f, &input(1, 512));
        assert!(matches!(
            schedtags(&r, host(&f, "h3")),
            Some(Reject::TagExcluded(_))
        ));
        // Naming the tag overrides its default.
        let mut i = input(1, 512);
        i.schedtags = vec![tag("slow", "prefer")];
        let r = req(&f, &i);
        assert_eq!(schedtags(&r, host(&f, "h3")), None);
    }

    #[test]
    fn sku_filter() {
        let (f, _) = fleet();
        let mut i = input(0, 0);
        i.sku = "small".into();
        let r = req(&f, &i);
        assert_eq!((r.cpu, r.mem), (2, 2048));
        assert_eq!(sku(&f, &r, host(&f, "h1")), Some(Reject::Sku));
        assert_eq!(sku(&f, &r, host(&f, "h3")), None);
    }

    #[test]
    fn isolated_device_and_image_and_quota() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        let r = req(&f, &i);
        assert_eq!(isolated_devices(&r), None);
        assert_eq!(image(&r, host(&f, "h1")), None);
        assert_eq!(quota(&r), None);
        i.isolated_devices = vec![serde_json::json!({"model": "T4"})];
        let r = req(&f, &i);
        assert_eq!(isolated_devices(&r), Some(Reject::IsolatedDevice));
    }

    #[test]
    fn storage_type_filter() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        i.disks = vec![disk(1024, "local", "ssd")];
        let r = req(&f, &i);
        assert_eq!(storage_type(&r, host(&f, "h1")), None);
        assert_eq!(
            storage_type(&r, host(&f, "h2")),
            Some(Reject::NoStorage { disk: 0 })
        );
        assert_eq!(
            storage_type(&r, host(&f, "h3")),
            Some(Reject::NoStorage { disk: 0 })
        );
        i.disks = vec![disk(1024, "rbd", "")];
        let r = req(&f, &i);
        assert_eq!(storage_type(&r, host(&f, "h3")), None);
    }

    #[test]
    fn network_reach_filter() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        i.nets = vec![net("n1")];
        let r = req(&f, &i);
        assert_eq!(network_reach(&r, host(&f, "h1")), None);
        assert_eq!(
            network_reach(&r, host(&f, "h3")),
            Some(Reject::NoNetwork { nic: 0 })
        );
        // Auto NICs reach any host with a usable network on its wires.
        i.nets = vec![net("")];
        let r = req(&f, &i);
        assert_eq!(network_reach(&r, host(&f, "h3")), None);
    }

    #[test]
    fn status_filter() {
        let (f, mut d) = fleet();
        assert_eq!(status(&d.hosts[h(&f, "h1") as usize]), None);
        assert!(matches!(
            status(&d.hosts[h(&f, "h4") as usize]),
            Some(Reject::Offline(_))
        ));
        let hd = &mut d.hosts[h(&f, "h1") as usize];
        hd.maintenance = true;
        assert_eq!(status(hd), Some(Reject::Maintenance));
        hd.enabled = false;
        assert_eq!(status(hd), Some(Reject::Disabled));
    }

    #[test]
    fn cpu_filter_with_bounds_and_reservations() {
        let mut s = snapshot();
        // 8 CPUs, 2 reserved, bound 2.0 → 12 vCPUs.
        s.hosts[0].cpu_reserved = 2;
        s.hosts[0].cpu_cmtbound = 2.0;
        let (f, mut d) = crate::fleet::build(&s, 1);
        let hi = h(&f, "h1") as usize;
        let r = req(&f, &input(12, 512));
        assert_eq!(cpu(&d.hosts[hi], &r, Credit::default()), None);
        d.hosts[hi].res_cpu = 1;
        assert_eq!(
            cpu(&d.hosts[hi], &r, Credit::default()),
            Some(Reject::Cpu {
                free: 11.0,
                want: 12
            })
        );
        // The guest's own usage is credited (change-config).
        assert_eq!(cpu(&d.hosts[hi], &r, Credit { cpu: 1, mem: 0 }), None);
    }

    #[test]
    fn memory_filter_with_bounds_and_reservations() {
        let mut s = snapshot();
        s.hosts[0].mem_reserved = 4096;
        s.hosts[0].mem_cmtbound = 1.5;
        s.guests.push(crate::snapshot::GuestSpec {
            id: "g".into(),
            host_id: "h1".into(),
            vcpu_count: 1,
            vmem_size: 2048,
            status: "running".into(),
        });
        let (f, d) = crate::fleet::build(&s, 1);
        let hi = h(&f, "h1") as usize;
        // (16384 - 4096) × 1.5 - 2048 = 16384 free.
        assert_eq!(d.hosts[hi].mem_free(), 16384.0);
        let r = req(&f, &input(1, 16384));
        assert_eq!(memory(&d.hosts[hi], &r, Credit::default()), None);
        let r = req(&f, &input(1, 16385));
        assert_eq!(
            memory(&d.hosts[hi], &r, Credit::default()),
            Some(Reject::Memory {
                free: 16384.0,
                want: 16385
            })
        );
    }

    #[test]
    fn storage_capacity_per_disk() {
        let (f, mut d) = fleet();
        let hi = h(&f, "h1");
        let mut i = input(1, 512);
        // Two disks on one 100 GB storage: together they must fit.
        i.disks = vec![disk(60000, "", ""), disk(40000, "", "")];
        let r = req(&f, &i);
        let mut out = [0u32; MAX_DISKS];
        assert!(storages(&f, &d, &r, hi, &mut out).is_ok());
        i.disks = vec![disk(60000, "", ""), disk(50000, "", "")];
        let r = req(&f, &i);
        assert_eq!(
            storages(&f, &d, &r, hi, &mut out),
            Err(Reject::StorageFull {
                disk: 1,
                free: 42400.0
            })
        );
        d.storages[0].enabled = false;
        assert_eq!(
            storages(&f, &d, &r, hi, &mut out),
            Err(Reject::StorageDown { disk: 0 })
        );
    }

    #[test]
    fn network_free_ips_and_requested_address() {
        let (f, mut d) = fleet();
        let h3 = h(&f, "h3");
        let mut i = input(1, 512);
        i.nets = vec![net("n2")];
        let r = req(&f, &i);
        let mut out = [0u32; MAX_NICS];
        assert!(networks(&f, &d, &r, h3, &mut out).is_ok());
        let n2 = f.network_ix.id("n2").expect("n2") as usize;
        d.nets[n2]
            .used
            .extend([ip("10.1.0.10"), ip("10.1.0.11"), ip("10.1.0.12")]);
        assert_eq!(
            networks(&f, &d, &r, h3, &mut out),
            Err(Reject::NetworkFull { nic: 0, free: 0 })
        );
        let (f, mut d) = fleet();
        i.nets = vec![cloudpods_apis::scheduler::SchedNet {
            network: "n1".into(),
            address: "10.0.0.15".into(),
            ..Default::default()
        }];
        let r = req(&f, &i);
        let h1 = h(&f, "h1");
        assert!(networks(&f, &d, &r, h1, &mut out).is_ok());
        let n1 = f.network_ix.id("n1").expect("n1") as usize;
        d.nets[n1].res_addrs.insert(ip("10.0.0.15"), 1);
        assert_eq!(
            networks(&f, &d, &r, h1, &mut out),
            Err(Reject::AddressInUse { nic: 0 })
        );
    }

    #[test]
    fn fit_lists_every_short_resource() {
        let (f, d) = fleet();
        let mut i = input(64, 1 << 20);
        i.disks = vec![disk(1 << 30, "", "")];
        let r = req(&f, &i);
        let rs = fit(&f, &d, &r, h(&f, "h2"), Credit::default()).expect_err("too big");
        assert_eq!(rs.len(), 3, "{rs:?}");
        assert!(matches!(rs[0], Reject::Cpu { .. }));
        assert!(matches!(rs[1], Reject::Memory { .. }));
        assert!(matches!(rs[2], Reject::StorageFull { .. }));
    }
}
