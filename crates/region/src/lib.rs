//! The region controller: resource metadata of zones, wires, networks,
//! hosts, storages, servers, disks… and the tasks that drive every slow
//! operation on them through the host agents.

/// The two accessors every region resource writes alike: its descriptor
/// (a static, or `field` for one kept in `self.desc`) and the region's
/// database.
macro_rules! region_model {
    (field) => {
        fn desc(&self) -> &cloudpods_db::ModelDesc {
            self.desc
        }
        region_model!(@db);
    };
    (@db) => {
        fn db(&self) -> &cloudpods_db::Db {
            &self.region.db
        }
    };
    ($desc:expr) => {
        fn desc(&self) -> &cloudpods_db::ModelDesc {
            &$desc
        }
        region_model!(@db);
    };
}

pub mod agent;
pub mod cloud;
pub mod desc;
pub mod guestspec;
pub mod ipam;
pub mod models;
pub mod quota;
pub mod resources;
pub mod rows;
pub mod scheduler;
pub mod storagecache;
pub mod store;
pub mod tasks;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloudpods_db::{Db, Row, crud};
use cloudpods_rest::{Service, TenantCache, TokenVerifier};
use cloudpods_taskman::{Engine, EngineOptions};
use serde_json::json;

pub use scheduler::{LocalScheduler, Scheduler};

/// Region tunables.
#[derive(Debug, Clone)]
pub struct RegionOptions {
    /// A host without a heartbeat for this long goes offline (Cloudpods
    /// `HostOfflineMaxSeconds`).
    pub host_offline_after: Duration,
    /// Released addresses are not handed out again for this long.
    pub ip_reuse_after: Duration,
    /// Largest `count` of one create.
    pub max_batch: i64,
    /// How long a task waits for an agent's answer before asking again.
    pub agent_timeout: Duration,
    /// Quota defaults for projects without explicit limits.
    pub default_quota: quota::Limits,
    /// Servers stay in the recycle bin (pending delete) this long before
    /// they are deleted for real (Cloudpods `PendingDeleteExpireSeconds`).
    pub pending_delete_expire: Duration,
    /// Public clouds: the secret key, sync workers (crate::cloud).
    pub cloud: cloud::CloudOptions,
}

impl Default for RegionOptions {
    fn default() -> Self {
        RegionOptions {
            host_offline_after: Duration::from_secs(180),
            ip_reuse_after: Duration::from_secs(30),
            max_batch: 1000,
            agent_timeout: Duration::from_secs(300),
            default_quota: quota::Limits::default_project(),
            pending_delete_expire: Duration::from_secs(3 * 24 * 3600),
            cloud: cloud::CloudOptions::default(),
        }
    }
}

pub struct Region {
    pub db: Db,
    pub engine: Arc<Engine>,
    pub agents: agent::AgentClient,
    scheduler: RwLock<Arc<dyn Scheduler>>,
    pub opts: RegionOptions,
    pub tenants: Arc<TenantCache>,
    /// Serialises placement + host assignment within this process when the
    /// local scheduler is used.
    pub placement: tokio::sync::Mutex<()>,
    /// Cloud accounts: secret key and sync state (crate::cloud).
    pub cloud: cloud::CloudState,
}

/// The local cloud region every deployment has (Cloudpods' `default`).
pub const DEFAULT_REGION_ID: &str = "default";
pub const DEFAULT_VPC_ID: &str = "default";

impl Region {
    pub fn new(
        db: Db,
        engine_opts: EngineOptions,
        node: &str,
        opts: RegionOptions,
        tenants: Arc<TenantCache>,
    ) -> Arc<Region> {
        let engine = Engine::new(db.clone(), node, engine_opts);
        let opts_cloud = opts.cloud.clone();
        let region = Arc::new(Region {
            scheduler: RwLock::new(Arc::new(LocalScheduler::new(db.clone()))),
            db,
            engine,
            agents: agent::AgentClient::new(),
            opts,
            tenants,
            placement: tokio::sync::Mutex::new(()),
            cloud: cloud::CloudState::new(&opts_cloud),
        });
        tasks::register(&region);
        cloud::register_tasks(&region);
        region
    }

    pub fn scheduler(&self) -> Arc<dyn Scheduler> {
        self.scheduler
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Arc::new(LocalScheduler::new(self.db.clone())))
    }

    pub fn set_scheduler(&self, s: Arc<dyn Scheduler>) {
        if let Ok(mut w) = self.scheduler.write() {
            *w = s;
        }
    }

    /// Create the default cloud region and VPC, start the task engine and
    /// the background checks.
    pub async fn start(self: &Arc<Self>) -> Result<(), cloudpods_rest::HttpError> {
        self.ensure_defaults().await?;
        self.engine
            .start()
            .await
            .map_err(|e| cloudpods_rest::HttpError::internal(e.to_string()))?;
        tasks::actions::start_background(self);
        cloud::start_background(self);
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                match store::mark_offline_hosts(&me.db, me.opts.host_offline_after).await {
                    Ok(0) => {}
                    Ok(_) => me.scheduler().invalidate_all(),
                    Err(e) => tracing::warn!(error = %e, "offline host check failed"),
                }
                if let Err(e) = ipam::prune_history(&me.db, me.opts.ip_reuse_after * 4).await {
                    tracing::warn!(error = %e, "pruning ip history failed");
                }
            }
        });
        Ok(())
    }

    async fn ensure_defaults(&self) -> Result<(), cloudpods_rest::HttpError> {
        if crud::get(self.db.read(), &models::CLOUDREGIONS, DEFAULT_REGION_ID)
            .await?
            .is_none()
        {
            let mut row: Row = json!({"id": DEFAULT_REGION_ID, "name": "Default", "provider": "OneCloud",
                                      "is_public": true, "public_scope": "system", "domain_id": "default"})
            .as_object()
            .cloned()
            .unwrap_or_default();
            crud::prepare_insert(&models::CLOUDREGIONS, &mut row);
            let _ = crud::insert(self.db.write(), &models::CLOUDREGIONS, &row).await;
        }
        if crud::get(self.db.read(), &models::VPCS, DEFAULT_VPC_ID)
            .await?
            .is_none()
        {
            let mut row: Row = json!({"id": DEFAULT_VPC_ID, "name": "Default", "cloudregion_id": DEFAULT_REGION_ID,
                                      "is_default": true, "is_public": true, "public_scope": "system", "domain_id": "default"})
            .as_object()
            .cloned()
            .unwrap_or_default();
            crud::prepare_insert(&models::VPCS, &mut row);
            let _ = crud::insert(self.db.write(), &models::VPCS, &row).await;
        }
        Ok(())
    }
}

/// The region service (no URL prefix, catalog type `compute_v2`).
pub fn service(region: Arc<Region>, verifier: Arc<dyn TokenVerifier>) -> Service {
    let svc = Service::new("region", "compute", "", verifier, region.tenants.clone());
    let svc = resources::register(svc, &region);
    cloud::register(svc, &region)
}

/// Every region table (and the task tables), for schema sync.
pub fn tables() -> Vec<&'static cloudpods_db::ModelDesc> {
    let mut t = models::all();
    t.extend(cloudpods_taskman::models::all());
    t.push(&cloudpods_rest::metadata::METADATA);
    t.extend(cloud::tables());
    t
}
