//! Unit tests of `state.rs`.

use super::*;

fn state() -> State {
    test_state()
}

#[test]
fn ready_needs_a_usable_catalog_and_confirmed_subscriptions() {
    let s = state();
    assert_eq!(s.readiness().reasons, ["catalog not loaded yet", "broker not connected yet"]);
    assert_eq!(s.readiness().causes, [NotReady::CatalogNotLoaded, NotReady::BrokerDisconnected]);
    s.link.set_connected(true);
    s.link.set_subscribed(true);
    s.link.set_replies_connected(true);
    s.swap_catalog(Arc::new(Catalog::default()));
    let r = s.readiness();
    assert!(!r.is_ready());
    assert!(r.reasons[0].contains("no usable platform"), "{r:?}");
    assert_eq!(r.causes, [NotReady::NoUsablePlatform]);
    assert!(!r.uncoded());
    let later_check = Readiness { reasons: vec!["a check without a code".into()], causes: vec![], warnings: vec![] };
    assert!(later_check.uncoded(), "counted as `other`");
    s.link.set_connected(false);
    s.link.set_error("nothing listens".into());
    assert!(s.readiness().reasons[1].contains("nothing listens"));
    assert!(!s.link.subscribed(), "a lost connection loses the subscriptions");
}
