//! The web console in a real browser: Debian's Chromium driven by
//! playwright-core (web/e2e/console.mjs) against the console the
//! `cloudpods` binary embeds, on a real platform with a simulated host and
//! moto as the AWS account. Logs in as the admin and as a member, creates a
//! server in the wizard until it runs, shows why an impossible request fits
//! nowhere, uploads an image with progress, adds an AWS account, logs out,
//! and survives stale cookies.
//!
//! `CONSOLE_SCREENSHOTS=<dir>` keeps the page screenshots (docs/console/
//! holds the ones the README shows).

#[path = "cloud_aws_common/mod.rs"]
mod cloud_aws_common;
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::gateway::*;
use common::*;

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_chromium() {
    cloudpods_testkit::require_program("chromium", "apt-get install chromium");
    cloudpods_testkit::require_program("node", "Node.js 20");
    let web = web_dir();
    cloudpods_testkit::require(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules/playwright-core (cd web && npm ci; scripts/web-check runs it)",
    );
    let moto = cloud_aws_common::moto();

    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let (_member, _) = p.member(&admin, "e2e-project", "e2e-member").await;
    let shots = std::env::var("CONSOLE_SCREENSHOTS")
        .ok()
        .filter(|s| !s.is_empty());
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = Command::new("node")
        .arg(web.join("e2e/console.mjs"))
        .current_dir(&web)
        .env("CONSOLE_URL", p.gateway_url())
        .env("ADMIN_USER", "sysadmin")
        .env("ADMIN_PASSWORD", "Test-Admin-Pw1")
        .env("MEMBER_USER", "e2e-member")
        .env("MEMBER_PASSWORD", "Member-Pw-123")
        .env("AWS_URL", &moto.url)
        .env("HOST_NAME", "host0")
        .env("NETWORK_NAME", "net0")
        .env("CHROMIUM", "/usr/bin/chromium")
        .env(
            "SCREENSHOT_DIR",
            shots.unwrap_or_else(|| scratch.path().display().to_string()),
        )
        .env("TMPDIR", scratch.path())
        .output()
        .expect("run node web/e2e/console.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\n--- platform log tail ---\n{}",
        tail(&p.log(), 60)
    );
    assert!(stdout.contains("steps passed"), "{stdout}\n{stderr}");

    // The wizard's guest runs on the simulated hypervisor, which has no
    // consoles: opening one says so (a real guest's are in console_qemu).
    let list = admin
        .get(&format!("{}/servers?limit=1", p.region_url()))
        .await;
    let id = list.body["servers"][0]["id"]
        .as_str()
        .expect("a server")
        .to_string();
    let mut b = Browser::new(&p.gateway_url());
    assert_eq!(b.login("sysadmin", "Test-Admin-Pw1").await.status, 200);
    for protocol in ["vnc", "serial"] {
        let a = b
            .post(
                &format!("/api/v1/webconsole/server/{id}"),
                serde_json::json!({"protocol": protocol}),
            )
            .await;
        assert_eq!(a.status, 400, "{:?}", a.body);
        assert_eq!(a.body["class"], "InvalidStatusError", "{:?}", a.body);
        let details = a.body["details"].as_str().unwrap_or_default();
        assert!(
            details.contains(&format!("no {protocol} console")),
            "{details}"
        );
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
