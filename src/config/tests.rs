//! Unit tests of `config/mod.rs`.

use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn parse(extra: &[&str]) -> Result<ServeConfig, ConfigError> {
    let cli = Cli::try_parse_from(["connector-scripts", "serve"].iter().chain(extra)).expect("flags parse");
    match cli.command {
        Command::Serve(args) => ServeConfig::from_args(&args),
        _ => unreachable!("serve was parsed"),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.mqtt.qos_in, QoS::AtLeastOnce);
    assert_eq!(c.mqtt.keep_alive, Duration::from_secs(30));
    assert_eq!(c.ops.http_listen, Some(([127, 0, 0, 1], 9464).into()));
    assert_eq!(c.limits.rate_limits.device, Some(RateLimit { per_second: 10.0, burst: 30.0 }));
    assert_eq!(c.limits.rate_limits.bare, Some(RateLimit { per_second: 100.0, burst: 300.0 }));
    assert_eq!(c.limits.rate_limits.global, Some(RateLimit { per_second: 10_000.0, burst: 20_000.0 }));
    assert!(c.reload.watch);
    assert_eq!(
        c.mqtt.broker,
        BrokerChoice::Embedded(EmbeddedBroker {
            listen: ([127, 0, 0, 1], 1883).into(),
            listen_v5: ([127, 0, 0, 1], 1884).into(),
            listen_ws: Some(([127, 0, 0, 1], 1885).into()),
            users: None,
            max_packet: (16 << 20) - 4096,
        })
    );
}

#[test]
fn mistakes_name_the_flag() {
    for (flags, needle) in [
        (&["--topic", "a/+"][..], "--topic"),
        (&["--manifest-topic", "m/#"], "--manifest-topic"),
        (&["--share-group", "a/b"], "--share-group"),
        (&["--instance", "x+"], "--instance"),
        (&["--persistent-session", "--qos-in", "0"], "--persistent-session"),
        (&["--embedded-listen-v5", "127.0.0.1:1883"], "--embedded-listen-v5"),
        (&["--embedded-listen", "0.0.0.0:1883"], "--embedded-users FILE"),
        (&["--embedded-listen-v5", "0.0.0.0:1884"], "--embedded-allow-anonymous"),
        (&["--broker", "http://x"], "unknown scheme"),
    ] {
        let e = parse(flags).unwrap_err().to_string();
        assert!(e.contains(needle), "{flags:?}: {e}");
    }
}

#[test]
fn client_id_from_the_url_wins() {
    let c = parse(&["--broker", "mqtt://h:1?client_id=from-url", "--client-id", "flag"]).unwrap();
    assert_eq!(c.mqtt.client_id, "from-url");
    assert_eq!(c.ops.instance, "from-url");
}

#[test]
fn manual_mode_refuses_to_start_without_a_signing_key_and_an_operator_key() {
    let base = ["--release-mode", "manual", "--state-dir", "/var/lib/cs"];
    for (extra, flag) in [
        (&[][..], "--signing-key"),
        (&["--signing-key", "k.key"], "--operator-key"),
        (&["--operator-key", "op.pub"], "--signing-key"),
    ] {
        let e = parse(&[&base[..], extra].concat()).unwrap_err().to_string();
        assert!(e.starts_with(flag) && e.contains("signed release states") && !e.contains('\n'), "{extra:?}: {e}");
    }
    let ok = parse(&[&base[..], &["--signing-key", "k.key", "--operator-key", "op.pub"]].concat()).unwrap();
    assert_eq!(ok.releases.map(|r| r.operator_keys), Some(vec![PathBuf::from("op.pub")]));
}
