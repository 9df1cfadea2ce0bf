//! A small fleet for unit tests.

use cloudpods_apis::scheduler::{SchedDisk, SchedNet, SchedTag, ScheduleInput};

use crate::fleet::{Dyn, Fleet, build};
use crate::options::SchedulerOptions;
use crate::request::{Request, resolve};
use crate::snapshot::*;

pub fn ip(s: &str) -> u32 {
    u32::from(s.parse::<std::net::Ipv4Addr>().expect("ip"))
}

/// Two regions/zones/wires; h1 (z1, ssd tag, 8 CPU 16 GB, local ssd
/// 100 GB), h2 (z1, 4 CPU 8 GB, local hdd 50 GB), h3 (z2, 16 CPU 32 GB,
/// shared rbd 1 TB with h4), h4 (z2, offline).
pub fn snapshot() -> Snapshot {
    let mut h1 = HostSpec::new("h1", 8, 16384);
    h1.zone_id = "z1".into();
    h1.storages = vec!["s1".into()];
    h1.wires = vec!["w1".into()];
    h1.schedtags = vec!["t-ssd".into()];
    let mut h2 = HostSpec::new("h2", 4, 8192);
    h2.zone_id = "z1".into();
    h2.storages = vec!["s2".into()];
    h2.wires = vec!["w1".into()];
    let mut h3 = HostSpec::new("h3", 16, 32768);
    h3.zone_id = "z2".into();
    h3.storages = vec!["s3".into()];
    h3.wires = vec!["w2".into()];
    h3.schedtags = vec!["t-slow".into()];
    let mut h4 = HostSpec::new("h4", 16, 32768);
    h4.zone_id = "z2".into();
    h4.storages = vec!["s3".into()];
    h4.wires = vec!["w2".into()];
    h4.host_status = "offline".into();
    let mut s2 = StorageSpec::new("s2", 51200);
    s2.medium_type = "rotate".into();
    let mut s3 = StorageSpec::new("s3", 1 << 20);
    s3.storage_type = "rbd".into();
    Snapshot {
        hosts: vec![h1, h2, h3, h4],
        storages: vec![StorageSpec::new("s1", 102400), s2, s3],
        networks: vec![
            NetworkSpec::new("n1", "w1", ip("10.0.0.10"), ip("10.0.0.20")),
            NetworkSpec::new("n2", "w2", ip("10.1.0.10"), ip("10.1.0.12")),
        ],
        wires: vec![
            WireSpec {
                id: "w1".into(),
                name: "wire1".into(),
                zone_id: "z1".into(),
            },
            WireSpec {
                id: "w2".into(),
                name: "wire2".into(),
                zone_id: "z2".into(),
            },
        ],
        zones: vec![
            ZoneSpec {
                id: "z1".into(),
                name: "zone1".into(),
                cloudregion_id: "r1".into(),
            },
            ZoneSpec {
                id: "z2".into(),
                name: "zone2".into(),
                cloudregion_id: "r2".into(),
            },
        ],
        regions: vec![
            RegionSpec {
                id: "r1".into(),
                name: "region1".into(),
            },
            RegionSpec {
                id: "r2".into(),
                name: "region2".into(),
            },
        ],
        schedtags: vec![
            SchedtagSpec {
                id: "t-ssd".into(),
                name: "ssd".into(),
                ..Default::default()
            },
            SchedtagSpec {
                id: "t-slow".into(),
                name: "slow".into(),
                ..Default::default()
            },
        ],
        skus: vec![SkuSpec {
            id: "k1".into(),
            name: "small".into(),
            cpu_core_count: 2,
            memory_size_mb: 2048,
            zone_id: "z2".into(),
            enabled: true,
            status: "ready".into(),
            ..Default::default()
        }],
        guests: Vec::new(),
    }
}

pub fn fleet() -> (Fleet, Dyn) {
    build(&snapshot(), 1)
}

pub fn input(cpu: i64, mem: i64) -> ScheduleInput {
    ScheduleInput {
        session_id: "s".into(),
        count: 1,
        vcpu_count: cpu,
        vmem_size: mem,
        ..Default::default()
    }
}

pub fn disk(size: i64, backend: &str, medium: &str) -> SchedDisk {
    SchedDisk {
        size,
        backend: backend.into(),
        medium: medium.into(),
        ..Default::default()
    }
}

pub fn net(network: &str) -> SchedNet {
    SchedNet {
        network: network.into(),
        ..Default::default()
    }
}

pub fn tag(id: &str, strategy: &str) -> SchedTag {
    SchedTag {
        id: id.into(),
        strategy: strategy.into(),
    }
}

pub fn req(fleet: &Fleet, input: &ScheduleInput) -> Request {
    resolve(fleet, input, &SchedulerOptions::default()).expect("valid input")
}

pub fn h(fleet: &Fleet, id: &str) -> u32 {
    fleet.host_ix.id(id).expect("host")
}
