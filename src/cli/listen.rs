//! A listener address given on the command line, or `off` (the ops listener, the embedded broker's WebSocket listener).

use std::net::SocketAddr;

/// An address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

impl std::str::FromStr for HttpListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(HttpListen(None));
        }
        s.parse().map(|a| HttpListen(Some(a))).map_err(|_| format!("{s:?} is not ADDRESS:PORT or `off`"))
    }
}
