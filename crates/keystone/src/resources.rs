//! Identity resources served by the generic dispatcher.

use std::sync::Arc;

use async_trait::async_trait;
use cloudpods_db::{Db, ModelDesc, Row, Sql, crud};
use cloudpods_rbac::{PolicyBlob, Scope};
use cloudpods_rest::params::{get_str, get_str_any};
use cloudpods_rest::{Ctx, HttpError, Model, Object, Result, Service};
use serde_json::{Value, json};

use crate::Keystone;
use crate::models::*;
use crate::privilege;
use crate::store::{self, s};

/// Ids of built-in objects that must not be deleted.
const PROTECTED_DOMAINS: &[&str] = &["default"];

pub fn register(svc: Service, ks: &Arc<Keystone>) -> Service {
    let m = |desc: &'static ModelDesc, kind: Kind| -> Arc<dyn Model> {
        Arc::new(IdentityModel {
            desc,
            ks: ks.clone(),
            kind,
        })
    };
    svc.model(m(&DOMAINS, Kind::Domain))
        .model(m(&PROJECTS, Kind::Project))
        .model(m(&USERS, Kind::User))
        .model(m(&GROUPS, Kind::Group))
        .model(m(&ROLES, Kind::Role))
        .model(m(&SERVICES, Kind::Service))
        .model(m(&REGIONS, Kind::Region))
        .model(m(&ENDPOINTS, Kind::Endpoint))
        .model(m(&POLICIES, Kind::Policy))
        .model(m(&ROLE_POLICIES, Kind::RolePolicy))
        .model(m(&CREDENTIALS, Kind::Credential))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Domain,
    Project,
    User,
    Group,
    Role,
    Service,
    Region,
    Endpoint,
    Policy,
    RolePolicy,
    Credential,
}

struct IdentityModel {
    desc: &'static ModelDesc,
    ks: Arc<Keystone>,
    kind: Kind,
}

/// Minimum password length for local users.
const MIN_PASSWORD_LEN: usize = 6;

fn check_password(pw: &str) -> Result<()> {
    if pw.chars().count() < MIN_PASSWORD_LEN {
        return Err(HttpError::input(format!(
            "password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if pw.len() > 512 {
        return Err(HttpError::input("password is too long"));
    }
    Ok(())
}

impl IdentityModel {
    /// The scope the caller holds for `action` on this resource (the generic
    /// layer already refused when there is none).
    fn granted(&self, ctx: &Ctx, action: &str, extra: Option<&str>) -> Result<Scope> {
        Ok(ctx.require_on(self.desc, action, extra)?.scope)
    }

    /// Changing or removing `obj` must not reach above the caller's grant:
    /// users, groups and projects by what they hold, policies by their
    /// scope, roles by what they carry, bindings by their policy.
    async fn guard(&self, ctx: &Ctx, obj: &Row, action: &str, extra: Option<&str>) -> Result<()> {
        let granted = self.granted(ctx, action, extra)?;
        match self.kind {
            Kind::User | Kind::Group | Kind::Project => {
                privilege::check_may_manage(&self.ks, self.desc, obj, granted).await
            }
            Kind::Role => privilege::check_ceiling(
                granted,
                privilege::role_ceiling(&self.ks, &s(obj, "id")).await?,
                &format!("role {}", s(obj, "name")),
            ),
            Kind::Policy => {
                if store::b(obj, "is_system") && granted != Scope::System {
                    return Err(HttpError::forbidden(format!(
                        "built-in policy {} is managed by system admins only",
                        s(obj, "name")
                    )));
                }
                let scope = s(obj, "scope").parse::<Scope>().unwrap_or(Scope::System);
                privilege::check_ceiling(
                    granted,
                    Some(scope),
                    &format!("policy {}", s(obj, "name")),
                )
            }
            Kind::RolePolicy => {
                let role = crud::must_get(self.ks.db.read(), &ROLES, &s(obj, "role_id")).await?;
                let policy =
                    crud::must_get(self.ks.db.read(), &POLICIES, &s(obj, "policy_id")).await?;
                let project_id = s(obj, "project_id");
                let project = if project_id.is_empty() {
                    None
                } else {
                    crud::get(self.ks.db.read(), &PROJECTS, &project_id).await?
                };
                privilege::check_binding(ctx, granted, &role, &policy, project.as_ref())
            }
            _ => Ok(()),
        }
    }

    async fn find_in(&self, desc: &ModelDesc, ident: &str, what: &str) -> Result<Row> {
        store::find_ident(&self.ks.db, desc, ident, what, Vec::new()).await
    }

    fn validate_policy_blob(&self, ctx: &Ctx, row: &mut Row) -> Result<()> {
        if let Some(blob) = row.get("blob") {
            let blob = match blob {
                // climc may send the blob as a JSON string.
                Value::String(text) => serde_json::from_str::<Value>(text).map_err(|e| {
                    HttpError::new(
                        cloudpods_apis::ErrorClass::PolicyDefinitionError,
                        format!("invalid policy: {e}"),
                    )
                })?,
                other => other.clone(),
            };
            let parsed = PolicyBlob::parse(&blob).map_err(|e| {
                HttpError::new(
                    cloudpods_apis::ErrorClass::PolicyDefinitionError,
                    format!("invalid policy: {e}"),
                )
            })?;
            row.insert("blob".into(), parsed.to_json());
        }
        if let Some(scope) = row.get("scope").and_then(Value::as_str) {
            let scope: Scope = scope
                .parse()
                .map_err(|e: cloudpods_rbac::ParseError| HttpError::input(e.to_string()))?;
            let granted = ctx
                .max_scope("policies", "create", None)
                .unwrap_or(Scope::Project);
            if scope > granted {
                return Err(HttpError::forbidden(format!(
                    "not allowed to define {}-scope policies",
                    scope.as_str()
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Model for IdentityModel {
    fn desc(&self) -> &ModelDesc {
        self.desc
    }

    fn db(&self) -> &Db {
        &self.ks.db
    }

    async fn list_filter(
        &self,
        ctx: &Ctx,
        q: &Object,
        scope: Scope,
        conds: &mut Vec<Sql>,
    ) -> Result<()> {
        match self.kind {
            // Below system scope a caller sees only its own domain.
            Kind::Domain if scope != Scope::System => {
                conds.push(crud::eq("id", ctx.identity.domain_id.as_str()))
            }
            Kind::Endpoint => {
                if let Some(svc) = get_str_any(q, &["service", "service_type"]) {
                    let mut c = Sql::new(
                        "`service_id` IN (SELECT `id` FROM `services` WHERE `deleted` = 0 AND (`id` = ",
                    );
                    c.bind(svc.clone())
                        .push(" OR `name` = ")
                        .bind(svc.clone())
                        .push(" OR `type` = ")
                        .bind(svc)
                        .push("))");
                    conds.push(c);
                }
            }
            Kind::User => {
                if let Some(g) = get_str(q, "group_id") {
                    let mut c =
                        Sql::new("`id` IN (SELECT `user_id` FROM `usergroups` WHERE `group_id` = ");
                    c.bind(g).push(")");
                    conds.push(c);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn scope_filter(&self, ctx: &Ctx, _scope: Scope) -> Result<Option<Sql>> {
        privilege::scope_filter(&self.ks, ctx, self.desc).await
    }

    async fn details(&self, _ctx: &Ctx, rows: &mut [Row], _q: &Object) -> Result<()> {
        match self.kind {
            Kind::Endpoint => {
                let services =
                    crud::list(&self.ks.db, &SERVICES, &cloudpods_db::ListSpec::default())
                        .await?
                        .0;
                for r in rows.iter_mut() {
                    let sid = s(r, "service_id");
                    if let Some(svc) = services.iter().find(|x| s(x, "id") == sid) {
                        r.insert("service_name".into(), json!(s(svc, "name")));
                        r.insert("service_type".into(), json!(s(svc, "type")));
                    }
                    r.insert("region".into(), json!(s(r, "region_id")));
                }
            }
            Kind::User => {
                let now = cloudpods_apis::time::now();
                for r in rows.iter_mut() {
                    let locked = r
                        .get("locked_until")
                        .and_then(Value::as_str)
                        .is_some_and(|u| *u > *now);
                    r.insert("is_locked".into(), json!(locked));
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn validate_create(&self, ctx: &Ctx, row: &mut Row, input: &Object) -> Result<()> {
        match self.kind {
            Kind::User => {
                if let Some(pw) = get_str(input, "password") {
                    check_password(&pw)?;
                    let hash = crate::token::hash_password(&pw).await?;
                    row.insert("password_hash".into(), json!(hash));
                    row.insert(
                        "password_changed_at".into(),
                        json!(cloudpods_apis::time::now()),
                    );
                }
            }
            Kind::Region => {
                let name = s(row, "name");
                row.entry("id").or_insert(json!(name));
            }
            Kind::Endpoint => {
                if s(row, "service_id").is_empty()
                    && let Some(svc) = get_str(input, "service")
                {
                    row.insert("service_id".into(), json!(svc));
                }
                let svc_ident = s(row, "service_id");
                let svc = self.find_in(&SERVICES, &svc_ident, "service").await?;
                row.insert("service_id".into(), json!(s(&svc, "id")));
                if s(row, "region_id").is_empty()
                    && let Some(r) = get_str(input, "region")
                {
                    row.insert("region_id".into(), json!(r));
                }
                let region = crud::get(self.ks.db.read(), &REGIONS, &s(row, "region_id")).await?;
                if region.is_none() {
                    return Err(HttpError::not_found(format!(
                        "region {} not found",
                        s(row, "region_id")
                    )));
                }
                let iface = s(row, "interface");
                if ![
                    "public",
                    "internal",
                    "admin",
                    "console",
                    "slave",
                    "apigateway",
                ]
                .contains(&iface.as_str())
                {
                    return Err(HttpError::input(format!("invalid interface {iface:?}")));
                }
                let url = s(row, "url");
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(HttpError::input(format!(
                        "endpoint url must be http(s), got {url:?}"
                    )));
                }
                if s(row, "name").is_empty() {
                    row.insert(
                        "name".into(),
                        json!(format!("{}-{}", s(&svc, "type"), iface)),
                    );
                }
            }
            Kind::Policy => {
                if !row.contains_key("type") {
                    row.insert("type".into(), json!(s(row, "name")));
                }
                self.validate_policy_blob(ctx, row)?;
            }
            Kind::RolePolicy => {
                let role = get_str_any(input, &["role_id", "role"])
                    .ok_or_else(|| HttpError::missing("role_id is required"))?;
                let role = self.find_in(&ROLES, &role, "role").await?;
                row.insert("role_id".into(), json!(s(&role, "id")));
                let policy = get_str_any(input, &["policy_id", "policy"])
                    .ok_or_else(|| HttpError::missing("policy_id is required"))?;
                let policy = self.find_in(&POLICIES, &policy, "policy").await?;
                row.insert("policy_id".into(), json!(s(&policy, "id")));
                let project = match get_str_any(input, &["project_id", "project"]) {
                    Some(p) => Some(
                        store::find_project(&self.ks.db, &p, None)
                            .await?
                            .ok_or_else(|| {
                                HttpError::not_found(format!("project {p} not found"))
                            })?,
                    ),
                    None => None,
                };
                let granted = self.granted(ctx, "create", None)?;
                privilege::check_binding(ctx, granted, &role, &policy, project.as_ref())?;
                if let Some(project) = project {
                    row.insert("project_id".into(), json!(s(&project, "id")));
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_create(&self, _ctx: &Ctx, _rows: &[Row], _input: &Object) -> Result<()> {
        if matches!(self.kind, Kind::Service | Kind::Endpoint) {
            self.ks.invalidate_catalog();
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
        self.guard(ctx, obj, "update", None).await?;
        match self.kind {
            Kind::User => {
                if let Some(pw) = get_str(input, "password") {
                    check_password(&pw)?;
                    changes.insert(
                        "password_hash".into(),
                        json!(crate::token::hash_password(&pw).await?),
                    );
                    changes.insert(
                        "password_changed_at".into(),
                        json!(cloudpods_apis::time::now()),
                    );
                }
            }
            Kind::Policy => self.validate_policy_blob(ctx, changes)?,
            Kind::Domain
                if changes.get("enabled") == Some(&json!(false))
                    && PROTECTED_DOMAINS.contains(&s(obj, "id").as_str()) =>
            {
                return Err(HttpError::protected(
                    "the default domain cannot be disabled",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_update(&self, _ctx: &Ctx, obj: &Row, changes: &Row) -> Result<()> {
        match self.kind {
            Kind::User
                if changes.contains_key("password_hash")
                    || changes.get("enabled") == Some(&json!(false)) =>
            {
                self.ks.revoke_user(&s(obj, "id")).await?;
            }
            Kind::Project | Kind::Domain => {
                self.ks.tenants.invalidate();
                if changes.get("enabled") == Some(&json!(false)) {
                    // Tokens scoped to it must stop working now, not at expiry.
                    self.ks.cache.forget_user(None);
                }
            }
            Kind::Service | Kind::Endpoint => self.ks.invalidate_catalog(),
            Kind::Policy | Kind::RolePolicy | Kind::Role => self.ks.cache.forget_user(None),
            _ => {}
        }
        Ok(())
    }

    async fn validate_delete(&self, ctx: &Ctx, obj: &Row, _q: &Object) -> Result<()> {
        cloudpods_rest::generic::validate_delete_common(self.desc, obj)?;
        self.guard(ctx, obj, "delete", None).await?;
        let id = s(obj, "id");
        let name = s(obj, "name");
        match self.kind {
            Kind::Domain => {
                if PROTECTED_DOMAINS.contains(&id.as_str()) {
                    return Err(HttpError::protected("the default domain cannot be deleted"));
                }
                if obj.get("enabled").and_then(Value::as_bool) == Some(true) {
                    return Err(HttpError::invalid_status(format!(
                        "domain {name} must be disabled before it is deleted"
                    )));
                }
                for (table, what) in [
                    ("projects", "projects"),
                    ("users", "users"),
                    ("groups", "groups"),
                ] {
                    if store::count_where(&self.ks.db, table, "domain_id", &id, true).await? > 0 {
                        return Err(HttpError::not_empty(format!(
                            "domain {name} still has {what}"
                        )));
                    }
                }
            }
            Kind::Project if name == "system" && s(obj, "domain_id") == "default" => {
                return Err(HttpError::protected("the system project cannot be deleted"));
            }
            Kind::User if obj.get("is_system_account").and_then(Value::as_bool) == Some(true) => {
                return Err(HttpError::protected(format!("{name} is a system account")));
            }
            Kind::Role if ["admin", "member"].contains(&name.as_str()) => {
                return Err(HttpError::protected(format!(
                    "built-in role {name} cannot be deleted"
                )));
            }
            Kind::Policy if obj.get("is_system").and_then(Value::as_bool) == Some(true) => {
                return Err(HttpError::protected(format!(
                    "built-in policy {name} cannot be deleted"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, obj: Row, q: &Object) -> Result<Row> {
        let id = s(&obj, "id");
        let out = cloudpods_rest::generic::delete_row(self, ctx, obj, q).await?;
        match self.kind {
            Kind::Project => {
                store::purge_assignments(&self.ks.db, "target_id", &id).await?;
                store::soft_delete_where(&self.ks.db, "role_policies", "project_id", &id).await?;
                self.ks.tenants.invalidate();
                self.ks.cache.forget_user(None);
            }
            Kind::User => {
                store::purge_assignments(&self.ks.db, "actor_id", &id).await?;
                store::purge_memberships(&self.ks.db, "user_id", &id).await?;
                self.ks.revoke_user(&id).await?;
            }
            Kind::Group => {
                store::purge_assignments(&self.ks.db, "actor_id", &id).await?;
                store::purge_memberships(&self.ks.db, "group_id", &id).await?;
                self.ks.cache.forget_user(None);
            }
            Kind::Role => {
                store::purge_assignments(&self.ks.db, "role_id", &id).await?;
                store::soft_delete_where(&self.ks.db, "role_policies", "role_id", &id).await?;
                self.ks.cache.forget_user(None);
            }
            Kind::Service => {
                store::soft_delete_where(&self.ks.db, "endpoints", "service_id", &id).await?;
                self.ks.invalidate_catalog();
            }
            Kind::Endpoint => self.ks.invalidate_catalog(),
            Kind::Policy => {
                store::soft_delete_where(&self.ks.db, "role_policies", "policy_id", &id).await?;
                self.ks.cache.forget_user(None);
            }
            Kind::RolePolicy => self.ks.cache.forget_user(None),
            Kind::Domain => self.ks.tenants.invalidate(),
            _ => {}
        }
        Ok(out)
    }

    async fn perform(&self, ctx: &Ctx, obj: Row, action: &str, input: Object) -> Result<Value> {
        self.guard(ctx, &obj, "perform", Some(action)).await?;
        match (self.kind, action) {
            (Kind::User, "unlock") => {
                let mut ch = Row::new();
                ch.insert("locked_until".into(), Value::Null);
                ch.insert("failed_auth_count".into(), json!(0));
                crud::update(self.ks.db.write(), &USERS, &s(&obj, "id"), &ch).await?;
                let mut r = crud::must_get(self.ks.db.read(), &USERS, &s(&obj, "id")).await?;
                r.remove("password_hash");
                Ok(Value::Object(r))
            }
            (Kind::User | Kind::Project | Kind::Domain, "enable" | "disable") => {
                let mut ch = Row::new();
                ch.insert("enabled".into(), json!(action == "enable"));
                if action == "disable" {
                    self.validate_update(ctx, &obj, &mut ch, &input).await?;
                }
                crud::update(self.ks.db.write(), self.desc, &s(&obj, "id"), &ch).await?;
                self.post_update(ctx, &obj, &ch).await?;
                let mut r = crud::must_get(self.ks.db.read(), self.desc, &s(&obj, "id")).await?;
                r.remove("password_hash");
                Ok(Value::Object(r))
            }
            _ => cloudpods_rest::generic::perform_common(self, ctx, obj, action, input).await,
        }
    }
}
