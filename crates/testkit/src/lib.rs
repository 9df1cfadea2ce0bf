//! Test prerequisites, checked the same way in every crate.
//!
//! A test whose prerequisite (MariaDB, root, QEMU, a Python peer) is missing
//! **fails** and names what is missing; it never returns early as passed.
//! `scripts/test-deps` installs and starts all of them, so `scripts/test`
//! (and CI, which runs it) has everything.
//!
//! When `CLOUDPODS_TEST_TALLY` names a directory, each test that reached
//! MariaDB ([`mysql_url`]) or real QEMU ([`require_qemu`]) leaves an empty
//! file `<kind>--<binary>--<test>` there (`kind` is `mariadb` or `qemu`);
//! `scripts/test` counts them, so a run that silently used neither shows.

pub mod moto;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the MariaDB tests create their throw-away databases when
/// `CLOUDPODS_TEST_MYSQL` does not say otherwise.
pub const DEFAULT_MYSQL: &str = "mysql://root@127.0.0.1:3306";

/// The MariaDB server URL (without a database) the tests use:
/// `CLOUDPODS_TEST_MYSQL`, or [`DEFAULT_MYSQL`]. Panics, naming MariaDB, when
/// nothing answers there.
pub fn mysql_url() -> String {
    let url = std::env::var("CLOUDPODS_TEST_MYSQL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_MYSQL.to_string());
    let addr = host_port(&url);
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    require(
        reachable,
        &format!("MariaDB at {addr} (set CLOUDPODS_TEST_MYSQL, or run scripts/test-deps)"),
    );
    record("mariadb");
    url
}

/// `host:port` of a `mysql://user[:pw]@host:port[/db]` URL.
fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hp = rest.split('/').next().unwrap_or(rest);
    if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:3306")
    }
}

/// Fail the test, naming `what`, unless `present`.
pub fn require(present: bool, what: &str) {
    assert!(present, "missing test prerequisite: {what}");
}

/// Whether the tests run as root (bridges, taps, nftables need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether `program` is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(program);
            f.is_file()
        })
    })
}

/// Fail unless running as root with `programs` on the PATH.
pub fn require_root_and(programs: &[&str]) {
    require(is_root(), "root (bridges, taps and nftables need it)");
    for p in programs {
        require(on_path(p), &format!("{p} (run scripts/test-deps)"));
    }
}

/// What a real-QEMU test runs: the emulator, disk images, DHCP, seed ISOs,
/// the guest firewall and links.
pub const QEMU_PROGRAMS: &[&str] = &["qemu-system-x86_64", "qemu-img", "dnsmasq", "nft", "ip"];

/// Fail unless this test can boot real guests (root and [`QEMU_PROGRAMS`]),
/// and count it as a real-QEMU test in the tally.
pub fn require_qemu() {
    require_root_and(QEMU_PROGRAMS);
    record("qemu");
}

/// Fail unless `program` is on the PATH; `install` says what provides it.
pub fn require_program(program: &str, install: &str) {
    require(
        on_path(program),
        &format!("{program} on the PATH ({install}; scripts/test-deps installs it)"),
    );
}

/// Fail unless `python3` on the PATH imports every one of `modules`;
/// `install` names the packages that provide them.
pub fn require_python(modules: &[&str], install: &str) {
    require_program("python3", "python3");
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        ok,
        &format!(
            "python modules {} for the python3 on the PATH (pip install {install}; scripts/test-deps installs them into target/test-venv)",
            modules.join(", ")
        ),
    );
}

/// Fail unless moto can be started: `$MOTO_SERVER` or `moto_server` on the
/// PATH.
pub fn require_moto() {
    if std::env::var_os("MOTO_SERVER").is_some_and(|m| !m.is_empty()) {
        return;
    }
    require_program("moto_server", "pip install 'moto[server]'");
}

/// Leave the tally marker `<kind>--<binary>--<test>` in
/// `$CLOUDPODS_TEST_TALLY`, when that is set.
fn record(kind: &str) {
    let Some(dir) = std::env::var_os("CLOUDPODS_TEST_TALLY").filter(|d| !d.is_empty()) else {
        return;
    };
    let name = marker_name(
        kind,
        std::env::var("NEXTEST_BINARY_ID").ok().as_deref(),
        std::env::var("NEXTEST_TEST_NAME")
            .ok()
            .as_deref()
            .or(std::thread::current().name()),
    );
    let dir = std::path::Path::new(&dir);
    let _ = std::fs::create_dir_all(dir);
    if let Err(e) = std::fs::write(dir.join(&name), b"") {
        panic!("writing the test tally {}: {e}", dir.join(&name).display());
    }
}

/// The marker's file name: `<kind>--<binary>--<test>`, `/` made `_`.
fn marker_name(kind: &str, binary: Option<&str>, test: Option<&str>) -> String {
    let binary = binary.filter(|b| !b.is_empty()).map_or_else(
        || {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "unknown".into())
        },
        str::to_string,
    );
    let test = test.filter(|t| !t.is_empty()).unwrap_or("unknown");
    format!("{kind}--{binary}--{test}").replace(['/', '\\'], "_")
}

/// Processes whose command line starts with `prefix` and contains `needle`
/// (e.g. the QEMUs of a test's data dir).
pub fn procs_matching(needle: &str, prefix: &str) -> usize {
    pids_matching(needle)
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with(prefix))
        .count()
}

/// The error body `v` (Cloudpods' shape) says `needle` in its details.
#[track_caller]
pub fn assert_details(v: &serde_json::Value, needle: &str) {
    let details = v["details"].as_str().unwrap_or_default();
    assert!(
        details.contains(needle),
        "details should say {needle:?}: {v}"
    );
}

/// Send `req` and read its JSON answer; panics (the test fails) on a
/// transport error or a body that is not JSON.
pub async fn json_of(req: reqwest::RequestBuilder) -> serde_json::Value {
    let resp = req.send().await.expect("the request reaches the server");
    resp.json().await.expect("a JSON answer")
}

/// Kill -9 every process (but this one) whose command line contains
/// `needle`: the QEMUs and dnsmasqs a test started under its directory.
pub fn kill_matching(needle: &str) {
    for (pid, _) in pids_matching(needle) {
        if pid != std::process::id() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// What a real host agent of a test leaves behind, removed even when the
/// test failed: its QEMUs and dnsmasqs (found by `dir` in their command
/// line), the taps of the guests under `servers` (named by `tap_name`,
/// the agent's own naming), its bridge and its nftables table.
pub fn clean_host(
    dir: &std::path::Path,
    servers: &std::path::Path,
    bridge: &str,
    table: &str,
    tap_name: impl Fn(&str, i64) -> String,
) {
    use std::process::{Command, Stdio};
    kill_matching(&dir.display().to_string());
    let exists = |dev: &str| std::path::Path::new(&format!("/sys/class/net/{dev}")).exists();
    let ip_del = |dev: &str| {
        let _ = Command::new("ip")
            .args(["link", "del", dev])
            .stderr(Stdio::null())
            .status();
    };
    for g in std::fs::read_dir(servers).into_iter().flatten().flatten() {
        let id = g.file_name().to_string_lossy().into_owned();
        (0..8)
            .map(|i| tap_name(&id, i))
            .filter(|t| exists(t))
            .for_each(|t| ip_del(&t));
    }
    if exists(bridge) {
        ip_del(bridge);
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "bridge", table])
        .stderr(Stdio::null())
        .status();
}

fn pids_matching(needle: &str) -> Vec<(u32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).into_owned();
            cmd.contains(needle).then_some((pid, cmd))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{host_port, marker_name};

    #[test]
    fn tally_marker_names() {
        assert_eq!(
            marker_name("qemu", Some("cloudpods::host_qemu"), Some("boots")),
            "qemu--cloudpods::host_qemu--boots"
        );
        assert_eq!(
            marker_name("mariadb", Some("a/b"), Some("m::t")),
            "mariadb--a_b--m::t"
        );
        assert!(marker_name("qemu", None, None).ends_with("--unknown"));
    }

    #[test]
    fn host_port_of_mysql_urls() {
        assert_eq!(host_port("mysql://root@127.0.0.1:3306"), "127.0.0.1:3306");
        assert_eq!(host_port("mysql://u:p@db/x"), "db:3306");
        assert_eq!(host_port("mysql://root@[::1]:3307/db"), "[::1]:3307");
    }
}
