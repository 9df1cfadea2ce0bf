//! The official Python SDK (python-yunionclient) against glance: upload
//! with X-Image-Meta headers, HEAD, list, update, delete. `python3` is the
//! one on the PATH (scripts/test: `target/test-venv`, filled by
//! scripts/test-deps); a missing client fails, naming its packages.

mod common;
mod glance_common;

use std::process::Command;

use common::*;
use glance_common::*;

#[test]
fn python_yunionclient_uploads_heads_and_lists_images() {
    cloudpods_testkit::require_python(
        &["yunionclient", "httplib2", "prettytable", "Crypto"],
        "python-yunionclient httplib2 prettytable pycryptodome",
    );
    let p = Platform::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (_, qcow2) = make_images(dir.path(), 8);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/py/yunionclient_image.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&p.auth_url)
        .arg(&p.admin_password)
        .arg(&qcow2)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}\nserver:\n{}",
        p.log()
    );
    assert!(stdout.contains("head: status=active"), "{stdout}");
    assert!(
        stdout.contains(&format!("checksum={}", md5_file(&qcow2))),
        "{stdout}"
    );
    assert!(stdout.contains("list: pyimg"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    assert!(image_files(&p).is_empty(), "{:?}", image_files(&p));
}
