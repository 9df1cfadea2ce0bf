//! Keystone-compatible identity service.
//!
//! Domains, projects, users, groups, roles, assignments, the service
//! catalog, Cloudpods' RBAC policies, and Fernet tokens. Other services
//! validate tokens through [`Keystone`] directly when they share its process
//! (all-in-one), or through `GET /v3/auth/tokens` otherwise.

pub mod bootstrap;
pub mod error;
mod handlers;
pub mod models;
mod privilege;
mod resources;
pub mod store;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cloudpods_db::{Db, Row, crud};
use cloudpods_fernet::KeyRepository;
use cloudpods_rbac::PolicyBlob;
use cloudpods_rest::auth::TokenCache;
use cloudpods_rest::{HttpError, Identity, Service, TenantCache, TokenVerifier};
use serde_json::json;

pub use error::KeystoneError;

/// Tunables (`[keystone]` in the config file).
#[derive(Debug, Clone)]
pub struct KeystoneOptions {
    /// Token lifetime (Cloudpods `TokenExpirationSeconds`, 24 h).
    pub token_ttl: Duration,
    /// Failed logins before a user is locked (0 = never).
    pub lockout_attempts: u32,
    pub lockout_duration: Duration,
    /// Fernet keys kept (staged + primary + secondaries).
    pub max_active_keys: usize,
    /// Rotate the Fernet keys this often (`None` = only on demand).
    pub key_rotation: Option<Duration>,
    /// How long validated tokens stay cached.
    pub cache_ttl: Duration,
    /// How often keys rotated by another process are re-read.
    pub key_reload: Duration,
}

impl Default for KeystoneOptions {
    fn default() -> Self {
        KeystoneOptions {
            token_ttl: Duration::from_secs(86400),
            lockout_attempts: 5,
            lockout_duration: Duration::from_secs(300),
            max_active_keys: 3,
            key_rotation: None,
            cache_ttl: Duration::from_secs(300),
            key_reload: Duration::from_secs(30),
        }
    }
}

/// The identity service's state.
pub struct Keystone {
    pub db: Db,
    pub opts: KeystoneOptions,
    pub tenants: Arc<TenantCache>,
    pub(crate) keys: RwLock<KeyRepository>,
    pub(crate) policy_cache: RwLock<HashMap<String, (i64, Arc<PolicyBlob>)>>,
    pub(crate) catalog_cache: RwLock<
        Option<(
            Vec<cloudpods_apis::identity::CatalogService>,
            std::time::Instant,
        )>,
    >,
    pub cache: TokenCache,
    pub(crate) last_key_reload: std::sync::Mutex<std::time::Instant>,
}

impl Keystone {
    /// Open the identity service on a migrated database: load (or create)
    /// the Fernet key repository.
    pub async fn open(
        db: Db,
        opts: KeystoneOptions,
        tenants: Arc<TenantCache>,
    ) -> Result<Arc<Keystone>, KeystoneError> {
        let keys = load_or_init_keys(&db).await?;
        let cache = TokenCache::new(opts.cache_ttl, 100_000);
        Ok(Arc::new(Keystone {
            db,
            opts,
            tenants,
            keys: RwLock::new(keys),
            policy_cache: RwLock::new(HashMap::new()),
            catalog_cache: RwLock::new(None),
            cache,
            last_key_reload: std::sync::Mutex::new(std::time::Instant::now()),
        }))
    }

    /// Rotate the Fernet keys (staged → primary, new staged, prune) and
    /// store them.
    pub async fn rotate_keys(&self) -> Result<(), KeystoneError> {
        // Start from the stored repository: another keystone may have rotated.
        let mut repo = load_or_init_keys(&self.db).await?;
        repo.rotate(self.opts.max_active_keys);
        save_keys(&self.db, &repo).await?;
        if let Ok(mut k) = self.keys.write() {
            *k = repo;
        }
        Ok(())
    }

    /// Reload keys stored by another process. When a key was pruned, tokens
    /// encrypted with it are no longer valid: the validation cache is cleared.
    pub async fn reload_keys(&self) -> Result<(), KeystoneError> {
        let repo = load_or_init_keys(&self.db).await?;
        let pruned = match self.keys.write() {
            Ok(mut k) => {
                let new: Vec<String> = repo.entries().into_iter().map(|(_, v)| v).collect();
                let pruned = k.entries().into_iter().any(|(_, v)| !new.contains(&v));
                *k = repo;
                pruned
            }
            Err(_) => false,
        };
        if pruned {
            self.cache.forget_user(None);
        }
        Ok(())
    }

    /// Index of the primary key (for tests and the rotation log line).
    pub fn primary_key_index(&self) -> u32 {
        self.keys.read().map(|k| k.primary_index()).unwrap_or(0)
    }

    /// The service catalog, cached for a few seconds.
    pub async fn catalog(
        &self,
    ) -> Result<Vec<cloudpods_apis::identity::CatalogService>, KeystoneError> {
        if let Ok(c) = self.catalog_cache.read()
            && let Some((cat, at)) = c.as_ref()
            && at.elapsed() < Duration::from_secs(5)
        {
            return Ok(cat.clone());
        }
        let cat = store::catalog(&self.db).await?;
        if let Ok(mut c) = self.catalog_cache.write() {
            *c = Some((cat.clone(), std::time::Instant::now()));
        }
        Ok(cat)
    }

    pub fn invalidate_catalog(&self) {
        if let Ok(mut c) = self.catalog_cache.write() {
            *c = None;
        }
    }

    /// Background duties: periodic key rotation and reload, pruning of
    /// expired revocations.
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ks = self.clone();
        tokio::spawn(async move {
            let mut last_rotation = std::time::Instant::now();
            let mut tick = tokio::time::interval(ks.opts.key_reload);
            loop {
                tick.tick().await;
                if let Some(every) = ks.opts.key_rotation
                    && last_rotation.elapsed() >= every
                {
                    match ks.rotate_keys().await {
                        Ok(()) => {
                            tracing::info!(primary = ks.primary_key_index(), "fernet keys rotated")
                        }
                        Err(e) => tracing::warn!(error = %e, "fernet key rotation failed"),
                    }
                    last_rotation = std::time::Instant::now();
                } else if let Err(e) = ks.reload_keys().await {
                    tracing::warn!(error = %e, "fernet key reload failed");
                }
                if let Err(e) = store::prune_revocations(&ks.db).await {
                    tracing::warn!(error = %e, "pruning revocations failed");
                }
            }
        })
    }
}

#[async_trait]
impl TokenVerifier for Keystone {
    async fn verify(&self, token: &str) -> Result<Arc<Identity>, HttpError> {
        match self.validate(token).await {
            Ok(v) => Ok(v.identity),
            Err(KeystoneError::Db(e)) => Err(e.into()),
            Err(_) => Err(cloudpods_rest::auth::invalid_token()),
        }
    }
}

async fn load_or_init_keys(db: &Db) -> Result<KeyRepository, KeystoneError> {
    let spec = cloudpods_db::ListSpec::default();
    let rows = crud::list(db, &models::FERNET_KEYS, &spec).await?.0;
    if rows.is_empty() {
        let repo = KeyRepository::initialize();
        save_keys(db, &repo).await?;
        // Another process may have won the race: read back what is stored.
        let rows = crud::list(db, &models::FERNET_KEYS, &spec).await?.0;
        return repo_from_rows(&rows);
    }
    repo_from_rows(&rows)
}

fn repo_from_rows(rows: &[Row]) -> Result<KeyRepository, KeystoneError> {
    let entries: Vec<(u32, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get("key_index").and_then(|v| v.as_i64()).unwrap_or(-1) as u32,
                store::s(r, "key_value"),
            )
        })
        .collect();
    KeyRepository::from_entries(entries).map_err(|e| KeystoneError::Keys(e.to_string()))
}

async fn save_keys(db: &Db, repo: &KeyRepository) -> Result<(), KeystoneError> {
    let mut tx = db.begin().await?;
    cloudpods_db::Sql::new("DELETE FROM `fernetkeys`")
        .query()?
        .execute(&mut *tx)
        .await
        .map_err(cloudpods_db::DbError::from)?;
    for (idx, key) in repo.entries() {
        let mut row = Row::new();
        row.insert("key_index".into(), json!(idx));
        row.insert("key_value".into(), json!(key));
        crud::prepare_insert(&models::FERNET_KEYS, &mut row);
        crud::insert(&mut *tx, &models::FERNET_KEYS, &row).await?;
    }
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// The keystone service: generic identity resources plus the token and
/// assignment routes, under `/v3`.
pub fn service(ks: Arc<Keystone>, verifier: Arc<dyn TokenVerifier>) -> Service {
    let svc = Service::new("keystone", "identity", "/v3", verifier, ks.tenants.clone());
    let svc = resources::register(svc, &ks);
    handlers::register(svc, ks)
}

/// Every identity table, for schema sync.
pub fn tables() -> Vec<&'static cloudpods_db::ModelDesc> {
    models::all()
}
