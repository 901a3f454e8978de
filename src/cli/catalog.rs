//! Flags of the catalog commands (check, show, list) and where every command reads the catalog from (clap derive only).

use crate::config::defaults as d;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Where the catalog is read from.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// Directory of TypeScript snippets.
    #[arg(long, env = "CONNECTOR_SCRIPTS_SNIPPETS", default_value = d::SNIPPETS)]
    pub snippets: PathBuf,
    /// Directory of platform manifests (`<platform>.toml`).
    #[arg(long, env = "CONNECTOR_SCRIPTS_PLATFORMS", default_value = d::PLATFORMS)]
    pub platforms: PathBuf,
    /// Largest snippet file accepted, in bytes.
    #[arg(long, default_value_t = crate::catalog::loader::DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
    /// Largest reply the broker carries, in bytes (`serve` also honours a smaller Maximum Packet Size the broker
    /// announces); larger replies get REPLY_TOO_LARGE, and `check` warns about variants whose full reply is larger.
    #[arg(long, env = "CONNECTOR_SCRIPTS_MAX_REPLY_SIZE", default_value_t = d::MAX_REPLY_SIZE)]
    pub max_reply_size: u64,
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// rustc-style diagnostics with code frames.
    Human,
    /// One JSON document: counts and diagnostics.
    Json,
}

/// `check` flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Catalog location.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Output format of `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// The JavaScript, each connector under a comment header.
    Js,
    /// The exact reply object the app receives.
    Json,
}

/// `show` flags.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Catalog location.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// App platform (a manifest name, e.g. `ios`).
    #[arg(long)]
    pub platform: String,
    /// App version as the app sends it (`3`, `3.1.0`, `v3.1.0-beta.2`, …).
    #[arg(long)]
    pub version: String,
    /// Only this connector (repeatable).
    #[arg(long)]
    pub connector: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ShowFormat::Js)]
    pub format: ShowFormat,
}
