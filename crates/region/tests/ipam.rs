//! IPAM against real databases (SQLite and MariaDB, `CLOUDPODS_TEST_MYSQL`;
//! a missing server fails the tests): concurrent allocations from two
//! database handles (two region processes) never share an address, also
//! with reservations racing them; released addresses wait before reuse;
//! the three policies; requested addresses; a full network; a lease left by
//! a dead holder expires.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cloudpods_apis::ErrorClass;
use cloudpods_db::{Db, Row, crud};
use cloudpods_region::ipam;
use cloudpods_region::models::{GUESTNETWORKS, NETWORKS, RESERVEDIPS};
use cloudpods_rest::HttpError;
use serde_json::{Value, json};

/// A fresh database; dropped (MariaDB) or removed (SQLite) at the end.
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    mysql: Option<(String, String)>,
}

impl TestDb {
    async fn all() -> Vec<TestDb> {
        let mut out = Vec::new();
        let dir = tempfile::tempdir().expect("tempdir");
        out.push(TestDb {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display()),
            _dir: Some(dir),
            mysql: None,
        });
        {
            let base = cloudpods_testkit::mysql_url();
            let name = format!(
                "ipamtest_{}_{:x}",
                std::process::id(),
                rand::random::<u32>()
            );
            out.push(TestDb {
                url: format!("{}/{name}", base.trim_end_matches('/')),
                _dir: None,
                mysql: Some((base, name)),
            });
        }
        out
    }

    /// A connection (a new pool each time: a second one plays a second
    /// region process).
    async fn open(&self) -> Db {
        let db = Db::connect(&self.url).await.expect("connect");
        cloudpods_db::migrate::sync_schema(&db, &cloudpods_region::tables(), &[])
            .await
            .expect("schema");
        db
    }

    fn label(&self) -> &'static str {
        if self.mysql.is_some() {
            "mariadb"
        } else {
            "sqlite"
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.mysql.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                if let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!(
                    "{}/",
                    base.trim_end_matches('/')
                ))
                .await
                {
                    let _ = sqlx::Executor::execute(
                        &mut c,
                        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

fn obj(v: Value) -> Row {
    v.as_object().cloned().expect("object")
}

async fn network(db: &Db, name: &str, start: &str, end: &str, policy: &str) -> Row {
    let mut row = obj(json!({
        "name": name, "wire_id": "wire-x", "tenant_id": "p", "status": "available",
        "guest_ip_start": start, "guest_ip_end": end, "guest_ip_mask": 24,
        "guest_gateway": "10.9.0.1", "alloc_policy": policy,
    }));
    crud::prepare_insert(&NETWORKS, &mut row);
    crud::insert(db.write(), &NETWORKS, &row)
        .await
        .expect("insert network");
    row
}

/// Give a (pretend) guest a NIC on `net`.
async fn nic(
    db: &Db,
    net: &Row,
    requested: Option<&str>,
    reuse: Duration,
) -> Result<String, HttpError> {
    let guest = uuid::Uuid::new_v4().to_string();
    let net_id = net["id"].as_str().unwrap_or_default().to_string();
    ipam::allocate(db, net, requested, reuse, |ip| {
        let mut row = obj(json!({
            "guest_id": guest, "network_id": net_id, "ip_addr": ip,
            "mac_addr": ipam::random_mac(), "index": 0,
        }));
        crud::prepare_insert(&GUESTNETWORKS, &mut row);
        let db = db.clone();
        async move {
            crud::insert(db.write(), &GUESTNETWORKS, &row)
                .await
                .map(|_| ())
        }
    })
    .await
}

/// Release a NIC the way the region does: delete it, remember the address.
async fn release(db: &Db, net: &Row, ip: &str) {
    let net_id = net["id"].as_str().unwrap_or_default();
    let mut q = cloudpods_db::Sql::new("DELETE FROM `guestnetworks_tbl` WHERE `network_id` = ");
    q.bind(net_id).push(" AND `ip_addr` = ").bind(ip);
    q.query()
        .expect("sql")
        .execute(db.write())
        .await
        .expect("delete nic");
    ipam::record_freed(db, net_id, ip).await.expect("history");
}

async fn column(db: &Db, table: &str, net: &Row) -> Vec<String> {
    let mut q = cloudpods_db::Sql::new(format!(
        "SELECT `ip_addr` FROM `{table}` WHERE `network_id` = "
    ));
    q.bind(net["id"].as_str().unwrap_or_default());
    let rows = q
        .query()
        .expect("sql")
        .fetch_all(db.write())
        .await
        .expect("select");
    rows.iter()
        .map(|r| {
            cloudpods_db::sql::raw_column(r, 0)
                .expect("column")
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn ip(s: &str) -> u32 {
    ipam::ip_to_u32(s).expect("ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_and_reservations_never_share_an_address() {
    for t in TestDb::all().await {
        // Two handles: two region processes on one database.
        let (a, b) = (t.open().await, t.open().await);
        // 120 addresses: 100 NICs and 20 reservations of random addresses
        // race for them.
        let net = network(&a, "small", "10.9.0.2", "10.9.0.121", "random").await;
        let mut tasks = Vec::new();
        for k in 0..100 {
            let db = if k % 2 == 0 { a.clone() } else { b.clone() };
            let net = net.clone();
            tasks.push(tokio::spawn(async move {
                nic(&db, &net, None, Duration::from_secs(30))
                    .await
                    .map(|ip| ("nic", ip))
            }));
        }
        for k in 0..20 {
            let db = if k % 2 == 0 { b.clone() } else { a.clone() };
            let net = net.clone();
            tasks.push(tokio::spawn(async move {
                let addr = ipam::u32_to_ip(ip("10.9.0.2") + rand::random_range(0..120u32));
                let mut r = obj(json!({"ip_addr": addr, "notes": "race"}));
                crud::prepare_insert(&RESERVEDIPS, &mut r);
                ipam::reserve(&db, &net, r)
                    .await
                    .map(|_| ("reserved", addr))
            }));
        }
        let (mut nics, mut reserved) = (0, 0);
        for task in tasks {
            match task.await.expect("join") {
                Ok(("nic", _)) => nics += 1,
                Ok(_) => reserved += 1,
                // A reservation may lose its address to a NIC: a clear 409.
                Err(e) => assert_eq!(e.class, ErrorClass::ConflictError, "{}: {e:?}", t.label()),
            }
        }
        assert_eq!(nics, 100, "{}: every NIC got an address", t.label());
        let mut held = column(&a, "guestnetworks_tbl", &net).await;
        let res = column(&a, "reservedips_tbl", &net).await;
        assert_eq!(held.len(), 100, "{}", t.label());
        assert_eq!(res.len(), reserved, "{}", t.label());
        held.extend(res);
        let distinct: HashSet<&String> = held.iter().collect();
        assert_eq!(
            distinct.len(),
            held.len(),
            "{}: an address was handed out twice",
            t.label()
        );
        assert!(
            held.iter()
                .all(|x| (ip("10.9.0.2")..=ip("10.9.0.121")).contains(&ip(x))),
            "{}: {held:?}",
            t.label()
        );
        // No lease left behind.
        let row = crud::must_get(a.read(), &NETWORKS, net["id"].as_str().unwrap_or_default())
            .await
            .expect("network");
        assert!(row["alloc_lock_until"].is_null(), "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_network_is_refused_by_name() {
    for t in TestDb::all().await {
        let db = t.open().await;
        let net = network(&db, "tiny", "10.9.0.10", "10.9.0.14", "stepup").await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (db, net) = (db.clone(), net.clone());
            tasks.push(tokio::spawn(async move {
                nic(&db, &net, None, Duration::ZERO).await
            }));
        }
        let mut ok = HashSet::new();
        let mut full = 0;
        for task in tasks {
            match task.await.expect("join") {
                Ok(ip) => assert!(ok.insert(ip)),
                Err(e) => {
                    assert_eq!(e.class, ErrorClass::InsufficientResourceError, "{e:?}");
                    assert!(e.details.contains("network tiny"), "{}", e.details);
                    full += 1;
                }
            }
        }
        assert_eq!((ok.len(), full), (5, 3), "{}", t.label());
    }
}

#[tokio::test]
async fn released_addresses_wait_before_reuse() {
    for t in TestDb::all().await {
        let db = t.open().await;
        let reuse = Duration::from_secs(2);
        let net = network(&db, "reuse", "10.9.0.10", "10.9.0.14", "stepup").await;
        for want in ["10.9.0.10", "10.9.0.11", "10.9.0.12"] {
            assert_eq!(nic(&db, &net, None, reuse).await.expect("nic"), want);
        }
        release(&db, &net, "10.9.0.10").await;
        // stepup would take .10 again: it is held back.
        assert_eq!(nic(&db, &net, None, reuse).await.expect("nic"), "10.9.0.13");
        assert_eq!(nic(&db, &net, None, reuse).await.expect("nic"), "10.9.0.14");
        // Only the released one is left: refused, saying why.
        let e = nic(&db, &net, None, reuse).await.expect_err("held back");
        assert_eq!(e.class, ErrorClass::InsufficientResourceError);
        assert!(e.details.contains("released recently"), "{}", e.details);
        // Asked for by address it is honoured, as Cloudpods does.
        assert_eq!(
            nic(&db, &net, Some("10.9.0.10"), reuse).await.expect("nic"),
            "10.9.0.10"
        );
        release(&db, &net, "10.9.0.12").await;
        assert!(nic(&db, &net, None, reuse).await.is_err());
        tokio::time::sleep(reuse + Duration::from_millis(300)).await;
        assert_eq!(
            nic(&db, &net, None, reuse).await.expect("reusable now"),
            "10.9.0.12",
            "{}",
            t.label()
        );
    }
}

#[tokio::test]
async fn policies_pick_as_configured() {
    for t in TestDb::all().await {
        let db = t.open().await;
        let up = network(&db, "up", "10.9.0.10", "10.9.0.40", "stepup").await;
        let down = network(&db, "down", "10.9.0.50", "10.9.0.80", "stepdown").await;
        let rnd = network(&db, "rnd", "10.9.0.100", "10.9.0.200", "random").await;
        let none = network(&db, "none", "10.9.0.210", "10.9.0.220", "none").await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(nic(&db, &up, None, Duration::ZERO).await.expect("up"));
        }
        assert_eq!(got, ["10.9.0.10", "10.9.0.11", "10.9.0.12"]);
        got.clear();
        for _ in 0..3 {
            got.push(nic(&db, &down, None, Duration::ZERO).await.expect("down"));
        }
        assert_eq!(got, ["10.9.0.80", "10.9.0.79", "10.9.0.78"]);
        assert_eq!(
            nic(&db, &none, None, Duration::ZERO).await.expect("none"),
            "10.9.0.210",
            "none = the default, stepping up"
        );
        let mut addrs = Vec::new();
        for _ in 0..30 {
            addrs.push(ip(&nic(&db, &rnd, None, Duration::ZERO)
                .await
                .expect("rnd")));
        }
        let distinct: HashSet<u32> = addrs.iter().copied().collect();
        assert_eq!(distinct.len(), 30);
        assert!(
            addrs
                .iter()
                .all(|a| (ip("10.9.0.100")..=ip("10.9.0.200")).contains(a))
        );
        let stepped: Vec<u32> = (ip("10.9.0.100")..ip("10.9.0.130")).collect();
        assert_ne!(addrs, stepped, "{}: random is not stepping up", t.label());
    }
}

#[tokio::test]
async fn requested_addresses_are_honoured_or_refused() {
    for t in TestDb::all().await {
        let db = t.open().await;
        let net = network(&db, "req", "10.9.0.10", "10.9.0.20", "stepup").await;
        assert_eq!(
            nic(&db, &net, Some("10.9.0.15"), Duration::ZERO)
                .await
                .expect("nic"),
            "10.9.0.15"
        );
        let e = nic(&db, &net, Some("10.9.0.15"), Duration::ZERO)
            .await
            .expect_err("taken");
        assert_eq!(e.class, ErrorClass::ConflictError, "{e:?}");
        assert!(e.details.contains("10.9.0.15") && e.details.contains("req"));
        for outside in ["10.9.0.9", "10.9.0.21", "10.9.0.1", "192.168.1.1"] {
            let e = nic(&db, &net, Some(outside), Duration::ZERO)
                .await
                .expect_err("outside");
            assert_eq!(e.class, ErrorClass::InputParameterError, "{outside}: {e:?}");
        }
        let e = nic(&db, &net, Some("10.9.0.300"), Duration::ZERO)
            .await
            .expect_err("garbage");
        assert_eq!(e.class, ErrorClass::InputParameterError);
        // A reservation holds its address against requests too, until it
        // expires.
        let mut r = obj(json!({"ip_addr": "10.9.0.16"}));
        crud::prepare_insert(&RESERVEDIPS, &mut r);
        ipam::reserve(&db, &net, r).await.expect("reserve");
        let e = nic(&db, &net, Some("10.9.0.16"), Duration::ZERO)
            .await
            .expect_err("reserved");
        assert_eq!(e.class, ErrorClass::ConflictError);
        let mut r =
            obj(json!({"ip_addr": "10.9.0.17", "expired_at": "2000-01-01T00:00:00.000000Z"}));
        crud::prepare_insert(&RESERVEDIPS, &mut r);
        crud::insert(db.write(), &RESERVEDIPS, &r)
            .await
            .expect("insert expired");
        assert_eq!(
            nic(&db, &net, Some("10.9.0.17"), Duration::ZERO)
                .await
                .expect("expired reservation"),
            "10.9.0.17",
            "{}",
            t.label()
        );
        // A reservation of an address in use: 409.
        let mut r = obj(json!({"ip_addr": "10.9.0.15"}));
        crud::prepare_insert(&RESERVEDIPS, &mut r);
        let e = ipam::reserve(&db, &net, r).await.expect_err("in use");
        assert_eq!(e.class, ErrorClass::ConflictError);
    }
}

#[tokio::test]
async fn a_lease_left_by_a_dead_holder_expires() {
    for t in TestDb::all().await {
        let db = t.open().await;
        let net = network(&db, "leased", "10.9.0.10", "10.9.0.20", "stepup").await;
        // A process died holding the lock for another 2 s.
        let until = cloudpods_apis::time::format(chrono::Utc::now() + chrono::Duration::seconds(2));
        let mut q = cloudpods_db::Sql::new(
            "UPDATE `networks_tbl` SET `alloc_lock_owner` = 'dead', `alloc_lock_until` = ",
        );
        q.bind(until)
            .push(" WHERE `id` = ")
            .bind(net["id"].as_str().unwrap_or_default());
        q.query()
            .expect("sql")
            .execute(db.write())
            .await
            .expect("update");
        let t0 = Instant::now();
        assert_eq!(
            nic(&db, &net, None, Duration::ZERO).await.expect("nic"),
            "10.9.0.10"
        );
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
            "{}: waited {waited:?}",
            t.label()
        );
        // A deleted network: a clear 404, no waiting.
        crud::delete(
            db.write(),
            &NETWORKS,
            net["id"].as_str().unwrap_or_default(),
        )
        .await
        .expect("delete");
        let e = nic(&db, &net, None, Duration::ZERO)
            .await
            .expect_err("gone");
        assert_eq!(e.class, ErrorClass::ResourceNotFoundError, "{e:?}");
    }
}
