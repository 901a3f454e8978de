//! `status`: one command that tells an operator what is wrong. Reads `/readyz` of a running service twice
//! (`--interval` apart, for request rates) as a typed [`StatusDoc`] and prints a summary; exit 0 ready, 1 not
//! ready, 2 unreachable.

use crate::cli::StatusArgs;
use crate::ops::status::{BuiltCatalog, StatusDoc};
use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// How long one read of the ops endpoint may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `url` (plain HTTP/1.1) and returns the status code and the body.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<(u16, Bytes)> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("invalid URL {url:?}"))?;
    let host = uri.host().ok_or_else(|| anyhow!("URL {url:?} has no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let fetch = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((code, body))
    };
    tokio::time::timeout(timeout, fetch).await.map_err(|_| anyhow!("no answer within {timeout:?}"))?
}

/// Reads the status document from `url`.
pub async fn read_status(url: &str) -> anyhow::Result<StatusDoc> {
    let (_, body) = get(url, READ_TIMEOUT).await?;
    serde_json::from_slice(&body).context("the reply is not a connector-scripts status document")
}

/// Runs `status`.
pub fn status(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let url = format!("{}/readyz", args.http.trim_end_matches('/'));
    let first = match runtime.block_on(read_status(&url)) {
        Ok(doc) => doc,
        Err(e) => {
            writeln!(out, "UNREACHABLE: cannot read {url}: {e:#}")?;
            writeln!(
                out,
                "  is connector-scripts running? (systemctl status connector-scripts; journalctl -u connector-scripts)"
            )?;
            return Ok(ExitCode::from(2));
        }
    };
    let interval = args.interval.0;
    let second = if interval.is_zero() {
        None
    } else {
        runtime.block_on(async {
            tokio::time::sleep(interval).await;
            read_status(&url).await.ok()
        })
    };
    let doc = second.as_ref().unwrap_or(&first);
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(doc)?)?;
    } else {
        print_summary(&Samples { first: &first, second: second.as_ref(), interval }, out)?;
    }
    Ok(if doc.ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One or two reads of the status document, `interval` apart.
struct Samples<'a> {
    first: &'a StatusDoc,
    second: Option<&'a StatusDoc>,
    interval: Duration,
}

fn print_summary(samples: &Samples<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let doc = samples.second.unwrap_or(samples.first);
    writeln!(
        out,
        "{}  instance {}  version {}  up since {} ({:.0} s)",
        if doc.ready { "READY" } else { "NOT READY" },
        doc.instance,
        doc.version,
        doc.started_at,
        doc.uptime_seconds
    )?;
    for reason in &doc.reasons {
        writeln!(out, "  why: {reason}")?;
    }
    for warning in &doc.warnings {
        writeln!(out, "  warn: {warning}")?;
    }
    let b = &doc.broker;
    let link = match (b.connected, b.subscribed) {
        (true, true) => "connected, subscribed",
        (true, false) => "connected, NOT subscribed",
        (false, _) => "DISCONNECTED",
    };
    let last_error = b.last_error.as_ref().map(|e| format!("  last error: {e}")).unwrap_or_default();
    let node = match b.nodes.iter().position(|n| *n == b.url) {
        Some(i) if b.nodes.len() > 1 => format!(" (node {} of {})", i + 1, b.nodes.len()),
        _ => String::new(),
    };
    writeln!(out, "broker   {}{node}  {link}  reconnects {}{last_error}", b.url, b.reconnects)?;
    match &doc.catalog.built {
        Some(c) => print_catalog(c, out)?,
        None => writeln!(out, "catalog  not loaded")?,
    }
    for (variant, s) in &doc.releases {
        // Every field came from the broker: printed terminal-safe.
        let p = super::release::printable;
        let candidate = s
            .candidate
            .as_deref()
            .map_or("no candidate".into(), |c| format!("candidate {} at {} %", p(c), s.percent()));
        let disabled = if s.disabled.is_empty() { String::new() } else { format!("  disabled {:?}", s.disabled) };
        let (variant, stable, by) = (p(variant), p(&s.stable), p(&s.by));
        writeln!(out, "release  {variant}: stable {stable}, {candidate} (seq {}, by {by}){disabled}", s.seq)?;
    }
    print_requests(samples, out)
}

fn print_catalog(c: &BuiltCatalog, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "catalog  built {} in {} ms, {} reloads, {} connectors, {} error(s), {} warning(s)",
        c.built_at, c.build_ms, c.reloads, c.connectors, c.errors, c.warnings
    )?;
    for d in &c.diagnostics {
        writeln!(out, "  {} [{}] {}: {}", d.severity, d.code, d.location.as_deref().unwrap_or("-"), d.message)?;
        for line in d.frame.iter().flat_map(|f| f.lines()) {
            writeln!(out, "      {line}")?;
        }
    }
    for v in &c.variants {
        writeln!(
            out,
            "  {:<10} {:<10} {:<14} {:<18} revision {}  {} connectors",
            v.platform, v.variant, v.versions, v.compile, v.revision, v.connectors
        )?;
    }
    Ok(())
}

fn print_requests(samples: &Samples<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let Samples { first, second, interval } = *samples;
    let r = &second.unwrap_or(first).requests;
    write!(out, "requests")?;
    for (platform, total) in &r.by_platform {
        let rate = match second {
            Some(_) => {
                let before = first.requests.by_platform.get(platform).copied().unwrap_or(0);
                format!("{:.1}/s", total.saturating_sub(before) as f64 / interval.as_secs_f64())
            }
            None => "-".into(),
        };
        write!(out, "  {platform}: {total} ({rate})")?;
    }
    writeln!(
        out,
        "\n         not modified {}  events {}  dropped {}  duplicates {}  overloaded {}",
        r.not_modified, r.events, r.dropped, r.duplicates, r.overloaded
    )?;
    let errors: Vec<String> = r.errors.iter().filter(|(_, n)| **n > 0).map(|(code, n)| format!("{code} {n}")).collect();
    if !errors.is_empty() {
        writeln!(out, "         errors: {}", errors.join(", "))?;
    }
    Ok(())
}
