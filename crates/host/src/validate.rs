//! What the agent accepts from the region before it does anything: ids that
//! become file names, paths that must lie in its own storage and image
//! cache, and every desc field that reaches QEMU's command line, the
//! NoCloud seed, dnsmasq or nftables (docs/AGENT_PROTOCOL.md,
//! "Authentication" and "What the agent refuses").
//!
//! A refusal is a [`DriverError`] the HTTP layer answers with 400
//! (`InputParameterError`) before any work starts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::DriverError;

fn bad(msg: String) -> DriverError {
    DriverError(msg)
}

/// An id that becomes a file or directory name: `[A-Za-z0-9_-]{1,64}`.
pub fn id(kind: &str, s: &str) -> Result<(), DriverError> {
    if is_id(s) {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid {kind} id {s:?}: 1-64 letters, digits, '-' or '_'"
        )))
    }
}

pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An optional id (empty is fine).
fn opt_id(kind: &str, v: &Value) -> Result<(), DriverError> {
    match v {
        Value::Null => Ok(()),
        Value::String(s) if s.is_empty() => Ok(()),
        Value::String(s) => id(kind, s),
        other => Err(bad(format!("invalid {kind} id {other}"))),
    }
}

/// A string field, empty when absent; anything but a string is refused.
fn str_of<'a>(v: &'a Value, what: &str) -> Result<&'a str, DriverError> {
    match v {
        Value::Null => Ok(""),
        Value::String(s) => Ok(s),
        other => Err(bad(format!("{what} must be a string, not {other}"))),
    }
}

fn one_of(what: &str, v: &str, allowed: &[&str]) -> Result<(), DriverError> {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(v)) {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid {what} {v:?}: one of {}",
            allowed
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn int_in(what: &str, v: &Value, lo: i64, hi: i64) -> Result<(), DriverError> {
    match v {
        Value::Null => Ok(()),
        v => match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(bad(format!(
                "invalid {what} {v}: an integer from {lo} to {hi}"
            ))),
        },
    }
}

/// QEMU machine types a KVM/QEMU guest may ask for; empty = the default
/// (`pc`).
pub const MACHINES: &[&str] = &["", "pc", "q35"];
pub const BIOSES: &[&str] = &["", "BIOS", "UEFI"];
pub const VGAS: &[&str] = &["", "std", "cirrus", "vmware", "qxl", "virtio", "none"];
pub const VDIS: &[&str] = &["", "vnc", "spice"];
pub const DISK_FORMATS: &[&str] = &["", "qcow2", "raw"];
pub const DISK_DRIVERS: &[&str] = &["", "virtio", "ide", "sata", "scsi", "pvscsi"];
pub const CACHE_MODES: &[&str] = &[
    "",
    "none",
    "writeback",
    "writethrough",
    "directsync",
    "unsafe",
];
pub const NIC_DRIVERS: &[&str] = &["", "virtio", "e1000", "rtl8139", "vmxnet3"];

pub fn machine(m: &str) -> Result<(), DriverError> {
    one_of("machine", m, MACHINES)
}

/// A `-cpu` value: a model name with optional `,+flag`/`,prop=value`s.
pub fn cpu_model(m: &str) -> Result<(), DriverError> {
    if m.len() <= 128
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-+=,".contains(&b))
        && !m.starts_with(['-', ','])
    {
        Ok(())
    } else {
        Err(bad(format!("invalid cpu_model {m:?}")))
    }
}

/// A host name for the seed and DHCP: dot-separated labels of letters,
/// digits, `-` and `_`, at most 253 characters.
pub fn hostname(h: &str) -> Result<(), DriverError> {
    let ok = h.len() <= 253
        && (h.is_empty()
            || h.split('.').all(|l| {
                (1..=63).contains(&l.len())
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("invalid hostname {h:?}")))
    }
}

/// A network interface name `ip` accepts: 1-15 of `[A-Za-z0-9_.-]`, not
/// starting with `-` or `.`.
pub fn ifname(what: &str, n: &str) -> Result<(), DriverError> {
    let ok = (1..=15).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !n.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(bad(format!("invalid {what} {n:?}")))
    }
}

/// A unicast-format MAC `xx:xx:xx:xx:xx:xx`.
pub fn mac(m: &str) -> Result<(), DriverError> {
    let parts: Vec<&str> = m.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("invalid MAC address {m:?}")))
    }
}

/// An IPv4 address; `what` names the field.
pub fn ipv4(what: &str, s: &str) -> Result<Ipv4Addr, DriverError> {
    s.parse()
        .map_err(|_| bad(format!("invalid {what} {s:?}: not an IPv4 address")))
}

/// The directories the agent's files may live in.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Mount points of the agent's storages (disks, snapshots).
    pub storage: Vec<PathBuf>,
    /// The image cache (images, ISOs).
    pub image_cache: Option<PathBuf>,
}

impl Roots {
    /// Refuse a path unless it is absolute, has no `..` components and
    /// lies (after resolving symlinks of the part that exists) under one of
    /// the storage directories, or the image cache when `cache_ok`.
    pub fn check(&self, what: &str, path: &str, cache_ok: bool) -> Result<PathBuf, DriverError> {
        let refuse = |why: &str| bad(format!("{what} {path:?} {why}"));
        let p = Path::new(path);
        if !p.is_absolute() || path.contains('\0') {
            return Err(refuse("is not an absolute path"));
        }
        if !p
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        {
            return Err(refuse("has '..' components"));
        }
        let mut roots: Vec<&PathBuf> = self.storage.iter().collect();
        if cache_ok && let Some(c) = &self.image_cache {
            roots.push(c);
        }
        let resolved = resolve(p);
        for root in roots {
            let r = resolve(root);
            if p != root.as_path()
                && p.starts_with(root)
                && resolved.starts_with(&r)
                && resolved != r
            {
                return Ok(p.to_path_buf());
            }
        }
        Err(refuse(if cache_ok {
            "is outside this host's storage and image cache directories"
        } else {
            "is outside this host's storage directories"
        }))
    }
}

/// `p` with symlinks resolved in its longest existing prefix (the rest
/// appended as is).
fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let mut rest = Vec::new();
    let mut cur = p;
    while let Some(parent) = cur.parent() {
        if let Some(name) = cur.file_name() {
            rest.push(name.to_owned());
        }
        if let Ok(c) = parent.canonicalize() {
            let mut out = c;
            for n in rest.iter().rev() {
                out.push(n);
            }
            return out;
        }
        cur = parent;
    }
    p.to_path_buf()
}

/// Everything the agent knows to check a request against.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub roots: Roots,
    /// The storages registered for this host.
    pub storages: Vec<String>,
}

impl Limits {
    pub fn storage(&self, s: &str) -> Result<(), DriverError> {
        id("storage", s)?;
        if self.storages.iter().any(|x| x == s) {
            Ok(())
        } else {
            Err(bad(format!("storage {s} is not a storage of this host")))
        }
    }
}

/// The fields of a guest desc that reach QEMU's command line (no paths):
/// also checked again by the QEMU driver right before it launches.
pub fn launch_fields(desc: &Value) -> Result<(), DriverError> {
    machine(str_of(&desc["machine"], "machine")?)?;
    one_of("bios", str_of(&desc["bios"], "bios")?, BIOSES)?;
    one_of("vga", str_of(&desc["vga"], "vga")?, VGAS)?;
    one_of("vdi", str_of(&desc["vdi"], "vdi")?, VDIS)?;
    cpu_model(str_of(&desc["cpu_model"], "cpu_model")?)?;
    int_in("cpu", &desc["cpu"], 1, 512)?;
    int_in("mem", &desc["mem"], 64, 16 * 1024 * 1024)?;
    opt_id("server", &desc["uuid"])?;
    for d in desc["disks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        id("disk", str_of(&d["disk_id"], "disk_id")?)?;
        one_of("disk format", str_of(&d["format"], "format")?, DISK_FORMATS)?;
        one_of("disk driver", str_of(&d["driver"], "driver")?, DISK_DRIVERS)?;
        one_of(
            "disk cache_mode",
            str_of(&d["cache_mode"], "cache_mode")?,
            CACHE_MODES,
        )?;
        int_in("disk index", &d["index"], 0, 1024)?;
        int_in("disk boot_index", &d["boot_index"], -1, 1024)?;
    }
    Ok(())
}

/// A whole guest desc as the region sends it.
pub fn desc(desc: &Value, lim: &Limits) -> Result<(), DriverError> {
    if desc.is_null() {
        return Ok(());
    }
    if !desc.is_object() {
        return Err(bad("desc must be an object".into()));
    }
    launch_fields(desc)?;
    hostname(str_of(&desc["hostname"], "hostname")?)?;
    for d in desc["disks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let path = str_of(&d["path"], "disk path")?;
        if !path.is_empty() {
            lim.roots.check("disk path", path, false)?;
        }
        let st = str_of(&d["storage_id"], "storage_id")?;
        if !st.is_empty() {
            lim.storage(st)?;
        }
        opt_id("image", &d["template_id"])?;
    }
    for key in ["cdrom", "iso", "seed"] {
        if let Some(p) = desc.get(key).and_then(Value::as_str)
            && !p.is_empty()
        {
            lim.roots.check(key, p, true)?;
        }
    }
    for n in desc["nics"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        nic(n)?;
    }
    let rules = desc["secgroup_rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    crate::net::rule_lines(rules, "in")?;
    crate::net::rule_lines(rules, "out")?;
    Ok(())
}

fn nic(n: &Value) -> Result<(), DriverError> {
    mac(str_of(&n["mac"], "mac")?)?;
    ipv4("NIC ip", str_of(&n["ip"], "ip")?)?;
    int_in("NIC masklen", &n["masklen"], 0, 32)?;
    let gw = str_of(&n["gateway"], "gateway")?;
    if !gw.is_empty() {
        ipv4("gateway", gw)?;
    }
    for d in str_of(&n["dns"], "dns")?
        .split([',', ' '])
        .filter(|d| !d.is_empty())
    {
        d.parse::<IpAddr>()
            .map_err(|_| bad(format!("invalid DNS server {d:?}: not an IP address")))?;
    }
    let br = str_of(&n["bridge"], "bridge")?;
    if !br.is_empty() {
        ifname("bridge", br)?;
    }
    let ifn = str_of(&n["ifname"], "ifname")?;
    if !ifn.is_empty() {
        ifname("ifname", ifn)?;
    }
    one_of("NIC driver", str_of(&n["driver"], "driver")?, NIC_DRIVERS)?;
    int_in("NIC bw", &n["bw"], 0, 1_000_000)?;
    int_in("NIC index", &n["index"], 0, 1024)?;
    int_in("NIC vlan", &n["vlan"], 0, 4095)?;
    Ok(())
}

/// The `disk` of `POST /disks/{storage}/create/{disk}`.
pub fn disk_spec(d: &Value) -> Result<(), DriverError> {
    if d.is_null() {
        return Ok(());
    }
    int_in("disk size", &d["size"], 0, i64::MAX)?;
    one_of("disk format", str_of(&d["format"], "format")?, DISK_FORMATS)?;
    opt_id("image", &d["image_id"])?;
    opt_id("snapshot", &d["snapshot_id"])?;
    opt_id("disk", &d["disk_id"])?;
    let fs = str_of(&d["fs_format"], "fs_format")?;
    if fs.len() > 16 || !fs.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(format!("invalid fs_format {fs:?}")));
    }
    let dt = str_of(&d["disk_type"], "disk_type")?;
    one_of("disk_type", dt, &["", "sys", "data", "swap"])?;
    if let Some(m) = d.get("migrate_from").filter(|m| !m.is_null()) {
        opt_id("host", &m["host_id"])?;
        opt_id("storage", &m["storage_id"])?;
        let uri = str_of(&m["manager_uri"], "migrate_from.manager_uri")?;
        match reqwest::Url::parse(uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(bad(format!("invalid migrate_from.manager_uri {uri:?}"))),
        }
        // The grant: for a disk export and nothing else.
        if let Some(a) = m.get("auth").filter(|a| !a.is_null()) {
            let p = str_of(&a["path"], "migrate_from.auth.path")?;
            let parts: Vec<&str> = p.split('/').collect();
            let ok = parts.len() == 5
                && parts[0].is_empty()
                && parts[1] == "disks"
                && parts[3] == "export"
                && id("storage", parts[2]).is_ok()
                && id("disk", parts[4]).is_ok();
            if !ok {
                return Err(bad(format!("invalid migrate_from.auth.path {p:?}")));
            }
            int_in("migrate_from.auth.timestamp", &a["timestamp"], 0, i64::MAX)?;
            let sig = str_of(&a["signature"], "migrate_from.auth.signature")?;
            if sig.len() > 128 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("invalid migrate_from.auth.signature".to_string()));
            }
        }
        // The source's path: lexically sound; the source checks it
        // against its own storage when it serves the copy.
        let p = str_of(&m["disk_path"], "migrate_from.disk_path")?;
        let path = Path::new(p);
        if !p.is_empty()
            && (!path.is_absolute()
                || !path
                    .components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_))))
        {
            return Err(bad(format!("invalid migrate_from.disk_path {p:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lim(dir: &Path) -> Limits {
        Limits {
            roots: Roots {
                storage: vec![dir.join("disks")],
                image_cache: Some(dir.join("cache")),
            },
            storages: vec!["st1".into()],
        }
    }

    #[test]
    fn paths() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("disks")).unwrap();
        let l = lim(t.path());
        let d = t.path().join("disks");
        let ok = d.join("a.qcow2").display().to_string();
        assert!(l.roots.check("disk", &ok, false).is_ok());
        for bad in [
            "relative/x".to_string(),
            "/etc/passwd".into(),
            format!("{}/../../etc/passwd", d.display()),
            d.display().to_string(),
            t.path().join("cache/i").display().to_string(),
        ] {
            assert!(l.roots.check("disk", &bad, false).is_err(), "{bad}");
        }
        assert!(
            l.roots
                .check("iso", &t.path().join("cache/i").display().to_string(), true)
                .is_ok()
        );
        // A symlink inside storage pointing out of it.
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        let via = d.join("link/passwd").display().to_string();
        assert!(l.roots.check("disk", &via, false).is_err());
    }

    #[test]
    fn descs() {
        let t = tempfile::tempdir().unwrap();
        let l = lim(t.path());
        let disk = t.path().join("disks/d1.qcow2").display().to_string();
        let good = json!({"uuid": "g-1", "cpu": 1, "mem": 256, "machine": "q35", "hostname": "vm-1",
            "disks": [{"disk_id": "d1", "path": disk, "storage_id": "st1", "format": "qcow2"}],
            "nics": [{"mac": "00:22:aa:bb:cc:dd", "ip": "10.0.0.5", "masklen": 24, "gateway": "10.0.0.1",
                      "dns": "8.8.8.8", "bridge": "br0", "driver": "virtio"}],
            "secgroup_rules": [{"direction": "in", "protocol": "tcp", "ports": "22", "cidr": "10.0.0.0/8",
                                "action": "allow", "priority": 1}]});
        desc(&good, &l).unwrap();
        let bad = |path: &str, v: Value| {
            let mut d = good.clone();
            let mut cur = &mut d;
            for k in path.split('.') {
                cur = match k.parse::<usize>() {
                    Ok(i) => &mut cur[i],
                    Err(_) => &mut cur[k],
                };
            }
            *cur = v;
            assert!(desc(&d, &l).is_err(), "{path} accepted");
        };
        bad("machine", json!("pc,accel=kvm -x"));
        bad("vga", json!("std -device x"));
        bad("cpu", json!(100000));
        bad("hostname", json!("a\nb"));
        bad("uuid", json!("../x"));
        bad("disks.0.path", json!("/etc/shadow"));
        bad("disks.0.storage_id", json!("other"));
        bad("disks.0.disk_id", json!("a/b"));
        bad("disks.0.format", json!("qcow2,file.driver=ssh"));
        bad("nics.0.mac", json!("00:22:aa:bb:cc:dd\ndhcp-script=/x"));
        bad("nics.0.ip", json!("10.0.0.5 x"));
        bad("nics.0.dns", json!("8.8.8.8\nconf-file=/x"));
        bad("nics.0.bridge", json!("br0; rm"));
        bad("secgroup_rules.0.cidr", json!("10.0.0.0/8 accept"));
        bad("secgroup_rules.0.ports", json!("22 } accept"));
        bad("secgroup_rules.0.protocol", json!("tcp dport 1"));
    }
}
