//! Validating tokens with a keystone in another process.
//!
//! A service logs in with its own credentials, validates callers' tokens
//! with `GET /v3/auth/tokens` (`X-Subject-Token`), and builds the caller's
//! policies from the names in the token and the policy definitions it reads
//! from `GET /v3/policies` (refreshed periodically). Answers are cached by a
//! [`CachedVerifier`](crate::auth::CachedVerifier); a background poller reads
//! the revocation feed (`/v3/auth/tokens/invalid`) and drops revoked tokens.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloudpods_apis::identity::TokenBody;
use cloudpods_rbac::{PolicyBlob, Scope, ScopedPolicies};
use cloudpods_sdk::{Client, Config};
use serde_json::{Map, Value, json};

use crate::auth::{CachedVerifier, TokenVerifier, invalid_token};
use crate::context::Identity;
use crate::error::{HttpError, Result};

/// How often policy definitions are re-read.
const POLICY_REFRESH: Duration = Duration::from_secs(60);

pub struct RemoteVerifier {
    client: Client,
    policies: RwLock<(HashMap<String, PolicyBlob>, Option<Instant>)>,
}

impl RemoteVerifier {
    /// Log in to keystone with the service's credentials.
    pub async fn connect(config: Config) -> Result<Arc<RemoteVerifier>> {
        let client = Client::new(config)
            .await
            .map_err(|e| HttpError::bad_gateway(format!("cannot log in to keystone: {e}")))?;
        Ok(Arc::new(RemoteVerifier {
            client,
            policies: RwLock::new((HashMap::new(), None)),
        }))
    }

    async fn policy_defs(&self, force: bool) -> Result<HashMap<String, PolicyBlob>> {
        if let Ok(p) = self.policies.read()
            && !force
            && p.1.is_some_and(|at| at.elapsed() < POLICY_REFRESH)
        {
            return Ok(p.0.clone());
        }
        let mut params = Map::new();
        params.insert("scope".into(), json!("system"));
        params.insert("limit".into(), json!(2048));
        params.insert("details".into(), json!(false));
        let list = self
            .client
            .resource("identity", "policy", "policies")
            .list(&params)
            .await
            .map_err(|e| {
                HttpError::bad_gateway(format!("cannot read policies from keystone: {e}"))
            })?;
        let mut defs = HashMap::new();
        for p in list.items {
            let (Some(name), Some(blob)) = (p["name"].as_str(), p.get("blob")) else {
                continue;
            };
            if p["enabled"] == json!(false) {
                continue;
            }
            match PolicyBlob::parse(blob) {
                Ok(b) => {
                    defs.insert(name.to_string(), b);
                }
                Err(e) => tracing::warn!(policy = name, error = %e, "skipping invalid policy"),
            }
        }
        if let Ok(mut p) = self.policies.write() {
            *p = (defs.clone(), Some(Instant::now()));
        }
        Ok(defs)
    }

    async fn identity(&self, body: TokenBody) -> Result<Identity> {
        let mut defs = self.policy_defs(false).await?;
        let names = body.policies.clone();
        let all: Vec<&String> = names
            .system
            .iter()
            .chain(&names.domain)
            .chain(&names.project)
            .collect();
        if all.iter().any(|n| !defs.contains_key(n.as_str())) {
            // A policy created since the last refresh.
            defs = self.policy_defs(true).await?;
        }
        let mut sets = ScopedPolicies::default();
        for (scope, list) in [
            (Scope::System, &names.system),
            (Scope::Domain, &names.domain),
            (Scope::Project, &names.project),
        ] {
            for n in list {
                if let Some(b) = defs.get(n) {
                    sets.get_mut(scope).push(n.clone(), b.clone());
                }
            }
        }
        let (project_id, project, domain_id, domain) = match (&body.project, &body.domain) {
            (Some(p), _) => (
                p.id.clone(),
                p.name.clone(),
                p.domain.id.clone(),
                p.domain.name.clone(),
            ),
            (None, Some(d)) => (String::new(), String::new(), d.id.clone(), d.name.clone()),
            (None, None) => (
                String::new(),
                String::new(),
                body.user.domain.id.clone(),
                body.user.domain.name.clone(),
            ),
        };
        Ok(Identity {
            user_id: body.user.id.clone(),
            user: body.user.name.clone(),
            user_domain_id: body.user.domain.id.clone(),
            user_domain: body.user.domain.name.clone(),
            project_id,
            project,
            domain_id,
            domain,
            roles: body.roles.iter().map(|r| r.name.clone()).collect(),
            role_ids: body.roles.iter().map(|r| r.id.clone()).collect(),
            policy_names: names,
            policies: Arc::new(sets),
            expires_at: body.expires_at.clone(),
            issued_at: body.issued_at.clone(),
            audit_id: body.audit_ids.first().cloned().unwrap_or_default(),
            methods: body.methods.clone(),
        })
    }

    /// Poll the revocation feed and drop revoked tokens from `cache`.
    pub fn spawn_revocation_poller(
        self: &Arc<Self>,
        cache: Arc<CachedVerifier>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut since = cloudpods_apis::time::now();
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let mut q = Map::new();
                q.insert("since".into(), Value::String(since.clone()));
                match me
                    .client
                    .raw(
                        reqwest::Method::GET,
                        "identity",
                        "/auth/tokens/invalid",
                        Some(&q),
                        None,
                        Default::default(),
                    )
                    .await
                {
                    Ok(resp) => {
                        let events = resp.body["events"].as_array().cloned().unwrap_or_default();
                        let audit_ids: Vec<String> = events
                            .iter()
                            .filter_map(|e| e["audit_id"].as_str())
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect();
                        cache.cache.forget_audit_ids(&audit_ids);
                        for e in &events {
                            if let Some(u) = e["user_id"].as_str().filter(|u| !u.is_empty()) {
                                cache.cache.forget_user(Some(u));
                            }
                        }
                        if let Some(now) = resp.body["now"].as_str() {
                            since = now.to_string();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the revocation feed failed"),
                }
            }
        })
    }
}

#[async_trait]
impl TokenVerifier for RemoteVerifier {
    async fn verify(&self, token: &str) -> Result<Arc<Identity>> {
        let body = match self.client.validate_token(token).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() || e.is_unauthorized() => return Err(invalid_token()),
            Err(e) => return Err(HttpError::bad_gateway(format!("keystone: {e}"))),
        };
        Ok(Arc::new(self.identity(body).await?))
    }
}
