//! Every topic rule in one place: where requests arrive, where replies go, what the service subscribes to, where
//! manifests, events and liveness are published, where MQTT 5 requesters may have replies sent, and which names
//! may become part of a topic. Pure.

pub use crate::config::defaults::REPLY_PREFIX;

/// Longest device id accepted in `<request topic>/<device>`.
pub const MAX_DEVICE_LEN: usize = 128;

/// The topics of one service instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Requests arrive on `request` and `request/<device>`; replies go to `…/reply`.
    pub request: String,
    /// Prefix of the retained manifests: `<prefix>/<platform>/<variant>`.
    pub manifest_prefix: String,
    /// Topic of the NestJS-style `connectorsChanged` events.
    pub changed: String,
    /// Prefix of the retained liveness messages: `<prefix>/<instance>`.
    pub status_prefix: String,
    /// With managed releases: where rollout states and bundles are retained, and this instance's sync probe.
    pub releases: Option<ReleaseTopics>,
}

/// The release topics (`--release-mode manual`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTopics {
    /// States on `<prefix>/<platform>/<variant>`, bundles on `<prefix>/<platform>/<variant>/bundles/<revision>`.
    pub prefix: String,
    /// A topic only this instance uses: what comes back on it arrived after every retained state.
    pub probe: String,
    /// Where apps report outcomes (`connectorsReport` events).
    pub reports: String,
}

/// A message under the release prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseTopic<'t> {
    /// A variant's rollout state.
    State(&'t str, &'t str),
    /// A stored bundle of a variant.
    Bundle(&'t str, &'t str, &'t str),
    /// Our sync probe came back.
    Probe,
    /// An app's outcome report on the bare topic: no device identity, counted as unattributed.
    Report,
    /// An app's outcome report on `<reports>/<device>` (the broker's ACL ties the topic to the device).
    DeviceReport(&'t str),
    /// Under the report topic, but not one device segment.
    BadReport,
}

impl ReleaseTopic<'_> {
    /// An app's outcome report, attributed or not.
    pub fn is_report(&self) -> bool {
        matches!(self, ReleaseTopic::Report | ReleaseTopic::DeviceReport(_) | ReleaseTopic::BadReport)
    }
}

impl ReleaseTopics {
    /// The state topic of one variant.
    pub fn state(&self, platform: &str, variant: &str) -> String {
        format!("{}/{platform}/{variant}", self.prefix)
    }

    /// The topic of one stored revision.
    pub fn bundle(&self, platform: &str, variant: &str, revision: &str) -> String {
        format!("{}/{platform}/{variant}/bundles/{revision}", self.prefix)
    }

    /// What a topic under the prefix is.
    pub fn classify<'t>(&self, topic: &'t str) -> Option<ReleaseTopic<'t>> {
        if topic == self.probe {
            return Some(ReleaseTopic::Probe);
        }
        if topic == self.reports {
            return Some(ReleaseTopic::Report);
        }
        if let Some(device) = topic.strip_prefix(self.reports.as_str()).and_then(|t| t.strip_prefix('/')) {
            return Some(if valid_device(device) {
                ReleaseTopic::DeviceReport(device)
            } else {
                ReleaseTopic::BadReport
            });
        }
        let rest = topic.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [p, v] => Some(ReleaseTopic::State(p, v)),
            [p, v, "bundles", r] => Some(ReleaseTopic::Bundle(p, v, r)),
            _ => None,
        }
    }
}

/// One subscription the service makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter, `$share/<group>/…` included.
    pub filter: String,
    /// Do not receive our own publishes (MQTT 5 No Local).
    pub no_local: bool,
    /// A request subscription (QoS as configured) rather than the manifest one (QoS 1).
    pub requests: bool,
}

impl Topics {
    /// Is this a topic we answer on? `request` or `request/<device>`, but not `…/reply`.
    pub fn accepts_request(&self, topic: &str) -> bool {
        match topic.strip_prefix(self.request.as_str()) {
            Some("") => true,
            Some(_) => self.device(topic).is_some_and(valid_device),
            None => false,
        }
    }

    /// The device segment of a request topic, if any.
    pub fn device<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(self.request.as_str())?.strip_prefix('/')
    }

    /// The subscriptions: `request` and `request/+` (shared when a group is set), and the manifests (never
    /// shared: every instance reconciles them).
    pub fn subscriptions(&self, share_group: Option<&str>) -> Vec<Subscription> {
        let requests = [self.request.clone(), format!("{}/+", self.request)].into_iter().map(|t| Subscription {
            filter: match share_group {
                Some(g) => format!("$share/{g}/{t}"),
                None => t,
            },
            // Our own replies to `request/reply` would match `request/+`. No Local is a protocol error on shared
            // subscriptions, where the `reply` segment is filtered instead (accepts_request).
            no_local: share_group.is_none(),
            requests: true,
        });
        let manifests = [self.manifest_filter(), self.notice("+", "+")].map(|filter| Subscription {
            filter,
            no_local: true,
            requests: false,
        });
        let releases = self.releases.iter().flat_map(|r| {
            [
                format!("{}/+/+", r.prefix),
                format!("{}/+/+/bundles/+", r.prefix),
                r.probe.clone(),
                r.reports.clone(),
                format!("{}/+", r.reports),
            ]
            .map(|filter| Subscription { filter, no_local: false, requests: false })
        });
        requests.chain(manifests).chain(releases).collect()
    }

    /// The manifest topic of one variant.
    pub fn manifest(&self, platform: &str, variant: &str) -> String {
        format!("{}/{platform}/{variant}", self.manifest_prefix)
    }

    /// The revision notice topic of one variant, `<manifest>/rev` ([`crate::signing::notice`]).
    pub fn notice(&self, platform: &str, variant: &str) -> String {
        format!("{}/{platform}/{variant}/rev", self.manifest_prefix)
    }

    /// The filter that sees every manifest.
    pub fn manifest_filter(&self) -> String {
        format!("{}/+/+", self.manifest_prefix)
    }

    /// True for a revision notice topic: `<prefix>/<platform>/<variant>/rev`, one level below a manifest's.
    pub fn is_notice(&self, topic: &str) -> bool {
        let rest = topic.strip_prefix(self.manifest_prefix.as_str()).and_then(|r| r.strip_prefix('/'));
        rest.is_some_and(|r| r.split('/').count() == 3 && r.ends_with("/rev"))
    }

    /// True for a manifest or notice topic.
    pub fn is_manifest(&self, topic: &str) -> bool {
        topic.strip_prefix(self.manifest_prefix.as_str()).is_some_and(|rest| rest.starts_with('/'))
    }

    /// True for a topic under the release prefix, or the sync probe.
    pub fn is_release(&self, topic: &str) -> bool {
        self.releases.as_ref().is_some_and(|r| r.classify(topic).is_some())
    }

    /// What a topic under the release prefix (or a report, or our probe) is, with managed releases.
    pub fn release_topic<'t>(&self, topic: &'t str) -> Option<ReleaseTopic<'t>> {
        self.releases.as_ref()?.classify(topic)
    }

    /// The liveness topic of one instance.
    pub fn status(&self, instance: &str) -> String {
        format!("{}/{instance}", self.status_prefix)
    }

    /// May a requester on `request_topic` have its reply published to `response_topic` (MQTT 5)? Only inside its
    /// own reply namespace: `<request topic>/reply` and below, or, for a device topic, `replies/<device>` and
    /// below; never a topic under the manifest, status, release or event prefixes. Anything else would make the
    /// service publish for the requester where it may not (a confused deputy: bundles fanned out on the manifest
    /// topics every phone reads, or forged replies on another device's topic).
    pub fn response_topic_allowed(&self, request_topic: &str, response_topic: &str) -> bool {
        let own = under(response_topic, &reply_topic(request_topic))
            || self
                .device(request_topic)
                .is_some_and(|device| under(response_topic, &format!("{REPLY_PREFIX}/{device}")));
        let releases = self.releases.as_ref().map_or("", |r| r.prefix.as_str());
        let reserved = [self.manifest_prefix.as_str(), &self.status_prefix, &self.changed, releases]
            .into_iter()
            .any(|prefix| !prefix.is_empty() && under(response_topic, prefix));
        own && !reserved && valid_reply_topic(response_topic)
    }
}

/// `topic` is `prefix` or below it.
fn under(topic: &str, prefix: &str) -> bool {
    topic.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The topic a NestJS-style reply goes to: `<request topic>/reply`.
pub fn reply_topic(request_topic: &str) -> String {
    let mut t = String::with_capacity(request_topic.len() + 6);
    t.push_str(request_topic);
    t.push_str("/reply");
    t
}

/// A reply topic given by a client must be publishable: non-empty, no wildcards, not absurdly long.
pub fn valid_reply_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 1024 && !t.contains(['+', '#', '\0'])
}

/// A device id: one non-empty topic level, not `reply`, at most [`MAX_DEVICE_LEN`] bytes.
pub fn valid_device(device: &str) -> bool {
    !device.is_empty() && device != "reply" && device.len() <= MAX_DEVICE_LEN && valid_level(device)
}

/// A value that becomes exactly one topic level (instance, share group, platform, variant): non-empty, no `/`,
/// no wildcard, no NUL.
pub fn valid_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#', '\0'])
}

/// A configured topic or prefix: non-empty, no wildcards, no leading or trailing `/`.
pub fn valid_plain_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0']) && !topic.starts_with('/') && !topic.ends_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics {
            request: "getConnectors".into(),
            manifest_prefix: "connectors".into(),
            changed: "connectorsChanged".into(),
            status_prefix: "connector-scripts/status".into(),
            releases: None,
        }
    }

    #[test]
    fn release_topics_and_reports_with_and_without_a_device() {
        let releases = ReleaseTopics {
            prefix: "connector-scripts/releases".into(),
            probe: "connector-scripts/status/i/sync".into(),
            reports: "connectorsReport".into(),
        };
        let t = Topics { releases: Some(releases), ..topics() };
        let filters: Vec<String> = t.subscriptions(None).into_iter().map(|s| s.filter).collect();
        assert!(
            filters.contains(&"connectorsReport".to_string()) && filters.contains(&"connectorsReport/+".to_string())
        );
        for (topic, want) in [
            ("connectorsReport", Some(ReleaseTopic::Report)),
            ("connectorsReport/dev-1", Some(ReleaseTopic::DeviceReport("dev-1"))),
            ("connectorsReport/a/b", Some(ReleaseTopic::BadReport)),
            ("connectorsReport/+", Some(ReleaseTopic::BadReport)),
            ("connector-scripts/releases/ios/next", Some(ReleaseTopic::State("ios", "next"))),
            ("connector-scripts/releases/../x", Some(ReleaseTopic::State("..", "x"))),
            ("connector-scripts/releases/ios/next/bundles/r1", Some(ReleaseTopic::Bundle("ios", "next", "r1"))),
            ("connector-scripts/status/i/sync", Some(ReleaseTopic::Probe)),
            ("getConnectors/dev-1", None),
        ] {
            assert_eq!(t.release_topic(topic), want, "{topic}");
        }
        assert!(t.release_topic("connectorsReport/+").is_some_and(|r| r.is_report()), "subscribed at QoS 0");
    }

    #[test]
    fn topics_we_answer() {
        let t = topics();
        for (topic, ok) in [
            ("getConnectors", true),
            ("getConnectors/dev-42", true),
            ("getConnectors/reply", false),
            ("getConnectors/dev-42/reply", false),
            ("getConnectors/", false),
            ("getConnectorsX", false),
            ("other", false),
        ] {
            assert_eq!(t.accepts_request(topic), ok, "{topic}");
        }
        assert!(!t.accepts_request(&format!("getConnectors/{}", "d".repeat(MAX_DEVICE_LEN + 1))));
    }

    #[test]
    fn response_topics_stay_in_the_requesters_own_namespace() {
        let mut t = topics();
        t.releases = Some(ReleaseTopics {
            prefix: "connector-scripts/releases".into(),
            probe: "connector-scripts/status/i/sync".into(),
            reports: "connectorsReport".into(),
        });
        for (request, response, ok) in [
            ("getConnectors/dev", "getConnectors/dev/reply", true),
            ("getConnectors/dev", "getConnectors/dev/reply/x", true),
            ("getConnectors/dev", "replies/dev", true),
            ("getConnectors/dev", "replies/dev/x/y", true),
            ("getConnectors", "getConnectors/reply", true),
            ("getConnectors", "getConnectors/reply/app", true),
            // Someone else's namespace, or a topic everyone reads.
            ("getConnectors/dev", "getConnectors/other/reply", false),
            ("getConnectors/dev", "replies/other", false),
            ("getConnectors/dev", "replies/devX", false),
            ("getConnectors/dev", "getConnectors/dev/replyX", false),
            ("getConnectors", "replies/dev", false),
            ("getConnectors/dev", "connectors/ios/next", false),
            ("getConnectors/dev", "connector-scripts/status/x", false),
            ("getConnectors/dev", "connector-scripts/releases/ios/next", false),
            ("getConnectors/dev", "connectorsChanged", false),
            ("getConnectors/dev", "getConnectors", false),
            ("getConnectors/dev", "getConnectors/dev", false),
        ] {
            assert_eq!(t.response_topic_allowed(request, response), ok, "{request} -> {response}");
        }
        // A reply namespace configured under a reserved prefix is still refused.
        t.manifest_prefix = "replies".into();
        assert!(!t.response_topic_allowed("getConnectors/dev", "replies/dev"));
    }

    #[test]
    fn subscriptions_shared_or_not() {
        let t = topics();
        let plain: Vec<(String, bool)> = t.subscriptions(None).into_iter().map(|s| (s.filter, s.no_local)).collect();
        assert_eq!(
            plain,
            [
                ("getConnectors", true),
                ("getConnectors/+", true),
                ("connectors/+/+", true),
                ("connectors/+/+/rev", true)
            ]
            .map(|(f, n)| (f.to_string(), n))
        );
        let shared: Vec<String> = t.subscriptions(Some("g")).into_iter().map(|s| s.filter).collect();
        assert_eq!(
            shared,
            ["$share/g/getConnectors", "$share/g/getConnectors/+", "connectors/+/+", "connectors/+/+/rev"]
        );
        assert!(t.subscriptions(Some("g"))[..2].iter().all(|s| !s.no_local && s.requests));
    }

    #[test]
    fn names_that_become_topic_levels() {
        for ok in ["ios", "next", "a-b_c.1"] {
            assert!(valid_level(ok), "{ok}");
        }
        for bad in ["", "x/y", "p+", "#", "a\0"] {
            assert!(!valid_level(bad), "{bad:?}");
        }
        assert!(valid_plain_topic("connector-scripts/status"));
        for bad in ["", "a/+", "/a", "a/"] {
            assert!(!valid_plain_topic(bad), "{bad:?}");
        }
        assert!(t_manifest());
    }

    fn t_manifest() -> bool {
        let t = topics();
        t.is_manifest(&t.manifest("ios", "next"))
            && !t.is_manifest("connectorsX/a/b")
            && t.is_notice(&t.notice("ios", "next"))
            && t.is_notice(&t.notice("ios", "rev"))
            && !t.is_notice(&t.manifest("ios", "rev"))
            && !t.is_notice("connectors/a/b/c/rev")
            && t.status("i") == "connector-scripts/status/i"
    }
}
