//! The label sets of the service's metric families: every value bounded (what exists, or a fixed list).

use prometheus_client::encoding::EncodeLabelSet;

/// Labels of `connector_scripts_requests_total`. Values are bounded: platforms and variants that exist, else
/// `other` / empty; the result is `ok`, `not_modified` or an error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Platform (or `other`).
    pub platform: String,
    /// Variant (empty when none was resolved).
    pub variant: String,
    /// `ok`, `not_modified`, or the error code.
    pub result: &'static str,
}

/// Labels of `connector_scripts_broker_node`: one series per `--broker` node, 1 for the one the service is on.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// The node's URL (no password).
    pub url: String,
}

/// Labels of `connector_scripts_not_ready`: one series per [`crate::state::NotReady`] code, 1 while it applies.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The code, e.g. `broker_disconnected`.
    pub reason: String,
}

/// Labels of `connector_scripts_revision_info`: one series (value 1) per variant served.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionInfoLabels {
    /// Platform.
    pub platform: String,
    /// Variant.
    pub variant: String,
    /// The revision served.
    pub revision: String,
}

/// Labels of `connector_scripts_instance_info` (value 1): what this instance runs and which share group it
/// answers for, so alert rules can tell when a group has no instance left.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// The service version.
    pub version: String,
    /// `--share-group`, empty without one.
    pub share_group: String,
}

/// Labels of `connector_scripts_manifests_healed_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealLabels {
    /// `replaced` (a variant we serve) or `cleared` (one we do not have).
    pub action: String,
}

/// Labels of the per-revision counters of managed releases.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    /// Platform.
    pub platform: String,
    /// Variant.
    pub variant: String,
    /// Revision served or reported.
    pub revision: String,
    /// `stable` or `candidate`.
    pub channel: String,
    /// For reports: `ok` or `failed`; for requests: empty.
    pub outcome: String,
}

/// Labels of `connector_scripts_refused_total`: one of [`crate::wire::Refusal::ALL`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhyLabels {
    /// The reason.
    pub reason: &'static str,
}

/// Labels of `connector_scripts_rate_limited_total`: one of [`crate::ratelimit::Scope::ALL`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// `device`, `bare` or `global`.
    pub scope: &'static str,
}

/// Labels of `connector_scripts_bus_rejected_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusRejectLabels {
    /// What was refused: `state` or `bundle`.
    pub kind: String,
    /// Why ([`crate::release::trust::Rejected::reason`]).
    pub reason: String,
}
