//! Configuration: defaults, then a TOML file, then `CLOUDPODS_*` environment
//! variables, then command-line flags (each overriding the previous).

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the embedded database, keys and credentials live.
    pub data_dir: PathBuf,
    /// Database URL; empty = SQLite in the data dir. `mysql://user:pw@host:3306/db`
    /// or Cloudpods' `user:pw@tcp(host:3306)/db` select MariaDB/MySQL.
    pub database: String,
    /// Address services listen on.
    pub listen_address: String,
    /// Host name or address written into the service catalog (defaults to
    /// the listen address, or 127.0.0.1 when listening on all addresses).
    pub public_host: String,
    /// The keystone region id services register under (`region0`).
    pub region_id: String,
    /// Bootstrap admin password; generated on first start when empty.
    pub admin_password: String,
    /// Log filter (`info`, `debug`, `cloudpods_rest=debug`…).
    pub log: String,
    pub keystone: KeystoneConfig,
    pub region: RegionConfig,
    pub scheduler: SchedulerConfig,
    pub glance: GlanceConfig,
    pub apigateway: ApigatewayConfig,
    /// Where a stand-alone service finds keystone and its credentials.
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionConfig {
    pub port: u16,
    /// Identity of this process in task leases; stable across restarts.
    /// Empty = kept in `<data_dir>/region-node-id`.
    pub node: String,
    /// Tasks run concurrently by this process.
    pub task_workers: usize,
    /// Seconds without a heartbeat before a host goes offline.
    pub host_offline_seconds: u64,
    /// Seconds before a released address is handed out again.
    pub ip_reuse_seconds: u64,
    /// Seconds a task waits for an agent before asking again.
    pub agent_timeout_seconds: u64,
    /// Deleted servers go to the recycle bin first.
    pub enable_pending_delete: bool,
    /// Seconds a server stays in the recycle bin before it is deleted.
    pub pending_delete_expire_seconds: u64,
    /// Largest `count` of one create.
    pub max_batch: i64,
    /// Key encrypting cloud account secrets at rest (64 hex digits, or a
    /// passphrase). Empty = `<data_dir>/cloud-secret.key`, generated on
    /// first start. Every region process of a deployment needs the same key.
    pub cloud_secret_key: String,
    /// Cloud accounts synced at the same time.
    pub cloud_sync_workers: usize,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            port: 30888,
            node: String::new(),
            task_workers: 32,
            host_offline_seconds: 180,
            ip_reuse_seconds: 30,
            agent_timeout_seconds: 300,
            enable_pending_delete: false,
            pending_delete_expire_seconds: 3 * 24 * 3600,
            max_batch: 1000,
            cloud_secret_key: String::new(),
            cloud_sync_workers: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub port: u16,
    /// `spread` (fill the emptiest hosts first) or `pack`.
    pub policy: String,
    /// Seconds between full rebuilds of the candidate cache (changes the
    /// region makes are picked up at once through notifications).
    pub refresh_seconds: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            port: 30887,
            policy: "spread".into(),
            refresh_seconds: 30,
        }
    }
}

/// A list given as a TOML array or as one comma-separated string (the
/// form environment variables and Cloudpods' options use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StrList {
    List(Vec<String>),
    Csv(String),
}

impl Default for StrList {
    fn default() -> Self {
        StrList::List(Vec::new())
    }
}

impl StrList {
    pub fn items(&self) -> Vec<String> {
        let v: Vec<String> = match self {
            StrList::List(v) => v.clone(),
            StrList::Csv(s) => s.split(',').map(str::to_string).collect(),
        };
        v.into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApigatewayConfig {
    pub port: u16,
    /// Base64 of the 32-byte key sessions are sealed under. Every gateway
    /// of a deployment needs the same key; empty = `<data_dir>/apigateway.key`
    /// (made on first start).
    pub cookie_key: String,
    /// Mark session cookies `Secure` even when requests do not say they
    /// came over TLS (`X-Forwarded-Proto`).
    pub secure_cookies: bool,
}

impl Default for ApigatewayConfig {
    fn default() -> Self {
        ApigatewayConfig {
            port: 30300,
            cookie_key: String::new(),
            secure_cookies: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GlanceConfig {
    pub port: u16,
    /// Image files (and S3 staging); empty = `<data_dir>/images`.
    pub images_dir: PathBuf,
    /// `local` or `s3`.
    pub storage: String,
    /// S3 endpoint (path-style), e.g. `http://127.0.0.1:9000`.
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub s3_region: String,
    /// Sub-formats produced for every image (`qcow2,raw,vmdk,vhd`).
    pub target_image_formats: StrList,
    /// Images per project (0 = unlimited).
    pub image_quota: i64,
    /// Deleted images go to the recycle bin first.
    pub enable_pending_delete: bool,
    pub pending_delete_expire_seconds: u64,
    /// Internal networks `copy_from` may fetch from (CIDRs).
    pub copy_from_allow_cidrs: StrList,
    /// Largest image accepted, in MB (0 = unlimited).
    pub max_image_size_mb: u64,
    pub qemu_img: String,
    /// Images probed/converted at once.
    pub convert_workers: usize,
}

impl Default for GlanceConfig {
    fn default() -> Self {
        GlanceConfig {
            port: 30292,
            images_dir: PathBuf::new(),
            storage: "local".into(),
            s3_endpoint: String::new(),
            s3_bucket: "cloudpods-images".into(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            s3_region: "us-east-1".into(),
            target_image_formats: StrList::default(),
            image_quota: 10,
            enable_pending_delete: false,
            pending_delete_expire_seconds: 3 * 24 * 3600,
            copy_from_allow_cidrs: StrList::default(),
            max_image_size_mb: 0,
            qemu_img: "qemu-img".into(),
            convert_workers: 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KeystoneConfig {
    pub port: u16,
    pub token_ttl_seconds: u64,
    pub lockout_attempts: u32,
    pub lockout_seconds: u64,
    pub fernet_max_active_keys: usize,
    /// Rotate Fernet keys every N hours (0 = only with `cloudpods fernet-rotate`).
    pub fernet_rotation_hours: u64,
    /// Re-read keys rotated by another process this often.
    pub fernet_reload_seconds: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// e.g. `http://127.0.0.1:30500/v3`; empty = keystone in this process.
    pub auth_url: String,
    pub admin_user: String,
    pub admin_password: String,
    pub admin_project: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database: String::new(),
            listen_address: "127.0.0.1".into(),
            public_host: String::new(),
            region_id: "region0".into(),
            admin_password: String::new(),
            log: "info".into(),
            keystone: KeystoneConfig::default(),
            region: RegionConfig::default(),
            scheduler: SchedulerConfig::default(),
            glance: GlanceConfig::default(),
            apigateway: ApigatewayConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        KeystoneConfig {
            port: 30500,
            token_ttl_seconds: 86400,
            lockout_attempts: 5,
            lockout_seconds: 300,
            fernet_max_active_keys: 3,
            fernet_rotation_hours: 0,
            fernet_reload_seconds: 30,
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "CLOUDPODS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (embedded database, keys, credentials).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long, global = true)]
    pub database: Option<String>,
    /// Listen address.
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// Host written into the service catalog.
    #[arg(long, global = true)]
    pub public_host: Option<String>,
    /// Bootstrap admin password (instead of a generated one).
    #[arg(long, global = true)]
    pub admin_password: Option<String>,
    /// Keystone port (0 = any free port).
    #[arg(long, global = true)]
    pub keystone_port: Option<u16>,
    /// Region port (0 = any free port).
    #[arg(long, global = true)]
    pub region_port: Option<u16>,
    /// Scheduler port (0 = any free port).
    #[arg(long, global = true)]
    pub scheduler_port: Option<u16>,
    /// Image service (glance) port (0 = any free port).
    #[arg(long, global = true)]
    pub glance_port: Option<u16>,
    /// API gateway and web console port (0 = any free port).
    #[arg(long, global = true)]
    pub apigateway_port: Option<u16>,
    /// Log filter.
    #[arg(long, global = true)]
    pub log: Option<String>,
}

impl Config {
    /// Load with the documented precedence.
    pub fn load(o: &Overrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &o.config {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("CLOUDPODS_").split("__").ignore(&["config"]));
        let mut c: Config = fig.extract()?;
        if let Some(v) = &o.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &o.database {
            c.database = v.clone();
        }
        if let Some(v) = &o.listen {
            c.listen_address = v.clone();
        }
        if let Some(v) = &o.public_host {
            c.public_host = v.clone();
        }
        if let Some(v) = &o.admin_password {
            c.admin_password = v.clone();
        }
        if let Some(v) = o.keystone_port {
            c.keystone.port = v;
        }
        if let Some(v) = o.region_port {
            c.region.port = v;
        }
        if let Some(v) = o.scheduler_port {
            c.scheduler.port = v;
        }
        if let Some(v) = o.glance_port {
            c.glance.port = v;
        }
        if let Some(v) = o.apigateway_port {
            c.apigateway.port = v;
        }
        if let Some(v) = &o.log {
            c.log = v.clone();
        }
        Ok(c)
    }

    pub fn database_url(&self) -> String {
        if self.database.is_empty() {
            format!("sqlite://{}/cloudpods.db?mode=rwc", self.data_dir.display())
        } else {
            self.database.clone()
        }
    }

    pub fn catalog_host(&self) -> String {
        if !self.public_host.is_empty() {
            return self.public_host.clone();
        }
        match self.listen_address.as_str() {
            "0.0.0.0" | "::" | "" => "127.0.0.1".into(),
            a => a.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_file_env_flag() {
        let dir = std::env::temp_dir().join(format!("cpcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "region_id = \"from-file\"\nlog = \"warn\"\n[keystone]\nport = 1111\n[region]\nport = 0\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(file.clone()),
            keystone_port: Some(2222),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.region_id, "from-file");
        assert_eq!(c.keystone.port, 2222);
        assert_eq!(c.log, "warn");
        assert!(c.database_url().starts_with("sqlite://"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
