//! Log setup: structured tracing; plain lines without colours or timestamps under journald (it adds its own);
//! JSON lines for log shippers. `RUST_LOG` overrides the default filter.

use crate::cli::LogFormat;
use tracing_subscriber::EnvFilter;

/// The default filter: our own info, the embedded broker's chatter off (it logs every connection at error level).
const DEFAULT_FILTER: &str = "info,rumqttd=off,rumqttc=warn";

/// Installs the global subscriber (stderr). Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text if journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
    let _ = result;
}
