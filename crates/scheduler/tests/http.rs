//! Every `/scheduler` endpoint through the REST router, with a fake token
//! verifier; and the region-side `RemoteScheduler` against a served router.

mod common;

use std::sync::Arc;

use cloudpods_apis::ErrorClass;
use cloudpods_apis::scheduler::{SchedDisk, ScheduleInput};
use cloudpods_region::Scheduler;
use cloudpods_scheduler::{RemoteScheduler, SchedulerOptions, SchedulerService};
use common::{ADMIN, MEMBER, TestDb, call};
use serde_json::json;

async fn setup() -> (TestDb, Arc<SchedulerService>, axum::Router) {
    let t = TestDb::new().await;
    t.host("h1", 4, 4096, 20480).await;
    t.host("h2", 8, 8192, 20480).await;
    t.network("net0", "10.0.0.10", "10.0.0.20").await;
    let s = t.service(SchedulerOptions::default()).await;
    let r = common::router(s.clone(), &t.db);
    (t, s, r)
}

#[tokio::test]
async fn schedule_endpoint() {
    let (_t, _s, r) = setup().await;
    // Authentication and authorization.
    call(&r, "POST", "/scheduler", None, Some(json!({})))
        .await
        .error(401, "UnauthorizedError");
    let body = json!({"scheduler": {"session_id": "s1", "count": 2, "vcpu_count": 2, "vmem_size": "2048",
                                    "disks": [{"size": 1024, "backend": "local"}], "nets": [{}]}});
    call(&r, "POST", "/scheduler", Some(MEMBER), Some(body.clone()))
        .await
        .error(403, "ForbiddenError");
    let out = call(&r, "POST", "/scheduler", Some(ADMIN), Some(body)).await;
    let c = out.ok()["candidates"]
        .as_array()
        .expect("candidates")
        .clone();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["session_id"], "s1");
    assert!(c[0]["host_id"] == "h1" || c[0]["host_id"] == "h2");
    assert_eq!(c[0]["nets"][0]["network_ids"][0], "net0");
    assert!(c[0].get("error").is_none());

    // Unwrapped bodies are accepted too.
    let out = call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({"vcpu_count": 1, "vmem_size": 512, "schedtag.0": "nope:require"})),
    )
    .await;
    let d = out.error(400, "InputParameterError");
    assert!(d.contains("schedtag nope not found"), "{d}");

    // Bad input: every problem at once.
    let out = call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({
            "vcpu_count": -1, "vmem_size": 512, "count": 20000, "prefer_host": "hx",
            "nets": [{"network": "nonet"}], "disks": [{"size": 0}]
        })),
    )
    .await;
    let d = out.error(400, "InputParameterError");
    for want in [
        "vcpu_count must not be negative",
        "beyond the limit",
        "host hx not found",
        "network nonet not found",
        "disk 0: size must be positive",
    ] {
        assert!(d.contains(want), "{want}: {d}");
    }
    let out = call(&r, "POST", "/scheduler", Some(ADMIN), Some(json!("text"))).await;
    out.error(400, "InputParameterError");

    // Too big: 400 with per-host reasons.
    let out = call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({"vcpu_count": 10, "vmem_size": 9000})),
    )
    .await;
    let d = out.error(400, "InsufficientResourceError");
    assert!(d.contains("2 hosts: not enough memory"), "{d}");
    assert!(
        d.contains("host h1: 2 vCPUs free < 10 requested, memory 2048 MB free < 9000 MB requested"),
        "{d}"
    );
}

#[tokio::test]
async fn forecast_endpoint() {
    let (_t, _s, r) = setup().await;
    let out = call(
        &r,
        "POST",
        "/scheduler/forecast",
        Some(ADMIN),
        Some(json!({"scheduler": {"vcpu_count": 4, "vmem_size": 4096, "count": 4}})),
    )
    .await;
    let b = out.ok();
    assert_eq!(b["can_create"], false);
    assert_eq!(b["req_count"], 4);
    assert_eq!(b["allow_count"], 3);
    let reasons: Vec<String> =
        serde_json::from_value(b["not_allow_reasons"].clone()).expect("list");
    assert_eq!(
        reasons[0],
        "3 of 4 instances can be placed (4 vCPU, 4096 MB)"
    );
    assert!(
        reasons.iter().any(|x| x == "2 hosts: not enough CPU"),
        "{reasons:?}"
    );
    let fc = b["filtered_candidates"].as_array().expect("filtered");
    assert_eq!(fc.len(), 2);
    assert_eq!(fc[0]["id"], "h1");
    assert_eq!(fc[0]["filter_name"], "host_cpu");
    // Nothing was held.
    let out = call(
        &r,
        "POST",
        "/scheduler/forecast",
        Some(ADMIN),
        Some(json!({"vcpu_count": 4, "vmem_size": 4096, "count": 2})),
    )
    .await;
    assert_eq!(out.ok()["can_create"], true);
    assert_eq!(out.ok()["candidates"].as_array().map(Vec::len), Some(2));

    // A tenant gets the verdict and aggregated reasons, not the hosts.
    let out = call(
        &r,
        "POST",
        "/scheduler/forecast",
        Some(MEMBER),
        Some(json!({"vcpu_count": 64, "vmem_size": 4096})),
    )
    .await;
    let b = out.ok();
    assert_eq!(b["can_create"], false);
    assert_eq!(b["filtered_candidates"], json!([]));
    assert_eq!(b["candidates"], json!([]));
    assert!(
        b["not_allow_reasons"][1]
            .as_str()
            .unwrap_or_default()
            .contains("not enough CPU")
    );
    let out = call(
        &r,
        "POST",
        "/scheduler/forecast",
        Some(ADMIN),
        Some(json!({"vcpu_count": 0, "vmem_size": 0})),
    )
    .await;
    out.error(400, "InputParameterError");
}

#[tokio::test]
async fn candidate_endpoints() {
    let (_t, _s, r) = setup().await;
    call(&r, "GET", "/scheduler/candidate-list", Some(MEMBER), None)
        .await
        .error(403, "ForbiddenError");
    let out = call(
        &r,
        "GET",
        "/scheduler/candidate-list?limit=1",
        Some(ADMIN),
        None,
    )
    .await;
    let b = out.ok();
    assert_eq!(b["total"], 2);
    assert_eq!(b["limit"], 1);
    assert_eq!(b["data"][0]["id"], "h1");
    assert_eq!(
        b["data"][0]["cpu"],
        json!({"free": 4.0, "reserverd": 0.0, "total": 4.0})
    );
    assert_eq!(b["data"][0]["enable_status"], "enable");
    let out = call(
        &r,
        "POST",
        "/scheduler/candidate-list",
        Some(ADMIN),
        Some(json!({"zone": "zone1", "offset": 1})),
    )
    .await;
    assert_eq!(out.ok()["data"][0]["id"], "h2");
    let out = call(
        &r,
        "GET",
        "/scheduler/candidate-list?zone=nowhere",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(out.ok()["total"], 0);

    let out = call(
        &r,
        "GET",
        "/scheduler/candidate-detail/h2",
        Some(ADMIN),
        None,
    )
    .await;
    let c = &out.ok()["candidate"];
    assert_eq!(c["name"], "h2");
    assert_eq!(c["mem"]["total"], 8192.0);
    assert_eq!(c["storages"][0]["id"], "h2-local");
    assert_eq!(c["networks"][0]["ports"]["total"], 11.0);
    assert_eq!(c["wires"], json!(["w1"]));
    call(
        &r,
        "GET",
        "/scheduler/candidate-detail/nope",
        Some(ADMIN),
        None,
    )
    .await
    .error(404, "ResourceNotFoundError");
}

#[tokio::test]
async fn history_endpoints() {
    let (_t, _s, r) = setup().await;
    call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({"session_id": "ok1", "vcpu_count": 1, "vmem_size": 512})),
    )
    .await
    .ok();
    call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({"session_id": "bad1", "vcpu_count": 16, "vmem_size": 512})),
    )
    .await;
    let out = call(&r, "GET", "/scheduler/history-list", Some(ADMIN), None).await;
    let b = out.ok();
    assert_eq!(b["total"], 2);
    assert_eq!(b["data"][0]["session_id"], "bad1");
    assert_eq!(b["data"][0]["status"], "failed");
    assert_eq!(b["data"][1]["status"], "succeed");
    assert_eq!(b["data"][1]["count"], "1");
    let out = call(
        &r,
        "POST",
        "/scheduler/history-list",
        Some(ADMIN),
        Some(json!({"limit": 1, "offset": 1})),
    )
    .await;
    assert_eq!(out.ok()["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(out.ok()["data"][0]["session_id"], "ok1");

    let out = call(
        &r,
        "GET",
        "/scheduler/history-detail/bad1",
        Some(ADMIN),
        None,
    )
    .await;
    let h = &out.ok()["history"];
    assert_eq!(h["session_id"], "bad1");
    assert_eq!(h["not_allow_reasons"], json!(["2 hosts: not enough CPU"]));
    assert_eq!(h["filtered_total"], 2);
    assert_eq!(
        h["filtered_candidates"][0]["reasons"][0],
        "4 vCPUs free < 16 requested"
    );
    assert!(
        h["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("No host can take")
    );
    assert!(
        h["input"]
            .as_str()
            .unwrap_or_default()
            .contains("\"vcpu_count\":16")
    );
    call(
        &r,
        "GET",
        "/scheduler/history-detail/nope",
        Some(ADMIN),
        None,
    )
    .await
    .error(404, "ResourceNotFoundError");
    call(&r, "GET", "/scheduler/history-list", Some(MEMBER), None)
        .await
        .error(403, "ForbiddenError");
}

#[tokio::test]
async fn cache_and_completion_endpoints() {
    let (t, s, r) = setup().await;
    call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({"session_id": "c1", "vcpu_count": 1, "vmem_size": 512})),
    )
    .await
    .ok();
    assert_eq!(s.stats().pending, 1);
    let out = call(&r, "POST", "/scheduler/completed/c1", Some(ADMIN), None).await;
    assert_eq!(out.ok(), &json!({}));
    assert_eq!((s.stats().pending, s.stats().committed), (0, 1));

    // A host registered behind the cache's back appears after clean-cache.
    t.host("h3", 2, 2048, 1024).await;
    let out = call(
        &r,
        "POST",
        "/scheduler/clean-cache?sync_clean=true",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(out.ok(), &json!({"scheduler": {}}));
    assert_eq!(s.stats().hosts, 3);

    // One host: disable it in the database, clean its cache entry.
    let mut ch = cloudpods_db::Row::new();
    ch.insert("enabled".into(), json!(false));
    cloudpods_db::crud::update(t.db.write(), &cloudpods_region::models::HOSTS, "h3", &ch)
        .await
        .expect("update");
    call(
        &r,
        "POST",
        "/scheduler/clean-cache/h3",
        Some(ADMIN),
        Some(json!({"sync_clean": true})),
    )
    .await
    .ok();
    let out = call(
        &r,
        "POST",
        "/scheduler",
        Some(ADMIN),
        Some(json!({"vcpu_count": 1, "vmem_size": 512, "prefer_host": "h3"})),
    )
    .await;
    let d = out.error(400, "InsufficientResourceError");
    assert!(d.contains("host h3: disabled"), "{d}");
    call(&r, "POST", "/scheduler/clean-cache", Some(MEMBER), None)
        .await
        .error(403, "ForbiddenError");
    call(&r, "POST", "/scheduler/completed/c1", Some(MEMBER), None)
        .await
        .error(403, "ForbiddenError");
    call(&r, "DELETE", "/scheduler/completed/c1", Some(ADMIN), None).await;
}

#[tokio::test]
async fn remote_scheduler_speaks_the_protocol() {
    let (_t, s, r) = setup().await;
    let listener = cloudpods_rest::server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cloudpods_rest::server::serve(listener, r, async move {
        let _ = rx.await;
    }));
    cloudpods_sdk::init_tls();
    let token = cloudpods_apis::identity::TokenBody {
        expires_at: "2099-01-01T00:00:00.000000Z".into(),
        ..Default::default()
    };
    let client = cloudpods_sdk::Client::with_session(
        cloudpods_sdk::Config::new("http://127.0.0.1:9/v3"),
        cloudpods_sdk::Session::new(ADMIN, token),
    )
    .expect("client");
    let remote = RemoteScheduler::with_url(client, format!("http://{addr}"));
    let input = ScheduleInput {
        session_id: "rs".into(),
        count: 2,
        vcpu_count: 2,
        vmem_size: 2048,
        disks: vec![SchedDisk {
            size: 100,
            ..Default::default()
        }],
        ..Default::default()
    };
    let c = remote.schedule(&input).await.expect("placed remotely");
    assert_eq!(c.len(), 2);
    assert_eq!(s.stats().pending, 2);
    remote.completed("rs").await;
    assert_eq!((s.stats().pending, s.stats().committed), (0, 2));
    let mut big = input.clone();
    big.session_id = "rs2".into();
    big.vcpu_count = 64;
    let e = remote.schedule(&big).await.expect_err("too big");
    assert_eq!(e.class, ErrorClass::InsufficientResourceError);
    assert!(e.details.contains("not enough CPU"), "{}", e.details);
    let _ = tx.send(());
    let _ = server.await;
}
