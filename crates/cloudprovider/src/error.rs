/// Errors of cloud calls, distinguished by what a caller does about them.
///
/// Messages carry the cloud's code and message, never credentials: request
/// URLs hold no secret (SigV4 puts the signature in a header) and the
/// secret is never formatted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    /// The resource does not exist (any more).
    #[error("{0} not found")]
    NotFound(String),
    /// The driver or the cloud cannot do this.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The cloud refused the credentials or the signature.
    #[error("the cloud refused the credentials: {0}")]
    Unauthorized(String),
    /// Still throttled after the driver's retries.
    #[error("throttled by the cloud: {0}")]
    Throttled(String),
    /// The cloud rejected the request as invalid (bad parameter, wrong
    /// state…), with its code and message.
    #[error("{code}: {message}")]
    Invalid { code: String, message: String },
    /// The cloud answered with a server error.
    #[error("cloud error (HTTP {status}) {code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// The call did not complete (connection refused, timeout…).
    #[error("calling the cloud failed: {0}")]
    Transport(String),
    /// The answer could not be read.
    #[error("unexpected answer from the cloud: {0}")]
    Parse(String),
}

impl CloudError {
    /// Worth another attempt after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudError::Throttled(_) | CloudError::Server { .. } | CloudError::Transport(_)
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound(_))
    }
}

pub type Result<T, E = CloudError> = std::result::Result<T, E>;
