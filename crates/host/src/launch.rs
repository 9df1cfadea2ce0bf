//! The QEMU command line of a guest, from its desc.
//!
//! The agent writes it to `<guest dir>/startvm` (a shell script, as
//! Cloudpods does) that runs QEMU in the foreground and records its exit
//! code, so a guest that dies can be told apart from one that was stopped.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::DriverError;
use crate::net::Nic;

/// How guests are accelerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when `/dev/kvm` is usable by stock guests, TCG otherwise. A
    /// `/dev/kvm` backed by `kvm_pvm` (no kvm_intel/kvm_amd) only runs
    /// specially built guests, so it counts as unusable.
    pub fn detect() -> Accel {
        let vendor = Path::new("/sys/module/kvm_intel").exists()
            || Path::new("/sys/module/kvm_amd").exists();
        let openable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        if vendor && openable {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Files of one guest.
#[derive(Debug, Clone)]
pub struct GuestPaths {
    pub dir: PathBuf,
}

impl GuestPaths {
    pub fn new(dir: PathBuf) -> GuestPaths {
        GuestPaths { dir }
    }
    pub fn desc(&self) -> PathBuf {
        self.dir.join("desc.json")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn startvm(&self) -> PathBuf {
        self.dir.join("startvm")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    /// The serial console's socket (QEMU serves it; the agent is its one
    /// client and fans out to viewers).
    pub fn serial_socket(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    pub fn bios_log(&self) -> PathBuf {
        self.dir.join("bios.log")
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit")
    }
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    /// A live migration's pre-shared key (`keys.psk`, 0600), only while one
    /// runs.
    pub fn migrate_tls(&self) -> PathBuf {
        self.dir.join("migrate-tls")
    }
}

/// A QEMU node / device id from a disk id (letters first, at most 31).
pub fn node_name(disk_id: &str) -> String {
    let s: String = disk_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect();
    format!("drv{s}")
}

pub fn device_name(disk_id: &str) -> String {
    format!("dev{}", &node_name(disk_id)[3..])
}

/// A disk as the launch needs it.
#[derive(Debug, Clone)]
pub struct LaunchDisk {
    pub disk_id: String,
    pub path: String,
    pub format: String,
    pub driver: String,
    pub boot_index: Option<i64>,
}

/// Everything that goes on the command line.
pub struct LaunchSpec<'a> {
    pub qemu: &'a str,
    pub accel: Accel,
    pub desc: &'a Value,
    pub paths: &'a GuestPaths,
    pub disks: &'a [LaunchDisk],
    pub nics: &'a [Nic],
    pub vnc_listen: &'a str,
    pub vnc_port: u16,
    pub seed: Option<&'a Path>,
    /// The agent's `-cpu` when the desc names none.
    pub default_cpu_model: Option<&'a str>,
    /// A live migration's target: wait paused for the memory (`-incoming
    /// defer -S`), with the migration's TLS pre-shared key in this
    /// directory (`keys.psk`).
    pub incoming: Option<&'a Path>,
}

/// The QEMU object id of a live migration's TLS credentials.
pub const MIGRATE_TLS_ID: &str = "cpmig0";

/// The QEMU arguments.
pub fn qemu_args(s: &LaunchSpec<'_>) -> Result<Vec<String>, DriverError> {
    let d = s.desc;
    let p = s.paths;
    // Checked when the request came in, and again here: only known values
    // reach the command line.
    crate::validate::launch_fields(d)?;
    if let Some(m) = s.default_cpu_model {
        crate::validate::cpu_model(m)?;
    }
    let id = d["uuid"].as_str().unwrap_or_default();
    let cpus = d["cpu"].as_i64().unwrap_or(1).max(1);
    let mem = d["mem"].as_i64().unwrap_or(512).max(64);
    let machine = d["machine"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or("pc");
    let cpu_model = d["cpu_model"]
        .as_str()
        .filter(|m| !m.is_empty())
        .or(s.default_cpu_model)
        .unwrap_or(match s.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "qemu64",
        });
    if d["bios"]
        .as_str()
        .is_some_and(|b| b.eq_ignore_ascii_case("uefi"))
    {
        return Err(DriverError(
            "UEFI guests need OVMF, which this agent does not launch".into(),
        ));
    }
    let vnc_display = s
        .vnc_port
        .checked_sub(5900)
        .ok_or_else(|| DriverError(format!("VNC port {} is below 5900", s.vnc_port)))?;
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    push(&["-name", &format!("guest={id}")]);
    if let Some(u) = d["uuid"].as_str().filter(|u| is_uuid(u)) {
        push(&["-uuid", u]);
    }
    push(&[
        "-machine",
        machine,
        "-accel",
        s.accel.name(),
        "-cpu",
        cpu_model,
    ]);
    push(&["-smp", &cpus.to_string(), "-m", &format!("{mem}M")]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-vga", "std"]);
    // `to=`: QEMU moves on to the next free display if another process
    // took this one meanwhile; the agent asks QMP which one it got.
    push(&[
        "-vnc",
        &format!("{}:{vnc_display},to={}", s.vnc_listen, vnc_display + 100),
    ]);
    // The serial console: a socket the agent relays to viewers, and every
    // byte also in serial.log whether or not anyone is connected.
    push(&[
        "-chardev",
        &format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=off",
            p.serial_socket().display(),
            p.serial().display()
        ),
        "-serial",
        "chardev:serial0",
    ]);
    push(&[
        "-chardev",
        &format!("file,id=bioslog,path={}", p.bios_log().display()),
        "-device",
        "isa-debugcon,iobase=0x402,chardev=bioslog",
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", p.qmp().display()),
    ]);
    push(&["-pidfile", &p.pid().display().to_string()]);
    for disk in s.disks {
        crate::validate::id("disk", &disk.disk_id)?;
        if !matches!(disk.format.as_str(), "qcow2" | "raw") {
            return Err(DriverError(format!(
                "disk {} has format {:?} (qcow2 or raw)",
                disk.disk_id, disk.format
            )));
        }
        let node = node_name(&disk.disk_id);
        let dev = device_name(&disk.disk_id);
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id={node},format={},cache=writeback,discard=unmap",
                escape_opt(&disk.path),
                disk.format
            ),
        ]);
        let mut device = match disk.driver.as_str() {
            "ide" | "sata" => format!("ide-hd,drive={node},id={dev}"),
            "scsi" | "pvscsi" => {
                return Err(DriverError(format!(
                    "disk driver {} is not supported by this agent (use virtio or ide)",
                    disk.driver
                )));
            }
            _ => format!("virtio-blk-pci,drive={node},id={dev}"),
        };
        if let Some(b) = disk.boot_index.filter(|b| *b >= 0) {
            device.push_str(&format!(",bootindex={b}"));
        }
        push(&["-device", &device]);
    }
    if let Some(seed) = s.seed {
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id=cidata,format=raw,readonly=on",
                escape_opt(&seed.display().to_string())
            ),
            "-device",
            "virtio-blk-pci,drive=cidata,id=cidatadev",
        ]);
    }
    if let Some(dir) = s.incoming {
        push(&[
            "-object",
            &format!(
                "tls-creds-psk,id={MIGRATE_TLS_ID},endpoint=server,dir={}",
                escape_opt(&dir.display().to_string())
            ),
            "-incoming",
            "defer",
            "-S",
        ]);
    }
    for nic in s.nics {
        crate::validate::mac(&nic.mac)?;
        crate::validate::ifname("tap", &nic.tap)?;
        let i = nic.index;
        push(&[
            "-netdev",
            &format!("tap,id=net{i},ifname={},script=no,downscript=no", nic.tap),
            // No option ROM: iPXE costs seconds under TCG and guests boot
            // from disk.
            "-device",
            &format!(
                "virtio-net-pci,netdev=net{i},mac={},id=nic{i},romfile=",
                nic.mac
            ),
        ]);
    }
    Ok(a)
}

/// The `startvm` script: QEMU in the foreground, its exit code kept.
pub fn startvm_script(qemu: &str, args: &[String], paths: &GuestPaths) -> String {
    let mut s = String::from("#!/bin/sh\n# Generated by the cloudpods host agent.\n");
    s.push_str(&format!(
        "cd {}\n",
        sh_quote(&paths.dir.display().to_string())
    ));
    s.push_str("rm -f exit\n");
    s.push_str(&sh_quote(qemu));
    for a in args {
        s.push_str(" \\\n  ");
        s.push_str(&sh_quote(a));
    }
    s.push_str(" >qemu.log 2>&1 </dev/null\n");
    s.push_str("echo $? > exit.tmp && mv exit.tmp exit\n");
    s
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// QEMU option values double commas.
fn escape_opt(s: &str) -> String {
    s.replace(',', ",,")
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_line() {
        let desc = json!({"uuid": "6f1c2a9e-0b7d-4b36-8a55-1f2e3d4c5b6a", "cpu": 2, "mem": 256});
        let paths = GuestPaths::new("/g".into());
        let disks = [LaunchDisk {
            disk_id: "d-1".into(),
            path: "/s/d,1.qcow2".into(),
            format: "qcow2".into(),
            driver: "virtio".into(),
            boot_index: Some(0),
        }];
        let args = qemu_args(&LaunchSpec {
            qemu: "qemu-system-x86_64",
            accel: Accel::Tcg,
            desc: &desc,
            paths: &paths,
            disks: &disks,
            nics: &[],
            vnc_listen: "127.0.0.1",
            vnc_port: 5907,
            seed: None,
            default_cpu_model: None,
            incoming: None,
        })
        .unwrap();
        let line = args.join(" ");
        assert!(line.contains("-accel tcg -cpu qemu64"), "{line}");
        assert!(line.contains("-vnc 127.0.0.1:7,to=107"), "{line}");
        assert!(line.contains("file=/s/d,,1.qcow2"), "{line}");
        assert!(
            line.contains("virtio-blk-pci,drive=drvd1,id=devd1,bootindex=0"),
            "{line}"
        );
        assert!(line.contains("-uuid 6f1c2a9e-0b7d-4b36-8a55-1f2e3d4c5b6a"));
        let mut bad = desc.clone();
        bad["machine"] = json!("pc,memory-backend=x");
        let refused = qemu_args(&LaunchSpec {
            qemu: "qemu-system-x86_64",
            accel: Accel::Tcg,
            desc: &bad,
            paths: &paths,
            disks: &disks,
            nics: &[],
            vnc_listen: "127.0.0.1",
            vnc_port: 5907,
            seed: None,
            default_cpu_model: None,
            incoming: None,
        });
        assert!(refused.is_err());
        let script = startvm_script("qemu-system-x86_64", &args, &paths);
        assert!(script.contains("echo $? > exit.tmp"));
        assert_eq!(sh_quote("a b'c"), "'a b'\\''c'");
    }
}
