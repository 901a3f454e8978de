//! TLS for `mqtts://`: a rustls client configuration (ring provider) from the configured CA file or the system
//! roots, with an optional client certificate.

use crate::config::TlsFiles;
use rumqttc::TlsConfiguration;
use std::path::PathBuf;
use std::sync::Arc;

/// TLS files unreadable or invalid.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsError(pub String);

/// A rustls client configuration (ring provider) from the CA file or the system roots.
pub fn tls_config(files: &TlsFiles) -> Result<TlsConfiguration, TlsError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = TlsError;
    let read_certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = std::fs::read(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
        let certs = certs.map_err(|e| err(format!("{}: not a PEM certificate file: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(err(format!("{}: no certificate found", path.display())));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| err(format!("{}: {e}", ca.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(err("no system CA certificates found; pass --tls-ca FILE".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &files.client {
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let pem = std::fs::read(key).map_err(|e| err(format!("cannot read {}: {e}", key.display())))?;
            let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| err(format!("{}: {e}", key.display())))?
                .ok_or_else(|| err(format!("{}: no private key found", key.display())))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| err(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// How rumqttc reaches `broker`: the address for `MqttOptions::new` (the host, or the whole URL for WebSocket)
/// and the transport to set (`None`: plain TCP). One place for every connection the service and its commands open.
pub fn endpoint(
    broker: &crate::config::BrokerUrl,
    files: &TlsFiles,
) -> Result<(String, Option<rumqttc::Transport>), TlsError> {
    use crate::config::Scheme;
    use rumqttc::Transport;
    let transport = match broker.scheme {
        Scheme::Mqtt => None,
        Scheme::Mqtts => Some(Transport::tls_with_config(tls_config(files)?)),
        Scheme::Ws => Some(Transport::Ws),
        Scheme::Wss => Some(Transport::wss_with_config(tls_config(files)?)),
    };
    Ok((broker.address(), transport))
}
