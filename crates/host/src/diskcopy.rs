//! Copying a stopped guest's disk between hosts (cold migrate), over the
//! management network, host to host.
//!
//! The source makes a stand-alone qcow2 of the disk (`qemu-img convert`
//! flattens the image-cache backing file, so the target needs nothing
//! else) with its SHA-256, and serves it at
//! `GET /disks/{storage}/export/{disk}` to whoever presents the region's
//! pre-signed grant for that path. The target streams it into
//! `<disk>.creating`, hashing as it writes, and renames it into place only
//! when the hash matches; any failure removes the partial file, so a
//! retried copy starts clean (restartable, not resumable).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cloudpods_apis::agent_auth::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DriverError;

/// The header the source sends the copy's SHA-256 in (lower-case hex).
pub const SHA256_HEADER: &str = "x-disk-sha256";

/// A stand-alone copy of a disk, ready to be served.
#[derive(Debug, Clone)]
pub struct DiskExport {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

fn io(what: &str, p: &Path) -> impl Fn(std::io::Error) -> DriverError {
    let what = format!("{what} {}", p.display());
    move |e| DriverError(format!("{what}: {e}"))
}

/// Make `out` a flattened qcow2 copy of `disk`, and hash it.
pub async fn export(disk: &Path, out: &Path) -> Result<DiskExport, DriverError> {
    if let Some(dir) = out.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io("creating", dir))?;
    }
    crate::cmd::qcow2_convert_into(disk, out, false).await?;
    let (sha256, size) = file_sha256(out).await?;
    Ok(DiskExport {
        path: out.to_path_buf(),
        sha256,
        size,
    })
}

/// SHA-256 (hex) and size of a file.
pub async fn file_sha256(p: &Path) -> Result<(String, u64), DriverError> {
    let mut f = tokio::fs::File::open(p).await.map_err(io("opening", p))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(io("reading", p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Fetch the source host's export named by `from` (the `migrate_from` of a
/// disk create: `manager_uri` and the region's `auth` grant) into `tmp`;
/// its size in bytes. `tmp` is removed on any failure.
pub async fn fetch(http: &reqwest::Client, from: &Value, tmp: &Path) -> Result<u64, DriverError> {
    let r = fetch_inner(http, from, tmp).await;
    if r.is_err() {
        let _ = tokio::fs::remove_file(tmp).await;
    }
    r
}

async fn fetch_inner(http: &reqwest::Client, from: &Value, tmp: &Path) -> Result<u64, DriverError> {
    let uri = from["manager_uri"].as_str().unwrap_or_default();
    let auth = &from["auth"];
    let path = auth["path"].as_str().unwrap_or_default();
    let (Some(ts), Some(sig)) = (auth["timestamp"].as_i64(), auth["signature"].as_str()) else {
        return Err(DriverError(
            "the disk copy has no grant from the region (migrate_from.auth)".into(),
        ));
    };
    let url = format!("{}{path}", uri.trim_end_matches('/'));
    let mut resp = http
        .get(&url)
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sig)
        .send()
        .await
        .map_err(|e| DriverError(format!("fetching the disk from {url}: {e}")))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(DriverError(format!(
            "the source host refused the disk copy ({status}): {}",
            body.chars().take(300).collect::<String>()
        )));
    }
    let want = resp
        .headers()
        .get(SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| DriverError("the source host sent no checksum".into()))?;
    let total = resp.content_length();
    let mut f = tokio::fs::File::create(tmp)
        .await
        .map_err(io("creating", tmp))?;
    let mut h = Sha256::new();
    let (mut copied, mut logged) = (0u64, 0u64);
    let started = Instant::now();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| DriverError(format!("the disk copy from {url} broke off: {e}")))?
    {
        h.update(&chunk);
        f.write_all(&chunk).await.map_err(io("writing", tmp))?;
        copied += chunk.len() as u64;
        if copied - logged >= 64 << 20 {
            logged = copied;
            tracing::info!(
                copied_mb = copied >> 20,
                total_mb = total.map(|t| t >> 20),
                "copying a disk"
            );
        }
    }
    f.sync_all().await.map_err(io("syncing", tmp))?;
    if total.is_some_and(|t| t != copied) {
        return Err(DriverError(format!(
            "the disk copy ended after {copied} of {} bytes",
            total.unwrap_or_default()
        )));
    }
    let got = hex::encode(h.finalize());
    if got != want {
        return Err(DriverError(format!(
            "the copied disk's SHA-256 {got} is not the source's {want}"
        )));
    }
    tracing::info!(
        bytes = copied,
        secs = started.elapsed().as_secs_f64(),
        "copied a disk from {uri}"
    );
    Ok(copied)
}
