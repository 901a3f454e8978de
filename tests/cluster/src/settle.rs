//! `kill <id>` in two steps: connect a client to every surviving node while the victim still runs (a CONNECT asks
//! every peer to kick an older session with the same client id, and rmqtt waits 15 s for a dead peer's answer),
//! SIGKILL the victim, then publish once on every survivor and wait for the PUBACKs. Each of those forwards waits
//! for the dead peer until `node_grpc_client_timeout` (2 s) and then opens that peer's circuit breaker, so the
//! survivors answer at once again when `kill` has answered (see the circuit breaker in src/layout.rs).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::mqtt::{ClientEvent, ProbeClient};
use crate::probe::{nonce, Target};

/// Runs `kill` between the two steps; returns its output and whether the survivors settled within `timeout`.
pub async fn kill_and_settle<F: Future>(
    survivors: &[Target],
    kill: F,
    timeout: Duration,
) -> (F::Output, Result<(), String>) {
    let deadline = Instant::now() + timeout;
    let nonce = nonce();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let clients: Vec<ProbeClient> = survivors
        .iter()
        .map(|t| ProbeClient::connect(t.id, t.mqtt, &format!("settle-{nonce}-{}", t.id), Vec::new(), tx.clone()))
        .collect();
    drop(tx);

    let mut waiting: BTreeSet<u64> = survivors.iter().map(|t| t.id).collect();
    let connected = wait_all(&mut rx, &mut waiting, deadline, |e| match e {
        ClientEvent::Connected { at } => Some(*at),
        _ => None,
    })
    .await;
    let output = kill.await;
    if let Err(missing) = connected {
        return (output, Err(format!("no connection to node(s) {missing} before the kill")));
    }

    let topic = format!("cluster-broker/probe/{nonce}/settle");
    for c in &clients {
        let _ = c.client.try_publish(&topic, QoS::AtLeastOnce, false, "settle");
    }
    let mut waiting: BTreeSet<u64> = survivors.iter().map(|t| t.id).collect();
    let acked = wait_all(&mut rx, &mut waiting, deadline, |e| match e {
        ClientEvent::Acked { at } => Some(*at),
        _ => None,
    })
    .await;
    (output, acked.map_err(|missing| format!("no PUBACK from node(s) {missing} after the kill")))
}

/// Waits until `pick` has named every node in `waiting`; Err lists those still missing at the deadline.
async fn wait_all(
    rx: &mut mpsc::UnboundedReceiver<ClientEvent>,
    waiting: &mut BTreeSet<u64>,
    deadline: Instant,
    pick: impl Fn(&ClientEvent) -> Option<u64>,
) -> Result<(), String> {
    while !waiting.is_empty() {
        tokio::select! {
            event = rx.recv() => match event {
                Some(e) => {
                    if let Some(id) = pick(&e) {
                        waiting.remove(&id);
                    }
                }
                None => break,
            },
            _ = sleep_until(deadline) => break,
        }
    }
    match waiting.is_empty() {
        true => Ok(()),
        false => Err(waiting.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    }
}
