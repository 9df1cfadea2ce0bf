//! The guest description sent to host agents: everything an agent needs to
//! create, deploy and launch a guest without reading the region database.

use std::collections::HashMap;

use cloudpods_db::{DbError, Row, crud};
use serde_json::{Map, Value, json};

use crate::Region;
use crate::models::*;
use crate::store::{self, i, s};

/// The desc of one guest (as Cloudpods' `GetJsonDescAtHypervisor`).
pub async fn guest_desc(region: &Region, guest: &Row) -> Result<Value, DbError> {
    guest_desc_with(region, guest, &DescOverrides::default()).await
}

/// What a task changes in a guest before the database says so: the desc a
/// migration deploys on its target host, or the one a rebuild deploys with
/// the new system disk.
#[derive(Debug, Clone, Default)]
pub struct DescOverrides {
    /// Describe the guest as on this host (bridges come from its wires).
    pub host_id: Option<String>,
    /// Per current disk id, the fields replacing that disk's entry
    /// (`disk_id`, `path`, `storage_id`, `template_id`, `size`…).
    pub disks: HashMap<String, Map<String, Value>>,
}

/// The desc of a guest with `o` applied.
pub async fn guest_desc_with(
    region: &Region,
    guest: &Row,
    o: &DescOverrides,
) -> Result<Value, DbError> {
    let db = &region.db;
    let id = s(guest, "id");
    let host_id = o.host_id.clone().unwrap_or_else(|| s(guest, "host_id"));
    let nics = store::guest_nics(db, std::slice::from_ref(&id)).await?;
    let net_ids: Vec<String> = nics.iter().map(|n| s(n, "network_id")).collect();
    let nets = store::by_id(db, &NETWORKS, &net_ids).await?;
    let hostwires =
        store::rows_in(db, &HOSTWIRES, "host_id", std::slice::from_ref(&host_id)).await?;
    let mut nic_descs = Vec::new();
    for n in &nics {
        let net = nets.get(&s(n, "network_id"));
        let wire = net.map(|r| s(r, "wire_id")).unwrap_or_default();
        let bridge = hostwires
            .iter()
            .find(|hw| s(hw, "wire_id") == wire)
            .map(|hw| s(hw, "bridge"))
            .unwrap_or_default();
        nic_descs.push(json!({
            "index": i(n, "index"),
            "mac": s(n, "mac_addr"),
            "ip": s(n, "ip_addr"),
            "net_id": s(n, "network_id"),
            "net": net.map(|r| s(r, "name")),
            "wire_id": wire,
            "bridge": bridge,
            "masklen": net.map(|r| i(r, "guest_ip_mask")).unwrap_or(24),
            "gateway": net.map(|r| s(r, "guest_gateway")),
            "dns": net.map(|r| s(r, "guest_dns")),
            "domain": net.map(|r| s(r, "guest_domain")),
            "vlan": net.map(|r| i(r, "vlan_id")).unwrap_or(1),
            "bw": i(n, "bw_limit"),
            "driver": s(n, "driver"),
            "ifname": s(n, "ifname"),
        }));
    }
    let mut disk_descs = Vec::new();
    for (j, d) in store::guest_disks(db, std::slice::from_ref(&id)).await? {
        let mut entry = json!({
            "disk_id": s(&d, "id"),
            "index": i(&j, "index"),
            "size": i(&d, "disk_size"),
            "format": s(&d, "disk_format"),
            "path": s(&d, "access_path"),
            "storage_id": s(&d, "storage_id"),
            "template_id": s(&d, "template_id"),
            "disk_type": s(&d, "disk_type"),
            "driver": s(&j, "driver"),
            "cache_mode": s(&j, "cache_mode"),
            "boot_index": i(&j, "boot_index"),
        });
        if let (Some(e), Some(ch)) = (entry.as_object_mut(), o.disks.get(&s(&d, "id"))) {
            e.extend(ch.clone());
        }
        disk_descs.push(entry);
    }
    let params = guest.get("create_params").cloned().unwrap_or(Value::Null);
    let keypair = s(guest, "keypair_id");
    let public_key = if keypair.is_empty() {
        String::new()
    } else {
        crud::get(db.read(), &KEYPAIRS, &keypair)
            .await?
            .map(|k| s(&k, "public_key"))
            .unwrap_or_default()
    };
    // Security group rules for the host's filter.
    let sg_joints =
        store::rows_in(db, &GUESTSECGROUPS, "guest_id", std::slice::from_ref(&id)).await?;
    let sg_ids: Vec<String> = sg_joints.iter().map(|r| s(r, "secgroup_id")).collect();
    let rules = store::rows_in(db, &SECGROUPRULES, "secgroup_id", &sg_ids).await?;
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({"direction": s(r, "direction"), "protocol": s(r, "protocol"), "ports": s(r, "ports"),
                   "cidr": s(r, "cidr"), "action": s(r, "action"), "priority": i(r, "priority")})
        })
        .collect();
    Ok(json!({
        "uuid": id,
        "name": s(guest, "name"),
        "hostname": s(guest, "hostname"),
        "cpu": i(guest, "vcpu_count"),
        "mem": i(guest, "vmem_size"),
        "os_type": s(guest, "os_type"),
        "bios": s(guest, "bios"),
        "machine": s(guest, "machine"),
        "vga": s(guest, "vga"),
        "vdi": s(guest, "vdi"),
        "tenant_id": s(guest, "tenant_id"),
        "domain_id": s(guest, "domain_id"),
        "host_id": host_id,
        "nics": nic_descs,
        "disks": disk_descs,
        "public_key": public_key,
        "user_data": params.get("user_data").cloned().unwrap_or(Value::Null),
        "secgroup_rules": rules,
        "src_ip_check": store::b(guest, "src_ip_check"),
        "src_mac_check": store::b(guest, "src_mac_check"),
    }))
}
