//! Helpers shared by the glance tests: raw uploads, waiting on image
//! status, listing the image directory, making disk images with qemu-img.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Api, Platform, Resp};

/// Send `body` to `url` with `method` and extra headers (octet-stream
/// unless a content type is given).
pub async fn send(
    api: &Api,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = api
        .client
        .request(m, url)
        .header("X-Auth-Token", &api.token);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("Content-Type", "application/octet-stream");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Resp::read(req.body(body).send().await.expect("send")).await
}

/// The image as listed (details), or Null when not visible.
pub async fn image(api: &Api, glance: &str, id: &str) -> Value {
    let r = api
        .get(&format!(
            "{glance}/images?id={id}&details=true&pending_delete=all&scope=system"
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["images"][0].clone()
}

/// Poll until the image reaches one of `statuses`.
pub async fn wait_status(api: &Api, glance: &str, id: &str, statuses: &[&str], secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let img = image(api, glance, id).await;
        if statuses.iter().any(|s| img["status"] == *s) {
            return img;
        }
        assert!(
            Instant::now() < deadline,
            "image {id} did not reach {statuses:?}: {img}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Files in the platform's image directory.
pub fn image_files(p: &Platform) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p.data_dir().join("images"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Live image rows (all projects).
pub async fn count_images(api: &Api, glance: &str) -> usize {
    let r = api
        .get(&format!("{glance}/images?scope=system&pending_delete=all"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["images"].as_array().map(Vec::len).unwrap_or(0)
}

/// `qemu-img` with arguments; panics on failure.
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is installed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img info` as JSON.
pub fn qemu_info(path: &Path) -> Value {
    serde_json::from_str(&qemu_img(&[
        "info",
        "--output=json",
        &path.to_string_lossy(),
    ]))
    .expect("info json")
}

/// A raw image of `mb` MiB with recognisable data at a few offsets, and
/// the same image as qcow2.
pub fn make_images(dir: &Path, mb: u64) -> (PathBuf, PathBuf) {
    use std::io::{Seek, SeekFrom, Write};
    let raw = dir.join("disk.raw");
    let mut f = std::fs::File::create(&raw).expect("raw");
    f.set_len(mb << 20).expect("len");
    for (i, off) in [0u64, 1 << 20, (mb << 20) - 4096].iter().enumerate() {
        f.seek(SeekFrom::Start(*off)).expect("seek");
        f.write_all(format!("cloudpods-rs test block {i}").as_bytes())
            .expect("write");
    }
    drop(f);
    let qcow2 = dir.join("disk.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        &raw.to_string_lossy(),
        &qcow2.to_string_lossy(),
    ]);
    (raw, qcow2)
}

/// `len` bytes without runs of zeros (xorshift): dense on disk, and no
/// faster to hash than real data.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn md5_file(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
