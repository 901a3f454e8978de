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

use crate::config::{BrokerList, BrokerUrl};

/// Runs `connect` on each node of `brokers` in order and returns the first connection that succeeds with its node;
/// when none does, one error naming every node with its failure. What `request` and the release commands do with a
/// `--broker` list.
pub async fn first_node<'a, T, F, Fut>(brokers: &'a BrokerList, mut connect: F) -> anyhow::Result<(T, &'a BrokerUrl)>
where
    F: FnMut(&'a BrokerUrl) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut failures = Vec::new();
    for broker in brokers.iter() {
        match connect(broker).await {
            Ok(conn) => return Ok((conn, broker)),
            Err(e) => failures.push(format!("{broker}: {e:#}")),
        }
    }
    anyhow::bail!("no broker node accepted the connection: {}", failures.join("; "))
}
