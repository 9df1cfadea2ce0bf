//! The web console in a real browser: Debian's Chromium driven by
//! playwright-core (web/e2e/console.mjs) against the console the
//! `cloudpods` binary embeds, on a real platform with a simulated host and
//! moto as the AWS account. Logs in as the admin and as a member, creates a
//! server in the wizard until it runs, shows why an impossible request fits
//! nowhere, uploads an image with progress, adds an AWS account and finds
//! its instance among the servers, logs out, survives stale cookies — also
//! the real one of a gateway restarted with a new key.
//!
//! `CONSOLE_SCREENSHOTS=<dir>` keeps the page screenshots (docs/console/
//! holds the ones the README shows).

#[path = "cloud_aws_common/mod.rs"]
mod cloud_aws_common;
mod common;

use std::process::Command;

use common::gateway::*;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn console_in_chromium() {
    let web = browser_test_web_dir();
    let moto = cloud_aws_common::moto();
    // An instance in the cloud before the account exists: the console must
    // list it after the first sync.
    let ec2 = cloud_aws_common::driver(&moto.url, "us-east-1");
    let ids = ec2
        .run_instances(1, "ami-12345678", "t2.micro", "")
        .await
        .expect("seed an instance");
    ec2.raw(
        "CreateTags",
        &[
            ("ResourceId.1", &ids[0]),
            ("Tag.1.Key", "Name"),
            ("Tag.1.Value", "e2e-aws-vm"),
        ],
    )
    .await
    .expect("name the instance");

    let mut p = Platform::start();
    let admin = p.admin_with_network().await;
    let _host = p.sim_host(SimOpts::default());
    let (_member, _) = p.member(&admin, "e2e-project", "e2e-member").await;
    let shots = std::env::var("CONSOLE_SCREENSHOTS")
        .ok()
        .filter(|s| !s.is_empty());
    let scratch = tempfile::tempdir().expect("tempdir");
    let state = scratch.path().join("admin-cookies.json");
    let run = |phase: &str, gateway: String| {
        Command::new("node")
            .arg(web.join("e2e/console.mjs"))
            .current_dir(&web)
            .env("PHASE", phase)
            .env("STATE_FILE", &state)
            .env("CONSOLE_URL", gateway)
            .env("ADMIN_USER", "sysadmin")
            .env("ADMIN_PASSWORD", "Test-Admin-Pw1")
            .env("MEMBER_USER", "e2e-member")
            .env("MEMBER_PASSWORD", "Member-Pw-123")
            .env("AWS_URL", &moto.url)
            .env("AWS_SERVER", "e2e-aws-vm")
            .env("HOST_NAME", "host0")
            .env("NETWORK_NAME", "net0")
            .env("CHROMIUM", "/usr/bin/chromium")
            .env(
                "SCREENSHOT_DIR",
                shots
                    .clone()
                    .unwrap_or_else(|| scratch.path().display().to_string()),
            )
            .env("TMPDIR", scratch.path())
            .output()
            .expect("run node web/e2e/console.mjs")
    };
    assert_browser_passed(run("all", p.gateway_url()), &tail(&p.log(), 60));

    // The wizard's guest runs on the simulated hypervisor, which has no
    // consoles: opening one says so (a real guest's are in console_qemu).
    let list = admin
        .get(&format!(
            "{}/servers?details=true&limit=100",
            p.region_url()
        ))
        .await;
    let id = list.body["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["host"] == "host0")
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("a server on host0: {list:?}"))
        .to_string();
    let mut b = Browser::new(&p.gateway_url());
    assert_eq!(b.login("sysadmin", "Test-Admin-Pw1").await.status, 200);
    for protocol in ["vnc", "serial"] {
        let a = b
            .post(
                &format!("/api/v1/webconsole/server/{id}"),
                json!({"protocol": protocol}),
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

    // The gateway restarts with a new key (as when a deployment rotates
    // it): the browser's old cookie no longer opens, and the console goes
    // to its login page instead of an error.
    p.kill();
    std::fs::remove_file(p.data_dir().join("apigateway.key")).expect("the gateway key file");
    p.restart();
    assert_browser_passed(run("stale", p.gateway_url()), &tail(&p.log(), 60));
}
