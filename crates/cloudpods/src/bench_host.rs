//! `cloudpods bench host`: how long from the agent API call to the guest's
//! boot marker on its serial console, next to a hand-written
//! `qemu-system-x86_64` launch of the same image on the same machine in the
//! same run (alternating, so drift hits both alike).
//!
//! Ours: `POST /disks/…/create` (qcow2 overlay over the cached image),
//! `POST /servers/…/deploy` (desc, NoCloud seed ISO), `POST /servers/…/start`
//! (launch script, QEMU, QMP handshake) through the agent's HTTP API, then
//! the marker. Bare: `qemu-img create` of an overlay and QEMU started by
//! hand with the same machine, memory, disk and serial options, then the
//! marker. Neither has a NIC (the bench needs no root); the difference is
//! the agent's overhead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cloudpods_host::Driver;
use cloudpods_host::imagecache::{ImageCache, UrlSource};
use cloudpods_host::qemu::{QemuDriver, QemuOptions};
use serde_json::json;

#[derive(Debug, Clone, clap::Args)]
pub struct HostBenchArgs {
    /// Boots of each kind.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// The guest image (default: scripts/build-test-image's output).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Marker the guest prints on its serial console.
    #[arg(long, default_value = "CLOUDPODS-GUEST-BOOTED")]
    pub marker: String,
    /// Guest memory (MB).
    #[arg(long, default_value_t = 256)]
    pub mem_mb: i64,
}

const MARKER_TIMEOUT: Duration = Duration::from_secs(180);

pub async fn host(args: HostBenchArgs) -> anyhow::Result<()> {
    let image = match &args.image {
        Some(p) => p.clone(),
        None => build_image()?,
    };
    let tmp = ScratchDir::new()?;
    let data = tmp.path().join("agent");
    let cache_dir = data.join("image_cache");
    std::fs::create_dir_all(&cache_dir)?;
    // Pre-seed the cache as a glance download would leave it, so both sides
    // start from an image already on the host.
    let images = Arc::new(ImageCache::new(
        cache_dir.clone(),
        Some(Arc::new(UrlSource {
            base: "http://127.0.0.1:9".into(),
            http: reqwest::Client::new(),
        })),
    ));
    let cached = cache_dir.join("bench-image");
    std::fs::copy(&image, &cached).context("copying the image into the cache")?;
    std::fs::write(
        cache_dir.join("bench-image.json"),
        serde_json::to_string(
            &json!({"id": "bench-image", "name": "bench-image", "format": "qcow2",
            "size": 0, "virtual_size": 0, "checksum": "", "path": cached, "bootable": true}),
        )?,
    )?;
    let mut opts = QemuOptions::new(data.clone());
    opts.nft_table = "cpbench".into();
    let driver = Arc::new(QemuDriver::new(opts, images).map_err(|e| anyhow::anyhow!("{e}"))?);
    let accel = driver.accel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let agent = format!("http://{}", listener.local_addr()?);
    let d: Arc<dyn Driver> = driver.clone();
    let secret = cloudpods_apis::agent_auth::generate_secret();
    let agent_cfg =
        cloudpods_host::agent::AgentConfig::new(&secret, "http://127.0.0.1:9", driver.roots())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    agent_cfg.set_storages(vec!["local".into()]);
    let server = tokio::spawn(async move {
        axum::serve(listener, cloudpods_host::agent::router(d, agent_cfg)).await
    });
    let http = reqwest::Client::new();

    println!(
        "host bench: {} boots each, accel {}, image {}",
        args.iterations,
        accel.name(),
        image.display()
    );
    let (mut ours, mut bare, mut ours_up, mut bare_up) = (vec![], vec![], vec![], vec![]);
    for i in 0..args.iterations {
        let (bu, b) = bare_boot(
            &cached,
            tmp.path(),
            i,
            accel.name(),
            args.mem_mb,
            &args.marker,
        )
        .await?;
        let (ou, o) = agent_boot(
            &http,
            &agent,
            &secret,
            &driver,
            i,
            args.mem_mb,
            &args.marker,
        )
        .await?;
        println!(
            "  boot {}: agent API → QEMU up {:>4} ms, → marker {:>6} ms | hand-written qemu → up {:>4} ms, → marker {:>6} ms",
            i + 1,
            ou.as_millis(),
            o.as_millis(),
            bu.as_millis(),
            b.as_millis()
        );
        ours.push(o);
        bare.push(b);
        ours_up.push(ou);
        bare_up.push(bu);
    }
    server.abort();
    let (mo, mb) = (median(&mut ours), median(&mut bare));
    let (mou, mbu) = (median(&mut ours_up), median(&mut bare_up));
    let ms = |d: Duration| d.as_millis() as i128;
    println!(
        "median to QEMU up: agent {} ms, bare {} ms, overhead {} ms (target < 300 ms)",
        ms(mou),
        ms(mbu),
        ms(mou) - ms(mbu)
    );
    println!(
        "median to marker:  agent {} ms, bare {} ms, difference {} ms (TCG boot noise included)",
        ms(mo),
        ms(mb),
        ms(mo) - ms(mb)
    );
    Ok(())
}

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<ScratchDir> {
        let p = std::env::temp_dir().join(format!("cpbench-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(ScratchDir(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn build_image() -> anyhow::Result<PathBuf> {
    let script = ["scripts/build-test-image", "../scripts/build-test-image"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image"))
                .filter(|p| p.exists())
        })
        .context("scripts/build-test-image not found; pass --image")?;
    let out = Command::new(&script).output()?;
    anyhow::ensure!(
        out.status.success(),
        "build-test-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

async fn wait_marker(serial: &Path, marker: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + MARKER_TIMEOUT;
    loop {
        if std::fs::read_to_string(serial)
            .map(|s| s.contains(marker))
            .unwrap_or(false)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {marker:?} on {} in {MARKER_TIMEOUT:?}",
            serial.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bare_boot(
    image: &Path,
    dir: &Path,
    i: usize,
    accel: &str,
    mem_mb: i64,
    marker: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let overlay = dir.join(format!("bare-{i}.qcow2"));
    let serial = dir.join(format!("bare-{i}.log"));
    let qmp = dir.join(format!("bare-{i}.qmp"));
    let t = Instant::now();
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image)
        .arg(&overlay)
        .status()?;
    anyhow::ensure!(st.success(), "qemu-img create failed");
    let mut child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-machine", "pc", "-accel", accel, "-cpu", "qemu64", "-smp", "1",
        ])
        .args([
            "-m",
            &format!("{mem_mb}M"),
            "-nodefaults",
            "-display",
            "none",
            "-vga",
            "std",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=d0,format=qcow2",
            overlay.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=d0,bootindex=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // Launched = QMP answers, as the agent's start waits for.
    let launched = loop {
        if cloudpods_host::qmp::run(&qmp, "query-status", None)
            .await
            .is_ok()
        {
            break t.elapsed();
        }
        anyhow::ensure!(t.elapsed() < MARKER_TIMEOUT, "bare QEMU did not come up");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let r = wait_marker(&serial, marker).await;
    let elapsed = t.elapsed();
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&overlay);
    r?;
    Ok((launched, elapsed))
}

/// A POST signed as the region signs it.
fn post(
    http: &reqwest::Client,
    secret: &str,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<reqwest::RequestBuilder> {
    cloudpods_host::agent::signed_request(
        http,
        secret,
        reqwest::Method::POST,
        url,
        Some(body),
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn agent_boot(
    http: &reqwest::Client,
    agent: &str,
    secret: &str,
    driver: &QemuDriver,
    i: usize,
    mem_mb: i64,
    marker: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let id = format!("00000000-0000-4000-8000-{i:012}");
    let disk = format!("benchdisk{i}");
    let desc = json!({"uuid": id, "name": format!("bench-{i}"), "hostname": format!("bench-{i}"),
        "cpu": 1, "mem": mem_mb, "nics": [],
        "disks": [{"disk_id": disk, "index": 0, "format": "qcow2", "driver": "virtio", "boot_index": 0}]});
    let t = Instant::now();
    for (path, body) in [
        (
            format!("/disks/local/create/{disk}"),
            json!({"disk": {"size": 64, "image_id": "bench-image", "disk_type": "sys"}}),
        ),
        (
            format!("/servers/{id}/deploy"),
            json!({"desc": desc, "params": {}}),
        ),
        (format!("/servers/{id}/start"), json!({"desc": desc})),
    ] {
        let r = post(http, secret, &format!("{agent}{path}"), &body)?
            .send()
            .await?;
        let status = r.status();
        anyhow::ensure!(status.is_success(), "{path}: {status} {}", r.text().await?);
    }
    let launched = t.elapsed();
    let r = wait_marker(&driver.paths(&id).serial(), marker).await;
    let elapsed = t.elapsed();
    for path in [
        format!("/servers/{id}/delete"),
        format!("/disks/local/delete/{disk}"),
    ] {
        if let Ok(req) = post(http, secret, &format!("{agent}{path}"), &json!({})) {
            let _ = req.send().await;
        }
    }
    r?;
    Ok((launched, elapsed))
}
