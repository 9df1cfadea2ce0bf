//! Identity (keystone) commands: the resource table and the hand-written
//! commands (memberships, role assignments, tokens, catalog, policies).

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_apis::identity::TokenBody;
use cloudpods_sdk::reqwest::Method;
use cloudpods_sdk::reqwest::header::HeaderMap;
use cloudpods_sdk::{ListResult, ResourceManager};
use futures::FutureExt;
use serde_json::{Map, Value, json};

use crate::cli::{Ctx, list_params};
use crate::commands::{CustomCmd, print_list, print_object};
use crate::output::{Format, pretty_table, render_object};
use crate::spec::{Action, Opt, RefTo, Resource, insert_path};

/// Catalog service type of keystone.
pub const IDENTITY: &str = "identity";

pub const DOMAIN: RefTo = RefTo {
    service: IDENTITY,
    keyword: "domain",
    plural: "domains",
};
pub const PROJECT: RefTo = RefTo {
    service: IDENTITY,
    keyword: "project",
    plural: "projects",
};
pub const USER: RefTo = RefTo {
    service: IDENTITY,
    keyword: "user",
    plural: "users",
};
pub const GROUP: RefTo = RefTo {
    service: IDENTITY,
    keyword: "group",
    plural: "groups",
};
pub const ROLE: RefTo = RefTo {
    service: IDENTITY,
    keyword: "role",
    plural: "roles",
};
pub const POLICY: RefTo = RefTo {
    service: IDENTITY,
    keyword: "policy",
    plural: "policies",
};
pub const SERVICE: RefTo = RefTo {
    service: IDENTITY,
    keyword: "service",
    plural: "services",
};
pub const REGION: RefTo = RefTo {
    service: IDENTITY,
    keyword: "region",
    plural: "regions",
};

const USER_COLUMNS: &[&str] = &["ID", "Name", "Domain_Id", "Enabled", "Email", "Mobile"];
const ROLE_COLUMNS: &[&str] = &[
    "ID",
    "Name",
    "Domain_Id",
    "Project_Domain",
    "Description",
    "is_public",
];

const DESC: Opt = Opt::string("desc", "description", "Description");
const DISPLAYNAME: Opt = Opt::string("displayname", "displayname", "Display name");
const ENABLED: Opt = Opt::flag("enabled", "enabled", true, "Enable it");
const DISABLED: Opt = Opt::flag("disabled", "enabled", false, "Disable it");
const NEW_NAME: Opt = Opt::string("name", "name", "New name");
const DOMAIN_REF: Opt = Opt::reference("domain", "domain_id", DOMAIN, "Domain (id or name)");
const DOMAIN_FILTER: Opt = Opt::string("domain", "domain_id", "Filter by domain (id or name)");

/// The identity resources.
pub static RESOURCES: &[Resource] = &[
    Resource::new("domain", "domains", IDENTITY)
        .columns(&[
            "ID",
            "Name",
            "Enabled",
            "Description",
            "Driver",
            "Displayname",
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the domain"),
            DESC,
            DISPLAYNAME,
            ENABLED,
            DISABLED,
        ])
        .update(&[NEW_NAME, DESC, DISPLAYNAME, ENABLED, DISABLED]),
    Resource::new("project", "projects", IDENTITY)
        .columns(&[
            "ID",
            "Name",
            "Domain_Id",
            "Project_Domain",
            "Parent_Id",
            "Enabled",
            "Description",
            "Created_At",
            "Displayname",
        ])
        .list(&[DOMAIN_FILTER])
        .show(&[DOMAIN_REF])
        .create(&[
            Opt::pos("NAME", "name", "Name of the project"),
            DOMAIN_REF,
            DESC,
            DISPLAYNAME,
            ENABLED,
            DISABLED,
        ])
        .update(&[NEW_NAME, DESC, DISPLAYNAME, ENABLED, DISABLED]),
    Resource::new("user", "users", IDENTITY)
        .columns(USER_COLUMNS)
        .list(&[
            DOMAIN_FILTER,
            Opt::string("name", "name", "Filter by name"),
            Opt::string("idp-id", "idp_id", "Filter by identity provider"),
        ])
        .show(&[DOMAIN_REF])
        .create(&[
            Opt::pos("NAME", "name", "Name of the new user"),
            Opt::string("password", "password", "Password"),
            DOMAIN_REF,
            DISPLAYNAME,
            Opt::string("email", "email", "Email"),
            Opt::string("mobile", "mobile", "Mobile"),
            DESC,
            ENABLED,
            DISABLED,
            Opt::flag(
                "system-account",
                "is_system_account",
                true,
                "A system (service) account",
            ),
            Opt::flag(
                "no-web-console",
                "allow_web_console",
                false,
                "Forbid web console login",
            ),
            Opt::flag(
                "skip-password-complexity-check",
                "skip_password_complexity_check",
                true,
                "Do not check the password complexity",
            ),
            Opt::string("lang", "lang", "Default language"),
        ])
        .update(&[
            NEW_NAME,
            Opt::string("password", "password", "New password"),
            DISPLAYNAME,
            Opt::string("email", "email", "Email"),
            Opt::string("mobile", "mobile", "Mobile"),
            DESC,
            ENABLED,
            DISABLED,
            Opt::flag(
                "system-account",
                "is_system_account",
                true,
                "Turn on is_system_account",
            ),
            Opt::flag(
                "not-system-account",
                "is_system_account",
                false,
                "Turn off is_system_account",
            ),
            Opt::flag(
                "allow-web-console",
                "allow_web_console",
                true,
                "Allow web console login",
            ),
            Opt::flag(
                "disallow-web-console",
                "allow_web_console",
                false,
                "Forbid web console login",
            ),
            Opt::flag(
                "skip-password-complexity-check",
                "skip_password_complexity_check",
                true,
                "Do not check the password complexity",
            ),
            Opt::string("lang", "lang", "Default language"),
        ])
        .actions(&[Action::new(
            "unlock",
            "unlock",
            "Unlock a user locked after failed logins",
            &[],
        )]),
    Resource::new("group", "groups", IDENTITY)
        .columns(&[
            "ID",
            "Name",
            "Domain_Id",
            "project_domain",
            "User_Count",
            "Description",
        ])
        .list(&[DOMAIN_FILTER])
        .show(&[DOMAIN_REF])
        .create(&[
            Opt::pos("NAME", "name", "Name of the group"),
            DOMAIN_REF,
            DESC,
            DISPLAYNAME,
        ])
        .update(&[NEW_NAME, DESC, DISPLAYNAME]),
    Resource::new("role", "roles", IDENTITY)
        .columns(ROLE_COLUMNS)
        .list(&[DOMAIN_FILTER])
        .show(&[DOMAIN_REF])
        .create(&[
            Opt::pos("NAME", "name", "Name of the role"),
            DOMAIN_REF,
            DESC,
            Opt::flag(
                "public",
                "is_public",
                true,
                "Share the role with all domains",
            ),
        ])
        .update(&[NEW_NAME, DESC]),
    Resource::new("policy", "policies", IDENTITY)
        .columns(&[
            "ID",
            "Name",
            "Scope",
            "Enabled",
            "Domain_Id",
            "Project_Domain",
            "Is_Public",
            "Public_Scope",
            "Description",
            "Is_System",
        ])
        .list(&[
            Opt::choice(
                "policy-scope",
                "scope",
                &["system", "domain", "project"],
                "Filter by policy scope",
            ),
            Opt::string("type", "type", "Filter by type (name)"),
        ])
        .create(&[
            Opt::pos("NAME", "name,type", "Name of the policy"),
            Opt::json_file("file", "blob", "Policy file (JSON)").required(),
            Opt::choice(
                "scope",
                "scope",
                &["system", "domain", "project"],
                "Scope of the policy",
            ),
            Opt::reference(
                "domain",
                "project_domain_id",
                DOMAIN,
                "Domain of the policy",
            ),
            DESC,
            ENABLED,
            DISABLED,
            Opt::flag("is-system", "is_system", true, "A system policy"),
            Opt::flag("not-system", "is_system", false, "Not a system policy"),
        ])
        .update(&[
            Opt::string("name", "name,type", "New name"),
            Opt::json_file("file", "blob", "Policy file (JSON)"),
            Opt::choice(
                "scope",
                "scope",
                &["system", "domain", "project"],
                "Scope of the policy",
            ),
            DESC,
            ENABLED,
            DISABLED,
            Opt::flag("is-system", "is_system", true, "A system policy"),
            Opt::flag("not-system", "is_system", false, "Not a system policy"),
        ]),
    Resource::new("role_policy", "role_policies", IDENTITY)
        .columns(&[
            "ID",
            "Role",
            "Role_Id",
            "Project",
            "Project_Id",
            "Policy",
            "Policy_Id",
            "Ips",
            "Scope",
            "Valid_Since",
            "Valid_Until",
        ])
        .list(&[
            Opt::reference("role", "role_id", ROLE, "Filter by role (id or name)"),
            Opt::reference(
                "policy",
                "policy_id",
                POLICY,
                "Filter by policy (id or name)",
            ),
        ])
        .create(&[
            Opt::pos_ref("ROLE", "role_id", ROLE, "Role (id or name)"),
            Opt::pos_ref("POLICY", "policy_id", POLICY, "Policy (id or name)"),
            Opt::reference(
                "project",
                "project_id",
                PROJECT,
                "Only in this project (id or name)",
            ),
            Opt::multi("ip", "ips", "Only from these IPs/CIDRs (repeatable)"),
            Opt::string("valid-since", "valid_since", "Valid from (RFC 3339)"),
            Opt::string("valid-until", "valid_until", "Valid until (RFC 3339)"),
        ])
        .update(&[
            Opt::multi("ip", "ips", "Only from these IPs/CIDRs (repeatable)"),
            Opt::string("valid-since", "valid_since", "Valid from (RFC 3339)"),
            Opt::string("valid-until", "valid_until", "Valid until (RFC 3339)"),
        ]),
    Resource::new("service", "services", IDENTITY)
        .columns(&["ID", "Name", "Type", "Enabled", "Description"])
        .list(&[
            Opt::string("name", "name", "Filter by name"),
            Opt::string("type", "type", "Filter by type"),
        ])
        .create(&[
            Opt::pos("TYPE", "type", "Service type, e.g. compute_v2"),
            Opt::pos("NAME", "name", "Service name, e.g. region2"),
            DESC,
            ENABLED,
            DISABLED,
        ])
        .update(&[
            NEW_NAME,
            Opt::string("type", "type", "Service type"),
            DESC,
            ENABLED,
            DISABLED,
        ]),
    Resource::new("endpoint", "endpoints", IDENTITY)
        .list_details(true)
        .columns(&[
            "ID",
            "Service_Name",
            "Service_Type",
            "Interface",
            "URL",
            "Region_ID",
            "Enabled",
        ])
        .list(&[
            Opt::string("region", "region_id", "Filter by region"),
            Opt::reference(
                "service",
                "service_id",
                SERVICE,
                "Filter by service (id or name)",
            ),
            Opt::choice(
                "interface",
                "interface",
                &["internal", "public", "admin", "console", "slave"],
                "Filter by interface",
            ),
        ])
        .create(&[
            Opt::pos_ref("SERVICE", "service_id", SERVICE, "Service (id or name)"),
            Opt::pos_ref("REGION", "region_id", REGION, "Region (id or name)"),
            Opt::pos(
                "INTERFACE",
                "interface",
                "internal|public|admin|console|slave",
            ),
            Opt::pos("URL", "url", "URL"),
            Opt::string("name", "name", "Name"),
            ENABLED,
            DISABLED,
        ])
        .update(&[
            Opt::string("url", "url", "URL"),
            NEW_NAME,
            ENABLED,
            DISABLED,
        ]),
    Resource::new("region", "regions", IDENTITY)
        .columns(&["ID", "Name", "Description"])
        .create(&[
            Opt::pos("ID", "id,name", "Region id, e.g. region0"),
            Opt::string("name", "name", "Name (default: the id)"),
            DESC,
        ])
        .update(&[NEW_NAME, DESC]),
    Resource::new("credential", "credentials", IDENTITY)
        .columns(&[
            "ID",
            "Name",
            "Type",
            "User_Id",
            "User",
            "Project_Id",
            "Enabled",
            "Blob",
        ])
        .list(&[
            Opt::string("type", "type", "Filter by type (aksk, totp, …)"),
            Opt::reference("user", "user_id", USER, "Filter by user (id or name)"),
        ])
        .create(&[
            Opt::string("type", "type", "Credential type, e.g. aksk").required(),
            Opt::string("blob", "blob", "Secret blob (a JSON string)").required(),
            Opt::reference(
                "user",
                "user_id",
                USER,
                "Owner (id or name; default: the caller)",
            ),
            Opt::reference("project", "project_id", PROJECT, "Project (id or name)"),
            Opt::string("name", "name", "Name").required(),
            ENABLED,
            DISABLED,
        ])
        .update(&[NEW_NAME, ENABLED, DISABLED, DESC]),
];

/// The hand-written identity commands.
pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "policy-show",
        about: "Show a policy and its rules",
        args: || {
            vec![
                Arg::new("ID")
                    .value_name("ID")
                    .help("ID or name")
                    .required(true),
            ]
        },
        list_flags: false,
        run: |ctx, m| policy_show(ctx, m).boxed(),
    },
    CustomCmd {
        name: "group-add-user",
        about: "Add a user to a group",
        args: group_user_args,
        list_flags: false,
        run: |ctx, m| group_membership(ctx, m, true).boxed(),
    },
    CustomCmd {
        name: "group-remove-user",
        about: "Remove a user from a group",
        args: group_user_args,
        list_flags: false,
        run: |ctx, m| group_membership(ctx, m, false).boxed(),
    },
    CustomCmd {
        name: "group-user-list",
        about: "List the users of a group",
        args: || {
            vec![
                Arg::new("GROUP")
                    .value_name("GROUP")
                    .help("Group (id or name)")
                    .required(true),
                Arg::new("group-domain")
                    .long("group-domain")
                    .value_name("DOMAIN")
                    .help("Domain of the group"),
            ]
        },
        list_flags: true,
        run: |ctx, m| group_user_list(ctx, m).boxed(),
    },
    CustomCmd {
        name: "project-add-user",
        about: "Grant roles to a user in a project",
        args: project_user_args,
        list_flags: false,
        run: |ctx, m| project_user_roles(ctx, m, true).boxed(),
    },
    CustomCmd {
        name: "project-remove-user",
        about: "Revoke roles of a user in a project",
        args: project_user_args,
        list_flags: false,
        run: |ctx, m| project_user_roles(ctx, m, false).boxed(),
    },
    CustomCmd {
        name: "role-assignment-list",
        about: "List role assignments (GET /v3/role_assignments)",
        args: role_assignment_args,
        list_flags: false,
        run: |ctx, m| role_assignment_list(ctx, m).boxed(),
    },
    CustomCmd {
        name: "token-issue",
        about: "Show the token in use (issuing one when needed)",
        args: Vec::new,
        list_flags: false,
        run: |ctx, _| token_issue(ctx).boxed(),
    },
    CustomCmd {
        name: "token-validate",
        about: "Validate a token and show what it grants",
        args: token_arg,
        list_flags: false,
        run: |ctx, m| token_validate(ctx, m).boxed(),
    },
    CustomCmd {
        name: "token-revoke",
        about: "Revoke a token",
        args: token_arg,
        list_flags: false,
        run: |ctx, m| token_revoke(ctx, m).boxed(),
    },
    CustomCmd {
        name: "catalog-list",
        about: "List the service endpoints of the token catalog",
        args: Vec::new,
        list_flags: false,
        run: |ctx, _| catalog_list(ctx).boxed(),
    },
    CustomCmd {
        name: "catalog-show",
        about: "Show the endpoints of one service of the token catalog",
        args: || {
            vec![
                Arg::new("SERVICE")
                    .value_name("SERVICE")
                    .help("Service type or name")
                    .required(true),
            ]
        },
        list_flags: false,
        run: |ctx, m| catalog_show(ctx, m).boxed(),
    },
];

fn group_user_args() -> Vec<Arg> {
    vec![
        Arg::new("GROUP")
            .value_name("GROUP")
            .help("Group (id or name)")
            .required(true),
        Arg::new("USER")
            .value_name("USER")
            .help("User (id or name)")
            .required(true),
        Arg::new("group-domain")
            .long("group-domain")
            .value_name("DOMAIN")
            .help("Domain of the group"),
        Arg::new("user-domain")
            .long("user-domain")
            .value_name("DOMAIN")
            .help("Domain of the user"),
    ]
}

fn project_user_args() -> Vec<Arg> {
    vec![
        Arg::new("PROJECT")
            .value_name("PROJECT")
            .help("Project (id or name)")
            .required(true),
        Arg::new("USER")
            .value_name("USER")
            .help("User (id or name)")
            .required(true),
        Arg::new("ROLE")
            .value_name("ROLE")
            .help("Roles (ids or names)")
            .required(true)
            .num_args(1..)
            .action(ArgAction::Append),
        Arg::new("project-domain")
            .long("project-domain")
            .value_name("DOMAIN")
            .help("Domain of the project"),
        Arg::new("user-domain")
            .long("user-domain")
            .value_name("DOMAIN")
            .help("Domain of the user"),
        Arg::new("role-domain")
            .long("role-domain")
            .value_name("DOMAIN")
            .help("Domain of the roles"),
    ]
}

fn role_assignment_args() -> Vec<Arg> {
    let v = |name: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name("VALUE").help(help)
    };
    let f = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    vec![
        v("user", "Assignments of this user (id or name)"),
        v("user-domain", "Domain of --user"),
        v("group", "Assignments of this group (id or name)"),
        v("group-domain", "Domain of --group"),
        v("project", "Assignments in this project (id or name)").visible_alias("scope-project"),
        v("project-domain", "Domain of --project"),
        v("domain", "Assignments on this domain (id or name)"),
        v("role", "Assignments of this role (id or name)"),
        v("role-domain", "Domain of --role"),
        f(
            "effective",
            "Expand group memberships into user assignments",
        ),
        f("include-names", "Include names besides ids"),
        f("include-system", "Include system accounts"),
        f("policies", "Show the matched policies"),
        v("limit", "Page limit").value_parser(clap::value_parser!(u64)),
        v("offset", "Page offset").value_parser(clap::value_parser!(u64)),
    ]
}

fn token_arg() -> Vec<Arg> {
    vec![
        Arg::new("TOKEN")
            .value_name("TOKEN")
            .help("The token")
            .required(true),
    ]
}

fn arg<'a>(m: &'a ArgMatches, name: &str) -> Option<&'a String> {
    m.try_get_one::<String>(name).ok().flatten()
}

fn required<'a>(m: &'a ArgMatches, name: &str) -> anyhow::Result<&'a String> {
    arg(m, name).ok_or_else(|| anyhow::anyhow!("missing {name}"))
}

fn mgr(client: &cloudpods_sdk::Client, to: RefTo) -> ResourceManager {
    client.resource(to.service, to.keyword, to.plural)
}

/// The id of `name` (an id or a name), looked up in `domain` when given.
async fn resolve(
    ctx: &Ctx,
    to: RefTo,
    name: &str,
    domain: Option<&String>,
) -> anyhow::Result<String> {
    let client = ctx.client().await?;
    let mut q = Map::new();
    if let Some(d) = domain {
        let did = mgr(client, DOMAIN).get_id(d, &Map::new()).await?;
        q.insert("domain_id".into(), Value::String(did));
    }
    Ok(mgr(client, to).get_id(name, &q).await?)
}

/// Keys holding a policy's rules (`blob` on the wire, `policy` in
/// Cloudpods' decorated answer).
const POLICY_BLOB_KEYS: &[&str] = &["blob", "policy"];

async fn policy_show(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let obj = mgr(client, POLICY)
        .get(required(m, "ID")?, &Map::new())
        .await?;
    if ctx.format() == Format::Json {
        print_object(ctx, &obj);
        return Ok(());
    }
    let mut fields = obj.as_object().cloned().unwrap_or_default();
    let blob = POLICY_BLOB_KEYS
        .iter()
        .find_map(|k| fields.get(*k).filter(|v| !v.is_null()).cloned());
    for k in POLICY_BLOB_KEYS {
        fields.remove(*k);
    }
    ctx.print(&render_object(&Value::Object(fields), ctx.format()));
    if let Some(blob) = blob {
        // A blob stored as a JSON string is shown parsed.
        let blob = match &blob {
            Value::String(s) => serde_json::from_str(s).unwrap_or(blob),
            _ => blob,
        };
        ctx.print(&format!("{}\n", serde_json::to_string_pretty(&blob)?));
    }
    Ok(())
}

async fn group_membership(ctx: &Ctx, m: &ArgMatches, add: bool) -> anyhow::Result<()> {
    let gid = resolve(ctx, GROUP, required(m, "GROUP")?, arg(m, "group-domain")).await?;
    let uid = resolve(ctx, USER, required(m, "USER")?, arg(m, "user-domain")).await?;
    let users = mgr(ctx.client().await?, USER);
    if add {
        users.put_in_context("groups", &gid, &uid, None).await?;
    } else {
        users
            .delete_in_context("groups", &gid, &uid, &Map::new())
            .await?;
    }
    Ok(())
}

async fn group_user_list(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let gid = resolve(ctx, GROUP, required(m, "GROUP")?, arg(m, "group-domain")).await?;
    let users = mgr(ctx.client().await?, USER);
    let list = users
        .list_in_context("groups", &gid, &list_params(m))
        .await?;
    print_list(ctx, &list, "users", USER_COLUMNS, m);
    Ok(())
}

async fn project_user_roles(ctx: &Ctx, m: &ArgMatches, add: bool) -> anyhow::Result<()> {
    let pid = resolve(
        ctx,
        PROJECT,
        required(m, "PROJECT")?,
        arg(m, "project-domain"),
    )
    .await?;
    let uid = resolve(ctx, USER, required(m, "USER")?, arg(m, "user-domain")).await?;
    let roles: Vec<String> = m
        .get_many::<String>("ROLE")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let method = if add { Method::PUT } else { Method::DELETE };
    for role in roles {
        let rid = resolve(ctx, ROLE, &role, arg(m, "role-domain")).await?;
        let path = format!(
            "/projects/{}/users/{}/roles/{}",
            cloudpods_sdk::endpoint::encode_segment(&pid),
            cloudpods_sdk::endpoint::encode_segment(&uid),
            cloudpods_sdk::endpoint::encode_segment(&rid)
        );
        ctx.client()
            .await?
            .raw(
                method.clone(),
                IDENTITY,
                &path,
                None,
                None,
                HeaderMap::new(),
            )
            .await?;
    }
    Ok(())
}

/// The `GET /v3/role_assignments` query of the command's flags (names are
/// resolved to ids first).
async fn role_assignment_query(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<Map<String, Value>> {
    let mut q = Map::new();
    let refs = [
        ("user", "user-domain", USER, "user.id"),
        ("group", "group-domain", GROUP, "group.id"),
        ("project", "project-domain", PROJECT, "scope.project.id"),
        ("role", "role-domain", ROLE, "role.id"),
    ];
    for (name, domain, to, key) in refs {
        if let Some(v) = arg(m, name) {
            let id = resolve(ctx, to, v, arg(m, domain)).await?;
            insert_path(&mut q, key, Value::String(id));
        }
    }
    if let Some(d) = arg(m, "domain") {
        let id = resolve(ctx, DOMAIN, d, None).await?;
        insert_path(&mut q, "scope.domain.id", Value::String(id));
    }
    for (flag, key) in [
        ("effective", "effective"),
        ("include-names", "include_names"),
        ("include-system", "include_system"),
        ("policies", "include_policies"),
    ] {
        if m.get_flag(flag) {
            q.insert(key.into(), Value::Bool(true));
        }
    }
    for k in ["limit", "offset"] {
        if let Some(n) = m.try_get_one::<u64>(k).ok().flatten() {
            q.insert(k.into(), Value::from(*n));
        }
    }
    Ok(q)
}

async fn role_assignment_list(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let q = role_assignment_query(ctx, m).await?;
    let resp = ctx
        .client()
        .await?
        .raw(
            Method::GET,
            IDENTITY,
            "/role_assignments",
            Some(&q),
            None,
            HeaderMap::new(),
        )
        .await?;
    let list = ListResult::from_body(&resp.body, "role_assignments").map_err(anyhow::Error::msg)?;
    print_list(
        ctx,
        &list,
        "role_assignments",
        &["Scope", "User", "Group", "Role", "Policies"],
        m,
    );
    Ok(())
}

/// The fields `token-issue` and `token-validate` show.
pub fn token_summary(id: Option<&str>, t: &TokenBody) -> Value {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    m.insert("expires_at".into(), json!(t.expires_at));
    m.insert("issued_at".into(), json!(t.issued_at));
    m.insert("user_id".into(), json!(t.user.id));
    m.insert("user".into(), json!(t.user.name));
    m.insert("user_domain".into(), json!(t.user.domain.name));
    if let Some(p) = &t.project {
        m.insert("project_id".into(), json!(p.id));
        m.insert("project".into(), json!(p.name));
        m.insert("project_domain".into(), json!(p.domain.name));
    }
    if let Some(d) = &t.domain {
        m.insert("domain_id".into(), json!(d.id));
        m.insert("domain".into(), json!(d.name));
    }
    let roles: Vec<&str> = t.roles.iter().map(|r| r.name.as_str()).collect();
    m.insert("roles".into(), json!(roles.join(",")));
    let p = &t.policies;
    for (scope, names) in [
        ("system", &p.system),
        ("domain", &p.domain),
        ("project", &p.project),
    ] {
        if !names.is_empty() {
            m.insert(format!("{scope}_policies"), json!(names.join(",")));
        }
    }
    Value::Object(m)
}

fn print_token(ctx: &Ctx, id: Option<&str>, t: &TokenBody) -> anyhow::Result<()> {
    if ctx.format() == Format::Json {
        let v = json!({"id": id, "token": t});
        ctx.print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    } else {
        print_object(ctx, &token_summary(id, t));
    }
    Ok(())
}

async fn token_issue(ctx: &Ctx) -> anyhow::Result<()> {
    let session = ctx.client().await?.token();
    print_token(ctx, Some(session.id()), session.token())
}

async fn token_validate(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let token = required(m, "TOKEN")?;
    let body = ctx.client().await?.validate_token(token).await?;
    print_token(ctx, None, &body)
}

async fn token_revoke(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    ctx.client()
        .await?
        .revoke_token(required(m, "TOKEN")?)
        .await?;
    Ok(())
}

/// One row per endpoint: service name, type, interface, region, URL.
pub fn catalog_rows(
    catalog: &[cloudpods_apis::identity::CatalogService],
    only: Option<&str>,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for svc in catalog {
        if only.is_some_and(|o| o != svc.service_type && o != svc.name) {
            continue;
        }
        for ep in &svc.endpoints {
            let region = if ep.region_id.is_empty() {
                &ep.region
            } else {
                &ep.region_id
            };
            rows.push(vec![
                svc.name.clone(),
                svc.service_type.clone(),
                ep.interface.clone(),
                region.clone(),
                ep.url.clone(),
            ]);
        }
    }
    rows
}

fn print_catalog(ctx: &Ctx, rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let headers = ["Name", "Type", "Interface", "Region", "URL"];
    match ctx.format() {
        Format::Json => {
            let items: Vec<Value> = rows
                .iter()
                .map(|r| {
                    Value::Object(
                        headers
                            .iter()
                            .zip(r)
                            .map(|(h, v)| (h.to_ascii_lowercase(), json!(v)))
                            .collect(),
                    )
                })
                .collect();
            ctx.print(&format!("{}\n", serde_json::to_string_pretty(&items)?));
        }
        _ => {
            let h: Vec<String> = headers.iter().map(|s| (*s).to_owned()).collect();
            ctx.print(&pretty_table(&h, &rows));
        }
    }
    Ok(())
}

async fn catalog_list(ctx: &Ctx) -> anyhow::Result<()> {
    let catalog = ctx.client().await?.catalog();
    print_catalog(ctx, catalog_rows(&catalog, None))
}

async fn catalog_show(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let svc = required(m, "SERVICE")?;
    let catalog = ctx.client().await?.catalog();
    let rows = catalog_rows(&catalog, Some(svc));
    if rows.is_empty() {
        anyhow::bail!("no service {svc:?} in the token catalog");
    }
    print_catalog(ctx, rows)
}
