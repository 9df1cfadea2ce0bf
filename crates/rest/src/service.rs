//! A service: its models, joints and custom routes, and the request type
//! custom handlers receive.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::auth::TokenVerifier;
use crate::context::Ctx;
use crate::error::{HttpError, Result};
use crate::model::{JointModel, Model};
use crate::params::Object;
use crate::tenant::TenantCache;

/// Default bound on JSON request bodies.
pub const DEFAULT_BODY_LIMIT: usize = 8 << 20;

/// A custom route handler.
pub type Handler = Arc<dyn Fn(ApiRequest) -> BoxFuture<'static, Result<Response>> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Static(String),
    Param(String),
}

pub(crate) struct CustomRoute {
    pub method: Method,
    pub segs: Vec<Seg>,
    pub auth: bool,
    pub template: String,
    pub handler: Handler,
}

/// One HTTP request as a custom handler sees it.
pub struct ApiRequest {
    pub method: Method,
    pub params: HashMap<String, String>,
    pub query: Object,
    pub headers: HeaderMap,
    /// The unread body. Behind a mutex only so that `&ApiRequest` is `Sync`
    /// and handlers may hold it across awaits; take it with [`ApiRequest::take_body`].
    pub body: std::sync::Mutex<Option<Body>>,
    pub ctx: Option<Ctx>,
    pub body_limit: usize,
    pub request_id: String,
}

impl ApiRequest {
    pub fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The authenticated context (routes registered with `auth`).
    pub fn ctx(&self) -> Result<&Ctx> {
        self.ctx
            .as_ref()
            .ok_or_else(|| HttpError::unauthorized("Unauthorized"))
    }

    /// The raw body (streaming handlers); empty when already taken.
    pub fn take_body(&self) -> Body {
        self.body
            .lock()
            .ok()
            .and_then(|mut b| b.take())
            .unwrap_or_else(Body::empty)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Read the body as JSON (`None` when empty or not JSON-typed). Form
    /// bodies are merged into the query, as Cloudpods does.
    pub async fn json(&mut self) -> Result<Option<Value>> {
        let ctype = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("application/octet-stream") || ctype.starts_with("multipart/") {
            return Ok(None);
        }
        // Refuse announced oversized bodies before reading a byte of them.
        let announced = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if announced.is_some_and(|n| n > self.body_limit) {
            return Err(HttpError::too_large(format!(
                "request body exceeds {} bytes",
                self.body_limit
            )));
        }
        let body = self.take_body();
        let bytes = axum::body::to_bytes(body, self.body_limit)
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit")
                {
                    HttpError::too_large(format!("request body exceeds {} bytes", self.body_limit))
                } else {
                    HttpError::bad_request(format!("cannot read request body: {e}"))
                }
            })?;
        if ctype.starts_with("application/x-www-form-urlencoded") {
            let s = String::from_utf8_lossy(&bytes);
            for (k, v) in cloudpods_apis::querystring::parse_query(&s) {
                self.query.insert(k, v);
            }
            return Ok(None);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice::<Value>(&bytes)
            .map(Some)
            .map_err(|e| HttpError::input(format!("invalid JSON body: {e}")))
    }
}

/// A service served by the generic dispatcher.
pub struct Service {
    /// For logs and metrics: `keystone`, `region`, …
    pub name: &'static str,
    /// Policy service name: `identity`, `compute`, `image`, …
    pub policy_service: &'static str,
    /// URL prefix of the generic routes (`/v3`, `/v1`, or empty).
    pub prefix: &'static str,
    pub(crate) models: HashMap<&'static str, Arc<dyn Model>>,
    pub(crate) joints: Vec<Arc<dyn JointModel>>,
    pub(crate) routes: Vec<CustomRoute>,
    pub verifier: Arc<dyn TokenVerifier>,
    pub tenants: Arc<TenantCache>,
    pub body_limit: usize,
    pub version: String,
}

impl Service {
    pub fn new(
        name: &'static str,
        policy_service: &'static str,
        prefix: &'static str,
        verifier: Arc<dyn TokenVerifier>,
        tenants: Arc<TenantCache>,
    ) -> Service {
        Service {
            name,
            policy_service,
            prefix,
            models: HashMap::new(),
            joints: Vec::new(),
            routes: Vec::new(),
            verifier,
            tenants,
            body_limit: DEFAULT_BODY_LIMIT,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub fn model(mut self, m: Arc<dyn Model>) -> Service {
        self.models.insert(m.desc().plural, m);
        self
    }

    pub fn joint(mut self, j: Arc<dyn JointModel>) -> Service {
        self.joints.push(j);
        self
    }

    /// Register a custom route. `pattern` is the full path (with the
    /// prefix), `{name}` marks a parameter. Custom routes are matched before
    /// the generic ones.
    pub fn route<F, Fut>(mut self, method: Method, pattern: &str, auth: bool, f: F) -> Service
    where
        F: Fn(ApiRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Response>> + Send + 'static,
    {
        let segs = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    Seg::Param(s[1..s.len() - 1].to_string())
                } else {
                    Seg::Static(s.to_string())
                }
            })
            .collect();
        let handler: Handler = Arc::new(move |r| Box::pin(f(r)));
        self.routes.push(CustomRoute {
            method,
            segs,
            auth,
            template: pattern.to_string(),
            handler,
        });
        self
    }

    /// [`Service::route`] with a shared state handed to every call (the
    /// service's own `Arc`), so handlers are plain `async fn(state, req)`.
    pub fn route_with<S, F, Fut>(
        self,
        method: Method,
        pattern: &str,
        auth: bool,
        state: &S,
        f: F,
    ) -> Service
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, ApiRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Response>> + Send + 'static,
    {
        let state = state.clone();
        self.route(method, pattern, auth, move |r| f(state.clone(), r))
    }

    pub fn models(&self) -> impl Iterator<Item = &Arc<dyn Model>> {
        self.models.values()
    }

    pub fn get_model(&self, plural: &str) -> Option<&Arc<dyn Model>> {
        self.models.get(plural)
    }

    pub fn joints(&self) -> &[Arc<dyn JointModel>] {
        &self.joints
    }

    pub fn with_body_limit(mut self, limit: usize) -> Service {
        self.body_limit = limit;
        self
    }
}
