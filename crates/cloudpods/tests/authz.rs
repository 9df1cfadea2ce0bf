//! Authorization over every endpoint (issue 13; the model is omicron's
//! `nexus/tests/integration_tests/unauthorized.rs`).
//!
//! Every route of every service — the OpenAPI documents of keystone, the
//! region, the scheduler and glance (generated from the table descriptors
//! and the custom routes), the host agent's routes (read from
//! `crates/host/src/agent.rs`) and the agent callback `POST /tasks/{id}` —
//! is called as five identities that must not get through:
//!
//! | identity  | who                                   | on                      |
//! |-----------|---------------------------------------|-------------------------|
//! | anonymous | no token                              | everything: 401          |
//! | member-b  | member of another project (B)         | A's objects: 403/404     |
//! | member-a  | member of A                           | system/domain writes     |
//! | owner-b   | project owner of another project (B)  | A's objects, D, system   |
//! | d2-admin  | domain admin of another domain (D2)   | D's and A's objects      |
//!
//! `{id}` parameters are filled with real objects owned by project A /
//! domain D (or a disposable victim object for system resources), so 404
//! vs 403 is meaningful; `{action}` is expanded into every action (POST) and
//! spec (GET) of the resource.
//!
//! [`table`] maps each (method, route template) to a [`Rule`]; the rule
//! gives the expectation per identity ([`expect`]). The test fails when a
//! documented route has no entry, and when an entry names a route that no
//! longer exists, so a new endpoint cannot ship untested. Responses that are
//! allowed are checked for leaks: a 2xx answer to an outsider must not
//! contain the ids of A's objects or of other users.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::authz::*;
use common::*;
use serde_json::{Value, json};

/// The create body of an identity victim, from the ids made before it.
type VictimBody = fn(&BTreeMap<&str, String>) -> Value;

// ---------------------------------------------------------------------------
// identities and expectations

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    Anonymous,
    MemberB,
    MemberA,
    OwnerB,
    D2Admin,
}

const IDENTS: [Ident; 5] = [
    Ident::Anonymous,
    Ident::MemberB,
    Ident::MemberA,
    Ident::OwnerB,
    Ident::D2Admin,
];

impl Ident {
    fn name(self) -> &'static str {
        match self {
            Ident::Anonymous => "anonymous",
            Ident::MemberB => "member-b",
            Ident::MemberA => "member-a",
            Ident::OwnerB => "owner-b",
            Ident::D2Admin => "d2-admin",
        }
    }
}

/// What a route is, for authorization.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// Explicitly public: answers without a token (the allow-list).
    Public,
    /// A liveness probe: anything but a server error, for anyone.
    Probe,
    /// Any authenticated caller (its own data: usages, its catalog, its
    /// projects); anonymous 401. Answers are leak-checked.
    Authenticated,
    /// Any authenticated caller may or may not be allowed (a list filtered
    /// to what the caller may see, a forecast); anonymous 401; answers are
    /// leak-checked.
    AuthenticatedMay,
    /// System-managed (catalog, policies, domains, hosts, zones, wires,
    /// storages, schedtags, regions, SKUs, networks, …): reading shared
    /// infrastructure may be allowed, any write needs system scope.
    SystemRead,
    /// System scope even to read (scheduler internals, revocation list).
    SystemOnly,
    /// Nobody of the five, whatever the method (privilege escalation:
    /// binding a policy, defining a system policy, setting quotas, …).
    Never,
    /// Project-managed (servers, disks, …): only inside the caller's
    /// project. `member_writes`: the member policy allows changing it.
    Project { member_writes: bool },
    /// Domain-managed (users, projects, groups, assignments): domain scope
    /// to write; `member_a_reads`: member-a may read the target object (its
    /// own project).
    Domain { member_a_reads: bool },
    /// Readable inside the domain (the domain's quota), never by another
    /// domain; written at system scope only.
    DomainShared,
    /// A create anyone authenticated may attempt: refused, or made in the
    /// caller's own project (networks on a shared wire), never in A.
    OwnCreate,
    /// Setting a quota: a domain admin may set those of its own domain's
    /// projects (as in Cloudpods, within the domain's quota); nobody else
    /// of the five.
    QuotaSet,
    /// The host agent's API: only the region.
    Agent,
    /// Agent callbacks: only with the signed key, never a user token.
    Callback,
}

/// The expected outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 2xx.
    Ok,
    /// 401 in the Cloudpods error shape (anonymous).
    Unauth,
    /// 401/403/404 in the Cloudpods error shape.
    Deny,
    /// Anything but a server error (2xx answers are leak-checked).
    May,
    /// A create by an outsider that names A / D as owner: refused, or
    /// created in the caller's own project / domain (never in A / D).
    ForeignCreate,
    /// Legitimate for this identity and not idempotent: not sent.
    Skip,
}

fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

/// The expectation for `who` calling `method` on a route of `rule`.
/// `object`: the path names an object (it has parameters); `in_a`: one of
/// the objects it names lies in project A (owned by A or by member-a).
fn expect(rule: Rule, who: Ident, method: &str, object: bool, in_a: bool) -> Expect {
    use Expect::*;
    use Ident::*;
    let read = is_read(method);
    match rule {
        Rule::Public => return Ok,
        Rule::Probe => return May,
        Rule::Agent | Rule::Callback => return Deny,
        _ => {}
    }
    if who == Anonymous {
        return Unauth;
    }
    match rule {
        Rule::Public | Rule::Probe | Rule::Agent | Rule::Callback => unreachable!(),
        Rule::OwnCreate => ForeignCreate,
        Rule::QuotaSet => {
            if who == D2Admin {
                May
            } else {
                Deny
            }
        }
        Rule::Authenticated => {
            if read {
                Ok
            } else {
                May
            }
        }
        Rule::AuthenticatedMay => May,
        Rule::SystemRead => {
            if read {
                May
            } else {
                Deny
            }
        }
        Rule::SystemOnly | Rule::Never => Deny,
        Rule::Project { member_writes } => match (object, who) {
            (true, MemberA) if in_a => {
                if read {
                    May
                } else if member_writes {
                    Skip
                } else {
                    Deny
                }
            }
            (true, _) => Deny,
            (false, _) if read => Ok,
            (false, MemberA) => {
                if member_writes {
                    Skip
                } else {
                    Deny
                }
            }
            (false, _) => {
                if member_writes {
                    ForeignCreate
                } else {
                    Deny
                }
            }
        },
        Rule::Domain { member_a_reads } => match (object, read, who) {
            (true, true, MemberA) if member_a_reads => May,
            (true, _, _) => Deny,
            // Listing other users / projects / groups needs domain scope:
            // refused, or filtered to what the caller may see (leak-checked).
            (false, true, _) => May,
            (false, false, D2Admin) => ForeignCreate,
            (false, false, _) => Deny,
        },
        Rule::DomainShared => match (read, who) {
            (true, D2Admin) => Deny,
            (true, _) => May,
            (false, _) => Deny,
        },
    }
}

// ---------------------------------------------------------------------------
// the table

struct Entry {
    service: &'static str,
    template: String,
    methods: &'static [&'static str],
    rule: Rule,
}

const GENERIC_COLLECTION: &[&str] = &["GET", "POST"];
const GENERIC_OBJECT: &[&str] = &["GET", "PUT", "PATCH", "HEAD", "DELETE", "POST"];
const JOINT_OBJECT: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const CONTEXT_OBJECT: &[&str] = &["GET", "PUT", "PATCH", "DELETE"];
const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const GET_POST: &[&str] = &["GET", "POST"];

struct Table(Vec<Entry>);

impl Table {
    fn add(
        &mut self,
        service: &'static str,
        t: &str,
        methods: &'static [&'static str],
        rule: Rule,
    ) {
        self.0.push(Entry {
            service,
            template: t.to_string(),
            methods,
            rule,
        });
    }

    /// The generic routes of one model: `/{plural}`, `/{plural}/distinct-field`,
    /// `/{plural}/{id}` (incl. the class action POST) and `/{plural}/{id}/{action}`.
    fn model(&mut self, service: &'static str, prefix: &str, plural: &str, rule: Rule) {
        self.add(
            service,
            &format!("{prefix}/{plural}"),
            GENERIC_COLLECTION,
            rule,
        );
        self.add(
            service,
            &format!("{prefix}/{plural}/distinct-field"),
            GET,
            rule,
        );
        self.add(
            service,
            &format!("{prefix}/{plural}/{{id}}"),
            GENERIC_OBJECT,
            rule,
        );
        self.add(
            service,
            &format!("{prefix}/{plural}/{{id}}/{{action}}"),
            GET_POST,
            rule,
        );
    }

    /// The standard service routes: version, ping, metrics.
    fn basics(&mut self, service: &'static str) {
        // Version discovery: clients probe it before they have a token.
        self.add(service, "/version", GET, Rule::Public);
        self.add(service, "/version.json", GET, Rule::Public);
        // Load balancers' health checks.
        self.add(service, "/ping", GET_POST, Rule::Public);
        // Prometheus scrapes without a token; only route templates, status
        // codes and latencies are exposed.
        self.add(service, "/metrics", GET, Rule::Public);
    }
}

const MEMBER_WRITES: Rule = Rule::Project {
    member_writes: true,
};
const PROJECT_READ: Rule = Rule::Project {
    member_writes: false,
};
const DOMAIN_HIDDEN: Rule = Rule::Domain {
    member_a_reads: false,
};

fn table() -> Table {
    use Rule::*;
    let mut t = Table(Vec::new());

    // --- keystone ---------------------------------------------------------
    let k = "keystone";
    t.basics(k);
    // Version discovery (OpenStack clients loop on 401 otherwise).
    t.add(k, "/", GET, Public);
    t.add(k, "/v3", GET, Public);
    t.add(k, "/v3/auth/tokens", POST, Public); // issuing a token
    // Validating / revoking another user's token (owner-a's is the subject).
    t.add(k, "/v3/auth/tokens", &["GET", "DELETE"], Never);
    t.add(k, "/v3/auth/tokens/invalid", GET, SystemOnly);
    t.add(k, "/v3/auth/catalog", GET, Authenticated);
    t.add(k, "/v3/auth/projects", GET, Authenticated);
    t.add(k, "/v3/role_assignments", GET, AuthenticatedMay);
    // Catalog, domains, policies, bindings, roles: system-managed.
    for plural in ["services", "endpoints", "regions", "domains", "roles"] {
        t.model(k, "/v3", plural, SystemRead);
    }
    t.model(k, "/v3", "policies", SystemRead);
    t.model(k, "/v3", "role_policies", SystemRead);
    // Credentials belong to a user (member-a's is the target).
    t.model(k, "/v3", "credentials", MEMBER_WRITES);
    // Listing credentials: refused, or only the caller's own.
    t.0.retain(|e| {
        !(e.service == k
            && matches!(
                e.template.as_str(),
                "/v3/credentials" | "/v3/credentials/distinct-field"
            ))
    });
    t.add(k, "/v3/credentials", GET, AuthenticatedMay);
    t.add(k, "/v3/credentials", POST, MEMBER_WRITES);
    t.add(k, "/v3/credentials/distinct-field", GET, AuthenticatedMay);
    // Identity of the domain: the target user is `victim` (a member of A
    // that member-a may not see), the target project is A itself.
    t.model(k, "/v3", "users", DOMAIN_HIDDEN);
    t.model(k, "/v3", "groups", DOMAIN_HIDDEN);
    t.model(
        k,
        "/v3",
        "projects",
        Domain {
            member_a_reads: true,
        },
    );
    t.add(k, "/v3/users/{user}/projects", GET, DOMAIN_HIDDEN);
    t.add(k, "/v3/users/{user}/groups", GET, DOMAIN_HIDDEN);
    t.add(k, "/v3/groups/{group}/users", GET, DOMAIN_HIDDEN);
    t.add(
        k,
        "/v3/groups/{group}/users/{user}",
        &["PUT", "DELETE", "GET"],
        DOMAIN_HIDDEN,
    );
    for target in ["projects", "domains"] {
        t.add(
            k,
            &format!("/v3/{target}/{{target}}/users/{{actor}}/roles"),
            GET,
            DOMAIN_HIDDEN,
        );
        for actor in ["users", "groups"] {
            t.add(
                k,
                &format!("/v3/{target}/{{target}}/{actor}/{{actor}}/roles/{{role}}"),
                &["PUT", "DELETE", "GET"],
                DOMAIN_HIDDEN,
            );
        }
    }

    // --- region -----------------------------------------------------------
    let r = "region";
    t.basics(r);
    for plural in [
        "servers",
        "disks",
        "snapshots",
        "secgroups",
        "secgrouprules",
        "keypairs",
        "eips",
    ] {
        t.model(r, "", plural, MEMBER_WRITES);
    }
    t.model(r, "", "tasks", PROJECT_READ);
    t.model(r, "", "archivedtasks", PROJECT_READ);
    // POST /tasks/{id} is the agent callback (the custom route shadows the
    // generic class action of the same shape).
    t.0.retain(|e| !(e.service == r && e.template == "/tasks/{id}"));
    t.add(
        r,
        "/tasks/{id}",
        &["GET", "PUT", "PATCH", "HEAD", "DELETE"],
        PROJECT_READ,
    );
    t.add(r, "/tasks/{id}", POST, Callback);
    t.add(r, "/tasks/{task_id}", POST, Callback);
    for plural in [
        "zones",
        "hosts",
        "wires",
        "storages",
        "schedtags",
        "cloudregions",
        "serverskus",
        "vpcs",
        "networks",
        "reservedips",
        "storagecaches",
        "cachedimages",
        "cloudaccounts",
        "cloudproviders",
    ] {
        t.model(r, "", plural, SystemRead);
    }
    // Networks are project-owned: a create lands in the caller's project.
    t.0.retain(|e| !(e.service == r && e.template == "/networks"));
    t.add(r, "/networks", GET, SystemRead);
    t.add(r, "/networks", POST, OwnCreate);
    // A domain admin creates cloud accounts in its own domain.
    t.0.retain(|e| !(e.service == r && e.template == "/cloudaccounts"));
    t.add(r, "/cloudaccounts", GET, SystemRead);
    t.add(r, "/cloudaccounts", POST, DOMAIN_HIDDEN);
    // Joint tables listed on their own.
    for j in ["guestdisks", "guestnetworks", "guestsecgroups"] {
        t.add(r, &format!("/{j}"), GET, PROJECT_READ);
    }
    for j in [
        "hostnetworks",
        "hostschedtags",
        "hoststorages",
        "hostwires",
        "storagecachedimages",
        "cloudproviderregions",
    ] {
        t.add(r, &format!("/{j}"), GET, SystemRead);
    }
    // Joints of A's servers (both orders).
    // The servers on a shared network: filtered to the caller's (leak-checked).
    t.add(r, "/networks/{id}/servers", GET, SystemRead);
    t.add(
        r,
        "/networks/{id}/servers/{sid}",
        JOINT_OBJECT,
        MEMBER_WRITES,
    );
    for (a, b) in [
        ("servers", "disks"),
        ("disks", "servers"),
        ("servers", "networks"),
        ("servers", "secgroups"),
        ("secgroups", "servers"),
    ] {
        t.add(r, &format!("/{a}/{{id}}/{b}"), GET, MEMBER_WRITES);
        t.add(
            r,
            &format!("/{a}/{{id}}/{b}/{{sid}}"),
            JOINT_OBJECT,
            MEMBER_WRITES,
        );
    }
    // Joints of the infrastructure.
    for (a, b) in [
        ("hosts", "networks"),
        ("networks", "hosts"),
        ("hosts", "schedtags"),
        ("schedtags", "hosts"),
        ("hosts", "storages"),
        ("storages", "hosts"),
        ("hosts", "wires"),
        ("wires", "hosts"),
        ("storagecaches", "cachedimages"),
        ("cachedimages", "storagecaches"),
        ("cloudproviders", "cloudregions"),
        ("cloudregions", "cloudproviders"),
    ] {
        t.add(r, &format!("/{a}/{{id}}/{b}"), GET, SystemRead);
        t.add(
            r,
            &format!("/{a}/{{id}}/{b}/{{sid}}"),
            JOINT_OBJECT,
            SystemRead,
        );
    }
    // Context lists `/{ctx}/{ctx_id}/{plural}[/{id}]`.
    t.add(r, "/wires/{ctx_id}/networks", POST, OwnCreate);
    t.add(r, "/wires/{ctx_id}/networks", GET, SystemRead);
    t.add(
        r,
        "/wires/{ctx_id}/networks/{id}",
        CONTEXT_OBJECT,
        SystemRead,
    );
    for (ctx, plural, rule) in [
        ("secgroups", "secgrouprules", MEMBER_WRITES),
        ("zones", "hosts", SystemRead),
        ("zones", "storages", SystemRead),
        ("zones", "wires", SystemRead),
        ("vpcs", "wires", SystemRead),
        ("networks", "reservedips", SystemRead),
        ("cloudregions", "zones", SystemRead),
        ("cloudregions", "vpcs", SystemRead),
        ("cloudregions", "cachedimages", SystemRead),
        ("cloudaccounts", "cloudproviders", SystemRead),
    ] {
        t.add(r, &format!("/{ctx}/{{ctx_id}}/{plural}"), GET_POST, rule);
        t.add(
            r,
            &format!("/{ctx}/{{ctx_id}}/{plural}/{{id}}"),
            CONTEXT_OBJECT,
            rule,
        );
    }
    t.add(r, "/usages", GET, Authenticated);
    t.add(r, "/capabilities", GET, AuthenticatedMay);
    // Quotas: each reads its own; setting any quota is the system's.
    t.add(r, "/quotas", GET, Authenticated);
    t.add(r, "/quotas", POST, QuotaSet);
    t.add(r, "/quotas/projects", GET, AuthenticatedMay);
    t.add(r, "/quotas/projects/{id}", GET, PROJECT_READ);
    t.add(r, "/quotas/projects/{id}", POST, Never);
    t.add(r, "/quotas/domains", GET, AuthenticatedMay);
    t.add(r, "/quotas/domains/{id}", GET, DomainShared);
    t.add(r, "/quotas/domains/{id}", POST, Never);

    // --- scheduler --------------------------------------------------------
    let s = "scheduler";
    t.basics(s);
    // Placement, reservations and the candidates' details are the region's
    // (and the system admin's) business.
    t.add(s, "/scheduler", POST, SystemOnly);
    t.add(s, "/scheduler/candidate-list", GET_POST, SystemOnly);
    t.add(s, "/scheduler/candidate-detail/{id}", GET_POST, SystemOnly);
    t.add(s, "/scheduler/clean-cache", POST, SystemOnly);
    t.add(s, "/scheduler/clean-cache/{host_id}", POST, SystemOnly);
    t.add(s, "/scheduler/completed/{session}", POST, SystemOnly);
    t.add(s, "/scheduler/history-list", GET_POST, SystemOnly);
    t.add(
        s,
        "/scheduler/history-detail/{session}",
        GET_POST,
        SystemOnly,
    );
    // "Can I create this?" before a create: Cloudpods' UI asks as the user.
    t.add(s, "/scheduler/forecast", POST, AuthenticatedMay);

    // --- glance -----------------------------------------------------------
    let g = "glance";
    t.basics(g);
    t.model(g, "/v1", "images", MEMBER_WRITES);

    // --- host agent (crates/host/src/agent.rs) ----------------------------
    let a = "agent";
    t.add(a, "/servers/{id}/{action}", POST, Agent);
    t.add(a, "/servers/{id}/status", GET, Agent);
    t.add(a, "/servers/{id}/vnc", GET, Agent);
    t.add(a, "/servers/{id}/console/{protocol}", GET, Agent);
    t.add(a, "/disks/{storage}/{action}/{disk}", POST, Agent);
    t.add(a, "/disks/{storage}/export/{disk}", GET, Agent);
    t.add(a, "/disks/image_cache", GET, Agent);
    // Liveness of the agent: reveals nothing.
    t.add(a, "/ping", GET, Probe);

    // --- apigateway (crates/apigateway/src/lib.rs) ------------------------
    let gw = "apigateway";
    // The login page's bootstrap, and the login itself (refused without a
    // body, never a server error).
    t.add(gw, "/api/v1/auth/regions", GET, Public);
    t.add(gw, "/api/v1/auth/login", POST, Probe);
    // Logging out ends one's own session only.
    t.add(gw, "/api/v1/auth/logout", GET_POST, Probe);
    t.add(gw, "/api/v1/auth/user", GET, Authenticated);
    t.add(gw, "/api/v1/auth/permissions", GET_POST, Authenticated);
    t.add(gw, "/api/v1/auth/scoped_resources", GET, Authenticated);
    // A console of A's server: only inside A (the region decides, with the
    // caller's token).
    t.add(gw, "/api/v1/webconsole/server/{id}", POST, MEMBER_WRITES);
    // The console socket opens with a sealed ticket only, never a token.
    t.add(gw, "/websockify", GET, Never);
    t.add(gw, "/websockify/", GET, Never);
    // Everything else is forwarded with the caller's token: the services'
    // rules apply (here to A's server).
    t.add(
        gw,
        "/api/{*rest}",
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
        MEMBER_WRITES,
    );
    t
}

/// Model-specific actions (`POST /{plural}/{id}/{action}`); the common ones
/// (metadata, status, enable/disable, public/private, cancel-delete,
/// change-owner) are added from the resource's columns.
fn actions_of(plural: &str) -> &'static [&'static str] {
    match plural {
        "servers" => &[
            "start",
            "stop",
            "restart",
            "reset",
            "syncstatus",
            "sync",
            "change-config",
            "attachdisk",
            "detachdisk",
            "disk-snapshot",
            "rebuild-root",
            "set-password",
            "deploy",
            "reset-password",
            "migrate",
            "live-migrate",
            "add-secgroup",
            "del-secgroup",
            "revoke-secgroup",
            "set-secgroup",
            "assign-secgroup",
            "purge",
        ],
        "disks" => &["resize", "reset"],
        "secgroups" => &["add-rule"],
        "eips" => &["associate", "dissociate"],
        "hosts" => &[
            "ping",
            "sync-image-cache",
            "online",
            "offline",
            "host-maintenance",
            "host-exit-maintenance",
        ],
        "storages" => &["online", "offline"],
        "networks" => &["reserve-ip", "release-reserved-ip"],
        "tasks" => &["cancel"],
        "cloudaccounts" => &["sync", "update-credential"],
        "images" => &["deactivate", "reactivate", "activate"],
        "users" => &["unlock"],
        _ => &[],
    }
}

/// Model-specific specs (`GET /{plural}/{id}/{spec}`).
fn specs_of(plural: &str) -> &'static [&'static str] {
    match plural {
        "hosts" => &["spec"],
        "networks" => &["reserved-ips", "addresses"],
        "servers" => &["tasks", "create-params", "desc"],
        "keypairs" => &["privatekey"],
        _ => &[],
    }
}

// ---------------------------------------------------------------------------
// routes from the services

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    service: &'static str,
    method: String,
    template: String,
}

/// What the OpenAPI document says about one model.
#[derive(Default, Clone)]
struct ModelInfo {
    keyword: String,
    columns: BTreeSet<String>,
    /// What a create accepts (when the collection POST is the generic one).
    create_fields: Option<BTreeSet<String>>,
    /// What an update accepts.
    update_fields: BTreeSet<String>,
}

struct Docs {
    routes: BTreeSet<Route>,
    /// (service, plural) → model.
    models: BTreeMap<(&'static str, String), ModelInfo>,
}

fn strip_ref(v: &Value) -> Option<String> {
    v["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string)
}

fn read_doc(service: &'static str, doc: &Value, docs: &mut Docs) {
    let paths = doc["paths"].as_object().expect("paths");
    let schemas = &doc["components"]["schemas"];
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if method == "parameters" {
                continue;
            }
            docs.routes.insert(Route {
                service,
                method: method.to_ascii_uppercase(),
                template: path.clone(),
            });
            // A model's object: `{prefix}/{plural}/{id}` answers
            // `{keyword: {"$ref": Name}}`.
            // (Custom routes may replace some methods: any of them does.)
            if path.ends_with("/{id}")
                && let Some(env) =
                    op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
                        .as_object()
                && env.len() == 1
                && let Some((kw, schema)) = env.iter().next()
            {
                let name = strip_ref(schema).unwrap_or_default();
                let columns = schemas[&name]["properties"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                let segs: Vec<&str> = path.split('/').collect();
                let plural = segs[segs.len() - 2].to_string();
                let m = docs.models.entry((service, plural)).or_default();
                m.keyword = kw.to_string();
                m.columns = columns;
            }
            // The generic update: `{keyword: {"$ref": NameUpdate}}`.
            if method == "put"
                && path.ends_with("/{id}")
                && let Some(env) =
                    op["requestBody"]["content"]["application/json"]["schema"]["properties"]
                        .as_object()
                && let Some((_, schema)) = env.iter().next()
            {
                let name = strip_ref(schema).unwrap_or_default();
                let fields: BTreeSet<String> = schemas[&name]["properties"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                let segs: Vec<&str> = path.split('/').collect();
                let plural = segs[segs.len() - 2].to_string();
                docs.models
                    .entry((service, plural))
                    .or_default()
                    .update_fields = fields;
            }
            // The generic create: `{keyword: {"$ref": NameCreate}}`.
            if method == "post"
                && let Some(kw) =
                    op["requestBody"]["content"]["application/json"]["schema"]["required"][0]
                        .as_str()
            {
                let create =
                    &op["requestBody"]["content"]["application/json"]["schema"]["properties"][kw];
                let name = strip_ref(create).unwrap_or_default();
                let fields = schemas[&name]["properties"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect());
                let plural = path.rsplit('/').next().unwrap_or_default().to_string();
                let m = docs.models.entry((service, plural)).or_default();
                m.create_fields = fields;
            }
        }
    }
}

/// The routes of an axum router (the host agent's, the gateway's), read
/// from its source so a new one needs an entry.
fn router_routes(service: &'static str, rel: &str) -> BTreeSet<Route> {
    let src_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let src = std::fs::read_to_string(&src_path).expect("router source");
    let mut out = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let Some(start) = chunk.find('"') else {
            continue;
        };
        let rest = &chunk[start + 1..];
        let Some(end) = rest.find('"') else {
            continue;
        };
        let template = rest[..end].to_string();
        // Up to the end of the router chain (the last route is followed by
        // the rest of the file).
        let after = &rest[end..];
        let stop = [".with_state(", ".layer(", "\n}"]
            .iter()
            .filter_map(|m| after.find(m))
            .min()
            .unwrap_or(after.len());
        let after = &after[..stop];
        for m in ["get", "post", "put", "delete", "patch", "any"] {
            // `get(handler)` or `.post(handler)` chained on the same route.
            let hit = after.find(&format!("{m}(")).is_some_and(|i| {
                i == 0
                    || !after.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && after.as_bytes()[i - 1] != b'_'
            });
            let methods: &[&str] = if m == "any" {
                &["GET", "POST", "PUT", "PATCH", "DELETE"]
            } else {
                &[m]
            };
            for method in methods.iter().filter(|_| hit) {
                out.insert(Route {
                    service,
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                });
            }
        }
    }
    assert!(!out.is_empty(), "no routes found in {}", src_path.display());
    out
}

// ---------------------------------------------------------------------------
// the world the requests run in

#[derive(Clone, Debug)]
struct Target {
    id: String,
    /// Owned by project A (or by member-a).
    in_a: bool,
}

const NO_SUCH: &str = "authz-no-such-object";

struct World {
    t: Tenancy,
    bases: BTreeMap<&'static str, String>,
    /// (service, plural) → the object `{id}` stands for.
    targets: BTreeMap<(&'static str, String), Target>,
    /// Ids an outsider must never see in an answer, per identity.
    forbidden: BTreeMap<Ident, Vec<(String, String)>>,
    /// owner-a's token: the subject of token validation/revocation.
    owner_a_token: String,
    /// The group of domain D (victim is its member).
    group_d: String,
    task_a: String,
    server_a: String,
    disk_a: String,
}

impl World {
    fn token(&self, who: Ident) -> Option<&str> {
        match who {
            Ident::Anonymous => None,
            Ident::MemberB => Some(&self.t.member_b.api.token),
            Ident::MemberA => Some(&self.t.member_a.api.token),
            Ident::OwnerB => Some(&self.t.owner_b.api.token),
            Ident::D2Admin => Some(&self.t.d2_admin.api.token),
        }
    }

    fn target(&self, service: &'static str, plural: &str) -> Target {
        let service = if service == "agent" {
            "region"
        } else {
            service
        };
        self.targets
            .get(&(service, plural.to_string()))
            .cloned()
            .unwrap_or(Target {
                id: NO_SUCH.into(),
                in_a: false,
            })
    }
}

/// Pick an object of `plural` as sysadmin sees it (system scope).
async fn first_of(t: &Tenancy, base: &str, plural: &str, key: &str) -> Option<String> {
    let r = t
        .admin
        .get(&format!("{base}/{plural}?scope=system&limit=1"))
        .await;
    r.body[key][0]["id"].as_str().map(str::to_string)
}

async fn setup() -> World {
    let t = Tenancy::start(&[]).await;
    let (ks, r, gl) = (t.ks.clone(), t.region.clone(), t.glance.clone());
    let admin = t.admin.clone();
    let oa = t.owner_a.api.clone();
    let mut targets: BTreeMap<(&'static str, String), Target> = BTreeMap::new();
    let mut put = |service: &'static str, plural: &str, id: String, in_a: bool| {
        if !id.is_empty() {
            targets.insert((service, plural.to_string()), Target { id, in_a });
        }
    };

    // --- A's objects, made by A's own users.
    let server_a = t.running_server(&oa, "srv-a").await;
    let srv = admin.get(&format!("{r}/servers/{server_a}")).await;
    let disk_a = srv.body["server"]["disks_info"][0]["id"]
        .as_str()
        .expect("disk of srv-a")
        .to_string();
    let task_a = admin
        .get(&format!("{r}/servers/{server_a}/tasks"))
        .await
        .body["server"]["tasks"][0]["id"]
        .as_str()
        .expect("task of srv-a")
        .to_string();
    let sg = id_of(
        &must_create(
            &oa,
            &format!("{r}/secgroups"),
            "secgroup",
            json!({"name": "sg-a"}),
        )
        .await,
    );
    let rule = oa
        .post(
            &format!("{r}/secgrouprules"),
            json!({"secgrouprule": {"secgroup_id": sg, "direction": "in", "protocol": "tcp",
                                    "ports": "22", "action": "allow", "priority": 1, "cidr": "0.0.0.0/0"}}),
        )
        .await;
    assert_eq!(rule.status, 200, "secgrouprule: {rule:?}");
    let rule = id_of(&rule.body["secgrouprule"]);
    let kp = t
        .member_a
        .api
        .post(
            &format!("{r}/keypairs"),
            json!({"keypair": {"name": "kp-a"}}),
        )
        .await;
    assert_eq!(kp.status, 200, "keypair: {kp:?}");
    let keypair_a = id_of(&kp.body["keypair"]);
    let snap = oa
        .post(
            &format!("{r}/snapshots"),
            json!({"snapshot": {"name": "snap-a", "disk_id": disk_a}}),
        )
        .await;
    let snap_id = if snap.status == 200 {
        id_of(&snap.body["snapshot"])
    } else {
        eprintln!("authz: no snapshot of A ({snap:?}); snapshots/{{id}} uses a missing id");
        String::new()
    };
    // An EIP network to take A's EIP from.
    let en = admin
        .post(
            &format!("{r}/networks"),
            json!({"network": {"name": "eipnet", "wire": "wire0", "server_type": "eip",
                   "guest_ip_start": "10.0.1.10", "guest_ip_end": "10.0.1.250", "guest_ip_mask": 24,
                   "guest_gateway": "10.0.1.1", "is_public": true, "public_scope": "system"}}),
        )
        .await;
    assert_eq!(en.status, 200, "eip network: {en:?}");
    let eip = oa
        .post(
            &format!("{r}/eips"),
            json!({"eip": {"name": "eip-a", "network": "eipnet"}}),
        )
        .await;
    let eip_id = if eip.status == 200 {
        id_of(&eip.body["eip"])
    } else {
        eprintln!("authz: no EIP of A ({eip:?}); eips/{{id}} uses a missing id");
        String::new()
    };
    let img = must_create(
        &oa,
        &format!("{gl}/images"),
        "image",
        json!({"name": "img-a", "disk_format": "qcow2"}),
    )
    .await;
    for (plural, id) in [
        ("servers", server_a.clone()),
        ("disks", disk_a.clone()),
        ("tasks", task_a.clone()),
        ("secgroups", sg),
        ("secgrouprules", rule),
        ("keypairs", keypair_a),
        ("snapshots", snap_id),
        ("eips", eip_id),
    ] {
        put("region", plural, id, true);
    }
    put("glance", "images", id_of(&img), true);

    // --- infrastructure (the real ones; disposable where cheap).
    put("region", "hosts", t.host_id.clone(), false);
    put("region", "storages", t.storage_id.clone(), false);
    for (plural, key) in [
        ("zones", "zones"),
        ("wires", "wires"),
        ("vpcs", "vpcs"),
        ("cloudregions", "cloudregions"),
        ("storagecaches", "storagecaches"),
        ("cachedimages", "cachedimages"),
        ("networks", "networks"),
    ] {
        if let Some(id) = first_of(&t, &r, plural, key).await {
            put("region", plural, id, false);
        }
    }
    for (plural, keyword, body) in [
        ("schedtags", "schedtag", json!({"name": "tag0"})),
        (
            "serverskus",
            "serversku",
            json!({"name": "sku0", "cpu_core_count": 1, "memory_size_mb": 512}),
        ),
    ] {
        let made = must_create(&admin, &format!("{r}/{plural}"), keyword, body).await;
        put("region", plural, id_of(&made), false);
    }
    let rip = admin
        .post(
            &format!("{r}/reservedips"),
            json!({"reservedip": {"network_id": "net0", "ip_addr": "10.0.0.249", "notes": "authz"}}),
        )
        .await;
    if rip.status == 200 {
        put(
            "region",
            "reservedips",
            id_of(&rip.body["reservedip"]),
            false,
        );
    } else {
        eprintln!("authz: no reserved IP ({rip:?})");
    }

    // --- identity: victims, so a wrongly allowed write breaks nothing else.
    // Made in order: later bodies name earlier ids.
    let mut made: BTreeMap<&str, String> = BTreeMap::new();
    let victims: [(&str, &str, VictimBody); 7] = [
        ("domains", "domain", |_| json!({"name": "dom-victim"})),
        (
            "services",
            "service",
            |_| json!({"name": "victim-svc", "type": "victim"}),
        ),
        ("regions", "region", |_| json!({"name": "victim-region"})),
        ("endpoints", "endpoint", |m| {
            json!({"service_id": m["services"], "region_id": m["regions"], "interface": "public",
                   "url": "http://127.0.0.1:9/victim"})
        }),
        ("policies", "policy", |_| {
            json!({"name": "victim-pol", "scope": "project",
                   "blob": {"policy": {"compute": {"servers": {"list": "allow"}}}}})
        }),
        ("roles", "role", |_| json!({"name": "victim-role"})),
        (
            "role_policies",
            "role_policy",
            |m| json!({"role_id": m["roles"], "policy_id": m["policies"]}),
        ),
    ];
    for (plural, keyword, body) in victims {
        let obj = must_create(&admin, &format!("{ks}/{plural}"), keyword, body(&made)).await;
        made.insert(plural, id_of(&obj));
        put("keystone", plural, id_of(&obj), false);
    }
    let group = must_create(
        &admin,
        &format!("{ks}/groups"),
        "group",
        json!({"name": "grp-d"}),
    )
    .await;
    let group_d = id_of(&group);
    let gm = admin
        .put(
            &format!("{ks}/groups/{group_d}/users/{}", t.victim_id),
            None,
        )
        .await;
    assert_eq!(gm.status, 204, "victim in grp-d: {gm:?}");
    put("keystone", "groups", group_d.clone(), false);
    put("keystone", "users", t.victim_id.clone(), false);
    put("keystone", "projects", t.proj_a.clone(), true);
    // member-a's own credential when it may make one, else sysadmin's.
    let cred_body =
        json!({"credential": {"name": "cred-a", "type": "totp", "blob": "authz-secret"}});
    let cred = t
        .member_a
        .api
        .post(&format!("{ks}/credentials"), cred_body.clone())
        .await;
    if cred.status == 200 {
        put(
            "keystone",
            "credentials",
            id_of(&cred.body["credential"]),
            true,
        );
    } else {
        let c = admin.post(&format!("{ks}/credentials"), cred_body).await;
        assert_eq!(c.status, 200, "credential: {c:?}");
        put(
            "keystone",
            "credentials",
            id_of(&c.body["credential"]),
            false,
        );
    }

    let owner_a_token = t.owner_a.api.token.clone();
    let mut bases = BTreeMap::new();
    bases.insert("keystone", ks.trim_end_matches("/v3").to_string());
    bases.insert("region", r.clone());
    bases.insert("scheduler", t.sched.clone());
    bases.insert("glance", gl.trim_end_matches("/v1").to_string());
    bases.insert("agent", t.agent.clone());
    bases.insert("apigateway", t.p.gateway_url());

    // --- what each outsider must not see.
    let a_objects: Vec<(String, String)> = targets
        .iter()
        .filter(|(_, v)| v.in_a)
        .map(|((s, p), v)| (format!("{s} {p} of A"), v.id.clone()))
        .chain([
            ("project A".to_string(), t.proj_a.clone()),
            ("owner-a".to_string(), t.owner_a.user_id.clone()),
            ("member-a".to_string(), t.member_a.user_id.clone()),
            ("victim".to_string(), t.victim_id.clone()),
            ("group of D".to_string(), group_d.clone()),
        ])
        .collect();
    let mut forbidden = BTreeMap::new();
    let mut b_side = a_objects.clone();
    b_side.push(("sysadmin".into(), t.admin_id.clone()));
    forbidden.insert(Ident::MemberB, b_side.clone());
    forbidden.insert(Ident::OwnerB, b_side.clone());
    let mut d2 = b_side;
    d2.extend([
        ("project B".to_string(), t.proj_b.clone()),
        ("member-b".to_string(), t.member_b.user_id.clone()),
        ("owner-b".to_string(), t.owner_b.user_id.clone()),
    ]);
    forbidden.insert(Ident::D2Admin, d2);
    forbidden.insert(
        Ident::MemberA,
        vec![
            ("owner-a".to_string(), t.owner_a.user_id.clone()),
            ("victim".to_string(), t.victim_id.clone()),
            ("sysadmin".to_string(), t.admin_id.clone()),
            ("member-b".to_string(), t.member_b.user_id.clone()),
            ("project B".to_string(), t.proj_b.clone()),
        ],
    );
    World {
        t,
        bases,
        targets,
        forbidden,
        owner_a_token,
        group_d,
        task_a,
        server_a,
        disk_a,
    }
}

// ---------------------------------------------------------------------------
// concrete requests

#[derive(Clone, Debug)]
struct Req {
    route: Route,
    rule: Rule,
    url: String,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    object: bool,
    in_a: bool,
    /// The keyword of a create's answer (to see where it landed).
    create_keyword: Option<String>,
    note: String,
    /// A list asked at `scope=system`: refused, or nothing leaks.
    system_scope: bool,
}

/// Which plural a path parameter stands for: the static segment before it.
fn plural_before(segs: &[&str], i: usize) -> String {
    segs[..i]
        .iter()
        .rev()
        .find(|s| !s.starts_with('{'))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Turn one route into its concrete requests.
fn concretize(w: &World, docs: &Docs, route: &Route, rule: Rule) -> Vec<Req> {
    let service = route.service;
    let segs: Vec<&str> = route
        .template
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = route.method.as_str();
    // Expand `{action}` first.
    let mut variants: Vec<(Vec<String>, String)> = vec![(Vec::new(), String::new())];
    let mut in_a = false;
    let mut object = false;
    for (i, seg) in segs.iter().enumerate() {
        let Some(param) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            for v in &mut variants {
                v.0.push(seg.to_string());
            }
            continue;
        };
        object = true;
        let before = plural_before(&segs, i);
        let values: Vec<(String, String)> = match (service, param) {
            ("agent", "action") if before == "servers" => [
                "deploy", "create", "start", "stop", "reset", "sync", "delete",
            ]
            .iter()
            .map(|a| (a.to_string(), format!("action {a}")))
            .collect(),
            ("agent", "action") => [
                "create",
                "delete",
                "resize",
                "snapshot",
                "reset",
                "delete-snapshot",
            ]
            .iter()
            .map(|a| (a.to_string(), format!("action {a}")))
            .collect(),
            ("agent", "storage") => vec![(w.t.storage_id.clone(), String::new())],
            ("agent", "disk") => {
                in_a = true;
                vec![(w.disk_a.clone(), String::new())]
            }
            (_, "action") => {
                let plural = plural_before(&segs, i - 1);
                let info = docs
                    .models
                    .get(&(service, plural.clone()))
                    .cloned()
                    .unwrap_or_default();
                let names: Vec<String> = if method == "GET" {
                    let mut v = vec!["metadata".to_string()];
                    if info.columns.contains("status") {
                        v.push("status".into());
                    }
                    v.extend(specs_of(&plural).iter().map(|s| s.to_string()));
                    v
                } else {
                    let mut v: Vec<String> =
                        ["metadata", "user-metadata", "set-user-metadata", "set-tags"]
                            .iter()
                            .map(|s| s.to_string())
                            .collect();
                    for (col, acts) in [
                        ("status", &["status"][..]),
                        ("enabled", &["enable", "disable"][..]),
                        ("is_public", &["public", "private"][..]),
                        ("pending_deleted", &["cancel-delete"][..]),
                        ("tenant_id", &["change-owner"][..]),
                    ] {
                        if info.columns.contains(col) {
                            v.extend(acts.iter().map(|s| s.to_string()));
                        }
                    }
                    v.extend(actions_of(&plural).iter().map(|s| s.to_string()));
                    v.dedup();
                    v
                };
                names
                    .into_iter()
                    .map(|a| {
                        (
                            a.clone(),
                            format!("{} {a}", if method == "GET" { "spec" } else { "action" }),
                        )
                    })
                    .collect()
            }
            ("keystone", "target") => {
                let id = if before == "projects" {
                    in_a = true;
                    w.t.proj_a.clone()
                } else {
                    "default".to_string()
                };
                vec![(id, String::new())]
            }
            ("keystone", "actor") => {
                let id = if before == "groups" {
                    w.group_d.clone()
                } else {
                    w.t.victim_id.clone()
                };
                vec![(id, String::new())]
            }
            ("keystone", "role") => vec![(w.t.roles["member"].clone(), String::new())],
            ("keystone", "user") => vec![(w.t.victim_id.clone(), String::new())],
            ("keystone", "group") => vec![(w.group_d.clone(), String::new())],
            ("region", "task_id") => {
                in_a = true;
                vec![(w.task_a.clone(), String::new())]
            }
            ("region", "id") if before == "projects" => {
                in_a = true;
                vec![(w.t.proj_a.clone(), String::new())]
            }
            ("region", "id") if before == "domains" => vec![("default".into(), String::new())],
            ("scheduler", "id" | "host_id") => vec![(w.t.host_id.clone(), String::new())],
            // The gateway forwards with the caller's token: A's server
            // through the resource proxy and the backend proxy.
            ("apigateway", "id") => {
                in_a = true;
                vec![(w.server_a.clone(), String::new())]
            }
            ("apigateway", "*rest") => {
                in_a = true;
                vec![
                    (
                        format!("v2/servers/{}", w.server_a),
                        "resource proxy".into(),
                    ),
                    (
                        format!("s/compute_v2/servers/{}", w.server_a),
                        "backend proxy".into(),
                    ),
                ]
            }
            ("scheduler", "session") => vec![("authz-no-such-session".into(), String::new())],
            (_, _) => {
                let plural = if route.template.ends_with("/{id}")
                    && rule != Rule::Callback
                    && method == "POST"
                    && segs.len() == 2 + usize::from(service != "region")
                    && segs.last() == Some(seg)
                {
                    // `POST /{plural}/{action}`: a class action; none exists.
                    return vec![req(
                        route,
                        rule,
                        format!(
                            "{}{}",
                            w.bases[service],
                            route.template.replace("{id}", "authz-class-action")
                        ),
                        Some(json!({})),
                        true,
                        false,
                        "class action",
                    )];
                } else {
                    before.clone()
                };
                let tg = w.target(service, &plural);
                in_a |= tg.in_a;
                vec![(tg.id, String::new())]
            }
        };
        let mut next = Vec::new();
        for (path, note) in &variants {
            for (v, n) in &values {
                let mut p = path.clone();
                p.push(v.clone());
                let note = [note.as_str(), n.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                next.push((p, note));
            }
        }
        variants = next;
    }
    let mut out = Vec::new();
    for (path, note) in variants {
        let url = format!("{}/{}", w.bases[service], path.join("/"));
        let mut r = req(route, rule, url, None, object, in_a, &note);
        fill_body(w, docs, &mut r);
        out.push(r);
    }
    // Lists are also asked at system scope: refused, or nothing leaks.
    if method == "GET" && !object && !matches!(rule, Rule::Public | Rule::Probe) {
        let mut extra = Vec::new();
        for r in &out {
            let mut x = r.clone();
            x.url = format!(
                "{}{}scope=system",
                x.url,
                if x.url.contains('?') { "&" } else { "?" }
            );
            x.note = "scope=system".into();
            x.system_scope = true;
            extra.push(x);
        }
        out.extend(extra);
    }
    out
}

fn req(
    route: &Route,
    rule: Rule,
    url: String,
    body: Option<Value>,
    object: bool,
    in_a: bool,
    note: &str,
) -> Req {
    Req {
        route: route.clone(),
        rule,
        url,
        body,
        headers: Vec::new(),
        object,
        in_a,
        create_keyword: None,
        note: note.to_string(),
        system_scope: false,
    }
}

/// Bodies, query strings and headers that make each request meaningful.
fn fill_body(w: &World, docs: &Docs, r: &mut Req) {
    let t = &w.t;
    let method = r.route.method.as_str();
    let template = r.route.template.as_str();
    let service = r.route.service;
    let segs: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let last = segs.last().copied().unwrap_or_default();
    match (service, method, template) {
        ("keystone", "POST", "/v3/auth/tokens") => {
            r.body = Some(password_auth(
                "member-a",
                &t.member_a.password,
                Some("proj-a"),
                None,
            ));
            return;
        }
        ("keystone", "GET" | "DELETE", "/v3/auth/tokens") => {
            r.headers.push(("X-Subject-Token", w.owner_a_token.clone()));
            return;
        }
        ("keystone", "POST", "/v3/policies") => {
            r.body = Some(json!({"policy": {"name": "authz-evil", "scope": "system",
                                            "blob": {"policy": {"*": "allow"}}}}));
            return;
        }
        ("keystone", "POST", "/v3/role_policies") => {
            r.body = Some(json!({"role_policy": {"role_id": t.roles["project_owner"],
                                                 "policy_id": t.policies["sysadmin"]}}));
            return;
        }
        ("keystone", "POST", "/v3/users") => {
            r.body = Some(
                json!({"user": {"name": "authz-evil", "password": "authz-Evil-1",
                                          "domain_id": "default"}}),
            );
            r.create_keyword = Some("user".into());
            return;
        }
        ("keystone", "POST", "/v3/projects" | "/v3/groups" | "/v3/roles") => {
            let kw = docs.models[&(service, last.to_string())].keyword.clone();
            r.body = Some(json!({ kw.clone(): {"name": "authz-evil", "domain_id": "default"}}));
            r.create_keyword = Some(kw);
            return;
        }
        ("keystone", "POST", "/v3/endpoints") => {
            r.body = Some(
                json!({"endpoint": {"service_id": w.target("keystone", "services").id,
                                              "region_id": "region0", "interface": "public",
                                              "url": "http://evil.example/"}}),
            );
            return;
        }
        ("region", "POST", "/servers") => {
            let mut b = vm_body("authz-evil");
            b["server"]["project_id"] = json!(t.proj_a);
            r.body = Some(b);
            r.create_keyword = Some("server".into());
            return;
        }
        ("region", "POST", "/hosts") => {
            r.body = Some(json!({"host": {"name": "authz-evil", "zone": "zone0",
                                          "manager_uri": "http://evil.example:8885"}}));
            return;
        }
        ("region", "POST", "/quotas" | "/quotas/projects/{id}" | "/quotas/domains/{id}") => {
            r.body = Some(json!({"quota": {"cpu": 100000, "memory": 100000000}}));
            return;
        }
        ("region", _, "/tasks/{id}" | "/tasks/{task_id}") if method == "POST" => {
            r.body = Some(json!({"__status__": "error", "__reason__": "forged",
                                 "disk_path": "/etc/shadow"}));
            return;
        }
        ("scheduler", "POST", _) => {
            r.body = Some(json!({"scheduler": {"vcpu_count": 1, "vmem_size": 256,
                                               "disks": [{"size": 512}], "count": 1}}));
            return;
        }
        ("agent", "POST", _) => {
            r.body = Some(json!({"desc": {"uuid": w.server_a, "disks": []}}));
            // Where a wrongly accepted request would report to.
            r.headers.push((
                "X-Task-Notify-Url",
                "http://127.0.0.1:9/authz-evil-notify".to_string(),
            ));
            return;
        }
        _ => {}
    }
    // Generic shapes.
    let plural_coll = docs.models.get(&(service, last.to_string()));
    // A create: `/{plural}` or `/{ctx}/{ctx_id}/{plural}`.
    let is_create = method == "POST"
        && plural_coll.is_some()
        && (!r.object || segs.len() >= 3 && segs[segs.len() - 2].starts_with('{'));
    if is_create && let Some(info) = plural_coll {
        let mut body = json!({});
        if info
            .create_fields
            .as_ref()
            .is_none_or(|f| f.contains("name"))
        {
            body["name"] = json!(format!("authz-evil-{last}"));
        }
        if matches!(r.rule, Rule::Project { .. } | Rule::OwnCreate) {
            body["project_id"] = json!(t.proj_a);
        }
        if matches!(r.rule, Rule::Domain { .. }) {
            body["domain_id"] = json!("default");
        }
        r.body = Some(json!({ info.keyword.clone(): body }));
        r.create_keyword = Some(info.keyword.clone());
        return;
    }
    if !r.object {
        if method == "POST"
            && let Some(info) = plural_coll
        {
            let mut body = json!({"name": format!("authz-evil-{last}")});
            if matches!(r.rule, Rule::Project { .. }) {
                body["project_id"] = json!(t.proj_a);
            }
            if matches!(r.rule, Rule::Domain { .. }) {
                body["domain_id"] = json!("default");
            }
            r.body = Some(json!({ info.keyword.clone(): body }));
            r.create_keyword = Some(info.keyword.clone());
        } else if method == "GET" {
            // Lists: all rows, ids when the route wants a field.
            if last == "distinct-field" {
                r.url.push_str("?field=id&limit=2048");
            } else {
                r.url.push_str("?limit=2048");
            }
        } else if method == "POST" {
            r.body = Some(json!({}));
        }
        return;
    }
    match method {
        "PUT" | "PATCH" => {
            // The keyword of the object's model (joints: `{}`).
            let plural = segs
                .iter()
                .rev()
                .skip(1)
                .find(|s| !s.starts_with('{'))
                .copied()
                .unwrap_or_default();
            let info = docs.models.get(&(service, plural.to_string()));
            // A harmless change the resource accepts.
            let change = match info {
                Some(m) if m.update_fields.contains("description") => {
                    json!({"description": "authz-evil"})
                }
                Some(m) if m.update_fields.contains("valid_until") => {
                    json!({"valid_until": "2099-01-01T00:00:00.000000Z"})
                }
                Some(m) if m.update_fields.contains("name") => json!({"name": "authz-evil"}),
                _ => json!({"description": "authz-evil"}),
            };
            r.body = Some(match info {
                Some(m) if segs.len() <= 3 => json!({ m.keyword.clone(): change }),
                _ => change,
            });
        }
        "POST" if r.body.is_none() => r.body = Some(json!({})),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// running and judging

#[derive(Default)]
struct Tally {
    requests: usize,
    skipped: usize,
    failures: Vec<String>,
    routes: BTreeSet<Route>,
}

fn status_is_2xx(s: u16) -> bool {
    (200..300).contains(&s)
}

async fn run_one(w: &World, r: &Req, who: Ident, tally: &mut Tally) {
    let mut e = expect(r.rule, who, &r.route.method, r.object, r.in_a);
    if r.system_scope && e == Expect::Ok {
        e = Expect::May;
    }
    tally.routes.insert(r.route.clone());
    if e == Expect::Skip {
        tally.skipped += 1;
        return;
    }
    tally.requests += 1;
    let resp = raw(
        w.token(who),
        &r.route.method,
        &r.url,
        r.body.as_ref(),
        &r.headers,
    )
    .await;
    let head = r.route.method == "HEAD";
    let shape = |resp: &Resp, codes: &[u16]| -> Option<String> {
        if head {
            (!codes.contains(&resp.status))
                .then(|| format!("expected one of {codes:?}, got {}", resp.status))
        } else {
            refusal_problem(resp, codes)
        }
    };
    let problem: Option<String> = match e {
        // (300: keystone's version list, as OpenStack answers it.)
        Expect::Ok => (!status_is_2xx(resp.status) && resp.status != 300)
            .then(|| format!("expected 2xx, got {resp:?}")),
        Expect::Unauth => shape(&resp, &[401]),
        // 405/406: an operation that exists for nobody (e.g. creating a
        // cloud provider directly) is no authorization question.
        Expect::Deny => shape(&resp, &[401, 403, 404, 405, 406]),
        Expect::May => (resp.status >= 500 || resp.status == 0)
            .then(|| format!("expected an answer below 500, got {resp:?}")),
        Expect::ForeignCreate => {
            if status_is_2xx(resp.status) {
                let kw = r.create_keyword.clone().unwrap_or_default();
                let obj = &resp.body[kw.as_str()];
                let landed_in_a =
                    obj["tenant_id"] == json!(w.t.proj_a) || obj["project_id"] == json!(w.t.proj_a);
                let landed_in_d = who == Ident::D2Admin && obj["domain_id"] == json!("default");
                (landed_in_a || landed_in_d)
                    .then(|| format!("created in A / domain default: {}", resp.body))
            } else if resp.status >= 500 || resp.status == 0 {
                Some(format!("server error: {resp:?}"))
            } else if matches!(resp.status, 401 | 403 | 404 | 400 | 409) {
                None
            } else {
                Some(format!("unexpected {resp:?}"))
            }
        }
        Expect::Skip => None,
    };
    let problem = problem.or_else(|| {
        // Public answers are the same for everyone (a token issued with
        // member-a's password describes member-a).
        if who == Ident::Anonymous || !status_is_2xx(resp.status) || r.rule == Rule::Public {
            return None;
        }
        // Leak check: only keystone answers for member-a (A's region rows
        // carry owner-a's id legitimately).
        if who == Ident::MemberA && r.route.service != "keystone" {
            return None;
        }
        let text = resp.body.to_string();
        let leaked: Vec<&str> = w.forbidden[&who]
            .iter()
            .filter(|(_, id)| !id.is_empty() && text.contains(id.as_str()))
            .map(|(label, _)| label.as_str())
            .collect();
        (!leaked.is_empty()).then(|| {
            format!(
                "{} answer shows {}: {}",
                resp.status,
                leaked.join(", "),
                text.chars().take(300).collect::<String>()
            )
        })
    });
    if let Some(p) = problem {
        tally.failures.push(format!(
            "{} {} {}{} as {}: expected {:?} ({:?}); {p}",
            r.route.service,
            r.route.method,
            r.route.template,
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.note)
            },
            who.name(),
            e,
            r.rule,
        ));
    }
}

/// Re-read a target as sysadmin (glance's `GET` is the download: its
/// metadata is the answer to `HEAD`, copied into the body here).
async fn read_target(w: &World, service: &str, url: &str) -> Resp {
    if service == "glance" {
        let mut r = raw(Some(&w.t.admin.token), "HEAD", url, None, &[]).await;
        let meta: serde_json::Map<String, Value> = r
            .headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-image-meta"))
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        r.body = Value::Object(meta);
        return r;
    }
    w.t.admin.get(&format!("{url}?scope=system")).await
}

/// Order of phases: reads, then changes, then deletes, then the agent — so
/// a wrongly allowed delete hides as little as possible.
fn phase(r: &Req) -> u8 {
    match (r.route.service, r.route.method.as_str()) {
        // Logging out revokes the caller's token: after everything else.
        ("apigateway", _) if r.route.template.ends_with("/logout") => 4,
        ("agent", _) => 3,
        (_, "GET" | "HEAD") => 0,
        (_, "DELETE") => 2,
        _ => 1,
    }
}

#[tokio::test]
async fn every_route_refuses_the_wrong_identities() {
    let w = setup().await;

    // The documents.
    let mut docs = Docs {
        routes: BTreeSet::new(),
        models: BTreeMap::new(),
    };
    for service in ["keystone", "region", "scheduler", "glance"] {
        let url = format!("{}/openapi.json", w.bases[service]);
        let r = Api::with_token("").get(&url).await;
        assert_eq!(r.status, 200, "{url}: {r:?}");
        read_doc(service, &r.body, &mut docs);
    }
    docs.routes
        .extend(router_routes("agent", "../host/src/agent.rs"));
    docs.routes
        .extend(router_routes("apigateway", "../apigateway/src/lib.rs"));

    // Coverage: every documented route has an entry, every entry a route.
    let table = table();
    let mut rules: BTreeMap<Route, Rule> = BTreeMap::new();
    let mut coverage = Vec::new();
    for e in &table.0 {
        for m in e.methods {
            let route = Route {
                service: e.service,
                method: m.to_string(),
                template: e.template.clone(),
            };
            if rules.insert(route.clone(), e.rule).is_some() {
                coverage.push(format!("table: duplicate entry {route:?}"));
            }
        }
    }
    for r in &docs.routes {
        if !rules.contains_key(r) {
            coverage.push(format!(
                "route without an entry in the authz table: {} {} {}",
                r.service, r.method, r.template
            ));
        }
    }
    for r in rules.keys() {
        if !docs.routes.contains(r) {
            coverage.push(format!(
                "authz table entry for a route that does not exist: {} {} {}",
                r.service, r.method, r.template
            ));
        }
    }
    assert!(coverage.is_empty(), "{}", coverage.join("\n"));
    // Every model with actions named in the table exists.
    for plural in [
        "servers",
        "disks",
        "secgroups",
        "eips",
        "hosts",
        "storages",
        "networks",
        "tasks",
        "cloudaccounts",
        "images",
        "users",
    ] {
        assert!(
            docs.models.keys().any(|(_, p)| p == plural),
            "actions listed for {plural}, which no service has"
        );
    }

    // The targets exist before: a 404 is then the boundary, not a typo.
    for ((service, plural), tg) in &w.targets {
        let prefix = match *service {
            "keystone" => "/v3",
            "glance" => "/v1",
            _ => "",
        };
        let url = format!("{}{prefix}/{plural}/{}", w.bases[service], tg.id);
        let r = read_target(&w, service, &url).await;
        assert_eq!(r.status, 200, "target {url} as sysadmin: {r:?}");
    }

    // All requests.
    let mut reqs: Vec<Req> = Vec::new();
    for route in &docs.routes {
        reqs.extend(concretize(&w, &docs, route, rules[route]));
    }
    reqs.sort_by_key(phase);
    let mut tally = Tally::default();
    for r in &reqs {
        for who in IDENTS {
            run_one(&w, r, who, &mut tally).await;
        }
    }

    // Nothing of A's was deleted or changed by the attempts.
    for ((service, plural), tg) in &w.targets {
        let prefix = match *service {
            "keystone" => "/v3",
            "glance" => "/v1",
            _ => "",
        };
        let url = format!("{}{prefix}/{plural}/{}", w.bases[service], tg.id);
        let r = read_target(&w, service, &url).await;
        if r.status != 200 {
            tally
                .failures
                .push(format!("after the run, {url} is gone: {r:?}"));
        } else if r.body.to_string().contains("authz-evil") {
            tally
                .failures
                .push(format!("after the run, {url} was changed: {}", r.body));
        }
    }
    let host =
        w.t.admin
            .get(&format!("{}/hosts/{}", w.t.region, w.t.host_id))
            .await;
    if host.body["host"]["enabled"] != json!(true) {
        tally
            .failures
            .push(format!("after the run, the host is disabled: {host:?}"));
    }

    let line = format!(
        "authz: checked {} routes x {} identities = {} requests ({} legitimate writes not sent); {} failures",
        tally.routes.len(),
        IDENTS.len(),
        tally.requests,
        tally.skipped,
        tally.failures.len()
    );
    println!("{line}");
    eprintln!("{line}");
    for f in &tally.failures {
        eprintln!("FAIL {f}");
    }
    assert!(
        tally.failures.is_empty(),
        "{line}\n{}",
        tally.failures.join("\n")
    );
}
