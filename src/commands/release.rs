//! The release commands (`releases`, `rollout`, `promote`, `rollback`, `disable`, `enable`): MQTT clients that
//! read the rollout states retained on the broker, publish the next one, and wait until every live instance says
//! it applies it (`applied by 3/3 instances in 140 ms`).

use crate::cli::{OperatorArgs, ReleasesArgs, RollbackArgs, RolloutArgs, SwitchArgs, VariantArgs};
use crate::config::BrokerList;
use crate::mqtt::operator::{Operator, Target};
use crate::release::state::{ChangeError, ReleaseState};
use crate::release::trust::{open_state, read_state, seal_state};
use crate::signing::{Signer, TrustedKeys};
use crate::wire::topics::{ReleaseTopic, ReleaseTopics};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

type Key = (String, String);

/// What is on the broker: every state, and the revisions published next to it.
struct Retained {
    states: BTreeMap<Key, ReleaseState>,
    revisions: BTreeMap<Key, BTreeSet<String>>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")
}

async fn open(args: &OperatorArgs) -> anyhow::Result<(Operator, ReleaseTopics)> {
    let tls = args.access.tls();
    let brokers = BrokerList::parse(&args.broker, &tls)?;
    let credentials = args.access.credentials(brokers.first())?;
    let target = Target { brokers, tls, credentials };
    let topics = ReleaseTopics { prefix: args.release_topic.clone(), probe: String::new(), reports: String::new() };
    Ok((Operator::open(&target).await?, topics))
}

/// Reads the retained states and the revisions published next to them. With `keys`, a state no trusted key signed
/// is left out (named on stderr): a change never builds on, and never signs, what someone else put on the broker.
async fn read(
    op: &mut Operator,
    topics: &ReleaseTopics,
    args: &OperatorArgs,
    platform: Option<&str>,
    keys: Option<&TrustedKeys>,
) -> anyhow::Result<Retained> {
    let p = platform.unwrap_or("+");
    let filters = [format!("{}/{p}/+", topics.prefix), format!("{}/{p}/+/bundles/+", topics.prefix)];
    let mut r = Retained { states: BTreeMap::new(), revisions: BTreeMap::new() };
    for (topic, payload) in op.retained(&filters, args.timeout.0).await? {
        match topics.classify(&topic) {
            Some(ReleaseTopic::State(p, v)) => {
                let key = (p.to_string(), v.to_string());
                let state = match keys {
                    Some(keys) => open_state(keys, &key, &payload),
                    None => read_state(&key, &payload),
                };
                match state {
                    Ok(s) => {
                        r.states.insert(key, s);
                    }
                    Err(e) => eprintln!("ignored: {}: {e}", printable(&topic)),
                }
            }
            Some(ReleaseTopic::Bundle(p, v, rev)) => {
                r.revisions.entry((p.into(), v.into())).or_default().insert(rev.into());
            }
            _ => {}
        }
    }
    Ok(r)
}

/// `releases`.
pub fn releases(args: &ReleasesArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (retained, instances) = runtime()?.block_on(async {
        let (mut op, topics) = open(&args.op).await?;
        let own = args.op.key.as_ref().map(|_| operator_key(&args.op)).transpose()?;
        let keys = trusted(&args.op, own.as_ref())?;
        let r = read(&mut op, &topics, &args.op, args.platform.as_deref(), keys.as_ref()).await?;
        let instances = op.instances(&args.op.status_topic, args.op.timeout.0).await?;
        op.close().await;
        if keys.is_none() {
            // Shown as retained: anyone who can publish could have written them.
            writeln!(out, "(signatures not checked: give --verify-key or --key to list only trusted states)")?;
        }
        anyhow::Ok((r, instances))
    })?;
    if retained.states.is_empty() {
        bail!(
            "no release state on the broker under {}: is a service running with --release-mode manual?",
            args.op.release_topic
        );
    }
    for ((p, v), s) in &retained.states {
        writeln!(out, "{p}/{v}  (seq {}, {} by {})", s.seq, printable(&s.updated_at), printable(&s.by))?;
        writeln!(out, "  stable     {}", printable(&s.stable))?;
        match &s.candidate {
            Some(c) => writeln!(out, "  candidate  {} at {} %", printable(c), s.percent())?,
            None => writeln!(out, "  candidate  none")?,
        }
        if !s.disabled.is_empty() {
            let names: Vec<String> = s.disabled.iter().map(|d| printable(d)).collect();
            writeln!(out, "  disabled   {}", names.join(", "))?;
        }
        let stored = retained.revisions.get(&(p.clone(), v.clone())).cloned().unwrap_or_default();
        writeln!(out, "  revisions  {}", stored.into_iter().collect::<Vec<_>>().join(", "))?;
        // Summed over the live instances (each counts what it answered and the reports it saw).
        let mut served: BTreeMap<String, [u64; 3]> = BTreeMap::new();
        for doc in &instances {
            let counts = doc.served.as_ref().and_then(|s| s.get(&format!("{p}/{v}")));
            for (rev, c) in counts.into_iter().flatten() {
                let sum = served.entry(printable(rev)).or_default();
                for (total, n) in sum.iter_mut().zip(c) {
                    *total = total.saturating_add(*n);
                }
            }
        }
        for (rev, [requests, ok, failed]) in served {
            writeln!(out, "  served     {rev}: {requests} requests, reports {ok} ok / {failed} failed")?;
        }
    }
    writeln!(out, "({} instance(s) online)", instances.len())?;
    Ok(ExitCode::SUCCESS)
}

/// Free text from the broker made safe for a terminal: control characters (escape sequences) are escaped.
pub fn printable(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// The keys whose states a command trusts: `--verify-key` and the operator's own (`signer`). `None` when none are
/// given (`releases` then shows what is retained, unverified).
fn trusted(args: &OperatorArgs, signer: Option<&Signer>) -> anyhow::Result<Option<TrustedKeys>> {
    let keys = TrustedKeys::load(&args.verify_key)?;
    let keys = signer.map(Signer::public_key).into_iter().fold(keys, TrustedKeys::with);
    Ok((!keys.is_empty()).then_some(keys))
}

/// The operator key every change is signed with.
fn operator_key(args: &OperatorArgs) -> anyhow::Result<Signer> {
    let Some(path) = &args.key else {
        bail!(
            "changes are signed: give --key FILE (an operator private key from `connector-scripts keygen` whose .pub \
             the instances list with --operator-key)"
        );
    };
    Ok(Signer::load(path)?)
}

/// Who makes the change.
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{user}@{host}")
}

/// Applies `change` to the selected variants, publishes, waits for every live instance.
fn change(
    args: &OperatorArgs,
    select: (Option<&str>, Option<&str>),
    change: impl Fn(&ReleaseState, &BTreeSet<String>) -> Result<ReleaseState, ChangeError>,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (platform, variant) = select;
    let by = operator();
    let signer = operator_key(args)?;
    let keys = trusted(args, Some(&signer))?;
    runtime()?.block_on(async {
        let (mut op, topics) = open(args).await?;
        let retained = read(&mut op, &topics, args, platform, keys.as_ref()).await?;
        let chosen: Vec<(&Key, &ReleaseState)> =
            retained.states.iter().filter(|((_, v), _)| variant.is_none_or(|want| want == v)).collect();
        if chosen.is_empty() {
            bail!(
                "no release state for {}/{} under {}: is a service running with --release-mode manual?",
                platform.unwrap_or("*"),
                variant.unwrap_or("*"),
                args.release_topic
            );
        }
        let mut want = BTreeMap::new();
        for ((p, v), s) in chosen {
            let stored = retained.revisions.get(&(p.clone(), v.clone())).cloned().unwrap_or_default();
            let next = change(s, &stored).with_context(|| format!("{p}/{v}"))?;
            let next =
                ReleaseState { by: by.clone(), updated_at: crate::release::state::stamp(SystemTime::now()), ..next };
            op.publish_retained(&topics.state(p, v), seal_state(&(p.clone(), v.clone()), &next, &signer)).await?;
            let candidate = next
                .candidate
                .as_deref()
                .map_or("no candidate".to_string(), |c| format!("candidate {c} at {} %", next.percent()));
            writeln!(out, "{p}/{v}: stable {}, {candidate} (seq {})", next.stable, next.seq)?;
            want.insert(format!("{p}/{v}"), next.seq);
        }
        let started = Instant::now();
        let (done, missing) = op.wait_applied(&args.status_topic, &want, args.timeout.0).await?;
        op.close().await;
        let total = done.len() + missing.len();
        writeln!(out, "applied by {}/{total} instances in {} ms", done.len(), started.elapsed().as_millis())?;
        if missing.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            writeln!(out, "not applied by: {}", missing.join(", "))?;
            Ok(ExitCode::FAILURE)
        }
    })
}

/// `rollout`.
pub fn rollout(args: &RolloutArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let t = &args.target;
    change(&t.op, (Some(&t.platform), t.variant.as_deref()), |s, _| s.rollout(args.percent, "", SystemTime::now()), out)
}

/// `promote`.
pub fn promote(args: &VariantArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    change(&args.op, (Some(&args.platform), args.variant.as_deref()), |s, _| s.promote("", SystemTime::now()), out)
}

/// `rollback`.
pub fn rollback(args: &RollbackArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let t = &args.target;
    let to = args.to.as_deref();
    change(
        &t.op,
        (Some(&t.platform), t.variant.as_deref()),
        |s, stored| s.rollback(to, stored, "", SystemTime::now()),
        out,
    )
}

/// `disable` (`on` false) and `enable`.
pub fn switch(args: &SwitchArgs, on: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let name = args.connector.as_str();
    change(&args.op, (args.platform.as_deref(), None), |s, _| s.switch(name, on, "", SystemTime::now()), out)
}
