//! Reasons a person can act on: one line per rejected host
//! ("host h3: memory 2048 MB free < 4096 MB requested") and aggregated
//! counts ("7 hosts: not enough memory; 3 hosts: offline").

use std::net::Ipv4Addr;

use cloudpods_apis::scheduler::FilteredCandidate;

use crate::filters::{Reject, SUMMARIES};
use crate::fleet::Fleet;
use crate::request::Request;

fn num(v: f64) -> String {
    let v = v.max(0.0);
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn disk_kind(req: &Request, i: usize) -> String {
    let Some(d) = req.disks.get(i) else {
        return String::new();
    };
    let mut kind: Vec<&str> = Vec::new();
    if !d.backend.is_empty() {
        kind.push(&d.backend);
    }
    if !d.medium.is_empty() {
        kind.push(&d.medium);
    }
    if kind.is_empty() {
        String::new()
    } else {
        format!(" {}", kind.join("/"))
    }
}

fn nic_target(fleet: &Fleet, req: &Request, i: usize) -> String {
    match req.nics.get(i).and_then(|n| n.network) {
        Some(n) => format!("network {}", fleet.networks[n as usize].name),
        None => "the reachable networks".to_string(),
    }
}

/// What `r` means for a host, without the host's name.
pub fn describe(fleet: &Fleet, req: &Request, h: u32, r: &Reject) -> String {
    let host = &fleet.hosts[h as usize];
    let zone_name = |z: Option<u32>| {
        z.map(|z| fleet.zones[z as usize].name.clone())
            .unwrap_or_else(|| "none".into())
    };
    let region_name = |r: Option<u32>| {
        r.map(|r| fleet.regions[r as usize].name.clone())
            .unwrap_or_else(|| "none".into())
    };
    match r {
        Reject::Hypervisor => format!(
            "host type {} does not run {} guests",
            if host.host_type.is_empty() {
                "(none)"
            } else {
                &host.host_type
            },
            req.hypervisor
        ),
        Reject::Excluded => "excluded by the request".into(),
        Reject::Zone => format!(
            "in zone {}, not {}",
            zone_name(host.zone),
            zone_name(req.zone)
        ),
        Reject::Region => format!(
            "in region {}, not {}",
            region_name(host.region),
            region_name(req.region)
        ),
        Reject::Wire => format!(
            "not connected to wire {}",
            req.wire
                .map(|w| fleet.wires[w as usize].name.as_str())
                .unwrap_or_default()
        ),
        Reject::Domain => format!(
            "private to domain {}, the project is in domain {}",
            host.domain_id, req.domain
        ),
        Reject::TagRequired(t) => {
            format!("lacks schedtag {} (required)", fleet.tags[*t as usize].name)
        }
        Reject::TagExcluded(t) => format!(
            "carries schedtag {} (excluded)",
            fleet.tags[*t as usize].name
        ),
        Reject::Sku => {
            let s = req.sku.map(|k| &fleet.skus[k as usize]);
            format!(
                "server sku {} is offered only in {}",
                s.map(|s| s.name.as_str()).unwrap_or_default(),
                s.map(|s| {
                    if s.zone_id.is_empty() {
                        format!("region {}", region_name(s.region))
                    } else {
                        format!("zone {}", zone_name(s.zone))
                    }
                })
                .unwrap_or_default()
            )
        }
        Reject::IsolatedDevice => format!(
            "has no free isolated device ({} requested)",
            req.isolated_devices
        ),
        Reject::NoStorage { disk } => {
            let i = *disk as usize;
            match req.disks.get(i).and_then(|d| d.storage) {
                Some(s) => format!(
                    "disk {i}: storage {} is not attached",
                    fleet.storages[s as usize].name
                ),
                None => format!("disk {i}: no{} storage attached", disk_kind(req, i)),
            }
        }
        Reject::NoNetwork { nic } => {
            let i = *nic as usize;
            match req.nics.get(i).and_then(|n| n.network) {
                Some(n) => {
                    let net = &fleet.networks[n as usize];
                    format!(
                        "nic {i}: network {} is on wire {}, which the host is not connected to",
                        net.name,
                        net.wire
                            .map(|w| fleet.wires[w as usize].name.as_str())
                            .unwrap_or(net.wire_id.as_str())
                    )
                }
                None => {
                    format!("nic {i}: no guest network the project may use is on the host's wires")
                }
            }
        }
        Reject::Disabled => "disabled".into(),
        Reject::Offline(s) => format!("offline (host_status {s})"),
        Reject::Maintenance => "in maintenance".into(),
        Reject::Deleted => "deleted".into(),
        Reject::Cpu { free, want } => format!("{} vCPUs free < {want} requested", num(*free)),
        Reject::Memory { free, want } => {
            format!("memory {} MB free < {want} MB requested", num(*free))
        }
        Reject::StorageDown { disk } => format!(
            "disk {disk}: every{} storage is disabled or offline",
            disk_kind(req, *disk as usize)
        ),
        Reject::StorageFull { disk, free } => format!(
            "disk {disk}: storage {} MB free < {} MB requested",
            num(*free),
            req.disks
                .get(*disk as usize)
                .map(|d| d.size)
                .unwrap_or_default()
        ),
        Reject::NetworkFull { nic, free } => format!(
            "nic {nic}: {} free addresses on {}",
            free.max(&0),
            nic_target(fleet, req, *nic as usize)
        ),
        Reject::AddressInUse { nic } => format!(
            "nic {nic}: address {} is already in use",
            req.nics
                .get(*nic as usize)
                .and_then(|n| n.addr)
                .map(|a| Ipv4Addr::from(a).to_string())
                .unwrap_or_default()
        ),
    }
}

/// "host h3: memory 2048 MB free < 4096 MB requested".
pub fn host_line(fleet: &Fleet, req: &Request, h: u32, r: &Reject) -> String {
    format!(
        "host {}: {}",
        fleet.hosts[h as usize].name,
        describe(fleet, req, h, r)
    )
}

/// Rejected hosts per reason, most frequent first: "7 hosts: not enough
/// memory". A host short of two resources counts under both.
pub fn aggregate(rejects: &[&(u32, Reject)]) -> Vec<String> {
    // Thousands of rejects per request: one bit per (host, reason) kind.
    let hosts = rejects.iter().map(|r| r.0 as usize + 1).max().unwrap_or(0);
    let mut seen = vec![0u32; hosts];
    let mut counts = [0usize; SUMMARIES.len()];
    for (h, r) in rejects.iter().map(|r| (r.0 as usize, &r.1)) {
        let bit = 1u32 << r.kind();
        if seen[h] & bit == 0 {
            seen[h] |= bit;
            counts[r.kind()] += 1;
        }
    }
    let mut v: Vec<(usize, &str)> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (*n, SUMMARIES[k]))
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    v.into_iter()
        .map(|(n, label)| format!("{n} host{}: {label}", if n == 1 { "" } else { "s" }))
        .collect()
}

/// Rejected hosts with all their reasons, in the order they were first
/// rejected (at most `limit`), and how many hosts were rejected in all.
pub fn filtered(
    fleet: &Fleet,
    req: &Request,
    rejects: &[&(u32, Reject)],
    limit: usize,
) -> (Vec<FilteredCandidate>, usize) {
    let hosts = rejects.iter().map(|r| r.0 as usize + 1).max().unwrap_or(0);
    let mut slot = vec![u32::MAX; hosts];
    let mut groups: Vec<(u32, Vec<&Reject>)> = Vec::new();
    let mut total = 0usize;
    for (h, r) in rejects.iter().map(|r| (r.0, &r.1)) {
        if slot[h as usize] == u32::MAX {
            slot[h as usize] = total as u32;
            total += 1;
            if groups.len() < limit {
                groups.push((h, Vec::new()));
            }
        }
        if let Some((_, rs)) = groups.get_mut(slot[h as usize] as usize)
            && !rs.contains(&r)
        {
            rs.push(r);
        }
    }
    let out = groups
        .into_iter()
        .map(|(h, rs)| {
            let host = &fleet.hosts[h as usize];
            FilteredCandidate {
                id: host.id.clone(),
                name: host.name.clone(),
                filter_name: rs.first().map(|r| r.filter()).unwrap_or_default().into(),
                reasons: rs.iter().map(|r| describe(fleet, req, h, r)).collect(),
            }
        })
        .collect();
    (out, total)
}

/// The error of a request that cannot be placed.
pub fn failure(fleet: &Fleet, req: &Request, placed: usize, rejects: &[&(u32, Reject)]) -> String {
    const LINES: usize = 10;
    let what = format!(
        "No host can take instance {} of {} ({})",
        placed + 1,
        req.count,
        req.describe()
    );
    if fleet.hosts.is_empty() {
        return format!("{what}: no host is registered");
    }
    if rejects.is_empty() {
        return format!("{what}: no host is left to try");
    }
    let (hosts, total) = filtered(fleet, req, rejects, LINES);
    let mut lines: Vec<String> = hosts
        .iter()
        .map(|c| format!("host {}: {}", c.name, c.reasons.join(", ")))
        .collect();
    if total > LINES {
        lines.push(format!("and {} more", total - LINES));
    }
    format!(
        "{what}: {}. {}",
        aggregate(rejects).join("; "),
        lines.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use std::sync::Arc;

    #[test]
    fn aggregated_and_per_host() {
        let (f, _) = fleet();
        let r = req(&f, &input(2, 4096));
        let rejects = [
            (
                0,
                Reject::Memory {
                    free: 2048.0,
                    want: 4096,
                },
            ),
            (0, Reject::Cpu { free: 1.0, want: 2 }),
            (
                1,
                Reject::Memory {
                    free: 0.0,
                    want: 4096,
                },
            ),
            (3, Reject::Offline(Arc::from("offline"))),
        ];
        let rejects: Vec<&(u32, Reject)> = rejects.iter().collect();
        assert_eq!(
            aggregate(&rejects),
            vec![
                "2 hosts: not enough memory",
                "1 host: not enough CPU",
                "1 host: offline"
            ]
        );
        assert_eq!(
            host_line(&f, &r, 0, &rejects[0].1),
            "host h1: memory 2048 MB free < 4096 MB requested"
        );
        let (fc, total) = filtered(&f, &r, &rejects, 10);
        assert_eq!(total, 3);
        assert_eq!(fc[0].filter_name, "host_memory");
        assert_eq!(fc[0].reasons.len(), 2);
        let msg = failure(&f, &r, 0, &rejects);
        assert!(
            msg.starts_with("No host can take instance 1 of 1 (2 vCPU, 4096 MB)"),
            "{msg}"
        );
        assert!(
            msg.contains("2 hosts: not enough memory; 1 host: not enough CPU; 1 host: offline"),
            "{msg}"
        );
        assert!(
            msg.contains("host h4: offline (host_status offline)"),
            "{msg}"
        );
    }
}
