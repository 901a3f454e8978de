//! The MQTT side: connection settings and backoff ([`connection`]), TLS ([`tls`]), the poll task
//! ([`event_loop`]), the reply path shared by the inline path and the worker ([`replies`]), retained manifests and
//! liveness ([`announce`]), and the device-like client behind `request` ([`client`]).

pub mod announce;
pub mod client;
pub mod connection;
pub mod event_loop;
pub mod replies;
pub mod tls;
