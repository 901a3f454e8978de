//! Operations: the typed status document behind `/healthz`, `/readyz` and `status` ([`status`]), the HTTP
//! listener ([`http`]), and systemd notifications and watchdog ([`systemd`]). Readiness itself is
//! [`crate::state::State::readiness`], the one definition.

pub mod http;
pub mod status;
pub mod systemd;

use crate::metrics::{InstanceLabels, NodeLabels, ReasonLabels, RevisionInfoLabels};
use crate::state::{NotReady, State};

/// The `reason` of `connector_scripts_not_ready` for a reason without a [`NotReady`] code.
pub const OTHER_REASON: &str = "other";

/// The OpenMetrics exposition, with the gauges that mirror current state set first.
pub fn metrics_text(state: &State) -> String {
    let m = &state.metrics;
    let catalog = state.catalog();
    m.compile_errors.set(catalog.as_ref().map_or(0, |c| c.error_count() as i64));
    m.variants.set(catalog.as_ref().map_or(0, |c| c.bundles().count() as i64));
    m.broker_connected.set(state.link.connected() as i64);
    for (i, url) in state.identity.brokers.iter().enumerate() {
        m.broker_node.get_or_create(&NodeLabels { url: url.clone() }).set((i == state.link.node()) as i64);
    }
    let readiness = state.readiness();
    m.ready.set(readiness.is_ready() as i64);
    let reasons = NotReady::ALL.map(|c| (c.as_str(), readiness.causes.contains(&c)));
    for (reason, applies) in reasons.into_iter().chain([(OTHER_REASON, readiness.uncoded())]) {
        m.not_ready.get_or_create(&ReasonLabels { reason: reason.to_string() }).set(applies as i64);
    }
    m.set_revisions(catalog.as_ref().map_or_else(Vec::new, |c| {
        c.bundles()
            .map(|b| RevisionInfoLabels {
                platform: b.platform.clone(),
                variant: b.variant.clone(),
                revision: b.revision.clone(),
            })
            .collect()
    }));
    m.missing_connectors.set(catalog.as_ref().map_or(0, |c| c.missing.len() as i64));
    m.reload_held.set(state.held().is_some() as i64);
    m.render()
}

/// Sets `connector_scripts_instance_info` once at start: this build's version and the share group served.
pub fn set_instance_info(state: &State, share_group: Option<&str>) {
    let labels = InstanceLabels {
        version: env!("CARGO_PKG_VERSION").to_string(),
        share_group: share_group.unwrap_or_default().to_string(),
    };
    state.metrics.instance_info.get_or_create(&labels).set(1);
}
