//! Test harness: start the real `cloudpods` binary on random loopback ports
//! with a temporary data dir (or a fresh database on the MariaDB server of
//! `CLOUDPODS_TEST_MYSQL`), and stop it — killing it and removing what it made —
//! when the handle drops, also when the test fails.

#![allow(dead_code)]

pub mod gateway;
pub mod qemu;
pub mod saga;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn cloudpods_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cloudpods"))
}

/// `target/debug/climc`, next to the cloudpods binary.
pub fn climc_bin() -> PathBuf {
    cloudpods_bin().with_file_name("climc")
}

pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Which database a platform runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Mysql(String),
}

/// SQLite and MariaDB (`CLOUDPODS_TEST_MYSQL`, default
/// `mysql://root@127.0.0.1:3306`); a missing MariaDB fails the test.
pub fn backends() -> Vec<Backend> {
    vec![Backend::Sqlite, mysql()]
}

/// MariaDB alone (tests of what only a shared server database shows).
pub fn mysql() -> Backend {
    Backend::Mysql(cloudpods_testkit::mysql_url())
}

/// Runs `async fn $name(backend: Backend)` once per database, as the tests
/// `$name::sqlite` and `$name::mariadb` (a missing MariaDB fails the latter).
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$name(super::mysql()).await
            }
        }
    )+};
}

pub struct Platform {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ready: Value,
    pub auth_url: String,
    pub admin_password: String,
    mysql_db: Option<(String, String)>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

#[derive(Default, Clone)]
pub struct Opts {
    pub backend: Option<Backend>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub command: Option<String>,
    /// Arguments after the subcommand (e.g. all-in-one's `--with-host …`).
    pub command_args: Vec<String>,
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{:x}", std::process::id(), n & 0xffff_ffff)
}

impl Platform {
    pub fn start() -> Platform {
        Platform::start_with(Opts::default())
    }

    /// All-in-one on `backend`.
    pub fn start_on(backend: Backend) -> Platform {
        Platform::start_with(Opts {
            backend: Some(backend),
            ..Opts::default()
        })
    }

    pub fn start_with(opts: Opts) -> Platform {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--keystone-port".into(),
            "0".into(),
            "--region-port".into(),
            "0".into(),
            "--scheduler-port".into(),
            "0".into(),
            "--glance-port".into(),
            "0".into(),
            "--apigateway-port".into(),
            "0".into(),
            "--admin-password".into(),
            "Test-Admin-Pw1".into(),
            "--log".into(),
            std::env::var("CLOUDPODS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        ];
        let mut mysql_db = None;
        if let Some(Backend::Mysql(base)) = &opts.backend {
            let name = unique("cptest");
            args.push("--database".into());
            args.push(format!("{}/{}", base.trim_end_matches('/'), name));
            mysql_db = Some((base.clone(), name));
        }
        args.extend(opts.args.iter().cloned());
        args.push(opts.command.clone().unwrap_or_else(|| "all-in-one".into()));
        args.extend(opts.command_args.iter().cloned());
        args.push("--ready-file".into());
        args.push(dir.path().join("ready.json").display().to_string());
        let mut p = Platform {
            child: None,
            dir,
            ready: Value::Null,
            auth_url: String::new(),
            admin_password: "Test-Admin-Pw1".into(),
            mysql_db,
            args,
            envs: opts.env,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let ready = self.dir.path().join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(cloudpods_bin());
        cmd.args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .env_remove("CLOUDPODS_CONFIG");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start cloudpods"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                self.auth_url = v["auth_url"].as_str().unwrap_or_default().to_string();
                self.ready = v;
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("cloudpods exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("cloudpods did not become ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The MariaDB URL this platform uses (MySQL backends only).
    pub fn database_url(&self) -> Option<String> {
        self.mysql_db
            .as_ref()
            .map(|(base, name)| format!("{}/{}", base.trim_end_matches('/'), name))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn service_url(&self, name: &str) -> String {
        self.ready["services"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Stop the process (SIGKILL).
    pub fn kill(&mut self) {
        stop_child(&mut self.child);
    }

    /// Kill and start again on the same data dir and database.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Run another `cloudpods` subcommand against the same data.
    pub fn run_subcommand(&self, command: &str) -> std::process::Output {
        let mut args: Vec<String> = Vec::new();
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a == "all-in-one" || a == "keystone" || a == "--ready-file" {
                // Drop the command and the ready file argument.
                if a == "--ready-file" {
                    it.next();
                }
                continue;
            }
            args.push(a.clone());
        }
        args.push(command.into());
        Command::new(cloudpods_bin())
            .args(&args)
            .output()
            .expect("run cloudpods subcommand")
    }

    /// An API client logged in as the bootstrap admin.
    pub async fn admin(&self) -> Api {
        Api::login(
            &self.auth_url,
            "sysadmin",
            &self.admin_password,
            "system",
            None,
        )
        .await
        .expect("admin login")
    }

    /// Environment for `climc` as the admin.
    pub fn climc_env(&self) -> Vec<(String, String)> {
        vec![
            ("OS_AUTH_URL".into(), self.auth_url.clone()),
            ("OS_USERNAME".into(), "sysadmin".into()),
            ("OS_PASSWORD".into(), self.admin_password.clone()),
            ("OS_PROJECT_NAME".into(), "system".into()),
            ("OS_PROJECT_DOMAIN".into(), "Default".into()),
            ("OS_REGION_NAME".into(), "region0".into()),
            ("HOME".into(), self.dir.path().display().to_string()),
        ]
    }

    /// Run climc with the admin environment; returns (status ok, stdout, stderr).
    pub fn climc(&self, args: &[&str]) -> (bool, String, String) {
        climc_with(&self.climc_env(), args)
    }
}

pub fn climc_with(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(climc_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run climc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            print_log_tail("cloudpods", &self.log());
        }
        // Debugging aid: keep the data dir and logs of a failed run.
        if std::env::var_os("CLOUDPODS_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("kept platform dir {}", kept.keep().display());
        }
        if let Some((base, name)) = self.mysql_db.take() {
            drop_mysql_db(&base, &name);
        }
    }
}

/// A failed test shows the warnings and errors its processes logged.
fn print_log_tail(what: &str, log: &str) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
        .collect();
    let from = lines.len().saturating_sub(40);
    eprintln!("--- {what}: last warnings and errors ---");
    for l in &lines[from..] {
        eprintln!("{l}");
    }
}

fn drop_mysql_db(base: &str, name: &str) {
    let base = base.to_string();
    let name = name.to_string();
    // Drop may run inside or outside a runtime; use a private thread.
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
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
        }
    })
    .join();
}

/// A minimal JSON API client for tests.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub token: String,
    pub body: Value,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The id of the `keyword` object in the body (`{"server": {"id": …}}`).
    #[track_caller]
    pub fn id_of(&self, keyword: &str) -> String {
        match self.body[keyword]["id"].as_str() {
            Some(id) => id.to_string(),
            None => panic!("no {keyword} id in {self:?}"),
        }
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Resp {
    /// Status, headers and body of `r` (JSON, else the text as a string,
    /// `Null` when empty).
    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Resp {
            status,
            headers,
            body,
        }
    }
}

pub fn client() -> reqwest::Client {
    init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Issue a token; returns (status, subject token, body).
pub async fn issue(auth_url: &str, body: Value) -> (u16, String, Value) {
    let r = client()
        .post(format!("{auth_url}/auth/tokens"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let token = r
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, token, body)
}

pub fn password_auth(
    user: &str,
    password: &str,
    project: Option<&str>,
    user_domain: Option<&str>,
) -> Value {
    let mut u = json!({"name": user, "password": password});
    if let Some(d) = user_domain {
        u["domain"] = json!({"name": d});
    }
    let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": u}}});
    if let Some(p) = project {
        auth["scope"] = json!({"project": {"name": p, "domain": {"name": "Default"}}});
    }
    json!({ "auth": auth })
}

impl Api {
    pub async fn login(
        auth_url: &str,
        user: &str,
        password: &str,
        project: &str,
        domain: Option<&str>,
    ) -> Result<Api, Resp> {
        Api::login_with(
            auth_url,
            password_auth(user, password, Some(project), domain),
        )
        .await
    }

    /// Issue a token with the auth request `body`: the client holding it,
    /// or the refusal.
    pub async fn login_with(auth_url: &str, body: Value) -> Result<Api, Resp> {
        let (status, token, body) = issue(auth_url, body).await;
        if status != 200 {
            return Err(Resp {
                status,
                headers: Default::default(),
                body,
            });
        }
        Ok(Api {
            client: client(),
            token,
            body,
        })
    }

    pub fn with_token(token: &str) -> Api {
        Api {
            client: client(),
            token: token.to_string(),
            body: Value::Null,
        }
    }

    pub async fn call(&self, method: &str, url: &str, body: Option<Value>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, url);
        if !self.token.is_empty() {
            req = req.header("X-Auth-Token", &self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::read(req.send().await.expect("send")).await
    }

    /// The id of the first object a list answers (`GET url`, rows under
    /// `plural`).
    pub async fn first_id(&self, url: &str, plural: &str) -> String {
        let resp = self.get(url).await;
        match resp.body[plural][0]["id"].as_str() {
            Some(id) => id.to_string(),
            None => panic!("{url}: no {plural} in {resp:?}"),
        }
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.call("GET", url, None).await
    }
    pub async fn post(&self, url: &str, body: Value) -> Resp {
        self.call("POST", url, Some(body)).await
    }
    pub async fn put(&self, url: &str, body: Option<Value>) -> Resp {
        self.call("PUT", url, body).await
    }
    pub async fn delete(&self, url: &str) -> Resp {
        self.call("DELETE", url, None).await
    }
}

/// Assert a Cloudpods error body.
pub fn assert_error(r: &Resp, code: u16, class: &str) {
    assert_eq!(r.status, code, "{r:?}");
    assert_eq!(r.body["code"], json!(code), "{r:?}");
    assert_eq!(r.body["class"], json!(class), "{r:?}");
    assert!(r.body["details"].is_string(), "{r:?}");
    assert!(r.headers.contains_key("x-request-id"));
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A simulated host agent process (`cloudpods host --simulate`), killed on
/// drop.
pub struct SimHost {
    child: Option<Child>,
    pub host_id: String,
    pub manager_uri: String,
    pub name: String,
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl SimHost {
    pub fn kill(&mut self) {
        stop_child(&mut self.child);
    }

    /// Start the agent again (same name, same simulated state file).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// The simulated hypervisor's records (guests, disks, snapshots).
    pub fn state(&self) -> Value {
        std::fs::read_to_string(self.dir.path().join("sim-state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    fn spawn(&mut self) {
        let (child, ready) = spawn_agent(self.dir.path(), &self.args, &self.env);
        self.child = Some(child);
        self.host_id = ready["host_id"].as_str().unwrap_or_default().to_string();
        self.manager_uri = ready["manager_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
}

/// Start a host agent, `cloudpods <args>` with `env`, whose `args` name
/// `<dir>/ready.json` as its `--ready-file`: its stderr is appended to
/// `<dir>/host.log`, and this waits until it has registered (written the
/// ready file, removed first). Returns the process and the ready file
/// (`host_id`, `storage_id`, `manager_uri`); panics with the log when the
/// agent exits first or has not registered within 60 s.
pub fn spawn_agent(dir: &Path, args: &[String], env: &[(String, String)]) -> (Child, Value) {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let log_path = dir.join("host.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("host.log");
    let mut child = Command::new(cloudpods_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the host agent");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            return (child, v);
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("host agent {args:?} exited ({st}):\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_child(&mut Some(child));
    panic!("host agent {args:?} did not register:\n{}", log());
}

/// Kill and reap the process in `child`, if any (it is then `None`).
pub fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            print_log_tail("simulated host", &self.log());
        }
    }
}

/// Options of a simulated host.
#[derive(Clone)]
pub struct SimOpts {
    pub name: String,
    pub zone: String,
    pub wires: Vec<String>,
    pub cpu: i64,
    pub mem_mb: i64,
    pub storage_gb: i64,
    pub delay_ms: u64,
    pub fail: Vec<String>,
    pub ping_seconds: u64,
}

impl SimOpts {
    /// The command line of a simulated agent with these options whose
    /// files live in `dir`: data in `data`, the simulated hypervisor's
    /// records in `sim-state.json` (kept across restarts), the ready file
    /// [`spawn_agent`] waits for in `ready.json`.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--log".into(),
            "warn".into(),
            "host".into(),
            "--simulate".into(),
            "--port".into(),
            "0".into(),
            "--name".into(),
            self.name.clone(),
            "--zone".into(),
            self.zone.clone(),
            "--cpu".into(),
            self.cpu.to_string(),
            "--mem-mb".into(),
            self.mem_mb.to_string(),
            "--storage-gb".into(),
            self.storage_gb.to_string(),
            "--sim-delay-ms".into(),
            self.delay_ms.to_string(),
            "--ping-seconds".into(),
            self.ping_seconds.to_string(),
            "--sim-state".into(),
            dir.join("sim-state.json").display().to_string(),
            "--ready-file".into(),
            dir.join("ready.json").display().to_string(),
        ];
        for w in &self.wires {
            args.push("--wire".into());
            args.push(w.clone());
        }
        for f in &self.fail {
            args.push("--sim-fail".into());
            args.push(f.clone());
        }
        args
    }
}

impl Default for SimOpts {
    fn default() -> Self {
        SimOpts {
            name: "host0".into(),
            zone: "zone0".into(),
            wires: vec!["wire0".into()],
            cpu: 64,
            mem_mb: 262_144,
            storage_gb: 4096,
            delay_ms: 10,
            fail: Vec::new(),
            ping_seconds: 5,
        }
    }
}

impl Platform {
    /// The region's base URL.
    pub fn region_url(&self) -> String {
        self.service_url("region")
    }

    /// The scheduler's base URL.
    pub fn scheduler_url(&self) -> String {
        self.service_url("scheduler")
    }

    /// The API gateway's base URL (it serves the web console at `/`).
    pub fn gateway_url(&self) -> String {
        self.service_url("apigateway")
    }

    /// The image service's base URL (ends in `/v1`).
    pub fn glance_url(&self) -> String {
        self.service_url("glance")
    }

    /// The environment a host agent registers with: the admin credentials,
    /// public endpoints.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let mut env = self.climc_env();
        env.push(("OS_ENDPOINT_TYPE".into(), "public".into()));
        env
    }

    /// Start a simulated host agent registered with this platform.
    pub fn sim_host(&self, o: SimOpts) -> SimHost {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = o.args(dir.path());
        let env = self.agent_env();
        let mut h = SimHost {
            child: None,
            host_id: String::new(),
            manager_uri: String::new(),
            name: o.name.clone(),
            dir,
            args,
            env,
        };
        h.spawn();
        h
    }

    /// A new project with a new member user, logged in; and the project's id.
    pub async fn member(&self, admin: &Api, project: &str, user: &str) -> (Api, String) {
        let a = &self.auth_url;
        let r = admin
            .post(
                &format!("{a}/projects"),
                json!({"project": {"name": project}}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let pid = r.body["project"]["id"].as_str().expect("id").to_string();
        let r = admin
            .post(
                &format!("{a}/users"),
                json!({"user": {"name": user, "password": "Member-Pw-123"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let uid = r.body["user"]["id"].as_str().expect("id").to_string();
        let r = admin
            .put(
                &format!("{a}/projects/{pid}/users/{uid}/roles/member"),
                None,
            )
            .await;
        assert!(r.status == 200 || r.status == 204, "{r:?}");
        let api = Api::login(a, user, "Member-Pw-123", project, None)
            .await
            .expect("member login");
        (api, pid)
    }

    /// The admin's client, after [`Platform::basic_network`].
    pub async fn admin_with_network(&self) -> Api {
        let admin = self.admin().await;
        self.basic_network(&admin).await;
        admin
    }

    /// Create zone0, wire0 and network net0 (10.0.0.10–10.0.0.250/24).
    pub async fn basic_network(&self, admin: &Api) {
        let r = self.region_url();
        for (url, body) in [
            (format!("{r}/zones"), json!({"zone": {"name": "zone0"}})),
            (
                format!("{r}/wires"),
                json!({"wire": {"name": "wire0", "zone": "zone0"}}),
            ),
            (
                format!("{r}/networks"),
                json!({"network": {"name": "net0", "wire": "wire0", "guest_ip_start": "10.0.0.10",
                       "guest_ip_end": "10.0.0.250", "guest_ip_mask": 24, "guest_gateway": "10.0.0.1",
                       "is_public": true, "public_scope": "system"}}),
            ),
        ] {
            let resp = admin.post(&url, body).await;
            assert_eq!(resp.status, 200, "{url}: {resp:?}");
        }
    }
}

/// Poll `GET {url}` until `pred` holds (or panic after `secs`).
pub async fn wait_until<F>(api: &Api, url: &str, secs: u64, pred: F) -> Value
where
    F: Fn(&Value) -> bool,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = api.get(url).await;
        if pred(&r.body) {
            return r.body;
        }
        if Instant::now() > deadline {
            panic!("condition not met for {url}: last answer {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tenancy fixtures of the authorization tests.
pub mod authz;
