//! Token validation for every service.
//!
//! Services never read tokens themselves: they ask a [`TokenVerifier`] —
//! keystone in the same process, or keystone over HTTP — and keep the answer
//! in a [`CachedVerifier`] until the token expires, a short TTL passes, or a
//! revocation clears it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::context::Identity;
use crate::error::{HttpError, Result};

#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// Validate `token`; 401 `InvalidToken` when it is not valid.
    async fn verify(&self, token: &str) -> Result<Arc<Identity>>;
}

/// A verifier that refuses everything (services built without identity).
pub struct DenyAll;

#[async_trait]
impl TokenVerifier for DenyAll {
    async fn verify(&self, _token: &str) -> Result<Arc<Identity>> {
        Err(invalid_token())
    }
}

pub fn invalid_token() -> HttpError {
    HttpError::new(cloudpods_apis::ErrorClass::InvalidToken, "InvalidToken")
}

struct Entry {
    identity: Arc<Identity>,
    until: Instant,
}

/// Validated tokens, until they expire or `ttl` passes. Bounded: when full,
/// expired entries go first, then an arbitrary half.
pub struct TokenCache {
    entries: RwLock<HashMap<String, Entry>>,
    ttl: Duration,
    capacity: usize,
}

impl TokenCache {
    pub fn new(ttl: Duration, capacity: usize) -> TokenCache {
        TokenCache {
            entries: RwLock::new(HashMap::new()),
            ttl,
            capacity: capacity.max(16),
        }
    }

    pub fn get(&self, token: &str) -> Option<Arc<Identity>> {
        let m = self.entries.read().ok()?;
        let e = m.get(token)?;
        (e.until > Instant::now()).then(|| e.identity.clone())
    }

    pub fn insert(&self, token: &str, identity: Arc<Identity>) {
        let now = Instant::now();
        let remaining = cloudpods_apis::time::parse(&identity.expires_at)
            .map(|t| (t - chrono::Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(self.ttl);
        let until = now + remaining.min(self.ttl);
        if let Ok(mut m) = self.entries.write() {
            if m.len() >= self.capacity {
                m.retain(|_, e| e.until > now);
                if m.len() >= self.capacity {
                    let drop: Vec<String> = m.keys().take(self.capacity / 2).cloned().collect();
                    for k in drop {
                        m.remove(&k);
                    }
                }
            }
            m.insert(token.to_string(), Entry { identity, until });
        }
    }

    /// Drop one token (revoked).
    pub fn forget(&self, token: &str) {
        if let Ok(mut m) = self.entries.write() {
            m.remove(token);
        }
    }

    /// Drop every cached token of a user (disabled, password changed,
    /// roles changed) — or everything when `user_id` is `None`.
    pub fn forget_user(&self, user_id: Option<&str>) {
        if let Ok(mut m) = self.entries.write() {
            match user_id {
                Some(u) => m.retain(|_, e| e.identity.user_id != u),
                None => m.clear(),
            }
        }
    }

    /// Drop tokens whose audit id is listed (revocation feed).
    pub fn forget_audit_ids(&self, audit_ids: &[String]) {
        if audit_ids.is_empty() {
            return;
        }
        if let Ok(mut m) = self.entries.write() {
            m.retain(|_, e| !audit_ids.contains(&e.identity.audit_id));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Caches positive answers of an inner verifier (services talking to a
/// keystone in another process).
pub struct CachedVerifier {
    inner: Arc<dyn TokenVerifier>,
    pub cache: TokenCache,
}

impl CachedVerifier {
    pub fn new(inner: Arc<dyn TokenVerifier>, ttl: Duration, capacity: usize) -> CachedVerifier {
        CachedVerifier {
            inner,
            cache: TokenCache::new(ttl, capacity),
        }
    }
}

#[async_trait]
impl TokenVerifier for CachedVerifier {
    async fn verify(&self, token: &str) -> Result<Arc<Identity>> {
        if let Some(id) = self.cache.get(token) {
            return Ok(id);
        }
        let identity = self.inner.verify(token).await?;
        self.cache.insert(token, identity.clone());
        Ok(identity)
    }
}
