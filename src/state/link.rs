//! The broker link: connected, subscribed, the reply connection, the node in use and the last error, watched by readiness.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// Connection state, for readiness and diagnostics.
#[derive(Debug)]
pub struct Link {
    connected: AtomicBool,
    subscribed: AtomicBool,
    replies_connected: AtomicBool,
    /// The Maximum Packet Size the broker announced in CONNACK (0: none announced).
    broker_max_packet: AtomicUsize,
    last_error: Mutex<Option<String>>,
    /// Which node of the `--broker` list the request connection is on (or trying); the reply connection follows.
    node: AtomicUsize,
    /// "Connected and subscribed", watched by the announcer and by [`crate::state::State::wait_ready`].
    ready: watch::Sender<bool>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            replies_connected: AtomicBool::new(false),
            broker_max_packet: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            node: AtomicUsize::new(0),
            ready: watch::channel(false).0,
        }
    }
}

impl Link {
    /// Connected to the broker (CONNACK received).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Request subscriptions confirmed (SUBACK) on the current connection.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// The reply connection is up (reply_link.rs).
    pub fn replies_connected(&self) -> bool {
        self.replies_connected.load(Ordering::Relaxed)
    }

    /// Records the reply connection's state; a change wakes readiness watchers.
    pub fn set_replies_connected(&self, v: bool) {
        if self.replies_connected.swap(v, Ordering::Relaxed) != v {
            self.ready.send_modify(|_| {});
        }
    }

    /// The largest packet the broker accepts from us, if it said.
    pub fn broker_max_packet(&self) -> Option<usize> {
        Some(self.broker_max_packet.load(Ordering::Relaxed)).filter(|n| *n > 0)
    }

    /// Records the Maximum Packet Size of a CONNACK (`None`: the broker set no limit).
    pub fn set_broker_max_packet(&self, max: Option<u32>) {
        self.broker_max_packet.store(max.map_or(0, |m| m as usize), Ordering::Relaxed);
    }

    /// The index (in the `--broker` list) of the node the request connection is on or trying.
    pub fn node(&self) -> usize {
        self.node.load(Ordering::Relaxed)
    }

    /// Records the node the request connection moves to.
    pub fn set_node(&self, i: usize) {
        self.node.store(i, Ordering::Relaxed);
    }

    /// The last connection error, for health output.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// A watch of "connected and subscribed".
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Records a CONNACK (true) or a lost connection (false); returns whether it was connected before.
    pub fn set_connected(&self, v: bool) -> bool {
        let was = self.connected.swap(v, Ordering::Relaxed);
        if !v {
            self.set_subscribed(false);
        }
        was
    }

    /// Records confirmed (or lost) request subscriptions.
    pub fn set_subscribed(&self, v: bool) {
        self.subscribed.store(v, Ordering::Relaxed);
        self.ready.send_replace(v);
    }

    /// Records the last connection problem.
    pub fn set_error(&self, e: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e);
        }
    }
}
