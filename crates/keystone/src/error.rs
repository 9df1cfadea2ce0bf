//! Keystone's errors, mapped once onto the Cloudpods error classes.

use cloudpods_apis::ErrorClass;
use cloudpods_rest::HttpError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KeystoneError {
    /// Unknown user, wrong password: one answer for both, so that a caller
    /// cannot probe which user names exist.
    #[error("invalid username or password")]
    BadCredentials,
    /// Too many failed attempts.
    #[error("user {user} is locked until {until} after too many failed logins")]
    Locked { user: String, until: String },
    #[error("user {0} is disabled")]
    UserDisabled(String),
    #[error("{kind} {name} is disabled")]
    ScopeDisabled { kind: &'static str, name: String },
    #[error("{kind} {name} not found")]
    ScopeNotFound { kind: &'static str, name: String },
    #[error("user has no role in {kind} {name}")]
    NoRole { kind: &'static str, name: String },
    #[error("more than one user is named {0}; give the user's domain")]
    AmbiguousUser(String),
    #[error("the token is invalid or has expired")]
    InvalidToken,
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid policy: {0}")]
    BadPolicy(String),
    #[error("key repository: {0}")]
    Keys(String),
    #[error("password hashing failed")]
    Hash,
    #[error(transparent)]
    Db(#[from] cloudpods_db::DbError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl From<KeystoneError> for HttpError {
    fn from(e: KeystoneError) -> HttpError {
        let class = match &e {
            KeystoneError::BadCredentials
            | KeystoneError::ScopeDisabled { .. }
            | KeystoneError::NoRole { .. }
            | KeystoneError::ScopeNotFound { .. } => ErrorClass::UnauthorizedError,
            KeystoneError::Locked { .. } => ErrorClass::UserLocked,
            KeystoneError::UserDisabled(_) => ErrorClass::UserDisabled,
            KeystoneError::AmbiguousUser(_) => ErrorClass::ConflictError,
            KeystoneError::InvalidToken => ErrorClass::InvalidToken,
            KeystoneError::BadRequest(_) => ErrorClass::InputParameterError,
            KeystoneError::BadPolicy(_) => ErrorClass::PolicyDefinitionError,
            KeystoneError::Keys(_) | KeystoneError::Hash => ErrorClass::InternalServerError,
            KeystoneError::Db(_) | KeystoneError::Http(_) => ErrorClass::InternalServerError,
        };
        match e {
            KeystoneError::Db(db) => db.into(),
            KeystoneError::Http(h) => h,
            other => HttpError::new(class, other.to_string()),
        }
    }
}

pub type Result<T, E = KeystoneError> = std::result::Result<T, E>;
