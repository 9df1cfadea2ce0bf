//! `cloudpods bench scheduler` on a small fleet: the benchmark module
//! builds, runs end to end and reports every figure.

#[path = "../src/bench_sched.rs"]
#[allow(dead_code)]
mod bench_sched;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_bench_runs_on_a_small_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("sched.json");
    bench_sched::scheduler(bench_sched::SchedArgs {
        hosts: 300,
        batch: 100,
        batches: 2,
        singles: 50,
        seconds: 1,
        concurrency: 2,
        sqlite: true,
        seed: 7,
        json: Some(json.clone()),
    })
    .await
    .expect("bench");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    assert_eq!(v["fleet"]["hosts"], 300);
    assert_eq!(v["batch"]["count"], 100);
    assert_eq!(v["single"]["n"], 50);
    assert!(v["sustained"]["placements"].as_u64().unwrap_or(0) > 0);
    assert_eq!(v["sqlite"]["hosts"], 300);
}
