//! 5,000 instances across 3 regions, listed in pages much smaller than a
//! region's fleet: every one of them is synced, and a second run with no
//! change writes nothing. (Timings are measured by `cloudpods bench cloud`,
//! not asserted here.)

mod cloud_aws_common;
mod common;

use std::time::Instant;

use cloud_aws_common::*;
use common::*;
use serde_json::json;

const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1"];
const TOTAL: u32 = 5000;

#[tokio::test]
async fn five_thousand_instances_in_three_regions() {
    init_tls();
    let moto = moto();
    // Seed in batches of 50 (one reservation each): 34 reservations per
    // region against pages of 10 → 4 pages per region.
    let t = Instant::now();
    let mut per_region = Vec::new();
    for (i, reg) in REGIONS.iter().enumerate() {
        let d = driver(&moto.url, reg);
        let mut n = TOTAL / 3 + u32::from((i as u32) < TOTAL % 3);
        per_region.push(n);
        while n > 0 {
            let k = n.min(50);
            d.run_instances(k, "ami-12345678", "t2.micro", "")
                .await
                .unwrap();
            n -= k;
        }
    }
    eprintln!(
        "seeded {TOTAL} instances in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let p = Platform::start();
    let api = p.admin().await;
    let r = p.region_url();
    let t = Instant::now();
    let resp = api
        .post(
            &format!("{r}/cloudaccounts"),
            json!({"cloudaccount": {"name": "fleet", "provider": "Aws",
            "account": "AKIDSCALE", "secret": "scale-secret", "access_url": moto.url,
            "options": {"regions": REGIONS, "page_size": 10}}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.id_of("cloudaccount");
    let acc = wait_synced(&api, &r, &id, 0, 600).await;
    eprintln!(
        "full sync {:.1}s: {}",
        t.elapsed().as_secs_f64(),
        acc["sync_result"]
    );
    // moto draws MAC addresses from 3 random bytes: among 5,000 NICs two
    // may share one. That NIC is refused by the unique MAC index and
    // recorded as a per-resource error; anything else is a bug.
    for e in acc["sync_errors"].as_array().unwrap() {
        assert!(
            e["resource"] == "guestnetworks" && e["error"] == "duplicate entry",
            "{acc}"
        );
    }
    assert_eq!(
        total(&api, &format!("{r}/servers?brand=Aws")).await,
        i64::from(TOTAL)
    );
    assert_eq!(
        total(&api, &format!("{r}/disks?brand=Aws")).await,
        i64::from(TOTAL)
    );
    for (reg, n) in REGIONS.iter().zip(&per_region) {
        let cr = api
            .get(&format!("{r}/cloudregions?external_id={reg}"))
            .await;
        let crid = cr.body["cloudregions"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let zones = api
            .get(&format!("{r}/zones?cloudregion={crid}&limit=100"))
            .await;
        let mut sum = 0;
        for z in zones.body["zones"].as_array().unwrap() {
            sum += total(
                &api,
                &format!("{r}/servers?zone={}", z["id"].as_str().unwrap()),
            )
            .await;
        }
        assert_eq!(sum, i64::from(*n), "{reg}");
    }
    // Every instance has its NIC (but a moto MAC duplicate).
    let nics = acc["sync_result"]["resources"]["guestnetworks"]["added"]
        .as_i64()
        .unwrap();
    let dup = acc["error_count"].as_i64().unwrap();
    assert_eq!(nics + dup, i64::from(TOTAL));

    // Nothing changed: nothing written.
    let resp = api
        .post(&format!("{r}/cloudaccounts/{id}/sync"), json!({}))
        .await;
    assert_eq!(resp.status, 200);
    let acc = wait_synced(&api, &r, &id, acc["sync_count"].as_i64().unwrap(), 600).await;
    let res = &acc["sync_result"]["resources"]["servers"];
    assert_eq!(res["unchanged"], json!(TOTAL), "{res}");
    assert_eq!(res["added"], 0);
    assert_eq!(res["updated"], 0);
    assert_eq!(res["removed"], 0);
}
