//! The image resource on the generic REST layer: what Cloudpods'
//! `SImage` adds to a sharable virtual resource — format and property
//! validation, the per-project quota, sharing, details (properties,
//! sub-formats), delete with the recycle bin, and the image actions.

use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_apis::image as api;
use cloudpods_db::row::s;
use cloudpods_db::{Db, ModelDesc, Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::params::{flag, get_bool, get_i64, get_str};
use cloudpods_rest::{Ctx, HttpError, Model, Object, Result, generic};
use serde_json::{Map, Value, json};

use crate::Glance;
use crate::models::{IMAGE_PROPERTIES, IMAGES};

pub struct ImageModel {
    pub g: Arc<Glance>,
}

impl ImageModel {
    pub fn new(g: Arc<Glance>) -> ImageModel {
        ImageModel { g }
    }
}

/// Check a `properties` object: keys are identifiers, values scalars.
pub fn check_properties(v: &Value) -> Result<Map<String, Value>> {
    let Value::Object(m) = v else {
        return Err(HttpError::input("properties must be an object"));
    };
    let mut out = Map::new();
    for (k, v) in m {
        if k.is_empty()
            || k.len() > 64
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err(HttpError::input(format!("invalid property name {k:?}")));
        }
        let val = match v {
            Value::Null => Value::Null,
            Value::String(s) => Value::String(s.clone()),
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Number(n) => Value::String(n.to_string()),
            _ => {
                return Err(HttpError::input(format!(
                    "property {k} must be a string, number or boolean"
                )));
            }
        };
        if val.as_str().is_some_and(|s| s.len() > 4096) {
            return Err(HttpError::input(format!("property {k} is too long")));
        }
        out.insert(k.replace('-', "_"), val);
    }
    Ok(out)
}

/// Write properties (`null` removes one); `replace` drops the others.
pub async fn save_properties(
    db: &Db,
    id: &str,
    props: &Map<String, Value>,
    replace: bool,
) -> Result<()> {
    let mut tx = db.begin().await?;
    let mut del = Sql::new("DELETE FROM `image_properties` WHERE `image_id` = ");
    del.bind(id);
    if !replace {
        del.push(" AND `name` IN ").bind_list(props.keys());
    }
    if replace || !props.is_empty() {
        del.query()?
            .execute(&mut *tx)
            .await
            .map_err(cloudpods_db::DbError::from)?;
    }
    for (k, v) in props {
        let Some(v) = v.as_str() else { continue };
        let mut row: Row = json!({"image_id": id, "name": k, "value": v})
            .as_object()
            .cloned()
            .unwrap_or_default();
        crud::prepare_insert(&IMAGE_PROPERTIES, &mut row);
        crud::insert(&mut *tx, &IMAGE_PROPERTIES, &row).await?;
    }
    tx.commit().await.map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// Properties of images, by image id.
pub async fn properties_of(
    db: &Db,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Map<String, Value>>> {
    let mut out: std::collections::HashMap<String, Map<String, Value>> = Default::default();
    for chunk in ids.chunks(500) {
        let mut q = Sql::new(format!(
            "SELECT {} FROM `image_properties` WHERE `image_id` IN ",
            crud::column_list(&IMAGE_PROPERTIES)
        ));
        q.bind_list(chunk.iter());
        for r in crud::fetch_rows(db.read(), &IMAGE_PROPERTIES, &q).await? {
            out.entry(s(&r, "image_id"))
                .or_default()
                .insert(s(&r, "name"), json!(s(&r, "value")));
        }
    }
    Ok(out)
}

/// `is_public` / `public_scope` from the input, checked against what the
/// caller may share: `(is_public, public_scope)` or `None` when not given.
fn sharing(ctx: &Ctx, input: &Object) -> Result<Option<(bool, String)>> {
    let Some(public) = get_bool(input, "is_public")? else {
        return Ok(None);
    };
    if !public {
        return Ok(Some((false, "none".into())));
    }
    let allowed = ctx.max_scope(IMAGES.plural, "perform", Some("public"));
    let target = match get_str(input, "public_scope") {
        Some(t) => t
            .parse::<Scope>()
            .map_err(|e| HttpError::input(e.to_string()))?,
        None => match allowed {
            Some(Scope::System) => Scope::System,
            _ => Scope::Domain,
        },
    };
    if target == Scope::Project {
        return Err(HttpError::input("public_scope must be domain or system"));
    }
    if allowed.is_none_or(|a| a < target) {
        return Err(HttpError::forbidden(format!(
            "not allowed to share images at {} scope",
            target.as_str()
        )));
    }
    Ok(Some((true, target.as_str().to_string())))
}

fn check_sizes(input: &Object) -> Result<()> {
    for k in ["min_disk", "min_ram"] {
        if let Some(v) = get_i64(input, k)?
            && v < 0
        {
            return Err(HttpError::input(format!("{k} must not be negative")));
        }
    }
    Ok(())
}

/// Images of a project that count against its quota.
pub async fn project_image_count(db: &Db, tenant_id: &str) -> Result<i64> {
    let mut q = Sql::new(
        "SELECT COUNT(*) FROM `images` WHERE `deleted` = 0 AND `pending_deleted` = 0 AND `tenant_id` = ",
    );
    q.bind(tenant_id)
        .push(" AND `status` NOT IN ")
        .bind_list([api::STATUS_KILLED, api::STATUS_SAVE_FAIL]);
    Ok(crud::fetch_i64(db.read(), &q).await?)
}

#[async_trait]
impl Model for ImageModel {
    fn desc(&self) -> &ModelDesc {
        &IMAGES
    }

    fn db(&self) -> &Db {
        &self.g.db
    }

    async fn list_filter(
        &self,
        _ctx: &Ctx,
        q: &Object,
        _scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        // Property filters: `?os_type=Linux`.
        for p in api::STANDARD_PROPERTIES {
            if IMAGES.has(p) {
                continue;
            }
            if let Some(v) = get_str(q, p) {
                let mut c =
                    Sql::new("`id` IN (SELECT `image_id` FROM `image_properties` WHERE `name` = ");
                c.bind(*p).push(" AND `value` = ").bind(v).push(")");
                conds.push(c);
            }
        }
        let formats = cloudpods_rest::params::get_strs(q, "disk_formats");
        if !formats.is_empty() {
            conds.push(crud::in_list("disk_format", formats));
        }
        Ok(())
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| s(r, "id")).collect();
        let mut props = properties_of(&self.g.db, &ids).await?;
        let subs = self.g.subformats(&ids).await.map_err(HttpError::from)?;
        let expire =
            chrono::TimeDelta::from_std(self.g.opts.pending_delete_expire).unwrap_or_default();
        for r in rows.iter_mut() {
            let id = s(r, "id");
            r.insert(
                "properties".into(),
                Value::Object(props.remove(&id).unwrap_or_default()),
            );
            let mine: Vec<Value> = subs
                .iter()
                .filter(|x| s(x, "image_id") == id)
                .map(|x| {
                    json!({"format": x.get("format"), "size": x.get("size"), "checksum": x.get("checksum"),
                           "sha256": x.get("sha256"), "status": x.get("status"),
                           "fail_reason": x.get("fail_reason")})
                })
                .collect();
            r.insert("subformats".into(), Value::Array(mine));
            let protected = r.get("protected").and_then(Value::as_bool).unwrap_or(false);
            r.insert("disable_delete".into(), json!(protected));
            if s(r, "oss_checksum").is_empty() {
                let c = r.get("checksum").cloned().unwrap_or(Value::Null);
                r.insert("oss_checksum".into(), c);
            }
            if r.get("pending_deleted").and_then(Value::as_bool) == Some(true)
                && let Some(t) = cloudpods_apis::time::parse(&s(r, "pending_deleted_at"))
            {
                r.insert(
                    "auto_delete_at".into(),
                    json!(cloudpods_apis::time::format(t + expire)),
                );
            }
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        let fmt = s(row, "disk_format");
        if !fmt.is_empty() && !api::DISK_FORMATS.contains(&fmt.as_str()) {
            return Err(HttpError::input(format!(
                "unknown disk_format {fmt:?}: one of {}",
                api::DISK_FORMATS.join(", ")
            )));
        }
        let cf = s(row, "container_format");
        if !cf.is_empty() && !api::CONTAINER_FORMATS.contains(&cf.as_str()) {
            return Err(HttpError::input(format!(
                "unknown container_format {cf:?}: one of {}",
                api::CONTAINER_FORMATS.join(", ")
            )));
        }
        check_sizes(input)?;
        if let Some(p) = input.get("properties") {
            let props = check_properties(p)?;
            if let Some(a) = props.get("os_arch").and_then(Value::as_str) {
                row.insert("os_arch".into(), json!(a));
            }
        }
        if let Some((public, scope)) = sharing(ctx, input)? {
            row.insert("is_public".into(), json!(public));
            row.insert("public_scope".into(), json!(scope));
            row.insert("public_src".into(), json!("local"));
        }
        let tenant = s(row, "tenant_id");
        row.insert("owner".into(), json!(tenant));
        row.insert("status".into(), json!(api::STATUS_QUEUED));
        let quota = self.g.opts.image_quota;
        if quota > 0 {
            let used = project_image_count(&self.g.db, &tenant).await?;
            if used >= quota {
                return Err(HttpError::out_of_quota(format!(
                    "image quota exceeded: the project has {used} of {quota} images"
                )));
            }
        }
        Ok(())
    }

    async fn post_create(&self, _ctx: &Ctx, rows: &[Row], input: &Object) -> Result<()> {
        if let Some(p) = input.get("properties") {
            let props = check_properties(p)?;
            for r in rows {
                save_properties(&self.g.db, &s(r, "id"), &props, false).await?;
            }
        }
        Ok(())
    }

    async fn validate_update(
        &self,
        ctx: &Ctx,
        obj: &Row,
        changes: &mut Row,
        input: &Object,
    ) -> Result<()> {
        check_sizes(input)?;
        if let Some((public, scope)) = sharing(ctx, input)? {
            changes.insert("is_public".into(), json!(public));
            changes.insert("public_scope".into(), json!(scope));
            changes.insert("public_src".into(), json!("local"));
        }
        if let Some(p) = input.get("properties") {
            let props = check_properties(p)?;
            if let Some(a) = props.get("os_arch") {
                changes.insert("os_arch".into(), a.clone());
            }
            save_properties(&self.g.db, &s(obj, "id"), &props, false).await?;
        }
        Ok(())
    }

    async fn validate_delete(&self, _ctx: &Ctx, obj: &Row, q: &Object) -> Result<()> {
        generic::validate_delete_common(&IMAGES, obj)?;
        let st = s(obj, "status");
        if [
            api::STATUS_SAVING,
            api::STATUS_PROBING,
            api::STATUS_CONVERTING,
        ]
        .contains(&st.as_str())
        {
            return Err(HttpError::invalid_status(format!(
                "cannot delete image in status {st}"
            )));
        }
        let pending = obj.get("pending_deleted").and_then(Value::as_bool) == Some(true);
        if obj.get("is_public").and_then(Value::as_bool) == Some(true) && !pending {
            return Err(HttpError::forbidden(
                "image is shared: make it private before deleting it",
            ));
        }
        if pending && !flag(q, "override_pending_delete")? && !flag(q, "purge")? {
            return Err(HttpError::invalid_status(
                "image is already pending delete (use override_pending_delete)",
            ));
        }
        Ok(())
    }

    async fn delete(&self, _ctx: &Ctx, mut obj: Row, q: &Object) -> Result<Row> {
        let id = s(&obj, "id");
        let st = s(&obj, "status");
        let now_ok = [api::STATUS_ACTIVE, api::STATUS_DEACTIVATED].contains(&st.as_str());
        let pending = obj.get("pending_deleted").and_then(Value::as_bool) == Some(true);
        if self.g.opts.enable_pending_delete
            && now_ok
            && !pending
            && !flag(q, "override_pending_delete")?
            && !flag(q, "purge")?
        {
            let ch = json!({"pending_deleted": true, "pending_deleted_at": cloudpods_apis::time::now(),
                            "status": api::STATUS_PENDING_DELETE});
            self.g.set(&id, ch.clone()).await.map_err(HttpError::from)?;
            if let Value::Object(ch) = ch {
                obj.extend(ch);
            }
            return Ok(obj);
        }
        self.g.purge(&obj).await.map_err(HttpError::from)?;
        obj.insert("status".into(), json!(api::STATUS_DELETED));
        obj.insert("deleted".into(), json!(true));
        Ok(obj)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        let id = s(&obj, "id");
        let reload = || async {
            let mut rows = [crud::must_get(self.g.db.write(), &IMAGES, &id).await?];
            generic::strip_secrets(&IMAGES, &mut rows);
            let [r] = rows;
            Ok::<Value, HttpError>(Value::Object(r))
        };
        match action {
            "cancel-delete" => {
                if obj.get("pending_deleted").and_then(Value::as_bool) != Some(true) {
                    return Err(HttpError::invalid_status("image is not pending delete"));
                }
                self.g
                    .set(
                        &id,
                        json!({"pending_deleted": false, "pending_deleted_at": null,
                               "status": api::STATUS_ACTIVE}),
                    )
                    .await
                    .map_err(HttpError::from)?;
                reload().await
            }
            "deactivate" => {
                if !self
                    .g
                    .cas_status(
                        &id,
                        &[api::STATUS_ACTIVE],
                        json!({"status": api::STATUS_DEACTIVATED}),
                    )
                    .await
                    .map_err(HttpError::from)?
                {
                    return Err(HttpError::invalid_status(format!(
                        "cannot deactivate image in status {}",
                        s(&obj, "status")
                    )));
                }
                reload().await
            }
            "reactivate" | "activate" => {
                if !self
                    .g
                    .cas_status(
                        &id,
                        &[api::STATUS_DEACTIVATED],
                        json!({"status": api::STATUS_ACTIVE}),
                    )
                    .await
                    .map_err(HttpError::from)?
                {
                    return Err(HttpError::invalid_status(format!(
                        "cannot reactivate image in status {}",
                        s(&obj, "status")
                    )));
                }
                reload().await
            }
            _ => generic::perform_common(self, ctx, obj, action, input).await,
        }
    }
}
