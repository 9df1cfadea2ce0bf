//! The generic REST layer shared by every service.
//!
//! A service is a set of [`Model`]s (table descriptors plus hooks), joint
//! models and a few custom routes. [`dispatch`] maps every request onto them
//! the way Cloudpods' dispatcher does; [`generic`] implements list, get,
//! create, update, delete, actions and specs once; [`context`] carries the
//! caller's identity and policies and turns them into permission checks and
//! visibility filters.

pub mod auth;
pub mod context;
pub mod dispatch;
pub mod error;
pub mod generic;
pub mod metadata;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod params;
pub mod remote;
pub mod server;
pub mod service;
pub mod tenant;

pub use auth::{CachedVerifier, TokenVerifier};
pub use context::{Ctx, Identity, PolicyNames};
pub use error::{HttpError, Result};
pub use model::{JointModel, Model};
pub use params::Object;
pub use service::{ApiRequest, Service};
pub use tenant::TenantCache;
