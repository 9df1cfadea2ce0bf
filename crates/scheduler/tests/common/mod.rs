//! Shared fixture: a temp-file SQLite region database with hosts,
//! storages, wires and networks inserted through `crud`, a fake token
//! verifier, and a small client driving the scheduler's router.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use cloudpods_db::{Db, ModelDesc, Row, crud};
use cloudpods_rbac::{PolicyBlob, PolicySet, ScopedPolicies};
use cloudpods_region::models::*;
use cloudpods_rest::{Identity, TenantCache, TokenVerifier};
use cloudpods_scheduler::{SchedulerOptions, SchedulerService};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct TestDb {
    pub db: Db,
    _dir: tempfile::TempDir,
}

pub async fn insert(db: &Db, desc: &ModelDesc, v: Value) -> Row {
    let Value::Object(mut row) = v else {
        panic!("row must be an object")
    };
    crud::prepare_insert(desc, &mut row);
    crud::insert(db.write(), desc, &row).await.expect("insert");
    row
}

impl TestDb {
    /// Region schema, zone `z1` in the default region, wire `w1`.
    pub async fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let db = Db::connect(&url).await.expect("connect");
        cloudpods_db::migrate::sync_schema(&db, &cloudpods_region::tables(), &[])
            .await
            .expect("schema");
        insert(
            &db,
            &CLOUDREGIONS,
            json!({"id": "default", "name": "Default", "is_public": true, "public_scope": "system"}),
        )
        .await;
        insert(
            &db,
            &ZONES,
            json!({"id": "z1", "name": "zone1", "cloudregion_id": "default", "is_public": true, "public_scope": "system"}),
        )
        .await;
        insert(
            &db,
            &WIRES,
            json!({"id": "w1", "name": "wire1", "zone_id": "z1", "vpc_id": "default", "is_public": true, "public_scope": "system"}),
        )
        .await;
        TestDb { db, _dir: dir }
    }

    /// An online host with one local storage of `disk_mb`, on wire `w1`.
    pub async fn host(&self, id: &str, cpu: i64, mem_mb: i64, disk_mb: i64) {
        insert(
            &self.db,
            &HOSTS,
            json!({"id": id, "name": id, "zone_id": "z1", "host_type": "hypervisor",
                   "host_status": "online", "status": "running", "enabled": true,
                   "cpu_count": cpu, "cpu_cmtbound": 1.0, "mem_size": mem_mb, "mem_cmtbound": 1.0,
                   "is_public": true, "public_scope": "system"}),
        )
        .await;
        let sid = format!("{id}-local");
        insert(
            &self.db,
            &STORAGES,
            json!({"id": sid, "name": sid, "zone_id": "z1", "capacity": disk_mb,
                   "storage_type": "local", "medium_type": "ssd", "enabled": true, "status": "online",
                   "cmtbound": 1.0, "is_public": true, "public_scope": "system"}),
        )
        .await;
        insert(
            &self.db,
            &HOSTSTORAGES,
            json!({"host_id": id, "storage_id": sid}),
        )
        .await;
        insert(
            &self.db,
            &HOSTWIRES,
            json!({"host_id": id, "wire_id": "w1"}),
        )
        .await;
    }

    pub async fn network(&self, id: &str, start: &str, end: &str) {
        insert(
            &self.db,
            &NETWORKS,
            json!({"id": id, "name": id, "wire_id": "w1", "guest_ip_start": start, "guest_ip_end": end,
                   "guest_ip_mask": 24, "server_type": "guest", "is_auto_alloc": true, "status": "available",
                   "is_public": true, "public_scope": "system", "tenant_id": "p1", "domain_id": "default"}),
        )
        .await;
    }

    /// A guest placed on `host`.
    pub async fn guest(&self, id: &str, host: &str, cpu: i64, mem: i64, status: &str) {
        insert(
            &self.db,
            &GUESTS,
            json!({"id": id, "name": id, "host_id": host, "vcpu_count": cpu, "vmem_size": mem,
                   "status": status, "tenant_id": "p1", "domain_id": "default"}),
        )
        .await;
    }

    pub async fn disk(&self, id: &str, storage: &str, size: i64) {
        insert(
            &self.db,
            &DISKS,
            json!({"id": id, "name": id, "storage_id": storage, "disk_size": size,
                   "status": "ready", "tenant_id": "p1", "domain_id": "default"}),
        )
        .await;
    }

    pub async fn service(&self, opts: SchedulerOptions) -> Arc<SchedulerService> {
        SchedulerService::new(self.db.clone(), opts)
            .await
            .expect("scheduler")
    }
}

// ---------------------------------------------------------------------------
// identities

pub const ADMIN: &str = "tok-admin";
pub const MEMBER: &str = "tok-member";

fn blob(v: Value) -> PolicyBlob {
    PolicyBlob::parse(&v).expect("policy")
}

pub struct FakeVerifier(pub HashMap<String, Arc<Identity>>);

#[async_trait]
impl TokenVerifier for FakeVerifier {
    async fn verify(&self, token: &str) -> cloudpods_rest::Result<Arc<Identity>> {
        self.0
            .get(token)
            .cloned()
            .ok_or_else(cloudpods_rest::auth::invalid_token)
    }
}

pub fn verifier() -> Arc<FakeVerifier> {
    let mut m = HashMap::new();
    let admin = Identity {
        user_id: "u-admin".into(),
        user: "admin".into(),
        project_id: "psys".into(),
        project: "system".into(),
        domain_id: "default".into(),
        domain: "Default".into(),
        expires_at: "2099-01-01T00:00:00.000000Z".into(),
        policies: Arc::new(ScopedPolicies {
            system: PolicySet::new().with("sysadmin", blob(json!({"policy": {"*": "allow"}}))),
            ..Default::default()
        }),
        ..Default::default()
    };
    m.insert(ADMIN.to_string(), Arc::new(admin));
    let member = Identity {
        user_id: "u-member".into(),
        user: "member".into(),
        project_id: "p1".into(),
        project: "proj1".into(),
        domain_id: "default".into(),
        domain: "Default".into(),
        expires_at: "2099-01-01T00:00:00.000000Z".into(),
        policies: Arc::new(ScopedPolicies {
            project: PolicySet::new().with(
                "member",
                blob(json!({"policy": {"compute": {"servers": "allow"}}})),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    m.insert(MEMBER.to_string(), Arc::new(member));
    Arc::new(FakeVerifier(m))
}

pub fn router(sched: Arc<SchedulerService>, db: &Db) -> Router {
    let tenants = Arc::new(TenantCache::new(db.clone()));
    cloudpods_rest::server::router(cloudpods_scheduler::service(sched, verifier(), tenants))
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
}

pub async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("x-auth-token", t);
    }
    let req = b
        .body(
            body.map(|v| Body::from(v.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let raw = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    Resp { status, body }
}

impl Resp {
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.body);
        &self.body
    }

    #[track_caller]
    pub fn error(&self, code: u16, class: &str) -> String {
        assert_eq!(self.status, code, "{}", self.body);
        assert_eq!(self.body["code"], json!(code), "{}", self.body);
        assert_eq!(self.body["class"], json!(class), "{}", self.body);
        assert!(self.body["time"].is_string());
        self.body["details"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
