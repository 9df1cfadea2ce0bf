//! The command registry: generic commands generated from the resource
//! tables, plus hand-written ones, and their dispatch.

use std::sync::LazyLock;

use anyhow::bail;
use clap::{Arg, ArgAction, ArgMatches, Command};
use cloudpods_sdk::{CreateResult, ListResult, ResourceManager};
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::cli::{Ctx, field_columns, global_args, list_args, list_params};
use crate::output::{render_list, render_object};
use crate::spec::{Action, Ops, Opt, Raw, Resource, apply, args_of, read_opts};

/// The handler of a hand-written command.
pub type RunFn = for<'a> fn(&'a Ctx, &'a ArgMatches) -> BoxFuture<'a, anyhow::Result<()>>;

/// A hand-written command. When its name equals a generated one, it
/// replaces it.
pub struct CustomCmd {
    pub name: &'static str,
    pub about: &'static str,
    /// Its own arguments.
    pub args: fn() -> Vec<Arg>,
    /// Also accept the common list flags (`--limit`, `--filter`, …).
    pub list_flags: bool,
    pub run: RunFn,
}

/// What a command does.
#[derive(Clone, Copy)]
pub enum Handler {
    List(&'static Resource),
    Show(&'static Resource),
    Create(&'static Resource),
    Update(&'static Resource),
    Delete(&'static Resource),
    Action(&'static Resource, &'static Action),
    Custom(&'static CustomCmd),
}

/// A command name and its handler.
pub struct Entry {
    pub name: String,
    pub about: String,
    pub handler: Handler,
}

/// Every resource table.
pub fn resources() -> impl Iterator<Item = &'static Resource> {
    crate::identity::RESOURCES
        .iter()
        .chain(crate::compute_infra::RESOURCES.iter())
        .chain(crate::compute_virt::RESOURCES.iter())
        .chain(crate::compute_servers::RESOURCES.iter())
        .chain(crate::cloud::RESOURCES.iter())
        .chain(crate::image::RESOURCES.iter())
}

/// Every hand-written command.
pub fn custom_commands() -> impl Iterator<Item = &'static CustomCmd> {
    crate::identity::COMMANDS
        .iter()
        .chain(crate::compute_infra::COMMANDS.iter())
        .chain(crate::compute_virt::COMMANDS.iter())
        .chain(crate::compute_servers::COMMANDS.iter())
        .chain(crate::cloud::COMMANDS.iter())
        .chain(crate::scheduler::COMMANDS.iter())
        .chain(crate::image::COMMANDS.iter())
}

/// "a user", "an endpoint".
fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

fn build_registry() -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for r in resources() {
        let p = r.prefix();
        let kw = with_article(&r.keyword.replace('_', " "));
        let mut add = |op: Ops, suffix: &str, about: String, handler: Handler| {
            if r.ops.contains(op) {
                out.push(Entry {
                    name: format!("{p}-{suffix}"),
                    about,
                    handler,
                });
            }
        };
        add(
            Ops::LIST,
            "list",
            format!("List {}", r.plural),
            Handler::List(r),
        );
        add(
            Ops::SHOW,
            "show",
            format!("Show details of {kw}"),
            Handler::Show(r),
        );
        add(
            Ops::CREATE,
            "create",
            format!("Create {kw}"),
            Handler::Create(r),
        );
        add(
            Ops::UPDATE,
            "update",
            format!("Update {kw}"),
            Handler::Update(r),
        );
        add(
            Ops::DELETE,
            "delete",
            format!("Delete {}", r.plural),
            Handler::Delete(r),
        );
        for a in r.actions {
            out.push(Entry {
                name: format!("{p}-{}", a.name),
                about: a.about.to_owned(),
                handler: Handler::Action(r, a),
            });
        }
    }
    for c in custom_commands() {
        let e = Entry {
            name: c.name.to_owned(),
            about: c.about.to_owned(),
            handler: Handler::Custom(c),
        };
        match out.iter_mut().find(|x| x.name == c.name) {
            Some(slot) => *slot = e,
            None => out.push(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// All commands, sorted by name.
pub fn registry() -> &'static [Entry] {
    static REGISTRY: LazyLock<Vec<Entry>> = LazyLock::new(build_registry);
    &REGISTRY
}

fn id_arg(help: &'static str) -> Arg {
    Arg::new("ID").value_name("ID").help(help).required(true)
}

/// The clap command of an entry.
pub fn command(e: &'static Entry) -> Command {
    let cmd = Command::new(e.name.as_str()).about(e.about.as_str());
    match e.handler {
        Handler::List(r) => cmd.args(list_args()).args(args_of(r.list_opts)),
        Handler::Show(r) => cmd.arg(id_arg("ID or name")).args(args_of(r.show_opts)),
        Handler::Create(r) => cmd.args(args_of(r.create_opts)),
        Handler::Update(r) => cmd.arg(id_arg("ID or name")).args(args_of(r.update_opts)),
        Handler::Delete(r) => cmd
            .arg(
                Arg::new("ID")
                    .value_name("ID")
                    .help("IDs or names")
                    .required(true)
                    .num_args(1..)
                    .action(ArgAction::Append),
            )
            .args(args_of(r.delete_opts)),
        Handler::Action(_, a) => cmd.arg(id_arg("ID or name")).args(args_of(a.opts)),
        Handler::Custom(c) => {
            let cmd = cmd.args((c.args)());
            if c.list_flags {
                cmd.args(list_args())
            } else {
                cmd
            }
        }
    }
}

/// The whole command line.
pub fn build_cli() -> Command {
    Command::new("climc")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Command line client of Cloudpods (cloudpods-rs)")
        .args(global_args())
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommands(registry().iter().map(command))
}

/// Run the subcommand `name`.
pub async fn dispatch(ctx: &Ctx, name: &str, m: &ArgMatches) -> anyhow::Result<()> {
    let Some(entry) = registry().iter().find(|e| e.name == name) else {
        bail!("unknown command {name}");
    };
    match entry.handler {
        Handler::List(r) => list(ctx, r, m).await,
        Handler::Show(r) => show(ctx, r, m).await,
        Handler::Create(r) => create(ctx, r, m).await,
        Handler::Update(r) => update(ctx, r, m).await,
        Handler::Delete(r) => delete(ctx, r, m).await,
        Handler::Action(r, a) => action(ctx, r, a, m).await,
        Handler::Custom(c) => (c.run)(ctx, m).await,
    }
}

/// The manager of a resource table entry.
pub async fn manager(ctx: &Ctx, r: &Resource) -> anyhow::Result<ResourceManager> {
    Ok(ctx.client().await?.resource(r.service, r.keyword, r.plural))
}

/// Read `opts` from `m` and resolve references into `map`.
pub async fn collect(
    ctx: &Ctx,
    opts: &[Opt],
    m: &ArgMatches,
    map: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    for (key, raw) in read_opts(opts, m)? {
        let value = match raw {
            Raw::Ready(v) => v,
            Raw::Ref(to, name) => {
                let mgr = ctx
                    .client()
                    .await?
                    .resource(to.service, to.keyword, to.plural);
                Value::String(mgr.get_id(&name, &Map::new()).await?)
            }
        };
        apply(map, key, value);
    }
    Ok(())
}

fn one_id(m: &ArgMatches) -> anyhow::Result<String> {
    m.get_one::<String>("ID")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("missing ID"))
}

/// Print a list with the resource's columns (or `--field`).
pub fn print_list(
    ctx: &Ctx,
    list: &ListResult,
    plural: &str,
    default_columns: &[&str],
    m: &ArgMatches,
) {
    let mut columns = field_columns(m);
    if columns.is_empty() {
        columns = default_columns.iter().map(|c| (*c).to_owned()).collect();
    }
    ctx.print(&render_list(list, plural, &columns, ctx.format()));
}

/// Print one object.
pub fn print_object(ctx: &Ctx, v: &Value) {
    ctx.print(&render_object(v, ctx.format()));
}

async fn list(ctx: &Ctx, r: &Resource, m: &ArgMatches) -> anyhow::Result<()> {
    let mut params = list_params(m);
    if r.list_details {
        params.insert("details".into(), Value::Bool(true));
    }
    collect(ctx, r.list_opts, m, &mut params).await?;
    let result = manager(ctx, r).await?.list(&params).await?;
    print_list(ctx, &result, r.plural, r.columns, m);
    Ok(())
}

async fn show(ctx: &Ctx, r: &Resource, m: &ArgMatches) -> anyhow::Result<()> {
    let mut params = Map::new();
    collect(ctx, r.show_opts, m, &mut params).await?;
    let obj = manager(ctx, r).await?.get(&one_id(m)?, &params).await?;
    print_object(ctx, &obj);
    Ok(())
}

async fn create(ctx: &Ctx, r: &Resource, m: &ArgMatches) -> anyhow::Result<()> {
    let mut body = Map::new();
    collect(ctx, r.create_opts, m, &mut body).await?;
    match manager(ctx, r).await?.create(body, None).await? {
        CreateResult::One(obj) => print_object(ctx, &obj),
        CreateResult::Batch(items) => {
            let list = ListResult {
                items: items.into_iter().map(|i| i.body).collect(),
                ..Default::default()
            };
            print_list(ctx, &list, r.plural, r.columns, m);
        }
    }
    Ok(())
}

async fn update(ctx: &Ctx, r: &Resource, m: &ArgMatches) -> anyhow::Result<()> {
    let mut body = Map::new();
    collect(ctx, r.update_opts, m, &mut body).await?;
    if body.is_empty() {
        bail!("nothing to update: give at least one option (see --help)");
    }
    let obj = manager(ctx, r).await?.update(&one_id(m)?, body).await?;
    print_object(ctx, &obj);
    Ok(())
}

async fn delete(ctx: &Ctx, r: &Resource, m: &ArgMatches) -> anyhow::Result<()> {
    let mut params = Map::new();
    collect(ctx, r.delete_opts, m, &mut params).await?;
    let mgr = manager(ctx, r).await?;
    let ids: Vec<String> = m
        .get_many::<String>("ID")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    for id in ids {
        let obj = mgr.delete(&id, &params).await?;
        if !obj.is_null() {
            print_object(ctx, &obj);
        }
    }
    Ok(())
}

async fn action(ctx: &Ctx, r: &Resource, a: &Action, m: &ArgMatches) -> anyhow::Result<()> {
    let mut body = Map::new();
    collect(ctx, a.opts, m, &mut body).await?;
    let obj = manager(ctx, r)
        .await?
        .perform_action(&one_id(m)?, a.action, body)
        .await?;
    print_object(ctx, &obj);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<ArgMatches, clap::Error> {
        let mut full = vec!["climc"];
        full.extend_from_slice(args);
        build_cli().try_get_matches_from(full)
    }

    fn sub(args: &[&str]) -> (String, ArgMatches) {
        let m = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let (name, sm) = m.subcommand().expect("subcommand");
        (name.to_owned(), sm.clone())
    }

    #[test]
    fn cli_is_consistent() {
        build_cli().debug_assert();
        let names: Vec<&str> = registry().iter().map(|e| e.name.as_str()).collect();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup, "command names are unique");
    }

    #[test]
    fn every_command_parses_with_minimal_args() {
        for e in registry() {
            let cmd = command(e);
            let mut args: Vec<String> = vec![e.name.clone()];
            for a in cmd.get_arguments() {
                if a.is_required_set() && a.is_positional() {
                    args.push(format!("x-{}", a.get_id()));
                } else if a.is_required_set() {
                    let long = a.get_long().unwrap_or_default();
                    args.push(format!("--{long}"));
                    let v = a
                        .get_possible_values()
                        .first()
                        .map(|p| p.get_name().to_owned())
                        .unwrap_or_else(|| "1".to_owned());
                    args.push(v);
                }
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (name, _) = sub(&refs);
            assert_eq!(name, e.name);
        }
    }

    #[test]
    fn list_flags_become_query() {
        let (_, m) = sub(&[
            "user-list",
            "--filter",
            "a",
            "--filter",
            "b",
            "--details",
            "--scope",
            "system",
        ]);
        assert_eq!(
            Value::Object(list_params(&m)),
            json!({"limit": 20, "details": true, "filter": ["a", "b"], "scope": "system"})
        );
        let (_, m) = sub(&["project-list"]);
        assert_eq!(
            Value::Object(list_params(&m)),
            json!({"limit": 20, "details": false})
        );
        let (_, m) = sub(&[
            "domain-list",
            "--limit",
            "5",
            "--offset",
            "10",
            "--order-by",
            "name",
            "--order",
            "desc",
            "--search",
            "x",
            "--filter",
            "f",
            "--filter-any",
            "--admin",
            "--system",
            "--project",
            "p",
            "--project-domain",
            "d",
            "--field",
            "id",
            "--field",
            "name",
            "--paging-marker",
            "m",
            "--pending-delete-all",
        ]);
        assert_eq!(
            Value::Object(list_params(&m)),
            json!({
                "limit": 5, "offset": 10, "order_by": ["name"], "order": "desc", "details": false,
                "search": "x", "filter_any": true, "filter": ["f"], "admin": true, "system": true,
                "project_id": "p", "project_domain_id": "d", "field": ["id", "name"],
                "paging_marker": "m", "pending_delete": "all",
            })
        );
        assert_eq!(field_columns(&m), ["id", "name"]);
        // the query string the SDK will send
        let qs = cloudpods_apis::querystring::to_query(&list_params(&m));
        assert!(
            qs.starts_with("limit=5&offset=10&order_by.0=name&order=desc&details=false"),
            "{qs}"
        );
        assert!(parse(&["user-list", "--scope", "galaxy"]).is_err());
        assert!(parse(&["user-list", "--limit", "x"]).is_err());
        assert!(parse(&["user-list", "--order", "up"]).is_err());
    }

    #[test]
    fn global_options_parse_anywhere() {
        let m = parse(&["--output-format", "json", "user-list", "--debug"]).expect("parse");
        let (_, sm) = m.subcommand().expect("sub");
        let g = crate::cli::GlobalOpts::from_matches(sm).expect("globals");
        assert_eq!(g.format, crate::output::Format::Json);
        assert!(g.debug);
        assert!(parse(&["--output-format", "yaml", "user-list"]).is_err());
    }

    #[test]
    fn custom_commands_replace_generated_ones() {
        let e = registry()
            .iter()
            .find(|e| e.name == "policy-show")
            .expect("policy-show");
        assert!(matches!(e.handler, Handler::Custom(_)));
        let e = registry()
            .iter()
            .find(|e| e.name == "user-list")
            .expect("user-list");
        assert!(matches!(e.handler, Handler::List(_)));
    }
}
