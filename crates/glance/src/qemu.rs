//! `qemu-img`: probing uploaded bytes and converting sub-formats.
//!
//! Uploaded files are untrusted. Probing refuses what would make a later
//! reader touch other files (backing files, external data files, VMDK
//! extents elsewhere) and what is not a disk image at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{GlanceError, Result};

/// What probing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Our format name (`vhd` for qemu's `vpc`; `iso` for raw ISO 9660).
    pub format: String,
    pub virtual_size: u64,
}

/// qemu's driver name for one of our formats.
pub fn qemu_format(fmt: &str) -> &str {
    match fmt {
        "vhd" => "vpc",
        "iso" => "raw",
        f => f,
    }
}

fn our_format(qemu: &str) -> Option<&'static str> {
    Some(match qemu {
        "raw" => "raw",
        "qcow2" => "qcow2",
        "vmdk" => "vmdk",
        "vpc" => "vhd",
        "vhdx" => "vhdx",
        "vdi" => "vdi",
        _ => return None,
    })
}

async fn run(qemu_img: &Path, args: &[&str], timeout: Option<Duration>) -> Result<Vec<u8>> {
    let op = if args.first() == Some(&"info") {
        "info"
    } else {
        "convert"
    };
    let mut cmd = tokio::process::Command::new(qemu_img);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let fut = cmd.output();
    let out = match timeout {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| GlanceError::Qemu {
                op,
                reason: format!("timed out after {} s", t.as_secs()),
            })?,
        None => fut.await,
    }
    .map_err(|e| GlanceError::Qemu {
        op,
        reason: format!("cannot run {}: {e}", qemu_img.display()),
    })?;
    if !out.status.success() {
        return Err(GlanceError::Qemu {
            op,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// `qemu-img info` of a file as JSON.
pub async fn info(qemu_img: &Path, path: &Path) -> Result<Value> {
    let p = path.to_string_lossy();
    let out = run(
        qemu_img,
        &["info", "--output=json", "-U", &p],
        Some(Duration::from_secs(120)),
    )
    .await?;
    serde_json::from_slice(&out).map_err(|e| GlanceError::Qemu {
        op: "info",
        reason: format!("unreadable output: {e}"),
    })
}

/// Whether a raw file carries an ISO 9660 volume descriptor.
fn is_iso(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = [0u8; 5];
    f.seek(SeekFrom::Start(0x8001)).is_ok() && f.read_exact(&mut buf).is_ok() && &buf == b"CD001"
}

/// Probe `path` (of `size` bytes), uploaded as `declared`.
pub async fn probe(qemu_img: &Path, path: &Path, declared: &str, size: u64) -> Result<Probe> {
    if size == 0 {
        return Err(GlanceError::NotAnImage("the image is empty".into()));
    }
    let v = info(qemu_img, path).await.map_err(|e| match e {
        GlanceError::Qemu { reason, .. } => {
            GlanceError::NotAnImage(format!("not a readable disk image: {reason}"))
        }
        e => e,
    })?;
    check_info(&v, path, declared, size, || is_iso(path))
}

/// The checks on `qemu-img info` output (separate for tests).
pub fn check_info(
    v: &Value,
    path: &Path,
    declared: &str,
    size: u64,
    iso: impl FnOnce() -> bool,
) -> Result<Probe> {
    let qfmt = v["format"].as_str().unwrap_or_default();
    let Some(mut format) = our_format(qfmt).map(str::to_string) else {
        return Err(GlanceError::NotAnImage(format!(
            "unsupported image format {qfmt:?}"
        )));
    };
    if let Some(b) = v
        .get("backing-filename")
        .or_else(|| v.get("full-backing-filename"))
        .and_then(Value::as_str)
    {
        return Err(GlanceError::NotAnImage(format!(
            "the image has a backing file ({b}); images must be self-contained"
        )));
    }
    let data = &v["format-specific"]["data"];
    if let Some(df) = data.get("data-file").and_then(Value::as_str) {
        return Err(GlanceError::NotAnImage(format!(
            "the image uses an external data file ({df})"
        )));
    }
    if let Some(extents) = data.get("extents").and_then(Value::as_array) {
        let me = path.to_string_lossy();
        for e in extents {
            let f = e["filename"].as_str().unwrap_or_default();
            if !f.is_empty() && f != me {
                return Err(GlanceError::NotAnImage(format!(
                    "the VMDK refers to another file ({f})"
                )));
            }
        }
    }
    if format == "raw" {
        if iso() {
            format = "iso".into();
        } else if !size.is_multiple_of(512) {
            return Err(GlanceError::NotAnImage(format!(
                "not a disk image: {size} bytes is not a whole number of 512-byte sectors"
            )));
        }
    }
    // Declared raw (the default) takes whatever was found; any other
    // declaration must match what the bytes are.
    if declared != "raw" && declared != format {
        return Err(GlanceError::NotAnImage(format!(
            "declared {declared} but the data is {format}"
        )));
    }
    let virtual_size = v["virtual-size"].as_u64().unwrap_or(size);
    Ok(Probe {
        format,
        virtual_size,
    })
}

/// Convert `src` (`src_fmt`) into `dst` (`dst_fmt`).
pub async fn convert(
    qemu_img: &Path,
    src: &Path,
    src_fmt: &str,
    dst: &Path,
    dst_fmt: &str,
) -> Result<()> {
    let s = src.to_string_lossy();
    let d = dst.to_string_lossy();
    run(
        qemu_img,
        &[
            "convert",
            "-f",
            qemu_format(src_fmt),
            "-O",
            qemu_format(dst_fmt),
            &s,
            &d,
        ],
        None,
    )
    .await
    .map(|_| ())
}

/// Default `qemu-img` location.
pub fn default_qemu_img() -> PathBuf {
    PathBuf::from("qemu-img")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> &'static Path {
        Path::new("/img/x")
    }

    #[test]
    fn refuses_backing_files_and_mismatches() {
        let ok = json!({"format": "qcow2", "virtual-size": 1073741824u64});
        assert_eq!(
            check_info(&ok, p(), "raw", 200_000, || false).unwrap(),
            Probe {
                format: "qcow2".into(),
                virtual_size: 1 << 30
            }
        );
        let backing =
            json!({"format": "qcow2", "virtual-size": 1, "backing-filename": "/etc/passwd"});
        let e = check_info(&backing, p(), "qcow2", 512, || false).unwrap_err();
        assert!(e.to_string().contains("backing file"), "{e}");
        let raw = json!({"format": "raw", "virtual-size": 1000});
        let e = check_info(&raw, p(), "raw", 1000, || false).unwrap_err();
        assert!(e.to_string().contains("not a disk image"), "{e}");
        let e = check_info(&raw, p(), "qcow2", 1024, || false).unwrap_err();
        assert!(e.to_string().contains("declared qcow2"), "{e}");
        assert_eq!(
            check_info(&raw, p(), "iso", 1000, || true).unwrap().format,
            "iso"
        );
        let vpc = json!({"format": "vpc", "virtual-size": 512});
        assert_eq!(
            check_info(&vpc, p(), "vhd", 4096, || false).unwrap().format,
            "vhd"
        );
        let dmg = json!({"format": "dmg"});
        assert!(check_info(&dmg, p(), "raw", 512, || false).is_err());
        let extents = json!({"format": "vmdk", "format-specific": {"data": {"extents": [{"filename": "/etc/shadow"}]}}});
        assert!(check_info(&extents, p(), "vmdk", 512, || false).is_err());
        let df = json!({"format": "qcow2", "format-specific": {"data": {"data-file": "/dev/sda"}}});
        assert!(check_info(&df, p(), "qcow2", 512, || false).is_err());
    }
}
