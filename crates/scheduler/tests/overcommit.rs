//! Property: whatever sequence of batch requests (with confirmations,
//! failures and forecasts in between) arrives, no host's CPU or memory and
//! no storage is committed beyond its bounds, and no network hands out more
//! addresses than it has.

use std::collections::HashMap;

use cloudpods_apis::scheduler::{SchedDisk, SchedNet, ScheduleInput};
use cloudpods_scheduler::snapshot::*;
use cloudpods_scheduler::{Policy, SchedulerOptions, SchedulerService};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Req {
    count: i64,
    cpu: i64,
    mem: i64,
    disks: Vec<(i64, bool)>,
    nic: bool,
    complete: bool,
    forecast: bool,
}

fn req() -> impl Strategy<Value = Req> {
    (
        1i64..12,
        1i64..5,
        prop::sample::select(vec![256i64, 512, 1024, 2048, 4096]),
        prop::collection::vec(
            (
                prop::sample::select(vec![512i64, 2048, 10240]),
                any::<bool>(),
            ),
            0..3,
        ),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(count, cpu, mem, disks, nic, complete, forecast)| Req {
            count,
            cpu,
            mem,
            disks,
            nic,
            complete,
            forecast,
        })
}

#[derive(Debug, Clone)]
struct HostP {
    cpu: i64,
    cpu_bound: f64,
    cpu_reserved: i64,
    mem: i64,
    mem_bound: f64,
    mem_reserved: i64,
    local: i64,
}

fn host() -> impl Strategy<Value = HostP> {
    (
        1i64..16,
        prop::sample::select(vec![1.0f64, 1.5, 2.0, 4.0]),
        0i64..2,
        prop::sample::select(vec![2048i64, 4096, 8192, 16384]),
        prop::sample::select(vec![1.0f64, 1.2]),
        prop::sample::select(vec![0i64, 512, 1024]),
        prop::sample::select(vec![4096i64, 20480, 51200]),
    )
        .prop_map(
            |(cpu, cpu_bound, cpu_reserved, mem, mem_bound, mem_reserved, local)| HostP {
                cpu,
                cpu_bound,
                cpu_reserved: cpu_reserved.min(cpu - 1),
                mem,
                mem_bound,
                mem_reserved,
                local,
            },
        )
}

fn fleet(hosts: &[HostP], shared_mb: i64) -> Snapshot {
    let mut s = Snapshot::default();
    s.wires.push(WireSpec {
        id: "w".into(),
        name: "w".into(),
        zone_id: String::new(),
    });
    // A small network so addresses run out too.
    s.networks
        .push(NetworkSpec::new("n", "w", 0x0a00_0001, 0x0a00_0001 + 20));
    let mut shared = StorageSpec::new("shared", shared_mb);
    shared.storage_type = "rbd".into();
    s.storages.push(shared);
    for (i, p) in hosts.iter().enumerate() {
        let id = format!("h{i}");
        let mut h = HostSpec::new(&id, p.cpu, p.mem);
        h.cpu_cmtbound = p.cpu_bound;
        h.cpu_reserved = p.cpu_reserved;
        h.mem_cmtbound = p.mem_bound;
        h.mem_reserved = p.mem_reserved;
        h.wires = vec!["w".into()];
        h.storages = vec![format!("{id}-local"), "shared".into()];
        s.storages
            .push(StorageSpec::new(&format!("{id}-local"), p.local));
        s.hosts.push(h);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batches_never_overcommit(
        hosts in prop::collection::vec(host(), 1..6),
        shared in prop::sample::select(vec![0i64, 8192, 40960]),
        reqs in prop::collection::vec(req(), 1..25),
        pack in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let opts = SchedulerOptions {
            policy: if pack { Policy::Pack } else { Policy::Spread },
            ..Default::default()
        };
        let snap = fleet(&hosts, shared);
        let sched = SchedulerService::from_snapshot(snap.clone(), opts);
        // What we were told, summed independently of the scheduler.
        let mut cpu: HashMap<String, i64> = HashMap::new();
        let mut mem: HashMap<String, i64> = HashMap::new();
        let mut disk: HashMap<String, i64> = HashMap::new();
        let mut addrs = 0i64;
        for (k, r) in reqs.iter().enumerate() {
            let input = ScheduleInput {
                session_id: format!("s{k}"),
                count: r.count,
                vcpu_count: r.cpu,
                vmem_size: r.mem,
                disks: r.disks.iter().map(|(size, shared)| SchedDisk {
                    size: *size,
                    backend: if *shared { "rbd".into() } else { "local".into() },
                    ..Default::default()
                }).collect(),
                nets: if r.nic { vec![SchedNet::default()] } else { vec![] },
                ..Default::default()
            };
            if r.forecast {
                let f = rt.block_on(sched.forecast(&input));
                prop_assert!(f.allow_count <= r.count);
                prop_assert_eq!(f.can_create, f.allow_count == r.count);
                continue;
            }
            match rt.block_on(sched.schedule(&input)) {
                Ok(cands) => {
                    prop_assert_eq!(cands.len() as i64, r.count);
                    for c in &cands {
                        *cpu.entry(c.host_id.clone()).or_default() += r.cpu;
                        *mem.entry(c.host_id.clone()).or_default() += r.mem;
                        for (d, (size, _)) in c.disks.iter().zip(&r.disks) {
                            *disk.entry(d.storage_ids[0].clone()).or_default() += size;
                        }
                        addrs += c.nets.len() as i64;
                    }
                }
                Err(e) => prop_assert!(e.details.starts_with("No host can take instance"), "{}", e.details),
            }
            if r.complete {
                rt.block_on(sched.completed(&format!("s{k}")));
            }
        }
        for (i, p) in hosts.iter().enumerate() {
            let id = format!("h{i}");
            let cpu_total = (p.cpu - p.cpu_reserved) as f64 * p.cpu_bound;
            let mem_total = (p.mem - p.mem_reserved) as f64 * p.mem_bound;
            prop_assert!(*cpu.get(&id).unwrap_or(&0) as f64 <= cpu_total + 1e-9, "cpu of {}", id);
            prop_assert!(*mem.get(&id).unwrap_or(&0) as f64 <= mem_total + 1e-9, "mem of {}", id);
            let local = format!("{}-local", id);
            prop_assert!(*disk.get(&local).unwrap_or(&0) <= p.local);
            let d = sched.candidate_detail(&id).expect("host");
            prop_assert!(d.host.cpu.free >= -1e-9 && d.host.mem.free >= -1e-9);
            prop_assert!(d.storages.iter().all(|s| s.capacity.free >= 0.0));
            prop_assert!(d.networks.iter().all(|n| n.ports.free >= 0.0));
        }
        prop_assert!(*disk.get("shared").unwrap_or(&0) <= shared);
        prop_assert!(addrs <= 21);
    }
}
