//! The `zkaudit` command-line tool: train, export and inspect runs (proving,
//! verification, the cluster and audits arrive with their crates).

mod commands;

use clap::Parser;

fn main() {
    commands::init_logging();
    let cli = commands::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
