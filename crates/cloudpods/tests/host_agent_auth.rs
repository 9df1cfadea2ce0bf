//! The region ↔ host agent trust chain with a real simulated agent
//! process (`cloudpods host --simulate`) registered with a platform: the
//! agent answers only what the region signed with the host's secret,
//! posts results only to the region, and refuses paths outside its storage;
//! the region refuses a machine type outside the list; the normal flows
//! still work, also after the agent restarted with the same secret.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;

use common::*;
use serde_json::{Value, json};

/// A simulated agent with a data dir this test can look into.
struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    host_id: String,
    storage_id: String,
    uri: String,
}

impl Agent {
    fn start(p: &Platform) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = SimOpts {
            name: "authhost".into(),
            ..Default::default()
        }
        .args(dir.path());
        let env = p.agent_env();
        let mut a = Agent {
            child: None,
            dir,
            args,
            env,
            host_id: String::new(),
            storage_id: String::new(),
            uri: String::new(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let (child, ready) = spawn_agent(self.dir.path(), &self.args, &self.env);
        self.child = Some(child);
        self.host_id = ready["host_id"].as_str().unwrap_or_default().into();
        self.storage_id = ready["storage_id"].as_str().unwrap_or_default().into();
        self.uri = ready["manager_uri"].as_str().unwrap_or_default().into();
    }

    fn restart(&mut self) {
        stop_child(&mut self.child);
        self.spawn();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn secret(&self) -> String {
        std::fs::read_to_string(self.data().join("agent.secret")).expect("agent.secret")
    }

    /// The simulated hypervisor's records.
    fn state(&self) -> Value {
        std::fs::read_to_string(self.dir.path().join("sim-state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(json!({}))
    }

    fn has_guest(&self, id: &str) -> bool {
        self.state()["guests"].get(id).is_some()
    }

    fn has_disk(&self, id: &str) -> bool {
        self.state()["disks"].get(id).is_some()
    }

    /// A POST signed with `secret`, with task headers when `notify` is set.
    async fn post(
        &self,
        secret: &str,
        path: &str,
        body: Value,
        notify: Option<&str>,
    ) -> (u16, Value) {
        let http = reqwest::Client::new();
        let req = cloudpods_host::agent::signed_request(
            &http,
            secret,
            reqwest::Method::POST,
            &format!("{}{path}", self.uri),
            Some(&body),
            notify.map(|n| ("task-1", n)),
        )
        .expect("sign");
        let r = req.send().await.expect("agent");
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop_child(&mut self.child);
        if std::thread::panicking() {
            eprintln!("agent log:\n{}", self.log());
        }
    }
}

fn unauthorized(st: u16, v: &Value) {
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["code"], 401, "{v}");
    assert_eq!(v["class"], "UnauthorizedError", "{v}");
    assert!(v["details"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
}

async fn wait_status(admin: &Api, r: &str, id: &str, want: &str) -> Value {
    wait_until(admin, &format!("{r}/servers/{id}"), 60, |b| {
        b["server"]["status"] == want
    })
    .await["server"]
        .clone()
}

async fn servers_named(admin: &Api, r: &str, name: &str) -> usize {
    let l = admin.get(&format!("{r}/servers?name={name}")).await;
    assert_eq!(l.status, 200, "{l:?}");
    l.body["servers"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn the_agent_answers_only_the_region() {
    let p = Platform::start();
    let admin = p.admin_with_network().await;
    let mut agent = Agent::start(&p);
    let r = p.region_url();
    let http = reqwest::Client::new();

    // The secret: 32 random bytes in hex, mode 0600, never answered.
    let secret = agent.secret();
    assert_eq!(secret.len(), 64);
    let mode = std::fs::metadata(agent.data().join("agent.secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let host = admin.get(&format!("{r}/hosts/{}", agent.host_id)).await;
    assert_eq!(host.status, 200);
    assert!(host.body["host"].get("agent_secret").is_none(), "{host:?}");
    assert!(!host.body.to_string().contains(&secret));
    let list = admin.get(&format!("{r}/hosts?details=true")).await;
    assert!(!list.body.to_string().contains(&secret));

    // The liveness probe is open and says nothing.
    let ping = cloudpods_testkit::json_of(http.get(format!("{}/ping", agent.uri))).await;
    assert_eq!(ping, json!({}));

    let st = agent.storage_id.clone();
    let gid = "6f1c2a9e-0b7d-4b36-8a55-00000000a001";
    let desc = json!({"uuid": gid, "name": "evil", "hostname": "evil", "cpu": 1, "mem": 256,
                      "disks": [{"disk_id": "evil-disk", "index": 0, "storage_id": st}], "nics": []});

    // Unsigned: 401, nothing happens.
    for (path, body) in [
        (
            format!("/disks/{st}/create/evil-disk"),
            json!({"disk": {"size": 64}}),
        ),
        (
            format!("/servers/{gid}/deploy"),
            json!({"desc": desc, "params": {}}),
        ),
    ] {
        let resp = http
            .post(format!("{}{path}", agent.uri))
            .header("X-Task-Notify-Url", format!("{r}/tasks/x?stage=a&key=b"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = resp.status().as_u16();
        unauthorized(st, &resp.json().await.unwrap_or(Value::Null));
    }
    let resp = http
        .get(format!("{}/servers/{gid}/status", agent.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{}/disks/image_cache", agent.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Signed with another key, or a tampered body: 401.
    let wrong = cloudpods_apis::agent_auth::generate_secret();
    let (s1, v) = agent
        .post(
            &wrong,
            &format!("/disks/{st}/create/evil-disk"),
            json!({"disk": {"size": 64}}),
            None,
        )
        .await;
    unauthorized(s1, &v);
    let ts = cloudpods_apis::agent_auth::now();
    let body = br#"{"disk": {"size": 64}}"#;
    let path = format!("/disks/{st}/create/evil-disk");
    let sig = cloudpods_apis::agent_auth::sign(
        &cloudpods_apis::agent_auth::parse_secret(&secret).unwrap(),
        &cloudpods_apis::agent_auth::Signed {
            method: "POST",
            path_and_query: &path,
            timestamp: ts,
            task_id: "",
            notify_url: "",
            body,
        },
    );
    let resp = http
        .post(format!("{}{path}", agent.uri))
        .header("X-Cloudpods-Timestamp", ts.to_string())
        .header("X-Cloudpods-Signature", &sig)
        .header("Content-Type", "application/json")
        .body(r#"{"disk": {"size": 65536}}"#)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    unauthorized(code, &resp.json().await.unwrap_or(Value::Null));
    // An old timestamp.
    let old = ts - 600;
    let sig_old = cloudpods_apis::agent_auth::sign(
        &cloudpods_apis::agent_auth::parse_secret(&secret).unwrap(),
        &cloudpods_apis::agent_auth::Signed {
            method: "POST",
            path_and_query: &path,
            timestamp: old,
            task_id: "",
            notify_url: "",
            body,
        },
    );
    let resp = http
        .post(format!("{}{path}", agent.uri))
        .header("X-Cloudpods-Timestamp", old.to_string())
        .header("X-Cloudpods-Signature", &sig_old)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    unauthorized(code, &v);
    assert!(v["details"].as_str().unwrap().contains("away"), "{v}");

    // Signed, but the result would be posted somewhere else: refused
    // before any work.
    for notify in [
        "http://127.0.0.2:9/tasks/t?stage=a&key=b".to_string(),
        "https://127.0.0.1:9/tasks/t?stage=a&key=b".to_string(),
        format!("{r}/tasks/t?stage=a").replace("http://", "http://user:pw@"),
        format!("{r}/servers/x?stage=a"),
        format!("{r}/tasks/a/b?stage=a"),
    ] {
        let (code, v) = agent
            .post(
                &secret,
                &format!("/disks/{st}/create/evil-disk"),
                json!({"disk": {"size": 64}}),
                Some(&notify),
            )
            .await;
        assert_eq!(code, 400, "{notify}: {v}");
        cloudpods_testkit::assert_details(&v, "X-Task-Notify-Url");
    }

    // Signed, but paths outside the storage, foreign storages, bad ids.
    let mut outside = desc.clone();
    outside["disks"][0]["path"] = json!("/etc/shadow");
    let mut escape = desc.clone();
    escape["disks"][0]["path"] = json!(format!(
        "{}/../../../etc/shadow",
        agent.data().join("disks").display()
    ));
    for (path, body, needle) in [
        (
            format!("/servers/{gid}/deploy"),
            json!({"desc": outside, "params": {}}),
            "outside",
        ),
        (
            format!("/servers/{gid}/deploy"),
            json!({"desc": escape, "params": {}}),
            "..",
        ),
        (
            "/disks/not-mine/create/evil-disk".to_string(),
            json!({"disk": {"size": 64}}),
            "not a storage of this host",
        ),
        (
            format!("/disks/{st}/create/evil.disk"),
            json!({"disk": {"size": 64}}),
            "disk id",
        ),
    ] {
        let (code, v) = agent.post(&secret, &path, body, None).await;
        assert_eq!(code, 400, "{path}: {v}");
        assert_eq!(v["class"], "InputParameterError", "{v}");
        assert!(v["details"].as_str().unwrap().contains(needle), "{v}");
    }
    assert!(!agent.has_disk("evil-disk"), "{}", agent.state());
    assert!(!agent.has_guest(gid), "{}", agent.state());

    // Properly signed: it works, and the path is inside the storage.
    let (code, v) = agent
        .post(
            &secret,
            &format!("/disks/{st}/create/ok-disk"),
            json!({"disk": {"size": 64}}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert!(
        Path::new(v["disk_path"].as_str().unwrap()).starts_with(agent.data().join("disks")),
        "{v}"
    );
    let (code, _) = agent
        .post(
            &secret,
            &format!("/disks/{st}/delete/ok-disk"),
            json!({}),
            None,
        )
        .await;
    assert_eq!(code, 200);

    // The region refuses a machine type outside the list; nothing written.
    for machine in ["pc,accel=tcg", "virt", "q35 -device x"] {
        let resp = admin
            .post(
                &format!("{r}/servers"),
                json!({"server": {"name": "badmachine", "vcpu_count": 1, "vmem_size": 512,
                                  "disks": [{"size": 1024}], "nets": [{"network": "net0"}],
                                  "machine": machine}}),
            )
            .await;
        assert_error(&resp, 400, "InputParameterError");
        cloudpods_testkit::assert_details(&resp.body, "machine");
    }
    assert_eq!(servers_named(&admin, &r, "badmachine").await, 0);

    // The normal flow through the region, then again after the agent
    // restarted (same secret).
    let resp = admin
        .post(
            &format!("{r}/servers"),
            json!({"server": {"name": "good", "vcpu_count": 1, "vmem_size": 512,
                              "disks": [{"size": 1024}], "nets": [{"network": "net0"}],
                              "machine": "q35", "auto_start": true}}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let id = resp.body["server"]["id"].as_str().unwrap().to_string();
    let vm = wait_status(&admin, &r, &id, "running").await;
    assert_eq!(vm["machine"], "q35", "{vm}");
    assert!(agent.has_guest(&id));
    let disk = admin.get(&format!("{r}/disks?server={id}")).await;
    let path = disk.body["disks"][0]["access_path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        Path::new(&path).starts_with(agent.data().join("disks")),
        "{disk:?}"
    );

    agent.restart();
    assert_eq!(agent.secret(), secret, "the secret is kept across restarts");
    for (action, want) in [("stop", "ready"), ("start", "running"), ("stop", "ready")] {
        let resp = admin
            .post(&format!("{r}/servers/{id}/{action}"), json!({"server": {}}))
            .await;
        assert_eq!(resp.status, 200, "{action}: {resp:?}");
        wait_status(&admin, &r, &id, want).await;
    }
    let resp = admin.delete(&format!("{r}/servers/{id}")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    wait_until(&admin, &format!("{r}/servers?name=good"), 60, |b| {
        b["servers"].as_array().is_some_and(|l| l.is_empty())
    })
    .await;
    assert!(!agent.has_guest(&id), "{}", agent.state());
    assert!(
        !agent.log().contains(&secret),
        "the secret appears in the agent's log"
    );
    assert!(!p.log().contains(&secret), "the secret appears in the log");
}
