//! Waiting for asynchronous operations (`--wait`).
//!
//! Cloudpods answers slow operations at once and flips the object's
//! `status`; clients poll `GET /{plural}/{id}` until a target status (or a
//! failure status) shows up. Commands that gain `--wait` (server create,
//! start, stop, image upload, …) use [`wait_for_status`]; on a terminal a
//! spinner shows the current status.

use std::time::{Duration, Instant};

use cloudpods_sdk::ResourceManager;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

/// What to wait for.
#[derive(Debug, Clone)]
pub struct WaitSpec<'a> {
    /// Statuses meaning success (`running`, `ready`).
    pub targets: &'a [&'a str],
    /// Give up after this long.
    pub timeout: Duration,
    /// Time between polls.
    pub interval: Duration,
    /// Show a spinner on stderr.
    pub progress: bool,
}

impl Default for WaitSpec<'_> {
    fn default() -> Self {
        WaitSpec {
            targets: &["running", "ready"],
            timeout: Duration::from_secs(600),
            interval: Duration::from_secs(2),
            progress: true,
        }
    }
}

/// Whether a status is a failure (`*_fail`, `*_failed`, `unknown`).
pub fn is_failure(status: &str) -> bool {
    status.ends_with("_fail") || status.ends_with("_failed") || status == "unknown"
}

/// Poll `id` until its status is one of `spec.targets`; fail on a failure
/// status or after the timeout. Returns the final object.
pub async fn wait_for_status(
    mgr: &ResourceManager,
    id: &str,
    spec: &WaitSpec<'_>,
) -> anyhow::Result<Value> {
    let bar = if spec.progress {
        let b = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
            b.set_style(style);
        }
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let started = Instant::now();
    let result = loop {
        let obj = mgr.get(id, &Map::new()).await?;
        let status = obj
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(b) = &bar {
            b.set_message(format!("{} {id}: {status}", mgr.keyword()));
        }
        if spec.targets.contains(&status.as_str()) {
            break Ok(obj);
        }
        if is_failure(&status) {
            break Err(anyhow::anyhow!(
                "{} {id} failed: status {status}",
                mgr.keyword()
            ));
        }
        if started.elapsed() >= spec.timeout {
            break Err(anyhow::anyhow!(
                "{} {id}: still {status} after {}s",
                mgr.keyword(),
                spec.timeout.as_secs()
            ));
        }
        tokio::time::sleep(spec.interval).await;
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn failure_statuses() {
        assert!(super::is_failure("deploy_fail"));
        assert!(super::is_failure("disk_fail"));
        assert!(super::is_failure("start_failed"));
        assert!(!super::is_failure("running"));
        assert!(!super::is_failure("start_start"));
    }
}
