//! The scheduler inside the platform: the region's creates go through it,
//! a refusal says why per host, and the forecast and history show the same
//! reasons over the API and through climc.

mod common;

use common::*;
use serde_json::{Value, json};

fn vm(name: &str, mem: i64) -> Value {
    json!({"server": {"name": name, "vcpu_count": 1, "vmem_size": mem, "disks": [{"size": 512}],
                       "nets": [{"network": "net0"}]}})
}

#[tokio::test]
async fn refusals_explain_themselves_in_forecast_history_and_climc() {
    let p = Platform::start();
    let a = p.admin().await;
    p.basic_network(&a).await;
    let _host = p.sim_host(SimOpts {
        cpu: 4,
        mem_mb: 4096,
        ..Default::default()
    });
    let sched = p.scheduler_url();
    let r = p.region_url();

    // Fits: the forecast says so and the create runs.
    let f = a
        .post(
            &format!("{sched}/scheduler/forecast"),
            json!({"scheduler": {"vcpu_count": 1, "vmem_size": 1024, "disks": [{"size": 512}],
                                 "nets": [{"network": "net0"}], "count": 2}}),
        )
        .await;
    assert_eq!(f.status, 200, "{f:?}");
    assert_eq!(f.body["can_create"], true, "{f:?}");
    assert_eq!(f.body["allow_count"], 2);

    // Too much memory: refused with the host's numbers.
    let f = a
        .post(
            &format!("{sched}/scheduler/forecast"),
            json!({"scheduler": {"vcpu_count": 1, "vmem_size": 65536, "disks": [{"size": 512}],
                                 "nets": [{"network": "net0"}]}}),
        )
        .await;
    assert_eq!(f.body["can_create"], false, "{f:?}");
    let text = f.body.to_string();
    assert!(text.contains("host0") && text.contains("memory"), "{text}");

    // The same through climc.
    let (ok, out, err) = p.climc(&[
        "scheduler-forecast",
        "--mem",
        "64g",
        "--disk",
        "512",
        "--net",
        "net0",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Can create: no"), "{out}");
    assert!(out.contains("host0") && out.contains("memory"), "{out}");

    // A create that cannot be placed ends in sched_fail with the reason,
    // and its session is in the history with the per-host detail.
    let resp = a.post(&format!("{r}/servers"), vm("huge", 65536)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let s = wait_until(&a, &format!("{r}/servers/{id}"), 30, |b| {
        b["server"]["status"] == "sched_fail"
    })
    .await;
    let reason = s["server"]["fail_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("memory") && reason.contains("host0"),
        "{reason}"
    );
    let hist = a
        .get(&format!("{sched}/scheduler/history-list?limit=50"))
        .await;
    let failed: Vec<&Value> = hist.body["data"]
        .as_array()
        .map(|d| d.iter().filter(|h| h["status"] == "failed").collect())
        .unwrap_or_default();
    assert!(!failed.is_empty(), "{hist:?}");
    let session = failed[0]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (ok, out, err) = p.climc(&["scheduler-history-show", &session]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&session) && out.contains("host0") && out.contains("memory"),
        "{out}"
    );
    let (ok, out, err) = p.climc(&["scheduler-history-list"]);
    assert!(ok && out.contains("failed"), "{out}{err}");

    // Two servers that fit are placed and run.
    for name in ["a1", "a2"] {
        let resp = a.post(&format!("{r}/servers"), vm(name, 1024)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    wait_until(&a, &format!("{r}/servers?scope=system&limit=20"), 30, |b| {
        b["servers"].as_array().is_some_and(|s| {
            s.iter()
                .filter(|x| x["status"] == "ready" && x["host"] == "host0")
                .count()
                == 2
        })
    })
    .await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_reasons() {
    let p = Platform::start();
    let a = p.admin().await;
    p.basic_network(&a).await;
    let _host = p.sim_host(SimOpts::default());
    let sched = p.scheduler_url();
    for (body, what) in [
        (
            json!({"scheduler": {"vcpu_count": 0, "vmem_size": 512}}),
            "vcpu",
        ),
        (
            json!({"scheduler": {"vcpu_count": 1, "vmem_size": -5}}),
            "vmem",
        ),
        (
            json!({"scheduler": {"vcpu_count": 1, "vmem_size": 512, "nets": [{"network": "nosuchnet"}]}}),
            "nosuchnet",
        ),
        (
            json!({"scheduler": {"vcpu_count": 1, "vmem_size": 512, "prefer_host": "nosuchhost"}}),
            "nosuchhost",
        ),
    ] {
        let resp = a.post(&format!("{sched}/scheduler"), body.clone()).await;
        assert!(
            (400..500).contains(&resp.status),
            "{body}: {} {}",
            resp.status,
            resp.body
        );
        assert!(
            resp.body["details"]
                .as_str()
                .is_some_and(|d| d.contains(what)),
            "{body}: {}",
            resp.body
        );
    }
    // Without a token: 401.
    let anon = reqwest::Client::new()
        .post(format!("{sched}/scheduler/forecast"))
        .json(&json!({"scheduler": {"vcpu_count": 1, "vmem_size": 512}}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(anon, 401);
}
