//! connector-scripts: delivers transpiled TypeScript connector scripts to mobile apps over MQTT.
//!
//! Map of the architecture (the README's "Layout" has one line per file):
//! - [`cli`] → [`config`] → [`commands`]: flags, the one validated configuration with every default, one file per
//!   command.
//! - [`catalog`]: snippets and platform manifests on disk → compiled per-variant bundles (pure core + loader).
//! - [`wire`]: NestJS envelopes, MQTT 5 bodies, reply framing, the error codes, every topic rule (pure).
//! - [`handler`]: one request in, one reply out, against a catalog snapshot (pure; time passed in).
//! - [`state`]: the catalog cell, the broker link, the one readiness function.
//! - [`metrics`]: every counter, in one registry.
//! - [`mqtt`]: connection settings, TLS, the poll task, the reply path, announcements, the `request` client.
//! - [`broker`] + [`passwd`]: the embedded default broker (rumqttd) and its accounts (Mosquitto password files).
//! - [`reload`] + [`watch`]: file events and SIGHUP → rebuild → swap.
//! - [`ops`]: status document, health/readiness/metrics over HTTP, systemd notify and watchdog.
//! - [`activity`]: the last minute of requests and the last reloads, for the status page.
//! - [`app`]: `serve` wiring: every task under one cancellation token and task tracker.
//! - [`signing`]: Ed25519 keys, signed manifests, verifying replies.
//! - [`release`]: managed releases: rollout state, the release store, stable/candidate per device.
//! - [`ratelimit`], [`logging`]: per-device token buckets; log setup.
#![warn(missing_docs)]
// Diagnostics travel as values on cold paths (a bad file); boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod activity;
pub mod app;
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod ops;
pub mod passwd;
pub mod ratelimit;
pub mod release;
pub mod reload;
pub mod signing;
pub mod state;
pub mod watch;
pub mod wire;
