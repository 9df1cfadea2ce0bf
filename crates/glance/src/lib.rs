//! The image service (glance): images as Cloudpods serves them under `/v1`
//! (Glance v1 wire shapes), their bytes streamed in and out in constant
//! memory, probed and converted with `qemu-img`, kept in a local directory
//! or an S3 bucket.
//!
//! * [`models`] — the tables (`images`, `image_properties`,
//!   `image_subformats`).
//! * [`resource`] — the image [`cloudpods_rest::Model`]: validation,
//!   details, sharing, quota, delete and the recycle bin.
//! * [`handlers`] — the routes the generic dispatcher cannot serve:
//!   header-driven create and update, streaming upload and download, `HEAD`.
//! * [`pipeline`] — the life of the bytes: `queued → saving → probing →
//!   converting → active` (or `save_fail` / `killed`), resumed after a
//!   restart.
//! * [`upload`], [`qemu`], [`store`], [`copy_from`] — receiving and
//!   hashing, probing and converting, the storage backends (S3 through
//!   [`s3`], the workspace's one S3 client), URL imports that cannot reach
//!   internal addresses.

pub mod copy_from;
pub mod error;
pub mod handlers;
pub mod models;
pub mod pipeline;
pub mod qemu;
pub mod resource;
pub mod store;
pub mod upload;

/// The S3 client of the S3 backend (`cloudpods_sigv4::s3`).
pub use cloudpods_sigv4::s3;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloudpods_db::Db;
use cloudpods_rest::{Service, TenantCache, TokenVerifier};

pub use error::{GlanceError, Result};

/// Where image files are kept.
#[derive(Debug, Clone, Default)]
pub enum BackendOptions {
    #[default]
    Local,
    S3(s3::S3Config),
}

/// Glance tunables.
#[derive(Debug, Clone)]
pub struct GlanceOptions {
    /// Local directory of image files (and staging for S3).
    pub images_dir: PathBuf,
    pub backend: BackendOptions,
    /// Sub-formats produced for every image (`qcow2`, `raw`, `vmdk`, `vhd`).
    pub target_formats: Vec<String>,
    /// Images per project (0 = unlimited).
    pub image_quota: i64,
    /// Deleted images go to the recycle bin first.
    pub enable_pending_delete: bool,
    pub pending_delete_expire: Duration,
    /// Networks `copy_from` may reach although they are internal.
    pub copy_from_allow: Vec<copy_from::Cidr>,
    /// Largest image accepted in bytes (0 = unlimited).
    pub max_image_bytes: u64,
    pub qemu_img: PathBuf,
    /// Images probed/converted at once.
    pub convert_workers: usize,
}

impl Default for GlanceOptions {
    fn default() -> Self {
        GlanceOptions {
            images_dir: PathBuf::from("./data/images"),
            backend: BackendOptions::Local,
            target_formats: Vec::new(),
            image_quota: 10,
            enable_pending_delete: false,
            pending_delete_expire: Duration::from_secs(3 * 24 * 3600),
            copy_from_allow: Vec::new(),
            max_image_bytes: 0,
            qemu_img: qemu::default_qemu_img(),
            convert_workers: 2,
        }
    }
}

pub struct Glance {
    pub db: Db,
    pub tenants: Arc<TenantCache>,
    pub opts: GlanceOptions,
    pub store: store::Store,
    convert: tokio::sync::Semaphore,
}

impl Glance {
    /// Check the options and prepare the storage (directory, bucket).
    pub async fn open(
        db: Db,
        tenants: Arc<TenantCache>,
        opts: GlanceOptions,
    ) -> Result<Arc<Glance>> {
        for f in &opts.target_formats {
            if !cloudpods_apis::image::CONVERTIBLE_FORMATS.contains(&f.as_str()) {
                return Err(GlanceError::Input(format!(
                    "target_image_formats: cannot convert to {f:?} (one of {})",
                    cloudpods_apis::image::CONVERTIBLE_FORMATS.join(", ")
                )));
            }
        }
        let backend = match &opts.backend {
            BackendOptions::Local => store::Backend::Local,
            BackendOptions::S3(c) => store::Backend::S3(s3::S3::new(c.clone())?),
        };
        let store = store::Store::new(opts.images_dir.clone(), backend);
        store.init().await?;
        Ok(Arc::new(Glance {
            db,
            tenants,
            convert: tokio::sync::Semaphore::new(opts.convert_workers.max(1)),
            opts,
            store,
        }))
    }

    /// Resume what a restart interrupted and start the recycle-bin sweep.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        self.recover().await?;
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = me.expire_pending_deletes().await {
                    tracing::warn!(error = %e, "image recycle bin sweep failed");
                }
            }
        });
        Ok(())
    }
}

/// The image service (`/v1`, catalog type `image`).
pub fn service(g: Arc<Glance>, verifier: Arc<dyn TokenVerifier>) -> Service {
    let svc = Service::new("glance", "image", "/v1", verifier, g.tenants.clone());
    let model = Arc::new(resource::ImageModel::new(g.clone()));
    handlers::register(svc.model(model.clone()), g, model)
}

/// Every glance table, for schema sync.
pub fn tables() -> Vec<&'static cloudpods_db::ModelDesc> {
    let mut t = models::all();
    t.push(&cloudpods_rest::metadata::METADATA);
    t
}
