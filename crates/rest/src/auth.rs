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

/// Caches positive answers of an inner verifier.
pub struct CachedVerifier {
    inner: Arc<dyn TokenVerifier>,
    entries: RwLock<HashMap<String, Entry>>,
    ttl: Duration,
    capacity: usize,
}

impl CachedVerifier {
    pub fn new(inner: Arc<dyn TokenVerifier>, ttl: Duration, capacity: usize) -> CachedVerifier {
        CachedVerifier {
            inner,
            entries: RwLock::new(HashMap::new()),
            ttl,
            capacity: capacity.max(16),
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

#[async_trait]
impl TokenVerifier for CachedVerifier {
    async fn verify(&self, token: &str) -> Result<Arc<Identity>> {
        let now = Instant::now();
        if let Ok(m) = self.entries.read()
            && let Some(e) = m.get(token)
            && e.until > now
        {
            return Ok(e.identity.clone());
        }
        let identity = self.inner.verify(token).await?;
        let remaining = cloudpods_apis::time::parse(&identity.expires_at)
            .map(|t| (t - chrono::Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(self.ttl);
        let until = now + remaining.min(self.ttl);
        if let Ok(mut m) = self.entries.write() {
            if m.len() >= self.capacity {
                // Expired first; if still full, drop an arbitrary half.
                m.retain(|_, e| e.until > now);
                if m.len() >= self.capacity {
                    let drop: Vec<String> = m.keys().take(self.capacity / 2).cloned().collect();
                    for k in drop {
                        m.remove(&k);
                    }
                }
            }
            m.insert(
                token.to_string(),
                Entry {
                    identity: identity.clone(),
                    until,
                },
            );
        }
        Ok(identity)
    }
}
