//! `cloudpods bench …`: the benchmarks behind docs/PERFORMANCE.md.
//!
//! They run the real services (in this process, or as child processes for
//! start-up time and memory) against a temporary data dir, and print what
//! they measured. Build with `--release` for representative numbers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cloudpods_db::{Row, crud};
use cloudpods_rest::TokenVerifier;
use serde_json::{Value, json};

use crate::config::Config;
use crate::run::{self, Role};

#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Users to create for the list benchmark.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn stats_ms(mut samples: Vec<f64>) -> Value {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    json!({
        "n": samples.len(),
        "p50_ms": (percentile(&samples, 0.50) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile(&samples, 0.99) * 1000.0).round() / 1000.0,
        "max_ms": (samples.last().copied().unwrap_or(0.0) * 1000.0).round() / 1000.0,
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Start `cloudpods all-in-one` as a child on a (fresh or reused) data dir
/// and time it until `/v3` answers.
async fn time_startup(
    dir: &std::path::Path,
    client: &reqwest::Client,
) -> anyhow::Result<(f64, u32, std::process::Child)> {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let t0 = Instant::now();
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--keystone-port",
            "0",
            "--log",
            "warn",
            "--admin-password",
            "Bench-Admin-1",
            "all-in-one",
            "--ready-file",
        ])
        .arg(&ready)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("spawning cloudpods")?;
    let pid = child.id();
    loop {
        if t0.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("cloudpods did not start within 60 s");
        }
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            let url = v["auth_url"].as_str().unwrap_or_default().to_string();
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok((t0.elapsed().as_secs_f64(), pid, child));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Requests per second of `f` run by `workers` concurrent tasks.
async fn throughput<F, Fut>(seconds: u64, workers: usize, f: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if f().await {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap_or(0);
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

pub async fn identity(args: IdentityArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().build()?;
    let mut results = serde_json::Map::new();

    // 1. Start-up time and idle memory of the real binary.
    let tmp = tempfile_dir()?;
    let (cold, pid, mut child) = time_startup(&tmp, &client).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let (warm, pid, mut child) = time_startup(&tmp, &client).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss_warm = rss_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "start-up (fresh data dir, incl. migrations + bootstrap): {:.3} s",
        cold
    );
    println!(
        "start-up (existing data dir):                            {:.3} s",
        warm
    );
    println!(
        "idle RSS after start: {:.1} MiB (fresh), {:.1} MiB (existing)",
        idle_rss as f64 / 1024.0,
        idle_rss_warm as f64 / 1024.0
    );
    results.insert("startup_cold_s".into(), json!(cold));
    results.insert("startup_warm_s".into(), json!(warm));
    results.insert(
        "idle_rss_mib".into(),
        json!(idle_rss.max(idle_rss_warm) as f64 / 1024.0),
    );

    // 2. An in-process keystone for the rest.
    let dir = tempfile_dir()?;
    let mut cfg = bench_config(&dir, None);
    // Thousands of logins, some failing on purpose.
    cfg.keystone.lockout_attempts = 0;
    let started = run::start(&cfg, &[Role::Keystone]).await?;
    let url = started.url(Role::Keystone).unwrap_or_default().to_string();
    let ks = started.keystone.clone().context("keystone not started")?;
    let auth = |method: Value| json!({"auth": {"identity": method, "scope": {"project": {"name": "system", "domain": {"id": "default"}}}}});
    let pw_auth = auth(
        json!({"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "Bench-Admin-1"}}}),
    );
    let (issue_client, issue_url) = (client.clone(), url.clone());
    let issue = move |body: Value| {
        let client = issue_client.clone();
        let url = issue_url.clone();
        async move {
            let r = client
                .post(format!("{url}/auth/tokens"))
                .json(&body)
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.headers()
                .get("x-subject-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        }
    };
    let token = issue(pw_auth.clone()).await.context("first token")?;

    // Token issue, password method (argon2id on purpose: slow).
    let pw_rate = {
        let issue = issue.clone();
        let body = pw_auth.clone();
        throughput(args.seconds, 4, move || {
            let issue = issue.clone();
            let body = body.clone();
            async move { issue(body).await.is_some() }
        })
        .await
    };
    // Token issue, token method (what services and re-scoping do).
    let tok_auth = auth(json!({"methods": ["token"], "token": {"id": token}}));
    let tok_rate = {
        let issue = issue.clone();
        let body = tok_auth.clone();
        throughput(args.seconds, 8, move || {
            let issue = issue.clone();
            let body = body.clone();
            async move { issue(body).await.is_some() }
        })
        .await
    };
    println!("token issue, password method: {pw_rate:.0}/s (4 clients; argon2id per login)");
    println!("token issue, token method:    {tok_rate:.0}/s (8 clients)");
    results.insert("token_issue_password_per_s".into(), json!(pw_rate));
    results.insert("token_issue_token_per_s".into(), json!(tok_rate));

    // Validation with a warm cache on one core: the verifier every
    // service calls per request, on a single-threaded runtime.
    let one_core = {
        let ks = ks.clone();
        let token = token.clone();
        let seconds = args.seconds;
        std::thread::spawn(move || -> anyhow::Result<f64> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                ks.verify(&token)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let t0 = Instant::now();
                let mut n = 0u64;
                while t0.elapsed() < Duration::from_secs(seconds) {
                    for _ in 0..1000 {
                        if ks.verify(&token).await.is_ok() {
                            n += 1;
                        }
                    }
                }
                Ok(n as f64 / t0.elapsed().as_secs_f64())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("bench thread panicked"))??
    };
    // The same through HTTP (GET /v3/auth/tokens), for scale.
    let http_validate = {
        let client = client.clone();
        let url = url.clone();
        let token = token.clone();
        throughput(args.seconds, 16, move || {
            let client = client.clone();
            let url = url.clone();
            let token = token.clone();
            async move {
                client
                    .get(format!("{url}/auth/tokens"))
                    .header("X-Auth-Token", &token)
                    .header("X-Subject-Token", &token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
    };
    println!("token validation, warm cache, one core (in-process verifier): {one_core:.0}/s");
    println!("token validation over HTTP, GET /v3/auth/tokens (16 clients): {http_validate:.0}/s");
    results.insert("token_validate_warm_one_core_per_s".into(), json!(one_core));
    results.insert("token_validate_http_per_s".into(), json!(http_validate));

    // 3. A 10k-row user list.
    let t0 = Instant::now();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzYWx0YmVuY2g$0000000000000000000000000000000000000000000";
    let mut rows: Vec<Row> = Vec::with_capacity(500);
    for i in 0..args.users {
        let mut r = json!({"name": format!("bench-user-{i:06}"), "domain_id": "default", "password_hash": hash,
                           "email": format!("u{i}@example.com"), "displayname": format!("Bench User {i}")})
        .as_object()
        .cloned()
        .unwrap_or_default();
        crud::prepare_insert(&cloudpods_keystone::models::USERS, &mut r);
        rows.push(r);
        if rows.len() == 500 || i + 1 == args.users {
            let q = crud::insert_sql(&cloudpods_keystone::models::USERS, &rows);
            q.query()?.execute(started.db.write()).await?;
            rows.clear();
        }
    }
    println!(
        "inserted {} users in {:.2} s",
        args.users,
        t0.elapsed().as_secs_f64()
    );
    let mut list_results = serde_json::Map::new();
    for (label, query, n) in [
        ("limit=20", "limit=20", 200),
        ("limit=20 details=false", "limit=20&details=false", 200),
        ("limit=20 offset=9000", "limit=20&offset=9000", 100),
        ("limit=20 search", "limit=20&search=user-0099", 100),
        ("limit=2048", "limit=2048", 20),
    ] {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = client
                .get(format!("{url}/users?scope=system&{query}"))
                .header("X-Auth-Token", &token)
                .send()
                .await?;
            let status = r.status();
            let _ = r.bytes().await?;
            if !status.is_success() {
                anyhow::bail!("list failed: {status}");
            }
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let s = stats_ms(samples);
        println!(
            "GET /v3/users ({} users) {label:<24} p50 {} ms, p99 {} ms",
            args.users + 1,
            s["p50_ms"],
            s["p99_ms"]
        );
        list_results.insert(label.into(), s);
    }
    results.insert("users_list".into(), Value::Object(list_results));
    started.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    if let Some(path) = args.json {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&Value::Object(results))?,
        )?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

pub(crate) fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!(
        "cloudpods-bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos())
    ));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

#[derive(Debug, Clone, clap::Args)]
pub struct RegionArgs {
    /// Servers to seed for the list benchmark.
    #[arg(long, default_value_t = 100_000)]
    pub servers: usize,
    /// Tasks of the task-throughput benchmark.
    #[arg(long, default_value_t = 2_000)]
    pub tasks: usize,
    /// Steps per task.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Use this database instead of a fresh SQLite file.
    #[arg(long)]
    pub database: Option<String>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A task of no-op local steps: measures the engine's own cost per step
/// (claim, run, commit) with nothing else in the way.
struct NoopTask;

const NOOP_STEPS: &[&str] = &["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];

#[async_trait::async_trait]
impl cloudpods_taskman::TaskDef for NoopTask {
    fn name(&self) -> &'static str {
        "BenchNoopTask"
    }
    fn steps(&self) -> &'static [&'static str] {
        NOOP_STEPS
    }
    async fn run_step(
        &self,
        t: &mut cloudpods_taskman::TaskCtx,
        step: &str,
    ) -> cloudpods_taskman::StepResult {
        t.state.insert("last".into(), json!(step));
        Ok(cloudpods_taskman::Step::Done)
    }
    async fn on_failure(
        &self,
        _t: &mut cloudpods_taskman::TaskCtx,
        _: &str,
        _r: &str,
    ) -> cloudpods_taskman::Undone {
        Ok(())
    }
}

/// sysadmin's token (project system) and the system project's id.
pub(crate) async fn admin_token(
    client: &reqwest::Client,
    ks_url: &str,
) -> anyhow::Result<(String, String)> {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "Bench-Admin-1"}}},
                                "scope": {"project": {"name": "system", "domain": {"id": "default"}}}}});
    let r = client
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
    let project_id: String = r.json::<Value>().await?["token"]["project"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    Ok((token, project_id))
}

/// Seed `servers` running servers in `project_id`: one host, one storage,
/// a /15 network, and per server one NIC and one disk, so that details do
/// the same joins as in production.
pub(crate) async fn seed_servers(
    db: &cloudpods_db::Db,
    project_id: &str,
    servers: usize,
) -> anyhow::Result<()> {
    use cloudpods_region::models::{DISKS, GUESTDISKS, GUESTNETWORKS, GUESTS, HOSTS, NETWORKS};
    // Seed: one host, one storage, a /15 network, and per server one NIC and
    // one disk, so that details do the same joins as in production.
    let mut host = json!({"name": "bench-host", "zone_id": "z", "host_status": "online", "status": "running",
                          "cpu_count": 100000, "mem_size": 100000000, "manager_uri": "http://127.0.0.1:9"})
    .as_object()
    .cloned()
    .unwrap_or_default();
    crud::prepare_insert(&HOSTS, &mut host);
    crud::insert(db.write(), &HOSTS, &host).await?;
    let host_id = host["id"].as_str().unwrap_or_default().to_string();
    let mut net = json!({"name": "bench-net", "wire_id": "w", "guest_ip_start": "10.0.0.1", "guest_ip_end": "10.1.255.254",
                         "guest_ip_mask": 15, "tenant_id": project_id, "domain_id": "default"})
    .as_object()
    .cloned()
    .unwrap_or_default();
    crud::prepare_insert(&NETWORKS, &mut net);
    crud::insert(db.write(), &NETWORKS, &net).await?;
    let net_id = net["id"].as_str().unwrap_or_default().to_string();
    let mut batch: (Vec<Row>, Vec<Row>, Vec<Row>, Vec<Row>) = Default::default();
    for i in 0..servers {
        let mut g = json!({"name": format!("bench-{i:06}"), "tenant_id": project_id, "domain_id": "default",
                           "status": "running", "vcpu_count": 1, "vmem_size": 1024, "host_id": host_id,
                           "hypervisor": "kvm", "power_states": "on"})
        .as_object()
        .cloned()
        .unwrap_or_default();
        crud::prepare_insert(&GUESTS, &mut g);
        let gid = g["id"].as_str().unwrap_or_default().to_string();
        let ip = cloudpods_region::ipam::u32_to_ip(0x0a00_0001 + i as u32);
        let mut n = json!({"guest_id": gid, "network_id": net_id, "ip_addr": ip,
                           "mac_addr": format!("00:22:{:02x}:{:02x}:{:02x}:{:02x}", (i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
                           "index": 0, "ifname": "eth0"})
        .as_object()
        .cloned()
        .unwrap_or_default();
        crud::prepare_insert(&GUESTNETWORKS, &mut n);
        let mut d = json!({"name": format!("bench-{i:06}-disk0"), "tenant_id": project_id, "domain_id": "default",
                           "status": "ready", "disk_size": 10240, "storage_id": "s", "disk_type": "sys"})
        .as_object()
        .cloned()
        .unwrap_or_default();
        crud::prepare_insert(&DISKS, &mut d);
        let mut gd = json!({"guest_id": gid, "disk_id": d["id"], "index": 0})
            .as_object()
            .cloned()
            .unwrap_or_default();
        crud::prepare_insert(&GUESTDISKS, &mut gd);
        batch.0.push(g);
        batch.1.push(n);
        batch.2.push(d);
        batch.3.push(gd);
        if batch.0.len() == 500 || i + 1 == servers {
            let mut tx = db.begin().await?;
            for (desc, rows) in [
                (&*GUESTS, &batch.0),
                (&*GUESTNETWORKS, &batch.1),
                (&*DISKS, &batch.2),
                (&*GUESTDISKS, &batch.3),
            ] {
                crud::insert_sql(desc, rows)
                    .query()?
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            batch = Default::default();
        }
    }
    Ok(())
}

/// The platform a benchmark starts in its own process: data under `dir`,
/// every service on a free port, the benchmark admin's password.
pub(crate) fn bench_config(dir: &std::path::Path, database: Option<String>) -> Config {
    let mut cfg = Config {
        data_dir: dir.join("data"),
        database: database.unwrap_or_default(),
        admin_password: "Bench-Admin-1".into(),
        log: "warn".into(),
        ..Default::default()
    };
    cfg.keystone.port = 0;
    cfg.region.port = 0;
    cfg.scheduler.port = 0;
    cfg.glance.port = 0;
    cfg.apigateway.port = 0;
    cfg
}

pub async fn region(args: RegionArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().build()?;
    let mut results = serde_json::Map::new();
    let dir = tempfile_dir()?;
    let cfg = bench_config(&dir, args.database.clone());
    let started = run::start(&cfg, &[Role::Keystone, Role::Region]).await?;
    let ks_url = started.url(Role::Keystone).unwrap_or_default().to_string();
    let region_url = started.url(Role::Region).unwrap_or_default().to_string();
    let db = started.db.clone();
    let (token, project_id) = admin_token(&client, &ks_url).await?;
    let t0 = Instant::now();
    seed_servers(&db, &project_id, args.servers).await?;
    println!(
        "seeded {} servers (+ NICs, disks) in {:.1} s",
        args.servers,
        t0.elapsed().as_secs_f64()
    );

    let mut lists = serde_json::Map::new();
    for (label, query, n) in [
        ("details limit=20", "details=true&limit=20", 200),
        (
            "details limit=20 offset=50000",
            "details=true&limit=20&offset=50000",
            50,
        ),
        (
            "details limit=20 filter status",
            "details=true&limit=20&filter=status.equals(running)",
            100,
        ),
        ("details limit=2048", "details=true&limit=2048", 20),
        ("no details limit=2048", "details=false&limit=2048", 20),
    ] {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = client
                .get(format!("{region_url}/servers?scope=system&{query}"))
                .header("X-Auth-Token", &token)
                .send()
                .await?;
            let status = r.status();
            let _ = r.bytes().await?;
            if !status.is_success() {
                anyhow::bail!("list failed: {status}");
            }
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let s = stats_ms(samples);
        println!(
            "GET /servers ({} servers) {label:<32} p50 {} ms, p99 {} ms",
            args.servers, s["p50_ms"], s["p99_ms"]
        );
        lists.insert(label.into(), s);
    }
    results.insert("servers_list".into(), Value::Object(lists));

    // Task stage throughput.
    let region = started.region.clone().context("region not started")?;
    region.engine.register(std::sync::Arc::new(NoopTask));
    let steps = NOOP_STEPS.len();
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(args.tasks);
    for i in 0..args.tasks {
        let t = cloudpods_taskman::NewTask::new(
            "BenchNoopTask",
            "bench",
            &format!("obj-{i}"),
            "bench",
            json!({}),
            Default::default(),
        );
        ids.push(
            region
                .engine
                .submit(t)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let submitted = t0.elapsed().as_secs_f64();
    for id in &ids {
        let done = region
            .engine
            .wait(id, Duration::from_secs(600))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if done.is_none() {
            anyhow::bail!("task {id} did not finish");
        }
    }
    let total = t0.elapsed().as_secs_f64();
    let transitions = (args.tasks * steps) as f64 / total;
    println!(
        "task engine: {} tasks × {steps} steps in {total:.2} s (submit {submitted:.2} s) = {transitions:.0} step transitions/s",
        args.tasks
    );
    results.insert("task_step_transitions_per_s".into(), json!(transitions));
    let _ = args.steps;
    started.stop().await;
    if std::env::var_os("CLOUDPODS_BENCH_KEEP").is_some() {
        println!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(path) = args.json {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&Value::Object(results))?,
        )?;
    }
    Ok(())
}
