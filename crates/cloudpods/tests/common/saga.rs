//! An in-process region with simulated hosts, for running task types
//! step by step: every step twice, or a failure injected at each step
//! (omicron's saga tests).

#![allow(dead_code)]
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use cloudpods_db::{Db, Row, crud};
use cloudpods_host::sim::{SimDriver, SimOptions};
use cloudpods_region::models::*;
use cloudpods_region::{Region, RegionOptions};
use cloudpods_rest::Ctx;
use cloudpods_rest::context::Identity;
use cloudpods_taskman::models::TASKS;
use cloudpods_taskman::{Engine, EngineOptions, NewTask, Owner, TestHooks};
use serde_json::{Value, json};

pub struct Lab {
    pub region: Arc<Region>,
    /// `(host id, its simulated hypervisor)`.
    pub hosts: Vec<(String, Arc<SimDriver>)>,
    pub ctx: Ctx,
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

async fn callback(
    State(engine): State<Arc<OnceLock<Arc<Engine>>>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(engine) = engine.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    };
    match engine
        .callback(
            &id,
            q.get("stage").map(String::as_str),
            q.get("key").map(String::as_str),
            body,
        )
        .await
    {
        Ok(_) => (StatusCode::OK, Json(json!({}))),
        Err(_) => (StatusCode::NOT_FOUND, Json(json!({}))),
    }
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

pub async fn lab(n_hosts: usize) -> Lab {
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
    let slot: Arc<OnceLock<Arc<Engine>>> = Arc::new(OnceLock::new());
    let cb = serve(
        axum::Router::new()
            .route("/tasks/{id}", post(callback))
            .with_state(slot.clone()),
    )
    .await;
    let opts = EngineOptions {
        poll: Duration::from_millis(20),
        callback_base: cb.clone(),
        callback_secret: b"saga".to_vec(),
        ..Default::default()
    };
    let tenants = Arc::new(cloudpods_rest::TenantCache::new(db.clone()));
    let ropts = RegionOptions {
        agent_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let region = Region::new(db.clone(), opts, "saga", ropts, tenants.clone());
    let _ = slot.set(region.engine.clone());
    region.start().await.expect("start");

    insert(&db, &ZONES, json!({"id": "z1", "name": "z1"})).await;
    insert(
        &db,
        &WIRES,
        json!({"id": "w1", "name": "w1", "zone_id": "z1", "vpc_id": "default"}),
    )
    .await;
    insert(
        &db,
        &NETWORKS,
        json!({"id": "n1", "name": "n1", "wire_id": "w1", "guest_ip_start": "10.1.0.10",
               "guest_ip_end": "10.1.0.250", "guest_ip_mask": 24, "tenant_id": "p1",
               "domain_id": "default", "is_public": true, "public_scope": "system"}),
    )
    .await;
    let mut hosts = Vec::new();
    for k in 1..=n_hosts {
        let h = format!("h{k}");
        let st = format!("st{k}");
        let storage_dir = std::path::PathBuf::from(format!("/sim/{st}"));
        let sim = Arc::new(SimDriver::new(SimOptions {
            storage_dir: storage_dir.clone(),
            ..Default::default()
        }));
        let secret = cloudpods_apis::agent_auth::generate_secret();
        let agent_cfg = cloudpods_host::agent::AgentConfig::new(
            &secret,
            &cb,
            cloudpods_host::validate::Roots {
                storage: vec![storage_dir.clone()],
                image_cache: None,
            },
        )
        .expect("agent config");
        agent_cfg.set_storages(vec![st.clone()]);
        let uri = serve(cloudpods_host::agent::router(sim.clone(), agent_cfg)).await;
        insert(
            &db,
            &HOSTS,
            json!({"id": h, "name": h, "zone_id": "z1", "manager_uri": uri, "agent_secret": secret,
                   "host_status": "online", "status": "running", "cpu_count": 64,
                   "mem_size": 262144, "domain_id": "default",
                   "sys_info": {"driver": "simulated"},
                   "last_ping_at": cloudpods_apis::time::now()}),
        )
        .await;
        insert(
            &db,
            &STORAGES,
            json!({"id": st, "name": st, "zone_id": "z1", "capacity": 1_000_000,
                   "domain_id": "default"}),
        )
        .await;
        insert(
            &db,
            &HOSTSTORAGES,
            json!({"host_id": h, "storage_id": st, "mount_point": storage_dir}),
        )
        .await;
        insert(
            &db,
            &HOSTWIRES,
            json!({"host_id": h, "wire_id": "w1", "bridge": "br0"}),
        )
        .await;
        hosts.push((h, sim));
    }
    let all =
        cloudpods_rbac::PolicyBlob::parse(&json!({"policy": {"*": "allow"}})).expect("policy");
    let identity = Identity {
        user_id: "u1".into(),
        user: "sysadmin".into(),
        project_id: "p1".into(),
        project: "system".into(),
        domain_id: "default".into(),
        domain: "Default".into(),
        policies: Arc::new(cloudpods_rbac::ScopedPolicies {
            system: cloudpods_rbac::PolicySet::new().with("sysadmin", all),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctx = Ctx {
        identity: Arc::new(identity),
        request_id: "saga".into(),
        service: "compute",
        tenants,
    };
    Lab {
        region,
        hosts,
        ctx,
        _dir: dir,
    }
}

impl Lab {
    pub fn db(&self) -> &Db {
        &self.region.db
    }

    pub fn hooks(&self, repeat: bool, fail_at: Option<(&str, &str)>) {
        self.region.engine.set_hooks(TestHooks {
            repeat_steps: repeat,
            fail_at: fail_at.map(|(a, b)| (a.to_string(), b.to_string())),
        });
    }

    pub async fn guest(&self, id: &str) -> Row {
        crud::get(self.db().read(), &GUESTS, id)
            .await
            .expect("get")
            .expect("guest")
    }

    /// Create a guest on host `host` through the real create tasks.
    pub async fn create(&self, host: &str, disks: &[i64], running: bool) -> String {
        let name = format!("g{}", rand::random::<u32>());
        let disk_params: Vec<Value> = disks
            .iter()
            .enumerate()
            .map(|(k, size)| {
                json!({"index": k, "size": size, "image_id": "", "format": "qcow2",
                       "disk_type": if k == 0 { "sys" } else { "data" }, "driver": "virtio",
                       "backend": "", "medium": "", "storage_id": "", "fs": "", "mountpoint": ""})
            })
            .collect();
        let id = insert(
            self.db(),
            &GUESTS,
            json!({"name": name, "hostname": name, "tenant_id": "p1", "domain_id": "default",
                   "vcpu_count": 1, "vmem_size": 512, "status": "init",
                   "create_params": {"disks": disk_params,
                       "nets": [{"index": 0, "network_id": "n1", "wire_id": "", "address": "",
                                 "mac": "", "driver": "virtio", "bw_limit": 0}],
                       "reset_password": true, "keypair_id": "", "auto_start": running,
                       "secgroup_ids": [], "prefer": {"prefer_host": host},
                       "storage": disks.iter().sum::<i64>()}}),
        )
        .await;
        let mut t = NewTask::new(
            "GuestBatchCreateTask",
            "server",
            &id,
            &name,
            json!({"guest_ids": [id]}),
            Owner {
                tenant_id: "p1".into(),
                domain_id: "default".into(),
                ..Default::default()
            },
        );
        t.objects = vec![id.clone()];
        let tid = self.region.engine.submit(t).await.expect("submit");
        self.region
            .engine
            .wait(&tid, Duration::from_secs(30))
            .await
            .expect("wait")
            .expect("create finished");
        let want = if running { "running" } else { "ready" };
        let g = self.guest(&id).await;
        assert_eq!(g["status"], json!(want), "{g:?}");
        id
    }

    /// Create a guest through the real create tasks without asserting the
    /// outcome; returns the guest id and the finished batch task.
    pub async fn try_create(&self, host: &str, disks: &[i64], running: bool) -> (String, Row) {
        let name = format!("g{}", rand::random::<u32>());
        let disk_params: Vec<Value> = disks
            .iter()
            .enumerate()
            .map(|(k, size)| {
                json!({"index": k, "size": size, "image_id": "", "format": "qcow2",
                       "disk_type": if k == 0 { "sys" } else { "data" }, "driver": "virtio",
                       "backend": "", "medium": "", "storage_id": "", "fs": "", "mountpoint": ""})
            })
            .collect();
        let id = insert(
            self.db(),
            &GUESTS,
            json!({"name": name, "hostname": name, "tenant_id": "p1", "domain_id": "default",
                   "vcpu_count": 1, "vmem_size": 512, "status": "init",
                   "create_params": {"disks": disk_params,
                       "nets": [{"index": 0, "network_id": "n1", "wire_id": "", "address": "",
                                 "mac": "", "driver": "virtio", "bw_limit": 0}],
                       "reset_password": true, "keypair_id": "", "auto_start": running,
                       "secgroup_ids": [], "prefer": {"prefer_host": host},
                       "storage": disks.iter().sum::<i64>()}}),
        )
        .await;
        let mut t = NewTask::new(
            "GuestBatchCreateTask",
            "server",
            &id,
            &name,
            json!({"guest_ids": [id]}),
            Owner {
                tenant_id: "p1".into(),
                domain_id: "default".into(),
                ..Default::default()
            },
        );
        t.objects = vec![id.clone()];
        let tid = self.region.engine.submit(t).await.expect("submit");
        let done = self
            .region
            .engine
            .wait(&tid, Duration::from_secs(30))
            .await
            .expect("wait")
            .expect("create finished");
        (id, done)
    }

    /// Move a guest to `status` and run task `name` on it, as the API does
    /// for start/stop/restart/reset/syncstatus/delete.
    pub async fn run_task(&self, id: &str, status: Option<&str>, name: &str, params: Value) -> Row {
        if let Some(st) = status {
            let mut ch = Row::new();
            ch.insert("status".into(), json!(st));
            crud::update(self.db().write(), &GUESTS, id, &ch)
                .await
                .expect("status");
        }
        let g = self.guest_any(id).await;
        let t = NewTask::new(
            name,
            "server",
            id,
            g["name"].as_str().unwrap_or_default(),
            params,
            Owner {
                tenant_id: "p1".into(),
                domain_id: "default".into(),
                ..Default::default()
            },
        );
        let tid = self.region.engine.submit(t).await.expect("submit");
        self.region
            .engine
            .wait(&tid, Duration::from_secs(30))
            .await
            .expect("wait")
            .unwrap_or_else(|| panic!("{name} did not finish"))
    }

    /// A guest row, also when soft-deleted.
    pub async fn guest_any(&self, id: &str) -> Row {
        let spec = cloudpods_db::ListSpec {
            conds: vec![crud::eq("id", id)],
            include_deleted: true,
            limit: Some(1),
            ..Default::default()
        };
        crud::list(self.db(), &GUESTS, &spec)
            .await
            .expect("guest")
            .0
            .into_iter()
            .next()
            .expect("guest exists")
    }

    /// NICs of a guest.
    pub async fn nics(&self, id: &str) -> usize {
        cloudpods_region::store::guest_nics(self.db(), &[id.to_string()])
            .await
            .expect("nics")
            .len()
    }

    /// Guests the simulated hypervisors know.
    pub async fn sim_guests(&self) -> usize {
        let mut n = 0;
        for (_, sim) in &self.hosts {
            n += cloudpods_host::Driver::guests(sim.as_ref()).await.len();
        }
        n
    }

    /// Perform an action as the API would and run its task to the end.
    pub async fn perform(&self, id: &str, action: &str, input: Value, task: &str) -> Row {
        let obj = self.guest(id).await;
        let input = input.as_object().cloned().unwrap_or_default();
        let call = cloudpods_region::tasks::Call {
            region: &self.region,
            ctx: &self.ctx,
            obj: &obj,
            action,
            input: &input,
        };
        cloudpods_region::tasks::actions::perform(call)
            .await
            .unwrap_or_else(|e| panic!("{action}: {e:?}"))
            .expect("a server action");
        let spec = cloudpods_db::ListSpec {
            conds: vec![crud::eq("obj_id", id), crud::eq("task_name", task)],
            order: vec![("created_at".into(), cloudpods_db::Order::Desc)],
            limit: Some(1),
            ..Default::default()
        };
        let t = crud::list(self.db(), &TASKS, &spec)
            .await
            .expect("tasks")
            .0
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {task} for {action}"));
        let tid = t["id"].as_str().unwrap_or_default().to_string();
        self.region
            .engine
            .wait(&tid, Duration::from_secs(30))
            .await
            .expect("wait")
            .unwrap_or_else(|| panic!("{task} did not finish"))
    }

    /// Disk ids of a guest, by index.
    pub async fn disks(&self, id: &str) -> Vec<String> {
        cloudpods_region::store::guest_disks(self.db(), &[id.to_string()])
            .await
            .expect("disks")
            .iter()
            .map(|(_, d)| d["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub async fn disk(&self, id: &str) -> Option<Row> {
        crud::get(self.db().read(), &DISKS, id).await.expect("disk")
    }

    /// Every live disk is on exactly one host, and the hosts hold no
    /// others.
    pub async fn no_leak(&self, what: &str) {
        let db_disks = crud::list(self.db(), &DISKS, &Default::default())
            .await
            .expect("disks")
            .0
            .len();
        let held: usize = self.hosts.iter().map(|(_, s)| s.disk_count()).sum();
        assert_eq!(db_disks, held, "{what}: disks in the database vs on hosts");
    }

    pub async fn groups(&self, id: &str) -> Vec<String> {
        let mut g: Vec<String> = cloudpods_region::store::rows_in(
            self.db(),
            &GUESTSECGROUPS,
            "guest_id",
            &[id.to_string()],
        )
        .await
        .expect("groups")
        .iter()
        .map(|j| j["secgroup_id"].as_str().unwrap_or_default().to_string())
        .collect();
        g.sort();
        g
    }

    pub async fn live_snapshots(&self, disk: &str) -> usize {
        cloudpods_region::store::rows_in(self.db(), &SNAPSHOTS, "disk_id", &[disk.to_string()])
            .await
            .expect("snapshots")
            .len()
    }

    /// A ready, unattached data disk on host `host`.
    pub async fn spare_disk(&self, host: &str) -> String {
        let g = self.create(host, &[256, 128], false).await;
        let d = self.disks(&g).await[1].clone();
        let t = self
            .perform(
                &g,
                "detachdisk",
                json!({"disk_id": d}),
                "GuestDetachDiskTask",
            )
            .await;
        assert_eq!(t["status"], "complete");
        d
    }
}

pub fn st(r: &Row) -> &str {
    r["status"].as_str().unwrap_or_default()
}
