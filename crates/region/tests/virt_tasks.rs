//! The snapshot and disk tasks (`SnapshotCreateTask`, `SnapshotDeleteTask`,
//! `DiskResizeTask`, `DiskResetTask`) in the omicron style: every step run
//! twice ends as a single run would, and a failure injected at every step
//! is undone and leaves the object in its `*_failed` status. A small
//! in-test agent answers the disk protocol and delivers callbacks straight
//! to the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use cloudpods_db::{Db, Row, crud};
use cloudpods_region::models::*;
use cloudpods_region::{Region, RegionOptions};
use cloudpods_taskman::{Engine, EngineOptions, NewTask, Owner, TestHooks};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Agent {
    engine: Arc<OnceLock<Arc<Engine>>>,
    /// `(action, disk, snapshot_id)` of every request.
    calls: Arc<Mutex<Vec<(String, String, String)>>>,
    /// snapshot → disk.
    snapshots: Arc<Mutex<HashMap<String, String>>>,
    /// Report snapshot locations outside the storage.
    bad_location: Arc<std::sync::atomic::AtomicBool>,
    /// Requests whose signature did not verify with the host's secret.
    unsigned: Arc<std::sync::atomic::AtomicUsize>,
    /// disk → size.
    disks: Arc<Mutex<HashMap<String, i64>>>,
}

fn query_param(url: &str, key: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

const SECRET: &str = "5f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";

async fn disk_action(
    State(a): State<Agent>,
    Path((_storage, action, disk)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Json<Value> {
    use cloudpods_apis::agent_auth;
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let signed = agent_auth::Signed {
        method: "POST",
        path_and_query: uri.path_and_query().map(|p| p.as_str()).unwrap_or_default(),
        timestamp: h(agent_auth::TIMESTAMP_HEADER).parse().unwrap_or(0),
        task_id: &h("x-task-id"),
        notify_url: &h("x-task-notify-url"),
        body: &raw,
    };
    let key = agent_auth::parse_secret(SECRET).expect("secret");
    if agent_auth::verify(
        &key,
        &signed,
        &h(agent_auth::SIGNATURE_HEADER),
        agent_auth::now(),
    )
    .is_err()
        || headers.contains_key("x-auth-token")
    {
        a.unsigned.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let snap = body["snapshot_id"].as_str().unwrap_or_default().to_string();
    a.calls
        .lock()
        .unwrap()
        .push((action.clone(), disk.clone(), snap.clone()));
    let result = match action.as_str() {
        "snapshot" => {
            a.snapshots
                .lock()
                .unwrap()
                .insert(snap.clone(), disk.clone());
            if a.bad_location.load(std::sync::atomic::Ordering::SeqCst) {
                json!({"location": format!("/etc/{snap}")})
            } else {
                json!({"location": format!("/agent/{snap}")})
            }
        }
        "delete-snapshot" => {
            a.snapshots.lock().unwrap().remove(&snap);
            json!({})
        }
        "resize" => {
            let size = body["size"].as_i64().unwrap_or(0);
            a.disks.lock().unwrap().insert(disk.clone(), size);
            json!({"disk_size": size})
        }
        "reset" => json!({}),
        _ => json!({"__status__": "error", "__reason__": "unknown action"}),
    };
    let notify = headers
        .get("x-task-notify-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match notify {
        // Answer later, like an agent; the engine takes the callback.
        Some(url) => {
            let engine = a.engine.get().cloned().expect("engine");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let id = url
                    .split("/tasks/")
                    .nth(1)
                    .and_then(|t| t.split('?').next())
                    .unwrap_or_default()
                    .to_string();
                let _ = engine
                    .callback(
                        &id,
                        query_param(&url, "stage").as_deref(),
                        query_param(&url, "key").as_deref(),
                        result,
                    )
                    .await;
            });
            Json(json!({}))
        }
        None => Json(result),
    }
}

struct Fixture {
    region: Arc<Region>,
    agent: Agent,
    _dir: tempfile::TempDir,
}

fn row(v: Value) -> Row {
    v.as_object().cloned().unwrap_or_default()
}

async fn insert(db: &Db, desc: &cloudpods_db::ModelDesc, v: Value) -> String {
    let mut r = row(v);
    crud::prepare_insert(desc, &mut r);
    crud::insert(db.write(), desc, &r).await.expect("insert");
    r.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn fixture() -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("r.db").display()
    ))
    .await
    .expect("db");
    cloudpods_db::migrate::sync_schema(&db, &cloudpods_region::tables(), &[])
        .await
        .expect("schema");
    let agent = Agent::default();
    let app = axum::Router::new()
        .route("/disks/{storage}/{action}/{disk}", post(disk_action))
        .with_state(agent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let opts = EngineOptions {
        poll: Duration::from_millis(20),
        callback_secret: b"test".to_vec(),
        ..Default::default()
    };
    let tenants = Arc::new(cloudpods_rest::TenantCache::new(db.clone()));
    let region = Region::new(db.clone(), opts, "test", RegionOptions::default(), tenants);
    let _ = agent.engine.set(region.engine.clone());
    region.start().await.expect("start");
    insert(
        &db,
        &HOSTS,
        json!({"id": "h1", "name": "h1", "manager_uri": format!("http://{addr}"),
               "host_status": "online", "status": "running", "agent_secret": SECRET}),
    )
    .await;
    insert(
        &db,
        &STORAGES,
        json!({"id": "st1", "name": "st1", "capacity": 100000}),
    )
    .await;
    insert(
        &db,
        &HOSTSTORAGES,
        json!({"host_id": "h1", "storage_id": "st1", "mount_point": "/agent"}),
    )
    .await;
    Fixture {
        region,
        agent,
        _dir: dir,
    }
}

impl Fixture {
    fn db(&self) -> &Db {
        &self.region.db
    }

    async fn disk(&self) -> String {
        insert(
            self.db(),
            &DISKS,
            json!({"name": format!("d-{}", rand::random::<u32>()), "tenant_id": "p1",
                   "storage_id": "st1", "disk_size": 1024, "status": "ready"}),
        )
        .await
    }

    async fn snapshot(&self, disk: &str, status: &str) -> String {
        insert(
            self.db(),
            &SNAPSHOTS,
            json!({"name": format!("s-{}", rand::random::<u32>()), "tenant_id": "p1",
                   "disk_id": disk, "storage_id": "st1", "size": 1024, "status": status}),
        )
        .await
    }

    /// Run a task to its end; returns its final row.
    async fn run(&self, name: &str, kw: &str, id: &str, params: Value) -> Row {
        let t = NewTask::new(name, kw, id, id, params, Owner::default());
        let tid = self.region.engine.submit(t).await.expect("submit");
        self.region
            .engine
            .wait(&tid, Duration::from_secs(20))
            .await
            .expect("wait")
            .expect("task finished")
    }

    async fn get(&self, desc: &cloudpods_db::ModelDesc, id: &str) -> Row {
        let spec = cloudpods_db::ListSpec {
            conds: vec![crud::eq("id", id)],
            include_deleted: true,
            limit: Some(1),
            ..Default::default()
        };
        crud::list(self.db(), desc, &spec)
            .await
            .expect("get")
            .0
            .into_iter()
            .next()
            .expect("row")
    }

    fn hooks(&self, repeat: bool, fail_at: Option<(&str, &str)>) {
        self.region.engine.set_hooks(TestHooks {
            repeat_steps: repeat,
            fail_at: fail_at.map(|(a, b)| (a.to_string(), b.to_string())),
        });
    }

    fn calls(&self, action: &str) -> usize {
        self.agent
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == action)
            .count()
    }
}

fn st(r: &Row) -> &str {
    r["status"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn every_step_twice_ends_like_once() {
    let f = fixture().await;
    f.hooks(true, None);

    let d = f.disk().await;
    let s = f.snapshot(&d, "creating").await;
    let t = f.run("SnapshotCreateTask", "snapshot", &s, json!({})).await;
    assert_eq!(t["status"], "complete", "{t:?}");
    let snap = f.get(&SNAPSHOTS, &s).await;
    assert_eq!(st(&snap), "ready");
    assert_eq!(snap["location"], format!("/agent/{s}").as_str());
    assert!(f.agent.snapshots.lock().unwrap().contains_key(&s));

    let mut ch = Row::new();
    ch.insert("status".into(), json!("resizing"));
    ch.insert("pending_size".into(), json!(2048));
    crud::update(f.db().write(), &DISKS, &d, &ch)
        .await
        .expect("update");
    let t = f
        .run("DiskResizeTask", "disk", &d, json!({"size": 2048}))
        .await;
    assert_eq!(t["status"], "complete", "{t:?}");
    let disk = f.get(&DISKS, &d).await;
    assert_eq!(
        (
            st(&disk),
            disk["disk_size"].as_i64(),
            disk["pending_size"].as_i64()
        ),
        ("ready", Some(2048), Some(0))
    );

    let t = f
        .run("DiskResetTask", "disk", &d, json!({"snapshot_id": s}))
        .await;
    assert_eq!(t["status"], "complete", "{t:?}");
    assert_eq!(st(&f.get(&DISKS, &d).await), "ready");

    let t = f
        .run(
            "SnapshotDeleteTask",
            "snapshot",
            &s,
            json!({"prev_status": "ready"}),
        )
        .await;
    assert_eq!(t["status"], "complete", "{t:?}");
    assert_eq!(f.get(&SNAPSHOTS, &s).await["deleted"], true);
    assert!(!f.agent.snapshots.lock().unwrap().contains_key(&s));

    // A snapshot that never existed on the host is only forgotten.
    let s2 = f.snapshot(&d, "create_failed").await;
    let before = f.calls("delete-snapshot");
    let t = f
        .run(
            "SnapshotDeleteTask",
            "snapshot",
            &s2,
            json!({"prev_status": "create_failed"}),
        )
        .await;
    assert_eq!(t["status"], "complete");
    assert_eq!(f.calls("delete-snapshot"), before);
    assert_eq!(f.get(&SNAPSHOTS, &s2).await["deleted"], true);
}

#[tokio::test]
async fn a_failure_at_every_step_is_undone() {
    let f = fixture().await;

    // SnapshotCreateTask: the snapshot made on the host is dropped again.
    f.hooks(false, Some(("SnapshotCreateTask", "snapshot")));
    let d = f.disk().await;
    let s = f.snapshot(&d, "creating").await;
    let t = f.run("SnapshotCreateTask", "snapshot", &s, json!({})).await;
    assert_eq!(t["status"], "failed", "{t:?}");
    let snap = f.get(&SNAPSHOTS, &s).await;
    assert_eq!(st(&snap), "create_failed");
    assert!(
        snap["fail_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("injected")
    );
    assert!(
        !f.agent.snapshots.lock().unwrap().contains_key(&s),
        "undo left the snapshot"
    );

    // DiskResizeTask: the reserved growth is released, the size kept.
    f.hooks(false, Some(("DiskResizeTask", "resize")));
    let mut ch = Row::new();
    ch.insert("status".into(), json!("resizing"));
    ch.insert("pending_size".into(), json!(4096));
    crud::update(f.db().write(), &DISKS, &d, &ch)
        .await
        .expect("update");
    let t = f
        .run("DiskResizeTask", "disk", &d, json!({"size": 4096}))
        .await;
    assert_eq!(t["status"], "failed", "{t:?}");
    let disk = f.get(&DISKS, &d).await;
    assert_eq!(st(&disk), "resize_failed");
    assert_eq!(disk["disk_size"], 1024);
    assert_eq!(disk["pending_size"], 0);

    // DiskResetTask.
    f.hooks(false, None);
    let s2 = f.snapshot(&d, "creating").await;
    f.run("SnapshotCreateTask", "snapshot", &s2, json!({}))
        .await;
    f.hooks(false, Some(("DiskResetTask", "reset")));
    let t = f
        .run("DiskResetTask", "disk", &d, json!({"snapshot_id": s2}))
        .await;
    assert_eq!(t["status"], "failed", "{t:?}");
    assert_eq!(st(&f.get(&DISKS, &d).await), "reset_failed");

    // SnapshotDeleteTask: the record stays, marked delete_failed.
    f.hooks(false, Some(("SnapshotDeleteTask", "delete")));
    let t = f
        .run(
            "SnapshotDeleteTask",
            "snapshot",
            &s2,
            json!({"prev_status": "ready"}),
        )
        .await;
    assert_eq!(t["status"], "failed", "{t:?}");
    let snap = f.get(&SNAPSHOTS, &s2).await;
    assert_eq!(st(&snap), "delete_failed");
}

#[tokio::test]
async fn the_default_secgroup_is_made_once() {
    let f = fixture().await;
    let r = f.region.clone();
    let (a, b) = tokio::join!(
        cloudpods_region::resources::virt::ensure_default_secgroup(&r, "p9", "default"),
        cloudpods_region::resources::virt::ensure_default_secgroup(&r, "p9", "default"),
    );
    let (a, b) = (a.expect("default"), b.expect("default"));
    assert_eq!(a, b);
    let again = cloudpods_region::resources::virt::ensure_default_secgroup(&r, "p9", "default")
        .await
        .expect("default");
    assert_eq!(again, a);
    let g = f.get(&SECGROUPS, &a).await;
    assert_eq!(
        (g["name"].as_str(), g["tenant_id"].as_str()),
        (Some("default"), Some("p9"))
    );
    let rules = cloudpods_db::ListSpec {
        conds: vec![crud::eq("secgroup_id", a.as_str())],
        ..Default::default()
    };
    let rules = crud::list(f.db(), &SECGROUPRULES, &rules)
        .await
        .expect("rules")
        .0;
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules
            .iter()
            .all(|r| r["action"] == "allow" && r["cidr"] == "0.0.0.0/0")
    );
    // Another project gets its own.
    let other = cloudpods_region::resources::virt::ensure_default_secgroup(&r, "p8", "default")
        .await
        .expect("default");
    assert_ne!(other, a);
}

/// Every request to the agent is signed with the host's secret and carries
/// no token; a snapshot location outside the storage's mount point fails
/// the task and is not stored.
#[tokio::test]
async fn agent_requests_are_signed_and_answers_checked() {
    let f = fixture().await;
    let d = f.disk().await;
    let s = f.snapshot(&d, "creating").await;
    let t = f.run("SnapshotCreateTask", "snapshot", &s, json!({})).await;
    assert_eq!(t["status"], "complete", "{t:?}");
    f.agent
        .bad_location
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s2 = f.snapshot(&d, "creating").await;
    let t = f
        .run("SnapshotCreateTask", "snapshot", &s2, json!({}))
        .await;
    assert_eq!(t["status"], "failed", "{t:?}");
    let snap = f.get(&SNAPSHOTS, &s2).await;
    assert_eq!(st(&snap), "create_failed", "{snap:?}");
    assert!(
        snap["fail_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("outside the mount points"),
        "{snap:?}"
    );
    assert!(
        snap["location"].as_str().unwrap_or_default().is_empty(),
        "{snap:?}"
    );
    assert!(f.calls("snapshot") >= 2);
    assert_eq!(
        f.agent.unsigned.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "requests without a valid signature"
    );
}
