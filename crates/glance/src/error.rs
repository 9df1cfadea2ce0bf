//! The glance error type, mapped once onto the Cloudpods error classes.

use cloudpods_rest::HttpError;

/// What can go wrong while receiving, checking, converting and storing
/// image bytes.
#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    /// The client's input is wrong (declared size, checksum, format, URL).
    #[error("{0}")]
    Input(String),
    /// The bytes are not an image we accept (`save_fail`).
    #[error("{0}")]
    NotAnImage(String),
    /// The request body ended early or could not be read.
    #[error("upload interrupted after {received} bytes: {reason}")]
    Truncated { received: u64, reason: String },
    /// The image is larger than the service accepts.
    #[error("image exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A `copy_from` URL that may not be fetched.
    #[error("copy_from refused: {0}")]
    Forbidden(String),
    /// The source of a `copy_from` failed.
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    /// `qemu-img` could not run or failed.
    #[error("qemu-img {op} failed: {reason}")]
    Qemu { op: &'static str, reason: String },
    /// The storage backend failed.
    #[error("image storage: {0}")]
    Storage(String),
    #[error("local file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Db(#[from] cloudpods_db::DbError),
}

pub type Result<T, E = GlanceError> = std::result::Result<T, E>;

impl GlanceError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> GlanceError {
        GlanceError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<cloudpods_sigv4::s3::Error> for GlanceError {
    fn from(e: cloudpods_sigv4::s3::Error) -> GlanceError {
        match e {
            cloudpods_sigv4::s3::Error::Io { path, source, .. } => GlanceError::io(&path, source),
            e => GlanceError::Storage(e.to_string()),
        }
    }
}

impl From<GlanceError> for HttpError {
    fn from(e: GlanceError) -> HttpError {
        match e {
            GlanceError::Input(m) => HttpError::input(m),
            GlanceError::NotAnImage(m) => HttpError::input(m),
            e @ GlanceError::Truncated { .. } => HttpError::bad_request(e.to_string()),
            e @ GlanceError::TooLarge { .. } => HttpError::too_large(e.to_string()),
            GlanceError::Forbidden(m) => HttpError::forbidden(format!("copy_from refused: {m}")),
            e @ GlanceError::Fetch { .. } => HttpError::bad_gateway(e.to_string()),
            GlanceError::Http(h) => h,
            GlanceError::Db(d) => d.into(),
            e => {
                tracing::error!(error = %e, "image service failure");
                HttpError::internal(e.to_string())
            }
        }
    }
}
