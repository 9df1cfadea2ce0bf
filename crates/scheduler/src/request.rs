//! A [`ScheduleInput`] checked and resolved against the cache: names become
//! indices, legacy strings are parsed, schedtag defaults applied, and every
//! contradiction is refused before any host is looked at.

use std::sync::Arc;

use cloudpods_apis::scheduler::ScheduleInput;

use crate::fleet::{Fleet, Network};
use crate::options::SchedulerOptions;

/// Most disks / NICs one instance may ask for (fixed-size scratch space on
/// the placement path).
pub const MAX_DISKS: usize = 16;
pub const MAX_NICS: usize = 8;
const MAX_VCPU: i64 = 1 << 16;
const MAX_MEM_MB: i64 = 1 << 40;
const MAX_DISK_MB: i64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strategy {
    Require,
    Exclude,
    Prefer,
    Avoid,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "require" | "required" => Some(Strategy::Require),
            "exclude" | "excluded" => Some(Strategy::Exclude),
            "prefer" | "preferred" => Some(Strategy::Prefer),
            "avoid" => Some(Strategy::Avoid),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Require => "require",
            Strategy::Exclude => "exclude",
            Strategy::Prefer => "prefer",
            Strategy::Avoid => "avoid",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DiskReq {
    /// MB.
    pub size: i64,
    pub backend: String,
    pub medium: String,
    pub storage: Option<u32>,
    /// Per storage of the fleet: type, medium and explicit id match.
    pub ok: Arc<[bool]>,
}

#[derive(Debug, Clone)]
pub struct NicReq {
    pub network: Option<u32>,
    pub wire: Option<u32>,
    pub addr: Option<u32>,
    /// Per wire of the fleet: the networks this NIC may use on it.
    pub by_wire: Arc<[Vec<u32>]>,
    /// Some wire has a candidate network.
    pub any: bool,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub session: String,
    pub count: u32,
    pub cpu: i64,
    /// MB.
    pub mem: i64,
    pub disks: Vec<DiskReq>,
    pub nics: Vec<NicReq>,
    pub hypervisor: String,
    pub host: Option<u32>,
    pub zone: Option<u32>,
    pub region: Option<u32>,
    pub wire: Option<u32>,
    /// Sorted.
    pub exclude: Vec<u32>,
    /// Effective strategies: the request's, then tag defaults.
    pub tags: Vec<(u32, Strategy)>,
    pub project: String,
    pub domain: String,
    pub sku: Option<u32>,
    pub isolated_devices: usize,
    pub guest_ids: Vec<String>,
    pub image_id: String,
}

impl Request {
    /// A VM placement (as opposed to disks only).
    pub fn is_guest(&self) -> bool {
        self.cpu > 0 || self.mem > 0
    }

    pub fn requires(&self, s: Strategy) -> impl Iterator<Item = u32> + '_ {
        self.tags.iter().filter(move |t| t.1 == s).map(|t| t.0)
    }

    /// "4 vCPUs, 8192 MB, disks 30720+10240 MB, 1 NIC".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.is_guest() {
            parts.push(format!("{} vCPU, {} MB", self.cpu, self.mem));
        }
        if !self.disks.is_empty() {
            parts.push(format!(
                "disk{} {} MB",
                if self.disks.len() > 1 { "s" } else { "" },
                self.disks
                    .iter()
                    .map(|d| d.size.to_string())
                    .collect::<Vec<_>>()
                    .join("+")
            ));
        }
        if !self.nics.is_empty() {
            parts.push(format!(
                "{} NIC{}",
                self.nics.len(),
                if self.nics.len() > 1 { "s" } else { "" }
            ));
        }
        parts.join(", ")
    }
}

fn parse_ip(s: &str) -> Option<u32> {
    s.trim().parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

pub fn hypervisor_of(input: &str) -> String {
    match input.trim().to_ascii_lowercase().as_str() {
        "" | "kvm" | "hypervisor" => "kvm".into(),
        other => other.to_string(),
    }
}

/// Host types that run guests of `hypervisor`.
pub fn host_type_runs(hypervisor: &str, host_type: &str) -> bool {
    match hypervisor {
        "kvm" => matches!(host_type, "hypervisor" | "kvm" | ""),
        "pod" | "container" => matches!(host_type, "container" | "hypervisor" | "kvm"),
        other => host_type == other,
    }
}

/// Networks a NIC without an explicit network may land on (what the
/// region's IPAM picks from: auto-allocated guest networks the project may
/// use).
fn auto_candidate(n: &Network, project: &str, domain: &str) -> bool {
    n.server_type == "guest" && n.is_auto_alloc && n.usable() && n.visible_to(project, domain)
}

/// Check and resolve `input`; every problem found is listed.
pub fn resolve(
    fleet: &Fleet,
    input: &ScheduleInput,
    opts: &SchedulerOptions,
) -> Result<Request, Vec<String>> {
    let mut errs = Vec::new();
    let mut req = match resolve_static(fleet, input) {
        Ok(r) => Some(r),
        Err(e) => {
            errs = e;
            None
        }
    };
    errs.extend(apply_numbers(fleet, input, opts, req.as_mut()));
    match req {
        Some(r) if errs.is_empty() => Ok(r),
        _ => Err(errs),
    }
}

/// What the static part of a request depends on: requests with the same
/// key share [`resolve_static`] and the static filter pass.
pub fn static_key(input: &ScheduleInput) -> String {
    serde_json::json!([
        input.hypervisor,
        input.prefer_host,
        input.prefer_zone,
        input.prefer_region,
        input.prefer_wire,
        input.exclude_hosts,
        input.schedtags,
        input.project,
        input.project_domain,
        input.sku,
        input.isolated_devices.len(),
        input.image_id,
        input
            .disks
            .iter()
            .map(|d| [&d.backend, &d.medium, &d.storage_id])
            .collect::<Vec<_>>(),
        input
            .nets
            .iter()
            .map(|n| [&n.network, &n.wire, &n.address])
            .collect::<Vec<_>>(),
    ])
    .to_string()
}

/// The numbers of a request (count, CPU, memory, SKU sizes, disk sizes),
/// checked and written into `req` (when the static part resolved).
pub fn apply_numbers(
    fleet: &Fleet,
    input: &ScheduleInput,
    opts: &SchedulerOptions,
    req: Option<&mut Request>,
) -> Vec<String> {
    let mut errs: Vec<String> = Vec::new();
    if input.count < 0 {
        errs.push(format!("count must not be negative, got {}", input.count));
    } else if input.count > opts.max_count {
        errs.push(format!(
            "count {} is beyond the limit of {} instances per request",
            input.count, opts.max_count
        ));
    }
    let count = input.count.clamp(1, opts.max_count.max(1)) as u32;
    if input.vcpu_count < 0 {
        errs.push(format!(
            "vcpu_count must not be negative, got {}",
            input.vcpu_count
        ));
    }
    if input.vmem_size < 0 {
        errs.push(format!(
            "vmem_size must not be negative, got {} MB",
            input.vmem_size
        ));
    }
    let mut cpu = input.vcpu_count.max(0);
    let mut mem = input.vmem_size.max(0);
    if let Some(k) = (!input.sku.is_empty())
        .then(|| fleet.sku_ix.find(&input.sku))
        .flatten()
    {
        let s = &fleet.skus[k as usize];
        if !s.enabled || !(s.status.is_empty() || s.status == "ready") {
            errs.push(format!(
                "server sku {} is not available (status {}, {})",
                s.name,
                s.status,
                if s.enabled { "enabled" } else { "disabled" }
            ));
        }
        if cpu == 0 {
            cpu = s.cpu;
        } else if cpu != s.cpu {
            errs.push(format!(
                "vcpu_count {cpu} contradicts server sku {} ({} vCPUs)",
                s.name, s.cpu
            ));
        }
        if mem == 0 {
            mem = s.mem;
        } else if mem != s.mem {
            errs.push(format!(
                "vmem_size {mem} MB contradicts server sku {} ({} MB)",
                s.name, s.mem
            ));
        }
    }
    if cpu > MAX_VCPU {
        errs.push(format!("vcpu_count {cpu} is too large"));
    }
    if mem > MAX_MEM_MB {
        errs.push(format!("vmem_size {mem} MB is too large"));
    }
    if cpu > 0 && mem == 0 && input.vmem_size >= 0 {
        errs.push("vmem_size must be at least 1 MB for a server".into());
    }
    if mem > 0 && cpu == 0 && input.vcpu_count >= 0 {
        errs.push("vcpu_count must be at least 1 for a server".into());
    }
    if cpu == 0 && mem == 0 && input.disks.is_empty() && errs.is_empty() {
        errs.push("nothing to place: give vcpu_count and vmem_size, or disks".into());
    }
    for (i, d) in input.disks.iter().enumerate().take(MAX_DISKS) {
        if d.size <= 0 {
            errs.push(format!(
                "disk {i}: size must be positive, got {} MB",
                d.size
            ));
        } else if d.size > MAX_DISK_MB {
            errs.push(format!("disk {i}: size {} MB is too large", d.size));
        }
    }
    if count > 1 {
        for (i, n) in input.nets.iter().enumerate().take(MAX_NICS) {
            if !n.address.trim().is_empty() {
                errs.push(format!(
                    "nic {i}: address {} can go to one instance only, count is {count}",
                    n.address
                ));
            }
        }
    }
    if let Some(req) = req {
        req.session = input.session_id.clone();
        req.count = count;
        req.cpu = cpu;
        req.mem = mem;
        req.guest_ids = input.guest_ids.clone();
        for (d, i) in req.disks.iter_mut().zip(&input.disks) {
            d.size = i.size.max(0);
        }
    }
    errs
}

/// Everything but the numbers: names resolved, storages and networks each
/// disk and NIC may use, effective schedtags.
pub fn resolve_static(fleet: &Fleet, input: &ScheduleInput) -> Result<Request, Vec<String>> {
    let mut errs: Vec<String> = Vec::new();
    let sku = if input.sku.is_empty() {
        None
    } else {
        let k = fleet.sku_ix.find(&input.sku);
        if k.is_none() {
            errs.push(format!("server sku {} not found", input.sku));
        }
        k
    };
    let disks = resolve_disks(fleet, input, &mut errs);

    // Placement preferences.
    let host = find("host", &input.prefer_host, &fleet.host_ix, &mut errs);
    let zone = find("zone", &input.prefer_zone, &fleet.zone_ix, &mut errs);
    let region = find(
        "cloud region",
        &input.prefer_region,
        &fleet.region_ix,
        &mut errs,
    );
    let wire = find("wire", &input.prefer_wire, &fleet.wire_ix, &mut errs);
    if let Some(h) = host
        && input.exclude_hosts.iter().any(|x| {
            let hh = &fleet.hosts[h as usize];
            *x == hh.id || *x == hh.name
        })
    {
        errs.push(format!(
            "host {} is both requested and excluded",
            input.prefer_host
        ));
    }
    let mut exclude: Vec<u32> = input
        .exclude_hosts
        .iter()
        .filter_map(|x| fleet.host_ix.find(x))
        .collect();
    exclude.sort_unstable();
    exclude.dedup();

    let nics = resolve_nics(fleet, input, wire, &mut errs);
    let tags = resolve_tags(fleet, input, &mut errs);

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Request {
        session: String::new(),
        count: 1,
        cpu: 0,
        mem: 0,
        disks,
        nics,
        hypervisor: hypervisor_of(&input.hypervisor),
        host,
        zone,
        region,
        wire,
        exclude,
        tags,
        project: input.project.clone(),
        domain: input.project_domain.clone(),
        sku,
        isolated_devices: input.isolated_devices.len(),
        guest_ids: Vec::new(),
        image_id: input.image_id.clone(),
    })
}

/// `key` looked up in `ix` (None when not asked); a miss is an error.
fn find(what: &str, key: &str, ix: &crate::fleet::Index, errs: &mut Vec<String>) -> Option<u32> {
    if key.is_empty() {
        return None;
    }
    let r = ix.find(key);
    if r.is_none() {
        errs.push(format!("{what} {key} not found"));
    }
    r
}

/// Each disk's size checks and the storages it may use.
fn resolve_disks(fleet: &Fleet, input: &ScheduleInput, errs: &mut Vec<String>) -> Vec<DiskReq> {
    if input.disks.len() > MAX_DISKS {
        errs.push(format!(
            "at most {MAX_DISKS} disks per instance, got {}",
            input.disks.len()
        ));
    }
    let mut disks = Vec::with_capacity(input.disks.len());
    for (i, d) in input.disks.iter().enumerate().take(MAX_DISKS) {
        if d.size <= 0 {
            errs.push(format!(
                "disk {i}: size must be positive, got {} MB",
                d.size
            ));
        } else if d.size > MAX_DISK_MB {
            errs.push(format!("disk {i}: size {} MB is too large", d.size));
        }
        let storage = if d.storage_id.is_empty() {
            None
        } else {
            match fleet.storage_ix.find(&d.storage_id) {
                Some(s) => Some(s),
                None => {
                    errs.push(format!("disk {i}: storage {} not found", d.storage_id));
                    None
                }
            }
        };
        let backend = d.backend.trim().to_string();
        let medium = d.medium.trim().to_string();
        let ok: Arc<[bool]> = fleet
            .storages
            .iter()
            .enumerate()
            .map(|(si, st)| {
                storage.is_none_or(|s| s as usize == si)
                    && (backend.is_empty() || st.storage_type == backend)
                    && (medium.is_empty() || st.medium_type == medium)
            })
            .collect();
        if let Some(s) = storage {
            let st = &fleet.storages[s as usize];
            if !backend.is_empty() && st.storage_type != backend {
                errs.push(format!(
                    "disk {i}: storage {} is {}, not {backend}",
                    st.name, st.storage_type
                ));
            }
            if !medium.is_empty() && st.medium_type != medium {
                errs.push(format!(
                    "disk {i}: storage {} is {}, not {medium}",
                    st.name, st.medium_type
                ));
            }
        }
        disks.push(DiskReq {
            size: 0,
            backend,
            medium,
            storage,
            ok,
        });
    }

    disks
}

/// Each NIC's network, wire and address, and the networks it may use per
/// wire (`wire` is the instance's preferred wire).
fn resolve_nics(
    fleet: &Fleet,
    input: &ScheduleInput,
    wire: Option<u32>,
    errs: &mut Vec<String>,
) -> Vec<NicReq> {
    if input.nets.len() > MAX_NICS {
        errs.push(format!(
            "at most {MAX_NICS} NICs per instance, got {}",
            input.nets.len()
        ));
    }
    let mut nics = Vec::with_capacity(input.nets.len());
    let mut addrs_seen: Vec<u32> = Vec::new();
    for (i, n) in input.nets.iter().enumerate().take(MAX_NICS) {
        let network = find(
            &format!("nic {i}: network"),
            &n.network,
            &fleet.network_ix,
            errs,
        );
        let nic_wire = find(&format!("nic {i}: wire"), &n.wire, &fleet.wire_ix, errs);
        let addr = if n.address.trim().is_empty() {
            None
        } else {
            match parse_ip(&n.address) {
                Some(a) => {
                    if addrs_seen.contains(&a) {
                        errs.push(format!("nic {i}: address {} is asked twice", n.address));
                    }
                    addrs_seen.push(a);
                    Some(a)
                }
                None => {
                    errs.push(format!(
                        "nic {i}: address {:?} is not an IPv4 address",
                        n.address
                    ));
                    None
                }
            }
        };
        if let Some(nw) = network {
            let net = &fleet.networks[nw as usize];
            if let Some(w) = nic_wire
                && net.wire != Some(w)
            {
                errs.push(format!(
                    "nic {i}: network {} is not on wire {}",
                    net.name, fleet.wires[w as usize].name
                ));
            }
            if let Some(a) = addr
                && !net.contains(a)
            {
                errs.push(format!(
                    "nic {i}: address {} is outside network {} ({} - {})",
                    n.address,
                    net.name,
                    std::net::Ipv4Addr::from(net.start),
                    std::net::Ipv4Addr::from(net.end)
                ));
            }
            if !net.usable() {
                errs.push(format!(
                    "nic {i}: network {} is not available (status {})",
                    net.name, net.status
                ));
            }
        }
        let mut by_wire: Vec<Vec<u32>> = vec![Vec::new(); fleet.wires.len()];
        let mut any = false;
        let mut add = |ni: u32, by_wire: &mut Vec<Vec<u32>>| {
            if let Some(w) = fleet.networks[ni as usize].wire {
                by_wire[w as usize].push(ni);
                any = true;
            }
        };
        match network {
            Some(nw) => add(nw, &mut by_wire),
            None => {
                for (ni, net) in fleet.networks.iter().enumerate() {
                    let on_wire = |w: Option<u32>| w.is_none_or(|w| net.wire == Some(w));
                    if on_wire(nic_wire)
                        && on_wire(wire)
                        && addr.is_none_or(|a| net.contains(a))
                        && (if addr.is_some() {
                            net.usable() && net.visible_to(&input.project, &input.project_domain)
                        } else {
                            auto_candidate(net, &input.project, &input.project_domain)
                        })
                    {
                        add(ni as u32, &mut by_wire);
                    }
                }
                if addr.is_some() && !any {
                    errs.push(format!(
                        "nic {i}: no network the project may use contains address {}",
                        n.address
                    ));
                }
            }
        }
        nics.push(NicReq {
            network,
            wire: nic_wire,
            addr,
            by_wire: by_wire.into(),
            any,
        });
    }

    nics
}

/// Schedtags: explicit ones, then the defaults of the others.
fn resolve_tags(
    fleet: &Fleet,
    input: &ScheduleInput,
    errs: &mut Vec<String>,
) -> Vec<(u32, Strategy)> {
    let mut tags: Vec<(u32, Strategy)> = Vec::new();
    for t in &input.schedtags {
        let Some(ti) = fleet.tag_ix.find(&t.id) else {
            errs.push(format!("schedtag {} not found", t.id));
            continue;
        };
        let tag = &fleet.tags[ti as usize];
        let strategy = if t.strategy.trim().is_empty() {
            Strategy::parse(&tag.default_strategy).unwrap_or(Strategy::Require)
        } else {
            match Strategy::parse(&t.strategy) {
                Some(s) => s,
                None => {
                    errs.push(format!(
                        "schedtag {}: strategy must be require, exclude, prefer or avoid, got {:?}",
                        tag.name, t.strategy
                    ));
                    continue;
                }
            }
        };
        match tags.iter().find(|(x, _)| *x == ti) {
            Some((_, s)) if *s != strategy => errs.push(format!(
                "schedtag {} is asked both as {} and as {}",
                tag.name,
                s.as_str(),
                strategy.as_str()
            )),
            Some(_) => {}
            None => tags.push((ti, strategy)),
        }
    }
    for (ti, tag) in fleet.tags.iter().enumerate() {
        let ti = ti as u32;
        if tags.iter().any(|(x, _)| *x == ti)
            || !(tag.resource_type.is_empty() || tag.resource_type == "hosts")
        {
            continue;
        }
        if let Some(s) = Strategy::parse(&tag.default_strategy) {
            tags.push((ti, s));
        }
    }

    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn errs(input: &ScheduleInput) -> String {
        let (f, _) = fleet();
        resolve(&f, input, &SchedulerOptions::default())
            .map(|_| String::new())
            .unwrap_or_else(|e| e.join("; "))
    }

    #[test]
    fn bad_resources() {
        assert!(errs(&input(-1, 512)).contains("vcpu_count must not be negative"));
        assert!(errs(&input(1, -5)).contains("vmem_size must not be negative"));
        assert!(errs(&input(0, 0)).contains("nothing to place"));
        assert!(errs(&input(0, 512)).contains("vcpu_count must be at least 1"));
        assert!(errs(&input(1, 0)).contains("vmem_size must be at least 1 MB"));
        let mut i = input(1, 512);
        i.disks = vec![disk(0, "", "")];
        assert!(errs(&i).contains("disk 0: size must be positive"));
        // Disks alone are fine (disk create).
        let mut i = input(0, 0);
        i.disks = vec![disk(10, "", "")];
        assert_eq!(errs(&i), "");
    }

    #[test]
    fn count_bounds() {
        let mut i = input(1, 512);
        i.count = -1;
        assert!(errs(&i).contains("count must not be negative"));
        i.count = 10_001;
        assert!(errs(&i).contains("beyond the limit"));
        i.count = 0;
        let (f, _) = fleet();
        assert_eq!(req(&f, &i).count, 1);
    }

    #[test]
    fn unknown_names() {
        let mut i = input(1, 512);
        i.prefer_host = "nope".into();
        i.prefer_zone = "nozone".into();
        i.nets = vec![net("nonet")];
        i.schedtags = vec![tag("notag", "require")];
        i.sku = "nosku".into();
        let e = errs(&i);
        for want in [
            "host nope not found",
            "zone nozone not found",
            "nic 0: network nonet not found",
            "schedtag notag not found",
            "server sku nosku not found",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }

    #[test]
    fn contradictions() {
        let mut i = input(1, 512);
        i.schedtags = vec![tag("ssd", "require"), tag("ssd", "exclude")];
        assert!(errs(&i).contains("schedtag ssd is asked both as require and as exclude"));
        i.schedtags = vec![tag("ssd", "sometimes")];
        assert!(errs(&i).contains("strategy must be"));
        let mut i = input(4, 512);
        i.sku = "small".into();
        assert!(errs(&i).contains("contradicts server sku small"));
        let mut i = input(1, 512);
        i.prefer_host = "h1".into();
        i.exclude_hosts = vec!["h1".into()];
        assert!(errs(&i).contains("both requested and excluded"));
    }

    #[test]
    fn addresses() {
        let mut i = input(1, 512);
        i.nets = vec![cloudpods_apis::scheduler::SchedNet {
            network: "n1".into(),
            address: "10.9.9.9".into(),
            ..Default::default()
        }];
        assert!(errs(&i).contains("outside network n1"));
        i.nets[0].address = "not-an-ip".into();
        assert!(errs(&i).contains("is not an IPv4 address"));
        i.nets[0].address = "10.0.0.12".into();
        i.count = 2;
        assert!(errs(&i).contains("can go to one instance only"));
        // Without a network, one that contains the address is found.
        let mut i = input(1, 512);
        i.nets = vec![cloudpods_apis::scheduler::SchedNet {
            address: "10.1.0.11".into(),
            ..Default::default()
        }];
        let (f, _) = fleet();
        let r = req(&f, &i);
        let w2 = f.wire_ix.id("w2").expect("w2") as usize;
        assert_eq!(r.nics[0].by_wire[w2].len(), 1);
    }

    #[test]
    fn legacy_schedtag_strings() {
        let body = serde_json::json!({"scheduler": {
            "vcpu_count": "2", "vmem_size": 1024,
            "schedtag.0": "ssd:require", "schedtag.1": "slow:avoid"
        }});
        let i = ScheduleInput::from_json(body).expect("parse");
        assert_eq!(i.schedtags.len(), 2);
        assert_eq!(i.schedtags[0].id, "ssd");
        assert_eq!(i.schedtags[1].strategy, "avoid");
        let (f, _) = fleet();
        let r = req(&f, &i);
        assert_eq!(r.tags.len(), 2);
        let i = ScheduleInput::from_json(
            serde_json::json!({"schedtags": ["ssd:prefer"], "vcpu_count": 1, "vmem_size": 1}),
        )
        .expect("parse");
        assert_eq!(i.schedtags[0].strategy, "prefer");
    }
}
