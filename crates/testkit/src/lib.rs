//! Test prerequisites, checked the same way in every crate.
//!
//! A test whose prerequisite (MariaDB, root, QEMU, a Python peer) is missing
//! **fails** and names what is missing; it never returns early as passed.
//! `scripts/test-deps` installs and starts all of them, so `scripts/test`
//! (and CI, which runs it) has everything.

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

/// Fail unless running as root with `programs` on the PATH (the real-QEMU
/// tests).
pub fn require_root_and(programs: &[&str]) {
    require(is_root(), "root (bridges, taps and nftables need it)");
    for p in programs {
        require(on_path(p), &format!("{p} (run scripts/test-deps)"));
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_of_mysql_urls() {
        assert_eq!(host_port("mysql://root@127.0.0.1:3306"), "127.0.0.1:3306");
        assert_eq!(host_port("mysql://u:p@db/x"), "db:3306");
        assert_eq!(host_port("mysql://root@[::1]:3307/db"), "[::1]:3307");
    }
}
