//! Turning a [`Service`] into an HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use serde_json::json;
use tokio::net::TcpListener;

use crate::dispatch::{self, ok_json};
use crate::service::Service;

/// Add the routes every service answers: `/version`, `/ping`, `/metrics`,
/// `/openapi.json`.
pub fn with_default_routes(svc: Service) -> Service {
    let version = svc.version.clone();
    let name = svc.name;
    let v2 = version.clone();
    svc.route(Method::GET, "/version", false, move |_| {
        let v = version.clone();
        async move { Ok(v.into_response()) }
    })
    .route(Method::GET, "/ping", false, |_| async {
        Ok(ok_json(json!({})))
    })
    .route(Method::POST, "/ping", false, |_| async {
        Ok(ok_json(json!({})))
    })
    .route(Method::GET, "/metrics", false, |_| async {
        let mut r = crate::metrics::render().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        Ok(r)
    })
    .route(Method::GET, "/version.json", false, move |_| {
        let v = v2.clone();
        async move { Ok(ok_json(json!({"service": name, "version": v}))) }
    })
}

/// The axum router serving `svc`. The OpenAPI document is generated once
/// from the finished service.
pub fn router(svc: Service) -> Router {
    crate::metrics::init();
    let svc = with_default_routes(svc);
    let doc = Arc::new(crate::openapi::document(&svc));
    let svc = svc.route(Method::GET, "/openapi.json", false, move |_| {
        let d = doc.clone();
        async move { Ok(ok_json((*d).clone())) }
    });
    let svc = Arc::new(svc);
    Router::new().fallback(move |req: Request| {
        let svc = svc.clone();
        async move { dispatch::handle(svc, req).await }
    })
}

/// Bind `addr` (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve until `shutdown` resolves.
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
