//! Issuing and validating Fernet tokens.
//!
//! A token carries only who, how, what scope, until when and an audit id
//! (msgpack inside Fernet, like Keystone's payloads). Roles, policies and the
//! catalog are looked up at validation, so a role change or a disabled user
//! takes effect on the next uncached validation, and revocation is a row in
//! `token_revocations`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use cloudpods_apis::identity::{
    AuthContext, AuthRequest, IdName, NameOrId, ProjectRef, TokenBody, UserRef,
};
use cloudpods_db::{Row, crud};
use cloudpods_rbac::{PolicyBlob, PolicySet, Scope, ScopedPolicies};
use cloudpods_rest::{Identity, PolicyNames};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Keystone;
use crate::error::{KeystoneError, Result};
use crate::models::*;
use crate::store::{self, b, s};

const PAYLOAD_VERSION: u8 = 1;
const METHOD_PASSWORD: u8 = 1;
const METHOD_TOKEN: u8 = 2;
const SCOPE_NONE: u8 = 0;
const SCOPE_PROJECT: u8 = 1;
const SCOPE_DOMAIN: u8 = 2;

/// What a token encrypts. Serialized as a msgpack array.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    version: u8,
    user_id: String,
    methods: u8,
    scope: u8,
    scope_id: String,
    /// Unix microseconds.
    expires: i64,
    audit_id: String,
    source: String,
}

fn unix_micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(cloudpods_apis::time::format)
        .unwrap_or_default()
}

fn new_audit_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Hash a password with argon2id (off the async threads: it is slow on
/// purpose).
pub async fn hash_password(password: &str) -> Result<String> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        argon2::Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|_| KeystoneError::Hash)
    })
    .await
    .map_err(|_| KeystoneError::Hash)?
}

/// Verify a password against a stored argon2 PHC string.
pub async fn verify_password(password: &str, hash: &str) -> bool {
    if hash.is_empty() {
        return false;
    }
    let pw = password.to_string();
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || {
        argon2::Argon2::default()
            .verify_password(pw.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Everything a validated token stands for.
pub struct Validated {
    pub identity: Arc<Identity>,
}

impl Keystone {
    /// `POST /v3/auth/tokens`: authenticate and issue a token.
    pub async fn issue(&self, req: AuthRequest, ip: &str) -> Result<(String, TokenBody)> {
        let auth = req.auth;
        let methods = auth.identity.methods.clone();
        let mut method_bits = 0u8;
        let mut expires = None;
        let (user, source) = if methods.iter().any(|m| m == "password") {
            method_bits |= METHOD_PASSWORD;
            let pw = auth.identity.password.ok_or_else(|| {
                KeystoneError::BadRequest("password method needs identity.password".into())
            })?;
            (self.check_password(pw.user).await?, "password")
        } else if methods.iter().any(|m| m == "token") {
            method_bits |= METHOD_TOKEN;
            let t = auth.identity.token.ok_or_else(|| {
                KeystoneError::BadRequest("token method needs identity.token.id".into())
            })?;
            let v = self.validate(&t.id).await?;
            // A rescoped token never outlives the one it came from.
            expires = Some(v.identity.expires_at.clone());
            let user = crud::get(self.db.read(), &USERS, &v.identity.user_id)
                .await?
                .ok_or(KeystoneError::InvalidToken)?;
            (user, "token")
        } else {
            return Err(KeystoneError::BadRequest(format!(
                "unsupported authentication methods {methods:?}: use password or token"
            )));
        };
        let user_id = s(&user, "id");

        // Scope.
        let (scope, scope_id) = match &auth.scope {
            Some(sc) if sc.project.is_some() => {
                let p = sc.project.clone().unwrap_or_default();
                let domain_id = match &p.domain {
                    Some(d) if !d.is_empty() => Some(self.resolve_domain(d).await?),
                    _ => None,
                };
                let ident = p.id.clone().or(p.name.clone()).unwrap_or_default();
                if ident.is_empty() {
                    return Err(KeystoneError::BadRequest(
                        "scope.project needs an id or a name".into(),
                    ));
                }
                let project = store::find_project(&self.db, &ident, domain_id.as_deref())
                    .await?
                    .ok_or_else(|| KeystoneError::ScopeNotFound {
                        kind: "project",
                        name: ident.clone(),
                    })?;
                (SCOPE_PROJECT, s(&project, "id"))
            }
            Some(sc) if sc.domain.as_ref().is_some_and(|d| !d.is_empty()) => {
                let d = sc.domain.clone().unwrap_or_default();
                (SCOPE_DOMAIN, self.resolve_domain(&d).await?)
            }
            _ => (SCOPE_NONE, String::new()),
        };

        let now = chrono::Utc::now();
        let exp = match expires.as_deref().and_then(cloudpods_apis::time::parse) {
            Some(t) => unix_micros(t),
            None => unix_micros(
                now + chrono::Duration::from_std(self.opts.token_ttl).unwrap_or_default(),
            ),
        };
        let payload = Payload {
            version: PAYLOAD_VERSION,
            user_id: user_id.clone(),
            methods: method_bits,
            scope,
            scope_id,
            expires: exp,
            audit_id: new_audit_id(),
            source: auth
                .context
                .as_ref()
                .map(|c| c.source.clone())
                .unwrap_or_default(),
        };
        // Resolve roles and policies now: a scope without a role is refused
        // at issue time, not at first use.
        let identity = self
            .resolve(&payload, &cloudpods_apis::time::format(now))
            .await?;
        let bytes = rmp_serde::to_vec(&payload).map_err(|e| KeystoneError::Keys(e.to_string()))?;
        let token = {
            let keys = self
                .keys
                .read()
                .map_err(|_| KeystoneError::Keys("lock poisoned".into()))?;
            keys.encrypt(&bytes)
        };
        let mut ch = Row::new();
        ch.insert("last_login_at".into(), json!(cloudpods_apis::time::now()));
        ch.insert("last_login_source".into(), json!(source));
        ch.insert("failed_auth_count".into(), json!(0));
        crud::update(self.db.write(), &USERS, &user_id, &ch).await?;
        let mut body = self.token_body(&identity).await?;
        body.context = Some(AuthContext {
            source: payload.source.clone(),
            ip: ip.to_string(),
        });
        if scope == SCOPE_NONE {
            body.projects = self.user_projects(&user_id).await?;
        }
        self.cache.insert(&token, identity);
        Ok((token, body))
    }

    async fn resolve_domain(&self, d: &NameOrId) -> Result<String> {
        let ident = d.id.clone().or(d.name.clone()).unwrap_or_default();
        let row = store::find_domain(&self.db, &ident).await?.ok_or_else(|| {
            KeystoneError::ScopeNotFound {
                kind: "domain",
                name: ident.clone(),
            }
        })?;
        Ok(s(&row, "id"))
    }

    /// Check a password login, applying the lockout policy.
    async fn check_password(&self, u: cloudpods_apis::identity::UserAuth) -> Result<Row> {
        let user = if let Some(id) = u.id.as_deref().filter(|s| !s.is_empty()) {
            crud::get(self.db.read(), &USERS, id).await?
        } else {
            let name = u.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(KeystoneError::BadRequest(
                    "identity.password.user needs an id or a name".into(),
                ));
            }
            let domain_id = match &u.domain {
                Some(d) if !d.is_empty() => match self.resolve_domain(d).await {
                    Ok(id) => Some(id),
                    Err(_) => return Err(KeystoneError::BadCredentials),
                },
                _ => None,
            };
            let users = store::users_by_name(&self.db, &name, domain_id.as_deref()).await?;
            if users.len() > 1 {
                return Err(KeystoneError::AmbiguousUser(name));
            }
            users.into_iter().next()
        };
        let Some(user) = user else {
            // Spend the same time as a real check.
            let _ = verify_password(&u.password, DUMMY_HASH).await;
            return Err(KeystoneError::BadCredentials);
        };
        let id = s(&user, "id");
        let name = s(&user, "name");
        let now = chrono::Utc::now();
        if let Some(until) = user
            .get("locked_until")
            .and_then(|v| v.as_str())
            .and_then(cloudpods_apis::time::parse)
            && until > now
        {
            return Err(KeystoneError::Locked {
                user: name,
                until: cloudpods_apis::time::format(until),
            });
        }
        if !verify_password(&u.password, &s(&user, "password_hash")).await {
            let failed = user
                .get("failed_auth_count")
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
                + 1;
            let mut ch = Row::new();
            ch.insert(
                "failed_auth_at".into(),
                json!(cloudpods_apis::time::format(now)),
            );
            let limit = self.opts.lockout_attempts as i64;
            if limit > 0 && failed >= limit {
                let until = now
                    + chrono::Duration::from_std(self.opts.lockout_duration).unwrap_or_default();
                ch.insert(
                    "locked_until".into(),
                    json!(cloudpods_apis::time::format(until)),
                );
                ch.insert("failed_auth_count".into(), json!(0));
                crud::update(self.db.write(), &USERS, &id, &ch).await?;
                tracing::warn!(user = %name, "user locked after {failed} failed logins");
                return Err(KeystoneError::Locked {
                    user: name,
                    until: cloudpods_apis::time::format(until),
                });
            }
            ch.insert("failed_auth_count".into(), json!(failed));
            crud::update(self.db.write(), &USERS, &id, &ch).await?;
            return Err(KeystoneError::BadCredentials);
        }
        if !b(&user, "enabled") {
            return Err(KeystoneError::UserDisabled(name));
        }
        Ok(user)
    }

    /// Validate a token (cached).
    pub async fn validate(&self, token: &str) -> Result<Validated> {
        if let Some(identity) = self.cache.get(token) {
            return Ok(Validated { identity });
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let decrypt = || -> Result<Vec<u8>> {
            let keys = self
                .keys
                .read()
                .map_err(|_| KeystoneError::Keys("lock poisoned".into()))?;
            keys.decrypt(token, None, now)
                .map_err(|_| KeystoneError::InvalidToken)
        };
        let bytes = match decrypt() {
            Ok(b) => b,
            Err(e) => {
                // Maybe another keystone rotated and issued with a key we
                // have not loaded yet. At most one reload a second, so that
                // garbage tokens cannot turn into database load.
                let due = self
                    .last_key_reload
                    .lock()
                    .map(|mut t| {
                        let due = t.elapsed() >= Duration::from_secs(1);
                        if due {
                            *t = std::time::Instant::now();
                        }
                        due
                    })
                    .unwrap_or(false);
                if !due {
                    return Err(e);
                }
                self.reload_keys().await?;
                decrypt()?
            }
        };
        let (payload, issued_at) = {
            let issued = cloudpods_fernet::token_timestamp(token)
                .map_err(|_| KeystoneError::InvalidToken)?;
            let payload: Payload =
                rmp_serde::from_slice(&bytes).map_err(|_| KeystoneError::InvalidToken)?;
            let issued_at = chrono::DateTime::<chrono::Utc>::from_timestamp(issued as i64, 0)
                .map(cloudpods_apis::time::format)
                .unwrap_or_default();
            (payload, issued_at)
        };
        if payload.version != PAYLOAD_VERSION || payload.expires <= unix_micros(chrono::Utc::now())
        {
            return Err(KeystoneError::InvalidToken);
        }
        // Revocations compare at second precision (Fernet timestamps).
        if store::is_revoked(&self.db, &payload.audit_id, &payload.user_id, &issued_at).await? {
            return Err(KeystoneError::InvalidToken);
        }
        let identity = self
            .resolve(&payload, &issued_at)
            .await
            .map_err(|e| match e {
                KeystoneError::Db(_) => e,
                _ => KeystoneError::InvalidToken,
            })?;
        self.cache.insert(token, identity.clone());
        Ok(Validated { identity })
    }

    /// Load user, scope, roles and policies for a payload.
    async fn resolve(&self, p: &Payload, issued_at: &str) -> Result<Arc<Identity>> {
        let user = crud::get(self.db.read(), &USERS, &p.user_id)
            .await?
            .ok_or(KeystoneError::InvalidToken)?;
        if !b(&user, "enabled") {
            return Err(KeystoneError::UserDisabled(s(&user, "name")));
        }
        let user_domain = crud::get(self.db.read(), &DOMAINS, &s(&user, "domain_id"))
            .await?
            .ok_or(KeystoneError::InvalidToken)?;
        if !b(&user_domain, "enabled") {
            return Err(KeystoneError::ScopeDisabled {
                kind: "domain",
                name: s(&user_domain, "name"),
            });
        }
        let mut identity = Identity {
            user_id: p.user_id.clone(),
            user: s(&user, "name"),
            user_domain_id: s(&user_domain, "id"),
            user_domain: s(&user_domain, "name"),
            expires_at: from_micros(p.expires),
            issued_at: issued_at.to_string(),
            audit_id: p.audit_id.clone(),
            methods: method_names(p.methods),
            ..Default::default()
        };
        let role_ids = match p.scope {
            SCOPE_PROJECT => {
                let project = crud::get(self.db.read(), &PROJECTS, &p.scope_id)
                    .await?
                    .ok_or_else(|| KeystoneError::ScopeNotFound {
                        kind: "project",
                        name: p.scope_id.clone(),
                    })?;
                let domain = crud::get(self.db.read(), &DOMAINS, &s(&project, "domain_id"))
                    .await?
                    .ok_or(KeystoneError::InvalidToken)?;
                if !b(&project, "enabled") {
                    return Err(KeystoneError::ScopeDisabled {
                        kind: "project",
                        name: s(&project, "name"),
                    });
                }
                if !b(&domain, "enabled") {
                    return Err(KeystoneError::ScopeDisabled {
                        kind: "domain",
                        name: s(&domain, "name"),
                    });
                }
                identity.project_id = s(&project, "id");
                identity.project = s(&project, "name");
                identity.domain_id = s(&domain, "id");
                identity.domain = s(&domain, "name");
                let roles =
                    store::role_ids(&self.db, &p.user_id, &identity.project_id, false).await?;
                if roles.is_empty() {
                    return Err(KeystoneError::NoRole {
                        kind: "project",
                        name: identity.project.clone(),
                    });
                }
                roles
            }
            SCOPE_DOMAIN => {
                let domain = crud::get(self.db.read(), &DOMAINS, &p.scope_id)
                    .await?
                    .ok_or_else(|| KeystoneError::ScopeNotFound {
                        kind: "domain",
                        name: p.scope_id.clone(),
                    })?;
                if !b(&domain, "enabled") {
                    return Err(KeystoneError::ScopeDisabled {
                        kind: "domain",
                        name: s(&domain, "name"),
                    });
                }
                identity.domain_id = s(&domain, "id");
                identity.domain = s(&domain, "name");
                let roles =
                    store::role_ids(&self.db, &p.user_id, &identity.domain_id, true).await?;
                if roles.is_empty() {
                    return Err(KeystoneError::NoRole {
                        kind: "domain",
                        name: identity.domain.clone(),
                    });
                }
                roles
            }
            _ => {
                identity.domain_id = identity.user_domain_id.clone();
                identity.domain = identity.user_domain.clone();
                Vec::new()
            }
        };
        if !role_ids.is_empty() {
            let roles = crud::get_many(&self.db, &ROLES, &role_ids).await?;
            for r in &roles {
                identity.role_ids.push(s(r, "id"));
                identity.roles.push(s(r, "name"));
            }
        }
        let (names, policies) = self.policies(&role_ids, &identity.project_id).await?;
        identity.policy_names = names;
        identity.policies = Arc::new(policies);
        Ok(Arc::new(identity))
    }

    /// Policies bound to the roles, grouped by their scope.
    async fn policies(
        &self,
        role_ids: &[String],
        project_id: &str,
    ) -> Result<(PolicyNames, ScopedPolicies)> {
        let rows = store::policies_for_roles(&self.db, role_ids, project_id).await?;
        let mut names = PolicyNames::default();
        let mut sets = ScopedPolicies::default();
        for (id, name, scope, version, blob) in rows {
            let parsed = {
                let cached = self.policy_cache.read().ok().and_then(|m| {
                    m.get(&id)
                        .filter(|(v, _)| *v == version)
                        .map(|(_, p)| p.clone())
                });
                match cached {
                    Some(p) => p,
                    None => {
                        let p = match PolicyBlob::parse(&blob) {
                            Ok(p) => Arc::new(p),
                            Err(e) => {
                                tracing::warn!(policy = %name, error = %e, "skipping invalid policy");
                                continue;
                            }
                        };
                        if let Ok(mut m) = self.policy_cache.write() {
                            m.insert(id.clone(), (version, p.clone()));
                        }
                        p
                    }
                }
            };
            let scope: Scope = scope.parse().unwrap_or(Scope::Project);
            let set: &mut PolicySet = sets.get_mut(scope);
            set.push(name.clone(), (*parsed).clone());
            match scope {
                Scope::System => names.system.push(name),
                Scope::Domain => names.domain.push(name),
                Scope::Project => names.project.push(name),
            }
        }
        Ok((names, sets))
    }

    async fn user_projects(&self, user_id: &str) -> Result<Vec<ProjectRef>> {
        let ids = store::user_project_ids(&self.db, user_id).await?;
        let projects = crud::get_many(&self.db, &PROJECTS, &ids).await?;
        let mut out = Vec::new();
        for p in projects {
            let d = self
                .tenants
                .domain_name(&s(&p, "domain_id"))
                .await?
                .unwrap_or_default();
            out.push(ProjectRef {
                id: s(&p, "id"),
                name: s(&p, "name"),
                domain: IdName {
                    id: s(&p, "domain_id"),
                    name: d,
                },
            });
        }
        Ok(out)
    }

    /// The `token` object for an identity.
    pub async fn token_body(&self, id: &Identity) -> Result<TokenBody> {
        let project = (!id.project_id.is_empty()).then(|| ProjectRef {
            id: id.project_id.clone(),
            name: id.project.clone(),
            domain: IdName {
                id: id.domain_id.clone(),
                name: id.domain.clone(),
            },
        });
        let domain = (id.project_id.is_empty() && !id.roles.is_empty()).then(|| IdName {
            id: id.domain_id.clone(),
            name: id.domain.clone(),
        });
        let scoped = project.is_some() || domain.is_some();
        Ok(TokenBody {
            audit_ids: vec![id.audit_id.clone()],
            catalog: if scoped {
                self.catalog().await?
            } else {
                Vec::new()
            },
            context: None,
            expires_at: id.expires_at.clone(),
            issued_at: id.issued_at.clone(),
            is_domain: false,
            methods: id.methods.clone(),
            policies: id.policy_names.clone(),
            project,
            domain,
            roles: id
                .role_ids
                .iter()
                .zip(&id.roles)
                .map(|(i, n)| IdName {
                    id: i.clone(),
                    name: n.clone(),
                })
                .collect(),
            user: UserRef {
                id: id.user_id.clone(),
                name: id.user.clone(),
                domain: IdName {
                    id: id.user_domain_id.clone(),
                    name: id.user_domain.clone(),
                },
                password_expires_at: None,
            },
            projects: Vec::new(),
        })
    }

    /// Revoke one token.
    pub async fn revoke_token(&self, token: &str) -> Result<()> {
        let v = self.validate(token).await?;
        store::revoke(
            &self.db,
            Some(&v.identity.audit_id),
            None,
            &v.identity.expires_at,
        )
        .await?;
        self.cache.forget(token);
        Ok(())
    }

    /// Revoke every token of a user issued until now.
    pub async fn revoke_user(&self, user_id: &str) -> Result<()> {
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(self.opts.token_ttl).unwrap_or_default();
        store::revoke(
            &self.db,
            None,
            Some(user_id),
            &cloudpods_apis::time::format(until),
        )
        .await?;
        self.cache.forget_user(Some(user_id));
        Ok(())
    }
}

fn method_names(bits: u8) -> Vec<String> {
    let mut m = Vec::new();
    if bits & METHOD_PASSWORD != 0 {
        m.push("password".to_string());
    }
    if bits & METHOD_TOKEN != 0 {
        m.push("token".to_string());
    }
    m
}

/// An argon2id hash of a random password, verified against when the user
/// does not exist so both paths take the same time.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3mW6XTsL+5Xh4gYQPY0o+OeeH1Jf3C1/cYd9SdG0lRk";
