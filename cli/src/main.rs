//! The `zkaudit` command-line tool: train, export and inspect runs; prove and
//! verify certificates; run and use the proving cluster.

mod commands;
mod telemetry;

use clap::Parser;

/// The process allocator. With glibc's malloc the embedded cluster's one
/// process, proving leaves and aggregations in turn, held 13 GiB or more
/// between tasks until the kernel killed it (freed polynomials kept on its
/// heaps, most likely). jemalloc returns large freed blocks to the system:
/// the same epoch finished at 15.8 GiB (BENCHMARKS.md, "The digits epoch
/// with jemalloc").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = commands::Cli::parse();
    let traces = commands::init_logging(&cli);
    let result = commands::run(cli);
    if let Some(t) = traces {
        t.shutdown();
    }
    if let Err(e) = result {
        eprintln!("error: {}", describe(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, skipping causes the message already includes.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}
