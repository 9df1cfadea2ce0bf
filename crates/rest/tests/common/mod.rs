//! Shared fixture for the in-process REST tests: a temp-file SQLite
//! database, a handful of test models (servers, zones, hosts in zones,
//! disks, the guestdisks joint), the identity tables the tenant cache reads,
//! a fake token verifier with fixed identities, and a small client driving
//! the router with `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use cloudpods_db::{Column, Db, IdStyle, ModelDesc, Owner, Row, Sql, crud};
use cloudpods_rbac::{PolicyBlob, PolicySet, ScopedPolicies};
use cloudpods_rest::error::{HttpError, Result};
use cloudpods_rest::generic;
use cloudpods_rest::{
    Ctx, Identity, JointModel, Model, Object, Service, TenantCache, TokenVerifier,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// table descriptors

pub static SERVERS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("server", "servers", "guests_tbl")
        .service("compute")
        .owner(Owner::Project)
        .standalone()
        .status("init")
        .pending_delete()
        .col(Column::int("vcpu_count").update().list())
        .col(Column::str("hostname", 60).create().search())
        .col(Column::str("secret", 64).secret().create())
        .build()
});

pub static ZONES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("zone", "zones", "zones_tbl")
        .service("compute")
        .owner(Owner::Domain)
        .standalone()
        .status("enable")
        .unique_name()
        .build()
});

pub static HOSTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("host", "hosts", "hosts_tbl")
        .service("compute")
        .owner(Owner::Domain)
        .standalone()
        .status("running")
        .col(Column::str("zone_id", 128).create().list().indexed())
        .build()
});

pub static DISKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("disk", "disks", "disks_tbl")
        .service("compute")
        .owner(Owner::Project)
        .standalone()
        .status("ready")
        .sharable()
        .col(Column::int("disk_size").update().list())
        .col(Column::float("ratio").update().list())
        .col(Column::time("expires_at").update().list())
        .col(Column::bool("auto_delete").update().list())
        .col(Column::json("extra").update())
        .build()
});

pub static GUESTDISKS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("guestdisk", "guestdisks", "guestdisks_tbl")
        .service("compute")
        .ids(IdStyle::Auto)
        .col(Column::str("guest_id", 128).list().indexed())
        .col(Column::str("disk_id", 128).list().indexed())
        .col(Column::int("index").update().list().default(0))
        .build()
});

/// The identity tables [`TenantCache`] reads (columns id, name, domain_id,
/// deleted).
pub static PROJECTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("project", "projects", "projects")
        .ids(IdStyle::Given)
        .owner(Owner::Domain)
        .standalone()
        .build()
});

pub static DOMAINS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("domain", "domains", "domains")
        .ids(IdStyle::Given)
        .standalone()
        .build()
});

// ---------------------------------------------------------------------------
// models

pub struct Plain {
    pub desc: &'static ModelDesc,
    pub db: Db,
    pub contexts: &'static [(&'static str, &'static str)],
}

#[async_trait]
impl Model for Plain {
    fn desc(&self) -> &ModelDesc {
        self.desc
    }
    fn db(&self) -> &Db {
        &self.db
    }
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        self.contexts
    }
}

/// Servers: a few actions with behaviour, a class action, a spec.
pub struct Servers {
    pub db: Db,
}

#[async_trait]
impl Model for Servers {
    fn desc(&self) -> &ModelDesc {
        &SERVERS
    }
    fn db(&self) -> &Db {
        &self.db
    }
    fn max_batch(&self) -> i64 {
        10
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        // Echo what the dispatcher merged from the query and the body.
        let mut out = generic::delete_row(self, ctx, obj, q).await?;
        out.insert("delete_input".into(), Value::Object(q.clone()));
        Ok(out)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let status = obj
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match action {
            "start" | "stop" => {
                let (from, to) = if action == "start" {
                    ("ready", "running")
                } else {
                    ("running", "ready")
                };
                if status != from {
                    return Err(HttpError::invalid_status(format!(
                        "Cannot do {action} server in status {status}"
                    )));
                }
                let mut ch = Row::new();
                ch.insert("status".into(), json!(to));
                crud::update(self.db.write(), &SERVERS, &id, &ch).await?;
                // Deliberately the raw row, secret column included: the
                // generic layer must not let it through.
                Ok(Value::Object(
                    crud::must_get(self.db.read(), &SERVERS, &id).await?,
                ))
            }
            "echo" => Ok(Value::Object(input)),
            "boom" => panic!("a bug in a model hook"),
            _ => generic::perform_common(self, ctx, obj, action, input).await,
        }
    }

    async fn perform_class(&self, _ctx: &Ctx, action: &str, input: Object) -> Result<Value> {
        match action {
            "batch-echo" => Ok(Value::Object(input)),
            _ => Err(HttpError::action_not_found(format!(
                "servers has no class action {action}"
            ))),
        }
    }

    async fn get_spec(&self, ctx: &Ctx, obj: Row, spec: &str, q: &Object) -> Result<Value> {
        match spec {
            "vnc" => Ok(json!({"host": "127.0.0.1", "port": 5900})),
            _ => generic::spec_common(self, ctx, obj, spec, q).await,
        }
    }
}

pub struct GuestDisks {
    pub db: Db,
}

#[async_trait]
impl JointModel for GuestDisks {
    fn desc(&self) -> &ModelDesc {
        &GUESTDISKS
    }
    fn db(&self) -> &Db {
        &self.db
    }
    fn master(&self) -> (&'static str, &'static str) {
        ("servers", "guest_id")
    }
    fn slave(&self) -> (&'static str, &'static str) {
        ("disks", "disk_id")
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row]) -> Result<()> {
        for r in rows.iter_mut() {
            let gid = r
                .get("guest_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(g) = crud::get(self.db.read(), &SERVERS, &gid).await? {
                r.insert("guest".into(), g.get("name").cloned().unwrap_or_default());
            }
        }
        Ok(())
    }

    async fn attach(&self, _ctx: &Ctx, master: Row, slave: Row, input: Object) -> Result<Row> {
        let gid = master["id"].as_str().unwrap_or_default().to_string();
        let did = slave["id"].as_str().unwrap_or_default().to_string();
        let mut q =
            Sql::new("SELECT COUNT(*) FROM `guestdisks_tbl` WHERE `deleted` = 0 AND `guest_id` = ");
        q.bind(gid.as_str())
            .push(" AND `disk_id` = ")
            .bind(did.as_str());
        if crud::fetch_i64(self.db.read(), &q).await? > 0 {
            return Err(HttpError::conflict("already attached"));
        }
        let mut row = Row::new();
        row.insert("guest_id".into(), json!(gid));
        row.insert("disk_id".into(), json!(did));
        if let Some(v) = input.get("index") {
            let col = GUESTDISKS.column("index").expect("index column");
            row.insert("index".into(), generic::coerce_input(col, v)?);
        }
        crud::prepare_insert(&GUESTDISKS, &mut row);
        let id = crud::insert(self.db.write(), &GUESTDISKS, &row).await?;
        row.insert("row_id".into(), json!(id));
        Ok(row)
    }

    async fn detach(&self, _ctx: &Ctx, master: Row, slave: Row, _q: Object) -> Result<Row> {
        let spec = cloudpods_db::ListSpec {
            conds: vec![
                crud::eq("guest_id", master["id"].as_str().unwrap_or_default()),
                crud::eq("disk_id", slave["id"].as_str().unwrap_or_default()),
            ],
            limit: Some(1),
            ..Default::default()
        };
        let (rows, _) = crud::list(&self.db, &GUESTDISKS, &spec).await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| HttpError::not_found("not attached"))?;
        let id = row["row_id"].to_string();
        crud::delete(self.db.write(), &GUESTDISKS, &id).await?;
        Ok(row)
    }
}

// ---------------------------------------------------------------------------
// identities

pub const ADMIN: &str = "tok-admin";
pub const ALICE: &str = "tok-alice"; // member of p1
pub const BOB: &str = "tok-bob"; // member of p2
pub const DADMIN: &str = "tok-dadmin"; // domain admin of d2
pub const NOSTART: &str = "tok-nostart"; // member of p1, start denied
pub const NOVNC: &str = "tok-novnc"; // member of p1, spec vnc denied
pub const READER: &str = "tok-reader"; // member of p1, read only

fn blob(v: Value) -> PolicyBlob {
    PolicyBlob::parse(&v).expect("valid policy")
}

fn identity(user: &str, project: Option<(&str, &str)>, domain: &str) -> Identity {
    Identity {
        user_id: format!("u-{user}"),
        user: user.to_string(),
        user_domain_id: domain.to_string(),
        user_domain: domain.to_string(),
        project_id: project.map(|p| p.0.to_string()).unwrap_or_default(),
        project: project.map(|p| p.1.to_string()).unwrap_or_default(),
        domain_id: domain.to_string(),
        domain: domain.to_string(),
        expires_at: "2099-01-01T00:00:00.000000Z".into(),
        ..Default::default()
    }
}

pub fn identities() -> HashMap<String, Arc<Identity>> {
    let mut m = HashMap::new();

    let mut admin = identity("admin", Some(("psys", "system")), "default");
    admin.policies = Arc::new(ScopedPolicies {
        system: PolicySet::new().with("sysadmin", blob(json!({"policy": {"*": "allow"}}))),
        ..Default::default()
    });
    m.insert(ADMIN.to_string(), Arc::new(admin));

    let member = || {
        Arc::new(ScopedPolicies {
            project: PolicySet::new().with(
                "member",
                blob(json!({"policy": {"compute": {"*": "allow"}}})),
            ),
            ..Default::default()
        })
    };
    let mut alice = identity("alice", Some(("p1", "proj1")), "default");
    alice.policies = member();
    m.insert(ALICE.to_string(), Arc::new(alice));

    let mut bob = identity("bob", Some(("p2", "proj2")), "default");
    bob.policies = member();
    m.insert(BOB.to_string(), Arc::new(bob));

    let mut dadmin = identity("dadmin", None, "d2");
    dadmin.policies = Arc::new(ScopedPolicies {
        domain: PolicySet::new().with("domainadmin", blob(json!({"policy": {"compute": "allow"}}))),
        ..Default::default()
    });
    m.insert(DADMIN.to_string(), Arc::new(dadmin));

    let mut nostart = identity("nostart", Some(("p1", "proj1")), "default");
    nostart.policies = Arc::new(ScopedPolicies {
        project: PolicySet::new().with(
            "nostart",
            blob(json!({"policy": {"compute": {
                "*": "allow",
                "servers": {"*": "allow", "perform": {"*": "allow", "start": "deny"}}
            }}})),
        ),
        ..Default::default()
    });
    m.insert(NOSTART.to_string(), Arc::new(nostart));

    let mut novnc = identity("novnc", Some(("p1", "proj1")), "default");
    novnc.policies = Arc::new(ScopedPolicies {
        project: PolicySet::new().with(
            "novnc",
            blob(json!({"policy": {"compute": {
                "*": "allow",
                "servers": {"*": "allow", "get": {"*": "allow", "vnc": "deny"}}
            }}})),
        ),
        ..Default::default()
    });
    m.insert(NOVNC.to_string(), Arc::new(novnc));

    let mut reader = identity("reader", Some(("p1", "proj1")), "default");
    reader.policies = Arc::new(ScopedPolicies {
        project: PolicySet::new().with(
            "reader",
            blob(json!({"policy": {"compute": {"*": {"list": "allow", "get": "allow"}}}})),
        ),
        ..Default::default()
    });
    m.insert(READER.to_string(), Arc::new(reader));
    m
}

pub struct FakeVerifier(pub HashMap<String, Arc<Identity>>);

#[async_trait]
impl TokenVerifier for FakeVerifier {
    async fn verify(&self, token: &str) -> Result<Arc<Identity>> {
        self.0
            .get(token)
            .cloned()
            .ok_or_else(cloudpods_rest::auth::invalid_token)
    }
}

// ---------------------------------------------------------------------------
// the environment

pub struct Env {
    pub router: Router,
    pub db: Db,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert a Cloudpods error answer: status == code, the four keys,
    /// JSON content type and a request id.
    #[track_caller]
    pub fn assert_error(&self, code: u16, class: &str) -> &Self {
        assert_eq!(self.status, code, "status of {}", self.body);
        assert_eq!(self.body["code"], json!(code), "{}", self.body);
        assert_eq!(self.body["class"], json!(class), "{}", self.body);
        assert!(self.body["details"].is_string(), "{}", self.body);
        assert!(self.body["time"].is_string(), "{}", self.body);
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(4),
            "{}",
            self.body
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "content type {:?}",
            self.header("content-type")
        );
        assert!(self.header("x-request-id").is_some_and(|v| !v.is_empty()));
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(self.header("x-request-id").is_some_and(|v| !v.is_empty()));
        &self.body
    }

    pub fn details(&self) -> String {
        self.body["details"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub async fn insert(db: &Db, desc: &ModelDesc, v: Value) {
    let Value::Object(mut row) = v else {
        panic!("row must be an object")
    };
    crud::prepare_insert(desc, &mut row);
    crud::insert(db.write(), desc, &row).await.expect("insert");
}

impl Env {
    pub async fn new() -> Env {
        Env::with(|s| s).await
    }

    pub async fn with(customize: impl FnOnce(Service) -> Service) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.expect("connect");
        cloudpods_db::migrate::sync_schema(
            &db,
            &[
                &SERVERS,
                &ZONES,
                &HOSTS,
                &DISKS,
                &GUESTDISKS,
                &PROJECTS,
                &DOMAINS,
                &cloudpods_rest::metadata::METADATA,
            ],
            &[],
        )
        .await
        .expect("schema");
        insert(&db, &DOMAINS, json!({"id": "default", "name": "Default"})).await;
        insert(&db, &DOMAINS, json!({"id": "d2", "name": "other"})).await;
        for (id, name, dom) in [
            ("psys", "system", "default"),
            ("p1", "proj1", "default"),
            ("p2", "proj2", "default"),
            ("p3", "proj3", "d2"),
        ] {
            insert(
                &db,
                &PROJECTS,
                json!({"id": id, "name": name, "domain_id": dom}),
            )
            .await;
        }
        let tenants = Arc::new(TenantCache::new(db.clone()));
        let verifier = Arc::new(FakeVerifier(identities()));
        let svc = Service::new("region", "compute", "", verifier, tenants)
            .model(Arc::new(Servers { db: db.clone() }))
            .model(Arc::new(Plain {
                desc: &ZONES,
                db: db.clone(),
                contexts: &[],
            }))
            .model(Arc::new(Plain {
                desc: &HOSTS,
                db: db.clone(),
                contexts: &[("zones", "zone_id")],
            }))
            .model(Arc::new(Plain {
                desc: &DISKS,
                db: db.clone(),
                contexts: &[],
            }))
            .joint(Arc::new(GuestDisks { db: db.clone() }));
        let svc = customize(svc);
        let router = cloudpods_rest::server::router(svc);
        Env {
            router,
            db,
            _dir: dir,
        }
    }

    /// Send a request; `body` is sent as JSON.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        self.raw(
            method,
            uri,
            token,
            bytes,
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Send raw bytes with extra headers.
    pub async fn raw(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            b = b.header("x-auth-token", t);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
        Resp {
            status,
            headers,
            raw,
            body,
        }
    }

    pub async fn get(&self, uri: &str, token: &str) -> Resp {
        self.call("GET", uri, Some(token), None).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Resp {
        self.call("POST", uri, Some(token), Some(body)).await
    }

    /// Create a server as `token`, returning its id.
    pub async fn server(&self, token: &str, name: &str, extra: Value) -> String {
        let mut s = json!({"name": name});
        if let (Some(o), Value::Object(e)) = (s.as_object_mut(), extra) {
            o.extend(e);
        }
        let r = self.post("/servers", token, json!({"server": s})).await;
        r.ok()["server"]["id"]
            .as_str()
            .expect("server id")
            .to_string()
    }

    /// Count every row of a table (deleted ones included).
    pub async fn count(&self, table: &str) -> i64 {
        crud::fetch_i64(
            self.db.read(),
            &Sql::new(format!("SELECT COUNT(*) FROM `{table}`")),
        )
        .await
        .expect("count")
    }

    /// A fingerprint of every writable table: row counts and the latest
    /// update times, to prove a request wrote nothing.
    pub async fn fingerprint(&self) -> Vec<(String, i64, String)> {
        let mut out = Vec::new();
        for t in [
            "guests_tbl",
            "zones_tbl",
            "hosts_tbl",
            "disks_tbl",
            "guestdisks_tbl",
            "metadata_tbl",
            "projects",
            "domains",
        ] {
            let n = self.count(t).await;
            let rows = crud::fetch_rows(
                self.db.read(),
                &cloudpods_rest::metadata::METADATA,
                &Sql::new(format!(
                    "SELECT COALESCE(MAX(`updated_at`), '') AS m, COALESCE(SUM(`update_version`), 0) AS v FROM `{t}`"
                )),
            )
            .await
            .expect("fingerprint");
            let m = rows
                .first()
                .map(|r| format!("{}/{}", r["m"], r["v"]))
                .unwrap_or_default();
            out.push((t.to_string(), n, m));
        }
        out
    }
}

/// Every key anywhere in a JSON value.
pub fn all_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                all_keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_keys(x, out)),
        _ => {}
    }
}

/// Names of the rows of a list answer.
pub fn names(v: &Value, plural: &str) -> Vec<String> {
    let mut n: Vec<String> = v[plural]
        .as_array()
        .unwrap_or_else(|| panic!("no {plural} in {v}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}
