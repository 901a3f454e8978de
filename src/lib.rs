//! connector-scripts: delivers transpiled TypeScript connector scripts to mobile apps over MQTT.
//!
//! Map of the architecture:
//! - [`catalog`]: snippets and platform manifests on disk → compiled per-variant bundles (pure core + loader).
//! - [`cli`]: the command-line surface (clap only).
//! - [`commands`]: the authoring commands `check`, `show`, `list`.
#![warn(missing_docs)]

pub mod catalog;
pub mod cli;
pub mod commands;
