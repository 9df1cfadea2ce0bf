//! `climc`, the Cloudpods command line client.
//!
//! Commands follow Cloudpods' naming (`user-list`, `project-add-user`,
//! `role-assignment-list`, …) and are generated from declarative resource
//! tables ([`spec`], [`identity::RESOURCES`]) plus hand-written commands
//! ([`commands::CustomCmd`]).
//!
//! # Adding a resource
//!
//! Add a [`spec::Resource`] entry to a table (a `static &[Resource]` in the
//! service's module, listed in [`commands::resources`]):
//!
//! ```text
//! Resource::new("zone", "zones", "compute_v2")
//!     .columns(&["ID", "Name", "Status", "Cloudregion_Id"])
//!     .create(&[Opt::pos("NAME", "name", "Zone name"),
//!               Opt::reference("region", "cloudregion_id", CLOUDREGION, "Region")])
//!     .update(&[Opt::string("name", "name", "New name")])
//!     .actions(&[Action::new("purge", "purge", "Purge the zone", &[])]),
//! ```
//!
//! This yields `zone-list` (with every common list flag), `zone-show`,
//! `zone-create`, `zone-update`, `zone-delete` and `zone-purge`. Commands
//! that do not fit go into a module's `COMMANDS` as [`commands::CustomCmd`]s,
//! which replace generated commands of the same name.

pub mod cli;
pub mod cloud;
pub mod commands;
pub mod compute_infra;
pub mod compute_servers;
pub mod compute_virt;
pub mod identity;
pub mod image;
pub mod output;
pub mod scheduler;
pub mod spec;
pub mod wait;

use clap::ArgMatches;

pub use cli::{Ctx, GlobalOpts};
pub use commands::build_cli;

/// Run the subcommand of parsed top-level matches.
pub async fn execute(ctx: &Ctx, matches: &ArgMatches) -> anyhow::Result<()> {
    let (name, sub) = matches
        .subcommand()
        .ok_or_else(|| anyhow::anyhow!("no command given (see --help)"))?;
    commands::dispatch(ctx, name, sub).await
}

/// The global options of parsed top-level matches (global flags may follow
/// the subcommand, so they are read from its matches).
pub fn global_opts(matches: &ArgMatches) -> anyhow::Result<GlobalOpts> {
    match matches.subcommand() {
        Some((_, sub)) => GlobalOpts::from_matches(sub),
        None => GlobalOpts::from_matches(matches),
    }
}

/// The line printed for a failed command: `Error: <class>(<code>): <details>`
/// for service errors, the error chain otherwise.
pub fn error_line(err: &anyhow::Error) -> String {
    format!("Error: {err:#}")
}

/// Parse `args` (without the program name) and run them with captured
/// output: for tests and embedding.
pub async fn run_captured(args: &[&str]) -> (anyhow::Result<()>, String) {
    let mut full = vec!["climc"];
    full.extend_from_slice(args);
    let matches = match build_cli().try_get_matches_from(full) {
        Ok(m) => m,
        Err(e) => return (Err(anyhow::anyhow!("{e}")), String::new()),
    };
    let opts = match global_opts(&matches) {
        Ok(o) => o,
        Err(e) => return (Err(e), String::new()),
    };
    let ctx = Ctx::capturing(opts);
    let r = execute(&ctx, &matches).await;
    (r, ctx.captured())
}
