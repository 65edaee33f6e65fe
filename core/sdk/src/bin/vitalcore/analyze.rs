//! `vitalcore analyze`: arrives with the signal pipeline.

use std::process::ExitCode;

/// Arguments of `vitalcore analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("vitalcore analyze: not available in this build yet");
    ExitCode::from(2)
}
