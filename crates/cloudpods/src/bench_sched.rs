//! `cloudpods bench scheduler`: placement on a simulated fleet (no agents).
//! 10,000 hosts with mixed capacities, schedtags, shared storages and
//! networks; a batch of 1,000 guests, single placement latency, sustained
//! placements per second, a forecast, and (`--sqlite`) the cache build
//! from a SQLite region database. Figures go to docs/PERFORMANCE.md.

use std::path::PathBuf;

use anyhow::Context;
use cloudpods_scheduler::bench::{BenchOpts, run};

#[derive(Debug, Clone, clap::Args)]
pub struct SchedArgs {
    /// Hosts in the simulated fleet.
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    /// Guests per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Batch requests to time.
    #[arg(long, default_value_t = 5)]
    pub batches: usize,
    /// Single placements to time one after the other.
    #[arg(long, default_value_t = 2000)]
    pub singles: usize,
    /// Seconds of the sustained run.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Concurrent callers in the sustained run.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Also write the fleet into a temporary SQLite database and time the
    /// cache build from it.
    #[arg(long)]
    pub sqlite: bool,
    /// Seed of the fleet generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub async fn scheduler(args: SchedArgs) -> anyhow::Result<()> {
    let opts = BenchOpts {
        hosts: args.hosts,
        batch: args.batch,
        batches: args.batches,
        singles: args.singles,
        seconds: args.seconds,
        concurrency: args.concurrency,
        sqlite: args.sqlite,
        seed: args.seed,
    };
    let v = run(&opts).await.map_err(anyhow::Error::msg)?;
    let f = &v["fleet"];
    println!(
        "fleet: {} hosts, {} storages, {} networks, {} existing guests",
        f["hosts"], f["storages"], f["networks"], f["guests"]
    );
    println!("cache build (in memory): {} ms", v["cache_build_ms"]);
    if let Some(s) = v.get("sqlite") {
        println!(
            "cache build from SQLite: {} ms (one-host reload {} ms)",
            s["cache_build_ms"], s["host_reload_ms"]
        );
    }
    println!(
        "batch of {}: {} ms (worst of {:?})",
        v["batch"]["count"], v["batch"]["max_ms"], v["batch"]["runs_ms"]
    );
    let s = &v["single"];
    println!(
        "single placement: p50 {} ms, p99 {} ms, max {} ms ({} placements)",
        s["p50_ms"], s["p99_ms"], s["max_ms"], s["n"]
    );
    let s = &v["sustained"];
    println!(
        "sustained ({} callers): {} placements/s (p99 {} ms)",
        s["concurrency"], s["per_second"], s["p99_ms"]
    );
    println!(
        "forecast of 50 (every host's reasons): {} ms",
        v["forecast"]["ms"]
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
