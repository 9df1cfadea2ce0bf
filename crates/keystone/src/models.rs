//! Identity tables.
//!
//! Domains, projects, users, groups and roles follow Keystone; policies and
//! role_policies follow Cloudpods' RBAC extension. Names are unique within a
//! domain (globally for domains).

use std::sync::LazyLock;

use cloudpods_db::{Column, IdStyle, ModelDesc, Owner};
use cloudpods_rbac::Scope;

pub static DOMAINS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("domain", "domains", "domains")
        .service("identity")
        .ids(IdStyle::Hex32)
        .standalone()
        .enabled(true)
        .unique_name()
        .col(Column::str("driver", 32).default("sql").create())
        .build()
});

pub static PROJECTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("project", "projects", "projects")
        .service("identity")
        .owner(Owner::Domain)
        .ids(IdStyle::Hex32)
        .standalone()
        .enabled(true)
        .unique_name()
        .col(Column::str("parent_id", 64).create())
        .build()
});

pub static USERS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("user", "users", "users")
        .service("identity")
        .owner(Owner::Domain)
        .ids(IdStyle::Hex32)
        .standalone()
        .enabled(true)
        .unique_name()
        .col(Column::str("displayname", 128).update().search())
        .col(Column::str("email", 128).update().search())
        .col(Column::str("mobile", 36).update())
        .col(Column::text("password_hash").secret())
        .col(Column::time("password_changed_at"))
        .col(Column::int("failed_auth_count").default(0))
        .col(Column::time("failed_auth_at"))
        .col(Column::time("locked_until"))
        .col(Column::time("last_login_at"))
        .col(Column::str("last_login_source", 16))
        .col(
            Column::bool("is_system_account")
                .default(false)
                .create()
                .admin(),
        )
        .col(Column::bool("allow_web_console").default(true).update())
        .col(Column::str("idp_driver", 32).default("sql"))
        .extra_create(&["password", "skip_password_complexity_check"])
        .extra_update(&["password", "skip_password_complexity_check"])
        .build()
});

pub static GROUPS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("group", "groups", "groups")
        .service("identity")
        .owner(Owner::Domain)
        .ids(IdStyle::Hex32)
        .standalone()
        .unique_name()
        .col(Column::str("displayname", 128).update())
        .build()
});

/// Group membership (hard delete: membership has no history).
pub static USERGROUPS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("usergroup", "usergroups", "usergroups")
        .service("identity")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("user_id", 64).indexed())
        .col(Column::str("group_id", 64).indexed())
        .unique(&["user_id", "group_id"])
        .build()
});

pub static ROLES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("role", "roles", "roles")
        .service("identity")
        .owner(Owner::Domain)
        .ids(IdStyle::Hex32)
        .standalone()
        .sharable()
        .unique_name()
        .build()
});

/// Role assignments: `type` is UserProject, GroupProject, UserDomain or
/// GroupDomain (Keystone's assignment table).
pub static ASSIGNMENTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("assignment", "assignments", "assignments")
        .service("identity")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("type", 16))
        .col(Column::str("actor_id", 64).indexed())
        .col(Column::str("target_id", 64).indexed())
        .col(Column::str("role_id", 64).indexed())
        .col(Column::bool("inherited").default(false))
        .unique(&["type", "actor_id", "target_id", "role_id"])
        .build()
});

pub static SERVICES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("service", "services", "services")
        .service("identity")
        .ids(IdStyle::Hex32)
        .standalone()
        .enabled(true)
        .unique_name()
        .col(Column::str("type", 64).required().list())
        .build()
});

pub static REGIONS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("region", "regions", "regions")
        .service("identity")
        .ids(IdStyle::Given)
        .standalone()
        .col(Column::str("parent_region_id", 64).create())
        .build()
});

pub static ENDPOINTS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("endpoint", "endpoints", "endpoints")
        .service("identity")
        .ids(IdStyle::Hex32)
        .enabled(true)
        .col(Column::str("name", 128).update().list())
        .col(Column::str("service_id", 64).required().list().indexed())
        .col(Column::str("region_id", 64).required().list())
        .col(Column::str("interface", 16).required().list())
        .col(Column::str("url", 256).required().update())
        .extra_create(&["service", "region"])
        .build()
});

pub static POLICIES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("policy", "policies", "policies")
        .service("identity")
        .owner(Owner::Domain)
        .ids(IdStyle::Hex32)
        .standalone()
        .enabled(true)
        .sharable()
        .unique_name()
        .col(Column::str("scope", 16).default("project").update().list())
        .col(Column::json("blob").required().update())
        .col(Column::str("type", 128).list())
        .col(Column::bool("is_system").default(false))
        .build()
});

/// Binds policies to roles, optionally only within one project.
pub static ROLE_POLICIES: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("role_policy", "role_policies", "role_policies")
        .service("identity")
        // Domain admins bind policies within their domain; what a binding
        // may grant is checked against the caller (privilege.rs).
        .managed_at(Scope::Domain)
        .ids(IdStyle::Hex32)
        .col(Column::str("role_id", 64).required().list().indexed())
        .col(Column::str("project_id", 64).create().list())
        .col(Column::str("policy_id", 64).required().list().indexed())
        .col(Column::bool("auth").default(true).update())
        .col(Column::time("valid_since").update())
        .col(Column::time("valid_until").update())
        .extra_create(&["role", "policy", "project"])
        .build()
});

pub static CREDENTIALS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("credential", "credentials", "credentials")
        .service("identity")
        .owner(Owner::User)
        .ids(IdStyle::Hex32)
        .standalone()
        .enabled(true)
        .col(Column::str("type", 36).required().list())
        .col(Column::str("project_id", 64).create().list())
        .col(Column::json("blob").create())
        .build()
});

/// Fernet keys shared by every keystone process on the database.
pub static FERNET_KEYS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("fernetkey", "fernetkeys", "fernetkeys")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::int("key_index"))
        .col(Column::str("key_value", 64).secret())
        .build()
});

/// Revocation events: a token is invalid when its audit id is listed, or
/// when its user has an event issued after the token.
pub static REVOCATIONS: LazyLock<ModelDesc> = LazyLock::new(|| {
    ModelDesc::new("revocation", "revocations", "token_revocations")
        .ids(IdStyle::Auto)
        .hard_delete()
        .col(Column::str("audit_id", 64).indexed())
        .col(Column::str("user_id", 64).indexed())
        .col(Column::time("issued_before"))
        .col(Column::time("expires_at"))
        .build()
});

/// Every identity table, for schema sync.
pub fn all() -> Vec<&'static ModelDesc> {
    vec![
        &DOMAINS,
        &PROJECTS,
        &USERS,
        &GROUPS,
        &USERGROUPS,
        &ROLES,
        &ASSIGNMENTS,
        &SERVICES,
        &REGIONS,
        &ENDPOINTS,
        &POLICIES,
        &ROLE_POLICIES,
        &CREDENTIALS,
        &FERNET_KEYS,
        &REVOCATIONS,
        &cloudpods_rest::metadata::METADATA,
    ]
}
