//! Quotas, usages and capabilities: `GET|POST /quotas`,
//! `/quotas/projects[/{id}]`, `/quotas/domains[/{id}]`, `GET /usages`,
//! `GET /capabilities`.

use std::sync::Arc;

use cloudpods_rest::Service;

use crate::Region;

pub fn register(svc: Service, _region: &Arc<Region>) -> Service {
    svc
}
