//! `cloudpods bench glance`: image upload and download throughput the way
//! an operator sees it — `climc image-upload` / `climc image-download`, a
//! process of its own talking HTTP to glance, which stores in a local
//! directory — next to a plain `cp` of the same file on the same disk.
//!
//! The file is random data (nothing to gain from sparseness or zero
//! detection). Upload time runs until `climc` returns, i.e. the server has
//! the bytes on disk and `fsync`ed; "to active" runs until the image is
//! usable: md5 and sha256 (computed behind the writer) recorded and the
//! image probed. `cp` is timed alone and followed by `sync`, for the fair
//! comparison with the durable upload; the download is not synced, like
//! `cp`. Each figure includes starting `climc` and validating its token.
//!
//! Every timed write (cp, upload, download) starts right after a file of
//! the same size was deleted and `sync` ran. This VM (Firecracker, free
//! page reporting) hands memory freed a few seconds ago back to the host,
//! and the page cache then costs a host fault per page on first touch: the
//! same 1 GiB write into the page cache measured 0.18 s on recently freed
//! memory and 1.8 s on memory given back (perf, `copy_folio_from_iter`).
//! Without this, `cp` (run right after deleting the previous copy) got the
//! warm memory and the download the cold.
//!
//! (Measured once: the SDK driving glance from inside the same process —
//! the all-in-one host agent's path — downloads about 2x slower than a
//! separate `climc` on this VM; the time goes to page-cache writes.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::run::{self, Role};

#[derive(Debug, Clone, clap::Args)]
pub struct GlanceArgs {
    /// Size of the test image in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mb: u64,
    /// Directory for the test file, the copies and the image store (one
    /// disk for all); default: the system temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Repetitions (the best run is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write the figures here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// This process's peak resident set (`VmHWM`) in MB (0 where unreadable).
fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

fn make_file(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            // xorshift: incompressible and never zero
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    f.get_ref().sync_all()?;
    Ok(())
}

fn timed_cmd(cmd: &str, args: &[&str]) -> anyhow::Result<f64> {
    let t = Instant::now();
    let st = std::process::Command::new(cmd).args(args).status()?;
    anyhow::ensure!(st.success(), "{cmd} {args:?} failed");
    Ok(t.elapsed().as_secs_f64())
}

pub async fn glance(args: GlanceArgs) -> anyhow::Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("cloudpods-bench-glance-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let size = args.size_mb << 20;
    let src = dir.join("src.img");
    make_file(&src, size).context("writing the test file")?;

    let mut cfg = crate::bench::bench_config(&dir, None);
    cfg.glance.image_quota = 0;
    let started = run::start(&cfg, &[Role::Keystone, Role::Glance]).await?;
    let ks_url = started.url(Role::Keystone).unwrap_or_default().to_string();
    let sdk_cfg = cloudpods_sdk::Config::new(ks_url.clone())
        .with_password("sysadmin", "Bench-Admin-1")
        .with_project("system")
        .with_endpoint_type("public");
    let client = cloudpods_sdk::Client::new(sdk_cfg).await?;
    let token = client.token().id().to_string();
    let images = cloudpods_sdk::image::Images::new(client);
    // The server runs in this process: its peak resident memory after the
    // logins, and after every transfer (the streaming target: flat).
    let hwm_start = vm_hwm_mb();
    let climc = std::env::current_exe()?.with_file_name("climc");
    anyhow::ensure!(
        climc.exists(),
        "{} not found: build it too (cargo build --release --bins)",
        climc.display()
    );
    let run_climc = |args: &[&str]| -> anyhow::Result<(f64, String)> {
        let t = Instant::now();
        let out = std::process::Command::new(&climc)
            .env("OS_AUTH_URL", &ks_url)
            .env("OS_AUTH_TOKEN", &token)
            .env("OS_ENDPOINT_TYPE", "public")
            .args(["--no-cache", "--output-format", "json"])
            .args(args)
            .output()?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "climc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
    };

    let (mut cp, mut cp_sync, mut up, mut active, mut down) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let dst = dir.join("copy.img");
    let s = src.to_string_lossy().into_owned();
    let d = dst.to_string_lossy().into_owned();
    // So that the first cp starts like every later one.
    timed_cmd("cp", &[&s, &d])?;
    for i in 0..args.runs.max(1) {
        let _ = std::fs::remove_file(&dst);
        timed_cmd("sync", &[])?;
        let c = timed_cmd("cp", &[&s, &d])?;
        let sy = timed_cmd("sync", &[])?;
        cp = cp.min(c);
        cp_sync = cp_sync.min(c + sy);
        let _ = std::fs::remove_file(&dst);
        timed_cmd("sync", &[])?;

        let t = Instant::now();
        let name = format!("bench-{i}");
        let (u, out) = run_climc(&[
            "image-upload",
            &name,
            &s,
            "--format",
            "raw",
            "--unprotected",
            "--no-progress",
        ])?;
        let img: Value = serde_json::from_str(&out).context("climc image-upload output")?;
        let id = img["id"].as_str().unwrap_or_default().to_string();
        anyhow::ensure!(!id.is_empty(), "no image id in {out}");
        loop {
            let o = images.show(&id).await?;
            match o["status"].as_str() {
                Some("active") => break,
                Some("save_fail" | "killed") => anyhow::bail!("image failed: {o}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        let a = t.elapsed().as_secs_f64();
        // Like cp and the upload, the download starts right after a file of
        // the same size was deleted (see the module comment).
        timed_cmd("cp", &[&s, &d])?;
        let _ = std::fs::remove_file(&dst);
        timed_cmd("sync", &[])?;
        let (dn, _) = run_climc(&["image-download", &id, "-o", &d, "--no-progress"])?;
        let n = std::fs::metadata(&dst)?.len();
        anyhow::ensure!(n == size, "downloaded {n} of {size} bytes");
        println!(
            "  run {i}: cp {c:.2}s (+sync {sy:.2}s), upload {u:.2}s, to active {a:.2}s, download {dn:.2}s"
        );
        up = up.min(u);
        active = active.min(a);
        down = down.min(dn);
        images.delete(&id, &Map::new()).await?;
        let _ = std::fs::remove_file(&dst);
    }
    let hwm_end = vm_hwm_mb();
    started.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let r = json!({
        "size_mb": args.size_mb,
        "cp_mb_s": mbps(size, cp),
        "cp_sync_mb_s": mbps(size, cp_sync),
        "upload_mb_s": mbps(size, up),
        "upload_to_active_mb_s": mbps(size, active),
        "download_mb_s": mbps(size, down),
        "upload_vs_cp_sync": cp_sync / up,
        "download_vs_cp": cp / down,
        "server_peak_rss_mb_before": hwm_start,
        "server_peak_rss_mb_after": hwm_end,
    });
    println!(
        "glance bench ({} MiB of random data, best of {})",
        args.size_mb,
        args.runs.max(1)
    );
    for (k, v) in r.as_object().into_iter().flatten() {
        if let Value::Number(n) = v {
            println!("  {k:<24} {:.2}", n.as_f64().unwrap_or(0.0));
        }
    }
    if let Some(p) = args.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    Ok(())
}
