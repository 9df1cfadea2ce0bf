//! The `climc` binary: configuration from `OS_*` variables and flags,
//! one command per invocation, exit code 1 on error.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    cloudpods_sdk::init_tls();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let matches = climc::build_cli().get_matches();
    let result = match climc::global_opts(&matches) {
        Ok(opts) => {
            let ctx = climc::Ctx::new(opts);
            climc::execute(&ctx, &matches).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", climc::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
