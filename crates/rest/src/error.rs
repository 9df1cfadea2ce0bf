//! The one error type every handler returns, and its wire form.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudpods_apis::{ErrorBody, ErrorClass};
use cloudpods_db::DbError;

/// An error answered to the client in the Cloudpods shape.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub class: ErrorClass,
    pub details: String,
}

pub type Result<T, E = HttpError> = std::result::Result<T, E>;

macro_rules! ctors {
    ($( $fn:ident => $class:ident ),* $(,)?) => {
        impl HttpError {
            $(
                pub fn $fn(details: impl Into<String>) -> HttpError {
                    HttpError { class: ErrorClass::$class, details: details.into() }
                }
            )*
        }
    };
}

ctors! {
    input => InputParameterError,
    missing => MissingParameterError,
    bad_request => BadRequestError,
    invalid_status => InvalidStatusError,
    insufficient => InsufficientResourceError,
    out_of_quota => OutOfQuotaError,
    unauthorized => UnauthorizedError,
    invalid_credential => InvalidCredentialError,
    forbidden => ForbiddenError,
    not_found => ResourceNotFoundError,
    action_not_found => ActionNotFoundError,
    spec_not_found => SpecNotFoundError,
    not_acceptable => NotAcceptableError,
    not_supported => NotSupportedError,
    not_empty => NotEmptyError,
    duplicate_name => DuplicateNameError,
    conflict => ConflictError,
    busy => ResourceBusyError,
    too_large => TooLargeEntity,
    too_many => TooManyRequests,
    internal => InternalServerError,
    not_implemented => NotImplementedError,
    bad_gateway => BadGateway,
    timeout => TimeoutError,
    protected => ProtectedResourceError,
}

impl HttpError {
    pub fn new(class: ErrorClass, details: impl Into<String>) -> HttpError {
        HttpError {
            class,
            details: details.into(),
        }
    }

    /// "No request key: server" — the envelope key is missing.
    pub fn no_request_key(keyword: &str) -> HttpError {
        HttpError::input(format!("No request key: {keyword}"))
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.class.code(),
            class: self.class.as_str().to_string(),
            details: self.details.clone(),
            time: cloudpods_apis::time::rfc3339_now(),
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.details)
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.class.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl From<DbError> for HttpError {
    fn from(e: DbError) -> Self {
        match &e {
            DbError::NotFound(what) => HttpError::not_found(format!("{what} not found")),
            DbError::Duplicate(_) => HttpError::conflict("duplicate entry"),
            DbError::Conflict(what) => {
                HttpError::conflict(format!("{what} was modified concurrently, retry"))
            }
            _ => {
                // Driver errors may carry SQL text; log it, answer generically.
                tracing::error!(error = ?e, "storage error");
                HttpError::internal("storage error")
            }
        }
    }
}

impl From<cloudpods_apis::filter::FilterError> for HttpError {
    fn from(e: cloudpods_apis::filter::FilterError) -> Self {
        HttpError::input(e.to_string())
    }
}
