//! The authenticated client: token handling, endpoint discovery and the
//! request primitives every other call is built on.

use std::sync::{Arc, RwLock};

use chrono::{TimeDelta, Utc};
use cloudpods_apis::identity::{
    AuthBody, AuthContext, AuthIdentity, AuthRequest, AuthScope, CatalogService, NameOrId,
    PasswordAuth, ProjectScope, TokenAuth, TokenBody, TokenResponse, UserAuth,
};
use cloudpods_apis::querystring::to_query;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::debug::{DebugBody, curl_line};
use crate::endpoint;
use crate::error::{Result, SdkError};
use crate::resource::ResourceManager;
use crate::session::{Session, TokenCache};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("cloudpods-rs-sdk/", env!("CARGO_PKG_VERSION"));

/// Header carrying the token of the caller.
pub const X_AUTH_TOKEN: &str = "x-auth-token";
/// Header carrying the token being issued, validated or revoked.
pub const X_SUBJECT_TOKEN: &str = "x-subject-token";
/// Request correlation header (echoed by Cloudpods services).
pub const X_REQUEST_ID: &str = "x-request-id";

/// A token is renewed before a request when it expires sooner than this.
const RENEW_MARGIN: TimeDelta = TimeDelta::minutes(1);

/// An HTTP answer with its JSON body (`Value::Null` when empty).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A request body.
enum ReqBody {
    Empty,
    Json(Value),
    /// Streamed once: requests with such a body are never retried.
    Stream(Option<reqwest::Body>),
}

struct Req<'a> {
    method: Method,
    service_type: &'a str,
    path: &'a str,
    query: Option<&'a Map<String, Value>>,
    body: ReqBody,
    headers: HeaderMap,
    /// Apply [`Config::timeout`] (off for streams).
    timeout: bool,
}

struct Inner {
    http: reqwest::Client,
    config: Config,
    session: RwLock<Session>,
    cache: Option<TokenCache>,
    renew: tokio::sync::Mutex<()>,
}

/// A Cloudpods client: one token, one HTTP connection pool. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloudpods_sdk::SdkError> {
/// cloudpods_sdk::init_tls();
/// let client = cloudpods_sdk::Client::new(cloudpods_sdk::Config::from_env()?).await?;
/// let servers = client.resource("compute_v2", "server", "servers");
/// let page = servers.list(&serde_json::Map::new()).await?;
/// println!("{} servers", page.total);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("session", &self.token())
            .finish()
    }
}

fn new_request_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(16);
    id
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn build_http(config: &Config) -> Result<reqwest::Client> {
    crate::init_tls();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .danger_accept_invalid_certs(config.insecure)
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| SdkError::Config(format!("cannot build the HTTP client: {e}")))
}

fn debug_response(config: &Config, status: StatusCode, headers: &HeaderMap) {
    if config.debug {
        let rid = header_str(headers, X_REQUEST_ID).unwrap_or_default();
        eprintln!("< {status} (X-Request-Id: {rid})");
    }
}

/// Turn a non-2xx answer into [`SdkError::Http`].
async fn error_from(resp: reqwest::Response) -> SdkError {
    let status = resp.status().as_u16();
    let rid = header_str(resp.headers(), X_REQUEST_ID);
    let body = resp.bytes().await.unwrap_or_default();
    SdkError::from_response(status, &body, rid)
}

/// Read a JSON body: empty → `Null`; non-JSON text → a JSON string, unless
/// the server claimed JSON.
async fn read_json(url: &str, resp: reqwest::Response) -> Result<RawResponse> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let method_url = url.to_owned();
    let bytes = resp.bytes().await.map_err(|source| SdkError::Transport {
        method: "read".to_owned(),
        url: method_url,
        source,
    })?;
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let is_json = header_str(&headers, CONTENT_TYPE.as_str())
                    .is_some_and(|ct| ct.contains("json"));
                if is_json {
                    return Err(SdkError::Decode {
                        url: url.to_owned(),
                        reason: e.to_string(),
                    });
                }
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// The `POST /v3/auth/tokens` body for password authentication.
pub fn password_auth_request(config: &Config) -> AuthRequest {
    let user = UserAuth {
        id: None,
        name: config.username.clone(),
        password: config.password.clone().unwrap_or_default(),
        domain: config.user_domain.clone().map(NameOrId::name),
    };
    AuthRequest {
        auth: AuthBody {
            identity: AuthIdentity {
                methods: vec!["password".to_owned()],
                password: Some(PasswordAuth { user }),
                token: None,
            },
            scope: project_scope(config),
            context: auth_context(config),
        },
    }
}

fn project_scope(config: &Config) -> Option<AuthScope> {
    let project = if let Some(id) = &config.project_id {
        ProjectScope {
            id: Some(id.clone()),
            name: None,
            domain: None,
        }
    } else {
        ProjectScope {
            id: None,
            name: Some(config.project_name.clone()?),
            domain: Some(NameOrId::name(config.project_domain.clone())),
        }
    };
    Some(AuthScope {
        project: Some(project),
        domain: None,
    })
}

fn auth_context(config: &Config) -> Option<AuthContext> {
    config.auth_source.as_ref().map(|s| AuthContext {
        source: s.clone(),
        ip: String::new(),
    })
}

/// `{auth_url}/auth/tokens`.
fn tokens_url(config: &Config) -> String {
    endpoint::join(&config.auth_url, "/auth/tokens")
}

/// `POST /v3/auth/tokens`: the token id comes from `X-Subject-Token` (or the
/// body's `id`), the token from the body.
async fn issue_token(
    http: &reqwest::Client,
    config: &Config,
    req: &AuthRequest,
) -> Result<Session> {
    let url = tokens_url(config);
    let body = serde_json::to_value(req).map_err(|e| SdkError::Decode {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        X_REQUEST_ID,
        HeaderValue::from_str(&new_request_id()).map_err(|e| SdkError::Config(e.to_string()))?,
    );
    if config.debug {
        eprintln!(
            "{}",
            curl_line(&Method::POST, &url, &headers, DebugBody::Json(&body))
        );
    }
    let resp = http
        .post(&url)
        .headers(headers)
        .body(body.to_string())
        .send()
        .await
        .map_err(|source| SdkError::Transport {
            method: "POST".to_owned(),
            url: url.clone(),
            source,
        })?;
    debug_response(config, resp.status(), resp.headers());
    if !resp.status().is_success() {
        return Err(error_from(resp).await);
    }
    let subject = header_str(resp.headers(), X_SUBJECT_TOKEN);
    let raw = read_json(&url, resp).await?;
    let parsed: TokenResponse = serde_json::from_value(raw.body).map_err(|e| SdkError::Decode {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let id = subject
        .filter(|s| !s.is_empty())
        .or_else(|| Some(parsed.id.clone()).filter(|s| !s.is_empty()))
        .ok_or_else(|| SdkError::Decode {
            url,
            reason: "no X-Subject-Token header and no token id in the body".to_owned(),
        })?;
    Ok(Session::new(id, parsed.token))
}

/// `GET /v3/auth/tokens` with the caller's and the subject's tokens.
async fn verify_token(
    http: &reqwest::Client,
    config: &Config,
    url: &str,
    auth_token: &str,
    subject: &str,
) -> Result<TokenBody> {
    let mut headers = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).map_err(|e| SdkError::Config(e.to_string()));
    headers.insert(X_AUTH_TOKEN, hv(auth_token)?);
    headers.insert(X_SUBJECT_TOKEN, hv(subject)?);
    headers.insert(X_REQUEST_ID, hv(&new_request_id())?);
    if config.debug {
        eprintln!(
            "{}",
            curl_line(&Method::GET, url, &headers, DebugBody::None)
        );
    }
    let resp = http
        .get(url)
        .headers(headers)
        .send()
        .await
        .map_err(|source| SdkError::Transport {
            method: "GET".to_owned(),
            url: url.to_owned(),
            source,
        })?;
    debug_response(config, resp.status(), resp.headers());
    if !resp.status().is_success() {
        return Err(error_from(resp).await);
    }
    let raw = read_json(url, resp).await?;
    parse_token_body(url, raw.body)
}

fn parse_token_body(url: &str, body: Value) -> Result<TokenBody> {
    serde_json::from_value::<TokenResponse>(body)
        .map(|r| r.token)
        .map_err(|e| SdkError::Decode {
            url: url.to_owned(),
            reason: e.to_string(),
        })
}

impl Client {
    /// Authenticate according to `config` and return a client.
    ///
    /// With [`Config::auth_token`] the token is used as is (its body is
    /// fetched with `GET /v3/auth/tokens`, or, when the token may not verify
    /// itself, by a token-method authentication). Otherwise a cached token is
    /// reused when [`Config::token_cache_dir`] is set and the token is valid
    /// for more than five minutes; else the user name and password are sent.
    pub async fn new(config: Config) -> Result<Client> {
        config.validate()?;
        let http = build_http(&config)?;
        let cache = config
            .token_cache_dir
            .as_deref()
            .map(|dir| TokenCache::in_dir(dir, &config));
        let session = if let Some(token) = config.auth_token.clone() {
            Self::session_from_token(&http, &config, &token).await?
        } else if let Some(s) = cache.as_ref().and_then(TokenCache::load) {
            tracing::debug!(path = %cache.as_ref().map(|c| c.path().display().to_string()).unwrap_or_default(), "using cached token");
            s
        } else {
            let s = issue_token(&http, &config, &password_auth_request(&config)).await?;
            if let Some(c) = &cache
                && let Err(e) = c.store(&s)
            {
                tracing::warn!(error = %e, "cannot write the token cache");
            }
            s
        };
        Ok(Self::assemble(http, config, session, cache))
    }

    /// [`Config::from_env`] then [`Client::new`].
    pub async fn from_env() -> Result<Client> {
        Client::new(Config::from_env()?).await
    }

    /// A client around a session obtained elsewhere (no authentication call).
    /// The session is renewed with the password of `config`, when it has one.
    pub fn with_session(config: Config, session: Session) -> Result<Client> {
        let http = build_http(&config)?;
        let cache = config
            .token_cache_dir
            .as_deref()
            .map(|dir| TokenCache::in_dir(dir, &config));
        Ok(Self::assemble(http, config, session, cache))
    }

    fn assemble(
        http: reqwest::Client,
        config: Config,
        session: Session,
        cache: Option<TokenCache>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                http,
                config,
                session: RwLock::new(session),
                cache,
                renew: tokio::sync::Mutex::new(()),
            }),
        }
    }

    async fn session_from_token(
        http: &reqwest::Client,
        config: &Config,
        token: &str,
    ) -> Result<Session> {
        match verify_token(http, config, &tokens_url(config), token, token).await {
            Ok(body) => Ok(Session::new(token, body)),
            Err(e) if e.is_forbidden() => {
                let req = AuthRequest {
                    auth: AuthBody {
                        identity: AuthIdentity {
                            methods: vec!["token".to_owned()],
                            password: None,
                            token: Some(TokenAuth {
                                id: token.to_owned(),
                            }),
                        },
                        scope: project_scope(config),
                        context: auth_context(config),
                    },
                };
                issue_token(http, config, &req).await
            }
            Err(e) => Err(e),
        }
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The underlying HTTP client (for calls outside Cloudpods' conventions).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The current session (token id and body).
    pub fn token(&self) -> Session {
        self.inner
            .session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The service catalog of the current token.
    pub fn catalog(&self) -> Vec<CatalogService> {
        self.token().token().catalog.clone()
    }

    /// A manager for a resource of a service (`("compute_v2", "server", "servers")`).
    pub fn resource(&self, service_type: &str, keyword: &str, plural: &str) -> ResourceManager {
        ResourceManager::new(self.clone(), service_type, keyword, plural)
    }

    /// The catalog URL of a service, as listed (version included).
    /// Identity falls back to the auth URL when the catalog has no entry.
    pub fn catalog_url(&self, service_type: &str) -> Result<String> {
        let cfg = &self.inner.config;
        let session = self.token();
        match endpoint::select(
            session.token(),
            service_type,
            &cfg.endpoint_type,
            cfg.region.as_deref(),
        ) {
            Ok(u) => Ok(u),
            Err(_) if service_type == "identity" => Ok(cfg.auth_url.clone()),
            Err(e) => Err(e),
        }
    }

    /// The base URL request paths of a service are relative to
    /// (e.g. `http://h:30500/v3`, `https://h:30888`, `http://h:30292/v1`).
    pub fn endpoint(&self, service_type: &str) -> Result<String> {
        Ok(endpoint::service_base(
            &self.catalog_url(service_type)?,
            service_type,
        ))
    }

    /// The full URL of `path` (relative to the service base) with `query`.
    pub fn url(
        &self,
        service_type: &str,
        path: &str,
        query: Option<&Map<String, Value>>,
    ) -> Result<String> {
        let mut url = endpoint::service_url(&self.catalog_url(service_type)?, service_type, path);
        if let Some(q) = query {
            let qs = to_query(q);
            if !qs.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&qs);
            }
        }
        Ok(url)
    }

    /// The token to send on a request made outside this client's HTTP
    /// stack, if it can go as it is: not about to expire (that request
    /// would renew it first) and no `--debug` output asked for.
    pub(crate) fn token_as_is(&self) -> Option<String> {
        if self.inner.config.debug {
            return None;
        }
        let session = self.token();
        let expiring = session
            .expires_at()
            .is_some_and(|t| t <= Utc::now() + RENEW_MARGIN);
        (!expiring).then(|| session.id().to_string())
    }

    /// Authenticate again with the password (and refresh the cache).
    pub async fn reauthenticate(&self) -> Result<Session> {
        let stale = self.token();
        self.renew(&stale, true).await
    }

    /// Replace `stale` with a fresh token unless another task already did.
    async fn renew(&self, stale: &Session, force: bool) -> Result<Session> {
        let _guard = self.inner.renew.lock().await;
        let current = self.token();
        if !force && current.id() != stale.id() {
            return Ok(current);
        }
        let cfg = &self.inner.config;
        if !cfg.has_password() {
            return Err(SdkError::Config(
                "the token cannot be renewed without a user name and password".to_owned(),
            ));
        }
        let fresh = issue_token(&self.inner.http, cfg, &password_auth_request(cfg)).await?;
        if let Some(c) = &self.inner.cache
            && let Err(e) = c.store(&fresh)
        {
            tracing::warn!(error = %e, "cannot write the token cache");
        }
        *self
            .inner
            .session
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Send a request; retry once after re-authenticating when a cached token
    /// is refused with 401. Non-2xx answers become [`SdkError::Http`].
    async fn execute(&self, req: Req<'_>) -> Result<(String, reqwest::Response)> {
        let cfg = &self.inner.config;
        let mut body = req.body;
        let mut retried = false;
        loop {
            let mut session = self.token();
            let expiring = session
                .expires_at()
                .is_some_and(|t| t <= Utc::now() + RENEW_MARGIN);
            if expiring && cfg.has_password() {
                session = self.renew(&session, false).await?;
            }
            let url = self.url(req.service_type, req.path, req.query)?;
            let mut headers = HeaderMap::new();
            headers.insert(
                X_AUTH_TOKEN,
                HeaderValue::from_str(session.id())
                    .map_err(|e| SdkError::Config(format!("invalid token: {e}")))?,
            );
            let content_type = match body {
                ReqBody::Stream(_) => "application/octet-stream",
                _ => "application/json",
            };
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(
                X_REQUEST_ID,
                HeaderValue::from_str(&new_request_id())
                    .map_err(|e| SdkError::Config(e.to_string()))?,
            );
            for (k, v) in &req.headers {
                headers.insert(k.clone(), v.clone());
            }
            let mut rb = self
                .inner
                .http
                .request(req.method.clone(), &url)
                .headers(headers.clone());
            let dbg = match &mut body {
                ReqBody::Empty => DebugBody::None,
                ReqBody::Json(v) => {
                    rb = rb.body(v.to_string());
                    DebugBody::Json(v)
                }
                ReqBody::Stream(b) => {
                    if let Some(b) = b.take() {
                        rb = rb.body(b);
                    }
                    DebugBody::Stream
                }
            };
            if req.timeout
                && let Some(t) = cfg.timeout
            {
                rb = rb.timeout(t);
            }
            if cfg.debug {
                eprintln!("{}", curl_line(&req.method, &url, &headers, dbg));
            }
            let resp = rb.send().await.map_err(|source| SdkError::Transport {
                method: req.method.to_string(),
                url: url.clone(),
                source,
            })?;
            debug_response(cfg, resp.status(), resp.headers());
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && !retried
                && session.from_cache()
                && cfg.has_password()
                && !matches!(body, ReqBody::Stream(_))
            {
                tracing::debug!("cached token refused, authenticating again");
                retried = true;
                self.renew(&session, false).await?;
                continue;
            }
            if !status.is_success() {
                return Err(error_from(resp).await);
            }
            return Ok((url, resp));
        }
    }

    /// A request on any route of a service, answered with JSON.
    ///
    /// `path` is relative to the service base ([`Client::endpoint`]); a
    /// leading service prefix (`/v3/...` for identity) is tolerated.
    /// `X-Auth-Token`, `Content-Type`, `User-Agent` and `X-Request-Id` are
    /// added; `headers` may override them.
    ///
    /// ```no_run
    /// # async fn demo(client: cloudpods_sdk::Client) -> Result<(), cloudpods_sdk::SdkError> {
    /// use reqwest::{Method, header::HeaderMap};
    /// client
    ///     .raw(Method::PUT, "identity", "/projects/p1/users/u1/roles/r1", None, None, HeaderMap::new())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn raw(
        &self,
        method: Method,
        service_type: &str,
        path: &str,
        query: Option<&Map<String, Value>>,
        body: Option<Value>,
        headers: HeaderMap,
    ) -> Result<RawResponse> {
        let (url, resp) = self
            .execute(Req {
                method,
                service_type,
                path,
                query,
                body: body.map_or(ReqBody::Empty, ReqBody::Json),
                headers,
                timeout: true,
            })
            .await?;
        read_json(&url, resp).await
    }

    /// Like [`Client::raw`] but hands back the response unread, for streaming
    /// downloads (`resp.bytes_stream()`). No timeout applies.
    pub async fn raw_stream(
        &self,
        method: Method,
        service_type: &str,
        path: &str,
        query: Option<&Map<String, Value>>,
        headers: HeaderMap,
    ) -> Result<reqwest::Response> {
        let (_, resp) = self
            .execute(Req {
                method,
                service_type,
                path,
                query,
                body: ReqBody::Empty,
                headers,
                timeout: false,
            })
            .await?;
        Ok(resp)
    }

    /// Send a streamed body (`Content-Type: application/octet-stream` unless
    /// `headers` say otherwise), e.g. a glance upload with `X-Image-Meta-*`
    /// headers. The body can be sent only once, so a refused cached token is
    /// not retried here.
    pub async fn upload(
        &self,
        method: Method,
        service_type: &str,
        path: &str,
        query: Option<&Map<String, Value>>,
        body: reqwest::Body,
        headers: HeaderMap,
    ) -> Result<RawResponse> {
        let (url, resp) = self
            .execute(Req {
                method,
                service_type,
                path,
                query,
                body: ReqBody::Stream(Some(body)),
                headers,
                timeout: false,
            })
            .await?;
        read_json(&url, resp).await
    }

    /// `GET /v3/auth/tokens` with `X-Subject-Token: subject`: the body of
    /// another token (needs the right to verify tokens).
    pub async fn validate_token(&self, subject: &str) -> Result<TokenBody> {
        let resp = self
            .raw(
                Method::GET,
                "identity",
                "/auth/tokens",
                None,
                None,
                subject_header(subject)?,
            )
            .await?;
        parse_token_body("/auth/tokens", resp.body)
    }

    /// `DELETE /v3/auth/tokens` with `X-Subject-Token: subject`.
    pub async fn revoke_token(&self, subject: &str) -> Result<()> {
        self.raw(
            Method::DELETE,
            "identity",
            "/auth/tokens",
            None,
            None,
            subject_header(subject)?,
        )
        .await?;
        Ok(())
    }
}

fn subject_header(subject: &str) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static(X_SUBJECT_TOKEN),
        HeaderValue::from_str(subject)
            .map_err(|e| SdkError::Config(format!("invalid token: {e}")))?,
    );
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn password_request_shape() {
        let cfg = Config::new("http://h/v3")
            .with_password("sysadmin", "pw")
            .with_project("system")
            .with_auth_source("cli");
        let v = serde_json::to_value(password_auth_request(&cfg)).expect("json");
        assert_eq!(
            v,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": "sysadmin", "password": "pw"}}},
                "scope": {"project": {"name": "system", "domain": {"name": "Default"}}},
                "context": {"source": "cli"},
            }})
        );
        let cfg = cfg.with_user_domain("Default").with_project_id("p1");
        let v = serde_json::to_value(password_auth_request(&cfg)).expect("json");
        assert_eq!(
            v["auth"]["identity"]["password"]["user"]["domain"],
            json!({"name": "Default"})
        );
        assert_eq!(v["auth"]["scope"], json!({"project": {"id": "p1"}}));
        let unscoped = Config::new("http://h/v3").with_password("u", "p");
        let v = serde_json::to_value(password_auth_request(&unscoped)).expect("json");
        assert!(v["auth"].get("scope").is_none());
    }

    #[test]
    fn request_ids_are_short_and_unique() {
        let a = new_request_id();
        assert_eq!(a.len(), 16);
        assert_ne!(a, new_request_id());
    }
}
