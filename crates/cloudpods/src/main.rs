//! `cloudpods`: one binary that runs any service alone or all of them in one
//! process.

mod bench;
mod bench_cloud;
mod bench_gateway;
mod bench_glance;
mod bench_host;
mod bench_sched;
mod config;
mod hostcmd;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "cloudpods",
    version,
    about = "cloudpods-rs: the Cloudpods control plane in one binary"
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the host agent's arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Every service in one process (embedded SQLite unless --database).
    AllInOne {
        /// Write the service URLs and admin credentials here (JSON) when ready.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Also run the host agent in this process: a single-node cloud
        /// whose guests run on this machine (needs root and QEMU). The
        /// host options below apply; the zone and wires are created when
        /// missing (default wire: `wire0` on bridge `br-wire0`).
        #[arg(long)]
        with_host: bool,
        #[command(flatten)]
        host: hostcmd::HostArgs,
    },
    /// The identity service alone.
    Keystone {
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// The region controller alone.
    Region {
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// The scheduler alone (reads the region database, serves `/scheduler`).
    Scheduler {
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// The image service (glance) alone.
    Glance {
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// The API gateway and web console alone (stateless: any number behind
    /// a load balancer, sharing `[apigateway] cookie_key`).
    Apigateway {
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// The host agent (registers with the region, runs guests).
    Host {
        #[command(flatten)]
        args: hostcmd::HostArgs,
        /// Write the agent URL and host id here (JSON) when registered.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Rotate the Fernet token keys (staged key becomes primary).
    FernetRotate,
    /// Print the version.
    Version,
    /// Benchmarks (build with --release); figures go to docs/PERFORMANCE.md.
    #[command(subcommand)]
    Bench(BenchKind),
}

#[derive(Subcommand)]
enum BenchKind {
    /// Start-up, memory, token issue/validation, 10k-user list.
    Identity(bench::IdentityArgs),
    /// 100k-server list with details, task step throughput.
    Region(bench::RegionArgs),
    /// 10,000 simulated hosts: batch and single placements, throughput.
    Scheduler(bench_sched::SchedArgs),
    /// Agent API call → guest boot marker, next to a hand-written QEMU launch.
    Host(bench_host::HostBenchArgs),
    /// AWS via moto: full and incremental sync of 5,000 instances, next to
    /// moto's own time for the same list calls.
    Cloud(bench_cloud::CloudArgs),
    /// Image upload/download throughput next to `cp` of the same file.
    Glance(bench_glance::GlanceArgs),
    /// The gateway's overhead per call, a servers page through it, the
    /// console's first load and bundle size.
    Apigateway(bench_gateway::GatewayArgs),
}

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Keystone's argon2 password checks allocate 19 MiB each. glibc raises
/// its mmap threshold to the size of the last mmapped block freed, so after
/// the first check those blocks come from the heap and stay resident (one
/// per malloc arena: 20-40 MB of an idle all-in-one). A fixed threshold
/// keeps blocks of 4 MiB and more mmapped and returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::load(&cli.overrides)?;
    init_logging(&cfg.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::AllInOne {
                ready_file,
                with_host,
                host,
            } => run::run(cfg, run::ALL, ready_file, with_host.then_some(host)).await,
            Command::Keystone { ready_file } => {
                run::run(cfg, &[run::Role::Keystone], ready_file, None).await
            }
            Command::Region { ready_file } => {
                run::run(cfg, &[run::Role::Region], ready_file, None).await
            }
            Command::Scheduler { ready_file } => {
                run::run(cfg, &[run::Role::Scheduler], ready_file, None).await
            }
            Command::Glance { ready_file } => {
                run::run(cfg, &[run::Role::Glance], ready_file, None).await
            }
            Command::Apigateway { ready_file } => {
                run::run(cfg, &[run::Role::Apigateway], ready_file, None).await
            }
            Command::Host { args, ready_file } => hostcmd::run(cfg, args, ready_file).await,
            Command::FernetRotate => run::fernet_rotate(cfg).await,
            Command::Bench(BenchKind::Identity(args)) => bench::identity(args).await,
            Command::Bench(BenchKind::Region(args)) => bench::region(args).await,
            Command::Bench(BenchKind::Scheduler(args)) => bench_sched::scheduler(args).await,
            Command::Bench(BenchKind::Host(args)) => bench_host::host(args).await,
            Command::Bench(BenchKind::Cloud(args)) => bench_cloud::cloud(args).await,
            Command::Bench(BenchKind::Glance(args)) => bench_glance::glance(args).await,
            Command::Bench(BenchKind::Apigateway(args)) => bench_gateway::apigateway(args).await,
            Command::Version => {
                println!("cloudpods-rs {}", env!("CARGO_PKG_VERSION"));
                Ok(())
            }
        }
    })
}
