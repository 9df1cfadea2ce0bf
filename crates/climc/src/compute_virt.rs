//! Region (compute_v2) commands: disks, snapshots, keypairs, secgroups, EIPs, quotas, tasks.

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::CreateResult;
use cloudpods_sdk::reqwest::Method;
use cloudpods_sdk::reqwest::header::HeaderMap;
use futures::FutureExt;
use serde_json::{Map, Value, json};

use crate::cli::Ctx;
use crate::commands::{CustomCmd, print_object};
use crate::spec::{Action, Ops, Opt, RefTo, Resource};

/// Catalog service type of the region.
pub const COMPUTE: &str = "compute_v2";

pub const DISK: RefTo = RefTo {
    service: COMPUTE,
    keyword: "disk",
    plural: "disks",
};
pub const SECGROUP: RefTo = RefTo {
    service: COMPUTE,
    keyword: "secgroup",
    plural: "secgroups",
};

const DESC: Opt = Opt::string("desc", "description", "Description");
const NEW_NAME: Opt = Opt::string("name", "name", "New name");
const PURGE: Opt = Opt::flag(
    "purge",
    "purge",
    true,
    "Forget it without asking the host (admin)",
);
const OVERRIDE: Opt = Opt::flag(
    "override-pending-delete",
    "override_pending_delete",
    true,
    "Delete at once instead of moving to the recycle bin",
);
const RULE_PROTOCOL: Opt = Opt::choice(
    "protocol",
    "protocol",
    &["any", "tcp", "udp", "icmp"],
    "Protocol (default any)",
);
const RULE_PORTS: Opt = Opt::string("ports", "ports", "Ports: 22, 1-1024 or 80,443");
const RULE_CIDR: Opt = Opt::string(
    "cidr",
    "cidr",
    "Source/destination IPv4 CIDR (default 0.0.0.0/0)",
);
const RULE_ACTION: Opt = Opt::choice("action", "action", &["allow", "deny"], "Allow or deny");
const RULE_PRIORITY: Opt = Opt::int("priority", "priority", "Priority 1-100");

/// The region's virtual resources and tasks.
pub static RESOURCES: &[Resource] = &[
    Resource::new("disk", "disks", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Disk_size",
            "Status",
            "Disk_type",
            "Storage",
            "Storage_type",
            "Guest",
            "Tenant",
        ])
        .list_details(true)
        .list(&[
            Opt::string("storage", "storage", "Disks on this storage"),
            Opt::string("host", "host", "Disks on storages of this host"),
            Opt::string("server", "server", "Disks attached to this server"),
            Opt::flag("unused", "unused", true, "Only disks attached to no server"),
            Opt::choice(
                "disk-type",
                "disk_type",
                &["sys", "data", "swap"],
                "Disk type",
            ),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the disk"),
            Opt::pos("SIZE", "size", "Size: MB, or with a unit (10g, 512m)"),
            Opt::string("storage", "storage", "Storage (id or name)"),
            Opt::string("backend", "backend", "Storage type (local, rbd, ...)"),
            Opt::choice(
                "medium",
                "medium",
                &["ssd", "rotate", "hybrid"],
                "Medium type",
            ),
            Opt::string("zone", "prefer_zone", "Zone (id or name)"),
            Opt::string("host", "prefer_host", "Host (id or name; admin)"),
            Opt::string("snapshot", "snapshot", "Create from this snapshot"),
            Opt::string("image", "image_id", "Create from this image"),
            Opt::choice("format", "format", &["qcow2", "raw"], "Disk format"),
            Opt::string("fs", "fs_format", "Filesystem to create (ext4, xfs, ...)"),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::flag("auto-reset", "auto_reset", true, "Reset at each start"),
        ])
        .delete(&[PURGE, OVERRIDE])
        .actions(&[
            Action::new(
                "resize",
                "resize",
                "Grow a disk",
                &[Opt::pos(
                    "SIZE",
                    "size",
                    "New size: MB, or with a unit (20g)",
                )],
            ),
            Action::new(
                "reset",
                "reset",
                "Reset a disk to one of its snapshots",
                &[Opt::pos("SNAPSHOT", "snapshot_id", "Snapshot (id or name)")],
            ),
        ]),
    Resource::new("snapshot", "snapshots", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Size",
            "Status",
            "Disk_name",
            "Disk_type",
            "Storage",
            "Created_by",
            "Tenant",
        ])
        .list_details(true)
        .list(&[
            Opt::string("disk", "disk", "Snapshots of this disk"),
            Opt::string("server", "server", "Snapshots of the disks of this server"),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the snapshot"),
            Opt::string("disk", "disk", "Disk (id or name)").required(),
            DESC,
        ])
        .update(&[NEW_NAME, DESC])
        .delete(&[PURGE]),
    Resource::new("keypair", "keypairs", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Scheme",
            "Fingerprint",
            "Private_key_len",
            "Linked_guest_count",
            "Created_at",
        ])
        .list_details(true)
        .update(&[NEW_NAME, DESC]),
    Resource::new("secgroup", "secgroups", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Status",
            "Guest_cnt",
            "Tenant",
            "Is_public",
            "Description",
        ])
        .list_details(true)
        .create(&[
            Opt::pos("NAME", "name", "Name of the security group"),
            DESC,
            Opt::json(
                "rules",
                "rules",
                "Rules as JSON: [{\"direction\":\"in\",...}]",
            ),
        ])
        .update(&[NEW_NAME, DESC])
        .actions(&[
            Action::new(
                "public",
                "public",
                "Share the security group",
                &[Opt::choice(
                    "scope",
                    "scope",
                    &["domain", "system"],
                    "Share with the domain or everyone",
                )],
            ),
            Action::new("private", "private", "Stop sharing the security group", &[]),
        ]),
    Resource::new("secgrouprule", "secgrouprules", COMPUTE)
        .prefix_as("secgroup-rule")
        .columns(&[
            "ID",
            "Secgroup",
            "Direction",
            "Action",
            "Protocol",
            "Ports",
            "Cidr",
            "Priority",
            "Description",
        ])
        .list_details(true)
        .list(&[Opt::string(
            "secgroup",
            "secgroup",
            "Rules of this security group",
        )])
        .create(&[
            Opt::pos("SECGROUP", "secgroup_id", "Security group (id or name)"),
            Opt::choice(
                "direction",
                "direction",
                &["in", "out"],
                "Traffic direction",
            )
            .required(),
            RULE_PROTOCOL,
            RULE_PORTS,
            RULE_CIDR,
            RULE_ACTION,
            RULE_PRIORITY,
            DESC,
        ])
        .update(&[
            RULE_PROTOCOL,
            RULE_PORTS,
            RULE_CIDR,
            RULE_ACTION,
            RULE_PRIORITY,
            DESC,
        ]),
    Resource::new("eip", "eips", COMPUTE)
        .columns(&[
            "ID",
            "Name",
            "Ip_addr",
            "Status",
            "Bandwidth",
            "Network",
            "Associate_type",
            "Associate_name",
            "Tenant",
        ])
        .list_details(true)
        .list(&[
            Opt::string("network", "network", "EIPs of this network"),
            Opt::flag(
                "usable",
                "usable",
                true,
                "Only EIPs associated with nothing",
            ),
        ])
        .create(&[
            Opt::pos("NAME", "name", "Name of the EIP"),
            Opt::string("network", "network", "EIP network (id or name)"),
            Opt::string("ip", "ip", "Address to take"),
            Opt::int("bandwidth", "bandwidth", "Bandwidth (Mbps)"),
            Opt::choice(
                "charge-type",
                "charge_type",
                &["traffic", "bandwidth"],
                "Charge type",
            ),
            DESC,
        ])
        .update(&[
            NEW_NAME,
            DESC,
            Opt::int("bandwidth", "bandwidth", "Bandwidth (Mbps)"),
        ])
        .actions(&[
            Action::new(
                "associate",
                "associate",
                "Associate an EIP with a server",
                &[
                    Opt::pos("INSTANCE", "instance_id", "Server (id or name)"),
                    Opt::choice(
                        "instance-type",
                        "instance_type",
                        &["server"],
                        "Instance type (server)",
                    ),
                ],
            ),
            Action::new("dissociate", "dissociate", "Dissociate an EIP", &[]),
        ]),
    Resource::new("task", "tasks", COMPUTE)
        .ops(Ops::LIST.with(Ops::SHOW))
        .columns(&[
            "ID",
            "Obj_type",
            "Object",
            "Task_name",
            "Stage",
            "Status",
            "Reason",
            "Created_at",
        ])
        .list(&[
            Opt::string("obj-id", "obj_id", "Tasks of this object (id)"),
            Opt::flag("is-open", "is_open", true, "Only unfinished tasks"),
            Opt::string("status", "status", "Tasks in this status"),
            Opt::string("task-name", "task_name", "Tasks of this type"),
        ])
        .actions(&[Action::new("cancel", "cancel", "Cancel a task", &[])]),
];

/// Hand-written region commands.
pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "keypair-create",
        about: "Create a keypair (a new ed25519 key unless --public-key is given); the private key is printed once",
        args: || {
            vec![
                Arg::new("NAME")
                    .value_name("NAME")
                    .help("Name of the keypair")
                    .required(true),
                Arg::new("public-key")
                    .long("public-key")
                    .value_name("KEY")
                    .help("Import this OpenSSH public key"),
                Arg::new("public-key-file")
                    .long("public-key-file")
                    .value_name("FILE")
                    .help("Import the OpenSSH public key in this file")
                    .conflicts_with("public-key"),
                Arg::new("scheme")
                    .long("scheme")
                    .value_name("SCHEME")
                    .help("Key type to generate (ED25519)"),
                Arg::new("desc")
                    .long("desc")
                    .value_name("TEXT")
                    .help("Description"),
            ]
        },
        list_flags: false,
        run: |ctx, m| keypair_create(ctx, m).boxed(),
    },
    CustomCmd {
        name: "keypair-privatekey",
        about: "Show the private key of a generated keypair (only once)",
        args: || {
            vec![
                Arg::new("ID")
                    .value_name("ID")
                    .help("ID or name")
                    .required(true),
                Arg::new("output")
                    .long("output")
                    .value_name("FILE")
                    .help("Write the key to this file (mode 0600) instead of printing it"),
            ]
        },
        list_flags: false,
        run: |ctx, m| keypair_privatekey(ctx, m).boxed(),
    },
    CustomCmd {
        name: "quota-show",
        about: "Show the quota and usage of a project (default: yours) or a domain",
        args: || {
            vec![
                Arg::new("project")
                    .long("project")
                    .visible_alias("tenant")
                    .value_name("PROJECT")
                    .help("Project (id or name)"),
                Arg::new("domain")
                    .long("domain")
                    .value_name("DOMAIN")
                    .help("Domain (id or name)")
                    .conflicts_with("project"),
            ]
        },
        list_flags: false,
        run: |ctx, m| quota_show(ctx, m).boxed(),
    },
    CustomCmd {
        name: "quota-set",
        about: "Set quotas of a project (or a domain)",
        args: quota_set_args,
        list_flags: false,
        run: |ctx, m| quota_set(ctx, m).boxed(),
    },
    CustomCmd {
        name: "usage-show",
        about: "Show resource usage",
        args: || {
            vec![
                Arg::new("scope")
                    .long("scope")
                    .value_name("SCOPE")
                    .value_parser(["project", "domain", "system"])
                    .help("Usage of your project, domain or the whole region"),
            ]
        },
        list_flags: false,
        run: |ctx, m| usage_show(ctx, m).boxed(),
    },
    CustomCmd {
        name: "capability-show",
        about: "Show what the region can create (hypervisors, storage types, ...)",
        args: Vec::new,
        list_flags: false,
        run: |ctx, _| capability_show(ctx).boxed(),
    },
];

fn arg<'a>(m: &'a ArgMatches, name: &str) -> Option<&'a String> {
    m.try_get_one::<String>(name).ok().flatten()
}

async fn compute(
    ctx: &Ctx,
    method: Method,
    path: &str,
    query: Option<&Map<String, Value>>,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let resp = ctx
        .client()
        .await?
        .raw(method, COMPUTE, path, query, body, HeaderMap::new())
        .await?;
    Ok(resp.body)
}

fn seg(s: &str) -> String {
    cloudpods_sdk::endpoint::encode_segment(s)
}

async fn keypair_create(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut body = Map::new();
    if let Some(n) = arg(m, "NAME") {
        body.insert("name".into(), json!(n));
    }
    let mut imported = false;
    if let Some(k) = arg(m, "public-key") {
        body.insert("public_key".into(), json!(k));
        imported = true;
    }
    if let Some(path) = arg(m, "public-key-file") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--public-key-file: cannot read {path}: {e}"))?;
        body.insert("public_key".into(), json!(text.trim()));
        imported = true;
    }
    if let Some(s) = arg(m, "scheme") {
        body.insert("scheme".into(), json!(s));
    }
    if let Some(d) = arg(m, "desc") {
        body.insert("description".into(), json!(d));
    }
    let mgr = ctx.client().await?.resource(COMPUTE, "keypair", "keypairs");
    let obj = match mgr.create(body, None).await? {
        CreateResult::One(o) => o,
        CreateResult::Batch(items) => items
            .into_iter()
            .next()
            .map(|i| i.body)
            .unwrap_or(Value::Null),
    };
    print_object(ctx, &obj);
    if !imported {
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
        let key = mgr.get_specific(id, "privatekey", &Map::new()).await?;
        let pem = key
            .get("private_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ctx.print("Private key (shown only this once; keep it safe):\n");
        ctx.print(pem);
    }
    Ok(())
}

async fn keypair_privatekey(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let id = arg(m, "ID").cloned().unwrap_or_default();
    let mgr = ctx.client().await?.resource(COMPUTE, "keypair", "keypairs");
    let key = mgr.get_specific(&id, "privatekey", &Map::new()).await?;
    let pem = key
        .get("private_key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match arg(m, "output") {
        Some(path) => {
            write_private(path, pem)?;
            ctx.print(&format!("Private key written to {path}\n"));
        }
        None => ctx.print(pem),
    }
    Ok(())
}

fn write_private(path: &str, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {path}: {e}"))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {path}: {e}"))?;
    Ok(())
}

/// Limits settable by `quota-set`: (flag, wire key).
const QUOTA_FLAGS: &[(&str, &str)] = &[
    ("count", "count"),
    ("cpu", "cpu"),
    ("memory", "memory"),
    ("storage", "storage"),
    ("port", "port"),
    ("eip", "eip"),
    ("snapshot", "snapshot"),
    ("keypair", "keypair"),
    ("secgroup", "secgroup"),
];

fn quota_set_args() -> Vec<Arg> {
    let mut v = vec![
        Arg::new("project")
            .long("project")
            .visible_alias("tenant")
            .value_name("PROJECT")
            .help("Project (id or name; default: yours)"),
        Arg::new("domain")
            .long("domain")
            .value_name("DOMAIN")
            .help("Set the quota of this domain instead")
            .conflicts_with("project"),
        Arg::new("action")
            .long("action")
            .value_name("ACTION")
            .value_parser(["update", "replace", "reset", "add", "sub", "delete"])
            .help("How to apply the values (default update)"),
    ];
    for (flag, key) in QUOTA_FLAGS {
        let help: &'static str = match *key {
            "count" => "Number of servers",
            "memory" => "Memory (MB)",
            "storage" => "Storage (MB)",
            "port" => "Network ports (NICs)",
            "cpu" => "vCPUs",
            "eip" => "EIPs",
            "snapshot" => "Snapshots",
            "keypair" => "Keypairs per user",
            _ => "Security groups",
        };
        v.push(
            Arg::new(*flag)
                .long(*flag)
                .value_name("N")
                .help(help)
                .value_parser(clap::value_parser!(i64))
                .action(ArgAction::Set),
        );
    }
    v
}

fn quota_path(m: &ArgMatches) -> String {
    if let Some(d) = arg(m, "domain") {
        format!("/quotas/domains/{}", seg(d))
    } else if let Some(p) = arg(m, "project") {
        format!("/quotas/projects/{}", seg(p))
    } else {
        "/quotas".into()
    }
}

fn print_quotas(ctx: &Ctx, body: &Value) {
    match body.get("quotas") {
        Some(Value::Array(items)) => {
            for q in items {
                print_object(ctx, q);
            }
        }
        Some(other) => print_object(ctx, other),
        None => print_object(ctx, body),
    }
}

async fn quota_show(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let body = compute(ctx, Method::GET, &quota_path(m), None, None).await?;
    print_quotas(ctx, &body);
    Ok(())
}

async fn quota_set(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut q = Map::new();
    for (flag, key) in QUOTA_FLAGS {
        if let Some(n) = m.try_get_one::<i64>(flag).ok().flatten() {
            q.insert((*key).into(), json!(n));
        }
    }
    if let Some(a) = arg(m, "action") {
        q.insert("action".into(), json!(a));
    }
    if q.is_empty() {
        anyhow::bail!("nothing to set: give at least one limit (see --help)");
    }
    let body = compute(
        ctx,
        Method::POST,
        &quota_path(m),
        None,
        Some(json!({ "quotas": q })),
    )
    .await?;
    print_quotas(ctx, &body);
    Ok(())
}

async fn usage_show(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut q = Map::new();
    if let Some(s) = arg(m, "scope") {
        q.insert("scope".into(), json!(s));
    }
    let body = compute(ctx, Method::GET, "/usages", Some(&q), None).await?;
    print_object(ctx, body.get("usage").unwrap_or(&body));
    Ok(())
}

async fn capability_show(ctx: &Ctx) -> anyhow::Result<()> {
    let body = compute(ctx, Method::GET, "/capabilities", None, None).await?;
    print_object(ctx, &body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::commands::{Handler, registry};

    #[test]
    fn virt_commands_exist() {
        for name in [
            "disk-list",
            "disk-show",
            "disk-create",
            "disk-resize",
            "disk-reset",
            "disk-delete",
            "snapshot-create",
            "snapshot-delete",
            "keypair-create",
            "keypair-privatekey",
            "keypair-delete",
            "secgroup-create",
            "secgroup-rule-create",
            "secgroup-rule-list",
            "secgroup-rule-delete",
            "eip-associate",
            "eip-dissociate",
            "quota-show",
            "quota-set",
            "usage-show",
            "capability-show",
            "task-list",
            "task-show",
            "task-cancel",
        ] {
            assert!(
                registry().iter().any(|e| e.name == name),
                "missing command {name}"
            );
        }
        let e = registry()
            .iter()
            .find(|e| e.name == "keypair-create")
            .expect("keypair-create");
        assert!(matches!(e.handler, Handler::Custom(_)));
    }
}
