//! First-start bootstrap: the default domain, the system project, the
//! `sysadmin` user, the built-in roles and policies, `region0`, and the
//! catalog entries of the services that run. Every step is idempotent, so
//! it runs on every start.

use cloudpods_db::{Db, ModelDesc, Row, Sql, crud};
use cloudpods_rbac::predefined_policies;
use serde_json::{Value, json};

use crate::error::{KeystoneError, Result};
use crate::models::*;
use crate::store::{self, s};

pub const ADMIN_USER: &str = "sysadmin";
pub const SYSTEM_PROJECT: &str = "system";
pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";

/// What bootstrap did.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// The admin password when it was generated or set in this run.
    pub admin_password: Option<String>,
    pub system_project_id: String,
    pub admin_user_id: String,
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..20)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn find_by_name(
    db: &Db,
    desc: &ModelDesc,
    name: &str,
    domain_id: Option<&str>,
) -> Result<Option<Row>> {
    let mut c = crud::eq("name", name);
    if let Some(d) = domain_id {
        c.push(" AND `domain_id` = ").bind(d);
    }
    let spec = cloudpods_db::ListSpec {
        conds: vec![c],
        limit: Some(1),
        ..Default::default()
    };
    Ok(crud::list(db, desc, &spec).await?.0.into_iter().next())
}

async fn ensure(
    db: &Db,
    desc: &ModelDesc,
    name: &str,
    domain_id: Option<&str>,
    fields: Value,
) -> Result<Row> {
    if let Some(r) = find_by_name(db, desc, name, domain_id).await? {
        return Ok(r);
    }
    let mut row = fields.as_object().cloned().unwrap_or_default();
    row.insert("name".into(), json!(name));
    if let Some(d) = domain_id {
        row.insert("domain_id".into(), json!(d));
    }
    crud::prepare_insert(desc, &mut row);
    crud::insert(db.write(), desc, &row).await?;
    Ok(row)
}

/// Give `user` this password (and unlock it) unless it already has it;
/// true when it changed.
async fn reset_password(db: &Db, user: &Row, password: &str) -> Result<bool> {
    if crate::token::verify_password(password, &s(user, "password_hash")).await {
        return Ok(false);
    }
    let mut ch = Row::new();
    ch.insert(
        "password_hash".into(),
        json!(crate::token::hash_password(password).await?),
    );
    ch.insert(
        "password_changed_at".into(),
        json!(cloudpods_apis::time::now()),
    );
    ch.insert("locked_until".into(), Value::Null);
    crud::update(db.write(), &USERS, &s(user, "id"), &ch).await?;
    Ok(true)
}

/// Run the bootstrap. `admin_password`: use this password (also resets an
/// existing admin's password to it); `None` generates one on first start.
pub async fn bootstrap(
    db: &Db,
    admin_password: Option<&str>,
    region_id: &str,
) -> Result<Bootstrapped> {
    if crud::get(db.read(), &DOMAINS, DEFAULT_DOMAIN_ID)
        .await?
        .is_none()
    {
        let mut row = json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME, "description": "The default domain"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        crud::prepare_insert(&DOMAINS, &mut row);
        crud::insert(db.write(), &DOMAINS, &row).await?;
    }
    let d = Some(DEFAULT_DOMAIN_ID);
    let project = ensure(
        db,
        &PROJECTS,
        SYSTEM_PROJECT,
        d,
        json!({"description": "System project"}),
    )
    .await?;
    let mut roles = std::collections::HashMap::new();
    for (name, desc) in [
        ("admin", "System administrator"),
        ("member", "Project member"),
        ("domainadmin", "Domain administrator"),
        ("project_owner", "Project owner"),
    ] {
        let r = ensure(
            db,
            &ROLES,
            name,
            d,
            json!({"description": desc, "is_public": true, "public_scope": "system"}),
        )
        .await?;
        roles.insert(name, s(&r, "id"));
    }
    let mut policies = std::collections::HashMap::new();
    for p in predefined_policies() {
        let r = ensure(
            db,
            &POLICIES,
            &p.name,
            d,
            json!({"description": p.description, "scope": p.scope.as_str(), "blob": p.blob,
                   "type": p.name, "is_public": true, "public_scope": "system", "is_system": true}),
        )
        .await?;
        policies.insert(p.name.clone(), s(&r, "id"));
    }
    let system_project_id = s(&project, "id");
    // Which policies each role carries (Cloudpods' default bindings).
    let bindings: [(&str, &str, Option<&str>); 5] = [
        ("admin", "sysadmin", Some(system_project_id.as_str())),
        ("admin", "projectowner", None),
        ("domainadmin", "domainadmin", None),
        ("project_owner", "projectowner", None),
        ("member", "member", None),
    ];
    for (role, policy, project_id) in bindings {
        let (Some(role_id), Some(policy_id)) = (roles.get(role), policies.get(policy)) else {
            continue;
        };
        let mut q =
            Sql::new("SELECT COUNT(*) FROM `role_policies` WHERE `deleted` = 0 AND `role_id` = ");
        q.bind(role_id.as_str())
            .push(" AND `policy_id` = ")
            .bind(policy_id.as_str());
        if crud::fetch_i64(db.read(), &q).await? > 0 {
            continue;
        }
        let mut row = json!({"role_id": role_id, "policy_id": policy_id, "project_id": project_id.unwrap_or("")})
            .as_object()
            .cloned()
            .unwrap_or_default();
        crud::prepare_insert(&ROLE_POLICIES, &mut row);
        crud::insert(db.write(), &ROLE_POLICIES, &row).await?;
    }

    // The admin user.
    let mut generated = None;
    let admin = match find_by_name(db, &USERS, ADMIN_USER, d).await? {
        Some(u) => {
            if let Some(pw) = admin_password
                && reset_password(db, &u, pw).await?
            {
                generated = Some(pw.to_string());
            }
            u
        }
        None => {
            let pw = admin_password
                .map(str::to_string)
                .unwrap_or_else(generate_password);
            let hash = crate::token::hash_password(&pw).await?;
            generated = Some(pw);
            ensure(
                db,
                &USERS,
                ADMIN_USER,
                d,
                json!({"displayname": "System administrator", "password_hash": hash,
                       "password_changed_at": cloudpods_apis::time::now(), "is_system_account": true}),
            )
            .await?
        }
    };
    let admin_id = s(&admin, "id");
    if let Some(admin_role) = roles.get("admin") {
        store::add_assignment(db, "UserProject", &admin_id, &system_project_id, admin_role).await?;
    }

    // The region.
    if crud::get(db.read(), &REGIONS, region_id).await?.is_none() {
        let mut row = json!({"id": region_id, "name": region_id})
            .as_object()
            .cloned()
            .unwrap_or_default();
        crud::prepare_insert(&REGIONS, &mut row);
        crud::insert(db.write(), &REGIONS, &row).await?;
    }
    Ok(Bootstrapped {
        admin_password: generated,
        system_project_id,
        admin_user_id: admin_id,
    })
}

/// Make `name` a system service account (admin in the system project)
/// whose password is `password`: created on first use, its password reset
/// when it differs. In-process services (the host agent of all-in-one)
/// log in as such an account instead of borrowing the operator's.
pub async fn ensure_service_user(db: &Db, name: &str, password: &str) -> Result<()> {
    let d = Some(DEFAULT_DOMAIN_ID);
    let user = match find_by_name(db, &USERS, name, d).await? {
        Some(u) => {
            reset_password(db, &u, password).await?;
            u
        }
        None => {
            let hash = crate::token::hash_password(password).await?;
            ensure(
                db,
                &USERS,
                name,
                d,
                json!({"displayname": format!("Service account {name}"), "password_hash": hash,
                       "password_changed_at": cloudpods_apis::time::now(), "is_system_account": true}),
            )
            .await?
        }
    };
    // A service account is never left locked or disabled by a past
    // incident: the platform needs it to work.
    let mut ch = Row::new();
    ch.insert("locked_until".into(), Value::Null);
    ch.insert("enabled".into(), json!(true));
    crud::update(db.write(), &USERS, &s(&user, "id"), &ch).await?;
    let project = find_by_name(db, &PROJECTS, SYSTEM_PROJECT, d).await?;
    let role = find_by_name(db, &ROLES, "admin", d).await?;
    let (Some(p), Some(r)) = (project, role) else {
        return Err(KeystoneError::BadRequest(format!(
            "service account {name}: the {SYSTEM_PROJECT} project or the admin role is missing; run the bootstrap first"
        )));
    };
    store::add_assignment(
        db,
        "UserProject",
        &s(&user, "id"),
        &s(&p, "id"),
        &s(&r, "id"),
    )
    .await?;
    Ok(())
}

/// Make the catalog say that `service_type` is served at `url` for
/// `interface` in `region_id` (creating the service, updating the URL).
pub async fn ensure_endpoint(
    db: &Db,
    service_type: &str,
    service_name: &str,
    region_id: &str,
    interface: &str,
    url: &str,
) -> Result<()> {
    let svc = match find_by_name(db, &SERVICES, service_name, None).await? {
        Some(s) => s,
        None => {
            ensure(
                db,
                &SERVICES,
                service_name,
                None,
                json!({"type": service_type}),
            )
            .await?
        }
    };
    let sid = s(&svc, "id");
    let mut c = crud::eq("service_id", sid.as_str());
    c.push(" AND `interface` = ")
        .bind(interface)
        .push(" AND `region_id` = ")
        .bind(region_id);
    let spec = cloudpods_db::ListSpec {
        conds: vec![c],
        ..Default::default()
    };
    let existing = crud::list(db, &ENDPOINTS, &spec).await?.0;
    match existing.first() {
        Some(e) if s(e, "url") == url => Ok(()),
        Some(e) => {
            let mut ch = Row::new();
            ch.insert("url".into(), json!(url));
            crud::update(db.write(), &ENDPOINTS, &s(e, "id"), &ch).await?;
            Ok(())
        }
        None => {
            let mut row = json!({"service_id": sid, "region_id": region_id, "interface": interface, "url": url,
                                 "name": format!("{service_type}-{interface}")})
            .as_object()
            .cloned()
            .unwrap_or_default();
            crud::prepare_insert(&ENDPOINTS, &mut row);
            crud::insert(db.write(), &ENDPOINTS, &row)
                .await
                .map_err(KeystoneError::from)?;
            Ok(())
        }
    }
}
