//! Helpers shared by the cloud_aws* tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use cloudpods_cloudprovider::ProviderConfig;
use cloudpods_cloudprovider::aws::AwsProvider;
use cloudpods_testkit::moto::Moto;
use serde_json::Value;

use crate::common::{Api, init_tls};

/// A moto server (the `moto_server` on the PATH, or `$MOTO_SERVER`); fails,
/// naming it, when there is none.
pub fn moto() -> Moto {
    cloudpods_testkit::require_moto();
    Moto::start().expect("moto")
}

pub fn driver(url: &str, region: &str) -> cloudpods_cloudprovider::aws::AwsRegion {
    init_tls();
    AwsProvider::new(ProviderConfig {
        access_url: url.into(),
        account: "AKIDSEED".into(),
        secret: "seed".into(),
        ..Default::default()
    })
    .expect("driver")
    .aws_region(region)
}

pub fn between(text: &str, open: &str, close: &str) -> String {
    let i = text.find(open).map(|i| i + open.len()).unwrap_or(0);
    let j = text[i..].find(close).map(|j| i + j).unwrap_or(i);
    text[i..j].to_string()
}

/// Wait until the account finished a sync after `after` runs.
pub async fn wait_synced(api: &Api, r: &str, id: &str, after: i64, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let a = api.get(&format!("{r}/cloudaccounts/{id}")).await;
        let acc = a.body["cloudaccount"].clone();
        if acc["sync_count"].as_i64().unwrap_or(0) > after && acc["sync_status"] == "idle" {
            return acc;
        }
        assert!(Instant::now() < deadline, "sync did not finish: {acc}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn total(api: &Api, url: &str) -> i64 {
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = api.get(&format!("{url}{sep}limit=1&details=false")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.body["total"].as_i64().unwrap_or(0)
}
