//! `cloudpods host`: the host agent as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cloudpods_host::Driver;
use cloudpods_host::imagecache::{GlanceSource, ImageCache, ImageSource, UrlSource};
use cloudpods_host::launch::Accel;
use cloudpods_host::qemu::{QemuDriver, QemuOptions};
use cloudpods_host::register::{HostSpec, register, spawn_heartbeat};
use cloudpods_host::sim::{SimDriver, SimOptions};

use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
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
    #[arg(long, default_value_t = 8885)]
    pub port: u16,
    /// CPUs, memory and local storage to report (default: the machine's;
    /// 32 CPUs, 128 GiB, 2 TiB when simulating).
    #[arg(long)]
    pub cpu: Option<i64>,
    #[arg(long)]
    pub mem_mb: Option<i64>,
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
    /// Write the agent URL and host id here (JSON) when registered.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

pub async fn run(cfg: Config, args: HostArgs) -> anyhow::Result<()> {
    let storage_path = args
        .storage_path
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("disks"));
    let sdk = cloudpods_sdk::Config::from_env()
        .map_err(|e| anyhow::anyhow!("OS_* credentials are needed to register: {e}"))?;
    let client = cloudpods_sdk::Client::new(sdk)
        .await
        .map_err(|e| anyhow::anyhow!("logging in: {e}"))?;

    let (driver, cpu, cpu_desc, mem_mb, storage_mb, mode): (Arc<dyn Driver>, _, _, _, _, _) =
        if args.simulate {
            let d = SimDriver::new(SimOptions {
                delay: Duration::from_millis(args.sim_delay_ms),
                fail: args.sim_fail.clone(),
                state_file: args.sim_state.clone(),
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
            opts.nft_table = args.nft_table.clone();
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
    let router = cloudpods_host::agent::router(driver.clone());
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
    };
    let reg = register(&client, &spec)
        .await
        .map_err(|e| anyhow::anyhow!("registering with the region: {e}"))?;
    let _hb = spawn_heartbeat(
        client.clone(),
        reg.host_id.clone(),
        Duration::from_secs(args.ping_seconds.max(1)),
    );
    let _watch = spawn_watch(
        client.clone(),
        driver.clone(),
        Duration::from_secs(args.ping_seconds.max(1)),
    );
    println!(
        "host {name} registered as {} (agent {manager_uri}, {mode})",
        reg.host_id
    );
    if let Some(path) = &args.ready_file {
        let doc = serde_json::json!({"host_id": reg.host_id, "storage_id": reg.storage_id, "manager_uri": manager_uri, "pid": std::process::id()});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    tokio::select! {
        r = server => { r??; }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// With each heartbeat, guests whose status changed on their own (a QEMU
/// that died, a guest that powered itself off) are synced by the region.
fn spawn_watch(
    client: cloudpods_sdk::Client,
    driver: Arc<dyn Driver>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let servers = client.resource("compute_v2", "server", "servers");
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
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
