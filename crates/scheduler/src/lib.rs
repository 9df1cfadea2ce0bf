//! The scheduler: where every guest and disk goes, and why not elsewhere.
//!
//! Cloudpods' scheduler (`pkg/scheduler`) rebuilt around three ideas:
//!
//! * **A candidate cache** ([`fleet`]) built from the region database
//!   ([`load`]) and kept fresh by invalidation ([`SchedulerService::invalidate_host`],
//!   `POST /scheduler/clean-cache/{host}`) as well as a periodic rebuild.
//!   The placement path never reads the database.
//! * **Reservations per session**: a placement holds its CPU, memory,
//!   storage and addresses until the region confirms it wrote them
//!   (`completed`) and a reload shows them, so concurrent and batch requests
//!   never give away the same capacity.
//! * **Reasons**: every filter ([`filters`]) says why a host is out, per
//!   host ("host h3: memory 2048 MB free < 4096 MB requested") and
//!   aggregated ("7 hosts: not enough memory; 3 hosts: offline"), in
//!   errors, forecasts and the history.
//!
//! Placement ([`place`]) filters statically once per request, checks
//! capacity and scores ([`score`]) each remaining host once, then takes
//! instances from a heap, re-checking only the host just used.

pub mod bench;
pub mod filters;
pub mod fleet;
pub mod history;
pub mod http;
pub mod load;
pub mod options;
pub mod place;
pub mod reasons;
pub mod remote;
pub mod request;
pub mod score;
pub mod service;
pub mod snapshot;
#[cfg(test)]
mod testkit;

pub use http::service;
pub use options::{Policy, SchedulerOptions, Weights};
pub use remote::RemoteScheduler;
pub use service::{CandidateQuery, SchedulerService, Stats};
pub use snapshot::Snapshot;
