//! The SDK's error type.
//!
//! Every non-2xx answer of a Cloudpods service carries
//! `{"code", "class", "details", "time"}` ([`cloudpods_apis::ErrorBody`]);
//! [`SdkError::Http`] keeps the class name as the server sent it, because
//! callers (and `climc`) choose what to do by class.

use std::path::PathBuf;

use cloudpods_apis::{ErrorBody, ErrorClass};

/// Result alias used throughout the SDK.
pub type Result<T, E = SdkError> = std::result::Result<T, E>;

/// What can go wrong talking to Cloudpods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The service answered with a non-2xx status.
    #[error("{class}({status}): {details}")]
    Http {
        /// HTTP status (equal to the body's `code` on Cloudpods).
        status: u16,
        /// Error class, e.g. `ResourceNotFoundError`.
        class: String,
        /// Human readable details.
        details: String,
        /// `X-Request-Id` of the answer, when the server sent one.
        request_id: Option<String>,
    },
    /// The request could not be sent or its answer could not be read.
    #[error("{method} {url} failed")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the Cloudpods wire format promises.
    #[error("cannot decode the answer of {url}: {reason}")]
    Decode { url: String, reason: String },
    /// The configuration is incomplete or contradictory.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The token catalog has no endpoint for the service.
    #[error("no {interface} endpoint for service type {service_type:?} in the token catalog")]
    NoEndpoint {
        service_type: String,
        interface: String,
    },
    /// Reading or writing the on-disk token cache failed.
    #[error("token cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SdkError {
    /// Build an [`SdkError::Http`] from a status and a raw error body.
    ///
    /// The Cloudpods body is preferred; an OpenStack-style
    /// `{"error": {"code", "title", "message"}}` body is understood too; for
    /// anything else the class comes from [`ErrorClass::from_code`] and the
    /// details are the body text (or the status' reason phrase when empty).
    pub fn from_response(status: u16, body: &[u8], request_id: Option<String>) -> SdkError {
        let fallback_class = || ErrorClass::from_code(status).as_str().to_owned();
        if let Ok(eb) = serde_json::from_slice::<ErrorBody>(body) {
            let class = if eb.class.is_empty() {
                fallback_class()
            } else {
                eb.class
            };
            return SdkError::Http {
                status,
                class,
                details: eb.details,
                request_id,
            };
        }
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(serde_json::Value::Object(e)) = m.get("error")
        {
            let text = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let class = text("class")
                .or_else(|| text("title"))
                .unwrap_or_else(fallback_class);
            let details = text("details")
                .or_else(|| text("message"))
                .unwrap_or_default();
            return SdkError::Http {
                status,
                class,
                details,
                request_id,
            };
        }
        let text = String::from_utf8_lossy(body).trim().to_owned();
        let details = if text.is_empty() {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned()
        } else {
            text
        };
        SdkError::Http {
            status,
            class: fallback_class(),
            details,
            request_id,
        }
    }

    /// The HTTP status of an [`SdkError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            SdkError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error class name of an [`SdkError::Http`].
    pub fn class(&self) -> Option<&str> {
        match self {
            SdkError::Http { class, .. } => Some(class),
            _ => None,
        }
    }

    /// The error class, when it is one Cloudpods defines.
    pub fn error_class(&self) -> Option<ErrorClass> {
        self.class().and_then(ErrorClass::from_name)
    }

    /// 404, whatever the class (`ResourceNotFoundError`, `NotFoundError`, …).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 401: missing, invalid or expired token, or wrong credentials.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// 403: authenticated but not allowed.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }

    /// 409: duplicate name, busy resource, …
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// The request never got an HTTP answer.
    pub fn is_transport(&self) -> bool {
        matches!(self, SdkError::Transport { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cloudpods_body() {
        let e = SdkError::from_response(
            404,
            br#"{"code":404,"class":"ResourceNotFoundError","details":"server x not found","time":"2024-01-01T00:00:00Z"}"#,
            Some("rid".into()),
        );
        assert!(e.is_not_found());
        assert_eq!(e.class(), Some("ResourceNotFoundError"));
        assert_eq!(e.error_class(), Some(ErrorClass::ResourceNotFoundError));
        assert_eq!(
            e.to_string(),
            "ResourceNotFoundError(404): server x not found"
        );
    }

    #[test]
    fn unknown_class_is_kept() {
        let e = SdkError::from_response(
            400,
            br#"{"code":400,"class":"SomeNewError","details":"d"}"#,
            None,
        );
        assert_eq!(e.class(), Some("SomeNewError"));
        assert_eq!(e.error_class(), None);
    }

    #[test]
    fn falls_back_to_status_class() {
        let e = SdkError::from_response(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.class(), Some("BadGateway"));
        assert_eq!(e.to_string(), "BadGateway(502): <html>bad gateway</html>");
        let e = SdkError::from_response(401, b"", None);
        assert!(e.is_unauthorized());
        assert_eq!(e.to_string(), "UnauthorizedError(401): Unauthorized");
        let e = SdkError::from_response(409, b"{}", None);
        assert!(e.is_conflict());
        assert_eq!(e.class(), Some("ConflictError"));
    }

    #[test]
    fn openstack_style_body() {
        let e = SdkError::from_response(
            403,
            br#"{"error":{"code":403,"title":"Forbidden","message":"nope"}}"#,
            None,
        );
        assert!(e.is_forbidden());
        assert_eq!(e.to_string(), "Forbidden(403): nope");
    }
}
