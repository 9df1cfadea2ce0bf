//! The guest description sent to host agents: everything an agent needs to
//! create, deploy and launch a guest without reading the region database.

use std::collections::HashMap;

use cloudpods_db::{DbError, Row, TypedRow, crud};
use serde_json::{Map, Value, json};

use crate::Region;
use crate::models::*;
use crate::rows;
use crate::store;

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
    let guest = rows::Guest::from_row(guest)?;
    let id = guest.id.clone();
    let host_id = o.host_id.clone().unwrap_or_else(|| guest.host_id.clone());
    let nics = store::guest_nic_rows(db, std::slice::from_ref(&id)).await?;
    let net_ids: Vec<String> = nics.iter().map(|n| n.network_id.clone()).collect();
    let nets: HashMap<String, rows::Network> = store::typed_in(db, "id", &net_ids)
        .await?
        .into_iter()
        .map(|n: rows::Network| (n.id.clone(), n))
        .collect();
    let hostwires: Vec<rows::HostWire> =
        store::typed_in(db, "host_id", std::slice::from_ref(&host_id)).await?;
    let mut nic_descs = Vec::new();
    for n in &nics {
        let net = nets.get(&n.network_id);
        let wire = net.map(|r| r.wire_id.clone()).unwrap_or_default();
        let bridge = hostwires
            .iter()
            .find(|hw| hw.wire_id == wire)
            .map(|hw| hw.bridge.clone())
            .unwrap_or_default();
        nic_descs.push(json!({
            "index": n.index,
            "mac": n.mac_addr,
            "ip": n.ip_addr,
            "net_id": n.network_id,
            "net": net.map(|r| &r.name),
            "wire_id": wire,
            "bridge": bridge,
            "masklen": net.map(|r| r.guest_ip_mask).unwrap_or(24),
            "gateway": net.map(|r| &r.guest_gateway),
            "dns": net.map(|r| &r.guest_dns),
            "domain": net.map(|r| &r.guest_domain),
            "vlan": net.map(|r| r.vlan_id).unwrap_or(1),
            "bw": n.bw_limit,
            "driver": n.driver,
            "ifname": n.ifname,
        }));
    }
    let mut disk_descs = Vec::new();
    for (j, d) in store::guest_disk_rows(db, std::slice::from_ref(&id)).await? {
        let mut entry = json!({
            "disk_id": d.id,
            "index": j.index,
            "size": d.disk_size,
            "format": d.disk_format,
            "path": d.access_path,
            "storage_id": d.storage_id,
            "template_id": d.template_id,
            "disk_type": d.disk_type,
            "driver": j.driver,
            "cache_mode": j.cache_mode,
            "boot_index": j.boot_index,
        });
        if let (Some(e), Some(ch)) = (entry.as_object_mut(), o.disks.get(&d.id)) {
            e.extend(ch.clone());
        }
        disk_descs.push(entry);
    }
    let public_key = if guest.keypair_id.is_empty() {
        String::new()
    } else {
        crud::get(db.read(), &KEYPAIRS, &guest.keypair_id)
            .await?
            .map(|k| store::s(&k, "public_key"))
            .unwrap_or_default()
    };
    // Security group rules for the host's filter.
    let sg_joints =
        store::rows_in(db, &GUESTSECGROUPS, "guest_id", std::slice::from_ref(&id)).await?;
    let sg_ids: Vec<String> = sg_joints
        .iter()
        .map(|r| store::s(r, "secgroup_id"))
        .collect();
    let rules: Vec<rows::SecgroupRule> = store::typed_in(db, "secgroup_id", &sg_ids).await?;
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({"direction": r.direction, "protocol": r.protocol, "ports": r.ports,
                   "cidr": r.cidr, "action": r.action, "priority": r.priority})
        })
        .collect();
    Ok(json!({
        "uuid": id,
        "name": guest.name,
        "hostname": guest.hostname,
        "cpu": guest.vcpu_count,
        "mem": guest.vmem_size,
        "os_type": guest.os_type,
        "bios": guest.bios,
        "machine": guest.machine,
        "vga": guest.vga,
        "vdi": guest.vdi,
        "tenant_id": guest.tenant_id,
        "domain_id": guest.domain_id,
        "host_id": host_id,
        "nics": nic_descs,
        "disks": disk_descs,
        "public_key": public_key,
        "user_data": guest.create_params.get("user_data").cloned().unwrap_or(Value::Null),
        "secgroup_rules": rules,
        "src_ip_check": guest.src_ip_check,
        "src_mac_check": guest.src_mac_check,
    }))
}
