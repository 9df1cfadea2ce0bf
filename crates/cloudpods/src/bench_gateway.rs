//! `cloudpods bench apigateway`: what the gateway costs and what the
//! console weighs — the console's first load from the binary, a servers
//! page of 20 (details) with many servers in the region through the
//! gateway and straight to the region, the gateway's overhead per proxied
//! call (p50 of the same call both ways), and the bundle size (gzip -9 of
//! every script and stylesheet in `web/dist`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use crate::bench::{admin_token, seed_servers, stats_ms, tempfile_dir};
use crate::run::{self, Role};

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Servers in the region (with a NIC and a disk each).
    #[arg(long, default_value_t = 10_000)]
    pub servers: usize,
    /// Requests per measured call.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub async fn apigateway(args: GatewayArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().build()?;
    let dir = tempfile_dir()?;
    let cfg = crate::bench::bench_config(&dir, None);
    let started = run::start(&cfg, &[Role::Keystone, Role::Region, Role::Apigateway]).await?;
    let ks = started.url(Role::Keystone).unwrap_or_default().to_string();
    let region = started.url(Role::Region).unwrap_or_default().to_string();
    let gw = started
        .url(Role::Apigateway)
        .unwrap_or_default()
        .to_string();
    let mut results = serde_json::Map::new();

    // The console's first load: the page and what it names, cold.
    let t0 = Instant::now();
    let index = client.get(format!("{gw}/")).send().await?.text().await?;
    let mut bytes = index.len();
    for asset in index.split('"').filter(|s| s.starts_with("/assets/")) {
        bytes += client
            .get(format!("{gw}{asset}"))
            .send()
            .await?
            .bytes()
            .await?
            .len();
    }
    let first_load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    println!(
        "console first load (index + entry assets, cold): {first_load_ms:.1} ms, {bytes} bytes"
    );
    results.insert(
        "first_load".into(),
        json!({"ms": first_load_ms, "bytes": bytes}),
    );
    let (app, viewers) = bundle_gzip_bytes()?;
    println!(
        "bundle (scripts and stylesheets, gzip -9): {app} bytes without the VNC/serial viewers (target < 400 KB), {viewers} bytes more for them (loaded on the console page only)"
    );
    results.insert("bundle_gzip_bytes".into(), json!(app));
    results.insert("console_viewers_gzip_bytes".into(), json!(viewers));

    let (token, project_id) = admin_token(&client, &ks).await?;
    let t0 = Instant::now();
    seed_servers(&started.db, &project_id, args.servers).await?;
    println!(
        "seeded {} servers in {:.1} s",
        args.servers,
        t0.elapsed().as_secs_f64()
    );

    // A browser's session.
    let login = client
        .post(format!("{gw}/api/v1/auth/login"))
        .json(&json!({"username": "sysadmin", "password": "Bench-Admin-1", "domain": "Default"}))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|kv| kv.starts_with("yunionauth="))
        })
        .map(str::to_string)
        .context("no session cookie from the gateway")?;

    for (label, path) in [
        (
            "servers page of 20 (details)",
            "servers?scope=system&details=true&limit=20",
        ),
        ("zones (one row)", "zones?limit=1"),
    ] {
        let direct = time_calls(args.requests, || {
            client
                .get(format!("{region}/{path}"))
                .header("X-Auth-Token", &token)
        })
        .await?;
        let via = time_calls(args.requests, || {
            client
                .get(format!("{gw}/api/v2/{path}"))
                .header("Cookie", &cookie)
        })
        .await?;
        let overhead =
            via["p50_ms"].as_f64().unwrap_or(0.0) - direct["p50_ms"].as_f64().unwrap_or(0.0);
        println!(
            "{label:<30} region p50 {} ms p99 {} ms | gateway p50 {} ms p99 {} ms | overhead p50 {overhead:.3} ms",
            direct["p50_ms"], direct["p99_ms"], via["p50_ms"], via["p99_ms"]
        );
        results.insert(
            label.into(),
            json!({"region": direct, "gateway": via, "overhead_p50_ms": overhead}),
        );
    }
    results.insert("servers".into(), json!(args.servers));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&Value::Object(results))?)?;
    }
    started.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn time_calls<F>(n: usize, make: F) -> anyhow::Result<Value>
where
    F: Fn() -> reqwest::RequestBuilder,
{
    // Warm the connection and the caches first.
    for _ in 0..5 {
        make().send().await?.bytes().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = make().send().await?;
        let status = r.status();
        r.bytes().await?;
        if !status.is_success() {
            anyhow::bail!("call failed: {status}");
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(stats_ms(samples))
}

/// gzip -9 of the scripts and stylesheets embedded in this binary: the
/// app's, and the console viewers' (noVNC, xterm.js: the `vnc-*` and
/// `serial-*` chunks).
fn bundle_gzip_bytes() -> anyhow::Result<(u64, u64)> {
    use std::io::Write;
    let (mut app, mut viewers) = (0, 0);
    for (path, data) in cloudpods_apigateway::web::files() {
        if !(path.ends_with(".js") || path.ends_with(".css")) {
            continue;
        }
        let mut child = std::process::Command::new("gzip")
            .args(["-9", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("running gzip")?;
        let mut stdin = child.stdin.take().context("gzip stdin")?;
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output()?;
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("writing to gzip"))??;
        let name = path.rsplit('/').next().unwrap_or(&path);
        if name.starts_with("vnc-") || name.starts_with("serial-") {
            viewers += out.stdout.len() as u64;
        } else {
            app += out.stdout.len() as u64;
        }
    }
    Ok((app, viewers))
}
