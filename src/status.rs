//! `status`: one command that tells an operator what is wrong. Reads `/readyz` of a running service twice
//! (`--interval` apart, for request rates) and prints a summary; exit 0 ready, 1 not ready, 2 unreachable.

use crate::cli::StatusArgs;
use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// GETs `url` (plain HTTP/1.1) and returns the status code and the body parsed as JSON.
pub async fn get_json(url: &str, timeout: Duration) -> anyhow::Result<(u16, Value)> {
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
        let json: Value = serde_json::from_slice(&body).context("the reply is not JSON")?;
        anyhow::Ok((code, json))
    };
    tokio::time::timeout(timeout, fetch).await.map_err(|_| anyhow!("no answer within {timeout:?}"))?
}

/// Runs `status`.
pub fn run(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let url = format!("{}/readyz", args.http.trim_end_matches('/'));
    let first = runtime.block_on(get_json(&url, Duration::from_secs(5)));
    let (code, first) = match first {
        Ok(r) => r,
        Err(e) => {
            writeln!(out, "UNREACHABLE: cannot read {url}: {e:#}")?;
            writeln!(
                out,
                "  is connector-scripts running? (systemctl status connector-scripts; journalctl -u connector-scripts)"
            )?;
            return Ok(ExitCode::from(2));
        }
    };
    let second = if args.interval.is_zero() {
        None
    } else {
        runtime.block_on(async {
            tokio::time::sleep(args.interval).await;
            get_json(&url, Duration::from_secs(5)).await.ok().map(|(_, v)| v)
        })
    };
    let doc = second.as_ref().unwrap_or(&first);
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(doc)?)?;
    } else {
        print_summary(&first, second.as_ref(), args.interval, out)?;
    }
    let ready = doc["ready"].as_bool().unwrap_or(code == 200);
    Ok(if ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_summary(first: &Value, second: Option<&Value>, interval: Duration, out: &mut dyn Write) -> anyhow::Result<()> {
    let doc = second.unwrap_or(first);
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let ready = doc["ready"].as_bool().unwrap_or(false);
    writeln!(
        out,
        "{}  instance {}  version {}  up since {} ({:.0} s)",
        if ready { "READY" } else { "NOT READY" },
        s(&doc["instance"]),
        s(&doc["version"]),
        s(&doc["startedAt"]),
        doc["uptimeSeconds"].as_f64().unwrap_or(0.0)
    )?;
    for reason in doc["reasons"].as_array().into_iter().flatten() {
        writeln!(out, "  why: {}", s(reason))?;
    }
    let b = &doc["broker"];
    writeln!(
        out,
        "broker   {}  {}  reconnects {}{}",
        s(&b["url"]),
        if b["connected"].as_bool() == Some(true) {
            if b["subscribed"].as_bool() == Some(true) {
                "connected, subscribed"
            } else {
                "connected, NOT subscribed"
            }
        } else {
            "DISCONNECTED"
        },
        b["reconnects"],
        b["lastError"].as_str().map(|e| format!("  last error: {e}")).unwrap_or_default()
    )?;
    let c = &doc["catalog"];
    if c["loaded"].as_bool() == Some(true) {
        writeln!(
            out,
            "catalog  built {} in {} ms, {} reloads, {} connectors, {} error(s), {} warning(s)",
            s(&c["builtAt"]),
            c["buildMs"],
            c["reloads"],
            c["connectors"],
            c["errors"],
            c["warnings"]
        )?;
        for d in c["diagnostics"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {} [{}] {}: {}",
                s(&d["severity"]),
                s(&d["code"]),
                d["location"].as_str().unwrap_or("-"),
                s(&d["message"])
            )?;
        }
        for v in c["variants"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {:<10} {:<10} {:<14} {:<18} revision {}  {} connectors",
                s(&v["platform"]),
                s(&v["variant"]),
                s(&v["versions"]),
                s(&v["compile"]),
                s(&v["revision"]),
                v["connectors"]
            )?;
        }
    } else {
        writeln!(out, "catalog  not loaded")?;
    }
    let r = &doc["requests"];
    let rate = |platform: &str, now: u64| -> String {
        match second {
            Some(_) => {
                let before = first["requests"]["byPlatform"][platform].as_u64().unwrap_or(0);
                format!("{:.1}/s", now.saturating_sub(before) as f64 / interval.as_secs_f64())
            }
            None => "-".into(),
        }
    };
    write!(out, "requests")?;
    for (platform, total) in r["byPlatform"].as_object().into_iter().flatten() {
        let total = total.as_u64().unwrap_or(0);
        write!(out, "  {platform}: {total} ({})", rate(platform, total))?;
    }
    writeln!(
        out,
        "\n         not modified {}  events {}  dropped {}  duplicates {}  overloaded {}",
        r["notModified"], r["events"], r["dropped"], r["duplicates"], r["overloaded"]
    )?;
    let errors: Vec<String> = r["errors"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    if !errors.is_empty() {
        writeln!(out, "         errors: {}", errors.join(", "))?;
    }
    Ok(())
}
