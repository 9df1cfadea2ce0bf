//! The tenant boundary (issue 13): each attack a tenant tried is refused
//! with 401/403/404 in the Cloudpods error shape and changes nothing (the
//! objects are re-read as sysadmin), and the legitimate paths still work.
//!
//! Identities (see `common/authz.rs`): owner-a (project_owner of A),
//! member-a (member of A), member-b (member of B), d2-admin (domainadmin of
//! a second domain).

mod common;

use common::authz::*;
use common::*;
use serde_json::{Value, json};

// The tenancy flows that matter run on MariaDB too.
on_both_databases!(legitimate_paths_still_work);

fn names(b: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = b[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Role assignments of `user` as sysadmin sees them: (scope id, role name).
async fn assignments(t: &Tenancy, user: &str) -> Vec<(String, String)> {
    let r = t
        .admin
        .get(&format!(
            "{}/role_assignments?user.id={user}&include_names",
            t.ks
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut v: Vec<(String, String)> = r.body["role_assignments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let scope = a["scope"]["project"]["id"]
                .as_str()
                .or(a["scope"]["domain"]["id"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                scope,
                a["role"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn count(api: &Api, url: &str, key: &str) -> usize {
    let r = api.get(url).await;
    assert_eq!(r.status, 200, "{url}: {r:?}");
    r.body[key].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn project_owner_cannot_bind_the_sysadmin_policy_to_its_role() {
    let t = Tenancy::start(&[]).await;
    let ks = &t.ks;
    let before = count(
        &t.admin,
        &format!("{ks}/role_policies?limit=1000"),
        "role_policies",
    )
    .await;
    let r = t
        .owner_a
        .api
        .post(
            &format!("{ks}/role_policies"),
            json!({"role_policy": {"role_id": t.roles["project_owner"], "policy_id": t.policies["sysadmin"]}}),
        )
        .await;
    assert_refused(
        "owner-a POST /v3/role_policies project_owner→sysadmin",
        &r,
        &[403],
    );
    // Also by name, and restricted to its own project.
    let r = t
        .owner_a
        .api
        .post(
            &format!("{ks}/role_policies"),
            json!({"role_policy": {"role": "project_owner", "policy": "sysadmin", "project": "proj-a"}}),
        )
        .await;
    assert_refused(
        "owner-a POST /v3/role_policies in proj-a (by name)",
        &r,
        &[403],
    );
    assert_eq!(
        count(
            &t.admin,
            &format!("{ks}/role_policies?limit=1000"),
            "role_policies"
        )
        .await,
        before,
        "no binding may have been added"
    );
    // The next token of owner-a is no system admin.
    let fresh = Api::login(ks, "owner-a", &t.owner_a.password, "proj-a", None)
        .await
        .expect("owner-a login");
    assert!(
        fresh.body["token"]["policies"]["system"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "owner-a holds system policies: {}",
        fresh.body["token"]["policies"]
    );
    assert_refused(
        "owner-a GET /v3/users?scope=system",
        &fresh.get(&format!("{ks}/users?scope=system")).await,
        &[403],
    );
    let domains = count(&t.admin, &format!("{ks}/domains"), "domains").await;
    assert_refused(
        "owner-a POST /v3/domains",
        &fresh
            .post(
                &format!("{ks}/domains"),
                json!({"domain": {"name": "evil"}}),
            )
            .await,
        &[403],
    );
    assert_eq!(
        count(&t.admin, &format!("{ks}/domains"), "domains").await,
        domains
    );
}

#[tokio::test]
async fn project_owner_grants_member_but_nothing_higher() {
    let t = Tenancy::start(&[]).await;
    let ks = &t.ks;
    let me = &t.owner_a.user_id;
    let a = &t.proj_a;
    let before = assignments(&t, me).await;
    for role in ["domainadmin", "admin"] {
        let r = t
            .owner_a
            .api
            .put(
                &format!("{ks}/projects/{a}/users/{me}/roles/{}", t.roles[role]),
                None,
            )
            .await;
        assert_refused(&format!("owner-a grants itself {role} in A"), &r, &[403]);
        // Nor to somebody else in its project.
        let r = t
            .owner_a
            .api
            .put(
                &format!(
                    "{ks}/projects/{a}/users/{}/roles/{}",
                    t.member_a.user_id, t.roles[role]
                ),
                None,
            )
            .await;
        assert_refused(&format!("owner-a grants member-a {role} in A"), &r, &[403]);
    }
    assert_eq!(assignments(&t, me).await, before);

    // Legitimate: member to member-b in A, then removed again.
    let mb = &t.member_b.user_id;
    let member = &t.roles["member"];
    let url = format!("{ks}/projects/{a}/users/{mb}/roles/{member}");
    let r = t.owner_a.api.put(&url, None).await;
    assert_eq!(
        r.status, 204,
        "owner-a grants member to member-b in A: {r:?}"
    );
    assert_eq!(t.admin.get(&url).await.status, 204);
    Api::login(ks, "member-b", &t.member_b.password, "proj-a", None)
        .await
        .expect("member-b now logs in to A");
    let r = t.owner_a.api.delete(&url).await;
    assert_eq!(r.status, 204, "owner-a revokes member of member-b: {r:?}");
    assert_eq!(t.admin.get(&url).await.status, 404);
    // Not in a project it does not own.
    let r = t
        .owner_a
        .api
        .put(
            &format!("{ks}/projects/{}/users/{me}/roles/{member}", t.proj_b),
            None,
        )
        .await;
    assert_refused("owner-a grants itself member in B", &r, DENY);
    assert_eq!(assignments(&t, me).await, before);
}

#[tokio::test]
async fn project_owner_cannot_change_the_catalog_or_identity_definitions() {
    let t = Tenancy::start(&[]).await;
    let ks = &t.ks;
    let o = &t.owner_a.api;
    let snapshot = |t: &Tenancy| {
        let admin = t.admin.clone();
        let ks = t.ks.clone();
        async move {
            let mut out = Vec::new();
            for (plural, key) in [
                ("domains", "domains"),
                ("services", "services"),
                ("endpoints", "endpoints"),
                ("policies", "policies"),
                ("roles", "roles"),
                ("regions", "regions"),
            ] {
                let r = admin.get(&format!("{ks}/{plural}?limit=1000")).await;
                assert_eq!(r.status, 200, "{r:?}");
                let mut rows: Vec<String> = r.body[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        format!(
                            "{}|{}|{}|{}|{}",
                            x["id"], x["name"], x["url"], x["blob"], x["enabled"]
                        )
                    })
                    .collect();
                rows.sort();
                out.push((plural, rows));
            }
            out
        }
    };
    let before = snapshot(&t).await;
    let endpoint = t.admin.get(&format!("{ks}/endpoints")).await.body["endpoints"][0].clone();
    let endpoint_id = id_of(&endpoint);
    let service_id = endpoint["service_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let attacks: Vec<(&str, &str, String, Option<Value>)> = vec![
        (
            "create a domain",
            "POST",
            format!("{ks}/domains"),
            Some(json!({"domain": {"name": "evil-dom"}})),
        ),
        (
            "create a catalog service",
            "POST",
            format!("{ks}/services"),
            Some(json!({"service": {"name": "evil", "type": "evil"}})),
        ),
        (
            "create an endpoint",
            "POST",
            format!("{ks}/endpoints"),
            Some(
                json!({"endpoint": {"service_id": service_id, "region_id": "region0",
                                     "interface": "public", "url": "http://evil.example/"}}),
            ),
        ),
        (
            "repoint an endpoint (PUT)",
            "PUT",
            format!("{ks}/endpoints/{endpoint_id}"),
            Some(json!({"endpoint": {"url": "http://evil.example/"}})),
        ),
        (
            "repoint an endpoint (PATCH)",
            "PATCH",
            format!("{ks}/endpoints/{endpoint_id}"),
            Some(json!({"endpoint": {"url": "http://evil.example/"}})),
        ),
        (
            "disable an endpoint",
            "POST",
            format!("{ks}/endpoints/{endpoint_id}/disable"),
            Some(json!({})),
        ),
        (
            "create a system policy",
            "POST",
            format!("{ks}/policies"),
            Some(
                json!({"policy": {"name": "evil-pol", "scope": "system", "blob": {"policy": {"*": "allow"}}}}),
            ),
        ),
        (
            "create a project policy",
            "POST",
            format!("{ks}/policies"),
            Some(
                json!({"policy": {"name": "evil-pol2", "scope": "project", "blob": {"policy": {"*": "allow"}}}}),
            ),
        ),
        (
            "widen the member policy",
            "PUT",
            format!("{ks}/policies/{}", t.policies["member"]),
            Some(json!({"policy": {"blob": {"policy": {"*": "allow"}}}})),
        ),
        (
            "change the sysadmin policy",
            "PATCH",
            format!("{ks}/policies/{}", t.policies["sysadmin"]),
            Some(json!({"policy": {"description": "owned"}})),
        ),
        (
            "create a role",
            "POST",
            format!("{ks}/roles"),
            Some(json!({"role": {"name": "evil-role"}})),
        ),
        (
            "rename a role",
            "PUT",
            format!("{ks}/roles/{}", t.roles["member"]),
            Some(json!({"role": {"name": "member2"}})),
        ),
        (
            "create a region",
            "POST",
            format!("{ks}/regions"),
            Some(json!({"region": {"name": "evil-region"}})),
        ),
    ];
    let mut problems = Vec::new();
    for (what, method, url, body) in attacks {
        let r = o.call(method, &url, body).await;
        if let Some(p) = refusal_problem(&r, &[403]) {
            problems.push(format!("owner-a {what} ({method} {url}): {p}"));
        }
    }
    assert_eq!(snapshot(&t).await, before, "the catalog changed");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn project_owner_cannot_change_infrastructure() {
    let t = Tenancy::start(&[]).await;
    let r = &t.region;
    let o = &t.owner_a.api;
    let host = t.host_id.clone();
    let read = |t: &Tenancy| {
        let admin = t.admin.clone();
        let r = t.region.clone();
        let host = host.clone();
        async move {
            let h = admin.get(&format!("{r}/hosts/{host}")).await;
            assert_eq!(h.status, 200, "{h:?}");
            let z = admin.get(&format!("{r}/zones/zone0")).await;
            assert_eq!(z.status, 200, "{z:?}");
            let w = admin.get(&format!("{r}/wires/wire0")).await;
            assert_eq!(w.status, 200, "{w:?}");
            (
                h.body["host"]["manager_uri"].clone(),
                h.body["host"]["enabled"].clone(),
                h.body["host"]["name"].clone(),
                z.body["zone"]["name"].clone(),
                w.body["wire"]["name"].clone(),
            )
        }
    };
    let before = read(&t).await;
    assert_eq!(before.1, json!(true), "host enabled at start: {before:?}");
    let attacks: Vec<(&str, &str, String, Value)> = vec![
        (
            "rename zone0",
            "PUT",
            format!("{r}/zones/zone0"),
            json!({"zone": {"name": "mine"}}),
        ),
        (
            "rename wire0",
            "PUT",
            format!("{r}/wires/wire0"),
            json!({"wire": {"name": "mine"}}),
        ),
        (
            "disable the host",
            "POST",
            format!("{r}/hosts/{host}/disable"),
            json!({}),
        ),
        (
            "change the host's manager_uri",
            "PUT",
            format!("{r}/hosts/{host}"),
            json!({"host": {"manager_uri": "http://evil.example:8885"}}),
        ),
        (
            "change the host's manager_uri (PATCH)",
            "PATCH",
            format!("{r}/hosts/{host}"),
            json!({"host": {"manager_uri": "http://evil.example:8885"}}),
        ),
        (
            "take the host offline",
            "POST",
            format!("{r}/hosts/{host}/offline"),
            json!({}),
        ),
        (
            "create a zone",
            "POST",
            format!("{r}/zones"),
            json!({"zone": {"name": "evil-zone"}}),
        ),
        (
            "create a host",
            "POST",
            format!("{r}/hosts"),
            json!({"host": {"name": "evil-host", "zone": "zone0",
                            "manager_uri": "http://evil.example:8885"}}),
        ),
    ];
    let mut problems = Vec::new();
    for (what, method, url, body) in attacks {
        let resp = o.call(method, &url, Some(body)).await;
        if let Some(p) = refusal_problem(&resp, DENY) {
            problems.push(format!("owner-a {what} ({method} {url}): {p}"));
        }
    }
    assert_eq!(read(&t).await, before, "the infrastructure changed");
    let zones = t.admin.get(&format!("{r}/zones?scope=system")).await;
    assert_eq!(names(&zones.body, "zones"), ["zone0"], "{zones:?}");
    let hosts = t.admin.get(&format!("{r}/hosts?scope=system")).await;
    assert_eq!(hosts.body["total"], json!(1), "{hosts:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn members_see_only_themselves_and_their_projects() {
    let t = Tenancy::start(&[]).await;
    let ks = &t.ks;
    let mut problems = Vec::new();
    // member-a: its own user record, its own project.
    let users = t.member_a.api.get(&format!("{ks}/users")).await;
    if users.status != 200 || names(&users.body, "users") != ["member-a"] {
        problems.push(format!(
            "member-a GET /v3/users: expected 200 with only member-a, got {} {:?}",
            users.status,
            names(&users.body, "users")
        ));
    }
    let projects = t.member_a.api.get(&format!("{ks}/projects")).await;
    if projects.status != 200 || names(&projects.body, "projects") != ["proj-a"] {
        problems.push(format!(
            "member-a GET /v3/projects: expected 200 with only proj-a, got {} {:?}",
            projects.status,
            names(&projects.body, "projects")
        ));
    }
    // Its own record by id works.
    let me = t
        .member_a
        .api
        .get(&format!("{ks}/users/{}", t.member_a.user_id))
        .await;
    if me.status != 200 {
        problems.push(format!("member-a GET its own user: {me:?}"));
    }
    // Others' records, by id and by name, are invisible.
    for (who, api) in [("member-a", &t.member_a.api), ("member-b", &t.member_b.api)] {
        for url in [
            format!("{ks}/users/{}", t.owner_a.user_id),
            format!("{ks}/users/{}", t.admin_id),
            format!("{ks}/users/hostagent"),
            format!("{ks}/users/{}/projects", t.owner_a.user_id),
        ] {
            if let Some(p) = refusal_problem(&api.get(&url).await, &[403, 404]) {
                problems.push(format!("{who} GET {url}: {p}"));
            }
        }
        for url in [
            format!("{ks}/users?scope=domain"),
            format!("{ks}/users?scope=system"),
            format!("{ks}/projects?scope=system"),
        ] {
            if let Some(p) = refusal_problem(&api.get(&url).await, &[403]) {
                problems.push(format!("{who} GET {url}: {p}"));
            }
        }
    }
    for url in [
        format!("{ks}/projects/{}", t.proj_a),
        format!("{ks}/projects/proj-a"),
        format!("{ks}/projects/{}", t.system_project),
    ] {
        if let Some(p) = refusal_problem(&t.member_b.api.get(&url).await, &[403, 404]) {
            problems.push(format!("member-b GET {url}: {p}"));
        }
    }
    let projects = t.member_b.api.get(&format!("{ks}/projects")).await;
    if projects.status != 200 || names(&projects.body, "projects") != ["proj-b"] {
        problems.push(format!(
            "member-b GET /v3/projects: expected only proj-b, got {} {:?}",
            projects.status,
            names(&projects.body, "projects")
        ));
    }
    // The role assignments of others stay hidden as well.
    let ra = t.member_b.api.get(&format!("{ks}/role_assignments")).await;
    let text = ra.body.to_string();
    if ra.status == 200 && (text.contains(&t.owner_a.user_id) || text.contains(&t.proj_a)) {
        problems.push(format!(
            "member-b GET /v3/role_assignments shows A's assignments: {text}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn user_tokens_cannot_answer_for_the_agent() {
    // Slow simulated actions, so member-a's server has a task waiting for
    // the agent's callback.
    let t = Tenancy::start(&["--sim-delay-ms", "4000"]).await;
    let r = &t.region;
    let m = &t.member_a.api;
    let resp = m.post(&format!("{r}/servers"), vm_body("slow")).await;
    assert_eq!(resp.status, 200, "member-a creates a server: {resp:?}");
    let sid = resp.body["server"]["id"].as_str().expect("id").to_string();
    // A task of member-a's waiting for a callback.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let task = loop {
        let tasks = t
            .admin
            .get(&format!("{r}/tasks?scope=system&limit=100"))
            .await;
        let waiting = tasks.body["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["stage"].is_string() && x["status"] == "waiting")
            .cloned();
        if let Some(w) = waiting {
            break w;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no task waited for a callback: {tasks:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let tid = id_of(&task);
    let stage = task["stage"].as_str().unwrap_or_default().to_string();
    let forged = json!({"__status__": "error", "__reason__": "forged by a tenant",
                        "disk_path": "/etc/shadow"});
    let mut problems = Vec::new();
    for (what, url, codes) in [
        (
            "without key",
            format!("{r}/tasks/{tid}?stage={stage}"),
            &[401u16, 403][..],
        ),
        (
            "with a wrong key",
            format!("{r}/tasks/{tid}?stage={stage}&key=0123456789abcdef"),
            &[403][..],
        ),
    ] {
        let resp = m.post(&url, forged.clone()).await;
        if let Some(p) = refusal_problem(&resp, codes) {
            problems.push(format!("member-a POST /tasks/{{id}} {what}: {p}"));
        }
        // Anonymous likewise.
        let resp = Api::with_token("").post(&url, forged.clone()).await;
        if let Some(p) = refusal_problem(&resp, &[401, 403]) {
            problems.push(format!("anonymous POST /tasks/{{id}} {what}: {p}"));
        }
    }
    // The forged answer changed nothing: the task and the server finish as
    // the agent says, not as the tenant said.
    let body = wait_until(&t.admin, &format!("{r}/servers/{sid}"), 90, |b| {
        matches!(
            b["server"]["status"].as_str(),
            Some("running") | Some("deploy_fail") | Some("disk_fail") | Some("start_fail")
        )
    })
    .await;
    assert_eq!(
        body["server"]["status"], "running",
        "the forged callback failed the server: {body}"
    );
    let task_now = t
        .admin
        .get(&format!("{r}/tasks/{tid}?scope=system"))
        .await
        .body;
    assert!(
        !task_now.to_string().contains("forged by a tenant"),
        "the task took the forged answer: {task_now}"
    );
    for d in body["server"]["disks_info"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let disk = t
            .admin
            .get(&format!(
                "{r}/disks/{}",
                d["id"].as_str().unwrap_or_default()
            ))
            .await;
        assert!(
            !disk.body.to_string().contains("/etc/shadow"),
            "a forged disk path was stored: {disk:?}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

async fn legitimate_paths_still_work(backend: Backend) {
    let t = Tenancy::start_on(backend, &[]).await;
    let (ks, r) = (&t.ks, &t.region);
    // owner-a creates a server in A; member-a lists it.
    let sid = t.running_server(&t.owner_a.api, "a-vm").await;
    let list = t.member_a.api.get(&format!("{r}/servers")).await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(names(&list.body, "servers"), ["a-vm"]);
    assert_eq!(
        t.member_a
            .api
            .get(&format!("{r}/servers/{sid}"))
            .await
            .status,
        200
    );
    // member-b does not see it.
    assert!(
        names(
            &t.member_b.api.get(&format!("{r}/servers")).await.body,
            "servers"
        )
        .is_empty()
    );
    // owner-a manages A's users' roles (member and project_owner).
    let url = format!(
        "{ks}/projects/{}/users/{}/roles/{}",
        t.proj_a, t.victim_id, t.roles["project_owner"]
    );
    let g = t.owner_a.api.put(&url, None).await;
    assert_eq!(g.status, 204, "owner-a grants project_owner in A: {g:?}");
    let g = t.owner_a.api.delete(&url).await;
    assert_eq!(g.status, 204, "owner-a revokes project_owner in A: {g:?}");
    let roles = t
        .owner_a
        .api
        .get(&format!(
            "{ks}/projects/{}/users/{}/roles",
            t.proj_a, t.victim_id
        ))
        .await;
    // The user record is hidden at project scope, but the user is addressed
    // within A's domain as for a grant.
    assert_eq!(
        roles.status, 200,
        "owner-a lists a user's roles in A: {roles:?}"
    );
    // owner-a stops and starts its server.
    let s = t
        .owner_a
        .api
        .post(&format!("{r}/servers/{sid}/stop"), json!({}))
        .await;
    assert_eq!(s.status, 200, "{s:?}");
    wait_until(&t.owner_a.api, &format!("{r}/servers/{sid}"), 60, |b| {
        b["server"]["status"] == "ready"
    })
    .await;

    // sysadmin does everything.
    let a = &t.admin;
    assert_eq!(a.get(&format!("{ks}/users?scope=system")).await.status, 200);
    let z = must_create(a, &format!("{r}/zones"), "zone", json!({"name": "zone9"})).await;
    assert_eq!(
        a.put(
            &format!("{r}/zones/{}", id_of(&z)),
            Some(json!({"zone": {"description": "ok"}}))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        a.delete(&format!("{r}/zones/{}", id_of(&z))).await.status,
        200
    );
    let svc = must_create(
        a,
        &format!("{ks}/services"),
        "service",
        json!({"name": "extra", "type": "extra"}),
    )
    .await;
    must_create(
        a,
        &format!("{ks}/endpoints"),
        "endpoint",
        json!({"service_id": id_of(&svc), "region_id": "region0", "interface": "public",
               "url": "http://127.0.0.1:1/"}),
    )
    .await;
    let h = a
        .post(&format!("{r}/hosts/{}/disable", t.host_id), json!({}))
        .await;
    assert_eq!(h.status, 200, "{h:?}");
    let h = a
        .post(&format!("{r}/hosts/{}/enable", t.host_id), json!({}))
        .await;
    assert_eq!(h.status, 200, "{h:?}");

    // The D2 domain admin manages its own domain's projects and users.
    let d2 = &t.d2_admin.api;
    let p = must_create(
        d2,
        &format!("{ks}/projects"),
        "project",
        json!({"name": "d2-second"}),
    )
    .await;
    assert_eq!(p["domain_id"], json!(t.dom2_id), "{p}");
    let u = must_create(
        d2,
        &format!("{ks}/users"),
        "user",
        json!({"name": "d2-worker", "password": "d2-worker-Pw-1"}),
    )
    .await;
    assert_eq!(u["domain_id"], json!(t.dom2_id), "{u}");
    let g = d2
        .put(
            &format!(
                "{ks}/projects/{}/users/{}/roles/{}",
                id_of(&p),
                id_of(&u),
                t.roles["member"]
            ),
            None,
        )
        .await;
    assert_eq!(g.status, 204, "d2-admin grants member in its domain: {g:?}");
    login_in(
        ks,
        "d2-worker",
        "d2-worker-Pw-1",
        "dom2",
        "d2-second",
        "dom2",
    )
    .await
    .expect("d2-worker logs in");
    let projects = d2.get(&format!("{ks}/projects?scope=domain")).await;
    assert_eq!(projects.status, 200, "{projects:?}");
    assert_eq!(
        names(&projects.body, "projects"),
        ["d2-second", "d2proj"],
        "{projects:?}"
    );
    let users = d2.get(&format!("{ks}/users?scope=domain")).await;
    assert_eq!(names(&users.body, "users"), ["d2-admin", "d2-worker"]);
    // ... and nothing in the default domain.
    assert_refused(
        "d2-admin creates a project in the default domain",
        &d2.post(
            &format!("{ks}/projects"),
            json!({"project": {"name": "d2-evil", "domain_id": "default"}}),
        )
        .await,
        &[403],
    );
    assert_refused(
        "d2-admin grants itself member in A",
        &d2.put(
            &format!(
                "{ks}/projects/{}/users/{}/roles/{}",
                t.proj_a, t.d2_admin.user_id, t.roles["member"]
            ),
            None,
        )
        .await,
        DENY,
    );
    assert_refused(
        "d2-admin GET A's server",
        &d2.get(&format!("{r}/servers/{sid}")).await,
        &[403, 404],
    );
    assert_refused(
        "d2-admin GET /v3/projects/{A}",
        &d2.get(&format!("{ks}/projects/{}", t.proj_a)).await,
        &[403, 404],
    );
}
