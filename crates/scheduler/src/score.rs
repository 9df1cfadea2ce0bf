//! The priorities (Cloudpods' scores). Hosts are ranked first by their
//! schedtag bucket (preferred tags minus avoided tags), then by the
//! weighted sum of the normal priorities, each worth 0–1000, then by host
//! id (lowest first) so the same state always gives the same answer.

use std::cmp::Reverse;

use crate::filters::Credit;
use crate::fleet::{Dyn, Fleet, Host, HostDyn};
use crate::options::{Policy, Weights};
use crate::request::{Request, Strategy};

/// Ordering key: larger is better.
pub type Key = (i32, i64, Reverse<u32>);

/// +1 per preferred tag the host carries, −1 per avoided one.
pub fn tag_bucket(req: &Request, host: &Host) -> i32 {
    let mut b = 0;
    for &(t, s) in &req.tags {
        let has = host.tags.binary_search(&t).is_ok();
        match s {
            Strategy::Prefer if has => b += 1,
            Strategy::Avoid if has => b -= 1,
            _ => {}
        }
    }
    b
}

fn frac(used: f64, total: f64) -> f64 {
    if total <= 0.0 {
        1.0
    } else {
        (used / total).clamp(0.0, 1.0)
    }
}

/// Commitment of the host's CPU and memory, the higher of the two, before
/// this instance (0.0 – 1.0).
pub fn utilisation(hd: &HostDyn, credit: Credit) -> f64 {
    let cpu = frac((hd.cpu_used + hd.res_cpu - credit.cpu) as f64, hd.cpu_total);
    let mem = frac((hd.mem_used + hd.res_mem - credit.mem) as f64, hd.mem_total);
    cpu.max(mem)
}

/// Storage commitment over the storages that could take the request's
/// first disk (disk-only requests).
pub fn storage_utilisation(fleet: &Fleet, dy: &Dyn, req: &Request, h: u32) -> f64 {
    let Some(d) = req.disks.first() else {
        return 0.0;
    };
    let (mut used, mut total) = (0.0, 0.0);
    for &s in &fleet.hosts[h as usize].storages {
        if d.ok[s as usize] {
            let sd = &dy.storages[s as usize];
            used += (sd.used + sd.res) as f64;
            total += sd.total;
        }
    }
    frac(used, total)
}

/// Low load: spread favours the least committed host, pack the most.
pub fn load(util: f64, policy: Policy) -> i64 {
    let u = (util * 1000.0).round() as i64;
    match policy {
        Policy::Spread => 1000 - u,
        Policy::Pack => u,
    }
}

/// How many more instances of this size the host holds (CPU and memory).
pub fn fits(hd: &HostDyn, req: &Request, credit: Credit) -> i64 {
    let mut n = i64::MAX;
    if req.cpu > 0 {
        n = n.min(((hd.cpu_free() + credit.cpu as f64) / req.cpu as f64).floor() as i64);
    }
    if req.mem > 0 {
        n = n.min(((hd.mem_free() + credit.mem as f64) / req.mem as f64).floor() as i64);
    }
    if n == i64::MAX {
        1000
    } else {
        n.clamp(0, 1000)
    }
}

/// Capacity: spread favours hosts with room for many more, pack hosts with
/// room for few (so the big holes stay whole).
pub fn capacity(fits: i64, policy: Policy) -> i64 {
    let f = fits.max(0);
    match policy {
        Policy::Spread => 1000 * f / (f + 4),
        Policy::Pack => 4000 / (f + 4),
    }
}

/// Creations in flight on the host (being created in the database, or
/// placed and not yet written): each one halves the score.
pub fn creating(in_flight: u32) -> i64 {
    1000 / (1 + in_flight as i64)
}

pub struct Scorer {
    pub policy: Policy,
    pub weights: Weights,
}

impl Scorer {
    pub fn key(
        &self,
        fleet: &Fleet,
        dy: &Dyn,
        req: &Request,
        h: u32,
        bucket: i32,
        credit: Credit,
    ) -> Key {
        let hd = &dy.hosts[h as usize];
        let w = self.weights;
        let normal = if req.is_guest() {
            w.load * load(utilisation(hd, credit), self.policy)
                + w.capacity * capacity(fits(hd, req, credit), self.policy)
                + w.creating * creating(hd.in_flight())
        } else {
            (w.load + w.capacity) * load(storage_utilisation(fleet, dy, req, h), self.policy)
        };
        (bucket, normal, Reverse(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    #[test]
    fn tag_buckets() {
        let (f, _) = fleet();
        let mut i = input(1, 512);
        i.schedtags = vec![tag("ssd", "prefer"), tag("slow", "avoid")];
        let r = req(&f, &i);
        assert_eq!(tag_bucket(&r, &f.hosts[h(&f, "h1") as usize]), 1);
        assert_eq!(tag_bucket(&r, &f.hosts[h(&f, "h2") as usize]), 0);
        assert_eq!(tag_bucket(&r, &f.hosts[h(&f, "h3") as usize]), -1);
    }

    #[test]
    fn load_spread_and_pack() {
        assert_eq!(load(0.25, Policy::Spread), 750);
        assert_eq!(load(0.25, Policy::Pack), 250);
        assert!(load(0.1, Policy::Spread) > load(0.9, Policy::Spread));
        assert!(load(0.9, Policy::Pack) > load(0.1, Policy::Pack));
    }

    #[test]
    fn utilisation_takes_the_tighter_resource() {
        let (f, mut d) = fleet();
        let hd = &mut d.hosts[h(&f, "h1") as usize];
        hd.cpu_used = 2; // of 8
        hd.mem_used = 12288; // of 16384
        assert_eq!(utilisation(hd, Credit::default()), 0.75);
        assert_eq!(utilisation(hd, Credit { cpu: 0, mem: 4096 }), 0.5);
    }

    #[test]
    fn capacity_counts_instances() {
        let (f, d) = fleet();
        let r = req(&f, &input(2, 4096));
        // h1: 8 CPU / 16 GB → 4 instances; h2: 4 CPU / 8 GB → 2.
        assert_eq!(
            fits(&d.hosts[h(&f, "h1") as usize], &r, Credit::default()),
            4
        );
        assert_eq!(
            fits(&d.hosts[h(&f, "h2") as usize], &r, Credit::default()),
            2
        );
        assert!(capacity(4, Policy::Spread) > capacity(2, Policy::Spread));
        assert!(capacity(2, Policy::Pack) > capacity(4, Policy::Pack));
    }

    #[test]
    fn creating_penalises_in_flight() {
        assert_eq!(creating(0), 1000);
        assert_eq!(creating(1), 500);
        assert!(creating(3) < creating(2));
    }

    #[test]
    fn ties_break_on_host_id() {
        let (f, d) = fleet();
        let r = req(&f, &input(1, 512));
        let s = Scorer {
            policy: Policy::Spread,
            weights: crate::options::Weights::default_for(Policy::Spread),
        };
        // h3 and h4 have the same shape: the lower id ranks higher.
        let k3 = s.key(&f, &d, &r, h(&f, "h3"), 0, Credit::default());
        let k4 = s.key(&f, &d, &r, h(&f, "h4"), 0, Credit::default());
        assert_eq!((k3.0, k3.1), (k4.0, k4.1));
        assert!(k3 > k4);
        // The bucket outranks everything else.
        let k2 = s.key(&f, &d, &r, h(&f, "h2"), 1, Credit::default());
        assert!(k2 > k3);
    }
}
