//! The `zkaudit` command-line tool: train, export and inspect runs; prove and
//! verify certificates; run and use the proving cluster.

mod commands;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    commands::init_logging(&cli);
    if let Err(e) = commands::run(cli) {
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
