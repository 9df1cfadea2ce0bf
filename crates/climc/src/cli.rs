//! Global options, the common list flags, and the execution context.

use std::sync::Mutex;

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::{Client, Config};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::output::Format;

/// Default `--limit` of every `*-list` (Cloudpods' climc default).
pub const DEFAULT_LIMIT: u64 = 20;

/// The options every command accepts, defaulting from the environment.
pub fn global_args() -> Vec<Arg> {
    let s = |name: &'static str, env: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .env(env)
            .value_name("VALUE")
            .help(help)
            .global(true)
            .help_heading("Global options")
    };
    vec![
        s(
            "os-auth-url",
            "OS_AUTH_URL",
            "Keystone URL, e.g. https://host:30500/v3",
        ),
        s("os-username", "OS_USERNAME", "User name"),
        s("os-password", "OS_PASSWORD", "Password").hide_env_values(true),
        s(
            "os-project-name",
            "OS_PROJECT_NAME",
            "Project to scope the token to",
        ),
        s(
            "os-project-id",
            "OS_PROJECT_ID",
            "Project id to scope the token to",
        ),
        s(
            "os-project-domain",
            "OS_PROJECT_DOMAIN",
            "Domain of the project",
        )
        .default_value(cloudpods_sdk::config::DEFAULT_PROJECT_DOMAIN),
        s("os-domain-name", "OS_DOMAIN_NAME", "Domain of the user"),
        s(
            "os-region-name",
            "OS_REGION_NAME",
            "Region of the endpoints to use",
        ),
        s(
            "os-endpoint-type",
            "OS_ENDPOINT_TYPE",
            "Endpoint interface: publicURL|internalURL|adminURL (or public|internal|admin)",
        )
        .default_value("internalURL"),
        s(
            "os-auth-token",
            "OS_AUTH_TOKEN",
            "Use this token instead of a password",
        )
        .hide_env_values(true),
        s("output-format", "CLIMC_OUTPUT_FORMAT", "Output format")
            .value_parser(clap::builder::PossibleValuesParser::new(
                Format::NAMES.iter().copied(),
            ))
            .default_value("table"),
        Arg::new("debug")
            .long("debug")
            .action(ArgAction::SetTrue)
            .help("Print requests as curl commands on stderr")
            .global(true)
            .help_heading("Global options"),
        Arg::new("insecure")
            .long("insecure")
            .env("YUNION_INSECURE")
            .action(ArgAction::SetTrue)
            .value_parser(clap::builder::FalseyValueParser::new())
            .help("Do not verify TLS certificates")
            .global(true)
            .help_heading("Global options"),
        Arg::new("no-cache")
            .long("no-cache")
            .action(ArgAction::SetTrue)
            .help("Do not read or write the token cache ($HOME/.cache/climc)")
            .global(true)
            .help_heading("Global options"),
    ]
}

/// The global options, parsed.
#[derive(Debug, Clone, Default)]
pub struct GlobalOpts {
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain: Option<String>,
    pub domain_name: Option<String>,
    pub region: Option<String>,
    pub endpoint_type: Option<String>,
    pub auth_token: Option<String>,
    pub format: Format,
    pub debug: bool,
    pub insecure: bool,
    pub no_cache: bool,
}

impl GlobalOpts {
    pub fn from_matches(m: &ArgMatches) -> anyhow::Result<GlobalOpts> {
        let s = |k: &str| {
            m.try_get_one::<String>(k)
                .ok()
                .flatten()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let flag = |k: &str| {
            m.try_get_one::<bool>(k)
                .ok()
                .flatten()
                .copied()
                .unwrap_or(false)
        };
        let format = match s("output-format") {
            Some(f) => f.parse::<Format>().map_err(anyhow::Error::msg)?,
            None => Format::Table,
        };
        Ok(GlobalOpts {
            auth_url: s("os-auth-url"),
            username: s("os-username"),
            password: m
                .try_get_one::<String>("os-password")
                .ok()
                .flatten()
                .filter(|p| !p.is_empty())
                .cloned(),
            project_name: s("os-project-name"),
            project_id: s("os-project-id"),
            project_domain: s("os-project-domain"),
            domain_name: s("os-domain-name"),
            region: s("os-region-name"),
            endpoint_type: s("os-endpoint-type"),
            auth_token: s("os-auth-token"),
            format,
            debug: flag("debug"),
            insecure: flag("insecure"),
            no_cache: flag("no-cache"),
        })
    }

    /// The SDK configuration.
    pub fn sdk_config(&self) -> anyhow::Result<Config> {
        let url = self
            .auth_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no auth URL: set OS_AUTH_URL or --os-auth-url"))?;
        let mut cfg = Config::new(url)
            .with_auth_source("cli")
            .insecure(self.insecure)
            .debug(self.debug);
        cfg.username = self.username.clone();
        cfg.password = self.password.clone();
        cfg.project_name = self.project_name.clone();
        cfg.project_id = self.project_id.clone();
        if let Some(d) = &self.project_domain {
            cfg.project_domain = d.clone();
        }
        cfg.user_domain = self.domain_name.clone();
        cfg.region = self.region.clone();
        if let Some(t) = &self.endpoint_type {
            cfg = cfg.with_endpoint_type(t);
        }
        cfg.auth_token = self.auth_token.clone();
        if !self.no_cache && cfg.auth_token.is_none() {
            cfg = cfg.with_default_token_cache();
        }
        Ok(cfg)
    }
}

/// The flags of every `*-list` command (Cloudpods `BaseListOptions`).
pub fn list_args() -> Vec<Arg> {
    let h = "List options";
    let v = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name("VALUE")
            .help(help)
            .help_heading(h)
    };
    let f = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
            .help_heading(h)
    };
    vec![
        v("limit", "Page limit")
            .value_parser(clap::value_parser!(u64))
            .default_value("20"),
        v("offset", "Page offset").value_parser(clap::value_parser!(u64)),
        v("order-by", "Field to order by (repeatable)").action(ArgAction::Append),
        v("order", "List order").value_parser(["asc", "desc"]),
        f("details", "Show more details (sends details=true)"),
        v("search", "Filter results by a simple keyword search"),
        v("filter", "Filter, e.g. 'name.contains(vm)' (repeatable)").action(ArgAction::Append),
        v("joint-filter", "Filter on a joint table (repeatable)").action(ArgAction::Append),
        f("filter-any", "Match if any filter matches (default: all)"),
        v("scope", "Resource scope").value_parser(["system", "domain", "project", "user"]),
        f("admin", "Is an admin call (legacy)"),
        f("system", "Show system resources"),
        v("project", "Filter by project (id or name)").visible_alias("tenant"),
        v("project-domain", "Filter by project domain (id or name)"),
        v(
            "field",
            "Show only these fields (repeatable; also the table columns)",
        )
        .action(ArgAction::Append),
        v(
            "paging-marker",
            "Marker of the page to show (marker paging)",
        ),
        f("pending-delete", "Show only pending-deleted resources"),
        f("pending-delete-all", "Show pending-deleted resources too"),
        f("meta", "Piggyback metadata"),
        v("tags", "Filter by tags (not supported yet, ignored)").action(ArgAction::Append),
    ]
}

/// The list query of the common list flags.
pub fn list_params(m: &ArgMatches) -> Map<String, Value> {
    let mut q = Map::new();
    let s = |k: &str| m.try_get_one::<String>(k).ok().flatten().cloned();
    let many = |k: &str| -> Vec<Value> {
        m.try_get_many::<String>(k)
            .ok()
            .flatten()
            .map(|v| v.cloned().map(Value::String).collect())
            .unwrap_or_default()
    };
    let flag = |k: &str| {
        m.try_get_one::<bool>(k)
            .ok()
            .flatten()
            .copied()
            .unwrap_or(false)
    };

    let limit = m
        .try_get_one::<u64>("limit")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(DEFAULT_LIMIT);
    q.insert("limit".into(), Value::from(limit));
    if let Some(o) = m.try_get_one::<u64>("offset").ok().flatten() {
        q.insert("offset".into(), Value::from(*o));
    }
    let order_by = many("order-by");
    if !order_by.is_empty() {
        q.insert("order_by".into(), Value::Array(order_by));
    }
    if let Some(o) = s("order") {
        q.insert("order".into(), Value::String(o));
    }
    q.insert("details".into(), Value::Bool(flag("details")));
    if let Some(v) = s("search") {
        q.insert("search".into(), Value::String(v));
    }
    let filters = many("filter");
    if !filters.is_empty() {
        if flag("filter-any") {
            q.insert("filter_any".into(), Value::Bool(true));
        }
        q.insert("filter".into(), Value::Array(filters));
    }
    let joint = many("joint-filter");
    if !joint.is_empty() {
        q.insert("joint_filter".into(), Value::Array(joint));
    }
    if let Some(v) = s("scope") {
        q.insert("scope".into(), Value::String(v));
    }
    for (flag_name, key) in [
        ("admin", "admin"),
        ("system", "system"),
        ("meta", "with_meta"),
    ] {
        if flag(flag_name) {
            q.insert(key.into(), Value::Bool(true));
        }
    }
    if let Some(v) = s("project") {
        q.insert("project_id".into(), Value::String(v));
    }
    if let Some(v) = s("project-domain") {
        q.insert("project_domain_id".into(), Value::String(v));
    }
    let fields = many("field");
    if !fields.is_empty() {
        q.insert("field".into(), Value::Array(fields));
    }
    if let Some(v) = s("paging-marker") {
        q.insert("paging_marker".into(), Value::String(v));
    }
    if flag("pending-delete-all") {
        q.insert("pending_delete".into(), Value::String("all".into()));
    } else if flag("pending-delete") {
        q.insert("pending_delete".into(), Value::Bool(true));
    }
    q
}

/// The `--field` values, which also choose the table columns.
pub fn field_columns(m: &ArgMatches) -> Vec<String> {
    m.try_get_many::<String>("field")
        .ok()
        .flatten()
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

/// Where output goes: stdout, or a buffer (tests).
enum Sink {
    Stdout,
    Buffer(Mutex<String>),
}

/// Everything a command needs: options, the lazily authenticated client,
/// the output sink.
pub struct Ctx {
    pub opts: GlobalOpts,
    client: OnceCell<Client>,
    sink: Sink,
}

impl Ctx {
    pub fn new(opts: GlobalOpts) -> Ctx {
        Ctx {
            opts,
            client: OnceCell::new(),
            sink: Sink::Stdout,
        }
    }

    /// A context capturing its output (see [`Ctx::captured`]).
    pub fn capturing(opts: GlobalOpts) -> Ctx {
        Ctx {
            opts,
            client: OnceCell::new(),
            sink: Sink::Buffer(Mutex::new(String::new())),
        }
    }

    /// The output format.
    pub fn format(&self) -> Format {
        self.opts.format
    }

    /// The client, authenticated on first use.
    pub async fn client(&self) -> anyhow::Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let cfg = self.opts.sdk_config()?;
                Client::new(cfg).await.map_err(anyhow::Error::from)
            })
            .await
    }

    /// Write output.
    pub fn print(&self, text: &str) {
        match &self.sink {
            Sink::Stdout => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                // A closed pipe (`climc x | head`) is not an error worth reporting.
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Sink::Buffer(b) => b.lock().unwrap_or_else(|e| e.into_inner()).push_str(text),
        }
    }

    /// What was printed so far (capturing contexts only).
    pub fn captured(&self) -> String {
        match &self.sink {
            Sink::Stdout => String::new(),
            Sink::Buffer(b) => b.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}
