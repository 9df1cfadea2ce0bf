//! IPv4 address management for networks.
//!
//! A network hands out addresses in `guest_ip_start..=guest_ip_end`, never
//! the gateway, never one held by a guest NIC, a host, an EIP or an
//! unexpired reserved IP, and — when it chooses the address itself — not
//! one released less than `reuse_after` ago (Cloudpods'
//! `MinimalIpAddrReusedIntervalSeconds`). An address asked for explicitly is
//! honoured when nobody holds it, recently released or not, as Cloudpods
//! does.
//!
//! # No address is handed out twice
//!
//! The holders live in different tables (guest NICs, host NICs, EIPs,
//! reserved IPs), so no single unique index can cover them all. Every
//! change to the holders of a network's addresses therefore runs under the
//! network's allocation lock ([`with_network_lock`]): a per-process async
//! mutex, so that the requests of one process queue instead of spinning,
//! and a lease on the network row (`alloc_lock_owner`/`alloc_lock_until`),
//! so that several region processes sharing one MariaDB serialise too. The
//! lease expires on its own when a process dies holding it. The unique
//! index on `(network_id, ip_addr)` of each holder table stays as the last
//! guard: a duplicate refused there makes [`allocate`] try the next
//! candidate.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use cloudpods_db::{Db, DbError, Row, Sql, crud};
use cloudpods_rest::HttpError;
use serde_json::{Value, json};

use crate::models::{IP_HISTORY, NETWORKS, RESERVEDIPS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocPolicy {
    StepUp,
    StepDown,
    Random,
}

impl AllocPolicy {
    /// `none` (and empty) means the region default, stepping up from the
    /// start of the range.
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

/// The netmask of a prefix length (`24` → `0xffffff00`).
pub fn mask_bits(masklen: u8) -> u32 {
    match masklen {
        0 => 0,
        m if m >= 32 => u32::MAX,
        m => u32::MAX << (32 - m),
    }
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
        let mask = r
            .get("guest_ip_mask")
            .and_then(Value::as_i64)
            .unwrap_or(24)
            .clamp(0, 32) as u8;
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

    /// Number of addresses in the range (Cloudpods' `ports`).
    pub fn size(&self) -> u64 {
        (self.end as u64).saturating_sub(self.start as u64) + 1
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} - {})",
            self.name,
            u32_to_ip(self.start),
            u32_to_ip(self.end)
        )
    }
}

/// Check a network definition: addresses parse, start ≤ end, both inside
/// the same subnet of `mask` and neither its network nor its broadcast
/// address, gateway inside the subnet and outside the range.
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
    let net_mask = mask_bits(mask as u8);
    if s & net_mask != e & net_mask {
        return Err(format!(
            "{start} and {end} are not in the same /{mask} subnet"
        ));
    }
    let net = s & net_mask;
    let broadcast = net | !net_mask;
    if s == net {
        return Err(format!(
            "guest_ip_start {start} is the network address of its /{mask} subnet"
        ));
    }
    if e == broadcast {
        return Err(format!(
            "guest_ip_end {end} is the broadcast address of its /{mask} subnet"
        ));
    }
    if let Some(g) = gateway.filter(|g| !g.is_empty()) {
        let gv = ip_to_u32(g).ok_or(format!("guest_gateway {g:?} is not an IPv4 address"))?;
        if gv & net_mask != net {
            return Err(format!(
                "gateway {g} is outside the /{mask} subnet of {start}"
            ));
        }
        if gv == net || gv == broadcast {
            return Err(format!(
                "gateway {g} is the network or broadcast address of the /{mask} subnet"
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

/// What an `ip_prefix` (`guest_ip_prefix`) like `10.1.0.0/24` expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRange {
    pub start: String,
    pub end: String,
    pub mask: i64,
    pub gateway: String,
    /// The normalised prefix (`10.1.0.5/24` → `10.1.0.0/24`).
    pub prefix: String,
}

/// Expand a prefix the way Cloudpods' `guest_ip_prefix` does: every host
/// address of the subnet, minus the gateway. The gateway defaults to the
/// first host address; an explicit one must be the first or the last host
/// address, since a gateway inside the range would split it.
pub fn expand_prefix(prefix: &str, gateway: Option<&str>) -> Result<PrefixRange, String> {
    let (addr, len) = prefix
        .trim()
        .split_once('/')
        .ok_or(format!("ip_prefix {prefix:?} must look like 10.1.0.0/24"))?;
    let addr = ip_to_u32(addr).ok_or(format!("ip_prefix {prefix:?}: bad address"))?;
    let len: i64 = len
        .trim()
        .parse()
        .map_err(|_| format!("ip_prefix {prefix:?}: bad mask length"))?;
    if !(8..=29).contains(&len) {
        return Err(format!(
            "ip_prefix {prefix:?}: the mask length must be between 8 and 29"
        ));
    }
    let bits = mask_bits(len as u8);
    let net = addr & bits;
    let broadcast = net | !bits;
    let (first, last) = (net + 1, broadcast - 1);
    let gw = match gateway.filter(|g| !g.is_empty()) {
        Some(g) => ip_to_u32(g).ok_or(format!("guest_gateway {g:?} is not an IPv4 address"))?,
        None => first,
    };
    let (start, end) = if gw == first {
        (first + 1, last)
    } else if gw == last {
        (first, last - 1)
    } else if gw & bits != net {
        return Err(format!(
            "gateway {} is outside {}/{len}",
            u32_to_ip(gw),
            u32_to_ip(net)
        ));
    } else {
        return Err(format!(
            "gateway {} is inside {}/{len}: give guest_ip_start and guest_ip_end instead",
            u32_to_ip(gw),
            u32_to_ip(net)
        ));
    };
    Ok(PrefixRange {
        start: u32_to_ip(start),
        end: u32_to_ip(end),
        mask: len,
        gateway: u32_to_ip(gw),
        prefix: format!("{}/{len}", u32_to_ip(net)),
    })
}

/// Whether an address is routable on the internet (Cloudpods'
/// `IsExitAddress`): not private, shared, loopback, link-local, multicast
/// or reserved.
pub fn is_exit_address(ip: u32) -> bool {
    const NON_EXIT: &[(u32, u8)] = &[
        (0x0000_0000, 8),  // 0.0.0.0/8
        (0x0a00_0000, 8),  // 10.0.0.0/8
        (0x6440_0000, 10), // 100.64.0.0/10
        (0x7f00_0000, 8),  // 127.0.0.0/8
        (0xa9fe_0000, 16), // 169.254.0.0/16
        (0xac10_0000, 12), // 172.16.0.0/12
        (0xc0a8_0000, 16), // 192.168.0.0/16
        (0xe000_0000, 3),  // 224.0.0.0/3: multicast and reserved
    ];
    !NON_EXIT
        .iter()
        .any(|(net, len)| ip & mask_bits(*len) == *net)
}

/// Parse a CIDR list (`10.0.0.0/8,192.168.0.0/16`) as `(start, end)`
/// ranges.
pub fn parse_cidrs(text: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (addr, len) = part
            .split_once('/')
            .ok_or(format!("{part:?} is not a CIDR (like 10.0.0.0/16)"))?;
        let addr = ip_to_u32(addr).ok_or(format!("{part:?} is not a CIDR"))?;
        let len: u8 = len
            .trim()
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or(format!("{part:?} has a bad mask length"))?;
        let bits = mask_bits(len);
        if addr & !bits != 0 {
            return Err(format!("{part:?} has host bits set"));
        }
        out.push((addr, addr | !bits));
    }
    Ok(out)
}

/// Addresses of `network_id` held now: guest NICs, host NICs, EIPs and
/// reserved IPs that have not expired.
pub async fn held_addrs(db: &Db, network_id: &str) -> Result<HashSet<u32>, DbError> {
    let now = cloudpods_apis::time::now();
    let mut q = Sql::new(
        "SELECT `ip_addr` FROM `guestnetworks_tbl` WHERE `network_id` = ? \
         UNION ALL SELECT `ip_addr` FROM `reservedips_tbl` WHERE `network_id` = ? \
           AND (`expired_at` IS NULL OR `expired_at` = '' OR `expired_at` > ?) \
         UNION ALL SELECT `ip_addr` FROM `hostnetworks_tbl` WHERE `network_id` = ? \
         UNION ALL SELECT `ip_addr` FROM `elasticips_tbl` WHERE `deleted` = 0 AND `network_id` = ?",
    );
    q.args.push(network_id.into());
    q.args.push(network_id.into());
    q.args.push(now.into());
    q.args.push(network_id.into());
    q.args.push(network_id.into());
    addr_set(db, &q).await
}

/// Addresses of `network_id` released less than `reuse_after` ago.
pub async fn recent_addrs(
    db: &Db,
    network_id: &str,
    reuse_after: Duration,
) -> Result<HashSet<u32>, DbError> {
    if reuse_after.is_zero() {
        return Ok(HashSet::new());
    }
    let since = cloudpods_apis::time::format(
        chrono::Utc::now() - chrono::Duration::from_std(reuse_after).unwrap_or_default(),
    );
    let mut q = Sql::new(
        "SELECT `ip_addr` FROM `ip_history_tbl` WHERE `network_id` = ? AND `freed_at` > ?",
    );
    q.args.push(network_id.into());
    q.args.push(since.into());
    addr_set(db, &q).await
}

/// Addresses of `network_id` that may not be handed out automatically now:
/// held ones and recently released ones.
pub async fn used_addrs(
    db: &Db,
    network_id: &str,
    reuse_after: Duration,
) -> Result<HashSet<u32>, DbError> {
    let mut used = held_addrs(db, network_id).await?;
    used.extend(recent_addrs(db, network_id, reuse_after).await?);
    Ok(used)
}

async fn addr_set(db: &Db, q: &Sql) -> Result<HashSet<u32>, DbError> {
    // The writer pool: on SQLite it is the connection every allocation
    // commits through, so what it reads is never behind.
    let rows = q
        .query()?
        .fetch_all(db.write())
        .await
        .map_err(DbError::from)?;
    let mut out = HashSet::with_capacity(rows.len());
    for r in &rows {
        if let Value::String(ip) = cloudpods_db::sql::raw_column(r, 0)?
            && let Some(v) = ip_to_u32(&ip)
        {
            out.insert(v);
        }
    }
    Ok(out)
}

/// Choose an address. A `requested` one must be in the range and not
/// `held`; otherwise the network's policy picks one neither held, nor
/// `recent`, nor already `tried`, nor the gateway.
pub fn pick(
    range: &NetRange,
    held: &HashSet<u32>,
    recent: &HashSet<u32>,
    requested: Option<u32>,
    tried: &HashSet<u32>,
) -> Result<u32, HttpError> {
    if range.start > range.end {
        return Err(HttpError::input(format!(
            "network {} has an empty range",
            range.describe()
        )));
    }
    if let Some(ip) = requested {
        if !range.contains(ip) {
            return Err(HttpError::input(format!(
                "address {} is outside network {}",
                u32_to_ip(ip),
                range.describe()
            )));
        }
        if held.contains(&ip) || tried.contains(&ip) {
            return Err(HttpError::conflict(format!(
                "address {} of network {} is already in use",
                u32_to_ip(ip),
                range.name
            )));
        }
        return Ok(ip);
    }
    let free = |ip: u32| {
        !held.contains(&ip)
            && !recent.contains(&ip)
            && !tried.contains(&ip)
            && Some(ip) != range.gateway
    };
    let found = match range.policy {
        AllocPolicy::StepUp => (range.start..=range.end).find(|ip| free(*ip)),
        AllocPolicy::StepDown => (range.start..=range.end).rev().find(|ip| free(*ip)),
        AllocPolicy::Random => (0..5)
            .map(|_| rand::random_range(range.start..=range.end))
            .find(|ip| free(*ip))
            // Like Cloudpods: after 5 misses, step up from the start.
            .or_else(|| (range.start..=range.end).find(|ip| free(*ip))),
    };
    found.ok_or_else(|| {
        let held_back = recent
            .iter()
            .filter(|ip| range.contains(**ip) && !held.contains(ip))
            .count();
        let mut msg = format!("network {} has no free address", range.describe());
        if held_back > 0 {
            msg.push_str(&format!(
                " ({held_back} released recently are held back before reuse)"
            ));
        }
        HttpError::insufficient(msg)
    })
}

// ---------------------------------------------------------------------------
// locking

type LocalLocks = std::sync::Mutex<HashMap<(usize, String), Arc<tokio::sync::Mutex<()>>>>;

static LOCAL_LOCKS: LazyLock<LocalLocks> = LazyLock::new(Default::default);

/// A per-process lock on `key`, separate per database handle (one per
/// process in production; tests open several to play several processes).
pub async fn local_lock(db: &Db, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let slot = (db.write() as *const _ as usize, key.to_string());
    let m = {
        let mut map = LOCAL_LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(slot).or_default().clone()
    };
    m.lock_owned().await
}

/// How long a lease on a network stays valid without being released: far
/// longer than an allocation takes, short enough that a crashed holder
/// does not stall the network for long.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How long to wait for another holder before answering busy.
const LEASE_WAIT: Duration = Duration::from_secs(30);

/// A lease on a network row, released when dropped (also when the future
/// holding it is cancelled).
struct Lease {
    db: Db,
    network_id: String,
    owner: String,
    held: bool,
}

impl Lease {
    async fn acquire(db: &Db, network_id: &str) -> Result<Lease, HttpError> {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let deadline = Instant::now() + LEASE_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            let now = chrono::Utc::now();
            let until = cloudpods_apis::time::format(
                now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default(),
            );
            let mut q = Sql::new(format!(
                "UPDATE `{}` SET `alloc_lock_owner` = ",
                NETWORKS.table
            ));
            q.bind(owner.as_str())
                .push(", `alloc_lock_until` = ")
                .bind(until)
                .push(" WHERE `id` = ")
                .bind(network_id)
                .push(" AND `deleted` = 0 AND (`alloc_lock_until` IS NULL OR `alloc_lock_until` < ")
                .bind(cloudpods_apis::time::format(now))
                .push(")");
            let taken = q
                .query()?
                .execute(db.write())
                .await
                .map_err(DbError::from)?
                .rows_affected()
                == 1;
            if taken {
                return Ok(Lease {
                    db: db.clone(),
                    network_id: network_id.to_string(),
                    owner,
                    held: true,
                });
            }
            if crud::get(db.write(), &NETWORKS, network_id)
                .await?
                .is_none()
            {
                return Err(HttpError::not_found(format!(
                    "network {network_id} not found"
                )));
            }
            if Instant::now() > deadline {
                return Err(HttpError::busy(format!(
                    "network {network_id} is busy allocating addresses, retry"
                )));
            }
            let jitter = Duration::from_millis(rand::random_range(0..=pause.as_millis() as u64));
            tokio::time::sleep(pause + jitter).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn release_sql(&self) -> Sql {
        let mut q = Sql::new(format!(
            "UPDATE `{}` SET `alloc_lock_owner` = NULL, `alloc_lock_until` = NULL WHERE `id` = ",
            NETWORKS.table
        ));
        q.bind(self.network_id.as_str())
            .push(" AND `alloc_lock_owner` = ")
            .bind(self.owner.as_str());
        q
    }

    async fn release(mut self) {
        self.held = false;
        let q = self.release_sql();
        if let Err(e) = run(&self.db, &q).await {
            // The lease runs out by itself.
            tracing::warn!(error = %e, network = %self.network_id, "releasing the address lock failed");
        }
    }
}

async fn run(db: &Db, q: &Sql) -> Result<(), DbError> {
    q.query()?
        .execute(db.write())
        .await
        .map_err(DbError::from)?;
    Ok(())
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // Cancelled while holding the lease: release it in the background
        // rather than making the network wait for the lease to run out.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let db = self.db.clone();
            let q = self.release_sql();
            rt.spawn(async move {
                let _ = run(&db, &q).await;
            });
        }
    }
}

/// Run `work` holding the allocation lock of a network (see the module
/// documentation). Everything that adds a holder of one of its addresses or
/// changes its range goes through here.
pub async fn with_network_lock<T>(
    db: &Db,
    network_id: &str,
    work: impl std::future::Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    let _local = local_lock(db, &format!("network:{network_id}")).await;
    let lease = Lease::acquire(db, network_id).await?;
    let out = work.await;
    lease.release().await;
    out
}

// ---------------------------------------------------------------------------
// allocation

/// Allocate an address of `network` and insert the row that holds it.
/// `requested` is honoured or refused (400 outside the range, 409 held);
/// otherwise the network's policy picks one. `insert` writes the holder
/// row; a duplicate-key refusal makes the next candidate be tried.
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
    let requested = match requested.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(
            ip_to_u32(r)
                .ok_or_else(|| HttpError::input(format!("{r:?} is not an IPv4 address")))?,
        ),
        None => None,
    };
    let network_id = network
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    with_network_lock(db, &network_id, async {
        // Read again under the lock: the range may have changed since the
        // caller loaded the network.
        let network = crud::get(db.write(), &NETWORKS, &network_id)
            .await?
            .ok_or_else(|| HttpError::not_found(format!("network {network_id} not found")))?;
        let range = NetRange::from_row(&network).map_err(HttpError::input)?;
        let held = held_addrs(db, &range.id).await?;
        let recent = match requested {
            Some(_) => HashSet::new(),
            None => recent_addrs(db, &range.id, reuse_after).await?,
        };
        let mut tried = HashSet::new();
        for _ in 0..64 {
            let ip = pick(&range, &held, &recent, requested, &tried)?;
            match insert(u32_to_ip(ip)).await {
                Ok(()) => return Ok(u32_to_ip(ip)),
                Err(DbError::Duplicate(_)) if requested.is_some() => {
                    return Err(HttpError::conflict(format!(
                        "address {} of network {} is already in use",
                        u32_to_ip(ip),
                        range.name
                    )));
                }
                // Taken by a writer that does not lock (or another
                // index, e.g. the MAC): try the next one.
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
    })
    .await
}

/// Check that `address` could be given to a new holder on `network` now:
/// 400 when it is not an address of the range, 409 when someone holds it.
/// For synchronous validation before an allocation that happens later.
pub async fn check_address(db: &Db, network: &Row, address: &str) -> Result<(), HttpError> {
    let range = NetRange::from_row(network).map_err(HttpError::input)?;
    let ip = ip_to_u32(address)
        .ok_or_else(|| HttpError::input(format!("{address:?} is not an IPv4 address")))?;
    let held = held_addrs(db, &range.id).await?;
    pick(&range, &held, &HashSet::new(), Some(ip), &HashSet::new()).map(|_| ())
}

/// Reserve an address of a network: `reservation` is the prepared
/// `reservedips` row (its `ip_addr` is the address, which must be in the
/// range and held by nobody). Returns the row as inserted.
pub async fn reserve(db: &Db, network: &Row, reservation: Row) -> Result<Row, HttpError> {
    let network_id = network
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    purge_expired_reservations(db, &network_id).await?;
    let address = reservation
        .get("ip_addr")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut row = reservation;
    row.insert("network_id".into(), json!(network_id));
    let template = row.clone();
    allocate(db, network, Some(&address), Duration::ZERO, |ip| {
        let mut r = template.clone();
        r.insert("ip_addr".into(), json!(ip));
        async move { crud::insert(db.write(), &RESERVEDIPS, &r).await.map(|_| ()) }
    })
    .await?;
    Ok(row)
}

/// Drop reservations whose `expired_at` has passed: their addresses are
/// free again.
pub async fn purge_expired_reservations(db: &Db, network_id: &str) -> Result<u64, DbError> {
    let mut q = Sql::new(format!(
        "DELETE FROM `{}` WHERE `network_id` = ",
        RESERVEDIPS.table
    ));
    q.bind(network_id)
        .push(" AND `expired_at` IS NOT NULL AND `expired_at` <> '' AND `expired_at` <= ")
        .bind(cloudpods_apis::time::now());
    Ok(q.query()?
        .execute(db.write())
        .await
        .map_err(DbError::from)?
        .rows_affected())
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

    fn ip(s: &str) -> u32 {
        ip_to_u32(s).unwrap()
    }

    #[test]
    fn policies_and_requests() {
        let used: HashSet<u32> = [ip("10.0.0.10")].into();
        let none = HashSet::new();
        let pick_ip = |p, req| pick(&range(p), &used, &none, req, &none);
        assert_eq!(
            u32_to_ip(pick_ip(AllocPolicy::StepUp, None).unwrap()),
            "10.0.0.11"
        );
        assert_eq!(
            u32_to_ip(pick_ip(AllocPolicy::StepDown, None).unwrap()),
            "10.0.0.20"
        );
        let r = pick_ip(AllocPolicy::Random, None).unwrap();
        assert!(range(AllocPolicy::Random).contains(r) && !used.contains(&r));
        let e = pick_ip(AllocPolicy::StepUp, Some(ip("10.0.0.10"))).unwrap_err();
        assert_eq!(e.class, cloudpods_apis::ErrorClass::ConflictError);
        let e = pick_ip(AllocPolicy::StepUp, Some(ip("10.0.1.10"))).unwrap_err();
        assert_eq!(e.class, cloudpods_apis::ErrorClass::InputParameterError);
        assert_eq!(
            u32_to_ip(pick_ip(AllocPolicy::StepUp, Some(ip("10.0.0.15"))).unwrap()),
            "10.0.0.15"
        );
        let full: HashSet<u32> = (ip("10.0.0.10")..=ip("10.0.0.20")).collect();
        let e = pick(&range(AllocPolicy::StepUp), &full, &none, None, &none).unwrap_err();
        assert_eq!(
            e.class,
            cloudpods_apis::ErrorClass::InsufficientResourceError
        );
        assert!(e.details.contains("network n"), "{}", e.details);
    }

    #[test]
    fn recent_addresses_are_skipped_unless_requested() {
        let held = HashSet::new();
        let recent: HashSet<u32> = [ip("10.0.0.10"), ip("10.0.0.11")].into();
        let none = HashSet::new();
        let r = range(AllocPolicy::StepUp);
        assert_eq!(
            u32_to_ip(pick(&r, &held, &recent, None, &none).unwrap()),
            "10.0.0.12"
        );
        // Asked for explicitly, a recently released address is honoured.
        assert_eq!(
            u32_to_ip(pick(&r, &held, &recent, Some(ip("10.0.0.10")), &none).unwrap()),
            "10.0.0.10"
        );
        // Only recently released ones left: refused, saying why.
        let held: HashSet<u32> = (ip("10.0.0.12")..=ip("10.0.0.20")).collect();
        let e = pick(&r, &held, &recent, None, &none).unwrap_err();
        assert!(e.details.contains("2 released recently"), "{}", e.details);
    }

    #[test]
    fn random_stays_in_range_and_avoids_the_gateway() {
        let mut r = range(AllocPolicy::Random);
        r.start = ip("10.0.0.1");
        r.end = ip("10.0.0.3");
        r.gateway = Some(ip("10.0.0.2"));
        let none = HashSet::new();
        for _ in 0..200 {
            let got = pick(&r, &none, &none, None, &none).unwrap();
            assert!(got == ip("10.0.0.1") || got == ip("10.0.0.3"));
        }
    }

    #[test]
    fn range_validation() {
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.0.0.1")).is_ok());
        assert!(validate_range("10.0.0.20", "10.0.0.10", 24, None).is_err());
        assert!(validate_range("10.0.0.10", "10.0.1.20", 24, None).is_err());
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.0.0.15")).is_err());
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.1.0.1")).is_err());
        assert!(validate_range("10.0.0.10", "10.0.0.20", 24, Some("10.0.0.255")).is_err());
        assert!(validate_range("x", "10.0.0.20", 24, None).is_err());
        assert!(validate_range("10.0.0.1", "10.0.0.2", 33, None).is_err());
        assert!(validate_range("10.0.0.0", "10.0.0.20", 24, None).is_err());
        assert!(validate_range("10.0.0.1", "10.0.0.255", 24, None).is_err());
        assert!(validate_range("10.0.0.1", "10.0.0.254", 24, None).is_ok());
    }

    #[test]
    fn prefixes_expand_like_cloudpods() {
        let p = expand_prefix("10.1.0.0/24", None).unwrap();
        assert_eq!(
            p,
            PrefixRange {
                start: "10.1.0.2".into(),
                end: "10.1.0.254".into(),
                mask: 24,
                gateway: "10.1.0.1".into(),
                prefix: "10.1.0.0/24".into(),
            }
        );
        let p = expand_prefix("10.1.0.77/24", Some("10.1.0.254")).unwrap();
        assert_eq!(
            (p.start.as_str(), p.end.as_str()),
            ("10.1.0.1", "10.1.0.253")
        );
        assert_eq!(p.prefix, "10.1.0.0/24");
        assert!(expand_prefix("10.1.0.0/24", Some("10.1.0.100")).is_err());
        assert!(expand_prefix("10.1.0.0/24", Some("10.2.0.1")).is_err());
        assert!(expand_prefix("10.1.0.0", None).is_err());
        assert!(expand_prefix("10.1.0.0/31", None).is_err());
        assert!(expand_prefix("10.1.0.0/x", None).is_err());
        let p = expand_prefix("192.168.8.0/29", None).unwrap();
        assert_eq!(
            (p.start.as_str(), p.end.as_str()),
            ("192.168.8.2", "192.168.8.6")
        );
        assert!(validate_range(&p.start, &p.end, p.mask, Some(&p.gateway)).is_ok());
    }

    #[test]
    fn exit_addresses_and_cidrs() {
        assert!(!is_exit_address(ip("10.1.2.3")));
        assert!(!is_exit_address(ip("172.20.0.1")));
        assert!(!is_exit_address(ip("192.168.1.1")));
        assert!(!is_exit_address(ip("100.64.0.1")));
        assert!(is_exit_address(ip("8.8.8.8")));
        assert!(is_exit_address(ip("172.32.0.1")));
        assert_eq!(
            parse_cidrs("10.0.0.0/8, 192.168.0.0/16").unwrap(),
            vec![
                (ip("10.0.0.0"), ip("10.255.255.255")),
                (ip("192.168.0.0"), ip("192.168.255.255"))
            ]
        );
        assert!(parse_cidrs("10.0.0.1/8").is_err());
        assert!(parse_cidrs("10.0.0.0").is_err());
        assert!(parse_cidrs("10.0.0.0/33").is_err());
    }
}
