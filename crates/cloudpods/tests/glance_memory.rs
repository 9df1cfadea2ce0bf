//! A 2 GiB sparse image through climc, up and down: the bytes stream
//! through (the downloaded copy matches the checksum). The server's peak
//! resident memory is printed here for a look; the figure that counts is
//! measured by `cloudpods bench glance` (docs/PERFORMANCE.md), not asserted.

mod common;
mod glance_common;

use common::*;
use glance_common::*;

/// Peak resident set of a process in kB.
fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn two_gib_sparse_image_streams_in_flat_memory() {
    // All-in-one also runs keystone, whose argon2 password checks (19 MiB
    // each) leave memory resident in a new malloc arena per thread that
    // runs one; two arenas keep that unrelated growth out of the figure.
    let p = Platform::start_with(Opts {
        env: vec![("MALLOC_ARENA_MAX".into(), "2".into())],
        ..Default::default()
    });
    let admin = p.admin().await;
    let g = p.glance_url();
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("big.raw");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&src).expect("create");
        f.set_len(2 << 30).expect("truncate");
        // Some data so the checksum is not that of zeros alone.
        for off in [0u64, 1 << 30, (2 << 30) - 512] {
            f.seek(SeekFrom::Start(off)).expect("seek");
            f.write_all(b"cloudpods-rs sparse test").expect("write");
        }
    }
    // Warm up (logins, first requests) before taking the baseline.
    let (ok, _, err) = p.climc(&["image-list"]);
    assert!(ok, "{err}");
    let before = vm_hwm_kb(p.pid());
    let (ok, out, err) = p.climc(&[
        "--output-format",
        "json",
        "image-upload",
        "big",
        &src.to_string_lossy(),
        "--unprotected",
        "--wait",
        "--no-progress",
    ]);
    assert!(ok, "upload: {out}\n{err}\n{}", p.log());
    let img: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], 2u64 << 30);
    let expected_md5 = md5_file(&src);
    assert_eq!(img["checksum"], expected_md5);

    let dst = dir.path().join("big.copy");
    let (ok, out, err) = p.climc(&[
        "image-download",
        "big",
        "-o",
        &dst.to_string_lossy(),
        "--no-progress",
    ]);
    assert!(ok, "download: {out}\n{err}");
    assert_eq!(std::fs::metadata(&dst).expect("dst").len(), 2 << 30);
    assert_eq!(md5_file(&dst), expected_md5);

    let peak = vm_hwm_kb(p.pid());
    eprintln!("server VmHWM: {before} kB at start, {peak} kB after 2 GiB up and down");
    let _ = (admin, g);
}
