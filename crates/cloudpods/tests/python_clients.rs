//! The clients Cloudpods users already have, against our keystone: the
//! official Python SDK (python-yunionclient) and the OpenStack CLI, as found
//! on the PATH. `scripts/test-deps` installs both into `target/test-venv`,
//! whose `bin` `scripts/test` puts first on the PATH; a missing client fails
//! the test with the packages that provide it.

mod common;

use std::process::Command;

use common::*;

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn python_yunionclient_authenticates_and_lists() {
    cloudpods_testkit::require_python(
        &["yunionclient", "httplib2", "prettytable", "Crypto"],
        "python-yunionclient httplib2 prettytable pycryptodome",
    );
    let p = Platform::start();
    let out = Command::new("python3")
        .arg(repo_root().join("tests/py/yunionclient_identity.py"))
        .arg(&p.auth_url)
        .arg(&p.admin_password)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}\nserver:\n{}",
        p.log()
    );
    assert!(stdout.contains("projects: system"), "{stdout}");
    assert!(stdout.contains("users: sysadmin"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn openstack_cli_token_issue_and_project_list() {
    cloudpods_testkit::require_program("openstack", "pip install python-openstackclient");
    let p = Platform::start();
    let run = |args: &[&str]| {
        let out = Command::new("openstack")
            .args(args)
            .env("OS_AUTH_URL", &p.auth_url)
            .env("OS_USERNAME", "sysadmin")
            .env("OS_PASSWORD", &p.admin_password)
            .env("OS_PROJECT_NAME", "system")
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_IDENTITY_API_VERSION", "3")
            .env("OS_INTERFACE", "public")
            .output()
            .expect("run openstack");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "openstack {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&stdout).expect("json output")
    };
    let token = run(&["token", "issue", "-f", "json"]);
    assert!(
        token["id"]
            .as_str()
            .is_some_and(|t| t.starts_with("gAAAAA")),
        "{token}"
    );
    assert!(token["expires"].is_string());
    let projects = run(&["project", "list", "-f", "json"]);
    let names: Vec<&str> = projects
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["Name"].as_str())
        .collect();
    assert_eq!(names, ["system"]);
    let users = run(&["user", "list", "-f", "json"]);
    assert!(
        users
            .as_array()
            .expect("list")
            .iter()
            .any(|u| u["Name"] == "sysadmin")
    );
}
