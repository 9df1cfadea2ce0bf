//! Region resources served by the generic dispatcher.

pub mod infra;
pub mod quotas;
pub mod servers;
pub mod tasks_api;
pub mod virt;

use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_db::{ModelDesc, Row, crud};
use cloudpods_rest::{Ctx, HttpError, JointModel, Model, Object, Result, Service};
use serde_json::{Value, json};

use crate::Region;
use crate::models::*;
use crate::store::s;

/// A resource with only the generic behaviour.
pub struct Basic {
    pub desc: &'static ModelDesc,
    pub region: Arc<Region>,
    pub contexts: &'static [(&'static str, &'static str)],
}

#[async_trait]
impl Model for Basic {
    region_model!(field);
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        self.contexts
    }

    // brand / provider / cloud_env of managed resources (crate::cloud).
    async fn list_filter(
        &self,
        _ctx: &Ctx,
        q: &cloudpods_rest::Object,
        _scope: cloudpods_rbac::Scope,
        conds: &mut Vec<cloudpods_db::Sql>,
    ) -> Result<()> {
        crate::cloud::brand_filter(self.desc, q, conds);
        Ok(())
    }

    async fn details(
        &self,
        _ctx: &Ctx,
        rows: &mut [Row],
        _q: &cloudpods_rest::Object,
    ) -> Result<()> {
        crate::cloud::brand_details(&self.region.db, self.desc, rows).await
    }
}

/// A joint with generic attach (insert) and detach (delete).
pub struct BasicJoint {
    pub desc: &'static ModelDesc,
    pub region: Arc<Region>,
    pub master: (&'static str, &'static str),
    pub slave: (&'static str, &'static str),
    /// Attach/detach through this route is allowed (infrastructure joints);
    /// guest joints change only through server actions.
    pub writable: bool,
}

impl BasicJoint {
    /// Host joints change what the scheduler may place on that host.
    fn placement_changed(&self, master: &Row) {
        let sched = self.region.scheduler();
        match self.master.0 {
            "hosts" => sched.invalidate_host(&s(master, "id")),
            "schedtags" | "storages" | "networks" | "wires" => sched.invalidate_all(),
            _ => {}
        }
    }
}

#[async_trait]
impl JointModel for BasicJoint {
    region_model!(field);
    fn master(&self) -> (&'static str, &'static str) {
        self.master
    }
    fn slave(&self) -> (&'static str, &'static str) {
        self.slave
    }

    async fn attach(&self, ctx: &Ctx, master: Row, slave: Row, input: Object) -> Result<Row> {
        if !self.writable {
            return Err(HttpError::not_supported(format!(
                "{} are managed by their owners (server actions, host agents)",
                self.desc.plural
            )));
        }
        let scope = ctx
            .max_scope(self.desc.plural, "create", None)
            .unwrap_or(cloudpods_rbac::Scope::Project);
        let mut row = cloudpods_rest::generic::row_from_input(scope, self.desc, &input)?;
        row.insert(self.master.1.into(), json!(s(&master, "id")));
        row.insert(self.slave.1.into(), json!(s(&slave, "id")));
        crud::prepare_insert(self.desc, &mut row);
        match crud::insert(self.region.db.write(), self.desc, &row).await {
            Ok(id) => {
                if let Some(id) = id {
                    row.insert("row_id".into(), json!(id));
                }
                self.placement_changed(&master);
                Ok(row)
            }
            Err(cloudpods_db::DbError::Duplicate(_)) => Err(HttpError::conflict(format!(
                "{} {} is already attached to {} {}",
                self.master.0,
                s(&master, "name"),
                self.slave.0,
                s(&slave, "name")
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn detach(&self, _ctx: &Ctx, master: Row, slave: Row, _q: Object) -> Result<Row> {
        if !self.writable {
            return Err(HttpError::not_supported(format!(
                "{} are managed by their owners (server actions, host agents)",
                self.desc.plural
            )));
        }
        let spec = cloudpods_db::ListSpec {
            conds: vec![
                crud::eq(self.master.1, s(&master, "id")),
                crud::eq(self.slave.1, s(&slave, "id")),
            ],
            limit: Some(1),
            ..Default::default()
        };
        let row = crud::list(&self.region.db, self.desc, &spec)
            .await?
            .0
            .into_iter()
            .next()
            .ok_or_else(|| HttpError::not_found("not attached"))?;
        crud::purge(self.region.db.write(), self.desc, &s(&row, "row_id")).await?;
        self.placement_changed(&master);
        Ok(row)
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row]) -> Result<()> {
        // Names of both sides.
        for (plural, col) in [self.master, self.slave] {
            let Some(desc) = desc_of(plural) else {
                continue;
            };
            let ids: Vec<String> = rows.iter().map(|r| s(r, col)).collect();
            let objs = crate::store::by_id(&self.region.db, desc, &ids).await?;
            let key = col.trim_end_matches("_id");
            for r in rows.iter_mut() {
                if let Some(o) = objs.get(&s(r, col)) {
                    r.insert(key.into(), Value::String(s(o, "name")));
                }
            }
        }
        Ok(())
    }
}

fn desc_of(plural: &str) -> Option<&'static ModelDesc> {
    crate::models::all()
        .into_iter()
        .chain(crate::cloud::models::all())
        .find(|d| d.plural == plural)
}

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    let joint = |desc: &'static ModelDesc, master, slave, writable| -> Arc<dyn JointModel> {
        Arc::new(BasicJoint {
            desc,
            region: region.clone(),
            master,
            slave,
            writable,
        })
    };
    let svc = svc
        .model(Arc::new(servers::Servers {
            region: region.clone(),
        }))
        .joint(joint(
            &HOSTSTORAGES,
            ("hosts", "host_id"),
            ("storages", "storage_id"),
            true,
        ))
        .joint(joint(
            &HOSTWIRES,
            ("hosts", "host_id"),
            ("wires", "wire_id"),
            true,
        ))
        .joint(joint(
            &HOSTNETWORKS,
            ("hosts", "host_id"),
            ("networks", "network_id"),
            true,
        ))
        .joint(joint(
            &HOSTSCHEDTAGS,
            ("hosts", "host_id"),
            ("schedtags", "schedtag_id"),
            true,
        ))
        .joint(joint(
            &STORAGECACHEDIMAGES,
            ("storagecaches", "storagecache_id"),
            ("cachedimages", "cachedimage_id"),
            false,
        ))
        .joint(joint(
            &GUESTDISKS,
            ("servers", "guest_id"),
            ("disks", "disk_id"),
            false,
        ))
        .joint(joint(
            &GUESTNETWORKS,
            ("servers", "guest_id"),
            ("networks", "network_id"),
            false,
        ))
        .joint(joint(
            &GUESTSECGROUPS,
            ("servers", "guest_id"),
            ("secgroups", "secgroup_id"),
            false,
        ));
    let svc = infra::register(svc, region);
    let svc = virt::register(svc, region);
    let svc = quotas::register(svc, region);
    tasks_api::register(svc, region)
}
