//! `cloudpods bench cloud`: sync of an AWS fleet emulated by moto.
//!
//! Seeds moto with 5,000 instances across 3 regions, then measures
//! (1) the time moto alone takes to answer the list calls a sync makes
//! (same calls, same pages, same parallelism, no parsing or writing),
//! (2) a full sync of the fleet into a fresh region database,
//! (3) an incremental sync after 10 changes made on the cloud, and
//! (4) a sync with no change. Our overhead = sync time − moto's time.
//! Figures go to docs/PERFORMANCE.md ("Cloud sync (AWS via moto)").

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cloudpods_cloudprovider::ProviderConfig;
use cloudpods_cloudprovider::aws::AwsProvider;
use cloudpods_cloudprovider::aws::client::Client;
use cloudpods_testkit::moto::Moto;
use serde_json::{Value, json};

use crate::run::{self, Role};

#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// Instances in the fleet.
    #[arg(long, default_value_t = 5000)]
    pub instances: u32,
    /// Regions the fleet spreads over (us-east-1, us-west-2, eu-west-1…).
    #[arg(long, default_value_t = 3)]
    pub regions: usize,
    /// Instances per RunInstances call while seeding.
    #[arg(long, default_value_t = 100)]
    pub batch: u32,
    /// Items per page of the list calls (AWS's maximum is 1000).
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Region database (default: SQLite in a temporary directory).
    #[arg(long)]
    pub database: Option<String>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

const ALL_REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ap-northeast-1",
    "eu-central-1",
];

fn cfg(url: &str, page_size: u32) -> ProviderConfig {
    ProviderConfig {
        access_url: url.into(),
        account: "AKIDBENCH".into(),
        secret: "bench-secret".into(),
        page_size,
        timeout: Duration::from_secs(300),
        ..Default::default()
    }
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let i = text.find(open)? + open.len();
    let j = text[i..].find(close)? + i;
    Some(text[i..j].to_string())
}

/// One list call followed to its last page, answer bodies discarded.
async fn raw_paged(
    c: &Client,
    region: &str,
    action: &str,
    mut params: Vec<(String, String)>,
    page: Option<u32>,
) -> anyhow::Result<usize> {
    if let Some(n) = page {
        params.push(("MaxResults".into(), n.to_string()));
    }
    let mut bytes = 0;
    let mut token: Option<String> = None;
    loop {
        let mut ps = params.clone();
        if let Some(t) = &token {
            ps.push(("NextToken".into(), t.clone()));
        }
        let text = c.query("ec2", region, "2016-11-15", action, &ps).await?;
        bytes += text.len();
        token = between(&text, "<nextToken>", "</nextToken>").filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(bytes);
        }
    }
}

/// The list calls of one region's sync, in parallel as the sync makes them.
async fn moto_region(c: &Client, region: &str, page: u32) -> anyhow::Result<usize> {
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let (a, b, d, e, f, g, h, i, j) = tokio::join!(
        raw_paged(c, region, "DescribeAvailabilityZones", vec![], None),
        raw_paged(c, region, "DescribeVpcs", vec![], None),
        raw_paged(c, region, "DescribeSubnets", vec![], None),
        raw_paged(c, region, "DescribeSecurityGroups", vec![], None),
        raw_paged(c, region, "DescribeInstances", vec![], Some(page)),
        raw_paged(c, region, "DescribeVolumes", vec![], Some(page)),
        raw_paged(c, region, "DescribeAddresses", vec![], None),
        raw_paged(
            c,
            region,
            "DescribeImages",
            vec![p("Owner.1", "self")],
            None
        ),
        raw_paged(
            c,
            region,
            "DescribeSnapshots",
            vec![
                p("Filter.1.Name", "owner-id"),
                p("Filter.1.Value.1", "123456789012")
            ],
            None
        ),
    );
    Ok(a? + b? + d? + e? + f? + g? + h? + i? + j?)
}

async fn moto_alone(url: &str, regions: &[&str], page: u32) -> anyhow::Result<(f64, usize)> {
    let prov = AwsProvider::new(cfg(url, page))?;
    let c = prov.client().clone();
    let t = Instant::now();
    c.query("sts", "us-east-1", "2011-06-15", "GetCallerIdentity", &[])
        .await?;
    c.query("ec2", "us-east-1", "2016-11-15", "DescribeRegions", &[])
        .await?;
    let handles: Vec<_> = regions
        .iter()
        .map(|r| {
            let c = c.clone();
            let r = r.to_string();
            tokio::spawn(async move { moto_region(&c, &r, page).await })
        })
        .collect();
    let mut bytes = 0;
    for h in handles {
        bytes += h.await??;
    }
    Ok((t.elapsed().as_secs_f64(), bytes))
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    /// How many AWS servers match `filter` (`status=ready`…).
    async fn servers(&self, filter: &str) -> anyhow::Result<i64> {
        let q = format!("/servers?brand=Aws&limit=1&details=false&{filter}");
        Ok(self.call(reqwest::Method::GET, &q, None).await?["total"]
            .as_i64()
            .unwrap_or(0))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("{path}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    /// Start a sync and wait for its end; returns the wall time and the
    /// account afterwards.
    async fn sync(&self, id: &str) -> anyhow::Result<(f64, Value)> {
        let before = self
            .call(reqwest::Method::GET, &format!("/cloudaccounts/{id}"), None)
            .await?;
        let n = before["cloudaccount"]["sync_count"].as_i64().unwrap_or(0);
        let t = Instant::now();
        self.call(
            reqwest::Method::POST,
            &format!("/cloudaccounts/{id}/sync"),
            Some(json!({})),
        )
        .await?;
        loop {
            let a = self
                .call(reqwest::Method::GET, &format!("/cloudaccounts/{id}"), None)
                .await?;
            let acc = &a["cloudaccount"];
            if acc["sync_count"].as_i64().unwrap_or(0) > n && acc["sync_status"] == "idle" {
                return Ok((t.elapsed().as_secs_f64(), acc.clone()));
            }
            if t.elapsed() > Duration::from_secs(1800) {
                anyhow::bail!("sync did not finish");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn res(acc: &Value, kind: &str) -> String {
    let r = &acc["sync_result"]["resources"][kind];
    format!(
        "+{} ~{} -{} ={}",
        r["added"], r["updated"], r["removed"], r["unchanged"]
    )
}

/// The sync's own split: waiting for (and decoding) the cloud's lists vs
/// diffing and writing, summed over the regions synced in parallel.
fn split(acc: &Value) -> String {
    let r = &acc["sync_result"];
    format!(
        "lists {:.2} s, diff+write {:.2} s, summed over regions",
        r["list_seconds"].as_f64().unwrap_or(0.0),
        r["apply_seconds"].as_f64().unwrap_or(0.0)
    )
}

pub async fn cloud(args: CloudArgs) -> anyhow::Result<()> {
    let regions: Vec<&str> = ALL_REGIONS
        .iter()
        .copied()
        .take(args.regions.clamp(1, ALL_REGIONS.len()))
        .collect();
    let moto = Moto::start().context("starting moto (pip install 'moto[server]')")?;
    let seed_prov = AwsProvider::new(cfg(&moto.url, args.page_size))?;

    // Seed.
    let t = Instant::now();
    let per = args.instances / regions.len() as u32;
    let mut ids_by_region = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let d = seed_prov.aws_region(r);
        let mut n = per + u32::from((i as u32) < args.instances % regions.len() as u32);
        let mut ids = Vec::new();
        while n > 0 {
            let k = n.min(args.batch.max(1));
            ids.extend(d.run_instances(k, "ami-12345678", "t2.micro", "").await?);
            n -= k;
        }
        ids_by_region.push(ids);
    }
    let seed_s = t.elapsed().as_secs_f64();
    println!(
        "seeded {} instances in {} regions: {seed_s:.1} s",
        args.instances,
        regions.len()
    );

    // Moto alone, twice (the first run also warms moto's caches).
    let (m1, bytes) = moto_alone(&moto.url, &regions, args.page_size).await?;
    let (m2, _) = moto_alone(&moto.url, &regions, args.page_size).await?;
    let moto_s = m1.min(m2);
    println!(
        "moto alone, the sync's list calls: {moto_s:.2} s ({:.1} MB of XML; runs {m1:.2} / {m2:.2} s)",
        bytes as f64 / 1e6
    );

    // The platform.
    let dir = std::env::temp_dir().join(format!("cloudpods-bench-cloud-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfgp = crate::bench::bench_config(&dir, args.database.clone());
    let started = run::start(&cfgp, &[Role::Keystone, Role::Region, Role::Scheduler]).await?;
    let ks_url = started.url(Role::Keystone).unwrap_or_default().to_string();
    let region_url = started.url(Role::Region).unwrap_or_default().to_string();
    let http = reqwest::Client::builder().build()?;
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "Bench-Admin-1"}}},
                                "scope": {"project": {"name": "system", "domain": {"id": "default"}}}}});
    let r = http
        .post(format!("{ks_url}/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    let token = r
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .context("no token")?
        .to_string();
    let api = Api {
        http,
        url: region_url,
        token,
    };
    let acc = api
        .call(
            reqwest::Method::POST,
            "/cloudaccounts",
            Some(
                json!({"cloudaccount": {"name": "bench", "provider": "Aws", "account": "AKIDBENCH",
                "secret": "bench-secret", "access_url": moto.url, "auto_sync": false,
                "options": {"regions": regions, "page_size": args.page_size}}}),
            ),
        )
        .await?;
    let id = acc["cloudaccount"]["id"]
        .as_str()
        .context("no account id")?
        .to_string();

    // Full sync.
    let (full_s, acc) = api.sync(&id).await?;
    let servers = api.servers("").await?;
    println!(
        "full sync: {full_s:.2} s (servers {}, disks {}, nics {}; {} errors) → {servers} servers listed; {}",
        res(&acc, "servers"),
        res(&acc, "disks"),
        res(&acc, "guestnetworks"),
        acc["error_count"],
        split(&acc)
    );
    let full_acc = acc.clone();

    // 10 changes on the cloud: 4 terminated, 3 new, 3 stopped.
    let d = seed_prov.aws_region(regions[0]);
    let ids = &ids_by_region[0];
    for id in ids.iter().take(4) {
        d.raw("TerminateInstances", &[("InstanceId.1", id)]).await?;
    }
    d.run_instances(3, "ami-12345678", "t2.micro", "").await?;
    for id in ids.iter().skip(4).take(3) {
        d.raw("StopInstances", &[("InstanceId.1", id)]).await?;
    }
    let (inc_s, acc) = api.sync(&id).await?;
    println!(
        "incremental sync, 10 changes: {inc_s:.2} s (servers {}); {}",
        res(&acc, "servers"),
        split(&acc)
    );
    let inc_acc = acc.clone();
    // The incremental view must equal a full listing: 4 gone, 3 new.
    let after = api.servers("").await?;
    let stopped = api.servers("status=ready").await?;
    println!("after the incremental sync: {after} servers ({stopped} stopped)");
    anyhow::ensure!(
        after == servers - 1,
        "incremental sync disagrees with the cloud: {after} servers"
    );
    let (none_s, acc2) = api.sync(&id).await?;
    println!(
        "sync without change: {none_s:.2} s (servers {}); {}",
        res(&acc2, "servers"),
        split(&acc2)
    );
    let over_full = full_s - moto_s;
    println!(
        "our overhead: full {over_full:.2} s ({:.2}× moto's time in total)",
        full_s / moto_s
    );

    let out = json!({
        "instances": args.instances, "regions": regions, "page_size": args.page_size,
        "seed_seconds": seed_s, "moto_seconds": moto_s, "moto_runs": [m1, m2], "xml_bytes": bytes,
        "full_sync_seconds": full_s, "incremental_10_seconds": inc_s, "no_change_seconds": none_s,
        "overhead_full_seconds": over_full, "servers_after_incremental": after,
        "full_result": full_acc["sync_result"], "incremental_result": inc_acc["sync_result"],
        "no_change_result": acc2["sync_result"], "servers_listed": servers,
    });
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&out)?)?;
    }
    started.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
