//! Guest networking on the host: a Linux bridge per wire, a tap per NIC,
//! DHCP handing each NIC exactly the address the region allocated, security
//! group rules and a bandwidth limit per tap.
//!
//! * **Bridge**: the hostwire's bridge. When it does not exist the agent
//!   creates it (an isolated bridge) and remembers that, so it removes it
//!   again when its last NIC goes.
//! * **DHCP**: one managed `dnsmasq` per bridge (DHCP only, `port=0`) with a
//!   static `dhcp-host` entry (MAC → IP, router, DNS) per NIC and
//!   `dhcp-range=…,static`, so it never hands out anything the region did not
//!   allocate. dnsmasq answers only on a subnet it has an address in: when
//!   the bridge has none in a NIC's network, the agent adds the network's
//!   gateway address to it (the host is then the guests' gateway, as on a
//!   single-node cloud), and removes it with the last NIC.
//! * **Security groups**: one nftables `bridge` table owned by this agent,
//!   rebuilt atomically from all NICs (`nft -f`): per tap an inbound chain
//!   (the group's rules by priority, then drop) and an outbound chain
//!   (anti-spoofing by MAC and IP, then the rules, then accept). The kernel
//!   has no conntrack for bridges here, so inbound filtering is stateless:
//!   TCP segments that are not a new connection (not SYN-only) and ICMP/UDP
//!   replies from DNS/DHCP pass, new inbound connections need a rule.
//! * **Bandwidth**: a TBF qdisc on the tap (traffic towards the guest).
//!
//! State lives under `<data>/net/` so an agent restarted while guests run
//! tears down correctly later.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DriverError;
use crate::cmd::{run, run_stdin};
use crate::validate;

/// What the agent needs to know about one NIC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Nic {
    pub guest_id: String,
    pub index: i64,
    pub mac: String,
    pub ip: String,
    pub masklen: u8,
    pub gateway: String,
    pub dns: String,
    pub bridge: String,
    pub tap: String,
    pub bw_mbps: i64,
    pub hostname: String,
    #[serde(default)]
    pub rules: Vec<Value>,
    #[serde(default)]
    pub src_ip_check: bool,
    #[serde(default)]
    pub src_mac_check: bool,
}

impl Nic {
    /// The NICs of a guest desc (`nics[]`), with their tap names.
    pub fn from_desc(desc: &Value) -> Result<Vec<Nic>, DriverError> {
        let id = desc["uuid"].as_str().unwrap_or_default();
        let hostname = desc["hostname"]
            .as_str()
            .filter(|h| !h.is_empty())
            .or_else(|| desc["name"].as_str())
            .unwrap_or_default();
        let mut out = Vec::new();
        for n in desc["nics"].as_array().cloned().unwrap_or_default() {
            let index = n["index"].as_i64().unwrap_or(out.len() as i64);
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            let bridge = s("bridge");
            if bridge.is_empty() {
                return Err(DriverError(format!(
                    "NIC {index} ({}) is on a wire this host has no bridge for",
                    s("ip")
                )));
            }
            // What reaches `ip`, dnsmasq's configuration and nftables is
            // parsed, never pasted.
            validate::ifname("bridge", &bridge)?;
            validate::mac(&s("mac"))?;
            validate::ipv4("NIC ip", &s("ip"))?;
            if !s("gateway").is_empty() {
                validate::ipv4("gateway", &s("gateway"))?;
            }
            for d in s("dns").split([',', ' ']).filter(|d| !d.is_empty()) {
                d.parse::<std::net::IpAddr>().map_err(|_| {
                    DriverError(format!("invalid DNS server {d:?}: not an IP address"))
                })?;
            }
            let rules = desc["secgroup_rules"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            rule_lines(&rules, "in")?;
            rule_lines(&rules, "out")?;
            out.push(Nic {
                guest_id: id.to_string(),
                index,
                mac: s("mac").to_lowercase(),
                ip: s("ip"),
                masklen: n["masklen"].as_u64().unwrap_or(24).min(32) as u8,
                gateway: s("gateway"),
                dns: s("dns"),
                tap: tap_name(id, index),
                bridge,
                bw_mbps: n["bw"].as_i64().unwrap_or(0),
                hostname: hostname.to_string(),
                rules,
                src_ip_check: desc["src_ip_check"].as_bool().unwrap_or(true),
                src_mac_check: desc["src_mac_check"].as_bool().unwrap_or(true),
            });
        }
        Ok(out)
    }

    fn key(&self) -> String {
        format!("{}-{}", self.guest_id, self.index)
    }
}

/// A tap name: at most 15 bytes, unique per guest and NIC index (a hash of
/// the whole id: ids may share long prefixes).
pub fn tap_name(guest_id: &str, index: i64) -> String {
    // FNV-1a, 32 bits.
    let mut h: u32 = 0x811c_9dc5;
    for b in guest_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("cp{h:08x}-{index}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BridgeState {
    /// The agent created the bridge (and removes it when unused).
    created: bool,
    /// `addr/len` the agent added to the bridge.
    added_addrs: Vec<String>,
}

pub struct NetManager {
    dir: PathBuf,
    /// Our nftables table (unique per agent, so tests do not collide).
    table: String,
    dnsmasq: String,
    lock: tokio::sync::Mutex<()>,
}

impl NetManager {
    pub fn new(dir: PathBuf, table: String) -> NetManager {
        NetManager {
            dir,
            table,
            dnsmasq: "dnsmasq".into(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn br_dir(&self, bridge: &str) -> PathBuf {
        self.dir.join("bridges").join(bridge)
    }

    fn nics_dir(&self, bridge: &str) -> PathBuf {
        self.br_dir(bridge).join("nics")
    }

    /// Every NIC recorded on this host.
    fn all_nics(&self) -> Vec<Nic> {
        let mut out = Vec::new();
        let Ok(bridges) = std::fs::read_dir(self.dir.join("bridges")) else {
            return out;
        };
        for b in bridges.flatten() {
            let Ok(nics) = std::fs::read_dir(b.path().join("nics")) else {
                continue;
            };
            for n in nics.flatten() {
                if let Ok(text) = std::fs::read_to_string(n.path())
                    && let Ok(nic) = serde_json::from_str::<Nic>(&text)
                {
                    out.push(nic);
                }
            }
        }
        out.sort_by_key(|n| n.key());
        out
    }

    /// MACs in use on this host by guests other than `guest_id`.
    pub fn mac_owner(&self, mac: &str, guest_id: &str) -> Option<String> {
        let mac = mac.to_lowercase();
        self.all_nics()
            .into_iter()
            .find(|n| n.mac == mac && n.guest_id != guest_id)
            .map(|n| n.guest_id)
    }

    /// Create the taps of a guest and everything around them. Undone on
    /// failure.
    pub async fn plug(&self, nics: &[Nic]) -> Result<(), DriverError> {
        let _g = self.lock.lock().await;
        let mut done: Vec<Nic> = Vec::new();
        for nic in nics {
            if let Err(e) = self.plug_one(nic).await {
                for d in &done {
                    let _ = self.unplug_one(d).await;
                }
                let _ = self.unplug_one(nic).await;
                let _ = self.apply_filters().await;
                return Err(e);
            }
            done.push(nic.clone());
        }
        if let Err(e) = self.apply_filters().await {
            for d in &done {
                let _ = self.unplug_one(d).await;
            }
            let _ = self.apply_filters().await;
            return Err(e);
        }
        Ok(())
    }

    /// Remove the taps of a guest (and bridges, addresses and dnsmasq no
    /// longer needed). Unknown NICs are fine.
    pub async fn unplug(&self, guest_id: &str) -> Result<(), DriverError> {
        let _g = self.lock.lock().await;
        let mine: Vec<Nic> = self
            .all_nics()
            .into_iter()
            .filter(|n| n.guest_id == guest_id)
            .collect();
        let mut first_err = None;
        for nic in &mine {
            if let Err(e) = self.unplug_one(nic).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.apply_filters().await {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Re-apply the security group rules of a guest's NICs.
    pub async fn update_rules(&self, nics: &[Nic]) -> Result<(), DriverError> {
        let _g = self.lock.lock().await;
        for nic in nics {
            let path = self
                .nics_dir(&nic.bridge)
                .join(format!("{}.json", nic.key()));
            if path.exists() {
                write_json(&path, nic)?;
            }
        }
        self.apply_filters().await
    }

    async fn plug_one(&self, nic: &Nic) -> Result<(), DriverError> {
        nic.ip.parse::<Ipv4Addr>().map_err(|_| {
            DriverError(format!("NIC {} has no valid IP ({:?})", nic.index, nic.ip))
        })?;
        self.ensure_bridge(nic).await?;
        // A leftover tap (agent killed mid-start) is replaced.
        if link_exists(&nic.tap).await {
            let _ = run("ip", ["link", "del", nic.tap.as_str()]).await;
        }
        run(
            "ip",
            ["tuntap", "add", "dev", nic.tap.as_str(), "mode", "tap"],
        )
        .await?;
        run(
            "ip",
            [
                "link",
                "set",
                nic.tap.as_str(),
                "master",
                nic.bridge.as_str(),
                "up",
            ],
        )
        .await?;
        if nic.bw_mbps > 0 {
            let rate = format!("{}mbit", nic.bw_mbps);
            run(
                "tc",
                [
                    "qdisc",
                    "replace",
                    "dev",
                    nic.tap.as_str(),
                    "root",
                    "tbf",
                    "rate",
                    rate.as_str(),
                    "burst",
                    "256kb",
                    "latency",
                    "50ms",
                ],
            )
            .await?;
        }
        std::fs::create_dir_all(self.nics_dir(&nic.bridge)).map_err(io("nic state"))?;
        write_json(
            &self
                .nics_dir(&nic.bridge)
                .join(format!("{}.json", nic.key())),
            nic,
        )?;
        self.reload_dhcp(&nic.bridge, None).await
    }

    async fn unplug_one(&self, nic: &Nic) -> Result<(), DriverError> {
        if link_exists(&nic.tap).await {
            run("ip", ["link", "del", nic.tap.as_str()]).await?;
        }
        let path = self
            .nics_dir(&nic.bridge)
            .join(format!("{}.json", nic.key()));
        let _ = std::fs::remove_file(&path);
        self.reload_dhcp(&nic.bridge, Some(&nic.mac)).await?;
        self.release_bridge(&nic.bridge).await
    }

    /// The bridge exists, is up and has an address in the NIC's network.
    async fn ensure_bridge(&self, nic: &Nic) -> Result<(), DriverError> {
        let dir = self.br_dir(&nic.bridge);
        std::fs::create_dir_all(&dir).map_err(io("bridge state"))?;
        let state_path = dir.join("state.json");
        let mut st: BridgeState = read_json(&state_path).unwrap_or_default();
        if !link_exists(&nic.bridge).await {
            run(
                "ip",
                ["link", "add", "name", nic.bridge.as_str(), "type", "bridge"],
            )
            .await?;
            st.created = true;
            write_json(&state_path, &st)?;
        }
        run("ip", ["link", "set", nic.bridge.as_str(), "up"]).await?;
        let (net, len) = network_of(&nic.ip, nic.masklen)?;
        let addrs = bridge_addrs(&nic.bridge).await?;
        let has = addrs.iter().any(|(a, l)| {
            network_of(&a.to_string(), *l)
                .map(|(n, _)| n == net && *l == len)
                .unwrap_or(false)
        });
        if !has {
            let gw = if nic.gateway.is_empty() {
                // No gateway: the network's first address.
                Ipv4Addr::from(u32::from(net) + 1).to_string()
            } else {
                nic.gateway.clone()
            };
            let cidr = format!("{gw}/{len}");
            run(
                "ip",
                ["addr", "add", cidr.as_str(), "dev", nic.bridge.as_str()],
            )
            .await?;
            st.added_addrs.push(cidr);
            write_json(&state_path, &st)?;
        }
        Ok(())
    }

    /// Without NICs left, stop dnsmasq and undo what the agent did to the
    /// bridge.
    async fn release_bridge(&self, bridge: &str) -> Result<(), DriverError> {
        let dir = self.br_dir(bridge);
        let left = std::fs::read_dir(self.nics_dir(bridge))
            .map(|d| d.flatten().count())
            .unwrap_or(0);
        if left > 0 {
            return Ok(());
        }
        stop_pidfile(&dir.join("dnsmasq.pid")).await;
        let st: BridgeState = read_json(&dir.join("state.json")).unwrap_or_default();
        if st.created {
            if link_exists(bridge).await {
                run("ip", ["link", "del", bridge]).await?;
            }
        } else {
            for a in &st.added_addrs {
                let _ = run("ip", ["addr", "del", a.as_str(), "dev", bridge]).await;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Rewrite the bridge's dnsmasq configuration from its NICs and restart
    /// it (dnsmasq reads ranges only at start); `forget` drops that MAC's
    /// lease so nothing of a deleted NIC remains.
    async fn reload_dhcp(&self, bridge: &str, forget: Option<&str>) -> Result<(), DriverError> {
        let dir = self.br_dir(bridge);
        let pidfile = dir.join("dnsmasq.pid");
        stop_pidfile(&pidfile).await;
        let leases = dir.join("leases");
        if let Some(mac) = forget
            && let Ok(text) = std::fs::read_to_string(&leases)
        {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| l.split_whitespace().nth(1) != Some(mac))
                .collect();
            let _ = std::fs::write(
                &leases,
                kept.join("\n") + if kept.is_empty() { "" } else { "\n" },
            );
        }
        let nics: Vec<Nic> = self
            .all_nics()
            .into_iter()
            .filter(|n| n.bridge == bridge)
            .collect();
        if nics.is_empty() {
            let _ = std::fs::remove_file(&leases);
            return Ok(());
        }
        let mut ranges = BTreeMap::new();
        let mut conf = format!(
            "# managed by the cloudpods host agent\nport=0\ninterface={bridge}\nbind-dynamic\nexcept-interface=lo\n\
             dhcp-leasefile={}\ndhcp-authoritative\nno-resolv\nno-hosts\nlog-facility={}\n",
            leases.display(),
            dir.join("dnsmasq.log").display()
        );
        for n in &nics {
            let (net, len) = network_of(&n.ip, n.masklen)?;
            let mask = Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) });
            ranges.insert(net, mask);
            let tag = n.tap.replace('-', "_");
            conf.push_str(&format!(
                "dhcp-host={},set:{tag},{},{},12h\n",
                n.mac,
                n.ip,
                sanitize_hostname(&n.hostname)
            ));
            if !n.gateway.is_empty() {
                conf.push_str(&format!(
                    "dhcp-option=tag:{tag},option:router,{}\n",
                    n.gateway
                ));
            }
            let dns: Vec<&str> = n.dns.split([',', ' ']).filter(|d| !d.is_empty()).collect();
            if !dns.is_empty() {
                conf.push_str(&format!(
                    "dhcp-option=tag:{tag},option:dns-server,{}\n",
                    dns.join(",")
                ));
            }
        }
        for (net, mask) in ranges {
            conf.push_str(&format!("dhcp-range={net},static,{mask},12h\n"));
        }
        let conf_path = dir.join("dnsmasq.conf");
        std::fs::write(&conf_path, conf).map_err(io("dnsmasq config"))?;
        let conf_arg = format!("--conf-file={}", conf_path.display());
        let pid_arg = format!("--pid-file={}", pidfile.display());
        run(&self.dnsmasq, [conf_arg.as_str(), pid_arg.as_str()]).await?;
        Ok(())
    }

    /// Rebuild this agent's nftables table from every recorded NIC, in one
    /// transaction.
    async fn apply_filters(&self) -> Result<(), DriverError> {
        let nics = self.all_nics();
        let t = &self.table;
        let mut s = format!("table bridge {t} {{\n}}\ndelete table bridge {t}\n");
        if nics.is_empty() {
            run_stdin("nft", &["-f", "-"], &s).await?;
            return Ok(());
        }
        s.push_str(&format!("table bridge {t} {{\n"));
        for hook in ["forward", "output"] {
            s.push_str(&format!(
                "  chain {hook}_in {{\n    type filter hook {hook} priority 0; policy accept;\n"
            ));
            for n in &nics {
                s.push_str(&format!(
                    "    oifname \"{}\" jump in_{}\n",
                    n.tap,
                    n.tap.replace('-', "_")
                ));
            }
            s.push_str("  }\n");
        }
        for hook in ["forward", "input"] {
            s.push_str(&format!(
                "  chain {hook}_out {{\n    type filter hook {hook} priority 0; policy accept;\n"
            ));
            for n in &nics {
                s.push_str(&format!(
                    "    iifname \"{}\" jump out_{}\n",
                    n.tap,
                    n.tap.replace('-', "_")
                ));
            }
            s.push_str("  }\n");
        }
        for n in &nics {
            let name = n.tap.replace('-', "_");
            s.push_str(&format!("  chain in_{name} {{\n"));
            s.push_str("    ether type arp accept\n    udp sport { 53, 67 } accept\n");
            s.push_str("    meta l4proto icmp icmp type { echo-reply, destination-unreachable, time-exceeded } accept\n");
            for line in rule_lines(&n.rules, "in")? {
                s.push_str(&format!("    {line}\n"));
            }
            // Stateless stand-in for "established": only new inbound TCP
            // connections (SYN without ACK) are refused by default.
            s.push_str("    tcp flags & (syn | ack) != syn accept\n    drop\n  }\n");
            s.push_str(&format!("  chain out_{name} {{\n"));
            if n.src_mac_check {
                s.push_str(&format!("    ether saddr != {} drop\n", n.mac));
            }
            s.push_str("    ether type arp accept\n    udp dport 67 accept\n");
            if n.src_ip_check {
                s.push_str(&format!("    ip saddr != {} drop\n", n.ip));
            }
            for line in rule_lines(&n.rules, "out")? {
                s.push_str(&format!("    {line}\n"));
            }
            s.push_str("    accept\n  }\n");
        }
        s.push_str("}\n");
        run_stdin("nft", &["-f", "-"], &s).await?;
        Ok(())
    }

    /// Remove this agent's nftables table (tests).
    pub async fn remove_table(&self) {
        let s = format!(
            "table bridge {t} {{\n}}\ndelete table bridge {t}\n",
            t = self.table
        );
        let _ = run_stdin("nft", &["-f", "-"], &s).await;
    }
}

/// nft statements for the rules of one direction, highest priority first.
/// Every field is parsed (direction, action, protocol, ports, CIDR) and
/// the statement is built from the parsed values; a rule that does not
/// parse is refused. IPv6 peers are valid but not filtered by this IPv4
/// bridge filter.
pub fn rule_lines(rules: &[Value], direction: &str) -> Result<Vec<String>, DriverError> {
    let mut parsed = Vec::new();
    for r in rules {
        let field = |k: &str| -> Result<String, DriverError> {
            match &r[k] {
                Value::Null => Ok(String::new()),
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(DriverError(format!(
                    "security group rule {k} must be a string, not {other}"
                ))),
            }
        };
        let dir = field("direction")?;
        if dir != "in" && dir != "out" {
            return Err(DriverError(format!(
                "security group rule direction {dir:?} is neither in nor out"
            )));
        }
        let verdict = match field("action")?.as_str() {
            "allow" | "" => "accept",
            "deny" => "drop",
            other => {
                return Err(DriverError(format!(
                    "security group rule action {other:?} is neither allow nor deny"
                )));
            }
        };
        let priority = match &r["priority"] {
            Value::Null => 1,
            v => v.as_i64().ok_or_else(|| {
                DriverError(format!(
                    "security group rule priority {v} is not an integer"
                ))
            })?,
        };
        let peer = parse_peer(&field("cidr")?)?;
        let proto = field("protocol")?.to_lowercase();
        let ports = parse_ports(&field("ports")?)?;
        let l4 = match proto.as_str() {
            "tcp" | "udp" if !ports.is_empty() => {
                let list: Vec<String> = ports
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                format!("{proto} dport {{ {} }} ", list.join(", "))
            }
            "tcp" | "udp" => format!("meta l4proto {proto} "),
            "icmp" => "meta l4proto icmp ".to_string(),
            "any" | "" => String::new(),
            other => {
                return Err(DriverError(format!(
                    "security group rule protocol {other:?} is not tcp, udp, icmp or any"
                )));
            }
        };
        if dir != direction {
            continue;
        }
        let peer = match peer {
            Peer::Any => String::new(),
            Peer::V4(net, len) => {
                let f = if direction == "in" { "saddr" } else { "daddr" };
                format!("ip {f} {net}/{len} ")
            }
            Peer::V6 => continue,
        };
        let ip_match = if peer.is_empty() && l4.is_empty() {
            "ether type ip ".to_string()
        } else {
            String::new()
        };
        parsed.push((priority, format!("{ip_match}{peer}{l4}{verdict}")));
    }
    parsed.sort_by_key(|(p, _)| -p);
    Ok(parsed.into_iter().map(|(_, l)| l).collect())
}

enum Peer {
    Any,
    V4(Ipv4Addr, u8),
    V6,
}

/// `""`, an address or `addr/len` (IPv4 normalised to its network).
fn parse_peer(cidr: &str) -> Result<Peer, DriverError> {
    if cidr.is_empty() {
        return Ok(Peer::Any);
    }
    let refuse = || {
        DriverError(format!(
            "security group rule cidr {cidr:?} is not an address or CIDR"
        ))
    };
    let (addr, len) = match cidr.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| refuse())?)),
        None => (cidr, None),
    };
    match addr.parse::<std::net::IpAddr>().map_err(|_| refuse())? {
        std::net::IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(refuse());
            }
            if len == 0 {
                return Ok(Peer::Any);
            }
            let (net, len) = network_of(&a.to_string(), len)?;
            Ok(Peer::V4(net, len))
        }
        std::net::IpAddr::V6(_) => {
            if len.is_some_and(|l| l > 128) {
                return Err(refuse());
            }
            Ok(Peer::V6)
        }
    }
}

/// `""`, or a comma list of ports and `lo-hi` ranges (1-65535).
fn parse_ports(ports: &str) -> Result<Vec<(u16, u16)>, DriverError> {
    let ports = ports.replace(' ', "");
    if ports.is_empty() || ports == "all" {
        return Ok(Vec::new());
    }
    let refuse = || {
        DriverError(format!(
            "security group rule ports {ports:?} are not ports or ranges"
        ))
    };
    let mut out = Vec::new();
    for item in ports.split(',') {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (a, b),
            None => (item, item),
        };
        let a: u16 = a.parse().map_err(|_| refuse())?;
        let b: u16 = b.parse().map_err(|_| refuse())?;
        if a == 0 || a > b {
            return Err(refuse());
        }
        out.push((a, b));
    }
    Ok(out)
}

fn sanitize_hostname(h: &str) -> String {
    let s: String = h
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if s.is_empty() { "guest".into() } else { s }
}

/// The network address and prefix length of `ip/len`.
pub fn network_of(ip: &str, len: u8) -> Result<(Ipv4Addr, u8), DriverError> {
    let a: Ipv4Addr = ip
        .parse()
        .map_err(|_| DriverError(format!("invalid IPv4 address {ip:?}")))?;
    let len = len.min(32);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((Ipv4Addr::from(u32::from(a) & mask), len))
}

pub async fn link_exists(name: &str) -> bool {
    tokio::fs::metadata(format!("/sys/class/net/{name}"))
        .await
        .is_ok()
}

async fn bridge_addrs(bridge: &str) -> Result<Vec<(Ipv4Addr, u8)>, DriverError> {
    let out = run("ip", ["-j", "-4", "addr", "show", "dev", bridge]).await?;
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut addrs = Vec::new();
    for link in v.as_array().cloned().unwrap_or_default() {
        for a in link["addr_info"].as_array().cloned().unwrap_or_default() {
            if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64())
                && let Ok(ip) = ip.parse()
            {
                addrs.push((ip, len as u8));
            }
        }
    }
    Ok(addrs)
}

/// Terminate the process in a pid file and wait for it to go.
pub async fn stop_pidfile(path: &Path) {
    let Some(pid) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    if pid > 1 && crate::proc::alive(pid) {
        crate::proc::signal(pid, 15);
        for _ in 0..100 {
            if !crate::proc::alive(pid) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if crate::proc::alive(pid) {
            crate::proc::signal(pid, 9);
        }
    }
    let _ = std::fs::remove_file(path);
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> DriverError {
    move |e| DriverError(format!("{what}: {e}"))
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), DriverError> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(v).map_err(|e| DriverError(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(io("writing state"))?;
    std::fs::rename(&tmp, path).map_err(io("writing state"))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tap_names_fit_ifnamsiz() {
        let t = tap_name("6f1c2a9e-0b7d-4b36-8a55-1f2e3d4c5b6a", 7);
        assert!(t.len() <= 15, "{t}");
        assert_ne!(t, tap_name("6f1c2a9e-0b7d-4b36-8a55-1f2e3d4c5b6b", 7));
    }

    #[test]
    fn rules_become_nft_statements() {
        let rules = vec![
            json!({"direction": "in", "protocol": "tcp", "ports": "22,80-90", "cidr": "10.0.0.0/8", "action": "allow", "priority": 10}),
            json!({"direction": "in", "protocol": "any", "ports": "", "cidr": "", "action": "deny", "priority": 50}),
            json!({"direction": "out", "protocol": "icmp", "ports": "", "cidr": "", "action": "allow", "priority": 1}),
        ];
        assert_eq!(
            rule_lines(&rules, "in").unwrap(),
            vec![
                "ether type ip drop".to_string(),
                "ip saddr 10.0.0.0/8 tcp dport { 22, 80-90 } accept".to_string()
            ]
        );
        assert_eq!(
            rule_lines(&rules, "out").unwrap(),
            vec!["meta l4proto icmp accept"]
        );
        for bad in [
            json!({"direction": "in", "protocol": "tcp", "ports": "22 } accept", "cidr": ""}),
            json!({"direction": "in", "protocol": "tcp", "ports": "0", "cidr": ""}),
            json!({"direction": "in", "protocol": "tcp", "ports": "90-80", "cidr": ""}),
            json!({"direction": "in", "protocol": "tcp", "ports": "22", "cidr": "10.0.0.0/33"}),
            json!({"direction": "in", "protocol": "tcp", "ports": "22", "cidr": "10.0.0.0/8 accept"}),
            json!({"direction": "in", "protocol": "gre", "cidr": ""}),
            json!({"direction": "sideways", "protocol": "tcp"}),
            json!({"direction": "in", "protocol": "tcp", "action": "maybe"}),
        ] {
            assert!(
                rule_lines(std::slice::from_ref(&bad), "in").is_err(),
                "{bad}"
            );
        }
        // Host bits are dropped, 0.0.0.0/0 is any peer, IPv6 is skipped.
        let r = vec![
            json!({"direction": "in", "protocol": "tcp", "ports": "22", "cidr": "10.1.2.3/8", "action": "allow", "priority": 5}),
            json!({"direction": "in", "protocol": "udp", "ports": "53", "cidr": "0.0.0.0/0", "action": "allow", "priority": 4}),
            json!({"direction": "in", "protocol": "tcp", "ports": "80", "cidr": "fd00::/8", "action": "allow", "priority": 3}),
        ];
        assert_eq!(
            rule_lines(&r, "in").unwrap(),
            vec![
                "ip saddr 10.0.0.0/8 tcp dport { 22 } accept",
                "udp dport { 53 } accept"
            ]
        );
    }

    #[test]
    fn networks() {
        assert_eq!(
            network_of("10.1.2.77", 24).unwrap(),
            ("10.1.2.0".parse().unwrap(), 24)
        );
    }
}
