//! Tenancy fixtures for the authorization tests (`tests/authz.rs`,
//! `tests/tenant_boundary.rs`): all-in-one with a simulated host, two
//! projects A and B in the default domain, a second domain with its own
//! domain admin, and logged-in clients for each identity.
//!
//! ```text
//! domain default (D)                     domain dom2 (D2)
//!   project proj-a: owner-a (project_owner), member-a (member), victim (member)
//!   project proj-b: owner-b (project_owner), member-b (member)
//!   project system: sysadmin (admin)      project d2proj: d2-admin (domainadmin)
//! ```

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

/// One logged-in user.
pub struct Who {
    pub name: &'static str,
    pub api: Api,
    pub user_id: String,
    pub password: String,
    pub project: &'static str,
}

pub struct Tenancy {
    pub p: Platform,
    pub admin: Api,
    pub admin_id: String,
    pub ks: String,
    pub region: String,
    pub sched: String,
    pub glance: String,
    /// The in-process host agent's base URL (`http://127.0.0.1:port`).
    pub agent: String,
    pub host_id: String,
    pub storage_id: String,
    pub dom2_id: String,
    pub proj_a: String,
    pub proj_b: String,
    pub proj_d2: String,
    pub system_project: String,
    /// Role name → id.
    pub roles: BTreeMap<String, String>,
    /// Policy name → id.
    pub policies: BTreeMap<String, String>,
    pub owner_a: Who,
    pub member_a: Who,
    pub member_b: Who,
    pub owner_b: Who,
    pub d2_admin: Who,
    /// A plain member of A nobody logs in as: the target of identity
    /// operations (its record, its roles).
    pub victim_id: String,
}

/// Start options: all-in-one with the simulated host in the same process
/// (zone0 / wire0 created for it), agent on a random port.
pub fn tenancy_opts(extra_host_args: &[&str]) -> Opts {
    let mut command_args: Vec<String> = ["--with-host", "--simulate", "--agent-port", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    command_args.extend(extra_host_args.iter().map(|s| s.to_string()));
    Opts {
        command_args,
        ..Default::default()
    }
}

pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// `POST {url}` as `api`, 200 required; the object under `keyword`.
pub async fn must_create(api: &Api, url: &str, keyword: &str, body: Value) -> Value {
    let r = api.post(url, json!({ keyword: body })).await;
    assert_eq!(r.status, 200, "create {url}: {r:?}");
    r.body[keyword].clone()
}

/// Issue a token for a user of `user_domain` scoped to `project` of
/// `project_domain`.
pub async fn login_in(
    auth_url: &str,
    user: &str,
    password: &str,
    user_domain: &str,
    project: &str,
    project_domain: &str,
) -> Result<Api, Resp> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": user_domain}}}},
        "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}});
    Api::login_with(auth_url, body).await
}

/// A server body on net0 (one 512 MB disk).
pub fn vm_body(name: &str) -> Value {
    json!({"server": {"name": name, "vcpu_count": 1, "vmem_size": 256, "disks": [{"size": 512}],
                       "nets": [{"network": "net0"}], "auto_start": true}})
}

/// A refusal: status in `codes`, in the Cloudpods error shape. Returns a
/// description of what is wrong instead of panicking, so a test can collect
/// every failure.
pub fn refusal_problem(r: &Resp, codes: &[u16]) -> Option<String> {
    if !codes.contains(&r.status) {
        return Some(format!("expected one of {codes:?}, got {r:?}"));
    }
    if r.body["code"] != json!(r.status)
        || !r.body["class"].is_string()
        || !r.body["details"].is_string()
    {
        return Some(format!(
            "status {} but not in the Cloudpods error shape: {}",
            r.status, r.body
        ));
    }
    None
}

/// Assert a refusal (401/403/404 unless `codes` says otherwise).
#[track_caller]
pub fn assert_refused(what: &str, r: &Resp, codes: &[u16]) {
    if let Some(p) = refusal_problem(r, codes) {
        panic!("{what}: {p}");
    }
}

pub const DENY: &[u16] = &[401, 403, 404];

impl Tenancy {
    pub async fn start(extra_host_args: &[&str]) -> Tenancy {
        Tenancy::start_on(Backend::Sqlite, extra_host_args).await
    }

    pub async fn start_on(backend: Backend, extra_host_args: &[&str]) -> Tenancy {
        let p = Platform::start_with(Opts {
            backend: Some(backend),
            ..tenancy_opts(extra_host_args)
        });
        let admin = p.admin().await;
        let admin_id = admin.body["token"]["user"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ks = p.auth_url.clone();
        let region = p.region_url();
        let host = &p.ready["host"];
        let host_id = host["host_id"].as_str().expect("host id").to_string();
        let storage_id = host["storage_id"].as_str().unwrap_or_default().to_string();
        let agent = host["manager_uri"]
            .as_str()
            .expect("agent url")
            .trim_end_matches('/')
            .to_string();
        // net0 on the host's wire, shared with every project.
        let r = admin
            .post(
                &format!("{region}/networks"),
                json!({"network": {"name": "net0", "wire": "wire0", "guest_ip_start": "10.0.0.10",
                       "guest_ip_end": "10.0.0.250", "guest_ip_mask": 24, "guest_gateway": "10.0.0.1",
                       "is_public": true, "public_scope": "system"}}),
            )
            .await;
        assert_eq!(r.status, 200, "net0: {r:?}");

        let mut roles = BTreeMap::new();
        for r in admin.get(&format!("{ks}/roles?limit=100")).await.body["roles"]
            .as_array()
            .expect("roles")
        {
            roles.insert(r["name"].as_str().unwrap_or_default().to_string(), id_of(r));
        }
        let mut policies = BTreeMap::new();
        for r in admin.get(&format!("{ks}/policies?limit=100")).await.body["policies"]
            .as_array()
            .expect("policies")
        {
            policies.insert(r["name"].as_str().unwrap_or_default().to_string(), id_of(r));
        }
        let system_project =
            id_of(&admin.get(&format!("{ks}/projects/system")).await.body["project"]);

        let proj_a = id_of(
            &must_create(
                &admin,
                &format!("{ks}/projects"),
                "project",
                json!({"name": "proj-a"}),
            )
            .await,
        );
        let proj_b = id_of(
            &must_create(
                &admin,
                &format!("{ks}/projects"),
                "project",
                json!({"name": "proj-b"}),
            )
            .await,
        );
        let dom2_id = id_of(
            &must_create(
                &admin,
                &format!("{ks}/domains"),
                "domain",
                json!({"name": "dom2"}),
            )
            .await,
        );
        let proj_d2 = id_of(
            &must_create(
                &admin,
                &format!("{ks}/projects"),
                "project",
                json!({"name": "d2proj", "domain_id": dom2_id}),
            )
            .await,
        );

        // Users and their roles.
        let mut ids = BTreeMap::new();
        for (user, domain, project, role) in [
            ("owner-a", "default", &proj_a, "project_owner"),
            ("member-a", "default", &proj_a, "member"),
            ("victim", "default", &proj_a, "member"),
            ("owner-b", "default", &proj_b, "project_owner"),
            ("member-b", "default", &proj_b, "member"),
            ("d2-admin", dom2_id.as_str(), &proj_d2, "domainadmin"),
        ] {
            let u = must_create(
                &admin,
                &format!("{ks}/users"),
                "user",
                json!({"name": user, "password": format!("{user}-Pw-1"), "domain_id": domain}),
            )
            .await;
            let uid = id_of(&u);
            let r = admin
                .put(
                    &format!("{ks}/projects/{project}/users/{uid}/roles/{}", roles[role]),
                    None,
                )
                .await;
            assert_eq!(r.status, 204, "grant {role} to {user}: {r:?}");
            ids.insert(user, uid);
        }
        let who = |name: &'static str, api: Api, project: &'static str| Who {
            name,
            api,
            user_id: ids[name].clone(),
            password: format!("{name}-Pw-1"),
            project,
        };
        let login = |user: &'static str, project: &'static str| {
            let ks = ks.clone();
            async move {
                Api::login(&ks, user, &format!("{user}-Pw-1"), project, None)
                    .await
                    .unwrap_or_else(|e| panic!("login {user}: {e:?}"))
            }
        };
        let owner_a = who("owner-a", login("owner-a", "proj-a").await, "proj-a");
        let member_a = who("member-a", login("member-a", "proj-a").await, "proj-a");
        let owner_b = who("owner-b", login("owner-b", "proj-b").await, "proj-b");
        let member_b = who("member-b", login("member-b", "proj-b").await, "proj-b");
        let d2 = login_in(&ks, "d2-admin", "d2-admin-Pw-1", "dom2", "d2proj", "dom2")
            .await
            .unwrap_or_else(|e| panic!("login d2-admin: {e:?}"));
        let d2_admin = who("d2-admin", d2, "d2proj");
        Tenancy {
            sched: p.scheduler_url(),
            glance: p.glance_url(),
            p,
            admin,
            admin_id,
            ks,
            region,
            agent,
            host_id,
            storage_id,
            dom2_id,
            proj_a,
            proj_b,
            proj_d2,
            system_project,
            roles,
            policies,
            owner_a,
            member_a,
            member_b,
            owner_b,
            d2_admin,
            victim_id: ids["victim"].clone(),
        }
    }

    /// Create a server as `api` and wait until it runs; its id.
    pub async fn running_server(&self, api: &Api, name: &str) -> String {
        let r = api
            .post(&format!("{}/servers", self.region), vm_body(name))
            .await;
        assert_eq!(r.status, 200, "create server {name}: {r:?}");
        let id = r.body["server"]["id"].as_str().expect("id").to_string();
        wait_until(api, &format!("{}/servers/{id}", self.region), 60, |b| {
            b["server"]["status"] == "running"
        })
        .await;
        id
    }
}

/// A request with optional token and extra headers (the tests' `Api`
/// carries only `X-Auth-Token`).
pub async fn raw(
    token: Option<&str>,
    method: &str,
    url: &str,
    body: Option<&Value>,
    headers: &[(&str, String)],
) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(m, url);
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    match req.send().await {
        Ok(r) => Resp::read(r).await,
        // A connection the server dropped is an answer too (status 0).
        Err(e) => Resp {
            status: 0,
            headers: Default::default(),
            body: Value::String(format!("transport error: {e}")),
        },
    }
}
