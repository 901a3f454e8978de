//! Keys for managed releases in tests: an instance signing key and an operator key per test (written by the
//! same `keygen` operators use), the flags that pass them, and reading the signed states on the broker.

use connector_scripts::release::state::ReleaseState;
use std::path::PathBuf;

/// An instance signing key and an operator key in a temporary directory.
pub struct ReleaseKeys {
    _dir: tempfile::TempDir,
    /// Instance signing key pair (`.key`, `.pub`).
    pub signing: (PathBuf, PathBuf),
    /// Operator key pair.
    pub operator: (PathBuf, PathBuf),
}

impl ReleaseKeys {
    pub fn new() -> ReleaseKeys {
        let dir = tempfile::tempdir().unwrap();
        let pair = |name: &str| {
            let k = connector_scripts::signing::keygen(&dir.path().join(name)).unwrap();
            (k.private, k.public)
        };
        let (signing, operator) = (pair("signing"), pair("operator"));
        ReleaseKeys { _dir: dir, signing, operator }
    }

    /// What `serve --release-mode manual` needs besides the state directory.
    pub fn serve_flags(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        vec!["--signing-key".into(), path(&self.signing.0), "--operator-key".into(), path(&self.operator.1)]
    }

    /// What a release command needs to sign a change and to trust the instances' states.
    pub fn operator_flags(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        vec!["--key".into(), path(&self.operator.0), "--verify-key".into(), path(&self.signing.1)]
    }
}

/// The state in a retained `ios/next` release-state message (signature not checked: the instances check it).
pub fn parse_state(payload: &[u8]) -> ReleaseState {
    let key = ("ios".to_string(), "next".to_string());
    connector_scripts::release::trust::read_state(&key, payload).unwrap()
}

/// Starts the service in manual mode with `keys` on its embedded broker (free ports, retried if one was taken
/// meanwhile); waits until ready. Returns the service and the MQTT 3.1.1 port apps and attackers use.
pub async fn serve_embedded_manual(
    keys: &ReleaseKeys,
    catalog: &super::TempCatalog,
    state_dir: &std::path::Path,
    extra: &[&str],
) -> (connector_scripts::app::Running, u16) {
    let mut flags: Vec<String> =
        vec!["--release-mode".into(), "manual".into(), "--state-dir".into(), state_dir.display().to_string()];
    flags.extend(keys.serve_flags());
    flags.extend(extra.iter().map(|s| s.to_string()));
    let (running, ports) = super::mqtt::serve_embedded_with(catalog, &flags, false).await;
    (running, ports.v4)
}

/// `connector_scripts_bus_rejected_total` of the series with `label` (`kind="state"`, `reason="unsigned"`), summed.
pub fn rejected(state: &connector_scripts::state::State, label: &str) -> u64 {
    let text = connector_scripts::ops::metrics_text(state);
    text.lines()
        .filter(|l| l.starts_with("connector_scripts_bus_rejected_total{") && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
