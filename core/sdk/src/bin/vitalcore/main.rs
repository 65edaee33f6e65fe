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
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Model(cmd) => model::run(cmd),
    }
}
