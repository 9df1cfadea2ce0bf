//! The Cloudpods error body and the table of error classes.
//!
//! Every non-2xx answer of every service is
//! `{"code": <http status>, "class": "<Class>", "details": "<message>", "time": "<RFC3339>"}`
//! (Cloudpods `pkg/httperrors`). Clients choose their exception by `class`,
//! so the class names are part of the wire contract.

use serde::{Deserialize, Serialize};

/// The error body as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    pub class: String,
    pub details: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
}

macro_rules! error_classes {
    ($( $variant:ident = $code:literal ),* $(,)?) => {
        /// Cloudpods error classes with their HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorClass {
            $( $variant, )*
        }

        impl ErrorClass {
            /// The HTTP status (and the `code` field) of this class.
            pub fn code(self) -> u16 {
                match self {
                    $( ErrorClass::$variant => $code, )*
                }
            }

            /// The `class` string as Cloudpods spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorClass::$variant => stringify!($variant), )*
                }
            }

            /// Parse a class name received from a peer.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( stringify!($variant) => Some(ErrorClass::$variant), )*
                    _ => None,
                }
            }

            /// The generic class for an HTTP status, for answers without a body.
            pub fn from_code(code: u16) -> Self {
                match code {
                    400 => ErrorClass::BadRequestError,
                    401 => ErrorClass::UnauthorizedError,
                    403 => ErrorClass::ForbiddenError,
                    404 => ErrorClass::NotFoundError,
                    405 => ErrorClass::MethodNotAllowed,
                    406 => ErrorClass::NotAcceptableError,
                    409 => ErrorClass::ConflictError,
                    413 => ErrorClass::TooLargeEntity,
                    423 => ErrorClass::UserLocked,
                    429 => ErrorClass::TooManyRequests,
                    501 => ErrorClass::NotImplementedError,
                    502 => ErrorClass::BadGateway,
                    503 => ErrorClass::ServiceUnavailable,
                    504 => ErrorClass::TimeoutError,
                    507 => ErrorClass::OutOfResource,
                    _ => ErrorClass::InternalServerError,
                }
            }
        }
    };
}

error_classes! {
    InputParameterError = 400,
    MissingParameterError = 400,
    BadRequestError = 400,
    InvalidStatusError = 400,
    ServerStatusError = 400,
    InsufficientResourceError = 400,
    OutOfQuotaError = 400,
    UnauthorizedError = 401,
    InvalidCredentialError = 401,
    WrongPassword = 401,
    IncorrectUsernameOrPassword = 401,
    InvalidToken = 401,
    PaymentError = 402,
    ForbiddenError = 403,
    NotSufficientPrivilegeError = 403,
    NoProjectError = 403,
    ProtectedResourceError = 403,
    ResourceNotFoundError = 404,
    NotFoundError = 404,
    SpecNotFoundError = 404,
    ActionNotFoundError = 404,
    TenantNotFoundError = 404,
    UserNotFound = 404,
    MethodNotAllowed = 405,
    NotAcceptableError = 406,
    UnsupportOperationError = 406,
    NotSupportedError = 406,
    NotEmptyError = 406,
    DuplicateNameError = 409,
    ConflictError = 409,
    DuplicateIdError = 409,
    ResourceBusyError = 409,
    PolicyDefinitionError = 409,
    TooLargeEntity = 413,
    UnsupportedMediaType = 415,
    UserLocked = 423,
    UserDisabled = 423,
    TooManyFailedAttempts = 429,
    TooManyRequests = 429,
    ServiceAbnormal = 499,
    InternalServerError = 500,
    UnclassifiedError = 500,
    NotImplementedError = 501,
    BadGateway = 502,
    ServiceUnavailable = 503,
    TimeoutError = 504,
    OutOfResource = 507,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_and_codes() {
        assert_eq!(ErrorClass::InvalidStatusError.code(), 400);
        assert_eq!(
            ErrorClass::ResourceNotFoundError.as_str(),
            "ResourceNotFoundError"
        );
        assert_eq!(
            ErrorClass::from_name("UserLocked"),
            Some(ErrorClass::UserLocked)
        );
        assert_eq!(ErrorClass::from_code(404), ErrorClass::NotFoundError);
        assert_eq!(ErrorClass::from_name("Nope"), None);
    }
}
