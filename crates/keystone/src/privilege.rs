//! Privilege is handed down, never up.
//!
//! Policies decide *what* a role may do; this module decides *who may hand
//! out or touch* what. Every identity change that could give someone rights
//! (assigning a role, binding a policy to a role, adding a user to a group,
//! defining a policy) or take over someone who has them (changing a user's
//! password, disabling a project) is checked against the caller's grant:
//!
//! - a role's *ceiling* is the highest scope of the policies bound to it, in
//!   any project (the `admin` role carries `sysadmin` through its binding in
//!   project `system`, so it is a system role wherever it is assigned);
//! - an actor's or target's ceiling is the highest ceiling of the roles it
//!   holds or that are held on it;
//! - the caller may only act when its granted scope reaches that ceiling.
//!
//! Identity visibility follows Keystone: at project scope a user sees its
//! own user record, the projects it has roles in and the groups it is in.

use cloudpods_db::{ModelDesc, Row, Sql, crud};
use cloudpods_rbac::Scope;
use cloudpods_rest::{Ctx, HttpError, Result};

use crate::Keystone;
use crate::models::{GROUPS, PROJECTS, USERS};
use crate::store::{self, s};

/// Refuse unless `granted` reaches `ceiling` (no ceiling: nothing to give).
pub fn check_ceiling(granted: Scope, ceiling: Option<Scope>, what: &str) -> Result<()> {
    match ceiling {
        Some(c) if c > granted => Err(HttpError::forbidden(format!(
            "{what} carries {c}-scope privileges; a {granted}-scope grant cannot hand them out or manage them"
        ))),
        _ => Ok(()),
    }
}

pub async fn role_ceiling(ks: &Keystone, role_id: &str) -> Result<Option<Scope>> {
    Ok(store::roles_ceiling(&ks.db, &[role_id.to_string()]).await?)
}

/// The highest privilege a user (with its groups) or a group holds.
pub async fn actor_ceiling(ks: &Keystone, actor_id: &str, is_user: bool) -> Result<Option<Scope>> {
    let roles = store::actor_role_ids(&ks.db, actor_id, is_user).await?;
    Ok(store::roles_ceiling(&ks.db, &roles).await?)
}

/// The highest privilege anyone holds on a project or domain.
pub async fn target_ceiling(ks: &Keystone, target_id: &str) -> Result<Option<Scope>> {
    let roles = store::target_role_ids(&ks.db, target_id).await?;
    Ok(store::roles_ceiling(&ks.db, &roles).await?)
}

/// Refuse a change to a user, group or project that holds (or on which
/// someone holds) more than the caller's `granted` scope: a domain admin
/// cannot reset the system admin's password nor disable project `system`.
pub async fn check_may_manage(
    ks: &Keystone,
    desc: &ModelDesc,
    obj: &Row,
    granted: Scope,
) -> Result<()> {
    let id = s(obj, "id");
    let name = s(obj, "name");
    let ceiling = if std::ptr::eq(desc, &*USERS) {
        actor_ceiling(ks, &id, true).await?
    } else if std::ptr::eq(desc, &*GROUPS) {
        actor_ceiling(ks, &id, false).await?
    } else if std::ptr::eq(desc, &*PROJECTS) {
        target_ceiling(ks, &id).await?
    } else {
        return Ok(());
    };
    check_ceiling(granted, ceiling, &format!("{} {name}", desc.keyword))
}

/// Keystone's visibility for users, projects and groups when the caller's
/// read grant is only project scope (a member; an admin listing at project
/// scope still sees its domain's users, as before).
pub async fn scope_filter(ks: &Keystone, ctx: &Ctx, desc: &ModelDesc) -> Result<Option<Sql>> {
    let read = ctx
        .max_scope_on(desc, "list", None)
        .max(ctx.max_scope_on(desc, "get", None));
    if read != Some(Scope::Project) {
        return Ok(None);
    }
    let me = ctx.identity.user_id.as_str();
    if std::ptr::eq(desc, &*USERS) {
        Ok(Some(crud::eq("id", me)))
    } else if std::ptr::eq(desc, &*PROJECTS) {
        Ok(Some(store::user_projects_condition(&ks.db, me).await?))
    } else if std::ptr::eq(desc, &*GROUPS) {
        Ok(Some(store::user_groups_condition(&ks.db, me).await?))
    } else {
        Ok(None)
    }
}

/// A policy binding (`role_policies`) may be made, changed or removed by the
/// caller: the policy's scope is within its grant, a binding for every
/// project needs system scope, one for a project needs that project inside
/// the grant, and the role and policy must be the caller's to use.
pub fn check_binding(
    ctx: &Ctx,
    granted: Scope,
    role: &Row,
    policy: &Row,
    project: Option<&Row>,
) -> Result<()> {
    let policy_scope = s(policy, "scope").parse::<Scope>().unwrap_or(Scope::System);
    check_ceiling(
        granted,
        Some(policy_scope),
        &format!("policy {}", s(policy, "name")),
    )?;
    if granted == Scope::System {
        return Ok(());
    }
    let mine = ctx.identity.domain_id.as_str();
    let usable = |r: &Row| {
        s(r, "domain_id") == mine || (store::b(r, "is_public") && s(r, "public_scope") == "system")
    };
    match project {
        None => {
            return Err(HttpError::forbidden(
                "a policy bound to a role in every project needs system scope; give project_id",
            ));
        }
        Some(p) if s(p, "domain_id") != mine => {
            return Err(HttpError::forbidden(format!(
                "project {} is outside your domain",
                s(p, "name")
            )));
        }
        Some(p) if granted == Scope::Project && s(p, "id") != ctx.identity.project_id => {
            return Err(HttpError::forbidden(format!(
                "project {} is outside your project",
                s(p, "name")
            )));
        }
        Some(_) => {}
    }
    if !usable(role) || !usable(policy) {
        return Err(HttpError::forbidden(
            "the role or the policy belongs to another domain",
        ));
    }
    Ok(())
}
