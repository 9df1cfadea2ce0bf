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
pub fn static_pass(fleet: &Fleet, req: &Request) -> (Vec<(u32, i32)>, Vec<(u32, Reject)>) {
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
    let mut entries = Vec::with_capacity(pass.len());
    for &(h, bucket) in pass {
        if let Some(r) = filters::status(&dy.hosts[h as usize]) {
            out.rejects.push((h, r));
            continue;
        }
        let credit = credit_of(&credits, h);
        match filters::fit(fleet, dy, req, h, credit) {
            Ok(_) => entries.push(Entry {
                key: scorer.key(fleet, dy, req, h, bucket, credit),
                h,
            }),
            Err(rs) => out.rejects.extend(rs.into_iter().map(|r| (h, r))),
        }
    }
    let mut heap = BinaryHeap::from(entries);
    while out.placements.len() < req.count as usize {
        let Some(top) = heap.pop() else { break };
        let h = top.h;
        let credit = credit_of(&credits, h);
        // Another placement may have drained a storage or network this
        // host shares, or changed its rank: check again before using it.
        let assign = match filters::fit(fleet, dy, req, h, credit) {
            Ok(a) => a,
            Err(rs) => {
                out.rejects.extend(rs.into_iter().map(|r| (h, r)));
                continue;
            }
        };
        let key = scorer.key(fleet, dy, req, h, top.key.0, credit);
        if key != top.key
            && heap.peek().is_some_and(|next| next.key > key)
        {
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
            match filters::fit(fleet, dy, req, h, credit) {
                Ok(_) => heap.push(Entry {
                    key: scorer.key(fleet, dy, req, h, top.key.0, credit),
                    h,
                }),
                Err(rs) => out.rejects.extend(rs.into_iter().map(|r| (h, r))),
            }
        }
    }
    out
}
