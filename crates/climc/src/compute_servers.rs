//! Region (compute_v2) commands: servers.
//!
//! `server-list/show/update` and a few plain actions come from the resource
//! table; create, delete and the actions that take several ids or `--wait`
//! are hand-written. `--wait` polls every server until it leaves the
//! transient statuses (a bar on a terminal), and fails when one ends in a
//! `*_fail` status, printing its `fail_reason`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::{CreateResult, ListResult, ResourceManager, SdkError};
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use crate::cli::Ctx;
use crate::commands::{CustomCmd, collect, print_list, print_object};
use crate::spec::{Action, Opt, Resource, args_of};
use crate::wait::is_failure;

const SERVICE: &str = "compute_v2";

/// Cloudpods' `server-list` columns.
pub const COLUMNS: &[&str] = &[
    "ID",
    "Name",
    "Status",
    "Host",
    "Ips",
    "Vcpu_count",
    "Vmem_size",
    "Hypervisor",
    "Created_at",
];

static SECGROUP_OPTS: &[Opt] = &[Opt::multi(
    "secgroup",
    "secgroup_ids",
    "Security group id or name (repeatable)",
)
.required()];

pub static RESOURCES: &[Resource] = &[Resource::new("server", "servers", SERVICE)
    .columns(COLUMNS)
    // Host and addresses only exist in details.
    .list_details(true)
    .list(&[
        Opt::string("host", "host", "Servers on this host (id or name)"),
        Opt::string("zone", "zone", "Servers in this zone (id or name)"),
        Opt::string("status", "status", "Servers in this status"),
        Opt::string("brand", "brand", "Servers of this brand (OneCloud, Aws)"),
        Opt::string("cloud-env", "cloud_env", "public, private or onpremise"),
        Opt::string("manager", "manager", "Servers of this cloud provider"),
        Opt::string("network", "network", "Servers with a NIC on this network"),
        Opt::string("hypervisor", "hypervisor", "Servers of this hypervisor"),
        Opt::string("ip", "ip_addr", "Servers with this address"),
    ])
    .update(&[
        Opt::string("name", "name", "New name"),
        Opt::string("desc", "description", "Description"),
        Opt::string("hostname", "hostname", "Host name inside the guest"),
        Opt::flag(
            "disable-delete",
            "disable_delete",
            true,
            "Protect from deletion",
        ),
        Opt::flag("allow-delete", "disable_delete", false, "Allow deletion"),
    ])
    .actions(&[
        Action::new(
            "purge",
            "purge",
            "Forget a server's records without asking its host (admin)",
            &[],
        ),
        Action::new(
            "add-secgroup",
            "add-secgroup",
            "Add security groups to a server",
            SECGROUP_OPTS,
        ),
        Action::new(
            "del-secgroup",
            "del-secgroup",
            "Remove security groups from a server",
            SECGROUP_OPTS,
        ),
        Action::new(
            "set-secgroup",
            "set-secgroup",
            "Replace the security groups of a server",
            SECGROUP_OPTS,
        ),
        Action::new(
            "assign-secgroup",
            "assign-secgroup",
            "Make one security group the server's only one",
            &[Opt::string("secgroup", "secgroup_id", "Security group id or name").required()],
        ),
    ])];

// ---------------------------------------------------------------------------
// waiting

/// What `--wait` waits for.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// One of these statuses.
    Statuses(&'static [&'static str]),
    /// Back to the power state the server had before the action.
    Previous,
}

/// A server settled: reached a target, failed, or (no targets) left the
/// transient statuses.
fn settled(status: &str, targets: &[&str]) -> bool {
    targets.contains(&status) || is_failure(status)
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn progress(n: usize) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// How long `--wait` waits at most.
const WAIT_TIMEOUT: Duration = Duration::from_secs(1800);
const POLL: Duration = Duration::from_millis(500);

/// Poll servers until each settles on one of its targets. Fails, listing
/// each failed server with its `fail_reason`, when any ended in a failure.
async fn wait_servers(
    mgr: &ResourceManager,
    waits: &[(String, Vec<&str>)],
) -> anyhow::Result<Vec<Value>> {
    let bar = progress(waits.len());
    let started = Instant::now();
    let mut done: BTreeMap<usize, Value> = BTreeMap::new();
    loop {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (k, (id, targets)) in waits.iter().enumerate() {
            if let Some(obj) = done.get(&k) {
                *counts.entry(str_of(obj, "status").to_owned()).or_default() += 1;
                continue;
            }
            let obj = mgr.get(id, &Map::new()).await?;
            let st = str_of(&obj, "status").to_owned();
            *counts.entry(st.clone()).or_default() += 1;
            if settled(&st, targets) {
                done.insert(k, obj);
            }
        }
        bar.set_position(done.len() as u64);
        bar.set_message(
            counts
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if done.len() == waits.len() {
            break;
        }
        if started.elapsed() > WAIT_TIMEOUT {
            bar.finish_and_clear();
            bail!(
                "{} of {} servers still busy after {}s",
                waits.len() - done.len(),
                waits.len(),
                WAIT_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    bar.finish_and_clear();
    let objs: Vec<Value> = done.into_values().collect();
    let failed: Vec<String> = objs
        .iter()
        .filter(|o| is_failure(str_of(o, "status")))
        .map(|o| {
            format!(
                "  server {} ({}) ended in {}: {}",
                str_of(o, "name"),
                str_of(o, "id"),
                str_of(o, "status"),
                str_of(o, "fail_reason")
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} servers failed:\n{}",
            failed.len(),
            objs.len(),
            failed.join("\n")
        );
    }
    Ok(objs)
}

fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<SdkError>(),
        Some(SdkError::Http { status: 404, .. })
    )
}

/// Wait until deleted servers are gone (or parked in the recycle bin).
async fn wait_deleted(mgr: &ResourceManager, ids: &[String]) -> anyhow::Result<()> {
    let bar = progress(ids.len());
    let started = Instant::now();
    let mut gone = vec![false; ids.len()];
    let mut failures = Vec::new();
    loop {
        for (k, id) in ids.iter().enumerate() {
            if gone[k] {
                continue;
            }
            match mgr.get(id, &Map::new()).await.map_err(anyhow::Error::from) {
                Err(e) if is_not_found(&e) => gone[k] = true,
                Err(e) => return Err(e),
                Ok(obj) => {
                    let st = str_of(&obj, "status");
                    let parked = obj.get("pending_deleted").and_then(Value::as_bool) == Some(true)
                        && matches!(st, "ready" | "running");
                    if is_failure(st) {
                        failures.push(format!(
                            "  server {} ({id}) ended in {st}: {}",
                            str_of(&obj, "name"),
                            str_of(&obj, "fail_reason")
                        ));
                        gone[k] = true;
                    } else if parked {
                        gone[k] = true;
                    }
                }
            }
        }
        let n = gone.iter().filter(|g| **g).count();
        bar.set_position(n as u64);
        if n == ids.len() {
            break;
        }
        if started.elapsed() > WAIT_TIMEOUT {
            bar.finish_and_clear();
            bail!("{} servers still deleting", ids.len() - n);
        }
        tokio::time::sleep(POLL).await;
    }
    bar.finish_and_clear();
    if !failures.is_empty() {
        bail!(
            "{} servers failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

async fn servers(ctx: &Ctx) -> anyhow::Result<ResourceManager> {
    Ok(ctx.client().await?.resource(SERVICE, "server", "servers"))
}

fn ids_of(m: &ArgMatches) -> Vec<String> {
    m.get_many::<String>("ID")
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn wait_arg() -> Arg {
    Arg::new("wait")
        .long("wait")
        .action(ArgAction::SetTrue)
        .help("Wait until the servers settle (fails if one ends in a *_fail status)")
}

// ---------------------------------------------------------------------------
// server-create

static CREATE_OPTS: &[Opt] = &[
    Opt::pos(
        "NAME",
        "name",
        "Name of the server (a #-pattern for batches)",
    ),
    Opt::int("ncpu", "vcpu_count", "Number of vCPUs"),
    Opt::string("mem-spec", "vmem_size", "Memory, e.g. 2g or 2048 (MB)"),
    Opt::multi(
        "disk",
        "disks",
        "Disk: '10g', '10g:IMAGE' or 'image_id=IMAGE,size=10G,backend=local' (repeatable; the first is the system disk)",
    ),
    Opt::multi("net", "nets", "NIC: 'NETWORK' or 'NETWORK:IP' (repeatable)"),
    Opt::string("image", "image_id", "Image of the system disk"),
    Opt::flag("auto-start", "auto_start", true, "Start after creation"),
    Opt::string("keypair", "keypair", "SSH keypair (id or name)"),
    Opt::string("password", "password", "Login password"),
    Opt::flag(
        "allow-delete",
        "disable_delete",
        false,
        "Allow deleting the server",
    ),
    Opt::choice("hypervisor", "hypervisor", &["kvm", "aws"], "Hypervisor"),
    Opt::string(
        "prefer-region",
        "prefer_region",
        "Place in this cloud region (a public cloud's region creates the server there)",
    ),
    Opt::string(
        "prefer-manager",
        "prefer_manager",
        "Create on this cloud provider (id or name)",
    ),
    Opt::string(
        "instance-type",
        "instance_type",
        "Instance type of a public-cloud server (t2.micro)",
    ),
    Opt::string("prefer-host", "prefer_host", "Place on this host (admin)"),
    Opt::string("prefer-zone", "prefer_zone", "Place in this zone"),
    Opt::text_file("user-data-file", "user_data", "cloud-init user data"),
    Opt::multi("secgroup", "secgroups", "Security group (repeatable)"),
    Opt::string("sku", "sku", "Server SKU (sets vCPUs and memory)"),
    Opt::string("desc", "description", "Description"),
    Opt::string("hostname", "hostname", "Host name inside the guest"),
    Opt::string("project", "project_id", "Owner project (admin)"),
];

fn create_args() -> Vec<Arg> {
    let mut args = args_of(CREATE_OPTS);
    args.push(
        Arg::new("count")
            .long("count")
            .value_name("N")
            .value_parser(clap::value_parser!(u32).range(1..))
            .help("Create N servers"),
    );
    args.push(wait_arg());
    args
}

async fn server_create(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut body = Map::new();
    collect(ctx, CREATE_OPTS, m, &mut body).await?;
    let count = m.get_one::<u32>("count").copied();
    let auto_start = body.get("auto_start") == Some(&Value::Bool(true));
    let mgr = servers(ctx).await?;
    let created = match mgr.create(body, count).await? {
        CreateResult::One(obj) => vec![obj],
        CreateResult::Batch(items) => {
            let failed: Vec<String> = items
                .iter()
                .filter(|i| !i.is_success())
                .map(|i| format!("  {}: {}", i.status, str_of(&i.body, "details")))
                .collect();
            if !failed.is_empty() {
                bail!("{} creates failed:\n{}", failed.len(), failed.join("\n"));
            }
            items.into_iter().map(|i| i.body).collect()
        }
    };
    let objs = if m.get_flag("wait") {
        let targets = if auto_start {
            vec!["running"]
        } else {
            vec!["ready"]
        };
        let waits: Vec<(String, Vec<&str>)> = created
            .iter()
            .map(|o| (str_of(o, "id").to_owned(), targets.clone()))
            .collect();
        let objs = wait_servers(&mgr, &waits).await;
        // Re-read with details (host, addresses) for the table.
        let objs = objs?;
        let mut out = Vec::new();
        for o in &objs {
            let mut q = Map::new();
            q.insert("details".into(), Value::Bool(true));
            out.push(mgr.get(str_of(o, "id"), &q).await?);
        }
        out
    } else {
        created
    };
    if objs.len() == 1 && count.is_none() {
        print_object(ctx, &objs[0]);
    } else {
        let list = ListResult {
            total: objs.len() as u64,
            items: objs,
            ..Default::default()
        };
        print_list(ctx, &list, "servers", COLUMNS, m);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// server-delete

static DELETE_OPTS: &[Opt] = &[
    Opt::flag(
        "override-pending-delete",
        "override_pending_delete",
        true,
        "Delete at once instead of moving to the recycle bin",
    ),
    Opt::flag(
        "purge",
        "purge",
        true,
        "Only forget the records, whatever the host says (admin)",
    ),
];

fn delete_args() -> Vec<Arg> {
    let mut args = vec![
        Arg::new("ID")
            .value_name("ID")
            .help("IDs or names")
            .required(true)
            .num_args(1..)
            .action(ArgAction::Append),
    ];
    args.extend(args_of(DELETE_OPTS));
    args.push(wait_arg());
    args
}

async fn server_delete(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut params = Map::new();
    collect(ctx, DELETE_OPTS, m, &mut params).await?;
    let mgr = servers(ctx).await?;
    let mut ids = Vec::new();
    for id in ids_of(m) {
        let obj = mgr.delete(&id, &params).await?;
        ids.push(str_of(&obj, "id").to_owned());
        print_object(ctx, &obj);
    }
    if m.get_flag("wait") {
        wait_deleted(&mgr, &ids).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// actions with several ids and --wait

/// One action command.
struct ActCmd {
    action: &'static str,
    /// Several ids (otherwise exactly one).
    multi: bool,
    opts: &'static [Opt],
    target: Target,
}

fn act_args(c: &ActCmd) -> Vec<Arg> {
    let id = Arg::new("ID").value_name("ID").required(true);
    let id = if c.multi {
        id.help("IDs or names")
            .num_args(1..)
            .action(ArgAction::Append)
    } else {
        id.help("ID or name")
    };
    let mut args = vec![id];
    args.extend(args_of(c.opts));
    args.push(wait_arg());
    args
}

async fn run_act(ctx: &Ctx, m: &ArgMatches, c: &ActCmd) -> anyhow::Result<()> {
    let mut body = Map::new();
    collect(ctx, c.opts, m, &mut body).await?;
    let mgr = servers(ctx).await?;
    let wait = m.get_flag("wait");
    let auto_start = body.get("auto_start") == Some(&Value::Bool(true));
    let mut waits = Vec::new();
    for id in ids_of(m) {
        let before = match (wait, c.target) {
            (true, Target::Previous) => Some(mgr.get(&id, &Map::new()).await?),
            _ => None,
        };
        let obj = mgr.perform_action(&id, c.action, body.clone()).await?;
        print_object(ctx, &obj);
        let targets: Vec<&str> = match c.target {
            _ if auto_start => vec!["running"],
            Target::Statuses(t) => t.to_vec(),
            Target::Previous => match before.as_ref().map(|b| str_of(b, "status")) {
                Some("running") => vec!["running"],
                Some("ready") => vec!["ready"],
                _ => vec!["ready", "running"],
            },
        };
        waits.push((str_of(&obj, "id").to_owned(), targets));
    }
    if wait {
        wait_servers(&mgr, &waits).await?;
    }
    Ok(())
}

static START: ActCmd = ActCmd {
    action: "start",
    multi: true,
    opts: &[],
    target: Target::Statuses(&["running"]),
};
static STOP: ActCmd = ActCmd {
    action: "stop",
    multi: true,
    opts: &[
        Opt::flag("force", "is_force", true, "Power off at once"),
        Opt::int("timeout", "timeout", "Seconds to wait for a clean shutdown"),
    ],
    target: Target::Statuses(&["ready"]),
};
static RESTART: ActCmd = ActCmd {
    action: "restart",
    multi: true,
    opts: &[Opt::flag("force", "is_force", true, "Power off at once")],
    target: Target::Statuses(&["running"]),
};
static RESET: ActCmd = ActCmd {
    action: "reset",
    multi: true,
    opts: &[],
    target: Target::Statuses(&["running"]),
};
static SYNCSTATUS: ActCmd = ActCmd {
    action: "syncstatus",
    multi: true,
    opts: &[],
    target: Target::Statuses(&["running", "ready"]),
};
static CANCEL_DELETE: ActCmd = ActCmd {
    action: "cancel-delete",
    multi: true,
    opts: &[],
    target: Target::Previous,
};
static CHANGE_CONFIG: ActCmd = ActCmd {
    action: "change-config",
    multi: false,
    opts: &[
        Opt::int("ncpu", "vcpu_count", "New number of vCPUs"),
        Opt::string("mem-spec", "vmem_size", "New memory, e.g. 4g"),
        Opt::string("sku", "sku", "New server SKU"),
        Opt::multi(
            "disk",
            "disks",
            "Disk sizes by index: '20g' grows disk 0, a further entry adds a data disk (repeatable)",
        ),
        Opt::flag("auto-start", "auto_start", true, "Start when done"),
    ],
    target: Target::Statuses(&["ready"]),
};
static ATTACH_DISK: ActCmd = ActCmd {
    action: "attachdisk",
    multi: false,
    opts: &[
        Opt::pos("DISK", "disk_id", "Disk id or name"),
        Opt::string("driver", "driver", "Disk driver (virtio, scsi, ide)"),
        Opt::string("cache", "cache", "Cache mode"),
    ],
    target: Target::Previous,
};
static DETACH_DISK: ActCmd = ActCmd {
    action: "detachdisk",
    multi: false,
    opts: &[
        Opt::pos("DISK", "disk_id", "Disk id or name"),
        Opt::flag("keep-disk", "keep_disk", true, "Keep the disk (default)"),
        Opt::flag(
            "delete-disk",
            "keep_disk",
            false,
            "Delete the disk after detaching",
        ),
    ],
    target: Target::Previous,
};
static SNAPSHOT: ActCmd = ActCmd {
    action: "disk-snapshot",
    multi: false,
    opts: &[
        Opt::string(
            "disk",
            "disk_id",
            "Disk to snapshot (default: the system disk)",
        ),
        Opt::string("name", "name", "Snapshot name"),
    ],
    target: Target::Previous,
};
static REBUILD_ROOT: ActCmd = ActCmd {
    action: "rebuild-root",
    multi: false,
    opts: &[
        Opt::string("image", "image_id", "Image of the new system disk").required(),
        Opt::string("password", "password", "New login password"),
        Opt::flag(
            "reset-password",
            "reset_password",
            true,
            "Generate a password",
        ),
        Opt::string("keypair", "keypair", "New SSH keypair"),
        Opt::flag("auto-start", "auto_start", true, "Start when done"),
        Opt::flag(
            "no-auto-start",
            "auto_start",
            false,
            "Stay stopped when done",
        ),
    ],
    target: Target::Previous,
};
static SET_PASSWORD: ActCmd = ActCmd {
    action: "set-password",
    multi: false,
    opts: &[
        Opt::string("password", "password", "New login password"),
        Opt::flag(
            "reset-password",
            "reset_password",
            true,
            "Generate a password",
        ),
        Opt::string("keypair", "keypair", "SSH keypair to install"),
    ],
    target: Target::Previous,
};
static MIGRATE: ActCmd = ActCmd {
    action: "migrate",
    multi: false,
    opts: &[
        Opt::string("prefer-host", "prefer_host", "Target host (id or name)"),
        Opt::flag(
            "auto-start",
            "auto_start",
            true,
            "Start on the target when done",
        ),
    ],
    target: Target::Statuses(&["ready"]),
};
static LIVE_MIGRATE: ActCmd = ActCmd {
    action: "live-migrate",
    multi: false,
    opts: &[Opt::string(
        "prefer-host",
        "prefer_host",
        "Target host (id or name); the scheduler picks one otherwise",
    )],
    target: Target::Statuses(&["running"]),
};

// ---------------------------------------------------------------------------
// specs

async fn server_vnc(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let id = m
        .get_one::<String>("ID")
        .ok_or_else(|| anyhow::anyhow!("missing ID"))?;
    let v = servers(ctx)
        .await?
        .get_specific(id, "vnc", &Map::new())
        .await?;
    print_object(ctx, &v);
    Ok(())
}

async fn server_tasks(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let id = m
        .get_one::<String>("ID")
        .ok_or_else(|| anyhow::anyhow!("missing ID"))?;
    let v = servers(ctx)
        .await?
        .get_specific(id, "tasks", &Map::new())
        .await?;
    let list = ListResult::from_body(&v, "tasks").map_err(anyhow::Error::msg)?;
    print_list(
        ctx,
        &list,
        "tasks",
        &["Id", "Task_name", "Stage", "Status", "Created_at", "Reason"],
        m,
    );
    Ok(())
}

fn one_id_args() -> Vec<Arg> {
    vec![
        Arg::new("ID")
            .value_name("ID")
            .help("ID or name")
            .required(true),
    ]
}

macro_rules! act {
    ($name:literal, $about:literal, $spec:ident) => {
        CustomCmd {
            name: $name,
            about: $about,
            args: || act_args(&$spec),
            list_flags: false,
            run: |ctx, m| run_act(ctx, m, &$spec).boxed(),
        }
    };
}

pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "server-create",
        about: "Create servers",
        args: create_args,
        list_flags: false,
        run: |ctx, m| server_create(ctx, m).boxed(),
    },
    CustomCmd {
        name: "server-delete",
        about: "Delete servers",
        args: delete_args,
        list_flags: false,
        run: |ctx, m| server_delete(ctx, m).boxed(),
    },
    act!("server-start", "Start servers", START),
    act!("server-stop", "Stop servers", STOP),
    act!("server-restart", "Restart servers", RESTART),
    act!("server-reset", "Reset servers (hard reboot)", RESET),
    act!(
        "server-syncstatus",
        "Ask the hosts what the servers are doing",
        SYNCSTATUS
    ),
    act!(
        "server-cancel-delete",
        "Take servers out of the recycle bin",
        CANCEL_DELETE
    ),
    act!(
        "server-change-config",
        "Change vCPUs, memory or disks of a stopped server",
        CHANGE_CONFIG
    ),
    act!(
        "server-attach-disk",
        "Attach a disk to a server",
        ATTACH_DISK
    ),
    act!(
        "server-detach-disk",
        "Detach a data disk from a server",
        DETACH_DISK
    ),
    act!("server-snapshot", "Snapshot a disk of a server", SNAPSHOT),
    act!(
        "server-rebuild-root",
        "Recreate the system disk from an image",
        REBUILD_ROOT
    ),
    act!(
        "server-set-password",
        "Set or reset the login password",
        SET_PASSWORD
    ),
    act!(
        "server-migrate",
        "Move a stopped server to another host (admin)",
        MIGRATE
    ),
    act!(
        "server-live-migrate",
        "Move a running server to another host without stopping it (admin)",
        LIVE_MIGRATE
    ),
    CustomCmd {
        name: "server-vnc",
        about: "Show where a server's console is",
        args: one_id_args,
        list_flags: false,
        run: |ctx, m| server_vnc(ctx, m).boxed(),
    },
    CustomCmd {
        name: "server-tasks",
        about: "List the tasks of a server",
        args: one_id_args,
        list_flags: false,
        run: |ctx, m| server_tasks(ctx, m).boxed(),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Raw, read_opts};
    use clap::Command;
    use serde_json::json;

    fn parse(args: Vec<Arg>, argv: &[&str]) -> ArgMatches {
        Command::new("x")
            .no_binary_name(true)
            .args(args)
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    #[test]
    fn create_flags_become_the_cloudpods_body() {
        let m = parse(
            create_args(),
            &[
                "vm",
                "--ncpu",
                "2",
                "--mem-spec",
                "2g",
                "--disk",
                "10g",
                "--disk",
                "image_id=img,size=20G",
                "--net",
                "net0",
                "--net",
                "net0:10.0.0.9",
                "--count",
                "5",
                "--auto-start",
                "--password",
                "Secret123",
                "--allow-delete",
                "--wait",
            ],
        );
        let mut body = Map::new();
        for (k, r) in read_opts(CREATE_OPTS, &m).expect("read") {
            if let Raw::Ready(v) = r {
                crate::spec::apply(&mut body, k, v);
            }
        }
        assert_eq!(
            Value::Object(body),
            json!({"name": "vm", "vcpu_count": 2, "vmem_size": "2g",
                   "disks": ["10g", "image_id=img,size=20G"], "nets": ["net0", "net0:10.0.0.9"],
                   "auto_start": true, "password": "Secret123", "disable_delete": false})
        );
        assert_eq!(m.get_one::<u32>("count"), Some(&5));
        assert!(m.get_flag("wait"));
    }

    #[test]
    fn count_must_be_positive() {
        assert!(
            Command::new("x")
                .no_binary_name(true)
                .args(create_args())
                .try_get_matches_from(["vm", "--count", "0"])
                .is_err()
        );
    }

    #[test]
    fn actions_take_several_ids_where_cloudpods_does() {
        let m = parse(act_args(&START), &["a", "b", "c", "--wait"]);
        assert_eq!(ids_of(&m), ["a", "b", "c"]);
        let m = parse(act_args(&ATTACH_DISK), &["vm", "disk1"]);
        assert_eq!(ids_of(&m), ["vm"]);
        assert!(
            Command::new("x")
                .no_binary_name(true)
                .args(act_args(&DETACH_DISK))
                .try_get_matches_from(["vm", "d", "--keep-disk", "--delete-disk"])
                .is_err()
        );
    }

    #[test]
    fn settled_statuses() {
        assert!(settled("running", &["running"]));
        assert!(settled("deploy_fail", &["running"]));
        assert!(settled("migrate_failed", &["ready"]));
        assert!(!settled("ready", &["running"]));
        assert!(!settled("start_start", &["running"]));
    }
}
