//! Entry point: parse flags, run the command, print errors once with their cause chain.

use clap::Parser;
use connector_scripts::cli::{Cli, Command};
use connector_scripts::commands;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = match &cli.command {
        Command::Check(args) => commands::check(args, &mut stdout),
        Command::Show(args) => commands::show(args, &mut stdout),
        Command::List(args) => commands::list(args, &mut stdout),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
