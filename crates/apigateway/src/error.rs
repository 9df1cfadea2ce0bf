//! The gateway's errors, mapped once onto the Cloudpods error classes.

use axum::response::{IntoResponse, Response};
use cloudpods_apis::ErrorClass;
use cloudpods_rest::HttpError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No session cookie or bearer token: the browser logs in again.
    #[error("No token in header: log in first")]
    NoSession,
    /// A cookie that does not open with this deployment's key (forged, or
    /// sealed under another key) or that has expired.
    #[error("the session is not valid or has expired: log in again")]
    BadSession,
    /// Keystone refused the user name or password (the same answer for an
    /// unknown user).
    #[error("wrong user name or password")]
    WrongCredentials,
    /// A state-changing call from another origin.
    #[error("cross-site request refused: {0}")]
    CrossSite(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    NotFound(String),
    /// A service answered an error: passed on as it is.
    #[error("{details}")]
    Upstream { class: ErrorClass, details: String },
    /// A service could not be reached.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<GatewayError> for HttpError {
    fn from(e: GatewayError) -> HttpError {
        let details = e.to_string();
        let class = match e {
            GatewayError::NoSession | GatewayError::BadSession | GatewayError::WrongCredentials => {
                ErrorClass::InvalidCredentialError
            }
            GatewayError::CrossSite(_) => ErrorClass::ForbiddenError,
            GatewayError::Input(_) => ErrorClass::InputParameterError,
            GatewayError::NotFound(_) => ErrorClass::ResourceNotFoundError,
            GatewayError::Upstream { class, .. } => class,
            GatewayError::Unreachable(_) => ErrorClass::BadGateway,
            GatewayError::Internal(_) => ErrorClass::InternalServerError,
        };
        HttpError::new(class, details)
    }
}

impl From<reqwest::Error> for GatewayError {
    fn from(e: reqwest::Error) -> GatewayError {
        GatewayError::Unreachable(format!("service unreachable: {e}"))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        HttpError::from(self).into_response()
    }
}

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;
