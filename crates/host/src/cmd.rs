//! Running the host's tools (qemu-img, ip, nft, tc, genisoimage) with their
//! own error message in the failure.

use std::ffi::OsStr;

use crate::DriverError;

/// Run `prog args…`; on failure the error holds the tool's stderr.
pub async fn run<I, S>(prog: &str, args: I) -> Result<String, DriverError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = tokio::process::Command::new(prog)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| DriverError(format!("cannot run {prog}: {e}")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let shown: Vec<String> = args
        .iter()
        .take(4)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Err(DriverError(if err.is_empty() {
        format!("{prog} {} failed ({})", shown.join(" "), out.status)
    } else {
        format!("{prog} {}: {err}", shown.join(" "))
    }))
}

/// A new qcow2 of `size` (qemu-img's syntax: bytes, or `512M`), empty or
/// over `backing` (path, format).
pub async fn qcow2_create(
    path: &std::path::Path,
    size: &str,
    backing: Option<(&str, &str)>,
) -> Result<(), DriverError> {
    let mut args: Vec<String> = vec!["create".into(), "-q".into(), "-f".into(), "qcow2".into()];
    if let Some((file, format)) = backing {
        args.extend([
            "-b".into(),
            file.to_string(),
            "-F".into(),
            format.to_string(),
        ]);
    }
    args.extend([path.display().to_string(), size.to_string()]);
    run("qemu-img", args).await.map(|_| ())
}

/// `qemu-img convert` of `src` into a stand-alone qcow2 `dst` (backing
/// files flattened). `shared`: read an image a running guest holds
/// (`-U`; the copy is then crash-consistent).
pub async fn qcow2_convert(
    src: &std::path::Path,
    dst: &std::path::Path,
    shared: bool,
) -> Result<(), DriverError> {
    let mut args = vec!["convert".to_string()];
    if shared {
        args.push("-U".into());
    }
    args.extend([
        "-O".to_string(),
        "qcow2".into(),
        src.display().to_string(),
        dst.display().to_string(),
    ]);
    run("qemu-img", args).await.map(|_| ())
}

/// [`qcow2_convert`] into `<dst>.part`, renamed to `dst` once complete (a
/// failure leaves neither).
pub async fn qcow2_convert_into(
    src: &std::path::Path,
    dst: &std::path::Path,
    shared: bool,
) -> Result<(), DriverError> {
    let tmp = dst.with_extension("part");
    let made = qcow2_convert(src, &tmp, shared).await;
    if made.is_ok() && std::fs::rename(&tmp, dst).is_ok() {
        return Ok(());
    }
    let _ = std::fs::remove_file(&tmp);
    made.and(Err(DriverError(format!(
        "renaming {} into place failed",
        tmp.display()
    ))))
}

/// Run `prog` feeding `input` on stdin.
pub async fn run_stdin(prog: &str, args: &[&str], input: &str) -> Result<String, DriverError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| DriverError(format!("cannot run {prog}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| DriverError(format!("{prog}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| DriverError(format!("{prog}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(DriverError(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether `prog` is on the PATH.
pub fn exists(prog: &str) -> bool {
    if prog.contains('/') {
        return std::path::Path::new(prog).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).exists()))
        .unwrap_or(false)
}
