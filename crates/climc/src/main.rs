//! The `climc` binary: configuration from `OS_*` variables and flags,
//! one command per invocation, exit code 1 on error.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Image transfers hold network buffers while they are written or sent, so
/// the HTTP layer keeps allocating new ones of a few hundred KiB. glibc
/// serves those with `mmap` and hands them back with `munmap` (or trims
/// its heap), and every reuse then costs a page fault and a cleared page
/// per 4 KiB: measured at 15-20% of an image download. Keeping them on
/// the heap, and the heap from shrinking by less than 32 MiB, avoids it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    // One command at a time: one runtime thread (plus blocking threads for
    // file I/O). With a worker per core, the HTTP connection and the
    // transfer loop were woken on different threads for every chunk.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("climc: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
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
