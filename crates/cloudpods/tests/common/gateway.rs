//! A browser-like client of the API gateway (keeps the session cookie),
//! shared by the gateway and console tests.

#![allow(dead_code)]

use serde_json::{Value, json};

use super::init_tls;

/// A browser-like client of one gateway: keeps the session cookie.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub set_cookies: Vec<String>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        init_tls();
        Browser {
            http: reqwest::Client::new(),
            base: base.to_string(),
            cookie: None,
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("yunionauth={c}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the gateway answers");
        let status = resp.status().as_u16();
        let set_cookies = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            set_cookies,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, Some(body), &[]).await
    }

    /// Log in; keeps the session cookie and returns the login answer.
    pub async fn login(&mut self, user: &str, password: &str) -> Answer {
        let a = self
            .post(
                "/api/v1/auth/login",
                json!({"username": user, "password": password, "domain": "Default", "region": "region0"}),
            )
            .await;
        if a.status == 200 {
            self.cookie = session_cookie(&a.set_cookies);
        }
        a
    }
}

pub fn session_cookie(set: &[String]) -> Option<String> {
    set.iter().find_map(|c| {
        let first = c.split(';').next()?;
        let v = first.strip_prefix("yunionauth=")?;
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The console's sources (`web/`), after checking what the browser tests
/// need: Chromium, Node.js and playwright-core (`npm ci`, which
/// scripts/web-check runs).
pub fn browser_test_web_dir() -> std::path::PathBuf {
    cloudpods_testkit::require_program("chromium", "apt-get install chromium");
    cloudpods_testkit::require_program("node", "Node.js 20");
    let web = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
    cloudpods_testkit::require(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules/playwright-core (cd web && npm ci; scripts/web-check runs it)",
    );
    web
}

/// Fail with the script's output (and `log`, the platform's log tail)
/// unless a web/e2e script passed every step.
pub fn assert_browser_passed(out: std::process::Output, log: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("steps passed"),
        "the browser test failed:\n{stdout}\n{stderr}\n--- platform log tail ---\n{log}"
    );
}

/// The last `lines` lines of `s`.
pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
