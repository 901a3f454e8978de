//! Operations: the typed status document behind `/healthz`, `/readyz` and `status` ([`status`]), the HTTP
//! listener ([`http`]), and systemd notifications and watchdog ([`systemd`]). Readiness itself is
//! [`crate::state::State::readiness`], the one definition.

pub mod http;
pub mod status;
pub mod systemd;

use crate::state::State;

/// The OpenMetrics exposition, with the gauges that mirror current state set first.
pub fn metrics_text(state: &State) -> String {
    let m = &state.metrics;
    let catalog = state.catalog();
    m.compile_errors.set(catalog.as_ref().map_or(0, |c| c.error_count() as i64));
    m.variants.set(catalog.as_ref().map_or(0, |c| c.bundles().count() as i64));
    m.broker_connected.set(state.link.connected() as i64);
    m.ready.set(state.readiness().is_ready() as i64);
    m.missing_connectors.set(catalog.as_ref().map_or(0, |c| c.missing.len() as i64));
    m.reload_held.set(state.held().is_some() as i64);
    m.render()
}
