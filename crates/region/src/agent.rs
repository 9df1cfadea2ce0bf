//! The region → host agent protocol (docs/AGENT_PROTOCOL.md).
//!
//! The region `POST`s an action to the agent at the host's `manager_uri`
//! with `X-Task-Id` and `X-Task-Notify-Url`; the agent answers at once that
//! it accepted the request, does the work, then `POST`s the result (or
//! `{"__status__": "error", "__reason__": ...}`) to the notify URL.
//!
//! Every request is signed with the host's agent secret (hosts_tbl
//! `agent_secret`, registered by the agent): see
//! [`cloudpods_apis::agent_auth`]. No user or service token is sent.

use std::time::Duration;

use cloudpods_apis::agent_auth::{self, SIGNATURE_HEADER, Signed, TIMESTAMP_HEADER};
use cloudpods_db::Row;
use cloudpods_taskman::{TaskCtx, TaskError};
use serde_json::Value;

use crate::store::s;

/// Where a host's agent listens and the key its requests are signed with.
/// Built from the host row; never logged (no `Debug`), never stored.
#[derive(Clone, Default)]
pub struct Agent {
    pub uri: String,
    secret: String,
}

impl Agent {
    /// The agent of a host row.
    pub fn of(host: &Row) -> Agent {
        Agent {
            uri: s(host, "manager_uri"),
            secret: s(host, "agent_secret"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.uri.is_empty()
    }

    /// A pre-signed `GET` of `path` on this agent, for another agent to
    /// present (`{"timestamp", "signature"}`, valid for
    /// [`agent_auth::MAX_SKEW_SECS`]).
    pub fn grant(&self, path: &str) -> Result<Value, TaskError> {
        let key = self.key()?;
        let ts = agent_auth::now();
        let sig = agent_auth::sign(
            &key,
            &Signed {
                method: "GET",
                path_and_query: path,
                timestamp: ts,
                task_id: "",
                notify_url: "",
                body: b"",
            },
        );
        Ok(serde_json::json!({"timestamp": ts, "signature": sig}))
    }

    /// A key for one purpose derived from this agent's secret (the
    /// pre-shared key of a live migration from this host): recomputed,
    /// never stored or logged.
    pub fn derive(&self, label: &str) -> Result<String, TaskError> {
        Ok(agent_auth::derive_key(&self.key()?, label))
    }

    fn key(&self) -> Result<Vec<u8>, TaskError> {
        if self.uri.is_empty() {
            return Err(TaskError::new(
                "the host has no agent address (manager_uri)",
            ));
        }
        agent_auth::parse_secret(&self.secret).ok_or_else(|| {
            TaskError(format!(
                "the host agent at {} has not registered its agent secret",
                self.uri
            ))
        })
    }
}

pub struct AgentClient {
    http: reqwest::Client,
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
        }
    }

    /// Build, sign and send one request.
    async fn request(
        &self,
        agent: &Agent,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        task: Option<(&str, &str)>,
    ) -> Result<Value, TaskError> {
        let key = agent.key()?;
        let url = format!("{}{}", agent.uri.trim_end_matches('/'), path);
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| TaskError(format!("agent URL {url:?} is invalid: {e}")))?;
        let mut path_and_query = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| TaskError(e.to_string()))?,
            None => Vec::new(),
        };
        let (task_id, notify) = task.unwrap_or(("", ""));
        let ts = agent_auth::now();
        let sig = agent_auth::sign(
            &key,
            &Signed {
                method: method.as_str(),
                path_and_query: &path_and_query,
                timestamp: ts,
                task_id,
                notify_url: notify,
                body: &bytes,
            },
        );
        let mut req = self
            .http
            .request(method, parsed)
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig);
        if let Some((id, notify)) = task {
            req = req
                .header("X-Task-Id", id)
                .header("X-Task-Notify-Url", notify);
        }
        if body.is_some() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TaskError(format!("agent {} unreachable: {e}", agent.uri)))?;
        answer(&agent.uri, resp).await
    }

    /// Send an action for `task`'s current step. The agent answers the
    /// request synchronously; the result arrives later on the notify URL.
    pub async fn send(
        &self,
        agent: &Agent,
        path: &str,
        body: Value,
        t: &TaskCtx,
    ) -> Result<Value, TaskError> {
        let notify = t.notify_url();
        self.request(
            agent,
            reqwest::Method::POST,
            path,
            Some(&body),
            Some((&t.id, &notify)),
        )
        .await
    }

    /// An action done synchronously (no task headers): used by undo steps,
    /// which cannot wait for a callback.
    pub async fn call(&self, agent: &Agent, path: &str, body: Value) -> Result<Value, TaskError> {
        self.request(agent, reqwest::Method::POST, path, Some(&body), None)
            .await
    }

    /// A synchronous query (status, desc).
    pub async fn get(&self, agent: &Agent, path: &str) -> Result<Value, TaskError> {
        self.request(agent, reqwest::Method::GET, path, None, None)
            .await
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
