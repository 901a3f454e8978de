//! `request`: one (or `--count`) `getConnectors` request(s) sent as a device would, with a summary of the reply
//! and the round-trip time.

use crate::cli::RequestArgs;
use crate::config::BrokerList;
use crate::mqtt::client::{self, Reply, RequestOptions};
use crate::ratelimit::RateLimit;
use crate::signing::{verify_reply, TrustedKeys};
use anyhow::{bail, Context};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// `request`: one (or `--count`) request(s) as a device would send them.
pub fn request(args: &RequestArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let brokers = BrokerList::parse(&args.broker, &args.access.tls())?;
    let keys = TrustedKeys::load(&args.verify_key)?;
    let credentials = args.access.credentials(brokers.first())?;
    let topic = args.access.request_topic()?;
    let mut data = serde_json::json!({"platform": args.platform, "version": args.version});
    if let Some(r) = &args.revision {
        data["revision"] = r.clone().into();
    }
    if !args.connector.is_empty() {
        data["connectors"] = serde_json::json!(args.connector);
    }
    let options = RequestOptions {
        brokers,
        tls: args.access.tls(),
        credentials,
        topic,
        device: args.device.clone(),
        mqtt5: args.mqtt5,
        data,
        timeout: args.timeout.0,
        count: args.count as usize,
        // Per-device topics are rate-limited by the service: keep under its default limit.
        pace: (args.device.is_some() && args.pace > 0.0)
            .then_some(RateLimit { per_second: args.pace, burst: args.pace_burst.max(1.0) }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let replies = runtime.block_on(client::request(&options))?;
    if args.json {
        if let Some(last) = replies.last() {
            writeln!(out, "{}", last.body)?;
        }
    }
    let mut sink = std::io::sink();
    let checked = print_summary(&replies, if args.json { &mut sink } else { out }).and_then(|()| {
        match replies.last().filter(|_| !args.verify_key.is_empty()) {
            Some(last) => verify(&last.body, &keys, if args.json { &mut sink } else { out }),
            None => Ok(()),
        }
    });
    match checked {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Verifies a reply body against the trusted keys; prints `signature ok (key …)`.
fn verify(body: &serde_json::Value, keys: &TrustedKeys, out: &mut dyn Write) -> anyhow::Result<()> {
    if body.get("notModified") == Some(&serde_json::Value::Bool(true)) {
        writeln!(out, "not modified: nothing to verify")?;
        return Ok(());
    }
    let v = verify_reply(body, keys).context("verification failed")?;
    writeln!(
        out,
        "signature ok (key {}): manifest signed at {}, {} script(s) match their sha256 and size",
        v.key_id, v.manifest.signed_at, v.scripts
    )?;
    Ok(())
}

/// Prints a human summary of the replies; errors if the (last) reply is an error.
pub fn print_summary(replies: &[Reply], out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(last) = replies.last() else { bail!("no reply") };
    writeln!(out, "reply on {} ({} bytes) in {:.3} ms", last.topic, last.bytes, ms(last.rtt))?;
    let b = &last.body;
    if let Some(err) = b.get("err") {
        writeln!(out, "error {}: {}", err["code"].as_str().unwrap_or("?"), err["message"].as_str().unwrap_or(""))?;
        if let Some(known) = err.get("known") {
            writeln!(out, "known: {known}")?;
        }
        bail!("the service answered with error {}", err["code"].as_str().unwrap_or("?"));
    }
    if b.get("notModified") == Some(&serde_json::Value::Bool(true)) {
        writeln!(out, "not modified: revision {}", b["revision"].as_str().unwrap_or("?"))?;
    } else {
        writeln!(
            out,
            "platform {}  app {}  variant {}  revision {}",
            b["platform"].as_str().unwrap_or("?"),
            b["version"].as_str().unwrap_or("?"),
            b["variant"].as_str().unwrap_or("?"),
            b["revision"].as_str().unwrap_or("?")
        )?;
        for c in b["connectors"].as_array().into_iter().flatten() {
            let sha = c["sha256"].as_str().unwrap_or("");
            writeln!(
                out,
                "  {:<32} {:>7} bytes  sha256 {}{}",
                c["name"].as_str().unwrap_or("?"),
                c["code"].as_str().map_or(0, str::len),
                &sha[..sha.len().min(16)],
                if c.get("sourceMap").is_some() { "  +map" } else { "" }
            )?;
        }
    }
    if replies.len() > 1 {
        let mut rtts: Vec<Duration> = replies.iter().map(|r| r.rtt).collect();
        rtts.sort();
        writeln!(
            out,
            "round trip over {} requests: min {:.3} ms  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            rtts.len(),
            ms(rtts[0]),
            ms(rtts[rtts.len() / 2]),
            ms(rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)]),
            ms(rtts[rtts.len() - 1])
        )?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
