//! Client configuration, from the standard `OS_*` environment variables or
//! built by hand.
//!
//! | variable            | field                                     |
//! |---------------------|-------------------------------------------|
//! | `OS_AUTH_URL`       | [`Config::auth_url`] (e.g. `http://127.0.0.1:30500/v3`) |
//! | `OS_USERNAME`       | [`Config::username`]                      |
//! | `OS_PASSWORD`       | [`Config::password`]                      |
//! | `OS_PROJECT_NAME`   | [`Config::project_name`]                  |
//! | `OS_PROJECT_ID`     | [`Config::project_id`]                    |
//! | `OS_PROJECT_DOMAIN` | [`Config::project_domain`] (default `Default`) |
//! | `OS_DOMAIN_NAME`    | [`Config::user_domain`] (sent only when set) |
//! | `OS_REGION_NAME`    | [`Config::region`]                        |
//! | `OS_ENDPOINT_TYPE`  | [`Config::endpoint_type`] (`publicURL`/`public`, `internalURL`/`internal`, `adminURL`/`admin`; default `internal`) |
//! | `OS_AUTH_TOKEN`     | [`Config::auth_token`] (use an existing token instead of a password) |
//! | `YUNION_INSECURE`   | [`Config::insecure`] (skip TLS verification) |

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, SdkError};

/// The interface used when none is configured (Cloudpods' Go client default).
pub const DEFAULT_ENDPOINT_TYPE: &str = "internal";

/// The project domain used when none is configured.
pub const DEFAULT_PROJECT_DOMAIN: &str = "Default";

/// How to reach and authenticate against a Cloudpods deployment.
///
/// ```
/// use cloudpods_sdk::Config;
/// let cfg = Config::new("http://127.0.0.1:30500/v3")
///     .with_password("sysadmin", "secret")
///     .with_project("system")
///     .with_endpoint_type("publicURL");
/// assert_eq!(cfg.endpoint_type, "public");
/// assert_eq!(cfg.project_domain, "Default");
/// ```
#[derive(Clone)]
pub struct Config {
    /// Keystone URL including `/v3`; `{auth_url}/auth/tokens` is the token route.
    pub auth_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Project to scope the token to, by name (with [`Config::project_domain`]).
    pub project_name: Option<String>,
    /// Project to scope the token to, by id (wins over the name).
    pub project_id: Option<String>,
    /// Domain of the project, by name.
    pub project_domain: String,
    /// Domain of the user, by name. Sent only when set; keystone resolves a
    /// user name that is unique across domains.
    pub user_domain: Option<String>,
    /// Region used to pick catalog endpoints (`region_id`).
    pub region: Option<String>,
    /// Endpoint interface, normalised: `public`, `internal`, `admin`, …
    pub endpoint_type: String,
    /// An existing token to use instead of password authentication.
    pub auth_token: Option<String>,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Print every request as an equivalent `curl` command on stderr.
    pub debug: bool,
    /// Directory of the on-disk token cache; `None` disables the cache.
    pub token_cache_dir: Option<PathBuf>,
    /// Timeout of JSON requests (streams are not limited).
    pub timeout: Option<Duration>,
    /// `auth.context.source` of token requests (`cli`, `api`, …).
    pub auth_source: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("Config")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .field("project_name", &self.project_name)
            .field("project_id", &self.project_id)
            .field("project_domain", &self.project_domain)
            .field("user_domain", &self.user_domain)
            .field("region", &self.region)
            .field("endpoint_type", &self.endpoint_type)
            .field("auth_token", &mask(&self.auth_token))
            .field("insecure", &self.insecure)
            .field("debug", &self.debug)
            .field("token_cache_dir", &self.token_cache_dir)
            .field("timeout", &self.timeout)
            .field("auth_source", &self.auth_source)
            .finish()
    }
}

/// Normalise an endpoint type: `publicURL` → `public`, `InternalURL` →
/// `internal`, `adminURL` → `admin`; other values (`apigateway`, `console`)
/// are lower-cased; empty means [`DEFAULT_ENDPOINT_TYPE`].
pub fn normalize_endpoint_type(s: &str) -> String {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix("url").unwrap_or(&s);
    if s.is_empty() {
        DEFAULT_ENDPOINT_TYPE.to_owned()
    } else {
        s.to_owned()
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl Config {
    /// A configuration with only the auth URL set.
    pub fn new(auth_url: impl Into<String>) -> Config {
        Config {
            auth_url: auth_url.into(),
            username: None,
            password: None,
            project_name: None,
            project_id: None,
            project_domain: DEFAULT_PROJECT_DOMAIN.to_owned(),
            user_domain: None,
            region: None,
            endpoint_type: DEFAULT_ENDPOINT_TYPE.to_owned(),
            auth_token: None,
            insecure: false,
            debug: false,
            token_cache_dir: None,
            timeout: Some(Duration::from_secs(600)),
            auth_source: None,
        }
    }

    /// Read the `OS_*` variables of the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read the `OS_*` variables through `lookup` (for tests and embedding).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let get = |k: &str| non_empty(lookup(k));
        let auth_url = get("OS_AUTH_URL")
            .ok_or_else(|| SdkError::Config("OS_AUTH_URL is not set".to_owned()))?;
        let mut cfg = Config::new(auth_url);
        cfg.username = get("OS_USERNAME");
        cfg.password = lookup("OS_PASSWORD").filter(|p| !p.is_empty());
        cfg.project_name = get("OS_PROJECT_NAME");
        cfg.project_id = get("OS_PROJECT_ID");
        if let Some(d) = get("OS_PROJECT_DOMAIN") {
            cfg.project_domain = d;
        }
        cfg.user_domain = get("OS_DOMAIN_NAME");
        cfg.region = get("OS_REGION_NAME");
        if let Some(t) = get("OS_ENDPOINT_TYPE") {
            cfg.endpoint_type = normalize_endpoint_type(&t);
        }
        cfg.auth_token = get("OS_AUTH_TOKEN");
        cfg.insecure = get("YUNION_INSECURE")
            .map(|v| cloudpods_apis::lenient::parse_bool(&v) != Some(false))
            .unwrap_or(false);
        Ok(cfg)
    }

    /// Authenticate with a user name and password.
    pub fn with_password(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Scope the token to a project by name.
    pub fn with_project(mut self, name: impl Into<String>) -> Self {
        self.project_name = Some(name.into());
        self
    }

    /// Scope the token to a project by id.
    pub fn with_project_id(mut self, id: impl Into<String>) -> Self {
        self.project_id = Some(id.into());
        self
    }

    /// Domain (name) of the project.
    pub fn with_project_domain(mut self, domain: impl Into<String>) -> Self {
        self.project_domain = domain.into();
        self
    }

    /// Domain (name) of the user.
    pub fn with_user_domain(mut self, domain: impl Into<String>) -> Self {
        self.user_domain = Some(domain.into());
        self
    }

    /// Region used for endpoint selection.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Endpoint interface (`public`, `publicURL`, `internal`, …).
    pub fn with_endpoint_type(mut self, endpoint_type: &str) -> Self {
        self.endpoint_type = normalize_endpoint_type(endpoint_type);
        self
    }

    /// Use an existing token instead of authenticating.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// Skip TLS verification.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Print requests as curl commands on stderr.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// Cache tokens in `dir` (see [`crate::TokenCache`]).
    pub fn with_token_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.token_cache_dir = Some(dir.into());
        self
    }

    /// Cache tokens in `$HOME/.cache/climc` (no cache when `HOME` is unset).
    pub fn with_default_token_cache(mut self) -> Self {
        self.token_cache_dir = default_cache_dir();
        self
    }

    /// Timeout of JSON requests; `None` waits forever.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// `auth.context.source` sent with token requests.
    pub fn with_auth_source(mut self, source: impl Into<String>) -> Self {
        self.auth_source = Some(source.into());
        self
    }

    /// Whether password authentication is possible (needed to renew tokens).
    pub fn has_password(&self) -> bool {
        self.username.is_some() && self.password.is_some()
    }

    /// Check that the configuration can produce a token.
    pub fn validate(&self) -> Result<()> {
        if self.auth_url.trim().is_empty() {
            return Err(SdkError::Config("auth URL is empty".to_owned()));
        }
        if self.auth_token.is_none() && !self.has_password() {
            return Err(SdkError::Config(
                "either a token (OS_AUTH_TOKEN) or a user name and password (OS_USERNAME, OS_PASSWORD) is required"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// `$HOME/.cache/climc`, when `HOME` is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".cache").join("climc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn from_env_defaults() {
        let cfg = Config::from_lookup(env(&[
            ("OS_AUTH_URL", "http://127.0.0.1:30500/v3"),
            ("OS_USERNAME", "sysadmin"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "system"),
        ]))
        .expect("config");
        assert_eq!(cfg.project_domain, "Default");
        assert_eq!(cfg.endpoint_type, "internal");
        assert_eq!(cfg.user_domain, None);
        assert!(!cfg.insecure);
        assert!(cfg.validate().is_ok());
        assert!(!format!("{cfg:?}").contains("pw\""));
    }

    #[test]
    fn from_env_all() {
        let cfg = Config::from_lookup(env(&[
            ("OS_AUTH_URL", "https://h:30500/v3"),
            ("OS_USERNAME", "u"),
            ("OS_PASSWORD", "p"),
            ("OS_PROJECT_NAME", "p1"),
            ("OS_PROJECT_DOMAIN", "d1"),
            ("OS_DOMAIN_NAME", "ud"),
            ("OS_REGION_NAME", "region0"),
            ("OS_ENDPOINT_TYPE", "publicURL"),
            ("YUNION_INSECURE", "true"),
        ]))
        .expect("config");
        assert_eq!(cfg.project_domain, "d1");
        assert_eq!(cfg.user_domain.as_deref(), Some("ud"));
        assert_eq!(cfg.region.as_deref(), Some("region0"));
        assert_eq!(cfg.endpoint_type, "public");
        assert!(cfg.insecure);
    }

    #[test]
    fn missing_auth_url_and_credentials() {
        assert!(matches!(
            Config::from_lookup(env(&[])),
            Err(SdkError::Config(_))
        ));
        let cfg = Config::from_lookup(env(&[("OS_AUTH_URL", "http://h/v3")])).expect("config");
        assert!(cfg.validate().is_err());
        let cfg = cfg.with_token("t");
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn endpoint_type_normalisation() {
        assert_eq!(normalize_endpoint_type("publicURL"), "public");
        assert_eq!(normalize_endpoint_type("internalURL"), "internal");
        assert_eq!(normalize_endpoint_type("AdminURL"), "admin");
        assert_eq!(normalize_endpoint_type("admin"), "admin");
        assert_eq!(normalize_endpoint_type("apigateway"), "apigateway");
        assert_eq!(normalize_endpoint_type(""), "internal");
        let cfg = Config::from_lookup(env(&[
            ("OS_AUTH_URL", "http://h/v3"),
            ("YUNION_INSECURE", "false"),
        ]))
        .expect("config");
        assert!(!cfg.insecure);
    }
}
