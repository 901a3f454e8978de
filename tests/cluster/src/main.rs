//! `cluster-broker`: a clustered rmqtt MQTT broker for the integration tests (see ../README.md).
//!
//! Two modes: `node` runs one rmqtt node from an rmqtt.toml; `up` writes the configs of an N-node cluster on free
//! loopback ports, runs one `node` child per node, waits until the cluster has formed, prints one JSON line and then
//! supervises the nodes until its stdin closes. `main` only parses flags and reports the error chain once.

mod cli;
mod layout;
mod logger;
mod mqtt;
mod node;
mod probe;
mod processes;
mod settle;
mod supervisor;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Node(args) => node::run(&args),
        cli::Command::Up(args) => supervisor::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
