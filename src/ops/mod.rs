//! Operations: the status document behind `/healthz`, `/readyz` and `status`, Prometheus metrics, the HTTP
//! listener, and systemd notifications.
//!
//! Ready means: the catalog is loaded with at least one usable platform, and the broker connection is up with
//! the request subscriptions confirmed. A broken snippet does not make the service unready (its last good
//! version is served); it shows up under `catalog.errors` and in `connector_scripts_compile_errors`.

pub mod http;
pub mod metrics;
pub mod systemd;

use crate::service::{Service, ERROR_CODES};
use crate::transport::Link;
use metrics::Snapshot;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Everything the ops side reads.
#[derive(Debug)]
pub struct Ops {
    /// The request handler (catalog, counters, metrics).
    pub service: Arc<Service>,
    /// The broker connection.
    pub link: Arc<Link>,
    /// Instance name (as on the status topic).
    pub instance: String,
    /// Broker URL, safe to show (no password).
    pub broker: String,
    /// Start time.
    pub started_at: SystemTime,
    started: Instant,
}

/// Most diagnostics listed in the status document.
const MAX_LISTED_DIAGNOSTICS: usize = 20;

impl Ops {
    /// Ops over a running service.
    pub fn new(service: Arc<Service>, link: Arc<Link>, instance: String, broker: String) -> Ops {
        Ops { service, link, instance, broker, started_at: SystemTime::now(), started: Instant::now() }
    }

    /// Why the service is not ready (empty when it is).
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        match self.service.catalog.load().as_deref() {
            None => reasons.push("catalog not loaded yet".to_string()),
            Some(c) if c.platforms.is_empty() => reasons.push(format!(
                "catalog has no usable platform ({} error(s); run `connector-scripts check`)",
                c.error_count()
            )),
            Some(_) => {}
        }
        if !self.link.connected.load(Ordering::Relaxed) {
            let last = self.link.last_error.lock().ok().and_then(|e| e.clone());
            reasons.push(match last {
                Some(e) => format!("broker not connected: {e}"),
                None => "broker not connected yet".to_string(),
            });
        } else if !self.link.subscribed.load(Ordering::Relaxed) {
            reasons.push("connected but the request subscriptions are not confirmed".to_string());
        }
        reasons
    }

    /// Current values for the metrics that mirror state.
    pub fn snapshot(&self) -> Snapshot {
        let st = &self.service.stats;
        let catalog = self.service.catalog.load_full();
        Snapshot {
            events: st.events.load(Ordering::Relaxed),
            dropped: st.dropped.load(Ordering::Relaxed),
            reply_bytes: st.reply_bytes.load(Ordering::Relaxed),
            not_modified: st.not_modified.load(Ordering::Relaxed),
            reloads: st.reloads.load(Ordering::Relaxed),
            compile_errors: catalog.as_ref().map_or(0, |c| c.error_count() as u64),
            variants: catalog.as_ref().map_or(0, |c| c.bundles().count() as u64),
            broker_connected: self.link.connected.load(Ordering::Relaxed),
            reconnects: self.link.reconnects.load(Ordering::Relaxed),
            overloaded: self.link.overloaded.load(Ordering::Relaxed),
            ready: self.not_ready_reasons().is_empty(),
        }
    }

    /// The Prometheus exposition.
    pub fn metrics_text(&self) -> String {
        self.service.metrics.render(&self.snapshot())
    }

    /// The status document and whether the service is ready.
    pub fn status(&self) -> (bool, Value) {
        let reasons = self.not_ready_reasons();
        let ready = reasons.is_empty();
        let st = &self.service.stats;
        let catalog = self.service.catalog.load_full();
        let catalog_json = match catalog.as_deref() {
            None => json!({"loaded": false}),
            Some(c) => {
                let (errors, warnings) = crate::catalog::diagnostic::count(&c.diagnostics);
                json!({
                    "loaded": true,
                    "builtAt": humantime::format_rfc3339_millis(c.stats.built_at).to_string(),
                    "buildMs": c.stats.elapsed.as_millis() as u64,
                    "reloads": st.reloads.load(Ordering::Relaxed),
                    "connectors": c.connectors.len(),
                    "errors": errors,
                    "warnings": warnings,
                    "diagnostics": c.diagnostics.iter().take(MAX_LISTED_DIAGNOSTICS).map(|d| {
                        json!({"severity": d.severity, "code": d.code, "location": d.location(), "message": d.message})
                    }).collect::<Vec<_>>(),
                    "variants": c.bundles().map(|b| json!({
                        "platform": b.platform, "variant": b.variant, "versions": b.versions,
                        "compile": b.options.to_string(), "revision": b.revision, "connectors": b.scripts.len(),
                    })).collect::<Vec<_>>(),
                })
            }
        };
        let mut by_platform = serde_json::Map::new();
        for (platform, count) in self.service.metrics.requests_by_platform() {
            by_platform.insert(platform, json!(count));
        }
        let errors: serde_json::Map<String, Value> =
            ERROR_CODES.iter().map(|c| (c.as_str().to_string(), json!(st.errors_of(*c)))).collect();
        let doc = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "ready": ready,
            "reasons": reasons,
            "instance": self.instance,
            "version": env!("CARGO_PKG_VERSION"),
            "startedAt": humantime::format_rfc3339_millis(self.started_at).to_string(),
            "uptimeSeconds": self.started.elapsed().as_secs_f64(),
            "broker": {
                "url": self.broker,
                "connected": self.link.connected.load(Ordering::Relaxed),
                "subscribed": self.link.subscribed.load(Ordering::Relaxed),
                "reconnects": self.link.reconnects.load(Ordering::Relaxed),
                "lastError": self.link.last_error.lock().ok().and_then(|e| e.clone()),
            },
            "catalog": catalog_json,
            "requests": {
                "byPlatform": by_platform,
                "replies": st.replies.load(Ordering::Relaxed),
                "notModified": st.not_modified.load(Ordering::Relaxed),
                "errors": errors,
                "events": st.events.load(Ordering::Relaxed),
                "dropped": st.dropped.load(Ordering::Relaxed),
                "duplicates": self.service.metrics.duplicates.get(),
                "overloaded": self.link.overloaded.load(Ordering::Relaxed),
            },
        });
        (ready, doc)
    }
}
