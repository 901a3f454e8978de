//! Unit tests of `config/broker.rs`.

use super::*;

#[test]
fn broker_urls() {
    let ok = [
        ("mqtt://localhost:1883", "mqtt://localhost:1883"),
        ("localhost", "mqtt://localhost:1883"),
        ("10.0.0.5:1884", "mqtt://10.0.0.5:1884"),
        ("mqtts://broker.example", "mqtts://broker.example:8883"),
        ("mqtt://svc@broker:1883/", "mqtt://svc@broker:1883"),
        ("mqtt://[::1]:1999", "mqtt://[::1]:1999"),
        ("tcp://h:1", "mqtt://h:1"),
    ];
    for (input, want) in ok {
        assert_eq!(BrokerUrl::parse(input).unwrap().to_string(), want, "{input}");
    }
    let u = BrokerUrl::parse("mqtt://h:1?client_id=cs-1").unwrap();
    assert_eq!(u.client_id.as_deref(), Some("cs-1"));
    let bad = [
        ("http://h", "unknown scheme"),
        ("mqtt://h:99999", "port must be"),
        ("mqtt://h:0", "port must be"),
        ("mqtt://:1883", "missing host"),
        ("mqtt://h?foo=1", "unknown query"),
    ];
    for (input, needle) in bad {
        let e = BrokerUrl::parse(input).unwrap_err().to_string();
        assert!(e.contains(needle), "{input}: {e}");
    }
}

#[test]
fn broker_lists_from_commas_and_repeats() {
    let tls = TlsFiles::default();
    let list = BrokerList::parse(&["mqtt://n1:1883,n2", "mqtts://n3"], &tls).unwrap();
    assert_eq!(list.to_string(), "mqtt://n1:1883,mqtt://n2:1883,mqtts://n3:8883");
    assert_eq!((list.len(), list.get(3).to_string()), (3, "mqtt://n1:1883".to_string()));
    let one = BrokerList::parse(&["h:1"], &tls).unwrap();
    assert_eq!(one, BrokerList::one(BrokerUrl::parse("h:1").unwrap()));
    // One URL keeps the plain message; in a list, the entry is named.
    assert!(BrokerList::parse(&["h:x"], &tls).unwrap_err().to_string().starts_with("invalid broker URL"));
    let e = BrokerList::parse(&["mqtt://u@a,mqtt://v@b"], &tls).unwrap_err().to_string();
    assert!(e.contains("entry 2 of 2") && e.contains("username"), "{e}");
    let e = BrokerList::parse(&["a?client_id=x,b"], &tls).unwrap_err().to_string();
    assert!(e.contains("entry 2 of 2") && e.contains("client_id"), "{e}");
    assert!(BrokerList::parse(&[" , "], &tls).unwrap_err().to_string().contains("empty list"));
}

#[test]
fn passwords_in_urls_are_refused_and_never_echoed() {
    let e = BrokerUrl::parse("mqtt://svc:hunter2@broker:1883").unwrap_err().to_string();
    assert!(e.contains("CONNECTOR_SCRIPTS_MQTT_PASSWORD"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn credentials_from_env_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let c = credentials(None, Some("svc"), Some(&file), Some("ignored".into())).unwrap().unwrap();
    assert_eq!(c.password.expose(), "s3cret");
    assert!(!format!("{c:?}").contains("s3cret"));
    let c = credentials(Some("u"), None, None, Some("envpw".into())).unwrap().unwrap();
    assert_eq!((c.username.as_str(), c.password.expose()), ("u", "envpw"));
    assert!(credentials(None, None, None, Some("pw".into())).is_err());
    assert_eq!(credentials(None, None, None, None).unwrap(), None);
    let e = credentials(Some("u"), None, Some(Path::new("/nonexistent/pw")), None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/pw"), "{e}");
}
