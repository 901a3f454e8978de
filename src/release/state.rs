//! The rollout state of one variant, as every instance of a share group shares it (a retained message on the
//! broker) and applies it: which revision is stable, which is the candidate, what share of devices get the
//! candidate, which connectors are switched off. Pure: the operations return the next state; nothing here does I/O.

use crate::catalog::bundle::sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::SystemTime;

/// `platform/variant`.
pub type VariantKey = (String, String);

/// Basis points in 100 %.
pub const ALL: u32 = 10_000;

/// One variant's release state. Instances apply the highest `seq` (ties: the greater serialisation, so that all
/// of them pick the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseState {
    /// Served to every device not on the candidate.
    pub stable: String,
    /// The revision being rolled out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Share of devices on the candidate, in basis points (0 – 10 000).
    #[serde(default)]
    pub basis_points: u32,
    /// Bucket seed: the candidate's revision, so each release reaches different early devices (and every
    /// instance computes the same buckets without agreeing on anything).
    #[serde(default)]
    pub seed: String,
    /// The latest build that entered the release flow: a rolled-back candidate does not come back as the
    /// candidate until a newer build replaces it.
    #[serde(default)]
    pub latest: String,
    /// Connectors switched off (the kill switch): left out of every reply of the variant.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub disabled: BTreeSet<String>,
    /// Grows by one with every change.
    pub seq: u64,
    /// RFC 3339.
    pub updated_at: String,
    /// Who made the change (`operator@host`, an instance name, `auto-halt`).
    pub by: String,
}

/// Which revision a device gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The stable revision.
    Stable,
    /// The candidate.
    Candidate,
}

impl Channel {
    /// As in replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Candidate => "candidate",
        }
    }
}

/// A device's bucket for a seed: 0 – 9 999, uniform, stable for the pair. Raising the percentage only adds devices.
pub fn bucket(seed: &str, device: &str) -> u32 {
    let h = sha256_hex(format!("{seed}\0{device}").as_bytes());
    let n = u64::from_str_radix(&h[..16], 16).unwrap_or(0);
    (n % u64::from(ALL)) as u32
}

/// Why an operation cannot apply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    /// `promote` or `rollout` without a candidate.
    #[error("no candidate to {0}: save a change under snippets/ first (in manual mode it becomes the candidate)")]
    NoCandidate(&'static str),
    /// A percentage out of range.
    #[error("percent must be between 0 and 100, not {0}")]
    Percent(f64),
    /// `rollback --to` a revision that is not in the store.
    #[error("revision {0} is not in the release store; `releases` lists the stored revisions")]
    UnknownRevision(String),
    /// The state's `seq` is at its maximum: no change can follow it (checked, never wrapped).
    #[error("seq {0} cannot grow: no change can follow this state")]
    SeqExhausted(u64),
}

impl ReleaseState {
    /// The first state of a variant: its first good build is stable.
    pub fn first(stable: &str, by: &str, now: SystemTime) -> ReleaseState {
        ReleaseState {
            stable: stable.to_string(),
            candidate: None,
            basis_points: 0,
            seed: String::new(),
            latest: stable.to_string(),
            disabled: BTreeSet::new(),
            seq: 1,
            updated_at: stamp(now),
            by: by.to_string(),
        }
    }

    /// Should this state replace `current`?
    pub fn supersedes(&self, current: &ReleaseState) -> bool {
        (self.seq, serde_json::to_vec(self).unwrap_or_default())
            > (current.seq, serde_json::to_vec(current).unwrap_or_default())
    }

    /// The percentage, for people.
    pub fn percent(&self) -> f64 {
        f64::from(self.basis_points) / 100.0
    }

    /// The channel of a device (`None`: it names no device, and gets stable).
    pub fn channel(&self, device: Option<&str>) -> Channel {
        match (&self.candidate, device) {
            (Some(_), Some(d)) if bucket(&self.seed, d) < self.basis_points => Channel::Candidate,
            _ => Channel::Stable,
        }
    }

    /// The state after one change: `seq` plus one, checked (a wrapped `seq` would lose to every older state).
    fn next(&self, by: &str, now: SystemTime) -> Result<ReleaseState, ChangeError> {
        let seq = self.seq.checked_add(1).ok_or(ChangeError::SeqExhausted(self.seq))?;
        Ok(ReleaseState { seq, updated_at: stamp(now), by: by.to_string(), ..self.clone() })
    }

    /// A new good build: it becomes the candidate at 0 % (nothing when it is already stable or the candidate).
    pub fn with_build(&self, revision: &str, by: &str, now: SystemTime) -> Option<ReleaseState> {
        if self.stable == revision || self.candidate.as_deref() == Some(revision) || self.latest == revision {
            return None;
        }
        let mut s = self.next(by, now).ok()?;
        s.latest = revision.to_string();
        s.candidate = Some(revision.to_string());
        s.seed = revision.to_string();
        s.basis_points = 0;
        Some(s)
    }

    /// `rollout --percent N`.
    pub fn rollout(&self, percent: f64, by: &str, now: SystemTime) -> Result<ReleaseState, ChangeError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ChangeError::Percent(percent));
        }
        if self.candidate.is_none() {
            return Err(ChangeError::NoCandidate("roll out"));
        }
        let mut s = self.next(by, now)?;
        s.basis_points = (percent * 100.0).round() as u32;
        Ok(s)
    }

    /// `promote`: the candidate becomes stable for everyone.
    pub fn promote(&self, by: &str, now: SystemTime) -> Result<ReleaseState, ChangeError> {
        let candidate = self.candidate.clone().ok_or(ChangeError::NoCandidate("promote"))?;
        let mut s = self.next(by, now)?;
        s.stable = candidate;
        s.candidate = None;
        s.basis_points = 0;
        Ok(s)
    }

    /// `rollback`: drop the candidate, or (`to`) make a stored revision stable again.
    pub fn rollback(
        &self,
        to: Option<&str>,
        stored: &BTreeSet<String>,
        by: &str,
        now: SystemTime,
    ) -> Result<ReleaseState, ChangeError> {
        let mut s = self.next(by, now)?;
        if let Some(rev) = to {
            if !stored.contains(rev) {
                return Err(ChangeError::UnknownRevision(rev.to_string()));
            }
            s.stable = rev.to_string();
        }
        s.candidate = None;
        s.basis_points = 0;
        Ok(s)
    }

    /// `disable` / `enable` a connector.
    pub fn switch(&self, connector: &str, on: bool, by: &str, now: SystemTime) -> Result<ReleaseState, ChangeError> {
        let mut s = self.next(by, now)?;
        if on {
            s.disabled.remove(connector);
        } else {
            s.disabled.insert(connector.to_string());
        }
        Ok(s)
    }
}

/// RFC 3339 with milliseconds.
pub fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The catalog asks a rollout's state which devices get its candidate.
impl crate::catalog::Audience for ReleaseState {
    fn includes(&self, device: Option<&str>) -> bool {
        self.channel(device) == Channel::Candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(percent: f64) -> ReleaseState {
        let now = SystemTime::UNIX_EPOCH;
        let s = ReleaseState::first("r1", "t", now).with_build("r2", "t", now).unwrap();
        s.rollout(percent, "t", now).unwrap()
    }

    fn on_candidate(s: &ReleaseState, devices: &[String]) -> BTreeSet<String> {
        devices.iter().filter(|d| s.channel(Some(d)) == Channel::Candidate).cloned().collect()
    }

    #[test]
    fn ten_percent_of_ten_thousand_devices_and_raising_only_adds() {
        let devices: Vec<String> = (0..10_000).map(|i| format!("device-{i}")).collect();
        let ten = on_candidate(&state(10.0), &devices);
        assert!((900..=1_100).contains(&ten.len()), "{} of 10 000 at 10 %", ten.len());
        let fifty = on_candidate(&state(50.0), &devices);
        assert!(ten.is_subset(&fifty), "raising the percentage dropped devices");
        assert!((4_800..=5_200).contains(&fifty.len()), "{}", fifty.len());
        // A new candidate reaches a different 10 %.
        let now = SystemTime::UNIX_EPOCH;
        let next = state(10.0).promote("t", now).unwrap().with_build("r3", "t", now).unwrap();
        let other = on_candidate(&next.rollout(10.0, "t", now).unwrap(), &devices);
        let overlap = ten.intersection(&other).count();
        assert!(overlap < 200, "{overlap} devices early again (about 100 expected by chance)");
        assert_eq!(state(10.0).channel(None), Channel::Stable);
        assert!(on_candidate(&state(0.0), &devices).is_empty());
        assert_eq!(on_candidate(&state(100.0), &devices).len(), 10_000);
    }

    #[test]
    fn operations_bump_seq_and_refuse_what_cannot_apply() {
        let now = SystemTime::UNIX_EPOCH;
        let s = ReleaseState::first("r1", "t", now);
        assert_eq!(s.with_build("r1", "t", now), None);
        assert_eq!(s.rollout(5.0, "t", now), Err(ChangeError::NoCandidate("roll out")));
        let c = s.with_build("r2", "t", now).unwrap();
        assert_eq!((c.seq, c.candidate.as_deref(), c.basis_points), (2, Some("r2"), 0));
        assert_eq!(c.rollout(101.0, "t", now), Err(ChangeError::Percent(101.0)));
        let p = c.rollout(25.0, "t", now).unwrap().promote("t", now).unwrap();
        assert_eq!((p.stable.as_str(), p.candidate.as_deref(), p.seq), ("r2", None, 4));
        let stored: BTreeSet<String> = ["r1".to_string(), "r2".to_string()].into();
        // A rolled-back build does not come back as the candidate; a newer one does.
        let dropped = c.rollback(None, &stored, "t", now).unwrap();
        assert_eq!((dropped.candidate.as_deref(), dropped.with_build("r2", "t", now)), (None, None));
        assert!(dropped.with_build("r3", "t", now).is_some());
        assert_eq!(p.rollback(Some("r9"), &stored, "t", now), Err(ChangeError::UnknownRevision("r9".into())));
        assert_eq!(p.rollback(Some("r1"), &stored, "t", now).unwrap().stable, "r1");
        let off = p.switch("a", false, "t", now).unwrap();
        assert!(off.disabled.contains("a") && !off.switch("a", true, "t", now).unwrap().disabled.contains("a"));
        assert!(off.supersedes(&p) && !p.supersedes(&off));
    }

    #[test]
    fn seq_never_wraps() {
        let now = SystemTime::UNIX_EPOCH;
        let last =
            ReleaseState { seq: u64::MAX, ..ReleaseState::first("r1", "t", now).with_build("r2", "t", now).unwrap() };
        assert_eq!(last.rollback(None, &BTreeSet::new(), "t", now), Err(ChangeError::SeqExhausted(u64::MAX)));
        assert_eq!(last.promote("t", now), Err(ChangeError::SeqExhausted(u64::MAX)));
        assert_eq!(last.switch("a", false, "t", now), Err(ChangeError::SeqExhausted(u64::MAX)));
        assert_eq!(last.with_build("r3", "t", now), None);
    }
}
