//! Cloudpods' standard policies and the grants every authenticated user has.

use crate::{Effect, PolicyBlob, PolicyError, Scope};
use serde::Serialize;
use serde_json::{Value, json};

/// A policy keystone creates at bootstrap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredefinedPolicy {
    pub name: String,
    pub scope: Scope,
    pub description: String,
    /// Canonical JSON form (with the outer `"policy"` key), as stored by keystone.
    pub blob: Value,
}

impl PredefinedPolicy {
    fn new(name: &str, scope: Scope, description: &str, blob: Value) -> Self {
        PredefinedPolicy {
            name: name.to_owned(),
            scope,
            description: description.to_owned(),
            blob,
        }
    }

    /// The validated blob (always `Ok` for the builtins; checked by tests).
    pub fn parse(&self) -> Result<PolicyBlob, PolicyError> {
        PolicyBlob::parse(&self.blob)
    }
}

/// Cloudpods' standard policies: `sysadmin`, `domainadmin`, `projectowner`, `member`.
pub fn predefined_policies() -> Vec<PredefinedPolicy> {
    let all = json!({"policy": {"*": "allow"}});
    vec![
        PredefinedPolicy::new(
            "sysadmin",
            Scope::System,
            "System administrator: everything allowed in all domains and projects",
            all.clone(),
        ),
        PredefinedPolicy::new(
            "domainadmin",
            Scope::Domain,
            "Domain administrator: everything allowed within the domain",
            all.clone(),
        ),
        PredefinedPolicy::new(
            "projectowner",
            Scope::Project,
            "Project owner: everything allowed within the project",
            all,
        ),
        PredefinedPolicy::new(
            "member",
            Scope::Project,
            "Project member: read everything in the project, manage servers, disks, \
             snapshots, keypairs, security groups, EIPs and images; identity read-only \
             (own user and projects)",
            member_blob(),
        ),
    ]
}

/// The `member` policy. Denies are kept to the minimum needed (identity), because in a
/// [`crate::PolicySet`] a deny outranks any less specific allow from other policies.
fn member_blob() -> Value {
    let read = json!({"list": "allow", "get": "allow"});
    json!({"policy": {
        // Reads everywhere; at project scope callers restrict results to the project.
        "*": {"*": read},
        "compute": {
            "servers": "allow",
            "disks": "allow",
            "snapshots": "allow",
            "keypairs": "allow",
            "secgroups": "allow",
            "secgrouprules": "allow",
            "eips": "allow",
        },
        "image": {"images": "allow"},
        // Identity: only reading users and projects (ownership filtering is the caller's job);
        // everything else, in particular create/update/delete, is denied.
        "identity": {
            "*": "deny",
            "users": read,
            "projects": read,
        },
    }})
}

/// What every authenticated user may do regardless of assigned policies: read usages
/// (`*.usages.get`) and get a user record (`identity.users.get`). The policy cannot
/// express "self": keystone restricts the user get to the caller's own record at project
/// scope. Agent callbacks are not a grant: they carry the task's signed key instead.
/// Callers OR this into every [`crate::PolicySet`].
pub fn default_grants() -> PolicyBlob {
    let mut blob = PolicyBlob::default();
    let rules: [&[&str]; 2] = [&["*", "usages", "get"], &["identity", "users", "get"]];
    for rule in rules {
        // Static, valid paths: set_rule cannot fail here (covered by tests).
        let _ = blob.set_rule(rule, Effect::Allow);
    }
    blob
}
