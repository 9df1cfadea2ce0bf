//! An authenticated session (token id + token body) and its on-disk cache.
//!
//! The cache lets a CLI reuse one token across invocations instead of asking
//! keystone for a new one every time. The file is
//! `<dir>/token-<hash>.json` where the hash covers the auth URL, the user, the
//! project and both domains, so different identities never share a file. It
//! holds the `POST /v3/auth/tokens` answer (`{"id", "token"}`) and is written
//! with mode 0600 through a rename so readers never see half a file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use cloudpods_apis::identity::{TokenBody, TokenResponse};

use crate::config::Config;
use crate::error::{Result, SdkError};

/// A cached token is reused only while it is valid for at least this long.
pub const CACHE_MIN_VALIDITY: TimeDelta = TimeDelta::minutes(5);

/// A token id and its body (catalog, roles, policies, …).
#[derive(Clone)]
pub struct Session {
    id: String,
    token: TokenBody,
    from_cache: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &"***")
            .field("user", &self.token.user.name)
            .field("project", &self.token.project.as_ref().map(|p| &p.name))
            .field("expires_at", &self.token.expires_at)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

impl Session {
    /// A session for a token obtained elsewhere.
    pub fn new(id: impl Into<String>, token: TokenBody) -> Session {
        Session {
            id: id.into(),
            token,
            from_cache: false,
        }
    }

    /// The token id (`X-Auth-Token` value).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token body.
    pub fn token(&self) -> &TokenBody {
        &self.token
    }

    /// Whether this session was loaded from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Expiry time, when the body carries a parsable one.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        cloudpods_apis::time::parse(&self.token.expires_at)
    }

    /// Whether the token is still valid for at least `margin` after `now`.
    pub fn valid_for(&self, margin: TimeDelta, now: DateTime<Utc>) -> bool {
        self.expires_at().is_some_and(|t| t > now + margin)
    }

    /// The `{"id", "token"}` document (what keystone answered).
    pub fn to_response(&self) -> TokenResponse {
        TokenResponse {
            id: self.id.clone(),
            token: self.token.clone(),
        }
    }
}

/// 64-bit FNV-1a; stable across releases, unlike `DefaultHasher`.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The short hash naming the cache file of a configuration.
pub fn cache_key(config: &Config) -> String {
    let parts = [
        config.auth_url.trim_end_matches('/'),
        config.username.as_deref().unwrap_or(""),
        config.user_domain.as_deref().unwrap_or(""),
        config.project_id.as_deref().unwrap_or(""),
        config.project_name.as_deref().unwrap_or(""),
        config.project_domain.as_str(),
    ];
    format!("{:016x}", fnv1a(parts.join("\u{0}").as_bytes()))
}

/// The token cache file of one identity.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
}

impl TokenCache {
    /// A cache stored at `path`.
    pub fn new(path: impl Into<PathBuf>) -> TokenCache {
        TokenCache { path: path.into() }
    }

    /// The cache of `config` inside `dir`.
    pub fn in_dir(dir: &Path, config: &Config) -> TokenCache {
        TokenCache::new(dir.join(format!("token-{}.json", cache_key(config))))
    }

    /// The cache file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached session, when present, readable and valid for at least
    /// [`CACHE_MIN_VALIDITY`].
    pub fn load(&self) -> Option<Session> {
        self.load_at(Utc::now())
    }

    /// [`TokenCache::load`] with an explicit clock.
    pub fn load_at(&self, now: DateTime<Utc>) -> Option<Session> {
        let data = std::fs::read(&self.path).ok()?;
        let resp: TokenResponse = match serde_json::from_slice(&data) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "ignoring unreadable token cache");
                return None;
            }
        };
        if resp.id.is_empty() {
            return None;
        }
        let session = Session {
            id: resp.id,
            token: resp.token,
            from_cache: true,
        };
        session
            .valid_for(CACHE_MIN_VALIDITY, now)
            .then_some(session)
    }

    /// Write `session` (mode 0600, atomically).
    pub fn store(&self, session: &Session) -> Result<()> {
        let err = |source| SdkError::Cache {
            path: self.path.clone(),
            source,
        };
        let data = serde_json::to_vec(&session.to_response())
            .map_err(|e| err(std::io::Error::other(e)))?;
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(err)?;
        }
        let tmp = self
            .path
            .with_extension(format!("json.tmp{}", std::process::id()));
        write_private(&tmp, &data).map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }

    /// Remove the cache file (missing is fine).
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SdkError::Cache {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudpods_apis::identity::{IdName, UserRef};

    fn body(expires: DateTime<Utc>) -> TokenBody {
        TokenBody {
            expires_at: cloudpods_apis::time::format(expires),
            user: UserRef {
                id: "u1".into(),
                name: "sysadmin".into(),
                domain: IdName {
                    id: "default".into(),
                    name: "Default".into(),
                },
                password_expires_at: None,
            },
            ..Default::default()
        }
    }

    fn config() -> Config {
        Config::new("http://h:30500/v3")
            .with_password("sysadmin", "pw")
            .with_project("system")
    }

    #[test]
    fn key_depends_on_identity() {
        let a = cache_key(&config());
        assert_eq!(a.len(), 16);
        assert_eq!(a, cache_key(&config()));
        assert_ne!(a, cache_key(&config().with_project("other")));
        assert_ne!(a, cache_key(&config().with_project_domain("d2")));
        assert_ne!(a, cache_key(&config().with_user_domain("Default")));
        assert_ne!(
            a,
            cache_key(
                &Config::new("http://other/v3")
                    .with_password("sysadmin", "pw")
                    .with_project("system")
            )
        );
        // the password is not part of the key
        assert_eq!(a, cache_key(&config().with_password("sysadmin", "other")));
    }

    #[test]
    fn round_trip_and_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = TokenCache::in_dir(&dir.path().join("sub"), &config());
        let now = Utc::now();
        assert!(cache.load_at(now).is_none());

        let s = Session::new("tok-1", body(now + TimeDelta::hours(1)));
        cache.store(&s).expect("store");
        let loaded = cache.load_at(now).expect("cached");
        assert_eq!(loaded.id(), "tok-1");
        assert!(loaded.from_cache());
        assert_eq!(loaded.token().user.name, "sysadmin");

        // expiring within 5 minutes: not reused
        assert!(cache.load_at(now + TimeDelta::minutes(56)).is_none());
        assert!(cache.load_at(now + TimeDelta::minutes(54)).is_some());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(cache.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        cache.clear().expect("clear");
        assert!(cache.load_at(now).is_none());
        cache.clear().expect("clear twice");
    }

    #[test]
    fn corrupt_or_expired_files_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = TokenCache::in_dir(dir.path(), &config());
        std::fs::write(cache.path(), b"not json").expect("write");
        assert!(cache.load().is_none());
        let s = Session::new("tok", body(Utc::now() - TimeDelta::hours(1)));
        cache.store(&s).expect("store");
        assert!(cache.load().is_none());
        let mut b = body(Utc::now() + TimeDelta::hours(1));
        b.expires_at = "garbage".into();
        cache.store(&Session::new("tok", b)).expect("store");
        assert!(cache.load().is_none());
    }

    #[test]
    fn debug_masks_token() {
        let s = Session::new("secret-token", body(Utc::now()));
        assert!(!format!("{s:?}").contains("secret-token"));
    }
}
