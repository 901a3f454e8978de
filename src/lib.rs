//! connector-scripts: delivers transpiled TypeScript connector scripts to mobile apps over MQTT.
//!
//! Map of the architecture:
//! - [`catalog`]: snippets and platform manifests on disk → compiled per-variant bundles (pure core + loader).
//! - [`wire`]: NestJS envelopes and MQTT 5 request/response bodies (pure).
//! - [`service`]: one request in, one reply out, against the current catalog snapshot (pure).
//! - [`ratelimit`]: per-device token buckets.
//! - [`transport`]: the rumqttc event loop: subscribe, dispatch, publish, reconnect, drain.
//! - [`broker`]: the embedded default broker (rumqttd).
//! - [`watch`]: file events → debounced rebuild triggers (hot reload).
//! - [`announce`]: retained manifests and `connectorsChanged` events on each new revision.
//! - [`app`]: `serve` wiring: catalog (re)load, broker, transport, shutdown.
//! - [`client`]: `request`, a device-like client for operators.
//! - [`ops`]: health/readiness/metrics over HTTP, systemd notify and watchdog; [`status`] reads them.
//! - [`config`]: validated configuration (broker URL, credentials, durations).
//! - [`cli`], [`commands`], [`logging`]: the command-line surface.
#![warn(missing_docs)]
// Diagnostics travel as values on cold paths (a bad file); boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod announce;
pub mod app;
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod logging;
pub mod ops;
pub mod ratelimit;
pub mod service;
pub mod status;
pub mod transport;
pub mod watch;
pub mod wire;
