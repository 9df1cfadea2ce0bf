//! Reading the region tables into a [`Snapshot`]: everything at once (the
//! periodic rebuild), or the rows around a few hosts (invalidation).
//! This is the only place the scheduler touches the database, and it is
//! never on the placement path.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use cloudpods_db::{Db, DbError, ListSpec, ModelDesc, Row, Sql, crud};
use cloudpods_region::models::*;
use cloudpods_region::store::{GUEST_HOLDS_RESOURCES, b, i, rows_in, s};
use serde_json::Value;

use crate::snapshot::*;

fn f(r: &Row, k: &str, default: f64) -> f64 {
    r.get(k).and_then(Value::as_f64).unwrap_or(default)
}

fn ip(v: &str) -> Option<u32> {
    v.trim().parse::<Ipv4Addr>().ok().map(u32::from)
}

async fn all(db: &Db, desc: &ModelDesc) -> Result<Vec<Row>, DbError> {
    Ok(crud::list(db, desc, &ListSpec::default()).await?.0)
}

fn group(rows: &[Row], key: &str, val: &str) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows {
        m.entry(s(r, key)).or_default().push(s(r, val));
    }
    m
}

fn host_spec(r: &Row, joints: &[&HashMap<String, Vec<String>>; 3]) -> HostSpec {
    let id = s(r, "id");
    let get = |m: &HashMap<String, Vec<String>>| m.get(&id).cloned().unwrap_or_default();
    HostSpec {
        name: s(r, "name"),
        zone_id: s(r, "zone_id"),
        host_type: s(r, "host_type"),
        host_status: s(r, "host_status"),
        status: s(r, "status"),
        enabled: b(r, "enabled"),
        is_maintenance: b(r, "is_maintenance"),
        domain_id: s(r, "domain_id"),
        is_public: b(r, "is_public"),
        public_scope: s(r, "public_scope"),
        cpu_count: i(r, "cpu_count"),
        cpu_cmtbound: f(r, "cpu_cmtbound", 1.0),
        cpu_reserved: i(r, "cpu_reserved"),
        mem_size: i(r, "mem_size"),
        mem_cmtbound: f(r, "mem_cmtbound", 1.0),
        mem_reserved: i(r, "mem_reserved"),
        storages: get(joints[0]),
        wires: get(joints[1]),
        schedtags: get(joints[2]),
        id,
    }
}

fn storage_spec(r: &Row, used: &HashMap<String, i64>) -> StorageSpec {
    let id = s(r, "id");
    StorageSpec {
        name: s(r, "name"),
        zone_id: s(r, "zone_id"),
        storage_type: s(r, "storage_type"),
        medium_type: s(r, "medium_type"),
        enabled: b(r, "enabled"),
        status: s(r, "status"),
        capacity: i(r, "capacity"),
        cmtbound: f(r, "cmtbound", 1.0),
        reserved: i(r, "reserved"),
        used: used.get(&id).copied().unwrap_or(0),
        id,
    }
}

fn network_spec(r: &Row, used: &mut HashMap<String, Vec<u32>>) -> NetworkSpec {
    let id = s(r, "id");
    NetworkSpec {
        name: s(r, "name"),
        wire_id: s(r, "wire_id"),
        // A range that does not parse is empty: the network takes no NIC.
        start: ip(&s(r, "guest_ip_start")).unwrap_or(1),
        end: ip(&s(r, "guest_ip_end")).unwrap_or(0),
        server_type: s(r, "server_type"),
        is_auto_alloc: b(r, "is_auto_alloc"),
        is_public: b(r, "is_public"),
        public_scope: s(r, "public_scope"),
        tenant_id: s(r, "tenant_id"),
        domain_id: s(r, "domain_id"),
        status: s(r, "status"),
        used: used.remove(&id).unwrap_or_default(),
        id,
    }
}

/// MB held per storage by disks (a resize in flight holds its target).
async fn disk_usage(db: &Db, storages: Option<&[String]>) -> Result<HashMap<String, i64>, DbError> {
    let mut out = HashMap::new();
    let chunks: Vec<Option<&[String]>> = match storages {
        None => vec![None],
        Some([]) => return Ok(out),
        Some(ids) => ids.chunks(500).map(Some).collect(),
    };
    for chunk in chunks {
        let mut q = Sql::new(format!(
            "SELECT `storage_id`, {} FROM `disks_tbl` WHERE ",
            db.dialect().sum_int(
                "CASE WHEN `pending_size` > `disk_size` THEN `pending_size` ELSE `disk_size` END"
            )
        ));
        // The id list first and alone, so the storage_id index is used.
        match chunk {
            Some(ids) => {
                q.push("`storage_id` IN ")
                    .bind_list(ids.iter().map(String::as_str));
            }
            None => {
                q.push("`storage_id` IS NOT NULL");
            }
        }
        q.push(" AND `deleted` = 0");
        q.push(" GROUP BY `storage_id`");
        let rows = q.query()?.fetch_all(db.read()).await?;
        for r in &rows {
            let id = cloudpods_db::sql::raw_column(r, 0)?;
            let v = cloudpods_db::sql::raw_column(r, 1)?;
            if let Some(id) = id.as_str() {
                out.insert(id.to_string(), v.as_i64().unwrap_or(0));
            }
        }
    }
    Ok(out)
}

/// Addresses held per network (guest NICs, host NICs, EIPs, unexpired
/// reservations). Addresses released too recently to be handed out again
/// are not counted: the hold-back lasts seconds, the cache would not see
/// it end, and the region's address step skips them and says so.
async fn used_addrs(
    db: &Db,
    networks: Option<&[String]>,
    _reuse_after: Duration,
) -> Result<HashMap<String, Vec<u32>>, DbError> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    let chunks: Vec<Option<&[String]>> = match networks {
        None => vec![None],
        Some([]) => return Ok(out),
        Some(ids) => ids.chunks(200).map(Some).collect(),
    };
    let now = cloudpods_apis::time::now();
    for chunk in chunks {
        let mut q = Sql::default();
        let parts: [(&str, &str); 4] = [
            ("guestnetworks_tbl", "1 = 1"),
            (
                "reservedips_tbl",
                "(`expired_at` IS NULL OR `expired_at` = '' OR `expired_at` > ?)",
            ),
            ("hostnetworks_tbl", "1 = 1"),
            ("elasticips_tbl", "`deleted` = 0"),
        ];
        for (k, (table, cond)) in parts.iter().enumerate() {
            if k > 0 {
                q.push(" UNION ALL ");
            }
            q.push(&format!(
                "SELECT `network_id`, `ip_addr` FROM `{table}` WHERE {cond}"
            ));
            if *table == "reservedips_tbl" {
                q.args.push(now.clone().into());
            }
            if let Some(ids) = chunk {
                q.push(" AND `network_id` IN ")
                    .bind_list(ids.iter().map(String::as_str));
            }
        }
        let rows = q.query()?.fetch_all(db.read()).await?;
        for r in &rows {
            let n = cloudpods_db::sql::raw_column(r, 0)?;
            let a = cloudpods_db::sql::raw_column(r, 1)?;
            if let (Some(n), Some(a)) = (n.as_str(), a.as_str().and_then(ip)) {
                out.entry(n.to_string()).or_default().push(a);
            }
        }
    }
    Ok(out)
}

/// Guests holding resources on a host (read raw: there may be hundreds of
/// thousands).
async fn guests(db: &Db, hosts: Option<&[String]>) -> Result<Vec<GuestSpec>, DbError> {
    let chunks: Vec<Option<&[String]>> = match hosts {
        None => vec![None],
        Some([]) => return Ok(Vec::new()),
        Some(ids) => ids.chunks(500).map(Some).collect(),
    };
    let text = |v: Value| match v {
        Value::String(s) => s,
        _ => String::new(),
    };
    let int = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for chunk in chunks {
        let mut q = Sql::new(format!(
            "SELECT `id`, `host_id`, `vcpu_count`, `vmem_size`, `status` FROM `guests_tbl` \
             WHERE `deleted` = 0 AND {GUEST_HOLDS_RESOURCES}"
        ));
        match chunk {
            Some(ids) => {
                q.push(" AND `host_id` IN ")
                    .bind_list(ids.iter().map(String::as_str));
            }
            None => {
                q.push(" AND `host_id` IS NOT NULL AND `host_id` <> ''");
            }
        }
        let rows = q.query()?.fetch_all(db.read()).await?;
        out.reserve(rows.len());
        for r in &rows {
            let raw = |i| cloudpods_db::sql::raw_column(r, i);
            out.push(GuestSpec {
                id: text(raw(0)?),
                host_id: text(raw(1)?),
                vcpu_count: int(&raw(2)?),
                vmem_size: int(&raw(3)?),
                status: text(raw(4)?),
            });
        }
    }
    Ok(out)
}

/// The whole cache.
pub async fn full(db: &Db, reuse_after: Duration) -> Result<Snapshot, DbError> {
    let hosts = all(db, &HOSTS).await?;
    let hs = all(db, &HOSTSTORAGES).await?;
    let hw = all(db, &HOSTWIRES).await?;
    let ht = all(db, &HOSTSCHEDTAGS).await?;
    let (hs, hw, ht) = (
        group(&hs, "host_id", "storage_id"),
        group(&hw, "host_id", "wire_id"),
        group(&ht, "host_id", "schedtag_id"),
    );
    let used = disk_usage(db, None).await?;
    let mut addrs = used_addrs(db, None, reuse_after).await?;
    Ok(Snapshot {
        hosts: hosts
            .iter()
            .map(|r| host_spec(r, &[&hs, &hw, &ht]))
            .collect(),
        storages: all(db, &STORAGES)
            .await?
            .iter()
            .map(|r| storage_spec(r, &used))
            .collect(),
        networks: all(db, &NETWORKS)
            .await?
            .iter()
            .map(|r| network_spec(r, &mut addrs))
            .collect(),
        wires: all(db, &WIRES)
            .await?
            .iter()
            .map(|r| WireSpec {
                id: s(r, "id"),
                name: s(r, "name"),
                zone_id: s(r, "zone_id"),
            })
            .collect(),
        zones: all(db, &ZONES)
            .await?
            .iter()
            .map(|r| ZoneSpec {
                id: s(r, "id"),
                name: s(r, "name"),
                cloudregion_id: s(r, "cloudregion_id"),
            })
            .collect(),
        regions: all(db, &CLOUDREGIONS)
            .await?
            .iter()
            .map(|r| RegionSpec {
                id: s(r, "id"),
                name: s(r, "name"),
            })
            .collect(),
        schedtags: all(db, &SCHEDTAGS)
            .await?
            .iter()
            .map(|r| SchedtagSpec {
                id: s(r, "id"),
                name: s(r, "name"),
                default_strategy: s(r, "default_strategy"),
                resource_type: s(r, "resource_type"),
            })
            .collect(),
        skus: all(db, &SERVERSKUS)
            .await?
            .iter()
            .map(|r| SkuSpec {
                id: s(r, "id"),
                name: s(r, "name"),
                cpu_core_count: i(r, "cpu_core_count"),
                memory_size_mb: i(r, "memory_size_mb"),
                zone_id: s(r, "zone_id"),
                cloudregion_id: s(r, "cloudregion_id"),
                enabled: b(r, "enabled"),
                status: s(r, "status"),
            })
            .collect(),
        guests: guests(db, None).await?,
    })
}

/// The rows around some hosts.
#[derive(Debug, Clone, Default)]
pub struct HostsReload {
    pub hosts: Vec<HostSpec>,
    /// Asked for but gone.
    pub missing: Vec<String>,
    pub storages: Vec<StorageSpec>,
    pub guests: Vec<GuestSpec>,
    /// The networks on the hosts' wires.
    pub networks: Vec<NetworkSpec>,
}

pub async fn hosts(db: &Db, ids: &[String], reuse_after: Duration) -> Result<HostsReload, DbError> {
    let rows = rows_in(db, &HOSTS, "id", ids).await?;
    let hs = rows_in(db, &HOSTSTORAGES, "host_id", ids).await?;
    let hw = rows_in(db, &HOSTWIRES, "host_id", ids).await?;
    let ht = rows_in(db, &HOSTSCHEDTAGS, "host_id", ids).await?;
    let mut storage_ids: Vec<String> = hs.iter().map(|r| s(r, "storage_id")).collect();
    storage_ids.sort();
    storage_ids.dedup();
    let mut wire_ids: Vec<String> = hw.iter().map(|r| s(r, "wire_id")).collect();
    wire_ids.sort();
    wire_ids.dedup();
    let (hs, hw, ht) = (
        group(&hs, "host_id", "storage_id"),
        group(&hw, "host_id", "wire_id"),
        group(&ht, "host_id", "schedtag_id"),
    );
    let hosts: Vec<HostSpec> = rows
        .iter()
        .map(|r| host_spec(r, &[&hs, &hw, &ht]))
        .collect();
    let missing = ids
        .iter()
        .filter(|id| !hosts.iter().any(|h| &h.id == *id))
        .cloned()
        .collect();
    let used = disk_usage(db, Some(&storage_ids)).await?;
    let storages = rows_in(db, &STORAGES, "id", &storage_ids)
        .await?
        .iter()
        .map(|r| storage_spec(r, &used))
        .collect();
    let net_rows = rows_in(db, &NETWORKS, "wire_id", &wire_ids).await?;
    let net_ids: Vec<String> = net_rows.iter().map(|r| s(r, "id")).collect();
    let mut addrs = used_addrs(db, Some(&net_ids), reuse_after).await?;
    let networks = net_rows
        .iter()
        .map(|r| network_spec(r, &mut addrs))
        .collect();
    Ok(HostsReload {
        hosts,
        missing,
        storages,
        guests: guests(db, Some(ids)).await?,
        networks,
    })
}
