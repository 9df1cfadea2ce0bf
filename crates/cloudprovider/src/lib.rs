//! The cloud provider abstraction and its drivers.
//!
//! A [`Provider`] is one cloud account seen through its API: it lists its
//! regions and hands out a [`RegionDriver`] per region, which lists the
//! region's resources (zones, VPCs → subnets, security groups, hosts and
//! storages, VMs → disks / NICs / EIPs, images, snapshots, SKUs) and acts on
//! them. Resources come back as plain values ([`types`]) carrying the cloud's
//! global id (`external_id`), a status in our vocabulary and the cloud's tags,
//! so the region's sync engine can diff them against its rows by external id.
//!
//! Every list call follows the cloud's pagination to the end or fails as a
//! whole: a caller never sees a partial list, which is what lets the sync
//! engine delete rows only when it has seen the complete picture.
//!
//! Errors are distinguished the way callers need to act on them
//! ([`CloudError`]): `NotFound` (the resource is gone), `NotSupported`,
//! `Unauthorized` (credentials refused, with the cloud's message), `Throttled`
//! (after the driver's own retries) and the rest.
//!
//! Drivers: [`aws`] (EC2 query API and S3, SigV4 signed by
//! [`cloudpods_sigv4`], whose S3 client lists the buckets).

pub mod aws;
mod error;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use error::{CloudError, Result};
pub use types::*;

/// What a driver needs to reach an account.
#[derive(Clone)]
pub struct ProviderConfig {
    /// `Aws`.
    pub provider: String,
    /// Custom endpoint (`http://127.0.0.1:5000` for an emulator or an
    /// AWS-compatible cloud); empty = the cloud's public endpoints.
    pub access_url: String,
    /// Access key id.
    pub account: String,
    /// Secret access key. Never logged: `Debug` prints it redacted.
    pub secret: String,
    /// The region used for account-wide calls (credential check, region
    /// list).
    pub default_region: String,
    /// Items asked for per page of a paginated list.
    pub page_size: u32,
    /// Timeout of one HTTP call.
    pub timeout: Duration,
    /// Attempts of a throttled or failed (5xx, transport) call.
    pub max_attempts: u32,
    /// First back-off delay; doubles per attempt, with jitter.
    pub backoff: Duration,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            provider: "Aws".into(),
            access_url: String::new(),
            account: String::new(),
            secret: String::new(),
            default_region: "us-east-1".into(),
            page_size: 1000,
            timeout: Duration::from_secs(60),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("provider", &self.provider)
            .field("access_url", &self.access_url)
            .field("account", &self.account)
            .field("secret", &"<redacted>")
            .field("default_region", &self.default_region)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// Properties of a provider kind (Cloudpods' provider factory).
#[derive(Debug, Clone, Copy)]
pub struct ProviderInfo {
    /// `Aws`.
    pub provider: &'static str,
    /// Brand shown in lists; equal to the provider for public clouds.
    pub brand: &'static str,
    /// `public`, `private` or `onpremise`.
    pub cloud_env: &'static str,
    pub is_public_cloud: bool,
    /// The guest `hypervisor` value of its VMs (`aws`).
    pub hypervisor: &'static str,
}

/// Provider kinds this build has drivers for.
pub const PROVIDERS: &[ProviderInfo] = &[aws::INFO];

/// The driver info for a provider name (case-insensitive).
pub fn provider_info(name: &str) -> Option<&'static ProviderInfo> {
    PROVIDERS
        .iter()
        .find(|p| p.provider.eq_ignore_ascii_case(name) || p.hypervisor.eq_ignore_ascii_case(name))
}

/// Connect to an account (no call is made yet).
pub fn connect(cfg: ProviderConfig) -> Result<Arc<dyn Provider>> {
    match provider_info(&cfg.provider) {
        Some(p) if p.provider == aws::INFO.provider => Ok(Arc::new(aws::AwsProvider::new(cfg)?)),
        _ => Err(CloudError::NotSupported(format!(
            "provider {:?} (supported: {})",
            cfg.provider,
            PROVIDERS
                .iter()
                .map(|p| p.provider)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One cloud account.
#[async_trait]
pub trait Provider: Send + Sync {
    fn info(&self) -> &'static ProviderInfo;

    /// Check the credentials with a real call; returns the cloud's account
    /// id.
    async fn account_id(&self) -> Result<String>;

    /// The account's enabled regions.
    async fn regions(&self) -> Result<Vec<CloudRegion>>;

    /// The driver for one region (no call is made).
    fn region(&self, region_id: &str) -> Result<Arc<dyn RegionDriver>>;

    /// Object storage buckets (account-wide on AWS).
    async fn buckets(&self) -> Result<Vec<Bucket>> {
        Err(CloudError::NotSupported("buckets".into()))
    }
}

/// One region of an account: its resources and the operations on them.
#[async_trait]
pub trait RegionDriver: Send + Sync {
    fn region_id(&self) -> &str;

    async fn zones(&self) -> Result<Vec<Zone>>;
    async fn vpcs(&self) -> Result<Vec<Vpc>>;
    /// Subnets of every VPC.
    async fn networks(&self) -> Result<Vec<Network>>;
    async fn secgroups(&self) -> Result<Vec<SecGroup>>;
    /// Hypervisor hosts; public clouds have one virtual host per zone.
    async fn hosts(&self, zones: &[Zone]) -> Result<Vec<Host>>;
    /// Storages (disk kinds) per zone.
    async fn storages(&self, zones: &[Zone]) -> Result<Vec<Storage>>;
    async fn vms(&self) -> Result<Vec<Vm>>;
    async fn disks(&self) -> Result<Vec<Disk>>;
    /// Every instance's id and status, without details: far cheaper than
    /// [`RegionDriver::vms`], so incremental syncs compare it with what
    /// they listed last and fetch only what is new or changed.
    async fn vm_states(&self) -> Result<Vec<(String, String)>> {
        Err(CloudError::NotSupported("instance states".into()))
    }
    /// These instances (ids the cloud no longer has are left out).
    async fn vms_by_ids(&self, _ids: &[String]) -> Result<Vec<Vm>> {
        Err(CloudError::NotSupported("instances by id".into()))
    }
    /// The volumes matching `filter`.
    async fn disks_where(&self, _filter: &DiskFilter) -> Result<Vec<Disk>> {
        Err(CloudError::NotSupported("filtered volumes".into()))
    }
    async fn eips(&self) -> Result<Vec<Eip>>;
    /// Images owned by the account.
    async fn images(&self) -> Result<Vec<Image>>;
    async fn snapshots(&self) -> Result<Vec<Snapshot>>;
    /// Every instance type (a large answer: sync it on demand).
    async fn skus(&self) -> Result<Vec<Sku>>;
    /// One instance type; `NotFound` when the cloud does not offer it.
    async fn sku(&self, name: &str) -> Result<Sku>;

    /// One VM by external id; `NotFound` when it is gone (or terminated).
    async fn vm(&self, id: &str) -> Result<Vm>;
    async fn create_vm(&self, req: &CreateVm) -> Result<Vm>;
    async fn start_vm(&self, id: &str) -> Result<()>;
    async fn stop_vm(&self, id: &str, force: bool) -> Result<()>;
    async fn reboot_vm(&self, id: &str) -> Result<()>;
    async fn delete_vm(&self, id: &str) -> Result<()>;
    /// Change the instance type (the VM must be stopped).
    async fn change_config(&self, id: &str, instance_type: &str) -> Result<()>;

    async fn create_vpc(&self, name: &str, cidr: &str) -> Result<Vpc>;
    async fn delete_vpc(&self, id: &str) -> Result<()>;
    async fn create_network(&self, req: &CreateNetwork) -> Result<Network>;
    async fn delete_network(&self, id: &str) -> Result<()>;
    async fn create_secgroup(&self, vpc_id: &str, name: &str, desc: &str) -> Result<SecGroup>;
    async fn delete_secgroup(&self, id: &str) -> Result<()>;
    async fn add_rules(&self, secgroup_id: &str, rules: &[SecRule]) -> Result<()>;
    async fn remove_rules(&self, secgroup_id: &str, rules: &[SecRule]) -> Result<()>;
    async fn allocate_eip(&self, name: &str) -> Result<Eip>;
    async fn release_eip(&self, id: &str) -> Result<()>;
    async fn associate_eip(&self, eip_id: &str, vm_id: &str) -> Result<()>;
    async fn dissociate_eip(&self, eip_id: &str) -> Result<()>;
}
