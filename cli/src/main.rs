//! The `zkaudit` command-line tool: train, export and inspect runs; prove and
//! verify certificates; run and use the proving cluster.

mod commands;
mod telemetry;

use clap::Parser;

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
