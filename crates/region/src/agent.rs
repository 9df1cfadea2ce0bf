//! The region → host agent protocol (docs/AGENT_PROTOCOL.md).
//!
//! The region `POST`s an action to the agent at the host's `manager_uri`
//! with `X-Task-Id` and `X-Task-Notify-Url`; the agent answers at once that
//! it accepted the request, does the work, then `POST`s the result (or
//! `{"__status__": "error", "__reason__": ...}`) to the notify URL.

use std::sync::RwLock;
use std::time::Duration;

use cloudpods_taskman::{TaskCtx, TaskError};
use serde_json::Value;

pub struct AgentClient {
    http: reqwest::Client,
    token: RwLock<Option<String>>,
}

impl Default for AgentClient {
    fn default() -> Self {
        AgentClient::new()
    }
}

impl AgentClient {
    pub fn new() -> AgentClient {
        AgentClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            token: RwLock::new(None),
        }
    }

    /// The service token presented to agents.
    pub fn set_token(&self, token: Option<String>) {
        if let Ok(mut t) = self.token.write() {
            *t = token;
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Ok(t) = self.token.read()
            && let Some(t) = t.as_ref()
        {
            req = req.header("X-Auth-Token", t);
        }
        req
    }

    /// Send an action for `task`'s current step. The agent answers the
    /// request synchronously; the result arrives later on the notify URL.
    pub async fn send(
        &self,
        manager_uri: &str,
        path: &str,
        body: Value,
        t: &TaskCtx,
    ) -> Result<Value, TaskError> {
        if manager_uri.is_empty() {
            return Err(TaskError::new(
                "the host has no agent address (manager_uri)",
            ));
        }
        let url = format!("{}{}", manager_uri.trim_end_matches('/'), path);
        let resp = self
            .request(reqwest::Method::POST, &url)
            .header("X-Task-Id", &t.id)
            .header("X-Task-Notify-Url", t.notify_url())
            .json(&body)
            .send()
            .await
            .map_err(|e| TaskError(format!("agent {manager_uri} unreachable: {e}")))?;
        answer(manager_uri, resp).await
    }

    /// An action done synchronously (no task headers): used by undo steps,
    /// which cannot wait for a callback.
    pub async fn call(
        &self,
        manager_uri: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, TaskError> {
        if manager_uri.is_empty() {
            return Err(TaskError::new(
                "the host has no agent address (manager_uri)",
            ));
        }
        let url = format!("{}{}", manager_uri.trim_end_matches('/'), path);
        let resp = self
            .request(reqwest::Method::POST, &url)
            .json(&body)
            .send()
            .await
            .map_err(|e| TaskError(format!("agent {manager_uri} unreachable: {e}")))?;
        answer(manager_uri, resp).await
    }

    /// A synchronous query (status, desc).
    pub async fn get(&self, manager_uri: &str, path: &str) -> Result<Value, TaskError> {
        let url = format!("{}{}", manager_uri.trim_end_matches('/'), path);
        let resp = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| TaskError(format!("agent {manager_uri} unreachable: {e}")))?;
        answer(manager_uri, resp).await
    }
}

async fn answer(agent: &str, resp: reqwest::Response) -> Result<Value, TaskError> {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    // The agent's own message goes into the task's reason.
    let details = body
        .get("details")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or(text);
    Err(TaskError(format!(
        "agent {agent} answered {status}: {details}"
    )))
}
