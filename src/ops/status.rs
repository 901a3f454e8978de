//! The status document: one typed shape, built here from the running state, served as JSON by `/healthz` and
//! `/readyz`, and read back by the `status` command.

use crate::activity::ReloadRecord;
use crate::catalog::{diagnostic, Catalog};
use crate::state::State;
use crate::wire::ErrorCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most diagnostics listed in the status document.
const MAX_LISTED_DIAGNOSTICS: usize = 20;

/// What a running service says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    /// Always true: the process answered.
    pub alive: bool,
    /// `ready` or `not_ready`.
    pub status: String,
    /// Ready to serve.
    pub ready: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
    /// What is wrong while it serves (connectors missing from variants, a held reload).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Instance name.
    pub instance: String,
    /// Service version.
    pub version: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// The broker link.
    pub broker: BrokerStatus,
    /// The catalog.
    pub catalog: CatalogStatus,
    /// Request counters.
    pub requests: RequestStatus,
    /// Managed releases: each variant's rollout state (`platform/variant` → state); empty in auto mode.
    #[serde(default)]
    pub releases: std::collections::BTreeMap<String, crate::release::state::ReleaseState>,
}

/// The broker link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// The broker node the service is on (or trying), no password.
    pub url: String,
    /// Every node it may use (`--broker`, in order); `url` is one of them.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Connected.
    pub connected: bool,
    /// Request subscriptions confirmed.
    pub subscribed: bool,
    /// Connection losses.
    pub reconnects: u64,
    /// The last connection problem.
    pub last_error: Option<String>,
}

/// The catalog: `loaded` alone until the first build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogStatus {
    /// A catalog has been built.
    pub loaded: bool,
    /// What was built.
    #[serde(flatten, default)]
    pub built: Option<BuiltCatalog>,
}

/// A built catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltCatalog {
    /// When (RFC 3339).
    pub built_at: String,
    /// Build time.
    pub build_ms: u64,
    /// Builds swapped in.
    pub reloads: u64,
    /// Connectors found.
    pub connectors: usize,
    /// Error diagnostics.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// The first diagnostics.
    pub diagnostics: Vec<DiagnosticStatus>,
    /// Every variant served.
    pub variants: Vec<VariantStatus>,
    /// The last catalog swaps, newest first (the first load included).
    #[serde(default)]
    pub recent_reloads: Vec<ReloadStatus>,
}

/// One catalog swap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// When the catalog was built (RFC 3339).
    pub at: String,
    /// Build time.
    pub build_ms: u64,
    /// Error diagnostics after it.
    pub errors: usize,
    /// Variants with a new revision (all of them at the first load).
    pub changed: Vec<RevisionChange>,
    /// Variants that went away, as `platform/variant`.
    pub removed: Vec<String>,
}

/// A variant and the revision it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionChange {
    /// Platform.
    pub platform: String,
    /// Variant.
    pub variant: String,
    /// The new revision.
    pub revision: String,
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    /// `error` or `warning`.
    pub severity: String,
    /// Diagnostic code.
    pub code: String,
    /// file:line:col, when known.
    pub location: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The offending source lines with a caret under the position, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    /// How to fix it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// One variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantStatus {
    /// Platform.
    pub platform: String,
    /// Variant.
    pub variant: String,
    /// Version range.
    pub versions: String,
    /// Compile options.
    pub compile: String,
    /// Revision served.
    pub revision: String,
    /// Connectors in it.
    pub connectors: usize,
}

/// Request counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    /// Requests answered per platform (`other` for unknown ones).
    pub by_platform: BTreeMap<String, u64>,
    /// Per platform, requests answered in each second of the last minute, oldest first.
    #[serde(default)]
    pub last_minute: BTreeMap<String, Vec<u32>>,
    /// Full bundles sent.
    pub replies: u64,
    /// Not-modified replies.
    pub not_modified: u64,
    /// Error replies by code.
    pub errors: BTreeMap<String, u64>,
    /// Events (never answered).
    pub events: u64,
    /// Undecodable messages with nobody to answer.
    pub dropped: u64,
    /// Requests seen again within the duplicate window.
    pub duplicates: u64,
    /// Requests shed because the reply path was saturated.
    pub overloaded: u64,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn reload_status(r: ReloadRecord) -> ReloadStatus {
    ReloadStatus {
        at: rfc3339(r.at),
        build_ms: r.build_ms,
        errors: r.errors,
        changed: (r.diff.changed.into_iter())
            .map(|(platform, variant, revision)| RevisionChange { platform, variant, revision })
            .collect(),
        removed: r.diff.removed.into_iter().map(|(platform, variant)| format!("{platform}/{variant}")).collect(),
    }
}

fn built(c: &Catalog, reloads: u64, recent: Vec<ReloadRecord>) -> BuiltCatalog {
    let (errors, warnings) = diagnostic::count(&c.diagnostics);
    let severity = |d: &crate::catalog::Diagnostic| if d.is_error() { "error" } else { "warning" }.to_string();
    BuiltCatalog {
        built_at: rfc3339(c.stats.built_at),
        build_ms: c.stats.elapsed.as_millis() as u64,
        reloads,
        connectors: c.connectors.len(),
        errors,
        warnings,
        diagnostics: (c.diagnostics.iter().take(MAX_LISTED_DIAGNOSTICS))
            .map(|d| DiagnosticStatus {
                severity: severity(d),
                code: d.code.to_string(),
                location: d.location(),
                message: d.message.clone(),
                frame: d.frame.clone(),
                help: d.help.clone(),
            })
            .collect(),
        variants: c
            .bundles()
            .map(|b| VariantStatus {
                platform: b.platform.clone(),
                variant: b.variant.clone(),
                versions: b.versions.clone(),
                compile: b.options.to_string(),
                revision: b.revision.clone(),
                connectors: b.scripts.len(),
            })
            .collect(),
        recent_reloads: recent.into_iter().map(reload_status).collect(),
    }
}

impl StatusDoc {
    /// The document for the service as it is now.
    pub fn of(state: &State) -> StatusDoc {
        let readiness = state.readiness();
        let ready = readiness.is_ready();
        let m = &state.metrics;
        let id = &state.identity;
        StatusDoc {
            alive: true,
            status: if ready { "ready" } else { "not_ready" }.to_string(),
            ready,
            reasons: readiness.reasons,
            warnings: readiness.warnings,
            instance: id.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: rfc3339(id.started_at),
            uptime_seconds: id.started.elapsed().as_secs_f64(),
            broker: BrokerStatus {
                url: id.brokers.get(state.link.node()).cloned().unwrap_or_default(),
                nodes: id.brokers.clone(),
                connected: state.link.connected(),
                subscribed: state.link.subscribed(),
                reconnects: m.reconnects.get(),
                last_error: state.link.last_error(),
            },
            catalog: match state.catalog() {
                None => CatalogStatus { loaded: false, built: None },
                Some(c) => {
                    CatalogStatus { loaded: true, built: Some(built(&c, m.reloads.get(), state.reloads.list())) }
                }
            },
            requests: RequestStatus {
                by_platform: m.requests_by_platform(),
                last_minute: m.recent.last_minute(),
                replies: m.replies.get(),
                not_modified: m.not_modified.get(),
                errors: ErrorCode::ALL.iter().map(|c| (c.as_str().to_string(), m.errors_of(*c))).collect(),
                events: m.events.get(),
                dropped: m.dropped.get(),
                duplicates: m.duplicates.get(),
                overloaded: m.overloaded.get(),
            },
            releases: state
                .releases()
                .map(|r| r.states().into_iter().map(|((p, v), s)| (format!("{p}/{v}"), s)).collect())
                .unwrap_or_default(),
        }
    }
}
