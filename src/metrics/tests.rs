//! Unit tests of `metrics.rs`.

use super::*;

#[test]
fn duplicates_within_the_window_only() {
    let mut w = DuplicateWindow::new(Duration::from_secs(60), 1000);
    let t0 = Instant::now();
    let (a, b) = (request_key("t", b"a"), request_key("t", b"b"));
    assert_ne!(a, request_key("u", b"a"), "the reply address is part of the key");
    assert!(!w.seen(a, t0));
    assert!(w.seen(a, t0 + Duration::from_secs(10)));
    assert!(!w.seen(b, t0 + Duration::from_secs(31)));
    assert!(w.seen(a, t0 + Duration::from_secs(40)), "still in the previous generation");
    assert!(!w.seen(a, t0 + Duration::from_secs(95)), "forgotten after the window");
}

#[test]
fn the_window_is_bounded() {
    let mut w = DuplicateWindow::new(Duration::from_secs(60), 100);
    let t0 = Instant::now();
    for i in 0..10_000u64 {
        w.seen(i, t0);
    }
    assert!(w.current.len() + w.previous.len() <= 100);
}

#[test]
fn renders_prometheus_text() {
    let m = Metrics::default();
    let labels = RequestLabels { platform: "ios".into(), variant: "next".into(), result: "ok".into() };
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
