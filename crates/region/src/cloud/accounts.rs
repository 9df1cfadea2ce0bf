//! REST models: `cloudaccounts` (create with a real credential check,
//! sync, credential update, delete with everything the account manages),
//! `cloudproviders`, their per-region sync state, and `cachedimages`.

use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_cloudprovider as cp;
use cloudpods_db::{Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::params::{flag, get_i64, get_str, get_str_any, get_strs};
use cloudpods_rest::{Ctx, HttpError, JointModel, Model, Object, Result, Service};
use serde_json::{Value, json};

use super::models::*;
use super::sync::{RESOURCES, SyncOptions};
use crate::Region;
use crate::store::s;

pub fn register(svc: Service, region: &Arc<Region>) -> Service {
    svc.model(Arc::new(Accounts {
        region: region.clone(),
    }))
    .model(Arc::new(Providers {
        region: region.clone(),
    }))
    .model(Arc::new(crate::resources::Basic {
        desc: &CACHEDIMAGES,
        region: region.clone(),
        contexts: &[("cloudregions", "cloudregion_id")],
    }))
    .joint(Arc::new(ProviderRegions {
        region: region.clone(),
    }))
}

pub struct Accounts {
    pub region: Arc<Region>,
}

/// Check what the API takes from the caller before any cloud call.
fn check_options(input: &Object) -> Result<()> {
    if let Some(o) = input.get("options")
        && !o.is_null()
    {
        let Some(o) = o.as_object() else {
            return Err(HttpError::input("options must be an object"));
        };
        if let Some(r) = o.get("regions")
            && !r.is_array()
        {
            return Err(HttpError::input(
                "options.regions must be a list of region ids",
            ));
        }
        if let Some(p) = o.get("page_size")
            && !p.as_u64().is_some_and(|n| (5..=1000).contains(&n))
        {
            return Err(HttpError::input(
                "options.page_size must be between 5 and 1000",
            ));
        }
    }
    if let Some(n) = get_i64(input, "sync_interval_seconds")?
        && n < 60
    {
        return Err(HttpError::input(
            "sync_interval_seconds must be at least 60",
        ));
    }
    Ok(())
}

#[async_trait]
impl Model for Accounts {
    region_model!(CLOUDACCOUNTS);

    async fn list_filter(
        &self,
        _ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        if let Some(b) = get_str(q, "brand") {
            let mut c = Sql::new("LOWER(`brand`) = LOWER(");
            c.bind(b).push(")");
            conds.push(c);
        }
        Ok(())
    }

    async fn details(&self, ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let provs =
            crate::store::rows_in(&self.region.db, &CLOUDPROVIDERS, "cloudaccount_id", &ids)
                .await?;
        let pids: Vec<String> = rows.iter().map(|r| s(r, "project_id")).collect();
        let projects = ctx.tenants.projects_by_id(&pids).await?;
        for r in rows.iter_mut() {
            let id = s(r, "id");
            let mine: Vec<&Row> = provs
                .iter()
                .filter(|p| s(p, "cloudaccount_id") == id)
                .collect();
            r.insert("cloudprovider_count".into(), json!(mine.len()));
            if let Some(p) = mine.first() {
                r.insert("cloudprovider_id".into(), json!(s(p, "id")));
            }
            r.insert(
                "cloud_env".into(),
                json!(if crate::store::b(r, "is_public_cloud") {
                    "public"
                } else {
                    "private"
                }),
            );
            if let Some(p) = projects.get(&s(r, "project_id")) {
                r.insert("project".into(), json!(p.name));
            }
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        check_options(input)?;
        let provider = get_str(input, "provider").unwrap_or_default();
        let info = cp::provider_info(&provider).ok_or_else(|| {
            HttpError::input(format!(
                "provider {provider:?} is not supported (supported: {})",
                cp::PROVIDERS
                    .iter()
                    .map(|p| p.provider)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let secret = get_str(input, "secret")
            .filter(|x| !x.is_empty())
            .ok_or_else(|| HttpError::missing("secret is required"))?;
        let account = get_str(input, "account").unwrap_or_default();
        if account.is_empty() {
            return Err(HttpError::missing(
                "account (the access key id) is required",
            ));
        }
        let access_url = get_str(input, "access_url").unwrap_or_default();
        // Same cloud account twice = the same resources synced twice.
        let dup = crud::list(
            &self.region.db,
            &CLOUDACCOUNTS,
            &cloudpods_db::ListSpec {
                conds: vec![
                    crud::eq("provider", info.provider),
                    crud::eq("account", account.as_str()),
                    crud::eq("access_url", access_url.as_str()),
                ],
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?
        .0;
        if let Some(d) = dup.first() {
            return Err(HttpError::conflict(format!(
                "cloud account {} already manages this account",
                s(d, "name")
            )));
        }
        // The project the account's resources belong to.
        let project = match get_str_any(input, &["project_id", "project", "tenant_id", "tenant"]) {
            Some(p) => {
                let found = ctx.tenants.projects_by_id(std::slice::from_ref(&p)).await?;
                match found.get(&p) {
                    Some(_) => p,
                    None => return Err(HttpError::not_found(format!("project {p} not found"))),
                }
            }
            None => ctx.identity.project_id.clone(),
        };
        let cfg = cp::ProviderConfig {
            provider: info.provider.into(),
            access_url: access_url.clone(),
            account: account.clone(),
            secret: secret.clone(),
            default_region: input
                .get("options")
                .and_then(|o| o.get("default_region"))
                .and_then(Value::as_str)
                .unwrap_or("us-east-1")
                .into(),
            max_attempts: 2,
            timeout: std::time::Duration::from_secs(20),
            ..Default::default()
        };
        // A real call: wrong credentials are refused with the cloud's
        // message before anything is saved.
        let prov = cp::connect(cfg).map_err(super::cloud_http_error)?;
        let account_id = prov.account_id().await.map_err(|e| match e {
            cp::CloudError::Unauthorized(m) => {
                HttpError::input(format!("the cloud refused the credentials: {m}"))
            }
            other => super::cloud_http_error(other),
        })?;
        let sealed = self
            .region
            .cloud
            .key()
            .encrypt(&secret)
            .map_err(|e| HttpError::internal(e.to_string()))?;
        row.insert("provider".into(), json!(info.provider));
        row.insert("brand".into(), json!(info.brand));
        row.insert("is_public_cloud".into(), json!(info.is_public_cloud));
        row.insert("secret".into(), json!(sealed));
        row.insert("account_id".into(), json!(account_id));
        row.insert("project_id".into(), json!(project));
        row.insert("status".into(), json!("connected"));
        row.insert("health_status".into(), json!("normal"));
        row.insert("probe_at".into(), json!(cloudpods_apis::time::now()));
        if input.get("auto_sync").is_some() {
            row.insert("enable_auto_sync".into(), json!(flag(input, "auto_sync")?));
        }
        Ok(())
    }

    async fn create(&self, _ctx: &Ctx, rows: Vec<Row>, _input: &Object) -> Result<Vec<Row>> {
        let mut tx = self.region.db.begin().await?;
        for r in &rows {
            crud::insert(&mut *tx, &CLOUDACCOUNTS, r).await?;
        }
        tx.commit().await.map_err(cloudpods_db::DbError::from)?;
        for r in &rows {
            super::ensure_provider(&self.region.db, r).await?;
        }
        Ok(rows)
    }

    async fn post_create(&self, _ctx: &Ctx, rows: &[Row], input: &Object) -> Result<()> {
        // The first sync starts at once (as in Cloudpods), unless asked not to.
        if input.get("auto_sync").is_none() || flag(input, "auto_sync")? {
            for r in rows {
                super::trigger_sync(&self.region, &s(r, "id"), SyncOptions::default()).await?;
            }
        }
        Ok(())
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        _obj: &Row,
        _changes: &mut Row,
        input: &Object,
    ) -> Result<()> {
        check_options(input)
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(&CLOUDACCOUNTS, obj)?;
        if crate::store::b(obj, "enabled") {
            return Err(HttpError::invalid_status(
                "disable the cloud account before deleting it",
            ));
        }
        if s(obj, "sync_status") != "idle" {
            return Err(HttpError::invalid_status(format!(
                "Cannot delete cloud account while its sync is {}",
                s(obj, "sync_status")
            )));
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let provs = crate::store::rows_in(
            &self.region.db,
            &CLOUDPROVIDERS,
            "cloudaccount_id",
            &[s(&obj, "id")],
        )
        .await?;
        for p in &provs {
            super::purge_managed(&self.region.db, &s(p, "id")).await?;
            crud::delete(self.region.db.write(), &CLOUDPROVIDERS, &s(p, "id")).await?;
            self.region.cloud.forget_fleets(&s(p, "id"));
        }
        cloudpods_rest::generic::delete_row(self, ctx, obj, q).await
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        let id = s(&obj, "id");
        match action {
            "sync" => {
                if !crate::store::b(&obj, "enabled") {
                    return Err(HttpError::invalid_status("the cloud account is disabled"));
                }
                let mut regions = get_strs(&input, "region");
                regions.extend(get_strs(&input, "regions"));
                let mut resources = get_strs(&input, "resources");
                for r in &resources {
                    if !RESOURCES.contains(&r.as_str()) {
                        return Err(HttpError::input(format!(
                            "unknown resource {r:?} (one of {})",
                            RESOURCES.join(", ")
                        )));
                    }
                }
                // Servers need their hosts; disks their storages.
                if !resources.is_empty() {
                    for extra in ["zones", "hosts", "storages"] {
                        if !resources.iter().any(|r| r == extra) {
                            resources.push(extra.into());
                        }
                    }
                }
                let opts = SyncOptions {
                    regions,
                    resources,
                    full_sync: flag(&input, "full_sync")?,
                };
                let queued = super::trigger_sync(&self.region, &id, opts).await?;
                let mut out = crud::must_get(self.region.db.read(), &CLOUDACCOUNTS, &id).await?;
                out.insert("sync_queued".into(), json!(queued));
                Ok(Value::Object(out))
            }
            "update-credential" => {
                let secret = get_str(&input, "secret")
                    .filter(|x| !x.is_empty())
                    .ok_or_else(|| HttpError::missing("secret is required"))?;
                let account = get_str(&input, "account").unwrap_or_else(|| s(&obj, "account"));
                let cfg = cp::ProviderConfig {
                    provider: s(&obj, "provider"),
                    access_url: s(&obj, "access_url"),
                    account: account.clone(),
                    secret: secret.clone(),
                    max_attempts: 2,
                    ..Default::default()
                };
                let prov = cp::connect(cfg).map_err(super::cloud_http_error)?;
                prov.account_id().await.map_err(|e| match e {
                    cp::CloudError::Unauthorized(m) => {
                        HttpError::input(format!("the cloud refused the credentials: {m}"))
                    }
                    other => super::cloud_http_error(other),
                })?;
                let mut ch = Row::new();
                ch.insert("account".into(), json!(account));
                ch.insert(
                    "secret".into(),
                    json!(
                        self.region
                            .cloud
                            .key()
                            .encrypt(&secret)
                            .map_err(|e| HttpError::internal(e.to_string()))?
                    ),
                );
                ch.insert("status".into(), json!("connected"));
                ch.insert("health_status".into(), json!("normal"));
                crud::update(self.region.db.write(), &CLOUDACCOUNTS, &id, &ch).await?;
                let mut pch = Row::new();
                pch.insert("account".into(), json!(ch["account"].clone()));
                let mut q = crud::update_sql(&CLOUDPROVIDERS, &pch);
                q.push(" WHERE `cloudaccount_id` = ").bind(id.as_str());
                q.query()?
                    .execute(self.region.db.write())
                    .await
                    .map_err(cloudpods_db::DbError::from)?;
                Ok(Value::Object(
                    crud::must_get(self.region.db.read(), &CLOUDACCOUNTS, &id).await?,
                ))
            }
            _ => cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await,
        }
    }
}

pub struct Providers {
    pub region: Arc<Region>,
}

#[async_trait]
impl Model for Providers {
    region_model!(CLOUDPROVIDERS);
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        &[("cloudaccounts", "cloudaccount_id")]
    }

    async fn list_filter(
        &self,
        _ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        if let Some(a) = get_str_any(q, &["cloudaccount", "account"]) {
            let mut c = Sql::new(
                "`cloudaccount_id` IN (SELECT `id` FROM `cloudaccounts_tbl` WHERE `id` = ",
            );
            c.bind(a.clone()).push(" OR `name` = ").bind(a).push(")");
            conds.push(c);
        }
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| s(r, "cloudaccount_id")).collect();
        let accs = crate::store::by_id(&self.region.db, &CLOUDACCOUNTS, &ids).await?;
        for r in rows.iter_mut() {
            if let Some(a) = accs.get(&s(r, "cloudaccount_id")) {
                r.insert("cloudaccount".into(), json!(s(a, "name")));
                r.insert(
                    "last_sync".into(),
                    a.get("last_sync").cloned().unwrap_or(Value::Null),
                );
                r.insert("sync_status".into(), json!(s(a, "sync_status")));
            }
            r.insert(
                "cloud_env".into(),
                json!(if crate::store::b(r, "is_public_cloud") {
                    "public"
                } else {
                    "private"
                }),
            );
        }
        Ok(())
    }

    async fn validate_create(&self, _ctx: &Ctx, _row: &mut Row, _input: &Object) -> Result<()> {
        Err(HttpError::not_supported(
            "cloudproviders are created by their cloud account",
        ))
    }

    async fn validate_delete(&self, _ctx: &Ctx, _obj: &Row, _q: &Object) -> Result<()> {
        Err(HttpError::not_supported(
            "cloudproviders are deleted with their cloud account",
        ))
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        if action == "sync" {
            let acc = crud::must_get(
                self.region.db.read(),
                &CLOUDACCOUNTS,
                &s(&obj, "cloudaccount_id"),
            )
            .await?;
            let accounts = Accounts {
                region: self.region.clone(),
            };
            return accounts.perform(ctx, acc, action, input).await;
        }
        cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await
    }
}

/// `/cloudproviders/{id}/cloudregions`: the regions a provider syncs and
/// how their last sync went.
pub struct ProviderRegions {
    pub region: Arc<Region>,
}

#[async_trait]
impl JointModel for ProviderRegions {
    region_model!(CLOUDPROVIDER_REGIONS);
    fn master(&self) -> (&'static str, &'static str) {
        ("cloudproviders", "cloudprovider_id")
    }
    fn slave(&self) -> (&'static str, &'static str) {
        ("cloudregions", "cloudregion_id")
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row]) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| s(r, "cloudregion_id")).collect();
        let regions =
            crate::store::by_id(&self.region.db, &crate::models::CLOUDREGIONS, &ids).await?;
        for r in rows.iter_mut() {
            if let Some(cr) = regions.get(&s(r, "cloudregion_id")) {
                r.insert("cloudregion".into(), json!(s(cr, "name")));
                r.insert("external_id".into(), json!(s(cr, "external_id")));
            }
        }
        Ok(())
    }
}
