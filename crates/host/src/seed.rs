//! The cloud-init NoCloud seed: an ISO 9660 volume labelled `cidata` with
//! `meta-data` (instance id, hostname, SSH keys), `user-data` (the user's
//! own cloud-config or script, or one setting the password and keys) and
//! `network-config` (v2: each NIC by MAC with the region's address), given
//! to the guest as a read-only config drive.

use std::path::Path;

use serde_json::Value;

use crate::DriverError;
use crate::cmd::{exists, run};

/// Customisation of one guest.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub instance_id: String,
    pub hostname: String,
    pub public_keys: Vec<String>,
    pub password: Option<String>,
    pub user_data: Option<String>,
    /// `(mac, ip/len, gateway, dns)` per NIC.
    pub nics: Vec<(String, String, String, Vec<String>)>,
}

impl Seed {
    pub fn from_desc(desc: &Value, params: &Value) -> Seed {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let hostname = [&params["hostname"], &desc["hostname"], &desc["name"]]
            .iter()
            .map(|v| s(v))
            .find(|h| !h.is_empty())
            .unwrap_or_else(|| "guest".into());
        let public_keys = s(&desc["public_key"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let user_data = [&params["user_data"], &desc["user_data"]]
            .iter()
            .map(|v| s(v))
            .find(|u| !u.is_empty());
        let nics = desc["nics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|n| {
                (
                    s(&n["mac"]).to_lowercase(),
                    format!("{}/{}", s(&n["ip"]), n["masklen"].as_i64().unwrap_or(24)),
                    s(&n["gateway"]),
                    s(&n["dns"])
                        .split([',', ' '])
                        .filter(|d| !d.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            })
            .collect();
        Seed {
            instance_id: s(&desc["uuid"]),
            hostname,
            public_keys,
            password: params["password"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            user_data,
            nics,
        }
    }

    fn meta_data(&self) -> String {
        let mut m = format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            yaml_str(&self.instance_id),
            yaml_str(&self.hostname)
        );
        if !self.public_keys.is_empty() {
            m.push_str("public-keys:\n");
            for k in &self.public_keys {
                m.push_str(&format!("  - {}\n", yaml_str(k)));
            }
        }
        m
    }

    fn user_data(&self) -> String {
        if let Some(u) = &self.user_data {
            return u.clone();
        }
        let mut u = format!("#cloud-config\nhostname: {}\n", yaml_str(&self.hostname));
        if let Some(p) = &self.password {
            u.push_str(&format!(
                "password: {}\nchpasswd:\n  expire: false\nssh_pwauth: true\n",
                yaml_str(p)
            ));
        }
        if !self.public_keys.is_empty() {
            u.push_str("ssh_authorized_keys:\n");
            for k in &self.public_keys {
                u.push_str(&format!("  - {}\n", yaml_str(k)));
            }
        }
        u
    }

    fn network_config(&self) -> String {
        let mut n = String::from("version: 2\nethernets:\n");
        for (i, (mac, cidr, gw, dns)) in self.nics.iter().enumerate() {
            n.push_str(&format!(
                "  nic{i}:\n    match:\n      macaddress: \"{mac}\"\n    set-name: eth{i}\n    addresses: [\"{cidr}\"]\n"
            ));
            if !gw.is_empty() && i == 0 {
                n.push_str(&format!("    gateway4: \"{gw}\"\n"));
            }
            if !dns.is_empty() {
                let list: Vec<String> = dns.iter().map(|d| format!("\"{d}\"")).collect();
                n.push_str(&format!(
                    "    nameservers:\n      addresses: [{}]\n",
                    list.join(", ")
                ));
            }
        }
        n
    }

    /// Write the ISO to `iso` (through a scratch directory beside it).
    pub async fn write_iso(&self, iso: &Path) -> Result<(), DriverError> {
        let dir = iso.with_extension("d");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| DriverError(format!("seed dir: {e}")))?;
        let files = [
            ("meta-data", self.meta_data()),
            ("user-data", self.user_data()),
            ("network-config", self.network_config()),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text)
                .map_err(|e| DriverError(format!("seed {name}: {e}")))?;
        }
        let tmp = iso.with_extension("iso.tmp");
        let out = tmp.display().to_string();
        let src = dir.display().to_string();
        let result = if exists("genisoimage") {
            run(
                "genisoimage",
                [
                    "-quiet", "-output", &out, "-volid", "cidata", "-joliet", "-rock", &src,
                ],
            )
            .await
        } else {
            run(
                "xorriso",
                [
                    "-as", "mkisofs", "-quiet", "-output", &out, "-volid", "cidata", "-joliet",
                    "-rock", &src,
                ],
            )
            .await
        };
        let _ = std::fs::remove_dir_all(&dir);
        result?;
        std::fs::rename(&tmp, iso).map_err(|e| DriverError(format!("seed iso: {e}")))
    }
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_from_desc() {
        let desc = json!({"uuid": "g1", "name": "vm", "hostname": "vm-1",
            "public_key": "ssh-ed25519 AAAA x@y",
            "nics": [{"mac": "00:22:AA:BB:CC:DD", "ip": "10.0.0.5", "masklen": 24, "gateway": "10.0.0.1", "dns": "8.8.8.8"}]});
        let s = Seed::from_desc(&desc, &json!({"password": "Secret-1"}));
        assert!(s.meta_data().contains("local-hostname: \"vm-1\""));
        assert!(s.meta_data().contains("ssh-ed25519 AAAA"));
        let u = s.user_data();
        assert!(u.starts_with("#cloud-config"));
        assert!(u.contains("password: \"Secret-1\""));
        let n = s.network_config();
        assert!(n.contains("00:22:aa:bb:cc:dd"));
        assert!(n.contains("10.0.0.5/24"));
        let s2 = Seed::from_desc(&desc, &json!({"user_data": "#!/bin/sh\necho hi"}));
        assert_eq!(s2.user_data(), "#!/bin/sh\necho hi");
    }
}
