//! Placement against a cache built from a real SQLite region database:
//! 200 parallel single-guest requests against 20 hosts with room for
//! exactly 200 all land without overcommitting, the 201st is refused with
//! reasons; confirmed placements give way to the database's numbers on
//! reload; unconfirmed ones expire.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cloudpods_apis::ErrorClass;
use cloudpods_apis::scheduler::{SchedDisk, SchedNet, ScheduleInput};
use cloudpods_scheduler::{SchedulerOptions, SchedulerService};
use common::TestDb;

fn one(session: &str) -> ScheduleInput {
    ScheduleInput {
        session_id: session.into(),
        count: 1,
        vcpu_count: 1,
        vmem_size: 1024,
        disks: vec![SchedDisk {
            size: 2048,
            ..Default::default()
        }],
        nets: vec![SchedNet::default()],
        project: "p1".into(),
        project_domain: "default".into(),
        ..Default::default()
    }
}

/// 20 hosts × (10 vCPU, 10 GB): exactly 200 guests of 1 vCPU / 1 GB.
async fn fleet() -> TestDb {
    let t = TestDb::new().await;
    for i in 0..20 {
        t.host(&format!("h{i:02}"), 10, 10240, 100 * 1024).await;
    }
    t.network("net0", "10.0.0.2", "10.0.0.254").await;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_parallel_placements_fill_exactly() {
    let t = fleet().await;
    let sched = t.service(SchedulerOptions::default()).await;
    assert_eq!(sched.stats().hosts, 20);

    let mut tasks = Vec::new();
    for k in 0..200 {
        let s: Arc<SchedulerService> = sched.clone();
        tasks.push(tokio::spawn(async move {
            s.schedule(&one(&format!("sess-{k}"))).await
        }));
    }
    let mut per_host: HashMap<String, usize> = HashMap::new();
    let mut storages: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let c = task.await.expect("join").expect("placed");
        assert_eq!(c.len(), 1);
        *per_host.entry(c[0].host_id.clone()).or_default() += 1;
        *storages
            .entry(c[0].disks[0].storage_ids[0].clone())
            .or_default() += 1;
        assert_eq!(c[0].nets[0].network_ids, vec!["net0".to_string()]);
    }
    assert_eq!(per_host.values().sum::<usize>(), 200);
    assert_eq!(per_host.len(), 20);
    assert!(per_host.values().all(|n| *n == 10), "{per_host:?}");
    for (sid, n) in &storages {
        assert!(sid.ends_with("-local") && *n == 10);
    }
    for i in 0..20 {
        let d = sched.candidate_detail(&format!("h{i:02}")).expect("host");
        assert_eq!(d.host.cpu.free, 0.0);
        assert_eq!(d.host.mem.free, 0.0);
        assert_eq!(d.host.pending, 10);
    }
    assert_eq!(sched.stats().pending, 200);

    let err = sched.schedule(&one("sess-201")).await.expect_err("full");
    assert_eq!(err.class, ErrorClass::InsufficientResourceError);
    let d = &err.details;
    assert!(
        d.starts_with("No host can take instance 1 of 1 (1 vCPU, 1024 MB"),
        "{d}"
    );
    assert!(d.contains("20 hosts: not enough CPU"), "{d}");
    assert!(d.contains("20 hosts: not enough memory"), "{d}");
    assert!(
        d.contains("host h00: 0 vCPUs free < 1 requested, memory 0 MB free < 1024 MB requested"),
        "{d}"
    );
    assert!(d.contains("and 10 more"), "{d}");
    // The failure is in the history with its reasons.
    let h = sched.history_detail("sess-201").expect("history");
    assert_eq!(h.filtered_total, 20);
    assert_eq!(h.not_allow_reasons[0], "20 hosts: not enough CPU");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_placements_yield_to_the_database() {
    let t = fleet().await;
    let opts = SchedulerOptions {
        commit_grace: Duration::ZERO,
        ..Default::default()
    };
    let sched = t.service(opts).await;
    let mut batch = one("batch");
    batch.count = 200;
    batch.guest_ids = (0..200).map(|k| format!("g{k}")).collect();
    let placed = sched.schedule(&batch).await.expect("batch of 200");
    assert_eq!(placed.len(), 200);

    // The region writes the guests; half are still before their disk
    // stage (no disk rows yet), half are done (disks exist).
    for (k, c) in placed.iter().enumerate() {
        let status = if k % 2 == 0 { "init" } else { "running" };
        t.guest(&format!("g{k}"), &c.host_id, 1, 1024, status).await;
        if k % 2 == 1 {
            t.disk(&format!("d{k}"), &c.disks[0].storage_ids[0], 2048)
                .await;
        }
    }
    sched.completed("batch").await;
    let st = sched.stats();
    assert_eq!((st.pending, st.committed), (0, 200));
    assert!(st.dirty > 0, "completion queues host reloads");
    sched.refresh().await.expect("refresh");
    // Running guests' placements are gone (the database shows them); the
    // others keep holding storage until their disks exist.
    let st = sched.stats();
    assert_eq!(st.committed, 100, "{st:?}");
    for i in 0..20 {
        let d = sched.candidate_detail(&format!("h{i:02}")).expect("host");
        assert_eq!(d.host.cpu.free, 0.0, "CPU now from the database");
        assert_eq!(d.host.cpu.reserved, 0.0);
        assert_eq!(d.storages[0].capacity.free, (100 * 1024 - 10 * 2048) as f64);
    }
    assert!(sched.schedule(&one("more")).await.is_err());

    // A full rebuild keeps the same numbers.
    sched.invalidate_all();
    sched.refresh().await.expect("rebuild");
    assert_eq!(sched.stats().committed, 100);
    let d = sched.candidate_detail("h00").expect("host");
    assert_eq!(d.storages[0].capacity.free, (100 * 1024 - 10 * 2048) as f64);
}

#[tokio::test]
async fn unconfirmed_placements_expire() {
    let t = TestDb::new().await;
    t.host("h1", 2, 2048, 10240).await;
    let opts = SchedulerOptions {
        reservation_ttl: Duration::from_millis(200),
        ..Default::default()
    };
    let sched = t.service(opts).await;
    let mut two = one("a");
    two.nets.clear();
    two.count = 2;
    sched.schedule(&two).await.expect("two fit");
    let mut again = two.clone();
    again.session_id = "b".into();
    again.count = 1;
    assert!(sched.schedule(&again).await.is_err(), "held for session a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sched.schedule(&again).await.expect("a expired");
    // A retried session replaces what it held.
    sched.schedule(&again).await.expect("same session again");
    assert_eq!(sched.stats().pending, 1);
}

#[tokio::test]
async fn invalidation_reloads_a_host() {
    let t = TestDb::new().await;
    t.host("h1", 4, 4096, 10240).await;
    t.host("h2", 4, 4096, 10240).await;
    let sched = t.service(SchedulerOptions::default()).await;
    let mut i = one("x");
    i.nets.clear();
    i.prefer_host = "h1".into();
    sched.schedule(&i).await.expect("h1 online");
    sched.completed("x").await;

    // The host goes offline in the database; after invalidation the cache
    // knows, without waiting for the periodic rebuild.
    let mut ch = cloudpods_db::Row::new();
    ch.insert("host_status".into(), serde_json::json!("offline"));
    cloudpods_db::crud::update(t.db.write(), &cloudpods_region::models::HOSTS, "h1", &ch)
        .await
        .expect("update");
    sched.invalidate_host("h1");
    sched.refresh().await.expect("refresh");
    i.session_id = "y".into();
    let e = sched.schedule(&i).await.expect_err("offline");
    assert!(
        e.details.contains("host h1: offline (host_status offline)"),
        "{}",
        e.details
    );

    // A new host appears: its id is unknown, so the cache is rebuilt.
    t.host("h3", 8, 8192, 10240).await;
    sched.invalidate_host("h3");
    sched.refresh().await.expect("refresh");
    assert_eq!(sched.stats().hosts, 3);
    i.prefer_host = "h3".into();
    sched.schedule(&i).await.expect("h3 known");
}

#[tokio::test]
async fn database_usage_counts() {
    let t = TestDb::new().await;
    t.host("h1", 4, 4096, 10240).await;
    t.guest("g1", "h1", 3, 1024, "running").await;
    // A failed create holds nothing.
    t.guest("g2", "h1", 4, 4096, "sched_fail").await;
    t.disk("d1", "h1-local", 9216).await;
    let sched = t.service(SchedulerOptions::default()).await;
    let d = sched.candidate_detail("h1").expect("h1");
    assert_eq!(d.host.cpu.free, 1.0);
    assert_eq!(d.host.mem.free, 3072.0);
    assert_eq!(d.storages[0].capacity.free, 1024.0);
    let mut i = one("z");
    i.nets.clear();
    i.vcpu_count = 2;
    let e = sched.schedule(&i).await.expect_err("no room");
    assert!(
        e.details.contains(
            "host h1: 1 vCPUs free < 2 requested, disk 0: storage 1024 MB free < 2048 MB requested"
        ),
        "{}",
        e.details
    );
    // change-config of g1 on its own host: its usage is credited.
    let mut cc = one("cc");
    cc.nets.clear();
    cc.disks.clear();
    cc.vcpu_count = 4;
    cc.prefer_host = "h1".into();
    cc.guest_ids = vec!["g1".into()];
    sched.schedule(&cc).await.expect("g1 may grow to 4 vCPUs");
}

#[tokio::test]
async fn a_new_schedtag_reshapes_the_cache() {
    let t = TestDb::new().await;
    t.host("h1", 4, 4096, 10240).await;
    t.host("h2", 4, 4096, 10240).await;
    common::insert(
        &t.db,
        &cloudpods_region::models::SCHEDTAGS,
        serde_json::json!({"id": "t1", "name": "fast", "is_public": true, "public_scope": "system"}),
    )
    .await;
    let sched = t.service(SchedulerOptions::default()).await;
    let mut i = one("t");
    i.nets.clear();
    i.schedtags = vec![cloudpods_apis::scheduler::parse_schedtag("fast:require")];
    let e = sched.schedule(&i).await.expect_err("no host has it");
    assert!(
        e.details.contains("2 hosts: missing a required schedtag"),
        "{}",
        e.details
    );
    assert!(
        e.details
            .contains("host h1: lacks schedtag fast (required)"),
        "{}",
        e.details
    );
    // Tag h2: the host's shape changed, the cache (and the static filter
    // results of this request shape) are rebuilt.
    common::insert(
        &t.db,
        &cloudpods_region::models::HOSTSCHEDTAGS,
        serde_json::json!({"host_id": "h2", "schedtag_id": "t1"}),
    )
    .await;
    sched.invalidate_host("h2");
    sched.refresh().await.expect("refresh");
    assert_eq!(sched.stats().generation, 2);
    i.session_id = "t2".into();
    let c = sched.schedule(&i).await.expect("h2 has it now");
    assert_eq!(c[0].host_id, "h2");
}
