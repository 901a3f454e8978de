//! The commands, one file each: flags → typed configuration → action, with a process exit code.

pub mod catalog;
pub mod keygen;
pub mod release;
pub mod request;
pub mod serve;
pub mod status;

use crate::cli::Command;
use std::io::Write;
use std::process::ExitCode;

/// Runs one command, writing its output to `out`.
pub fn run(command: &Command, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => catalog::check(args, out),
        Command::Show(args) => catalog::show(args, out),
        Command::List(args) => catalog::list(args, out),
        Command::Serve(args) => serve::serve(args),
        Command::Request(args) => request::request(args, out),
        Command::Status(args) => status::status(args, out),
        Command::Keygen(args) => keygen::keygen(args, out),
        Command::Releases(args) => release::releases(args, out),
        Command::Rollout(args) => release::rollout(args, out),
        Command::Promote(args) => release::promote(args, out),
        Command::Rollback(args) => release::rollback(args, out),
        Command::Disable(args) => release::switch(args, false, out),
        Command::Enable(args) => release::switch(args, true, out),
    }
}
