//! `cargo run --release -p cloudpods-scheduler --example sched_bench [hosts] [--sqlite]`:
//! the benchmark without the server binary.

#[tokio::main]
async fn main() {
    let mut o = cloudpods_scheduler::bench::BenchOpts::default();
    for a in std::env::args().skip(1) {
        if a == "--sqlite" {
            o.sqlite = true;
        } else if let Ok(n) = a.parse() {
            o.hosts = n;
        }
    }
    match cloudpods_scheduler::bench::run(&o).await {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
