//! Unit tests of `metrics.rs`.

use super::*;
use std::hash::RandomState;

#[test]
fn duplicates_within_the_window_only() {
    let mut w = DuplicateWindow::new(Duration::from_secs(60), 1000);
    let t0 = Instant::now();
    let keys = RandomState::new();
    let (a, b) = (request_key(&keys, "t", b"a"), request_key(&keys, "t", b"b"));
    assert_ne!(a, request_key(&keys, "u", b"a"), "the reply address is part of the key");
    assert_ne!(a, request_key(&keys, "ta", b""), "address and id do not run together");
    assert_eq!(a, request_key(&keys, "t", b"a"));
    assert_ne!(a, request_key(&RandomState::new(), "t", b"a"), "keyed per process: digests cannot be chosen");
    assert!(!w.seen(a, t0));
    assert!(w.seen(a, t0 + Duration::from_secs(10)));
    assert!(!w.seen(b, t0 + Duration::from_secs(31)));
    assert!(w.seen(a, t0 + Duration::from_secs(40)), "still in the previous generation");
    assert!(!w.seen(a, t0 + Duration::from_secs(95)), "forgotten after the window");
    assert!(w.seen(b, t0 + Duration::from_secs(96)), "the generation just before survives a rotation");
    assert!(w.seen(a, t0 + Duration::from_secs(97)), "seen again in the current generation");
    assert_eq!(w.len(), 2, "the oldest generation's keys are dropped, not only hidden");
}

#[test]
fn the_window_is_bounded() {
    let mut w = DuplicateWindow::new(Duration::from_secs(60), 100);
    let t0 = Instant::now();
    for i in 0..10_000u64 {
        w.seen(i, t0);
    }
    assert!(w.len() <= 100);
}

#[test]
fn renders_prometheus_text() {
    let m = Metrics::default();
    let labels = RequestLabels { platform: "ios".into(), variant: "next".into(), result: "ok" };
    let counted =
        Counted::Answered { labels, error: None, bytes: 10, request_key: Some(1), release: None, rate_limited: None };
    m.record(&counted);
    m.latency.observe(0.0002);
    m.broker_connected.set(1);
    let text = m.render();
    assert!(
        text.contains(r#"connector_scripts_requests_total{platform="ios",variant="next",result="ok"} 1"#),
        "{text}"
    );
    assert!(text.contains("connector_scripts_request_duration_seconds_count 1"), "{text}");
    assert!(text.contains("connector_scripts_broker_connected 1"), "{text}");
    assert!(text.contains("connector_scripts_reply_bytes_total 10"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn revision_series_follow_the_variants_served() {
    let m = Metrics::default();
    let rev = |variant: &str, revision: &str| RevisionInfoLabels {
        platform: "ios".into(),
        variant: variant.into(),
        revision: revision.into(),
    };
    m.set_revisions(vec![rev("next", "aaaa"), rev("legacy", "bbbb")]);
    m.set_revisions(vec![rev("next", "cccc")]);
    let text = m.render();
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("connector_scripts_revision_info{")).collect();
    assert_eq!(series, [r#"connector_scripts_revision_info{platform="ios",variant="next",revision="cccc"} 1"#]);
}
