//! The commands: flags → typed configuration → action. `check`, `show`, `list` build the catalog once and print;
//! `serve` runs the service; `request` acts as a device.

use crate::announce::Topics;
use crate::app::{self, ServeConfig};
use crate::catalog::{self, diagnostic, AppVersion, Catalog, CompileCache, Sources};
use crate::cli::{BrokerArgs, CatalogArgs, CheckArgs, CheckFormat, RequestArgs, ServeArgs, ShowArgs, ShowFormat};
use crate::client::{self, RequestOptions};
use crate::config::{self, BrokerChoice, BrokerUrl, Credentials, EmbeddedBroker};
use crate::ratelimit::RateLimit;
use crate::transport::TlsFiles;
use crate::wire::Limits;
use anyhow::{bail, Context};
use rumqttc::v5::mqttbytes::QoS;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

impl CatalogArgs {
    /// The catalog sources these flags name.
    pub fn sources(&self) -> Sources {
        Sources {
            snippets: self.snippets.clone(),
            platforms: self.platforms.clone(),
            max_file_size: self.max_file_size,
        }
    }

    /// Builds the catalog these flags name.
    pub fn build(&self) -> Catalog {
        catalog::build(&self.sources(), &mut CompileCache::default(), None)
    }
}

/// `check`: every diagnostic, a summary, exit 1 on errors (or warnings with `--deny-warnings`).
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let catalog = args.catalog.build();
    let (errors, warnings) = diagnostic::count(&catalog.diagnostics);
    let variants: usize = catalog.platforms.values().map(|p| p.bundles.len()).sum();
    match args.format {
        CheckFormat::Human => {
            for d in &catalog.diagnostics {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "check: {} connectors, {} platforms, {variants} variants, {} compile jobs in {} ms: {errors} error(s), {warnings} warning(s)",
                catalog.connectors.len(),
                catalog.platforms.len(),
                catalog.stats.jobs,
                catalog.stats.elapsed.as_millis(),
            )?;
        }
        CheckFormat::Json => {
            let doc = serde_json::json!({
                "errors": errors,
                "warnings": warnings,
                "connectors": catalog.connectors,
                "platforms": catalog.platforms.keys().collect::<Vec<_>>(),
                "variants": variants,
                "diagnostics": catalog.diagnostics,
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `show`: the variant an app gets and exactly its JavaScript.
pub fn show(args: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let version = AppVersion::parse(&args.version)?;
    let catalog = args.catalog.build();
    for d in catalog.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let bundle = catalog.resolve(&args.platform, &version)?;
    let mut only = Vec::new();
    for name in &args.connector {
        match bundle.script_index(name) {
            Some(i) => only.push(i),
            None => bail!(
                "variant {:?} of {} has no connector {name:?}; it has: {}",
                bundle.variant,
                bundle.platform,
                bundle.scripts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let selected: Vec<usize> = if args.connector.is_empty() { (0..bundle.scripts.len()).collect() } else { only };
    match args.format {
        ShowFormat::Json => {
            let mut buf = Vec::with_capacity(bundle.reply_len_hint());
            let subset = (!args.connector.is_empty()).then_some(selected.as_slice());
            bundle.write_reply(&version.to_string(), subset, &mut buf);
            out.write_all(&buf)?;
            writeln!(out)?;
        }
        ShowFormat::Js => {
            writeln!(
                out,
                "// platform {} app {version} → variant {:?} (versions {}), {}, revision {}",
                bundle.platform, bundle.variant, bundle.versions, bundle.options, bundle.revision
            )?;
            for i in selected {
                let s = &bundle.scripts[i];
                writeln!(out, "\n// ── {} ({} bytes, sha256 {})", s.name, s.code.len(), s.sha256)?;
                out.write_all(s.code.as_bytes())?;
                if !s.code.ends_with('\n') {
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `list`: one row per variant.
pub fn list(args: &CatalogArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let catalog = args.build();
    let mut rows = vec![["PLATFORM", "VARIANT", "VERSIONS", "COMPILE", "REVISION", "CONNECTORS"].map(String::from)];
    for p in catalog.platforms.values() {
        for b in &p.bundles {
            let names: Vec<&str> = b.scripts.iter().map(|s| s.name.as_str()).collect();
            rows.push([
                b.platform.clone(),
                b.variant.clone(),
                b.versions.clone(),
                b.options.to_string(),
                b.revision.clone(),
                format!("{} ({})", names.len(), names.join(", ")),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    let errors = catalog.error_count();
    if errors > 0 {
        writeln!(out, "\n{errors} error(s); run `connector-scripts check` for details").context("writing to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

impl BrokerArgs {
    fn tls(&self) -> TlsFiles {
        TlsFiles { ca: self.tls_ca.clone(), client: self.tls_cert.clone().zip(self.tls_key.clone()) }
    }

    fn credentials(&self, url: &BrokerUrl) -> anyhow::Result<Option<Credentials>> {
        Ok(config::credentials(
            url.username.as_deref(),
            self.mqtt_username.as_deref(),
            self.mqtt_password_file.as_deref(),
            std::env::var("CONNECTOR_SCRIPTS_MQTT_PASSWORD").ok(),
        )?)
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn default_client_id(with_pid: bool) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let host = if host.is_empty() { "host" } else { &host };
    if with_pid {
        format!("connector-scripts-{host}-{}", std::process::id())
    } else {
        format!("connector-scripts-{host}")
    }
}

/// Validated `serve` configuration from the flags and environment.
pub fn serve_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let (broker, credentials) = match &args.broker {
        Some(url) => {
            let url = BrokerUrl::parse(url)?;
            let creds = args.access.credentials(&url)?;
            (BrokerChoice::External(url), creds)
        }
        None => {
            let listen_v5 = args.embedded_listen_v5.unwrap_or_else(|| {
                SocketAddr::new(args.embedded_listen.ip(), args.embedded_listen.port().wrapping_add(1))
            });
            if listen_v5 == args.embedded_listen {
                anyhow::bail!("--embedded-listen and --embedded-listen-v5 must differ");
            }
            (BrokerChoice::Embedded(EmbeddedBroker { listen: args.embedded_listen, listen_v5 }), None)
        }
    };
    let topic = args.access.topic.trim_matches('/').to_string();
    if topic.is_empty() || topic.contains(['+', '#']) {
        anyhow::bail!("--topic must be a plain topic without wildcards, e.g. getConnectors");
    }
    for (flag, t) in [("--manifest-topic", &args.manifest_topic), ("--changed-topic", &args.changed_topic)] {
        if t.is_empty() || t.contains(['+', '#']) || t.ends_with('/') {
            anyhow::bail!("{flag} must be a plain topic without wildcards");
        }
    }
    if let Some(g) = &args.share_group {
        if g.is_empty() || g.contains(['/', '+', '#']) {
            anyhow::bail!("--share-group must be a plain name without '/', '+' or '#'");
        }
    }
    // A persistent session needs the same client id after a restart: no pid in the default then.
    let client_id = args.client_id.clone().unwrap_or_else(|| default_client_id(!args.persistent_session));
    if args.persistent_session && args.qos_in == 0 {
        anyhow::bail!("--persistent-session needs --qos-in 1 or 2: QoS 0 requests are never kept for the service");
    }
    let instance = args.instance.clone().unwrap_or_else(|| client_id.clone());
    if instance.is_empty() || instance.contains(['/', '+', '#']) {
        anyhow::bail!("--instance must be a plain name without '/', '+' or '#'");
    }
    Ok(ServeConfig {
        sources: args.catalog.sources(),
        broker,
        tls: args.access.tls(),
        client_id,
        credentials,
        request_topic: topic,
        share_group: args.share_group.clone(),
        qos_in: qos(args.qos_in),
        qos_out: args.qos_out.map(qos),
        max_packet_size: args.max_packet_size,
        limits: Limits { max_request_bytes: args.max_request_size, ..Limits::default() },
        keep_alive: args.keep_alive,
        backoff: (args.reconnect_min, args.reconnect_max),
        drain_timeout: args.drain_timeout,
        watch: !args.no_watch,
        debounce: args.debounce,
        topics: Topics { manifest_prefix: args.manifest_topic.clone(), changed_topic: args.changed_topic.clone() },
        http_listen: args.http_listen.0,
        instance: instance.clone(),
        status_prefix: args.status_topic.trim_end_matches('/').to_string(),
        rate_limit: (args.rate_limit > 0.0)
            .then_some(RateLimit { per_second: args.rate_limit, burst: args.rate_burst.max(1.0) }),
        session_expiry: args.persistent_session.then_some(args.session_expiry),
    })
}

/// `serve`: runs until SIGINT/SIGTERM.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = serve_config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(app::run(cfg, app::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// `request`: one (or `--count`) request(s) as a device would send them.
pub fn request(args: &RequestArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let broker = BrokerUrl::parse(&args.broker)?;
    let credentials = args.access.credentials(&broker)?;
    let mut data = serde_json::json!({"platform": args.platform, "version": args.version});
    if let Some(r) = &args.revision {
        data["revision"] = r.clone().into();
    }
    if !args.connector.is_empty() {
        data["connectors"] = serde_json::json!(args.connector);
    }
    let options = RequestOptions {
        broker,
        tls: args.access.tls(),
        credentials,
        topic: args.access.topic.clone(),
        device: args.device.clone(),
        mqtt5: args.mqtt5,
        data,
        timeout: args.timeout,
        count: args.count as usize,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let replies = runtime.block_on(client::request(&options))?;
    if args.json {
        if let Some(last) = replies.last() {
            writeln!(out, "{}", last.body)?;
        }
    }
    let mut sink = std::io::sink();
    match client::print_summary(&replies, if args.json { &mut sink } else { out }) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
