//! Real AWS peers for tests and benchmarks: the moto emulator on a random
//! loopback port, and a fault-injecting HTTP proxy to put in front of it.
//! Both stop when their handle drops, also when a test fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// A `moto_server` child process (`pip install 'moto[server]'`).
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Start moto (`$MOTO_SERVER` or `moto_server` on the PATH) and wait
    /// until it answers.
    pub fn start() -> std::io::Result<Moto> {
        Self::start_with(&[])
    }

    /// As [`Moto::start`] with extra environment (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub fn start_with(env: &[(&str, &str)]) -> std::io::Result<Moto> {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("moto.log");
        // Port 0: the server binds a free port itself and prints it, so
        // parallel tests never race for one.
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("moto.out"))?)
            .stderr(std::fs::File::create(&log)?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("starting {bin} (pip install 'moto[server]'): {e}"),
            )
        })?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "moto exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )));
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default()
                + &std::fs::read_to_string(dir.path().join("moto.out")).unwrap_or_default();
            let port = text
                .split("Running on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                        .parse::<u16>()
                        .ok()
                });
            if let Some(port) = port
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Ok(Moto {
                    child: Some(child),
                    port,
                    url: format!("http://127.0.0.1:{port}"),
                    log,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(std::io::Error::other(format!(
            "moto did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST /moto-api/reset`: forget every resource.
    pub async fn reset(&self) -> Result<(), String> {
        self.post("/moto-api/reset", "").await
    }

    /// `POST /moto-api/reset-auth` with `n`: after `n` more requests moto
    /// checks access keys and signatures (against its IAM).
    pub async fn enable_auth_after(&self, n: u32) -> Result<(), String> {
        self.post("/moto-api/reset-auth", &n.to_string()).await
    }

    async fn post(&self, path: &str, body: &str) -> Result<(), String> {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("{path}: HTTP {}", r.status()))
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the proxy does to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this HTTP status with an AWS error document of this code.
    Status(u16, &'static str),
    /// Answer 503 `RequestLimitExceeded`.
    Throttle,
    /// Hold the request this long, then forward it.
    Delay(Duration),
    /// Never answer (the client times out).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// The query action (`DescribeInstances`), or empty for any request.
    pub action: String,
    /// Let this many matching requests through first.
    pub skip: u32,
    /// Then apply the fault this many times (`u32::MAX` = always).
    pub times: u32,
    pub fault: Fault,
}

impl Rule {
    pub fn new(action: &str, fault: Fault) -> Rule {
        Rule {
            action: action.into(),
            skip: 0,
            times: u32::MAX,
            fault,
        }
    }
    pub fn skip(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: u32) -> Rule {
        self.times = n;
        self
    }
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    /// Requests seen per action.
    seen: HashMap<String, u32>,
    /// Faults applied per action.
    faulted: HashMap<String, u32>,
}

/// An HTTP proxy in front of an AWS endpoint that injects faults by action.
pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<ProxyState>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let st = state.clone();
        let upstream = upstream.trim_end_matches('/').to_string();
        // No idle connections kept to the upstream: a reused connection the
        // server closed meanwhile would turn into a spurious 502.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(std::io::Error::other)?;
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                let upstream = upstream.clone();
                let client = client.clone();
                async move { handle(st, client, upstream, method, uri, headers, body).await }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FaultProxy { url, state, task })
    }

    pub fn add(&self, rule: Rule) {
        if let Ok(mut s) = self.state.lock() {
            s.rules.push(rule);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.rules.clear();
        }
    }

    /// Requests seen for an action.
    pub fn seen(&self, action: &str) -> u32 {
        self.state
            .lock()
            .map(|s| s.seen.get(action).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Faults injected for an action.
    pub fn faulted(&self, action: &str) -> u32 {
        self.state
            .lock()
            .map(|s| s.faulted.get(action).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn action_of(uri: &Uri, body: &[u8]) -> String {
    let from = |s: &str| -> Option<String> {
        s.split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .map(str::to_string)
    };
    from(std::str::from_utf8(body).unwrap_or_default())
        .or_else(|| uri.query().and_then(from))
        .unwrap_or_else(|| "s3".into())
}

async fn handle(
    st: Arc<Mutex<ProxyState>>,
    client: reqwest::Client,
    upstream: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let action = action_of(&uri, &body);
    let fault = {
        let Ok(mut s) = st.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        *s.seen.entry(action.clone()).or_default() += 1;
        let mut hit = None;
        for r in s.rules.iter_mut() {
            if !r.action.is_empty() && r.action != action {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            if r.times == 0 {
                continue;
            }
            if r.times != u32::MAX {
                r.times -= 1;
            }
            hit = Some(r.fault.clone());
            break;
        }
        if hit.is_some() {
            *s.faulted.entry(action.clone()).or_default() += 1;
        }
        hit
    };
    let error = |status: u16, code: &str| -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        );
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response()
    };
    match fault {
        Some(Fault::Status(code, name)) => return error(code, name),
        Some(Fault::Throttle) => return error(503, "RequestLimitExceeded"),
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return error(504, "Timeout");
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let url = format!(
        "{upstream}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut rb = client.request(method, url).body(body);
    for (k, v) in &headers {
        // The host is forwarded: it is part of the signature.
        if k != "content-length" {
            rb = rb.header(k, v);
        }
    }
    match rb.send().await {
        Ok(r) => {
            let status = r.status();
            let bytes = r.bytes().await.unwrap_or_default();
            (status, Body::from(bytes)).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
