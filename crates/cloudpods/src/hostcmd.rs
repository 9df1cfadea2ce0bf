//! `cloudpods host`: the host agent as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cloudpods_host::Driver;
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
    /// CPUs, memory and local storage to report (simulation).
    #[arg(long, default_value_t = 32)]
    pub cpu: i64,
    #[arg(long, default_value_t = 131072)]
    pub mem_mb: i64,
    #[arg(long, default_value_t = 2048)]
    pub storage_gb: i64,
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
    if !args.simulate {
        anyhow::bail!("the QEMU driver is not available yet; run with --simulate");
    }
    let driver: Arc<dyn Driver> = Arc::new(SimDriver::new(SimOptions {
        delay: Duration::from_millis(args.sim_delay_ms),
        fail: args.sim_fail.clone(),
        state_file: args.sim_state.clone(),
    }));
    let addr: SocketAddr = format!("{}:{}", cfg.listen_address, args.port)
        .parse()
        .context("listen address")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let port = listener.local_addr()?.port();
    let host_ip = cfg.catalog_host();
    let manager_uri = format!("http://{host_ip}:{port}");
    let server =
        tokio::spawn(
            async move { axum::serve(listener, cloudpods_host::agent::router(driver)).await },
        );

    let sdk = cloudpods_sdk::Config::from_env()
        .map_err(|e| anyhow::anyhow!("OS_* credentials are needed to register: {e}"))?;
    let client = cloudpods_sdk::Client::new(sdk)
        .await
        .map_err(|e| anyhow::anyhow!("logging in: {e}"))?;
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
        cpu_count: args.cpu,
        cpu_desc: "simulated".into(),
        mem_mb: args.mem_mb,
        storage_mb: args.storage_gb * 1024,
        storage_path: cfg.data_dir.join("disks").display().to_string(),
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
    println!(
        "host {name} registered as {} (agent {manager_uri}, simulated)",
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
