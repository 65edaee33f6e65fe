//! `vitalcore model ...`: arrives with the inference module.

use std::process::ExitCode;

/// Subcommands of `vitalcore model`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub fn run(cmd: Command) -> ExitCode {
    match cmd {}
}
