//! Placement: filter once, score once, then take the best host per
//! instance from a heap, re-checking only the host just used (and any
//! host whose shared storage or network another placement drained).

use std::collections::BinaryHeap;

use crate::filters::{self, Credit, Reject};
use crate::fleet::{Dyn, Fleet};
use crate::request::Request;
use crate::score::{self, Key, Scorer};

/// One placed instance: where it goes and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub host: u32,
    /// CPU / memory held (less than asked when a re-placed guest's own
    /// usage is already counted on the host).
    pub cpu: i64,
    pub mem: i64,
    /// Counts as a creation in flight.
    pub counted: bool,
    /// (storage, MB) per disk.
    pub disks: Vec<(u32, i64)>,
    /// (network, requested address) per NIC.
    pub nets: Vec<(u32, Option<u32>)>,
}

/// Add (`sign` 1) or remove (−1) a placement's holdings.
pub fn apply(dy: &mut Dyn, p: &Placement, sign: i64) {
    let hd = &mut dy.hosts[p.host as usize];
    hd.res_cpu += sign * p.cpu;
    hd.res_mem += sign * p.mem;
    if p.counted {
        hd.res_count = (hd.res_count as i64 + sign).max(0) as u32;
    }
    for &(s, mb) in &p.disks {
        dy.storages[s as usize].res += sign * mb;
    }
    for &(n, addr) in &p.nets {
        let nd = &mut dy.nets[n as usize];
        match addr {
            None => nd.res = (nd.res as i64 + sign).max(0) as u32,
            Some(a) => {
                let e = nd.res_addrs.entry(a).or_insert(0);
                *e = (*e as i64 + sign).max(0) as u32;
                if *e == 0 {
                    nd.res_addrs.remove(&a);
                }
            }
        }
    }
}

/// Hosts passing the static filters (with their tag bucket), and why the
/// others do not.
/// Hosts that passed (with their schedtag bucket).
pub type Passing = Vec<(u32, i32)>;
/// Rejected hosts and why.
pub type Rejects = Vec<(u32, Reject)>;

pub fn static_pass(fleet: &Fleet, req: &Request) -> (Passing, Rejects) {
    let mut pass = Vec::new();
    let mut rejects = Vec::new();
    let mut check = |h: u32| match filters::static_check(fleet, req, h) {
        None => pass.push((h, score::tag_bucket(req, &fleet.hosts[h as usize]))),
        Some(r) => rejects.push((h, r)),
    };
    match req.host {
        Some(h) => check(h),
        None => (0..fleet.hosts.len() as u32).for_each(&mut check),
    }
    (pass, rejects)
}

/// What a placement run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Applied to the cache already.
    pub placements: Vec<Placement>,
    /// Hosts refused by the live filters (status, capacity).
    pub rejects: Vec<(u32, Reject)>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: Key,
    h: u32,
}

/// Credits of the guests being re-placed, per host.
pub fn credit_of(credits: &[(u32, Credit)], h: u32) -> Credit {
    credits
        .iter()
        .filter(|c| c.0 == h)
        .fold(Credit::default(), |a, c| Credit {
            cpu: a.cpu + c.1.cpu,
            mem: a.mem + c.1.mem,
        })
}

/// Place up to `req.count` instances on the statically passing hosts,
/// holding each placement in `dy` as it is made.
pub fn place(
    fleet: &Fleet,
    dy: &mut Dyn,
    req: &Request,
    pass: &[(u32, i32)],
    scorer: &Scorer,
    mut credits: Vec<(u32, Credit)>,
) -> Outcome {
    let mut out = Outcome::default();
    let single = req.count == 1;
    let mut best: Option<Entry> = None;
    let mut entries = Vec::with_capacity(if single { 0 } else { pass.len() });
    for &(h, bucket) in pass {
        if let Some(r) = filters::status(&dy.hosts[h as usize]) {
            out.rejects.push((h, r));
            continue;
        }
        let credit = credit_of(&credits, h);
        if filters::fit_into(fleet, dy, req, h, credit, &mut out.rejects).is_none() {
            continue;
        }
        let e = Entry {
            key: scorer.key(fleet, dy, req, h, bucket, credit),
            h,
        };
        if single {
            if best.as_ref().is_none_or(|b| e > *b) {
                best = Some(e);
            }
        } else {
            entries.push(e);
        }
    }
    let mut heap = if single {
        BinaryHeap::from_iter(best)
    } else {
        BinaryHeap::from(entries)
    };
    while out.placements.len() < req.count as usize {
        let Some(top) = heap.pop() else { break };
        let h = top.h;
        let credit = credit_of(&credits, h);
        // Another placement may have drained a storage or network this
        // host shares, or changed its rank: check again before using it.
        let Some(assign) = filters::fit_into(fleet, dy, req, h, credit, &mut out.rejects) else {
            continue;
        };
        let key = scorer.key(fleet, dy, req, h, top.key.0, credit);
        if key != top.key && heap.peek().is_some_and(|next| next.key > key) {
            heap.push(Entry { key, h });
            continue;
        }
        let p = Placement {
            host: h,
            cpu: (req.cpu - credit.cpu).max(0),
            mem: (req.mem - credit.mem).max(0),
            counted: req.is_guest(),
            disks: req
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| (assign.disks[i], d.size))
                .collect(),
            nets: req
                .nics
                .iter()
                .enumerate()
                .map(|(i, n)| (assign.nets[i], n.addr))
                .collect(),
        };
        apply(dy, &p, 1);
        out.placements.push(p);
        // The guest's old usage is replaced once.
        credits.retain(|c| c.0 != h);
        if out.placements.len() < req.count as usize {
            let credit = Credit::default();
            if filters::fit_into(fleet, dy, req, h, credit, &mut out.rejects).is_some() {
                heap.push(Entry {
                    key: scorer.key(fleet, dy, req, h, top.key.0, credit),
                    h,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Policy, Weights};
    use crate::testkit::*;

    fn scorer(p: Policy) -> Scorer {
        Scorer {
            policy: p,
            weights: Weights::default_for(p),
        }
    }

    fn run(f: &Fleet, d: &mut Dyn, r: &Request, p: Policy) -> Outcome {
        let (pass, _) = static_pass(f, r);
        place(f, d, r, &pass, &scorer(p), Vec::new())
    }

    fn hosts(f: &Fleet, o: &Outcome) -> Vec<String> {
        o.placements
            .iter()
            .map(|p| f.hosts[p.host as usize].id.clone())
            .collect()
    }

    #[test]
    fn spread_alternates_pack_fills() {
        let (f, mut d) = fleet();
        let mut i = input(1, 1024);
        i.prefer_zone = "z1".into();
        i.count = 4;
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        let got = hosts(&f, &o);
        assert_eq!(got.len(), 4);
        assert!(
            got.contains(&"h1".to_string()) && got.contains(&"h2".to_string()),
            "{got:?}"
        );
        let (f, mut d) = fleet();
        let o = run(&f, &mut d, &r, Policy::Pack);
        let got = hosts(&f, &o);
        assert!(
            got.iter().all(|h| h == &got[0]),
            "pack keeps one host: {got:?}"
        );
    }

    #[test]
    fn batch_never_exceeds_capacity() {
        let (f, mut d) = fleet();
        let mut i = input(2, 2048);
        i.prefer_zone = "z1".into();
        i.count = 7; // h1 holds 4, h2 holds 2
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_eq!(o.placements.len(), 6);
        for hd in &d.hosts {
            assert!(hd.cpu_free() >= 0.0 && hd.mem_free() >= 0.0);
        }
        assert!(
            o.rejects
                .iter()
                .any(|(_, r)| matches!(r, Reject::Cpu { .. }))
        );
    }

    #[test]
    fn shared_storage_is_rechecked() {
        // h3 and h4 share s3; with h4 online both compete for it.
        let mut s = snapshot();
        s.hosts[3].host_status = "online".into();
        s.storages[2].capacity = 3000;
        let (f, mut d) = crate::fleet::build(&s, 1);
        let mut i = input(1, 512);
        i.prefer_zone = "z2".into();
        i.disks = vec![disk(1000, "rbd", "")];
        i.count = 5;
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_eq!(o.placements.len(), 3);
        assert_eq!(d.storages[2].free(), 0.0);
    }

    #[test]
    fn prefer_bucket_wins_over_load() {
        let (f, mut d) = fleet();
        let mut i = input(1, 512);
        i.schedtags = vec![tag("slow", "prefer")];
        let r = req(&f, &i);
        // h1 is idle and bigger, but h3 carries the preferred tag.
        d.hosts[h(&f, "h3") as usize].cpu_used = 12;
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_eq!(hosts(&f, &o), vec!["h3"]);
        i.schedtags = vec![tag("slow", "avoid")];
        let r = req(&f, &i);
        let (f, mut d) = fleet();
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_ne!(hosts(&f, &o), vec!["h3"]);
    }

    #[test]
    fn in_flight_creations_spread_a_batch() {
        let (f, mut d) = fleet();
        // Make h1 and h3 look alike except for creations in flight.
        d.hosts[h(&f, "h3") as usize].creating = 5;
        let mut i = input(1, 512);
        i.prefer_region = "r2".into();
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_eq!(hosts(&f, &o), vec!["h3"], "only h3 is online in r2");
        let (f, mut d) = fleet();
        let hd3 = h(&f, "h3") as usize;
        let base = scorer(Policy::Spread).key(&f, &d, &r, hd3 as u32, 0, Credit::default());
        d.hosts[hd3].creating = 3;
        let busy = scorer(Policy::Spread).key(&f, &d, &r, hd3 as u32, 0, Credit::default());
        assert!(busy < base);
    }

    #[test]
    fn explicit_host_only() {
        let (f, mut d) = fleet();
        let mut i = input(1, 512);
        i.prefer_host = "h2".into();
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_eq!(hosts(&f, &o), vec!["h2"]);
        let mut i = input(1, 512);
        i.prefer_host = "h4".into();
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert!(o.placements.is_empty());
        assert!(matches!(o.rejects[0].1, Reject::Offline(_)));
    }

    #[test]
    fn apply_and_undo_are_symmetric() {
        let (f, mut d) = fleet();
        let mut i = input(2, 2048);
        i.disks = vec![disk(100, "", "")];
        i.nets = vec![net("")];
        i.count = 3;
        let r = req(&f, &i);
        let o = run(&f, &mut d, &r, Policy::Spread);
        assert_eq!(o.placements.len(), 3);
        for p in &o.placements {
            apply(&mut d, p, -1);
        }
        for hd in &d.hosts {
            assert_eq!((hd.res_cpu, hd.res_mem, hd.res_count), (0, 0, 0));
        }
        assert!(d.storages.iter().all(|s| s.res == 0));
        assert!(d.nets.iter().all(|n| n.res == 0 && n.res_addrs.is_empty()));
    }
}
