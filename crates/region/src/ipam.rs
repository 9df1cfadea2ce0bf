//! IPv4 address management for networks.
//!
//! A network hands out addresses in `guest_ip_start..=guest_ip_end`, never
//! the gateway, never one in use by a guest NIC, a host, an EIP or a
//! reserved IP, and not one released less than `reuse_after` ago (Cloudpods'
//! `MinimalIpAddrReusedIntervalSeconds`). Uniqueness is enforced by the
//! database: the unique index on `(network_id, ip_addr)` refuses a second
//! holder, and allocation retries with the next candidate, so concurrent
//! creates (also from several region processes) never share an address.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use cloudpods_db::{Db, DbError, Row, Sql, crud};
use cloudpods_rest::HttpError;
use serde_json::{Value, json};

use crate::models::IP_HISTORY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocPolicy {
    StepUp,
    StepDown,
    Random,
}

impl AllocPolicy {
    pub fn parse(s: &str) -> Result<AllocPolicy, String> {
        match s {
            "" | "none" | "stepup" => Ok(AllocPolicy::StepUp),
            "stepdown" => Ok(AllocPolicy::StepDown),
            "random" => Ok(AllocPolicy::Random),
            other => Err(format!(
                "alloc_policy must be stepup, stepdown, random or none, got {other:?}"
            )),
        }
    }
}

pub fn ip_to_u32(s: &str) -> Option<u32> {
    s.trim().parse::<Ipv4Addr>().ok().map(u32::from)
}

pub fn u32_to_ip(v: u32) -> String {
    Ipv4Addr::from(v).to_string()
}

/// The address range of one network.
#[derive(Debug, Clone)]
pub struct NetRange {
    pub id: String,
    pub name: String,
    pub start: u32,
    pub end: u32,
    pub mask: u8,
    pub gateway: Option<u32>,
    pub policy: AllocPolicy,
}

impl NetRange {
    pub fn from_row(r: &Row) -> Result<NetRange, String> {
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let name = s("name");
        let start =
            ip_to_u32(&s("guest_ip_start")).ok_or(format!("network {name}: bad guest_ip_start"))?;
        let end =
            ip_to_u32(&s("guest_ip_end")).ok_or(format!("network {name}: bad guest_ip_end"))?;
        let mask = r.get("guest_ip_mask").and_then(Value::as_i64).unwrap_or(24) as u8;
        let gateway = ip_to_u32(&s("guest_gateway"));
        Ok(NetRange {
            id: s("id"),
            name,
            start,
            end,
            mask,
            gateway,
            policy: AllocPolicy::parse(&s("alloc_policy"))?,
        })
    }

    pub fn contains(&self, ip: u32) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    pub fn size(&self) -> u64 {
        (self.end as u64).saturating_sub(self.start as u64) + 1
    }
}

/// Check a network definition: addresses parse, start ≤ end, both inside
/// the same subnet of `mask`, gateway inside the subnet and outside the
/// range.
pub fn validate_range(
    start: &str,
    end: &str,
    mask: i64,
    gateway: Option<&str>,
) -> Result<(), String> {
    let s = ip_to_u32(start).ok_or(format!("guest_ip_start {start:?} is not an IPv4 address"))?;
    let e = ip_to_u32(end).ok_or(format!("guest_ip_end {end:?} is not an IPv4 address"))?;
    if !(8..=30).contains(&mask) {
        return Err(format!(
            "guest_ip_mask must be between 8 and 30, got {mask}"
        ));
    }
    if s > e {
        return Err(format!(
            "guest_ip_start {start} is after guest_ip_end {end}"
        ));
    }
    let net_mask = u32::MAX << (32 - mask);
    if s & net_mask != e & net_mask {
        return Err(format!(
            "{start} and {end} are not in the same /{mask} subnet"
        ));
    }
    if let Some(g) = gateway.filter(|g| !g.is_empty()) {
        let gv = ip_to_u32(g).ok_or(format!("guest_gateway {g:?} is not an IPv4 address"))?;
        if gv & net_mask != s & net_mask {
            return Err(format!(
                "gateway {g} is outside the /{mask} subnet of {start}"
            ));
        }
        if (s..=e).contains(&gv) {
            return Err(format!(
                "gateway {g} is inside the allocation range {start}-{end}"
            ));
        }
    }
    Ok(())
}

/// Addresses of `network_id` that may not be handed out now.
pub async fn used_addrs(
    db: &Db,
    network_id: &str,
    reuse_after: Duration,
) -> Result<HashSet<u32>, DbError> {
    let mut used = HashSet::new();
    let recent = cloudpods_apis::time::format(
        chrono::Utc::now() - chrono::Duration::from_std(reuse_after).unwrap_or_default(),
    );
    let mut q = Sql::new(
        "SELECT `ip_addr` FROM `guestnetworks_tbl` WHERE `network_id` = ? \
         UNION ALL SELECT `ip_addr` FROM `reservedips_tbl` WHERE `network_id` = ? \
         UNION ALL SELECT `ip_addr` FROM `hostnetworks_tbl` WHERE `network_id` = ? \
         UNION ALL SELECT `ip_addr` FROM `elasticips_tbl` WHERE `deleted` = 0 AND `network_id` = ? \
         UNION ALL SELECT `ip_addr` FROM `ip_history_tbl` WHERE `network_id` = ? AND `freed_at` > ?",
    );
    for _ in 0..5 {
        q.args.push(network_id.into());
    }
    q.args.push(recent.into());
    let rows = q
        .query()?
        .fetch_all(db.write())
        .await
        .map_err(DbError::from)?;
    for r in &rows {
        if let Value::String(ip) = cloudpods_db::sql::raw_column(r, 0)?
            && let Some(v) = ip_to_u32(&ip)
        {
            used.insert(v);
        }
    }
    Ok(used)
}

/// Choose a free address. `requested` must be inside the range and free.
pub fn pick(
    range: &NetRange,
    used: &HashSet<u32>,
    requested: Option<u32>,
    tried: &HashSet<u32>,
) -> Result<u32, HttpError> {
    let free = |ip: u32| !used.contains(&ip) && !tried.contains(&ip) && Some(ip) != range.gateway;
    if let Some(ip) = requested {
        if !range.contains(ip) {
            return Err(HttpError::input(format!(
                "address {} is outside network {} ({} - {})",
                u32_to_ip(ip),
                range.name,
                u32_to_ip(range.start),
                u32_to_ip(range.end)
            )));
        }
        if !free(ip) {
            return Err(HttpError::conflict(format!(
                "address {} of network {} is already in use",
                u32_to_ip(ip),
                range.name
            )));
        }
        return Ok(ip);
    }
    let none = || HttpError::insufficient(format!("network {} has no free address", range.name));
    match range.policy {
        AllocPolicy::StepUp => (range.start..=range.end)
            .find(|ip| free(*ip))
            .ok_or_else(none),
        AllocPolicy::StepDown => (range.start..=range.end)
            .rev()
            .find(|ip| free(*ip))
            .ok_or_else(none),
        AllocPolicy::Random => {
            for _ in 0..5 {
                let ip = rand::random_range(range.start..=range.end);
                if free(ip) {
                    return Ok(ip);
                }
            }
            (range.start..=range.end)
                .find(|ip| free(*ip))
                .ok_or_else(none)
        }
    }
}

/// Allocate an address and insert the row that holds it. `insert` writes
/// the holder row for an address; a duplicate-key refusal means another
/// creator took it first, so the next candidate is tried.
pub async fn allocate<F, Fut>(
    db: &Db,
    network: &Row,
    requested: Option<&str>,
    reuse_after: Duration,
    mut insert: F,
) -> Result<String, HttpError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), DbError>>,
{
    let range = NetRange::from_row(network).map_err(HttpError::input)?;
    let requested = match requested.filter(|r| !r.is_empty()) {
        Some(r) => Some(
            ip_to_u32(r)
                .ok_or_else(|| HttpError::input(format!("{r:?} is not an IPv4 address")))?,
        ),
        None => None,
    };
    let mut tried = HashSet::new();
    for _ in 0..64 {
        let used = used_addrs(db, &range.id, reuse_after).await?;
        let ip = pick(&range, &used, requested, &tried)?;
        match insert(u32_to_ip(ip)).await {
            Ok(()) => return Ok(u32_to_ip(ip)),
            Err(DbError::Duplicate(_)) if requested.is_some() => {
                return Err(HttpError::conflict(format!(
                    "address {} of network {} is already in use",
                    u32_to_ip(ip),
                    range.name
                )));
            }
            Err(DbError::Duplicate(_)) => {
                tried.insert(ip);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(HttpError::busy(format!(
        "network {} is too busy, retry",
        range.name
    )))
}

/// Remember a released address so it is not handed out again at once.
pub async fn record_freed(db: &Db, network_id: &str, ip: &str) -> Result<(), DbError> {
    if ip.is_empty() {
        return Ok(());
    }
    let mut row = Row::new();
    row.insert("network_id".into(), json!(network_id));
    row.insert("ip_addr".into(), json!(ip));
    row.insert("freed_at".into(), json!(cloudpods_apis::time::now()));
    crud::prepare_insert(&IP_HISTORY, &mut row);
    crud::insert(db.write(), &IP_HISTORY, &row).await?;
    Ok(())
}

/// Forget release records older than `keep`.
pub async fn prune_history(db: &Db, keep: Duration) -> Result<u64, DbError> {
    let cutoff = cloudpods_apis::time::format(
        chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or_default(),
    );
    let mut q = Sql::new("DELETE FROM `ip_history_tbl` WHERE `freed_at` < ");
    q.bind(cutoff);
    Ok(q.query()?
        .execute(db.write())
        .await
        .map_err(DbError::from)?
        .rows_affected())
}

/// A random locally administered MAC in Cloudpods' `00:22:` space.
pub fn random_mac() -> String {
    let b: [u8; 4] = rand::random();
    format!("00:22:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(policy: AllocPolicy) -> NetRange {
        NetRange {
            id: "n".into(),
            name: "n".into(),
            start: ip_to_u32("10.0.0.10").unwrap(),
            end: ip_to_u32("10.0.0.20").unwrap(),
            mask: 24,
            gateway: ip_to_u32("10.0.0.1"),
            policy,
        }
    }

    #[test]
    fn policies_and_requests() {
        let used: HashSet<u32> = [ip_to_u32("10.0.0.10").unwrap()].into();
        let none = HashSet::new();
        assert_eq!(
            u32_to_ip(pick(&range(AllocPolicy::StepUp), &used, None, &none).unwrap()),
            "10.0.0.11"
        );
        assert_eq!(
            u32_to_ip(pick(&range(AllocPolicy::StepDown), &used, None, &none).unwrap()),
            "10.0.0.20"
        );
        let r = pick(&range(AllocPolicy::Random), &used, None, &none).unwrap();
        assert!(range(AllocPolicy::Random).contains(r) && !used.contains(&r));
        assert!(
            pick(
                &range(AllocPolicy::StepUp),
                &used,
                ip_to_u32("10.0.0.10"),
                &none
            )
            .is_err()
        );
        assert!(
            pick(
                &range(AllocPolicy::StepUp),
                &used,
                ip_to_u32("10.0.1.10"),
                &none
            )
            .is_err()
        );
        assert_eq!(
            u32_to_ip(
                pick(
                    &range(AllocPolicy::StepUp),
                    &used,
                    ip_to_u32("10.0.0.15"),
                    &none
                )
                .unwrap()
            ),
            "10.0.0.15"
        );
        let full: HashSet<u32> =
            (ip_to_u32("10.0.0.10").unwrap()..=ip_to_u32("10.0.0.20").unwrap()).collect();
        assert!(pick(&range(AllocPolicy::StepUp), &full, None, &none).is_err());
    }

    #[test]
    fn range_validation() {
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.0.0.1")).is_ok());
        assert!(validate_range("10.0.0.20", "10.0.0.10", 24, None).is_err());
        assert!(validate_range("10.0.0.10", "10.0.1.20", 24, None).is_err());
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.0.0.15")).is_err());
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.1.0.1")).is_err());
        assert!(validate_range("x", "10.0.0.20", 24, None).is_err());
        assert!(validate_range("10.0.0.1", "10.0.0.2", 33, None).is_err());
    }
}
