//! The scheduler benchmark (`cloudpods bench scheduler`): a simulated fleet
//! (no agents) with mixed capacities, schedtags, shared storages and
//! networks; batch placement time, single placement latency, sustained
//! placements per second, and optionally the cache build from SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cloudpods_apis::scheduler::{SchedDisk, SchedNet, SchedTag, ScheduleInput};
use cloudpods_db::{Db, ModelDesc, Row, crud};
use serde_json::{Value, json};

use crate::options::SchedulerOptions;
use crate::service::SchedulerService;
use crate::snapshot::*;

/// A small deterministic generator (splitmix64): the same seed builds the
/// same fleet on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const HOSTS_PER_WIRE: usize = 250;

/// `hosts` hosts in 4 zones, 250 per wire, two /22 networks per wire, a
/// shared rbd storage per wire for a tenth of the hosts, tags `ssd` (30%),
/// `gpu` (5%), `old` (10%, avoided by default), 2% offline, 1% in
/// maintenance, 1% disabled, and existing guests using 0–60% of each host.
pub fn fleet(hosts: usize, seed: u64) -> Snapshot {
    let mut rng = Rng::new(seed);
    let mut s = Snapshot {
        regions: vec![RegionSpec {
            id: "default".into(),
            name: "Default".into(),
        }],
        ..Default::default()
    };
    for z in 0..4 {
        s.zones.push(ZoneSpec {
            id: format!("zone{z}"),
            name: format!("zone{z}"),
            cloudregion_id: "default".into(),
        });
    }
    for (id, strategy) in [("ssd", ""), ("gpu", ""), ("old", "avoid")] {
        s.schedtags.push(SchedtagSpec {
            id: id.into(),
            name: id.into(),
            default_strategy: strategy.into(),
            resource_type: "hosts".into(),
        });
    }
    s.skus.push(SkuSpec {
        id: "sku-medium".into(),
        name: "ecs.g1.medium".into(),
        cpu_core_count: 2,
        memory_size_mb: 4096,
        enabled: true,
        status: "ready".into(),
        ..Default::default()
    });
    let wires = hosts.div_ceil(HOSTS_PER_WIRE).max(1);
    for w in 0..wires {
        let zone = format!("zone{}", w % 4);
        s.wires.push(WireSpec {
            id: format!("wire{w:03}"),
            name: format!("wire{w:03}"),
            zone_id: zone.clone(),
        });
        for n in 0..2u32 {
            // 10.<w>.<n*4>.0/22: 1022 addresses.
            let base = (10u32 << 24) | ((w as u32 & 0xff) << 16) | ((n * 4) << 8);
            let mut net = NetworkSpec::new(
                &format!("net{w:03}-{n}"),
                &format!("wire{w:03}"),
                base + 2,
                base + 1022,
            );
            // Some addresses held already.
            let held = rng.below(300) as u32;
            net.used = (0..held).map(|k| base + 2 + k).collect();
            s.networks.push(net);
        }
        let mut rbd = StorageSpec::new(&format!("rbd{w:03}"), 200 * 1024 * 1024);
        rbd.storage_type = "rbd".into();
        rbd.medium_type = "ssd".into();
        rbd.zone_id = zone;
        s.storages.push(rbd);
    }
    let cpus = [16i64, 32, 48, 64, 96];
    let mems = [65536i64, 131072, 262144, 524288];
    for i in 0..hosts {
        let w = i / HOSTS_PER_WIRE;
        let id = format!("host{i:05}");
        let mut h = HostSpec::new(&id, *rng.pick(&cpus), *rng.pick(&mems));
        h.zone_id = format!("zone{}", w % 4);
        h.cpu_cmtbound = *rng.pick(&[4.0, 8.0]);
        h.mem_cmtbound = *rng.pick(&[1.0, 1.2]);
        h.cpu_reserved = rng.below(3) as i64;
        h.mem_reserved = *rng.pick(&[0i64, 4096, 8192]);
        h.wires = vec![format!("wire{w:03}")];
        if rng.chance(2) {
            h.host_status = "offline".into();
        } else if rng.chance(1) {
            h.is_maintenance = true;
        } else if rng.chance(1) {
            h.enabled = false;
        }
        if rng.chance(30) {
            h.schedtags.push("ssd".into());
        }
        if rng.chance(5) {
            h.schedtags.push("gpu".into());
        }
        if rng.chance(10) {
            h.schedtags.push("old".into());
        }
        let local = format!("{id}-local");
        let mut st = StorageSpec::new(&local, *rng.pick(&[1i64, 2, 4, 8]) * 1024 * 1024);
        st.medium_type = if h.schedtags.iter().any(|t| t == "ssd") {
            "ssd".into()
        } else {
            "rotate".into()
        };
        st.zone_id = h.zone_id.clone();
        h.storages = vec![local];
        if rng.chance(10) {
            h.storages.push(format!("rbd{w:03}"));
        }
        // Existing guests: 0–60% of the host's CPU.
        let vcpus = ((h.cpu_count - h.cpu_reserved) as f64 * h.cpu_cmtbound) as i64;
        let target = vcpus * rng.below(61) as i64 / 100;
        let mut used = 0;
        let mut mem_used = 0;
        let mem_cap = ((h.mem_size - h.mem_reserved) as f64 * h.mem_cmtbound) as i64;
        let mut g = 0;
        while used + 4 <= target && mem_used + 8192 <= mem_cap {
            let cpu = *rng.pick(&[1i64, 2, 4]);
            let mem = cpu * 2048;
            s.guests.push(GuestSpec {
                id: format!("{id}-g{g}"),
                host_id: id.clone(),
                vcpu_count: cpu,
                vmem_size: mem,
                status: "running".into(),
            });
            st.used += 40 * 1024;
            used += cpu;
            mem_used += mem;
            g += 1;
        }
        s.storages.push(st);
        s.hosts.push(h);
    }
    s
}

/// The request shapes of the single and sustained runs.
pub fn shapes() -> Vec<ScheduleInput> {
    let disk = |size: i64, backend: &str, medium: &str| SchedDisk {
        size,
        backend: backend.into(),
        medium: medium.into(),
        ..Default::default()
    };
    let tag = |id: &str, strategy: &str| SchedTag {
        id: id.into(),
        strategy: strategy.into(),
    };
    vec![
        ScheduleInput {
            vcpu_count: 2,
            vmem_size: 4096,
            disks: vec![disk(40 * 1024, "local", "")],
            nets: vec![SchedNet::default()],
            ..Default::default()
        },
        ScheduleInput {
            vcpu_count: 4,
            vmem_size: 8192,
            disks: vec![disk(40 * 1024, "local", "ssd"), disk(100 * 1024, "", "")],
            nets: vec![SchedNet::default()],
            schedtags: vec![tag("ssd", "require")],
            ..Default::default()
        },
        ScheduleInput {
            sku: "ecs.g1.medium".into(),
            disks: vec![disk(20 * 1024, "", "")],
            nets: vec![SchedNet::default()],
            prefer_zone: "zone1".into(),
            ..Default::default()
        },
        ScheduleInput {
            vcpu_count: 8,
            vmem_size: 16384,
            disks: vec![disk(50 * 1024, "rbd", "")],
            nets: vec![SchedNet::default()],
            schedtags: vec![tag("gpu", "prefer")],
            ..Default::default()
        },
        ScheduleInput {
            vcpu_count: 1,
            vmem_size: 1024,
            disks: vec![disk(10 * 1024, "", "")],
            nets: vec![SchedNet {
                network: "net005-1".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    ]
}

/// Requests naming a network name the wires' second networks in turn, so
/// no single network runs out during a run.
fn spread_networks(input: &mut ScheduleInput, k: usize, wires: usize) {
    for n in input.nets.iter_mut().filter(|n| !n.network.is_empty()) {
        n.network = format!("net{:03}-1", k % wires.max(1));
    }
}

#[derive(Debug, Clone)]
pub struct BenchOpts {
    pub hosts: usize,
    pub batch: usize,
    pub batches: usize,
    pub singles: usize,
    pub seconds: u64,
    pub concurrency: usize,
    /// Also build the cache from a temporary SQLite region database.
    pub sqlite: bool,
    pub seed: u64,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            hosts: 10_000,
            batch: 1000,
            batches: 5,
            singles: 2000,
            seconds: 3,
            concurrency: 4,
            sqlite: false,
            seed: 42,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    json!({
        "n": v.len(),
        "p50_ms": (percentile(&v, 0.5) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile(&v, 0.99) * 1000.0).round() / 1000.0,
        "max_ms": (v.last().copied().unwrap_or(0.0) * 1000.0).round() / 1000.0,
    })
}

/// Run the benchmark; the figures as JSON.
pub async fn run(o: &BenchOpts) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    let t = Instant::now();
    let snap = fleet(o.hosts, o.seed);
    out.insert("fleet".into(), json!({
        "hosts": snap.hosts.len(), "storages": snap.storages.len(), "networks": snap.networks.len(),
        "wires": snap.wires.len(), "guests": snap.guests.len(), "generate_ms": ms(t.elapsed()),
    }));
    if o.sqlite {
        out.insert("sqlite".into(), sqlite_build(&snap).await?);
    }
    let t = Instant::now();
    let sched = SchedulerService::from_snapshot(snap, SchedulerOptions::default());
    out.insert("cache_build_ms".into(), json!(ms(t.elapsed())));

    // Batches of `batch` guests.
    let mut batch_ms = Vec::new();
    for b in 0..o.batches {
        let mut input = shapes()[0].clone();
        input.session_id = format!("batch-{b}");
        input.count = o.batch as i64;
        input.schedtags = vec![SchedTag {
            id: "ssd".into(),
            strategy: "prefer".into(),
        }];
        let t = Instant::now();
        let c = sched.schedule(&input).await.map_err(|e| e.details)?;
        let d = t.elapsed();
        if c.len() != o.batch {
            return Err(format!("batch placed {} of {}", c.len(), o.batch));
        }
        sched.completed(&input.session_id).await;
        batch_ms.push(d.as_secs_f64() * 1000.0);
    }
    out.insert("batch".into(), json!({
        "count": o.batch, "runs_ms": batch_ms.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        "max_ms": batch_ms.iter().copied().fold(0.0, f64::max),
    }));

    // Single placements, one at a time.
    let all = shapes();
    let wires = o.hosts.div_ceil(HOSTS_PER_WIRE);
    let mut lat = Vec::with_capacity(o.singles);
    let mut failed = 0;
    for k in 0..o.singles {
        let mut input = all[k % all.len()].clone();
        input.session_id = format!("single-{k}");
        spread_networks(&mut input, k, wires);
        let t = Instant::now();
        let r = sched.schedule(&input).await;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if r.is_err() {
            failed += 1;
        }
        sched.completed(&input.session_id).await;
    }
    let mut single = stats(lat);
    single["failed"] = json!(failed);
    out.insert("single".into(), single);

    // Sustained: concurrent callers, schedule + completed in a loop.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    for w in 0..o.concurrency.max(1) {
        let (sched, done) = (sched.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let shapes = shapes();
            let mut lat = Vec::new();
            let mut k = 0usize;
            while Instant::now() < stop {
                let mut input = shapes[(k + w) % shapes.len()].clone();
                input.session_id = format!("sustained-{w}-{k}");
                spread_networks(&mut input, k * 7 + w, wires);
                let t = Instant::now();
                if sched.schedule(&input).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                sched.completed(&input.session_id).await;
                k += 1;
                // Let the other callers in (a multi-threaded server
                // interleaves requests the same way).
                tokio::task::yield_now().await;
            }
            lat
        }));
    }
    let t = Instant::now();
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.map_err(|e| e.to_string())?);
    }
    let secs = t.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let mut sustained = stats(lat);
    sustained["placements"] = json!(n);
    sustained["seconds"] = json!((secs * 100.0).round() / 100.0);
    sustained["per_second"] = json!((n as f64 / secs).round());
    sustained["concurrency"] = json!(o.concurrency);
    out.insert("sustained".into(), sustained);

    // A forecast with every host's reasons.
    let mut input = all[1].clone();
    input.count = 50;
    let t = Instant::now();
    let f = sched.forecast(&input).await;
    out.insert(
        "forecast".into(),
        json!({
            "ms": ms(t.elapsed()), "can_create": f.can_create,
            "filtered_candidates": f.filtered_candidates.len(), "reasons": f.not_allow_reasons,
        }),
    );
    Ok(Value::Object(out))
}

async fn insert_all(db: &Db, desc: &ModelDesc, rows: Vec<Row>) -> Result<(), String> {
    for chunk in rows.chunks(400) {
        let mut chunk = chunk.to_vec();
        for r in chunk.iter_mut() {
            crud::prepare_insert(desc, r);
        }
        let q = crud::insert_sql(desc, &chunk);
        q.query()
            .map_err(|e| e.to_string())?
            .execute(db.write())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn row(v: Value) -> Row {
    match v {
        Value::Object(o) => o,
        _ => Row::new(),
    }
}

/// Write the fleet into a temporary SQLite region database and time the
/// full cache build and a one-host reload from it.
async fn sqlite_build(snap: &Snapshot) -> Result<Value, String> {
    use cloudpods_region::models::*;
    let dir = std::env::temp_dir().join(format!("sched-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("region.db");
    let _ = std::fs::remove_file(&path);
    let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .map_err(|e| e.to_string())?;
    cloudpods_db::migrate::sync_schema(&db, &cloudpods_region::tables(), &[])
        .await
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let ip = |v: u32| std::net::Ipv4Addr::from(v).to_string();
    insert_all(
        &db,
        &CLOUDREGIONS,
        snap.regions
            .iter()
            .map(|r| row(json!({"id": r.id, "name": r.name})))
            .collect(),
    )
    .await?;
    insert_all(
        &db,
        &ZONES,
        snap.zones
            .iter()
            .map(|z| row(json!({"id": z.id, "name": z.name, "cloudregion_id": z.cloudregion_id})))
            .collect(),
    )
    .await?;
    insert_all(
        &db,
        &WIRES,
        snap.wires
            .iter()
            .map(|w| {
                row(json!({"id": w.id, "name": w.name, "zone_id": w.zone_id, "vpc_id": "default"}))
            })
            .collect(),
    )
    .await?;
    insert_all(&db, &SCHEDTAGS, snap.schedtags.iter().map(|t| row(json!({"id": t.id, "name": t.name, "default_strategy": t.default_strategy, "resource_type": t.resource_type}))).collect()).await?;
    insert_all(&db, &SERVERSKUS, snap.skus.iter().map(|k| row(json!({"id": k.id, "name": k.name, "cpu_core_count": k.cpu_core_count, "memory_size_mb": k.memory_size_mb, "enabled": k.enabled, "status": k.status}))).collect()).await?;
    insert_all(&db, &NETWORKS, snap.networks.iter().map(|n| row(json!({
        "id": n.id, "name": n.name, "wire_id": n.wire_id, "guest_ip_start": ip(n.start), "guest_ip_end": ip(n.end),
        "guest_ip_mask": 22, "server_type": n.server_type, "is_auto_alloc": n.is_auto_alloc, "status": n.status,
        "is_public": n.is_public, "public_scope": n.public_scope, "domain_id": n.domain_id}))).collect()).await?;
    let mut reserved = Vec::new();
    for n in &snap.networks {
        for a in &n.used {
            reserved.push(row(
                json!({"network_id": n.id, "ip_addr": ip(*a), "notes": "bench"}),
            ));
        }
    }
    insert_all(&db, &RESERVEDIPS, reserved).await?;
    insert_all(&db, &STORAGES, snap.storages.iter().map(|s| row(json!({
        "id": s.id, "name": s.name, "zone_id": s.zone_id, "capacity": s.capacity, "storage_type": s.storage_type,
        "medium_type": s.medium_type, "enabled": s.enabled, "status": s.status, "cmtbound": s.cmtbound}))).collect()).await?;
    insert_all(&db, &HOSTS, snap.hosts.iter().map(|h| row(json!({
        "id": h.id, "name": h.name, "zone_id": h.zone_id, "host_type": h.host_type, "host_status": h.host_status,
        "status": h.status, "enabled": h.enabled, "is_maintenance": h.is_maintenance, "is_public": h.is_public,
        "public_scope": h.public_scope, "cpu_count": h.cpu_count, "cpu_cmtbound": h.cpu_cmtbound,
        "cpu_reserved": h.cpu_reserved, "mem_size": h.mem_size, "mem_cmtbound": h.mem_cmtbound,
        "mem_reserved": h.mem_reserved}))).collect()).await?;
    let mut hs = Vec::new();
    let mut hw = Vec::new();
    let mut ht = Vec::new();
    for h in &snap.hosts {
        hs.extend(
            h.storages
                .iter()
                .map(|s| row(json!({"host_id": h.id, "storage_id": s}))),
        );
        hw.extend(
            h.wires
                .iter()
                .map(|w| row(json!({"host_id": h.id, "wire_id": w}))),
        );
        ht.extend(
            h.schedtags
                .iter()
                .map(|t| row(json!({"host_id": h.id, "schedtag_id": t}))),
        );
    }
    insert_all(&db, &HOSTSTORAGES, hs).await?;
    insert_all(&db, &HOSTWIRES, hw).await?;
    insert_all(&db, &HOSTSCHEDTAGS, ht).await?;
    insert_all(&db, &GUESTS, snap.guests.iter().map(|g| row(json!({
        "id": g.id, "name": g.id, "host_id": g.host_id, "vcpu_count": g.vcpu_count, "vmem_size": g.vmem_size,
        "status": g.status, "tenant_id": "p1", "domain_id": "default"}))).collect()).await?;
    let mut disks = Vec::new();
    for (k, g) in snap.guests.iter().enumerate() {
        disks.push(row(json!({"id": format!("d{k}"), "name": format!("d{k}"), "storage_id": format!("{}-local", g.host_id),
            "disk_size": 40 * 1024, "status": "ready", "tenant_id": "p1", "domain_id": "default"})));
    }
    insert_all(&db, &DISKS, disks).await?;
    let populate = t.elapsed();
    let t = Instant::now();
    let sched = SchedulerService::new(db.clone(), SchedulerOptions::default())
        .await
        .map_err(|e| e.details)?;
    let build = t.elapsed();
    let hosts = sched.stats().hosts;
    let t = Instant::now();
    sched.invalidate_host(&snap.hosts[0].id);
    sched.refresh().await.map_err(|e| e.details)?;
    let reload = t.elapsed();
    let t = Instant::now();
    crate::load::hosts(
        &db,
        std::slice::from_ref(&snap.hosts[1].id),
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| e.to_string())?;
    let load_one = t.elapsed();
    let generation = sched.stats().generation;
    db.close().await;
    if std::env::var_os("SCHED_BENCH_KEEP_DB").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(json!({
        "populate_ms": ms(populate), "cache_build_ms": ms(build), "host_reload_ms": ms(reload), "hosts": hosts,
        "host_query_ms": ms(load_one), "generation_after_reload": generation,
    }))
}
