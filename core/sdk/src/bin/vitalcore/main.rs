//! `vitalcore`: the developer CLI (feature `cli`).
//!
//! Each subcommand lives in its own module; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod analyze;
mod model;

#[derive(Debug, Parser)]
#[command(name = "vitalcore", version, about = "vitalcore developer tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse a recording: beats, features, signal quality.
    Analyze(analyze::Args),
    /// Inspect models the SDK would load.
    #[command(subcommand)]
    Model(model::Command),
}

fn main() -> ExitCode {
    // tract 0.23 builds an error value for every tree-ensemble leaf it visits; with
    // RUST_BACKTRACE=1 each captures a backtrace and `model check` would time that instead of
    // the model (~100x on a 200-tree ensemble). Library errors only: panics keep theirs.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Model(cmd) => model::run(cmd),
    }
}
