//! Keystone's queries beyond the generic row operations.

use cloudpods_apis::identity::{CatalogEndpoint, CatalogService};
use cloudpods_db::{Db, Row, Sql, crud};
use cloudpods_rbac::Scope;
use serde_json::{Value, json};

use crate::error::{KeystoneError, Result};
use crate::models::*;

pub use cloudpods_db::row::{b, s};

async fn rows_where(
    db: &Db,
    desc: &cloudpods_db::ModelDesc,
    cond: Sql,
    limit: u64,
) -> Result<Vec<Row>> {
    let spec = cloudpods_db::ListSpec {
        conds: vec![cond],
        limit: Some(limit),
        ..Default::default()
    };
    Ok(crud::list(db, desc, &spec).await?.0)
}

/// A domain by id or case-insensitive name.
pub async fn find_domain(db: &Db, ident: &str) -> Result<Option<Row>> {
    let mut c = Sql::new("`id` = ");
    c.bind(ident).push(" OR `name` = ").bind(ident);
    let rows = rows_where(db, &DOMAINS, c, 5).await?;
    Ok(rows
        .iter()
        .find(|r| s(r, "id") == ident)
        .or(rows.first())
        .cloned())
}

/// Users named `name`, in `domain_id` when given.
pub async fn users_by_name(db: &Db, name: &str, domain_id: Option<&str>) -> Result<Vec<Row>> {
    let mut c = crud::eq("name", name);
    if let Some(d) = domain_id {
        c.push(" AND `domain_id` = ").bind(d);
    }
    rows_where(db, &USERS, c, 5).await
}

/// A project by id, or by name within `domain_id`.
pub async fn find_project(db: &Db, ident: &str, domain_id: Option<&str>) -> Result<Option<Row>> {
    if let Some(p) = crud::get(db.read(), &PROJECTS, ident).await? {
        return Ok(Some(p));
    }
    let mut c = crud::eq("name", ident);
    if let Some(d) = domain_id {
        c.push(" AND `domain_id` = ").bind(d);
    }
    let rows = rows_where(db, &PROJECTS, c, 2).await?;
    if rows.len() > 1 {
        return Err(KeystoneError::BadRequest(format!(
            "more than one project is named {ident}; give its domain"
        )));
    }
    Ok(rows.into_iter().next())
}

/// Ids of the groups a user belongs to.
pub async fn user_group_ids(db: &Db, user_id: &str) -> Result<Vec<String>> {
    let mut q = Sql::new("SELECT `group_id` FROM `usergroups` WHERE `user_id` = ");
    q.bind(user_id);
    let rows = crud::fetch_rows(db.read(), &USERGROUPS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "group_id")).collect())
}

/// Role ids the user holds on a project (`domain = false`) or a domain,
/// directly or through a group.
pub async fn role_ids(
    db: &Db,
    user_id: &str,
    target_id: &str,
    domain: bool,
) -> Result<Vec<String>> {
    let (user_type, group_type) = if domain {
        ("UserDomain", "GroupDomain")
    } else {
        ("UserProject", "GroupProject")
    };
    let groups = user_group_ids(db, user_id).await?;
    let mut q = Sql::new("SELECT DISTINCT `role_id` FROM `assignments` WHERE `target_id` = ");
    q.bind(target_id)
        .push(" AND ((`type` = ")
        .bind(user_type)
        .push(" AND `actor_id` = ")
        .bind(user_id)
        .push(")");
    if !groups.is_empty() {
        q.push(" OR (`type` = ")
            .bind(group_type)
            .push(" AND `actor_id` IN ");
        q.bind_list(groups.iter());
        q.push(")");
    }
    q.push(")");
    let rows = crud::fetch_rows(db.read(), &ASSIGNMENTS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "role_id")).collect())
}

/// Projects where the user has any role (for unscoped tokens and
/// `/v3/users/{id}/projects`).
pub async fn user_project_ids(db: &Db, user_id: &str) -> Result<Vec<String>> {
    let groups = user_group_ids(db, user_id).await?;
    let mut q = Sql::new(
        "SELECT DISTINCT `target_id` FROM `assignments` WHERE (`type` = 'UserProject' AND `actor_id` = ",
    );
    q.bind(user_id).push(")");
    if !groups.is_empty() {
        q.push(" OR (`type` = 'GroupProject' AND `actor_id` IN ");
        q.bind_list(groups.iter());
        q.push(")");
    }
    let rows = crud::fetch_rows(db.read(), &ASSIGNMENTS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "target_id")).collect())
}

/// `(policy id, name, scope, update_version, blob)` of the enabled policies
/// bound to any of `role_ids`, for `project_id` (empty = domain token).
pub async fn policies_for_roles(
    db: &Db,
    role_ids: &[String],
    project_id: &str,
) -> Result<Vec<(String, String, String, i64, Value)>> {
    if role_ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = cloudpods_apis::time::now();
    let mut q = Sql::new(
        "SELECT p.`id`, p.`name`, p.`scope`, p.`update_version`, p.`blob` FROM `role_policies` rp \
         JOIN `policies` p ON p.`id` = rp.`policy_id` \
         WHERE rp.`deleted` = 0 AND p.`deleted` = 0 AND p.`enabled` = 1 AND rp.`auth` = 1 AND rp.`role_id` IN ",
    );
    q.bind_list(role_ids.iter());
    q.push(" AND (rp.`project_id` IS NULL OR rp.`project_id` = ''");
    if !project_id.is_empty() {
        q.push(" OR rp.`project_id` = ").bind(project_id);
    }
    q.push(") AND (rp.`valid_since` IS NULL OR rp.`valid_since` <= ")
        .bind(now.clone())
        .push(") AND (rp.`valid_until` IS NULL OR rp.`valid_until` >= ")
        .bind(now)
        .push(")");
    let rows = crud::fetch_rows(db.read(), &POLICIES, &q).await?;
    let mut out: Vec<(String, String, String, i64, Value)> = rows
        .iter()
        .map(|r| {
            (
                s(r, "id"),
                s(r, "name"),
                s(r, "scope"),
                r.get("update_version").and_then(Value::as_i64).unwrap_or(0),
                r.get("blob").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// The service catalog from enabled services and endpoints.
pub async fn catalog(db: &Db) -> Result<Vec<CatalogService>> {
    let services = crud::list(
        db,
        &SERVICES,
        &cloudpods_db::ListSpec {
            conds: vec![Sql::new("`enabled` = 1")],
            ..Default::default()
        },
    )
    .await?
    .0;
    let endpoints = crud::list(
        db,
        &ENDPOINTS,
        &cloudpods_db::ListSpec {
            conds: vec![Sql::new("`enabled` = 1")],
            ..Default::default()
        },
    )
    .await?
    .0;
    let mut out = Vec::new();
    for svc in services {
        let id = s(&svc, "id");
        let eps: Vec<CatalogEndpoint> = endpoints
            .iter()
            .filter(|e| s(e, "service_id") == id)
            .map(|e| CatalogEndpoint {
                id: s(e, "id"),
                interface: s(e, "interface"),
                name: format!("{}-{}", s(&svc, "type"), s(e, "interface")),
                region: s(e, "region_id"),
                region_id: s(e, "region_id"),
                url: s(e, "url"),
            })
            .collect();
        if eps.is_empty() {
            continue;
        }
        out.push(CatalogService {
            id,
            name: s(&svc, "name"),
            service_type: s(&svc, "type"),
            endpoints: eps,
        });
    }
    out.sort_by(|a, b| a.service_type.cmp(&b.service_type));
    Ok(out)
}

/// Insert a revocation event.
pub async fn revoke(
    db: &Db,
    audit_id: Option<&str>,
    user_id: Option<&str>,
    expires_at: &str,
) -> Result<()> {
    let mut row = Row::new();
    row.insert("audit_id".into(), json!(audit_id.unwrap_or_default()));
    row.insert("user_id".into(), json!(user_id.unwrap_or_default()));
    row.insert("issued_before".into(), json!(cloudpods_apis::time::now()));
    row.insert("expires_at".into(), json!(expires_at));
    crud::prepare_insert(&REVOCATIONS, &mut row);
    crud::insert(db.write(), &REVOCATIONS, &row).await?;
    Ok(())
}

/// Is a token with this audit id, user and issue time revoked?
pub async fn is_revoked(db: &Db, audit_id: &str, user_id: &str, issued_at: &str) -> Result<bool> {
    let mut q = Sql::new("SELECT COUNT(*) FROM `token_revocations` WHERE `expires_at` > ");
    q.bind(cloudpods_apis::time::now())
        .push(" AND (`audit_id` = ")
        .bind(audit_id)
        .push(" OR (`user_id` = ")
        .bind(user_id)
        .push(" AND `issued_before` >= ")
        .bind(issued_at)
        .push("))");
    Ok(crud::fetch_i64(db.read(), &q).await? > 0)
}

/// Audit ids revoked since `since` (the feed services poll).
pub async fn revoked_since(db: &Db, since: &str) -> Result<Vec<Row>> {
    let mut q = Sql::new(
        "SELECT `audit_id`, `user_id`, `issued_before`, `expires_at` FROM `token_revocations` WHERE `issued_before` >= ",
    );
    q.bind(since).push(" ORDER BY `row_id` LIMIT 10000");
    Ok(crud::fetch_rows(db.read(), &REVOCATIONS, &q).await?)
}

/// Remove expired revocation events.
pub async fn prune_revocations(db: &Db) -> Result<u64> {
    let mut q = Sql::new("DELETE FROM `token_revocations` WHERE `expires_at` < ");
    q.bind(cloudpods_apis::time::now());
    Ok(q.query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?
        .rows_affected())
}

/// Add an assignment (idempotent).
pub async fn add_assignment(
    db: &Db,
    kind: &str,
    actor: &str,
    target: &str,
    role: &str,
) -> Result<()> {
    let mut q = Sql::new("SELECT COUNT(*) FROM `assignments` WHERE `type` = ");
    q.bind(kind)
        .push(" AND `actor_id` = ")
        .bind(actor)
        .push(" AND `target_id` = ")
        .bind(target)
        .push(" AND `role_id` = ")
        .bind(role);
    if crud::fetch_i64(db.read(), &q).await? > 0 {
        return Ok(());
    }
    let mut row = Row::new();
    row.insert("type".into(), json!(kind));
    row.insert("actor_id".into(), json!(actor));
    row.insert("target_id".into(), json!(target));
    row.insert("role_id".into(), json!(role));
    crud::prepare_insert(&ASSIGNMENTS, &mut row);
    match crud::insert(db.write(), &ASSIGNMENTS, &row).await {
        Ok(_) | Err(cloudpods_db::DbError::Duplicate(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove an assignment; returns whether it existed.
pub async fn remove_assignment(
    db: &Db,
    kind: &str,
    actor: &str,
    target: &str,
    role: &str,
) -> Result<bool> {
    let mut q = Sql::new("DELETE FROM `assignments` WHERE `type` = ");
    q.bind(kind)
        .push(" AND `actor_id` = ")
        .bind(actor)
        .push(" AND `target_id` = ")
        .bind(target)
        .push(" AND `role_id` = ")
        .bind(role);
    let n = q
        .query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?
        .rows_affected();
    Ok(n > 0)
}

/// Remove every assignment involving an actor, target or role (on delete).
pub async fn purge_assignments(db: &Db, column: &str, id: &str) -> Result<()> {
    let mut q = Sql::new("DELETE FROM `assignments` WHERE ");
    q.ident(column).push(" = ").bind(id);
    q.query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// Assignments matching optional filters.
pub async fn list_assignments(
    db: &Db,
    types: &[&str],
    actor_ids: Option<&[String]>,
    target_id: Option<&str>,
    role_id: Option<&str>,
) -> Result<Vec<Row>> {
    let mut q = Sql::new(format!(
        "SELECT {} FROM `assignments` WHERE `type` IN ",
        crud::column_list(&ASSIGNMENTS)
    ));
    q.bind_list(types.iter().copied());
    if let Some(a) = actor_ids {
        if a.is_empty() {
            return Ok(Vec::new());
        }
        q.push(" AND `actor_id` IN ").bind_list(a.iter());
    }
    if let Some(t) = target_id {
        q.push(" AND `target_id` = ").bind(t);
    }
    if let Some(r) = role_id {
        q.push(" AND `role_id` = ").bind(r);
    }
    q.push(" ORDER BY `row_id` LIMIT 10000");
    Ok(crud::fetch_rows(db.read(), &ASSIGNMENTS, &q).await?)
}

/// Add a user to a group (idempotent).
pub async fn add_user_to_group(db: &Db, user_id: &str, group_id: &str) -> Result<()> {
    let mut q = Sql::new("SELECT COUNT(*) FROM `usergroups` WHERE `user_id` = ");
    q.bind(user_id).push(" AND `group_id` = ").bind(group_id);
    if crud::fetch_i64(db.read(), &q).await? > 0 {
        return Ok(());
    }
    let mut row = Row::new();
    row.insert("user_id".into(), json!(user_id));
    row.insert("group_id".into(), json!(group_id));
    crud::prepare_insert(&USERGROUPS, &mut row);
    match crud::insert(db.write(), &USERGROUPS, &row).await {
        Ok(_) | Err(cloudpods_db::DbError::Duplicate(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_user_from_group(db: &Db, user_id: &str, group_id: &str) -> Result<bool> {
    let mut q = Sql::new("DELETE FROM `usergroups` WHERE `user_id` = ");
    q.bind(user_id).push(" AND `group_id` = ").bind(group_id);
    let n = q
        .query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?
        .rows_affected();
    Ok(n > 0)
}

/// Delete group memberships of a user or a group.
pub async fn purge_memberships(db: &Db, column: &str, id: &str) -> Result<()> {
    let mut q = Sql::new("DELETE FROM `usergroups` WHERE ");
    q.ident(column).push(" = ").bind(id);
    q.query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

pub async fn group_member_ids(db: &Db, group_id: &str) -> Result<Vec<String>> {
    let mut q = Sql::new("SELECT `user_id` FROM `usergroups` WHERE `group_id` = ");
    q.bind(group_id);
    let rows = crud::fetch_rows(db.read(), &USERGROUPS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "user_id")).collect())
}

/// Count live rows of a table matching `col = val`.
pub async fn count_where(db: &Db, table: &str, col: &str, val: &str, soft: bool) -> Result<i64> {
    let mut q = Sql::new(format!("SELECT COUNT(*) FROM `{table}` WHERE "));
    q.ident(col).push(" = ").bind(val);
    if soft {
        q.push(" AND `deleted` = 0");
    }
    Ok(crud::fetch_i64(db.read(), &q).await?)
}

/// A live row of `desc` by id or (case-insensitive) name, plus `conds`.
/// An ambiguous name is a 409 asking for the id.
pub async fn find_ident(
    db: &Db,
    desc: &cloudpods_db::ModelDesc,
    ident: &str,
    what: &str,
    mut conds: Vec<Sql>,
) -> std::result::Result<Row, cloudpods_rest::HttpError> {
    use cloudpods_rest::HttpError;
    let mut c = crud::eq("id", ident);
    if desc.standalone {
        c.push(" OR `name` = ").bind(ident);
    }
    conds.insert(0, c);
    let spec = cloudpods_db::ListSpec {
        conds,
        limit: Some(3),
        ..Default::default()
    };
    let rows = crud::list(db, desc, &spec).await?.0;
    if let Some(r) = rows.iter().find(|r| s(r, "id") == ident) {
        return Ok(r.clone());
    }
    let mut rows = rows.into_iter();
    match (rows.next(), rows.next()) {
        (Some(r), None) => Ok(r),
        (None, _) => Err(HttpError::not_found(format!("{what} {ident} not found"))),
        _ => Err(HttpError::duplicate_name(format!(
            "more than one {what} is named {ident}, use the id"
        ))),
    }
}

/// Soft-delete every row of `table` whose `column` is `id`.
pub async fn soft_delete_where(db: &Db, table: &str, column: &str, id: &str) -> Result<()> {
    let mut q = Sql::new(format!("UPDATE `{table}` SET `deleted` = 1 WHERE "));
    q.ident(column).push(" = ").bind(id);
    q.query()?
        .execute(db.write())
        .await
        .map_err(cloudpods_db::DbError::from)?;
    Ok(())
}

/// The highest scope of the policies bound to any of `role_ids`, in any
/// project: what holding one of these roles can give, somewhere.
/// `None` when they carry no policy at all.
pub async fn roles_ceiling(db: &Db, role_ids: &[String]) -> Result<Option<Scope>> {
    if role_ids.is_empty() {
        return Ok(None);
    }
    let mut q = Sql::new(
        "SELECT DISTINCT p.`scope` FROM `role_policies` rp \
         JOIN `policies` p ON p.`id` = rp.`policy_id` \
         WHERE rp.`deleted` = 0 AND p.`deleted` = 0 AND rp.`role_id` IN ",
    );
    q.bind_list(role_ids.iter());
    let rows = crud::fetch_rows(db.read(), &POLICIES, &q).await?;
    Ok(rows
        .iter()
        // An unreadable scope counts as the highest: never hand it out by mistake.
        .map(|r| s(r, "scope").parse::<Scope>().unwrap_or(Scope::System))
        .max())
}

/// Role ids an actor (a user, through its groups too, or a group) holds
/// anywhere.
pub async fn actor_role_ids(db: &Db, actor_id: &str, with_groups: bool) -> Result<Vec<String>> {
    let mut actors = vec![actor_id.to_string()];
    if with_groups {
        actors.extend(user_group_ids(db, actor_id).await?);
    }
    let mut q = Sql::new("SELECT DISTINCT `role_id` FROM `assignments` WHERE `actor_id` IN ");
    q.bind_list(actors.iter());
    let rows = crud::fetch_rows(db.read(), &ASSIGNMENTS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "role_id")).collect())
}

/// Role ids assigned on a project or domain, to anyone.
pub async fn target_role_ids(db: &Db, target_id: &str) -> Result<Vec<String>> {
    let mut q = Sql::new("SELECT DISTINCT `role_id` FROM `assignments` WHERE `target_id` = ");
    q.bind(target_id);
    let rows = crud::fetch_rows(db.read(), &ASSIGNMENTS, &q).await?;
    Ok(rows.iter().map(|r| s(r, "role_id")).collect())
}

/// `id IN (projects where the user has a role)`, as a condition.
pub async fn user_projects_condition(db: &Db, user_id: &str) -> Result<Sql> {
    Ok(crud::in_list("id", user_project_ids(db, user_id).await?))
}

/// `id IN (groups the user belongs to)`, as a condition.
pub async fn user_groups_condition(db: &Db, user_id: &str) -> Result<Sql> {
    Ok(crud::in_list("id", user_group_ids(db, user_id).await?))
}
