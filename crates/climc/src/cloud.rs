//! Cloud accounts and providers: `cloud-account-create-aws`,
//! `cloud-account-list/show/update/delete/enable/disable`,
//! `cloud-account-sync [--wait]`, `cloudprovider-list/show`,
//! `cachedimage-list/show`.

use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, ArgMatches};
use cloudpods_sdk::CreateResult;
use futures::FutureExt;
use serde_json::{Map, Value, json};

use crate::cli::Ctx;
use crate::commands::{CustomCmd, print_object};
use crate::spec::{Action, Ops, Opt, Resource};

const COMPUTE: &str = "compute_v2";

pub static RESOURCES: &[Resource] = &[
    Resource::new("cloudaccount", "cloudaccounts", COMPUTE)
        .prefix_as("cloud-account")
        .ops(Ops::ALL.without(Ops::CREATE))
        .columns(&[
            "ID",
            "Name",
            "Provider",
            "Brand",
            "Status",
            "Health_status",
            "Sync_status",
            "Last_sync_end_at",
            "Error_count",
            "Account",
            "Enabled",
        ])
        .list(&[
            Opt::string("provider", "provider", "Accounts of this provider (Aws)"),
            Opt::string("brand", "brand", "Accounts of this brand"),
        ])
        .update(&[
            Opt::string("name", "name", "New name"),
            Opt::string("desc", "description", "Description"),
            Opt::int(
                "sync-interval",
                "sync_interval_seconds",
                "Seconds between automatic syncs (≥ 60)",
            ),
            Opt::flag("auto-sync", "enable_auto_sync", true, "Sync automatically"),
            Opt::flag(
                "no-auto-sync",
                "enable_auto_sync",
                false,
                "Do not sync automatically",
            ),
        ])
        .actions(&[
            Action::new("enable", "enable", "Enable the account", &[]),
            Action::new("disable", "disable", "Disable the account", &[]),
            Action::new(
                "update-credential",
                "update-credential",
                "Replace the access key and secret (checked on the cloud first)",
                &[
                    Opt::string("access-key", "account", "Access key id"),
                    Opt::string("secret", "secret", "Secret access key").required(),
                ],
            ),
        ]),
    Resource::new("cloudprovider", "cloudproviders", COMPUTE)
        .ops(Ops::LIST.with(Ops::SHOW))
        .columns(&[
            "ID",
            "Name",
            "Provider",
            "Brand",
            "Cloudaccount",
            "Status",
            "Health_status",
            "Sync_status",
            "Last_sync_end_at",
        ])
        .list(&[Opt::string(
            "cloudaccount",
            "cloudaccount",
            "Providers of this cloud account",
        )]),
    Resource::new("cachedimage", "cachedimages", COMPUTE)
        .ops(Ops::LIST.with(Ops::SHOW))
        .columns(&[
            "ID",
            "Name",
            "Status",
            "External_id",
            "Os_type",
            "Brand",
            "Cloudregion",
        ])
        .list_details(true)
        .list(&[
            Opt::string("brand", "brand", "Images of this brand"),
            Opt::string("cloudregion", "cloudregion", "Images of this region"),
        ]),
];

pub static COMMANDS: &[CustomCmd] = &[
    CustomCmd {
        name: "cloud-account-create-aws",
        about: "Register an AWS (or AWS-compatible) account; the credentials are checked on the cloud first",
        args: || {
            vec![
                Arg::new("NAME")
                    .value_name("NAME")
                    .required(true)
                    .help("Name of the account"),
                Arg::new("access-key")
                    .long("access-key")
                    .value_name("ID")
                    .required(true)
                    .help("Access key id"),
                Arg::new("secret")
                    .long("secret")
                    .value_name("SECRET")
                    .required(true)
                    .help("Secret access key"),
                Arg::new("access-url")
                    .long("access-url")
                    .value_name("URL")
                    .help("Custom endpoint (an AWS-compatible cloud or an emulator)"),
                Arg::new("region")
                    .long("region")
                    .value_name("REGION")
                    .action(ArgAction::Append)
                    .help("Sync only this region (repeatable)"),
                Arg::new("default-region")
                    .long("default-region")
                    .value_name("REGION")
                    .help("Region for account-wide calls (us-east-1)"),
                Arg::new("page-size")
                    .long("page-size")
                    .value_name("N")
                    .value_parser(clap::value_parser!(u32))
                    .help("Items per page of list calls (5-1000)"),
                Arg::new("project")
                    .long("project")
                    .value_name("PROJECT")
                    .help("Project the account's resources belong to"),
                Arg::new("sync-interval")
                    .long("sync-interval")
                    .value_name("SECONDS")
                    .value_parser(clap::value_parser!(i64))
                    .help("Seconds between automatic syncs"),
                Arg::new("no-auto-sync")
                    .long("no-auto-sync")
                    .action(ArgAction::SetTrue)
                    .help("Neither sync now nor automatically"),
                Arg::new("desc")
                    .long("desc")
                    .value_name("TEXT")
                    .help("Description"),
            ]
        },
        list_flags: false,
        run: |ctx, m| create_aws(ctx, m).boxed(),
    },
    CustomCmd {
        name: "cloud-account-sync",
        about: "Sync a cloud account now (--wait: until it ends, then print the outcome)",
        args: || {
            vec![
                Arg::new("ID").value_name("ID").required(true).help("Account id or name"),
                Arg::new("region")
                    .long("region")
                    .value_name("REGION")
                    .action(ArgAction::Append)
                    .help("Only this region (repeatable)"),
                Arg::new("resource")
                    .long("resource")
                    .value_name("KIND")
                    .action(ArgAction::Append)
                    .help("Only this resource kind: servers, disks, vpcs, networks, secgroups, eips, images, snapshots, skus…"),
                Arg::new("full")
                    .long("full")
                    .action(ArgAction::SetTrue)
                    .help("Full sync"),
                Arg::new("wait")
                    .long("wait")
                    .action(ArgAction::SetTrue)
                    .help("Wait until the sync ends"),
                Arg::new("timeout")
                    .long("timeout")
                    .value_name("SECONDS")
                    .value_parser(clap::value_parser!(u64))
                    .help("Give up waiting after this long (600)"),
            ]
        },
        list_flags: false,
        run: |ctx, m| sync(ctx, m).boxed(),
    },
];

fn arg<'a>(m: &'a ArgMatches, name: &str) -> Option<&'a String> {
    m.try_get_one::<String>(name).ok().flatten()
}

async fn create_aws(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let mut body = Map::new();
    body.insert("provider".into(), json!("Aws"));
    for (a, k) in [
        ("NAME", "name"),
        ("access-key", "account"),
        ("secret", "secret"),
        ("access-url", "access_url"),
        ("project", "project_id"),
        ("desc", "description"),
    ] {
        if let Some(v) = arg(m, a) {
            body.insert(k.into(), json!(v));
        }
    }
    let mut options = Map::new();
    if let Some(r) = m.get_many::<String>("region") {
        options.insert("regions".into(), json!(r.cloned().collect::<Vec<_>>()));
    }
    if let Some(r) = arg(m, "default-region") {
        options.insert("default_region".into(), json!(r));
    }
    if let Some(n) = m.get_one::<u32>("page-size") {
        options.insert("page_size".into(), json!(n));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    if let Some(n) = m.get_one::<i64>("sync-interval") {
        body.insert("sync_interval_seconds".into(), json!(n));
    }
    if m.get_flag("no-auto-sync") {
        body.insert("auto_sync".into(), json!(false));
    }
    let mgr = ctx
        .client()
        .await?
        .resource(COMPUTE, "cloudaccount", "cloudaccounts");
    let obj = match mgr.create(body, None).await? {
        CreateResult::One(o) => o,
        CreateResult::Batch(items) => items
            .into_iter()
            .next()
            .map(|i| i.body)
            .unwrap_or(Value::Null),
    };
    print_object(ctx, &obj);
    Ok(())
}

async fn sync(ctx: &Ctx, m: &ArgMatches) -> anyhow::Result<()> {
    let id = arg(m, "ID").cloned().unwrap_or_default();
    let mgr = ctx
        .client()
        .await?
        .resource(COMPUTE, "cloudaccount", "cloudaccounts");
    let before = mgr.get(&id, &Map::new()).await?;
    let count = before
        .get("sync_count")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut body = Map::new();
    if let Some(r) = m.get_many::<String>("region") {
        body.insert("region".into(), json!(r.cloned().collect::<Vec<_>>()));
    }
    if let Some(r) = m.get_many::<String>("resource") {
        body.insert("resources".into(), json!(r.cloned().collect::<Vec<_>>()));
    }
    if m.get_flag("full") {
        body.insert("full_sync".into(), json!(true));
    }
    let real_id = before
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_string();
    let obj = mgr.perform_action(&real_id, "sync", body).await?;
    if !m.get_flag("wait") {
        print_object(ctx, &obj);
        return Ok(());
    }
    let limit = Duration::from_secs(m.get_one::<u64>("timeout").copied().unwrap_or(600));
    let started = Instant::now();
    loop {
        let cur = mgr.get(&real_id, &Map::new()).await?;
        let n = cur.get("sync_count").and_then(Value::as_i64).unwrap_or(0);
        let st = cur
            .get("sync_status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if n > count && st == "idle" {
            print_object(ctx, &cur);
            let errors = cur
                .get("sync_errors")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            if cur.get("status").and_then(Value::as_str) == Some("disconnected") {
                anyhow::bail!("the sync failed: see sync_errors");
            }
            if errors > 0 {
                ctx.print(&format!(
                    "{errors} resource(s) could not be synced: see sync_errors\n"
                ));
            }
            return Ok(());
        }
        if started.elapsed() > limit {
            anyhow::bail!("the sync did not end within {}s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
