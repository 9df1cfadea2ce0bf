//! The resource traits every service implements.
//!
//! A [`Model`] is one resource served by the generic dispatcher. Every hook
//! has a generic default (see [`crate::generic`]), so a plain resource is a
//! descriptor and nothing else; resources with behaviour override the hooks
//! they need, the way Cloudpods models override `ValidateCreateData`,
//! `PostCreate`, `CustomizeDelete`, `Perform<Action>` and `GetDetails<Spec>`.

use async_trait::async_trait;
use cloudpods_db::{Db, ModelDesc, Row, Sql};
use serde_json::Value;

use crate::context::Ctx;
use crate::error::{HttpError, Result};
use crate::generic;
use crate::params::Object;

#[async_trait]
pub trait Model: Send + Sync + 'static {
    fn desc(&self) -> &ModelDesc;
    fn db(&self) -> &Db;

    /// `(context plural, foreign-key column)` pairs: this model is also
    /// listed and created under `/{context}/{id}/{plural}` (e.g. hosts under
    /// zones).
    fn contexts(&self) -> &[(&'static str, &'static str)] {
        &[]
    }

    /// Largest `count` accepted on batch create.
    fn max_batch(&self) -> i64 {
        100
    }

    /// Resource-specific list filters (`?host=…`, `?zone=…`); `scope` is the
    /// scope the list runs at.
    async fn list_filter(
        &self,
        _ctx: &Ctx,
        _q: &Object,
        _scope: cloudpods_rbac::Scope,
        _conds: &mut Vec<Sql>,
    ) -> Result<()> {
        Ok(())
    }

    /// Visibility that the owner columns cannot express, applied to lists
    /// and lookups at `scope` (Keystone: at project scope a user sees its own
    /// user record and the projects it has roles in).
    async fn scope_filter(&self, _ctx: &Ctx, _scope: cloudpods_rbac::Scope) -> Result<Option<Sql>> {
        Ok(None)
    }

    /// Add the detail fields to rows about to be returned (batched: one
    /// query per related table, never one per row).
    async fn details(&self, _ctx: &Ctx, _rows: &mut [Row], _q: &Object) -> Result<()> {
        Ok(())
    }

    /// Check and complete a new row built from the settable columns of the
    /// input. `input` is the whole (normalized) create input.
    async fn validate_create(&self, _ctx: &Ctx, _row: &mut Row, _input: &Object) -> Result<()> {
        Ok(())
    }

    /// Insert the new rows (one per requested instance).
    async fn create(&self, ctx: &Ctx, rows: Vec<Row>, input: &Object) -> Result<Vec<Row>> {
        generic::insert_rows(self, ctx, rows, input).await
    }

    /// Runs after the rows are committed (start tasks here).
    async fn post_create(&self, _ctx: &Ctx, _rows: &[Row], _input: &Object) -> Result<()> {
        Ok(())
    }

    async fn validate_update(
        &self,
        _ctx: &Ctx,
        _obj: &Row,
        _changes: &mut Row,
        _input: &Object,
    ) -> Result<()> {
        Ok(())
    }

    /// Runs after an update is committed.
    async fn post_update(&self, _ctx: &Ctx, _obj: &Row, _changes: &Row) -> Result<()> {
        Ok(())
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        generic::validate_delete_common(self.desc(), obj)
    }

    /// Delete (or start deleting) the object; returns what to answer.
    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        generic::delete_row(self, ctx, obj, q).await
    }

    /// `POST /{plural}/{id}/{action}`.
    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        generic::perform_common(self, ctx, obj, action, input).await
    }

    /// `POST /{plural}/{action}`.
    async fn perform_class(&self, _ctx: &Ctx, action: &str, _input: Object) -> Result<Value> {
        Err(HttpError::action_not_found(format!(
            "{} has no class action {action}",
            self.desc().plural
        )))
    }

    /// `GET /{plural}/{id}/{spec}`.
    async fn get_spec(&self, ctx: &Ctx, obj: Row, spec: &str, q: &Object) -> Result<Value> {
        generic::spec_common(self, ctx, obj, spec, q).await
    }

    /// Names answered at `GET /{plural}/{name}` as class properties
    /// instead of object lookups.
    fn class_properties(&self) -> &[&'static str] {
        &["distinct-field"]
    }

    /// `GET /{plural}/{property}`.
    async fn get_property(&self, ctx: &Ctx, name: &str, q: &Object) -> Result<Value> {
        generic::property_common(self, ctx, name, q).await
    }
}

/// A joint resource linking two models (`guestdisks`: servers ↔ disks).
#[async_trait]
pub trait JointModel: Send + Sync + 'static {
    fn desc(&self) -> &ModelDesc;
    fn db(&self) -> &Db;
    /// `(plural, column)` of the master side (`servers`, `guest_id`).
    fn master(&self) -> (&'static str, &'static str);
    /// `(plural, column)` of the slave side (`disks`, `disk_id`).
    fn slave(&self) -> (&'static str, &'static str);

    /// Add related names (`guest`, `disk`…) to joint rows.
    async fn details(&self, _ctx: &Ctx, _rows: &mut [Row]) -> Result<()> {
        Ok(())
    }

    /// `POST /{master}/{mid}/{slave}/{sid}`.
    async fn attach(&self, _ctx: &Ctx, _master: Row, _slave: Row, _input: Object) -> Result<Row> {
        Err(HttpError::not_supported(format!(
            "attach is not supported on {}",
            self.desc().plural
        )))
    }

    /// `DELETE /{master}/{mid}/{slave}/{sid}`.
    async fn detach(&self, _ctx: &Ctx, _master: Row, _slave: Row, _q: Object) -> Result<Row> {
        Err(HttpError::not_supported(format!(
            "detach is not supported on {}",
            self.desc().plural
        )))
    }

    /// `PUT /{master}/{mid}/{slave}/{sid}`.
    async fn update(&self, ctx: &Ctx, joint: Row, input: Object) -> Result<Row> {
        generic::update_joint(self, ctx, joint, input).await
    }
}
