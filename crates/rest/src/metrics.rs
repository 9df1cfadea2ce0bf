//! Prometheus metrics: request counts and latency per service and route.
//!
//! One recorder per process (all-in-one serves every service from it); the
//! `service` label tells them apart.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Install the recorder (idempotent).
pub fn init() {
    let _ = handle();
}

/// The `method` label: the standard methods by name, anything else
/// (clients may send any token as a method) as `OTHER`, so that labels stay
/// bounded.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Record one finished request.
pub fn record(service: &'static str, method: &str, route: &str, status: u16, elapsed: Duration) {
    if handle().is_none() {
        return;
    }
    let labels = [
        ("service", service.to_string()),
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("code", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    let labels = [
        ("service", service.to_string()),
        ("route", route.to_string()),
    ];
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

/// The Prometheus text exposition.
pub fn render() -> String {
    handle().map(|h| h.render()).unwrap_or_default()
}
