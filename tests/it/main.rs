//! The one integration-test binary (swc is linked once): catalog and compile output, MQTT wire behaviour,
//! interop with NestJS and mosquitto_rr, ops endpoints and systemd, reliability and security, hot reload,
//! monitoring (alert rules in a real Prometheus, the dashboard's queries, the status page in Chromium).
//! Every test starts its own broker(s) on free ports with their own config.

mod alerts;
mod attacks;
mod catalog;
mod client;
mod cluster;
mod common;
mod conformance;
mod delta;
mod failover;
mod interop;
mod mqtt;
mod ops;
mod release_attacks;
mod release_stalls;
mod releases;
mod reliability;
mod reload;
mod signing;
mod status_page;
