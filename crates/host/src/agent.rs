//! The agent's HTTP API.
//!
//! `POST /servers/{id}/{action}` and `POST /disks/{storage}/{action}/{disk}`
//! with `X-Task-Notify-Url` are accepted at once (`{}`) and answered later
//! by a `POST` to the notify URL with the result, or
//! `{"__status__": "error", "__reason__": …}`. Without the header the
//! action runs synchronously and the result is the response (the region's
//! undo steps use this).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::{Driver, DriverError, DriverResult};

#[derive(Clone)]
pub struct AgentState {
    pub driver: Arc<dyn Driver>,
    pub http: reqwest::Client,
}

pub fn router(driver: Arc<dyn Driver>) -> Router {
    let state = AgentState {
        driver,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default(),
    };
    Router::new()
        .route("/servers/{id}/{action}", post(server_action))
        .route("/servers/{id}/status", get(server_status))
        .route("/servers/{id}/vnc", get(server_vnc))
        .route("/disks/{storage}/{action}/{disk}", post(disk_action))
        .route(
            "/disks/image_cache",
            get(|State(st): State<AgentState>| async move {
                axum::Json(st.driver.cached_images().await)
            }),
        )
        .route("/ping", get(|| async { axum::Json(json!({})) }))
        .with_state(state)
}

fn error(status: StatusCode, class: &str, details: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": status.as_u16(), "class": class, "details": details})),
    )
        .into_response()
}

/// Run `work` now or in the background with a callback.
async fn dispatch<F>(st: &AgentState, headers: &HeaderMap, work: F) -> Response
where
    F: std::future::Future<Output = DriverResult> + Send + 'static,
{
    let notify = headers
        .get("x-task-notify-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match notify {
        None => match work.await {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) if e.is_unknown_guest() => error(StatusCode::NOT_FOUND, "NotFoundError", &e.0),
            Err(e) => error(StatusCode::BAD_REQUEST, "BadRequestError", &e.0),
        },
        Some(url) => {
            let http = st.http.clone();
            let token = headers.get("x-auth-token").cloned();
            tokio::spawn(async move {
                let result = work.await;
                let body = match result {
                    Ok(v) => v,
                    Err(e) => json!({"__status__": "error", "__reason__": e.0}),
                };
                // Retry like Cloudpods' agents: the region may be restarting.
                for attempt in 0..30 {
                    let mut req = http.post(&url).json(&body);
                    if let Some(t) = &token {
                        req = req.header("X-Auth-Token", t.clone());
                    }
                    match req.send().await {
                        Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                            return;
                        }
                        Ok(r) => {
                            tracing::warn!(url, status = %r.status(), attempt, "callback refused")
                        }
                        Err(e) => tracing::warn!(url, error = %e, attempt, "callback failed"),
                    }
                    tokio::time::sleep(Duration::from_millis(500 * (attempt + 1).min(10))).await;
                }
            });
            axum::Json(json!({})).into_response()
        }
    }
}

async fn server_action(
    State(st): State<AgentState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or(json!({}));
    let d = st.driver.clone();
    let desc = body.get("desc").cloned().unwrap_or(Value::Null);
    let work: std::pin::Pin<Box<dyn std::future::Future<Output = DriverResult> + Send>> =
        match action.as_str() {
            "deploy" | "create" => {
                let params = body.get("params").cloned().unwrap_or(Value::Null);
                Box::pin(async move { d.deploy(&id, &desc, &params).await })
            }
            "start" => Box::pin(async move { d.start(&id, &desc).await }),
            "stop" => {
                let force = body
                    .get("is_force")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let timeout = body.get("timeout").and_then(Value::as_u64).unwrap_or(30);
                Box::pin(async move { d.stop(&id, force, timeout).await })
            }
            "reset" => Box::pin(async move { d.reset(&id).await }),
            "sync" => Box::pin(async move { d.sync(&id, &desc).await }),
            "delete" => Box::pin(async move { d.delete(&id).await }),
            other => {
                return error(
                    StatusCode::NOT_FOUND,
                    "ActionNotFoundError",
                    &format!("unknown server action {other}"),
                );
            }
        };
    dispatch(&st, &headers, work).await
}

async fn server_status(State(st): State<AgentState>, Path(id): Path<String>) -> Response {
    axum::Json(json!({"status": st.driver.status(&id).await})).into_response()
}

async fn server_vnc(State(st): State<AgentState>, Path(id): Path<String>) -> Response {
    match st.driver.vnc(&id).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(DriverError(e)) => error(StatusCode::NOT_FOUND, "NotFoundError", &e),
    }
}

async fn disk_action(
    State(st): State<AgentState>,
    Path((storage, action, disk)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<axum::Json<Value>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or(json!({}));
    let d = st.driver.clone();
    let work: std::pin::Pin<Box<dyn std::future::Future<Output = DriverResult> + Send>> =
        match action.as_str() {
            "create" => {
                let spec = body.get("disk").cloned().unwrap_or(Value::Null);
                Box::pin(async move { d.disk_create(&storage, &disk, &spec).await })
            }
            "delete" => Box::pin(async move { d.disk_delete(&storage, &disk).await }),
            "resize" => {
                let size = body
                    .get("size")
                    .or_else(|| body.get("disk").and_then(|x| x.get("size")))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                Box::pin(async move { d.disk_resize(&storage, &disk, size).await })
            }
            "snapshot" => {
                let snap = body
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Box::pin(async move { d.disk_snapshot(&storage, &disk, &snap).await })
            }
            "reset" => {
                let snap = body
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Box::pin(async move { d.disk_reset(&storage, &disk, &snap).await })
            }
            "delete-snapshot" => {
                let snap = body
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Box::pin(async move { d.disk_delete_snapshot(&storage, &disk, &snap).await })
            }
            other => {
                return error(
                    StatusCode::NOT_FOUND,
                    "ActionNotFoundError",
                    &format!("unknown disk action {other}"),
                );
            }
        };
    dispatch(&st, &headers, work).await
}
