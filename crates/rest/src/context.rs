//! Who is calling, and what they may do.
//!
//! An [`Identity`] is what a validated token says: the user, the project it is
//! scoped to, its roles and its policies per scope. [`Ctx`] is one request's
//! view of it, with the helpers every handler uses to authorize and to build
//! visibility filters.

use std::sync::Arc;

use cloudpods_db::{ModelDesc, Owner, Row, Sql, crud};
use cloudpods_rbac::{Request as PolicyRequest, Scope, ScopedPolicies};
use serde_json::Value;

use crate::error::{HttpError, Result};

pub use cloudpods_apis::identity::PolicyNames;

/// A validated token.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub user_id: String,
    pub user: String,
    pub user_domain_id: String,
    pub user_domain: String,
    /// Empty for domain-scoped and unscoped tokens.
    pub project_id: String,
    pub project: String,
    /// The domain the token is scoped to (the project's domain for project
    /// tokens).
    pub domain_id: String,
    pub domain: String,
    pub roles: Vec<String>,
    pub role_ids: Vec<String>,
    pub policy_names: PolicyNames,
    pub policies: Arc<ScopedPolicies>,
    /// Fixed-width UTC timestamps.
    pub expires_at: String,
    pub issued_at: String,
    pub audit_id: String,
    pub methods: Vec<String>,
}

impl Identity {
    pub fn is_project_scoped(&self) -> bool {
        !self.project_id.is_empty()
    }
}

static DEFAULT_GRANTS: std::sync::LazyLock<cloudpods_rbac::PolicyBlob> =
    std::sync::LazyLock::new(cloudpods_rbac::default_grants);

/// Highest scope at which `identity` may do `action` on `resource` of
/// `service` by its policies (what [`Ctx::max_scope`] answers; also the
/// gateway's `/auth/permissions`).
pub fn allowed_scope(
    identity: &Identity,
    service: &str,
    resource: &str,
    action: &str,
    extra: Option<&str>,
) -> Option<Scope> {
    let mut req = PolicyRequest::new(service, resource, action);
    if let Some(e) = extra {
        req = req.with_extra(e);
    }
    let granted = identity.policies.max_allowed_scope(&req);
    // Default grants apply to everyone at project scope.
    if granted.is_none() && DEFAULT_GRANTS.allows(&req) {
        return Some(Scope::Project);
    }
    // A project-scope grant needs a project; a domain-scoped token acts
    // at domain scope only when a domain policy grants it.
    match granted {
        Some(Scope::Project) if !identity.is_project_scoped() => None,
        g => g,
    }
}

/// The per-request context handed to every handler.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub identity: Arc<Identity>,
    pub request_id: String,
    /// Policy service name of the serving service (`compute`, `identity`…).
    pub service: &'static str,
    pub tenants: Arc<crate::tenant::TenantCache>,
}

/// The scope of a list or an object operation after checking policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
}

impl Ctx {
    pub fn user_id(&self) -> &str {
        &self.identity.user_id
    }

    /// Highest scope at which the caller may do `action` on `resource`.
    pub fn max_scope(&self, resource: &str, action: &str, extra: Option<&str>) -> Option<Scope> {
        allowed_scope(&self.identity, self.service, resource, action, extra)
    }

    /// Highest scope at which the caller may do `action` on rows of `desc`:
    /// what the policies grant, provided it reaches the scope the resource
    /// is managed at (writes) or read at (reads). A project owner's
    /// `*: allow` therefore never reaches hosts, zones or the catalog.
    pub fn max_scope_on(
        &self,
        desc: &ModelDesc,
        action: &str,
        extra: Option<&str>,
    ) -> Option<Scope> {
        let granted = self.max_scope(desc.plural, action, extra)?;
        let needed = if is_read(action) {
            desc.read_scope
        } else {
            desc.manage_scope
        };
        (granted >= needed).then_some(granted)
    }

    /// [`Ctx::require`] for rows of `desc` (see [`Ctx::max_scope_on`]).
    pub fn require_on(&self, desc: &ModelDesc, action: &str, extra: Option<&str>) -> Result<Grant> {
        match self.max_scope_on(desc, action, extra) {
            Some(scope) => Ok(Grant { scope }),
            None => Err(self.refused(desc.plural, action, extra)),
        }
    }

    fn refused(&self, resource: &str, action: &str, extra: Option<&str>) -> HttpError {
        HttpError::forbidden(format!(
            "{} {}.{}.{}{} not allowed",
            self.identity.user,
            self.service,
            resource,
            action,
            extra.map(|e| format!(".{e}")).unwrap_or_default()
        ))
    }

    /// Require permission for `action` on `resource`, returning the granted
    /// scope, or 403 naming what was refused.
    pub fn require(&self, resource: &str, action: &str, extra: Option<&str>) -> Result<Grant> {
        match self.max_scope(resource, action, extra) {
            Some(scope) => Ok(Grant { scope }),
            None => Err(self.refused(resource, action, extra)),
        }
    }

    /// The scope a list runs at: the requested one (`scope=`, or the legacy
    /// `admin`/`system` flags) bounded by what policies allow; project scope
    /// when nothing is requested.
    pub fn list_scope(
        &self,
        desc: &ModelDesc,
        query: &serde_json::Map<String, Value>,
    ) -> Result<Scope> {
        let resource = desc.plural;
        let granted = self.require_on(desc, "list", None)?.scope;
        let requested = requested_scope(query)?;
        let requested = requested.unwrap_or(if self.identity.is_project_scoped() {
            Scope::Project
        } else {
            Scope::Domain
        });
        if requested > granted {
            return Err(HttpError::forbidden(format!(
                "not allowed to list {resource} at {} scope",
                requested.as_str()
            )));
        }
        Ok(requested)
    }

    /// SQL conditions restricting `desc` to the rows visible at `scope`.
    /// Shared rows (`is_public`) are visible within their `public_scope`.
    pub fn visibility(&self, desc: &ModelDesc, scope: Scope) -> Option<Sql> {
        let id = &self.identity;
        let own = match (desc.owner, scope) {
            (_, Scope::System) | (Owner::None, _) => return None,
            (Owner::Project, Scope::Project) => crud::eq("tenant_id", id.project_id.as_str()),
            (Owner::User, Scope::Project) => crud::eq("user_id", id.user_id.as_str()),
            (_, _) => crud::eq("domain_id", id.domain_id.as_str()),
        };
        if !desc.sharable {
            return Some(own);
        }
        let mut s = Sql::new("(");
        s.append(own);
        s.push(") OR (`is_public` = 1 AND (`public_scope` = 'system' OR (`public_scope` = 'domain' AND ");
        s.append(crud::eq("domain_id", id.domain_id.as_str()));
        s.push(")))");
        Some(s)
    }

    /// Whether `row` of `desc` is visible at `scope` (in-memory twin of
    /// [`Ctx::visibility`]). `shared` counts public rows as visible (reads).
    pub fn can_see(&self, desc: &ModelDesc, row: &Row, scope: Scope, shared: bool) -> bool {
        let id = &self.identity;
        let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default();
        let own = match (desc.owner, scope) {
            (_, Scope::System) | (Owner::None, _) => true,
            (Owner::Project, Scope::Project) => s("tenant_id") == id.project_id,
            (Owner::User, Scope::Project) => s("user_id") == id.user_id,
            (_, _) => s("domain_id") == id.domain_id,
        };
        if own || !shared || !desc.sharable {
            return own;
        }
        let public = row
            .get("is_public")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        public
            && (s("public_scope") == "system"
                || (s("public_scope") == "domain" && s("domain_id") == id.domain_id))
    }

    /// The owner columns of a new row created by this caller.
    pub fn owner_columns(&self, desc: &ModelDesc, row: &mut Row) {
        let id = &self.identity;
        match desc.owner {
            Owner::Project => {
                row.entry("tenant_id")
                    .or_insert_with(|| Value::String(id.project_id.clone()));
                row.entry("domain_id")
                    .or_insert_with(|| Value::String(id.domain_id.clone()));
            }
            Owner::Domain => {
                row.entry("domain_id")
                    .or_insert_with(|| Value::String(id.domain_id.clone()));
            }
            Owner::User => {
                row.entry("user_id")
                    .or_insert_with(|| Value::String(id.user_id.clone()));
                row.entry("domain_id")
                    .or_insert_with(|| Value::String(id.domain_id.clone()));
            }
            Owner::None => {}
        }
    }
}

/// Reads are `list` and `get`; everything else changes something.
fn is_read(action: &str) -> bool {
    matches!(action, "list" | "get")
}

/// `scope=system|domain|project`, or `admin=true` / `system=true`.
pub fn requested_scope(query: &serde_json::Map<String, Value>) -> Result<Option<Scope>> {
    if let Some(v) = query.get("scope").and_then(Value::as_str)
        && !v.is_empty()
    {
        return v
            .parse::<Scope>()
            .map(Some)
            .map_err(|e| HttpError::input(e.to_string()));
    }
    for legacy in ["admin", "system"] {
        if query
            .get(legacy)
            .and_then(Value::as_str)
            .and_then(cloudpods_apis::lenient::parse_bool)
            == Some(true)
        {
            return Ok(Some(Scope::System));
        }
    }
    Ok(None)
}
