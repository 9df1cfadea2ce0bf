//! The host agent: `cloudpods host` as its own process on each hypervisor,
//! or inside `cloudpods all-in-one --with-host` for a single-node cloud.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cloudpods_host::Driver;
use cloudpods_host::agent::{AgentConfig, load_or_create_secret};
use cloudpods_host::imagecache::{GlanceSource, ImageCache, ImageSource, UrlSource};
use cloudpods_host::launch::Accel;
use cloudpods_host::qemu::{QemuDriver, QemuOptions};
use cloudpods_host::register::{HostSpec, register, spawn_heartbeat};
use cloudpods_host::sim::{SimDriver, SimOptions};
use cloudpods_host::validate::Roots;

use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Host agent")]
pub struct HostArgs {
    /// Simulate a hypervisor (no QEMU): guests are records that change
    /// state after --sim-delay-ms.
    #[arg(long)]
    pub simulate: bool,
    /// Host name (default: the machine's).
    #[arg(long)]
    pub name: Option<String>,
    /// Zone the host belongs to.
    #[arg(long, default_value = "zone0")]
    pub zone: String,
    /// Wires the host is connected to, `wire[:bridge]` (repeatable).
    #[arg(long = "wire")]
    pub wires: Vec<String>,
    /// Agent port (0 = any free port).
    #[arg(long = "agent-port", alias = "port", default_value_t = 8885)]
    pub port: u16,
    /// CPUs, memory and local storage to report (default: the machine's;
    /// 32 CPUs, 128 GiB, 2 TiB when simulating).
    #[arg(long)]
    pub cpu: Option<i64>,
    /// Memory to report, in MB.
    #[arg(long)]
    pub mem_mb: Option<i64>,
    /// Local storage to report, in GB.
    #[arg(long)]
    pub storage_gb: Option<i64>,
    /// Where guest disks live (default `<data_dir>/disks`).
    #[arg(long)]
    pub storage_path: Option<PathBuf>,
    /// `auto` (KVM when usable, else TCG), `kvm` or `tcg`.
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: String,
    /// This agent's nftables table (one per agent on a machine).
    #[arg(long, default_value = "cloudpods")]
    pub nft_table: String,
    /// Image service base URL (`…/v1`); default: `image` in the catalog.
    #[arg(long)]
    pub image_url: Option<String>,
    /// Heartbeat interval.
    #[arg(long, default_value_t = 30)]
    pub ping_seconds: u64,
    /// How long each simulated action takes.
    #[arg(long, default_value_t = 20)]
    pub sim_delay_ms: u64,
    /// Simulated actions that fail (fault tests), e.g. `deploy`, `start`.
    #[arg(long = "sim-fail")]
    pub sim_fail: Vec<String>,
    /// Keep simulated state here across agent restarts.
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
    /// CPU model for every guest's `-cpu` (default: `host` under KVM,
    /// QEMU's default under TCG).
    #[arg(long)]
    pub cpu_model: Option<String>,
}

/// A running agent: its HTTP server, heartbeat and guest watcher.
pub struct HostAgent {
    pub host_id: String,
    pub storage_id: String,
    pub manager_uri: String,
    pub mode: String,
    pub name: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl HostAgent {
    /// Serve until the HTTP server fails or SIGINT.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        tokio::select! {
            r = &mut self.server => { r??; }
            _ = tokio::signal::ctrl_c() => {}
        }
        self.stop();
        Ok(())
    }

    /// Resolves when the agent's HTTP server stops by itself (it should
    /// not: the region could no longer reach this host).
    pub async fn failed(&mut self) -> anyhow::Error {
        match (&mut self.server).await {
            Ok(Ok(())) => anyhow::anyhow!("the host agent's server stopped"),
            Ok(Err(e)) => anyhow::anyhow!("the host agent's server failed: {e}"),
            Err(e) => anyhow::anyhow!("the host agent's server task: {e}"),
        }
    }

    /// Stop serving. Guests keep running: the next agent re-adopts them.
    pub fn stop(&self) {
        self.server.abort();
        for t in &self.background {
            t.abort();
        }
    }

    pub fn ready_doc(&self) -> serde_json::Value {
        serde_json::json!({"host_id": self.host_id, "storage_id": self.storage_id,
                           "manager_uri": self.manager_uri, "name": self.name, "mode": self.mode})
    }
}

/// `cloudpods host`: log in with the `OS_*` credentials and run the agent.
pub async fn run(cfg: Config, args: HostArgs, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let sdk = cloudpods_sdk::Config::from_env()
        .map_err(|e| anyhow::anyhow!("OS_* credentials are needed to register: {e}"))?;
    let client = cloudpods_sdk::Client::new(sdk)
        .await
        .map_err(|e| anyhow::anyhow!("logging in: {e}"))?;
    let agent = start(&cfg, &args, client, false).await?;
    println!(
        "host {} registered as {} (agent {}, {})",
        agent.name, agent.host_id, agent.manager_uri, agent.mode
    );
    if let Some(path) = &ready_file {
        let mut doc = agent.ready_doc();
        doc["pid"] = serde_json::json!(std::process::id());
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    agent.wait().await
}

/// Start an agent that calls the region as `client`. With
/// `create_topology` (all-in-one), a missing zone or wire is created.
pub async fn start(
    cfg: &Config,
    args: &HostArgs,
    client: cloudpods_sdk::Client,
    create_topology: bool,
) -> anyhow::Result<HostAgent> {
    let storage_path = args
        .storage_path
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("disks"));

    let (driver, cpu, cpu_desc, mem_mb, storage_mb, mode): (Arc<dyn Driver>, _, _, _, _, _) =
        if args.simulate {
            let d = SimDriver::new(SimOptions {
                delay: Duration::from_millis(args.sim_delay_ms),
                fail: args.sim_fail.clone(),
                state_file: args.sim_state.clone(),
                storage_dir: storage_path.clone(),
            });
            (
                Arc::new(d),
                args.cpu.unwrap_or(32),
                "simulated".to_string(),
                args.mem_mb.unwrap_or(131_072),
                args.storage_gb.unwrap_or(2048) * 1024,
                "simulated".to_string(),
            )
        } else {
            std::fs::create_dir_all(&storage_path)
                .with_context(|| format!("creating {}", storage_path.display()))?;
            let facts = cloudpods_host::facts::collect(&storage_path);
            let storage_mb = args
                .storage_gb
                .map(|g| g * 1024)
                .unwrap_or(facts.storage_mb);
            let source: Arc<dyn ImageSource> = match &args.image_url {
                Some(base) => Arc::new(UrlSource {
                    base: base.clone(),
                    http: client.http().clone(),
                }),
                None => Arc::new(GlanceSource(client.clone())),
            };
            let images = Arc::new(ImageCache::new(
                cfg.data_dir.join("image_cache"),
                Some(source),
            ));
            let mut opts = QemuOptions::new(cfg.data_dir.clone());
            opts.storage_dir = storage_path.clone();
            opts.storage_mb = storage_mb;
            opts.qemu = args.qemu.clone();
            opts.accel = match args.accel.as_str() {
                "kvm" => Some(Accel::Kvm),
                "tcg" => Some(Accel::Tcg),
                "auto" | "" => None,
                other => anyhow::bail!("--accel must be auto, kvm or tcg, not {other}"),
            };
            opts.vnc_host = cfg.catalog_host();
            opts.migrate_address = cfg.catalog_host();
            opts.nft_table = args.nft_table.clone();
            opts.cpu_model = args.cpu_model.clone();
            let d = QemuDriver::new(opts, images).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mode = format!("qemu/{}", d.accel().name());
            (
                Arc::new(d),
                args.cpu.unwrap_or(facts.cpu_count),
                facts.cpu_model,
                args.mem_mb.unwrap_or(facts.mem_mb),
                storage_mb,
                mode,
            )
        };
    let addr: SocketAddr = format!("{}:{}", cfg.listen_address, args.port)
        .parse()
        .context("listen address")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let port = listener.local_addr()?.port();
    let host_ip = cfg.catalog_host();
    let manager_uri = format!("http://{host_ip}:{port}");
    // The secret the region signs requests with, made on first start and
    // kept (0600) across restarts; callbacks only to the region this agent
    // registers with.
    let agent_secret = load_or_create_secret(&cfg.data_dir.join("agent.secret"))
        .map_err(|e| anyhow::anyhow!("the agent secret: {e}"))?;
    let region_url = client
        .endpoint("compute_v2")
        .map_err(|e| anyhow::anyhow!("the region is not in the catalog: {e}"))?;
    let agent_cfg = AgentConfig::new(
        &agent_secret,
        &region_url,
        Roots {
            storage: vec![storage_path.clone()],
            image_cache: Some(cfg.data_dir.join("image_cache")),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .with_catalog(client.clone());
    let router = cloudpods_host::agent::router(driver.clone(), agent_cfg.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let name = args.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into())
    });
    let spec = HostSpec {
        name: name.clone(),
        zone: args.zone.clone(),
        wires: args
            .wires
            .iter()
            .map(|w| match w.split_once(':') {
                Some((wire, br)) => (wire.to_string(), br.to_string()),
                None => (w.clone(), format!("br-{w}")),
            })
            .collect(),
        cpu_count: cpu,
        cpu_desc,
        mem_mb,
        storage_mb,
        storage_path: storage_path.display().to_string(),
        manager_uri: manager_uri.clone(),
        access_ip: host_ip,
        agent_secret,
        create_topology,
        driver: mode.clone(),
    };
    let reg = match register(&client, &spec).await {
        Ok(r) => r,
        Err(e) => {
            // Do not leave the agent's port open behind the error.
            server.abort();
            anyhow::bail!("registering with the region: {e}");
        }
    };
    agent_cfg.set_storages(vec![reg.storage_id.clone()]);
    let hb = spawn_heartbeat(
        client.clone(),
        reg.host_id.clone(),
        Duration::from_secs(args.ping_seconds.max(1)),
    );
    let watch = spawn_watch(
        client.clone(),
        driver.clone(),
        reg.host_id.clone(),
        cfg.data_dir.join("image_cache").display().to_string(),
        Duration::from_secs(args.ping_seconds.max(1)),
    );
    Ok(HostAgent {
        host_id: reg.host_id,
        storage_id: reg.storage_id,
        manager_uri,
        mode,
        name,
        server,
        background: vec![hb, watch],
    })
}

/// With each heartbeat, guests whose status changed on their own (a QEMU
/// that died, a guest that powered itself off) are synced by the region,
/// and the image cache is reported when it changed (`storagecachedimages`).
fn spawn_watch(
    client: cloudpods_sdk::Client,
    driver: Arc<dyn Driver>,
    host_id: String,
    cache_path: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let servers = client.resource("compute_v2", "server", "servers");
        let hosts = client.resource("compute_v2", "host", "hosts");
        let mut reported: Option<serde_json::Value> = None;
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let cache = driver.cached_images().await;
            let images: Vec<serde_json::Value> = cache["images"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|i| {
                            serde_json::json!({"id": i["id"], "name": i["name"],
                                               "size": i["size"], "path": i["path"]})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let report = serde_json::json!({"path": cache_path, "images": images});
            if reported.as_ref() != Some(&report) {
                let body = report.as_object().cloned().unwrap_or_default();
                match hosts
                    .perform_action(&host_id, "sync-image-cache", body)
                    .await
                {
                    Ok(_) => reported = Some(report),
                    Err(e) => tracing::warn!(error = %e, "reporting the image cache failed"),
                }
            }
            for (id, status) in driver.changed().await {
                tracing::info!(guest = %id, %status, "guest changed on its own; asking the region to sync");
                if let Err(e) = servers
                    .perform_action(&id, "syncstatus", serde_json::Map::new())
                    .await
                {
                    tracing::warn!(guest = %id, error = %e, "syncstatus failed");
                }
            }
        }
    })
}
