//! Virtual resources other than servers: disks, snapshots, keypairs,
//! security groups and rules, EIPs.

use std::sync::Arc;

use cloudpods_db::ModelDesc;
use cloudpods_rest::{Model, Service};

use super::Basic;
use crate::Region;
use crate::models::*;

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let basic = |desc: &'static ModelDesc,
                 contexts: &'static [(&'static str, &'static str)]|
     -> Arc<dyn Model> {
        Arc::new(Basic {
            desc,
            region: region.clone(),
            contexts,
        })
    };
    svc.model(basic(&DISKS, &[]))
        .model(basic(&SNAPSHOTS, &[]))
        .model(basic(&KEYPAIRS, &[]))
        .model(basic(&SECGROUPS, &[]))
        .model(basic(&SECGROUPRULES, &[("secgroups", "secgroup_id")]))
        .model(basic(&EIPS, &[]))
}
