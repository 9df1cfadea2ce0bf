//! `cloudpods-sdk`: a small client for the Cloudpods REST API.
//!
//! * [`Config`] — where and who: the `OS_*` environment variables or builder
//!   methods.
//! * [`Client`] — authenticates against keystone (`POST /v3/auth/tokens`),
//!   keeps the token (optionally cached on disk, see [`TokenCache`]), finds
//!   service endpoints in the token catalog, and sends requests with
//!   `X-Auth-Token`, `X-Request-Id` and a `User-Agent`.
//! * [`ResourceManager`] — list/get/create/update/delete/actions on any
//!   resource, JSON in and out, with Cloudpods' envelopes
//!   (`{"server": {...}}`, `{"servers": [...], "total": N}`).
//! * [`SdkError`] — the Cloudpods error body (`class`, `code`, `details`)
//!   or a transport/decoding/configuration failure.
//!
//! Everything is `serde_json::Value` because Cloudpods' resource set is large
//! and its clients (`climc`) are generic; typed wire structs live in
//! `cloudpods-apis`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloudpods_sdk::SdkError> {
//! use cloudpods_sdk::{Client, Config};
//! use serde_json::{json, Map};
//!
//! cloudpods_sdk::init_tls();
//! let cfg = Config::new("http://127.0.0.1:30500/v3")
//!     .with_password("sysadmin", "sysadmin")
//!     .with_project("system")
//!     .with_endpoint_type("public");
//! let client = Client::new(cfg).await?;
//! let users = client.resource("identity", "user", "users");
//! let mut params = Map::new();
//! params.insert("limit".into(), json!(10));
//! for u in users.list(&params).await?.items {
//!     println!("{}", u["name"]);
//! }
//! # Ok(()) }
//! ```
//!
//! TLS uses rustls with the *ring* provider, which must be installed once per
//! process: call [`init_tls`] at start-up (the client constructors call it
//! too, so forgetting is harmless).

pub mod client;
pub mod config;
pub mod debug;
pub mod endpoint;
pub mod error;
pub mod image;
pub mod recycle;
pub mod resource;
pub mod session;
pub mod sparse;
#[cfg(target_os = "linux")]
pub mod splice;

pub use client::{Client, RawResponse, USER_AGENT};
pub use config::Config;
pub use error::{Result, SdkError};
pub use resource::{BatchItem, CreateResult, ListResult, ResourceManager};
pub use session::{Session, TokenCache};

/// Re-exported so callers can build methods, headers and bodies without
/// depending on reqwest themselves.
pub use reqwest;

/// Install rustls' *ring* crypto provider as the process default.
/// Idempotent; safe to call from every binary and test.
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
