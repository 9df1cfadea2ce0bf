//! Starting services: the database, schema, bootstrap, listeners, catalog.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cloudpods_db::Db;
use cloudpods_keystone::{Keystone, KeystoneOptions, bootstrap};
use cloudpods_rest::{TenantCache, TokenVerifier};
use serde_json::json;

use crate::config::Config;

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Keystone,
    Region,
    Scheduler,
    Glance,
    Apigateway,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Keystone => "keystone",
            Role::Region => "region",
            Role::Scheduler => "scheduler",
            Role::Glance => "glance",
            Role::Apigateway => "apigateway",
        }
    }
}

/// Every service that exists, for all-in-one.
pub const ALL: &[Role] = &[
    Role::Keystone,
    Role::Region,
    Role::Scheduler,
    Role::Glance,
    Role::Apigateway,
];

/// One listening service.
pub struct Running {
    pub role: Role,
    pub url: String,
}

pub async fn open_db(cfg: &Config) -> anyhow::Result<Db> {
    if cfg.database.is_empty() {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let url = cfg.database_url();
    Db::connect(&url)
        .await
        .with_context(|| format!("connecting to database {}", redact(&url)))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***{}", &url[..a], &url[b..]),
        _ => url.to_string(),
    }
}

pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    // Every service's tables: processes of one deployment share the
    // database, and whichever starts first brings the schema up to date.
    let mut tables = cloudpods_keystone::tables();
    tables.extend(cloudpods_region::tables());
    tables.extend(cloudpods_glance::models::all());
    cloudpods_db::migrate::sync_schema(db, &tables, &[])
        .await
        .context("migrating the schema")
}

fn glance_options(cfg: &Config) -> anyhow::Result<cloudpods_glance::GlanceOptions> {
    let g = &cfg.glance;
    let backend = match g.storage.as_str() {
        "" | "local" => cloudpods_glance::BackendOptions::Local,
        "s3" => cloudpods_glance::BackendOptions::S3(cloudpods_glance::s3::S3Config {
            endpoint: g.s3_endpoint.clone(),
            bucket: g.s3_bucket.clone(),
            access_key: g.s3_access_key.clone(),
            secret_key: g.s3_secret_key.clone(),
            region: g.s3_region.clone(),
        }),
        other => anyhow::bail!("[glance] storage must be local or s3, not {other:?}"),
    };
    let copy_from_allow = g
        .copy_from_allow_cidrs
        .items()
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|e| anyhow::anyhow!("[glance] copy_from_allow_cidrs: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(cloudpods_glance::GlanceOptions {
        images_dir: if g.images_dir.as_os_str().is_empty() {
            cfg.data_dir.join("images")
        } else {
            g.images_dir.clone()
        },
        backend,
        target_formats: g.target_image_formats.items(),
        image_quota: g.image_quota,
        enable_pending_delete: g.enable_pending_delete,
        pending_delete_expire: Duration::from_secs(g.pending_delete_expire_seconds),
        copy_from_allow,
        max_image_bytes: g.max_image_size_mb.saturating_mul(1 << 20),
        qemu_img: PathBuf::from(&g.qemu_img),
        convert_workers: g.convert_workers.max(1),
    })
}

fn keystone_options(cfg: &Config) -> KeystoneOptions {
    KeystoneOptions {
        token_ttl: Duration::from_secs(cfg.keystone.token_ttl_seconds.max(1)),
        lockout_attempts: cfg.keystone.lockout_attempts,
        lockout_duration: Duration::from_secs(cfg.keystone.lockout_seconds),
        max_active_keys: cfg.keystone.fernet_max_active_keys,
        key_rotation: (cfg.keystone.fernet_rotation_hours > 0)
            .then(|| Duration::from_secs(cfg.keystone.fernet_rotation_hours * 3600)),
        key_reload: Duration::from_secs(cfg.keystone.fernet_reload_seconds.max(1)),
        ..Default::default()
    }
}

async fn listen(cfg: &Config, port: u16) -> anyhow::Result<(tokio::net::TcpListener, u16)> {
    let addr: SocketAddr = format!("{}:{port}", cfg.listen_address)
        .parse()
        .with_context(|| format!("invalid listen address {}", cfg.listen_address))?;
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

/// Write `content` to `path` atomically with mode 0600.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Services started in this process.
pub struct Started {
    pub running: Vec<Running>,
    /// The admin password when bootstrap generated or set it in this run.
    pub admin_password: Option<String>,
    pub keystone: Option<Arc<Keystone>>,
    pub region: Option<Arc<cloudpods_region::Region>>,
    pub db: Db,
    pub elapsed: Duration,
    shutdown: tokio::sync::broadcast::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Started {
    pub fn url(&self, role: Role) -> Option<&str> {
        self.running
            .iter()
            .find(|r| r.role == role)
            .map(|r| r.url.as_str())
    }

    /// Stop serving and close the database.
    pub async fn stop(self) {
        if let Some(r) = &self.region {
            r.engine.stop();
        }
        let _ = self.shutdown.send(());
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.db.close().await;
    }
}

/// Open the database, migrate, bootstrap and start listening.
pub async fn start(cfg: &Config, roles: &[Role]) -> anyhow::Result<Started> {
    let started = Instant::now();
    let db = open_db(cfg).await?;
    migrate(&db).await?;
    let tenants = Arc::new(TenantCache::new(db.clone()));
    let (shutdown, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut running = Vec::new();
    let mut tasks = Vec::new();
    let mut admin_password = None;
    let mut keystone = None;
    let host = cfg.catalog_host();

    if roles.contains(&Role::Keystone) {
        let given = (!cfg.admin_password.is_empty()).then_some(cfg.admin_password.as_str());
        let boot = bootstrap::bootstrap(&db, given, &cfg.region_id)
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
        admin_password = boot.admin_password.clone();
        let ks = Keystone::open(db.clone(), keystone_options(cfg), tenants.clone())
            .await
            .map_err(|e| anyhow::anyhow!("opening keystone: {e}"))?;
        let _bg = ks.spawn_background();
        let (listener, port) = listen(cfg, cfg.keystone.port).await?;
        let url = format!("http://{host}:{port}/v3");
        register_endpoints(&db, cfg, "identity", "keystone", &url).await?;
        let verifier: Arc<dyn TokenVerifier> = ks.clone();
        let router =
            cloudpods_rest::server::router(cloudpods_keystone::service(ks.clone(), verifier));
        tasks.push(serve(listener, router, &shutdown));
        running.push(Running {
            role: Role::Keystone,
            url,
        });
        keystone = Some(ks);
    }

    let mut region = None;
    if roles.contains(&Role::Region) {
        let verifier: Arc<dyn TokenVerifier> = match &keystone {
            Some(ks) => ks.clone(),
            None => remote_verifier(cfg).await?,
        };
        let (listener, port) = listen(cfg, cfg.region.port).await?;
        let url = format!("http://{host}:{port}");
        let node = node_id(cfg)?;
        let secret = cloudpods_region::store::setting(&db, "task_callback_secret", || {
            let b: [u8; 32] = rand::random();
            hex::encode(b)
        })
        .await?;
        let engine_opts = cloudpods_taskman::EngineOptions {
            workers: cfg.region.task_workers.max(1),
            callback_base: url.clone(),
            callback_secret: secret.into_bytes(),
            ..Default::default()
        };
        let opts = cloudpods_region::RegionOptions {
            host_offline_after: Duration::from_secs(cfg.region.host_offline_seconds.max(1)),
            ip_reuse_after: Duration::from_secs(cfg.region.ip_reuse_seconds),
            agent_timeout: Duration::from_secs(cfg.region.agent_timeout_seconds.max(1)),
            max_batch: cfg.region.max_batch.max(1),
            pending_delete_expire: Duration::from_secs(cfg.region.pending_delete_expire_seconds),
            cloud: cloudpods_region::cloud::CloudOptions {
                secret_key: Some(
                    cloudpods_region::cloud::secret::load_key(
                        &cfg.region.cloud_secret_key,
                        &cfg.data_dir,
                    )
                    .map_err(|e| anyhow::anyhow!("loading the cloud secret key: {e}"))?,
                ),
                sync_workers: cfg.region.cloud_sync_workers.max(1),
                ..Default::default()
            },
            ..Default::default()
        };
        cloudpods_rest::generic::set_pending_delete_enabled(cfg.region.enable_pending_delete);
        let r =
            cloudpods_region::Region::new(db.clone(), engine_opts, &node, opts, tenants.clone());
        r.start()
            .await
            .map_err(|e| anyhow::anyhow!("starting the region: {e}"))?;
        register_endpoints(&db, cfg, "compute_v2", "region2", &url).await?;
        if let Some(ks) = &keystone {
            ks.invalidate_catalog();
        }
        if !roles.contains(&Role::Scheduler) && keystone.is_none() {
            // The scheduler runs elsewhere: ask it over HTTP, found in the
            // token catalog. (With keystone but no scheduler in the process
            // — benchmarks — the region places by itself.)
            let client = service_client(cfg).await?;
            r.set_scheduler(Arc::new(cloudpods_scheduler::RemoteScheduler::new(client)));
        }
        let router = cloudpods_rest::server::router(cloudpods_region::service(r.clone(), verifier));
        tasks.push(serve(listener, router, &shutdown));
        running.push(Running {
            role: Role::Region,
            url,
        });
        region = Some(r);
    }

    if roles.contains(&Role::Scheduler) {
        let verifier: Arc<dyn TokenVerifier> = match &keystone {
            Some(ks) => ks.clone(),
            None => remote_verifier(cfg).await?,
        };
        let (listener, port) = listen(cfg, cfg.scheduler.port).await?;
        let url = format!("http://{host}:{port}");
        let opts = cloudpods_scheduler::SchedulerOptions {
            policy: cloudpods_scheduler::Policy::parse(&cfg.scheduler.policy)
                .map_err(|e| anyhow::anyhow!("[scheduler] policy: {e}"))?,
            refresh_interval: Duration::from_secs(cfg.scheduler.refresh_seconds.max(1)),
            ip_reuse_after: Duration::from_secs(cfg.region.ip_reuse_seconds),
            ..Default::default()
        };
        let sched = cloudpods_scheduler::SchedulerService::new(db.clone(), opts)
            .await
            .map_err(|e| anyhow::anyhow!("starting the scheduler: {e}"))?;
        let _refresh = sched.spawn_refresh();
        if let Some(r) = &region {
            // In one process the region calls the scheduler directly and
            // tells it about every change.
            r.set_scheduler(sched.clone());
        }
        register_endpoints(&db, cfg, "scheduler", "scheduler", &url).await?;
        if let Some(ks) = &keystone {
            ks.invalidate_catalog();
        }
        let router = cloudpods_rest::server::router(cloudpods_scheduler::service(
            sched,
            verifier,
            tenants.clone(),
        ));
        tasks.push(serve(listener, router, &shutdown));
        running.push(Running {
            role: Role::Scheduler,
            url,
        });
    }

    if roles.contains(&Role::Glance) {
        let verifier: Arc<dyn TokenVerifier> = match &keystone {
            Some(ks) => ks.clone(),
            None => remote_verifier(cfg).await?,
        };
        let (listener, port) = listen(cfg, cfg.glance.port).await?;
        let url = format!("http://{host}:{port}/v1");
        let g = cloudpods_glance::Glance::open(db.clone(), tenants.clone(), glance_options(cfg)?)
            .await
            .map_err(|e| anyhow::anyhow!("starting the image service: {e}"))?;
        g.start()
            .await
            .map_err(|e| anyhow::anyhow!("starting the image service: {e}"))?;
        register_endpoints(&db, cfg, "image", "glance", &url).await?;
        if let Some(ks) = &keystone {
            ks.invalidate_catalog();
        }
        let router = cloudpods_rest::server::router(cloudpods_glance::service(g, verifier));
        tasks.push(serve(listener, router, &shutdown));
        running.push(Running {
            role: Role::Glance,
            url,
        });
    }

    if roles.contains(&Role::Apigateway) {
        let verifier: Arc<dyn TokenVerifier> = match &keystone {
            Some(ks) => ks.clone(),
            None => remote_verifier(cfg).await?,
        };
        let keystone_url = match running.iter().find(|r| r.role == Role::Keystone) {
            Some(k) => k.url.clone(),
            None => cfg.auth.auth_url.clone(),
        };
        let opts = cloudpods_apigateway::GatewayOptions {
            keystone_url,
            region_id: cfg.region_id.clone(),
            cookie_key: gateway_key(cfg)?,
            secure_cookies: cfg.apigateway.secure_cookies,
            resources: gateway_resources(),
        };
        let http = reqwest::Client::builder()
            .build()
            .context("building the gateway's HTTP client")?;
        let gw = cloudpods_apigateway::Gateway::new(opts, verifier, http)
            .map_err(|e| anyhow::anyhow!("starting the API gateway: {e}"))?;
        let (listener, port) = listen(cfg, cfg.apigateway.port).await?;
        let url = format!("http://{host}:{port}");
        tasks.push(serve(listener, cloudpods_apigateway::router(gw), &shutdown));
        running.push(Running {
            role: Role::Apigateway,
            url,
        });
    }
    Ok(Started {
        running,
        admin_password,
        keystone,
        region,
        db,
        elapsed: started.elapsed(),
        shutdown,
        tasks,
    })
}

/// The key the gateway seals sessions under: `[apigateway] cookie_key`
/// (base64 of 32 bytes), else `<data_dir>/apigateway.key`, made once.
fn gateway_key(cfg: &Config) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &str, from: &str| -> anyhow::Result<[u8; 32]> {
        let raw = b64
            .decode(s.trim())
            .with_context(|| format!("{from}: not base64"))?;
        raw.try_into()
            .map_err(|_| anyhow::anyhow!("{from}: the key must be 32 bytes"))
    };
    if !cfg.apigateway.cookie_key.is_empty() {
        return decode(&cfg.apigateway.cookie_key, "[apigateway] cookie_key");
    }
    let path = cfg.data_dir.join("apigateway.key");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return decode(&s, &path.display().to_string());
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let key: [u8; 32] = rand::random();
    write_private(&path, &b64.encode(key))?;
    Ok(key)
}

/// What the gateway routes: every resource of every service, with the
/// scopes it is read and managed at.
fn gateway_resources() -> Vec<cloudpods_apigateway::ResourceInfo> {
    let mut descs = cloudpods_keystone::tables();
    descs.extend(cloudpods_region::tables());
    descs.extend(cloudpods_glance::models::all());
    let mut out: Vec<_> = descs
        .into_iter()
        .map(|d| cloudpods_apigateway::ResourceInfo {
            plural: d.plural.to_string(),
            keyword: d.keyword.to_string(),
            service: d.service.to_string(),
            read_scope: d.read_scope,
            manage_scope: d.manage_scope,
        })
        .collect();
    // Routes that are not tables of their own.
    let extra =
        |plural: &str, keyword: &str, service: &str, manage| cloudpods_apigateway::ResourceInfo {
            plural: plural.into(),
            keyword: keyword.into(),
            service: service.into(),
            read_scope: cloudpods_rbac::Scope::Project,
            manage_scope: manage,
        };
    out.push(extra(
        "role_assignments",
        "role_assignment",
        "identity",
        cloudpods_rbac::Scope::Domain,
    ));
    out.push(extra(
        "usages",
        "usage",
        "compute",
        cloudpods_rbac::Scope::System,
    ));
    out
}

/// Register a service's public, internal and admin endpoints.
async fn register_endpoints(
    db: &Db,
    cfg: &Config,
    service_type: &str,
    name: &str,
    url: &str,
) -> anyhow::Result<()> {
    for iface in ["public", "internal", "admin"] {
        bootstrap::ensure_endpoint(db, service_type, name, &cfg.region_id, iface, url)
            .await
            .map_err(|e| anyhow::anyhow!("registering the {name} endpoint: {e}"))?;
    }
    Ok(())
}

/// Serve `router` on `listener` until shutdown.
fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: &tokio::sync::broadcast::Sender<()>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let mut rx = shutdown.subscribe();
    tokio::spawn(cloudpods_rest::server::serve(
        listener,
        router,
        async move {
            let _ = rx.recv().await;
        },
    ))
}

/// This process's stable identity in task leases.
fn node_id(cfg: &Config) -> anyhow::Result<String> {
    if !cfg.region.node.is_empty() {
        return Ok(cfg.region.node.clone());
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let path = cfg.data_dir.join("region-node-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let b: [u8; 6] = rand::random();
    let id = format!("{}-{}", host.trim(), hex::encode(b));
    std::fs::write(&path, &id)?;
    Ok(id)
}

/// Validate tokens with a keystone in another process.
/// Keystone credentials of a service running without keystone in its
/// process (`[auth]`, or the `OS_*` variables).
fn service_credentials(cfg: &Config) -> anyhow::Result<cloudpods_sdk::Config> {
    let mut sdk = cloudpods_sdk::Config::from_env()
        .unwrap_or_else(|_| cloudpods_sdk::Config::new(cfg.auth.auth_url.clone()));
    if !cfg.auth.auth_url.is_empty() {
        sdk.auth_url = cfg.auth.auth_url.clone();
    }
    if !cfg.auth.admin_user.is_empty() {
        sdk = sdk.with_password(&cfg.auth.admin_user, &cfg.auth.admin_password);
    }
    if !cfg.auth.admin_project.is_empty() {
        sdk = sdk.with_project(&cfg.auth.admin_project);
    }
    if sdk.auth_url.is_empty() {
        anyhow::bail!(
            "a service without keystone in its process needs auth.auth_url (or OS_AUTH_URL) and credentials"
        );
    }
    Ok(sdk)
}

/// A logged-in client for calling other services.
async fn service_client(cfg: &Config) -> anyhow::Result<cloudpods_sdk::Client> {
    cloudpods_sdk::Client::new(service_credentials(cfg)?)
        .await
        .map_err(|e| anyhow::anyhow!("logging in to keystone: {e}"))
}

async fn remote_verifier(cfg: &Config) -> anyhow::Result<Arc<dyn TokenVerifier>> {
    let sdk = service_credentials(cfg)?;
    let remote = cloudpods_rest::remote::RemoteVerifier::connect(sdk)
        .await
        .map_err(|e| anyhow::anyhow!("logging in to keystone: {e}"))?;
    let cached = Arc::new(cloudpods_rest::auth::CachedVerifier::new(
        remote.clone(),
        Duration::from_secs(300),
        100_000,
    ));
    let _poller = remote.spawn_revocation_poller(cached.clone(), Duration::from_secs(5));
    Ok(cached)
}

/// Start the given services and serve until SIGINT/SIGTERM.
pub async fn run(
    cfg: Config,
    roles: &[Role],
    ready_file: Option<PathBuf>,
    host: Option<crate::hostcmd::HostArgs>,
) -> anyhow::Result<()> {
    let started = start(&cfg, roles).await?;
    let agent = match host {
        Some(args) => match start_host(&cfg, &started, args).await {
            Ok(a) => Some(a),
            Err(e) => {
                started.stop().await;
                return Err(e);
            }
        },
        None => None,
    };
    let admin_password = started.admin_password.clone();
    let keystone_url = started.url(Role::Keystone).map(str::to_string);
    let rc_path = cfg.data_dir.join("rc_admin");
    if let (Some(pw), Some(auth_url)) = (&admin_password, &keystone_url)
        && cfg.database.is_empty()
    {
        let rc = format!(
            "export OS_AUTH_URL={auth_url}\nexport OS_USERNAME={}\nexport OS_PASSWORD='{pw}'\n\
             export OS_PROJECT_NAME={}\nexport OS_PROJECT_DOMAIN=Default\nexport OS_DOMAIN_NAME=Default\n\
             export OS_REGION_NAME={}\nexport OS_ENDPOINT_TYPE=publicURL\n",
            bootstrap::ADMIN_USER,
            bootstrap::SYSTEM_PROJECT,
            cfg.region_id
        );
        write_private(&rc_path, &rc)?;
    } else if let Some(auth_url) = &keystone_url
        && let Ok(rc) = std::fs::read_to_string(&rc_path)
    {
        // The password is kept, but keystone may listen on a new port
        // (`--keystone-port 0`): the file must keep pointing at it.
        let line = format!("export OS_AUTH_URL={auth_url}");
        let updated: String = rc
            .lines()
            .map(|l| {
                if l.starts_with("export OS_AUTH_URL=") {
                    line.as_str()
                } else {
                    l
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        // Stale credentials are not worth failing a started platform for.
        if updated != rc
            && let Err(e) = write_private(&rc_path, &updated)
        {
            tracing::warn!(path = %rc_path.display(), error = %e, "updating rc_admin");
        }
    }

    let elapsed = started.elapsed;
    println!(
        "cloudpods-rs {} ({} service(s))",
        env!("CARGO_PKG_VERSION"),
        started.running.len()
    );
    println!("  data dir:   {}", cfg.data_dir.display());
    println!("  database:   {}", redact(&cfg.database_url()));
    for r in &started.running {
        println!("  {:<11} {}", format!("{}:", r.role.name()), r.url);
        if r.role == Role::Apigateway {
            println!("  console:    {}/", r.url);
        }
    }
    match &admin_password {
        Some(pw) => println!(
            "  admin:      {} / {pw}  (project {}; credentials in {})",
            bootstrap::ADMIN_USER,
            bootstrap::SYSTEM_PROJECT,
            rc_path.display()
        ),
        None if keystone_url.is_some() => println!(
            "  admin:      {} (password unchanged; see {})",
            bootstrap::ADMIN_USER,
            rc_path.display()
        ),
        None => {}
    }
    if let Some(a) = &agent {
        println!(
            "  host:      {} {} ({}, {})",
            a.name, a.host_id, a.manager_uri, a.mode
        );
    }
    println!("ready in {:.2} s", elapsed.as_secs_f64());
    tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "ready");

    if let Some(path) = ready_file {
        let services: serde_json::Map<String, serde_json::Value> = started
            .running
            .iter()
            .map(|r| (r.role.name().to_string(), json!(r.url)))
            .collect();
        let doc = json!({
            "pid": std::process::id(),
            "services": services,
            "auth_url": keystone_url,
            "admin_user": bootstrap::ADMIN_USER,
            "admin_password": admin_password,
            "admin_project": bootstrap::SYSTEM_PROJECT,
            "region": cfg.region_id,
            "startup_seconds": elapsed.as_secs_f64(),
            "host": agent.as_ref().map(|a| a.ready_doc()),
        });
        write_private(&path, &serde_json::to_string_pretty(&doc)?)?;
    }

    let mut agent = agent;
    let outcome = match agent.as_mut() {
        // The in-process agent is part of the platform: if it stops
        // serving, say so and stop instead of showing a live host that
        // cannot be reached.
        Some(a) => tokio::select! {
            _ = shutdown_signal() => Ok(()),
            e = a.failed() => {
                tracing::error!(error = %e, "shutting down");
                Err(e)
            }
        },
        None => {
            shutdown_signal().await;
            Ok(())
        }
    };
    tracing::info!("shutting down");
    if let Some(a) = &agent {
        a.stop();
    }
    started.stop().await;
    outcome
}

/// The service account the in-process host agent logs in as.
const HOST_AGENT_USER: &str = "hostagent";

/// Run the host agent inside all-in-one, logged in as its own service
/// account (password kept in the data dir, mode 0600).
async fn start_host(
    cfg: &Config,
    started: &Started,
    mut args: crate::hostcmd::HostArgs,
) -> anyhow::Result<crate::hostcmd::HostAgent> {
    let Some(auth_url) = started.url(Role::Keystone) else {
        anyhow::bail!("--with-host needs keystone in this process");
    };
    if started.region.is_none() {
        anyhow::bail!("--with-host needs the region in this process");
    }
    let secret_path = cfg.data_dir.join("host-agent.secret");
    let password = match std::fs::read_to_string(&secret_path) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
        _ => {
            let p = bootstrap::generate_password();
            write_private(&secret_path, &p)?;
            p
        }
    };
    bootstrap::ensure_service_user(&started.db, HOST_AGENT_USER, &password)
        .await
        .map_err(|e| anyhow::anyhow!("creating the host agent's account: {e}"))?;
    let sdk = cloudpods_sdk::Config::new(auth_url)
        .with_password(HOST_AGENT_USER, &password)
        .with_project(bootstrap::SYSTEM_PROJECT)
        .with_region(&cfg.region_id);
    let client = cloudpods_sdk::Client::new(sdk)
        .await
        .map_err(|e| anyhow::anyhow!("host agent login: {e}"))?;
    if args.wires.is_empty() {
        args.wires.push("wire0".into());
    }
    crate::hostcmd::start(cfg, &args, client, true).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
}

/// `cloudpods fernet-rotate`.
pub async fn fernet_rotate(cfg: Config) -> anyhow::Result<()> {
    let db = open_db(&cfg).await?;
    migrate(&db).await?;
    let tenants = Arc::new(TenantCache::new(db.clone()));
    let ks = Keystone::open(db.clone(), keystone_options(&cfg), tenants)
        .await
        .map_err(|e| anyhow::anyhow!("opening keystone: {e}"))?;
    ks.rotate_keys()
        .await
        .map_err(|e| anyhow::anyhow!("rotating keys: {e}"))?;
    println!(
        "fernet keys rotated; primary key index is now {}",
        ks.primary_key_index()
    );
    db.close().await;
    Ok(())
}
