//! The MQTT side: connection settings and backoff ([`connection`]), TLS ([`tls`]), the poll task
//! ([`event_loop`]), the reply path shared by the inline path and the worker ([`replies`]), the second connection
//! that carries QoS 0 replies with back-pressure ([`reply_link`]), retained manifests and
//! liveness ([`announce`]), rollout states and bundles shared between instances ([`releases`]), and the device-like
//! client behind `request` ([`client`]).

pub mod announce;
pub mod client;
pub mod connection;
pub mod event_loop;
pub mod operator;
pub mod releases;
pub mod replies;
pub mod reply_link;
pub mod tls;
