//! The region's [`Scheduler`](cloudpods_region::Scheduler) over HTTP, for
//! region processes without an in-process scheduler: `POST /scheduler`
//! with the region's own token.

use async_trait::async_trait;
use cloudpods_apis::ErrorClass;
use cloudpods_apis::scheduler::{Candidate, ScheduleInput, ScheduleOutput};
use cloudpods_rest::HttpError;
use cloudpods_sdk::reqwest::Method;
use cloudpods_sdk::reqwest::header::HeaderMap;
use cloudpods_sdk::{Client, SdkError};

#[derive(Clone)]
pub struct RemoteScheduler {
    client: Client,
    /// Base URL of the scheduler (`http://host:30887`); `None`: the token
    /// catalog's `scheduler` endpoint.
    url: Option<String>,
}

fn relay(e: SdkError) -> HttpError {
    match e {
        SdkError::Http { class, details, .. } => HttpError::new(
            ErrorClass::from_name(&class).unwrap_or(ErrorClass::BadGateway),
            details,
        ),
        other => HttpError::bad_gateway(format!("scheduler unreachable: {other}")),
    }
}

impl RemoteScheduler {
    /// Find the scheduler in the token catalog.
    pub fn new(client: Client) -> RemoteScheduler {
        RemoteScheduler { client, url: None }
    }

    pub fn with_url(client: Client, url: impl Into<String>) -> RemoteScheduler {
        RemoteScheduler {
            client,
            url: Some(url.into().trim_end_matches('/').to_string()),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, HttpError> {
        match &self.url {
            None => self
                .client
                .raw(
                    Method::POST,
                    "scheduler",
                    path,
                    None,
                    Some(body),
                    HeaderMap::new(),
                )
                .await
                .map(|r| r.body)
                .map_err(relay),
            Some(base) => {
                let url = format!("{base}{path}");
                let mut retried = false;
                loop {
                    let token = self.client.token().id().to_string();
                    let resp = self
                        .client
                        .http()
                        .post(&url)
                        .header("X-Auth-Token", token)
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| {
                            HttpError::bad_gateway(format!("scheduler unreachable at {url}: {e}"))
                        })?;
                    let status = resp.status();
                    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
                    if status.as_u16() == 401 && !retried {
                        retried = true;
                        self.client.reauthenticate().await.map_err(relay)?;
                        continue;
                    }
                    if status.is_success() {
                        return Ok(v);
                    }
                    let class = v["class"].as_str().unwrap_or_default();
                    let details = v["details"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("scheduler answered {status}"));
                    return Err(HttpError::new(
                        ErrorClass::from_name(class)
                            .unwrap_or_else(|| ErrorClass::from_code(status.as_u16())),
                        details,
                    ));
                }
            }
        }
    }
}

#[async_trait]
impl cloudpods_region::Scheduler for RemoteScheduler {
    async fn schedule(&self, input: &ScheduleInput) -> Result<Vec<Candidate>, HttpError> {
        let body = serde_json::to_value(input).map_err(|e| HttpError::internal(e.to_string()))?;
        let out = self.post("/scheduler", body).await?;
        let out: ScheduleOutput = serde_json::from_value(out)
            .map_err(|e| HttpError::bad_gateway(format!("bad answer from the scheduler: {e}")))?;
        if let Some(c) = out.candidates.iter().find(|c| !c.error.is_empty()) {
            return Err(HttpError::insufficient(c.error.clone()));
        }
        Ok(out.candidates)
    }

    async fn completed(&self, session_id: &str) {
        let path = format!("/scheduler/completed/{session_id}");
        if let Err(e) = self.post(&path, serde_json::json!({})).await {
            // The reservation expires on its own; nothing to undo.
            tracing::warn!(session = session_id, error = %e, "scheduler completed notification failed");
        }
    }

    fn invalidate_host(&self, host_id: &str) {
        if !host_id.is_empty() {
            self.clean_cache(format!("/scheduler/clean-cache/{host_id}"));
        }
    }

    fn invalidate_all(&self) {
        self.clean_cache("/scheduler/clean-cache".into());
    }
}

impl RemoteScheduler {
    /// Fire and forget: the scheduler's periodic rebuild catches up if the
    /// notification is lost.
    fn clean_cache(&self, path: String) {
        let me = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = me.post(&path, serde_json::json!({})).await {
                    tracing::debug!(path, error = %e, "scheduler cache notification failed");
                }
            });
        }
    }
}
