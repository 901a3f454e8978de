//! Counting the apps' outcome reports so that no single device can move a decision: a report counts only when it
//! names its device (`<report topic>/<device>`, a topic the broker's ACL ties to that device), once per device
//! and revision (a later report of the same device replaces its vote), within a per-device rate limit, and only on
//! the channel the device's bucket puts it on. `--auto-halt` thus decides on distinct devices. Memory is bounded:
//! one tally per variant, reset when its stable or candidate changes, at most [`MAX_VOTERS`] devices each.

use super::state::{Channel, ReleaseState};
use crate::ratelimit::{Limiter, RateLimit};
use std::collections::HashMap;
use std::time::Instant;

/// An app's outcome report (`connectorsReport`), as counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// Platform and variant the reported revision belongs to.
    pub key: super::state::VariantKey,
    /// The revision.
    pub revision: String,
    /// `stable` or `candidate`.
    pub channel: &'static str,
    /// Worked?
    pub ok: bool,
}

/// Devices whose votes one variant's tally remembers; reports of further devices are not counted.
pub const MAX_VOTERS: usize = 200_000;

/// Reports one device may send: sustained per second, and at once.
const PER_DEVICE: RateLimit = RateLimit { per_second: 1.0, burst: 20.0 };

/// What became of one report (the `reason` label of `connector_scripts_reports_ignored_total`, or a vote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new vote, or a device's changed outcome for a revision.
    Counted,
    /// The same device said the same about the same revision before.
    Repeated,
    /// On the bare topic: nobody to attribute it to.
    Unattributed,
    /// Over the device's rate limit.
    RateLimited,
    /// A channel the device is not on (a candidate report from a stable device, or the other way).
    WrongChannel,
    /// A revision this variant does not serve, or not a report.
    Unknown,
    /// The tally remembers [`MAX_VOTERS`] devices already.
    Full,
}

impl Outcome {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::Counted => "counted",
            Outcome::Repeated => "repeated",
            Outcome::Unattributed => "unattributed",
            Outcome::RateLimited => "rate_limited",
            Outcome::WrongChannel => "wrong_channel",
            Outcome::Unknown => "unknown",
            Outcome::Full => "full",
        }
    }
}

/// One variant's votes for its current (stable, candidate) pair: per device, its outcome on each channel.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    epoch: (String, Option<String>),
    votes: HashMap<String, [Option<bool>; 2]>,
    /// Distinct devices (ok, failed) on stable.
    pub stable: (u64, u64),
    /// Distinct devices (ok, failed) on the candidate.
    pub candidate: (u64, u64),
}

impl Tally {
    /// Counts `device`'s report `ok` on `channel`, for the state `s` (a new stable or candidate starts afresh).
    fn vote(&mut self, s: &ReleaseState, device: &str, channel: Channel, ok: bool) -> Outcome {
        let epoch = (s.stable.clone(), s.candidate.clone());
        if self.epoch != epoch {
            *self = Tally { epoch, ..Tally::default() };
        }
        if s.channel(Some(device)) != channel {
            return Outcome::WrongChannel;
        }
        if !self.votes.contains_key(device) && self.votes.len() >= MAX_VOTERS {
            return Outcome::Full;
        }
        let slot = usize::from(channel == Channel::Candidate);
        let vote = &mut self.votes.entry(device.to_string()).or_default()[slot];
        if *vote == Some(ok) {
            return Outcome::Repeated;
        }
        let counts = if channel == Channel::Candidate { &mut self.candidate } else { &mut self.stable };
        match vote.replace(ok) {
            Some(true) => counts.0 -= 1,
            Some(false) => counts.1 -= 1,
            None => {}
        }
        if ok {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        Outcome::Counted
    }
}

/// Every variant's tally and the per-device report limiter.
#[derive(Debug)]
pub struct Ballot {
    limiter: Limiter,
}

impl Default for Ballot {
    fn default() -> Self {
        Ballot { limiter: Limiter::new(PER_DEVICE, MAX_VOTERS) }
    }
}

impl Ballot {
    /// Counts one attributed report into `tally`.
    pub fn count(
        &self,
        tally: &mut Tally,
        s: &ReleaseState,
        device: &str,
        channel: Channel,
        ok: bool,
        now: Instant,
    ) -> Outcome {
        if !self.limiter.allow(device, now) {
            return Outcome::RateLimited;
        }
        tally.vote(s, device, channel, ok)
    }
}

/// When a candidate is worse enough than stable to halt it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HaltPolicy {
    /// Distinct reporting devices needed on each channel before anything is decided.
    pub min_reports: u64,
    /// How much higher the candidate's failure rate must be (0.05: five percentage points).
    pub margin: f64,
    /// Two-proportion z score the difference must reach.
    pub z: f64,
}

impl Default for HaltPolicy {
    fn default() -> Self {
        HaltPolicy { min_reports: 50, margin: 0.05, z: 3.0 }
    }
}

impl HaltPolicy {
    /// Is `candidate` (ok, failed) significantly worse than `stable` (ok, failed)?
    pub fn halts(&self, stable: (u64, u64), candidate: (u64, u64)) -> bool {
        let (ns, nc) = (stable.0 + stable.1, candidate.0 + candidate.1);
        if ns < self.min_reports || nc < self.min_reports {
            return false;
        }
        let (ps, pc) = (stable.1 as f64 / ns as f64, candidate.1 as f64 / nc as f64);
        if pc < ps + self.margin {
            return false;
        }
        let p = (stable.1 + candidate.1) as f64 / (ns + nc) as f64;
        let se = (p * (1.0 - p) * (1.0 / ns as f64 + 1.0 / nc as f64)).sqrt();
        se == 0.0 || (pc - ps) / se >= self.z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn half() -> ReleaseState {
        let now = SystemTime::UNIX_EPOCH;
        ReleaseState::first("r1", "t", now).with_build("r2", "t", now).unwrap().rollout(50.0, "t", now).unwrap()
    }

    fn device_on(s: &ReleaseState, channel: Channel, skip: usize) -> String {
        (0..).map(|i| format!("d-{i}")).filter(|d| s.channel(Some(d)) == channel).nth(skip).unwrap()
    }

    #[test]
    fn one_vote_per_device_and_revision_on_its_own_channel() {
        let (s, ballot, mut t) = (half(), Ballot::default(), Tally::default());
        let now = Instant::now();
        let c = device_on(&s, Channel::Candidate, 0);
        assert_eq!(ballot.count(&mut t, &s, &c, Channel::Candidate, false, now), Outcome::Counted);
        assert_eq!(ballot.count(&mut t, &s, &c, Channel::Candidate, false, now), Outcome::Repeated);
        assert_eq!(t.candidate, (0, 1));
        // A changed outcome replaces the device's vote.
        assert_eq!(ballot.count(&mut t, &s, &c, Channel::Candidate, true, now), Outcome::Counted);
        assert_eq!(t.candidate, (1, 0));
        assert_eq!(ballot.count(&mut t, &s, &c, Channel::Stable, true, now), Outcome::WrongChannel);
        let st = device_on(&s, Channel::Stable, 0);
        assert_eq!(ballot.count(&mut t, &s, &st, Channel::Candidate, false, now), Outcome::WrongChannel);
        assert_eq!(ballot.count(&mut t, &s, &st, Channel::Stable, true, now), Outcome::Counted);
        assert_eq!((t.stable, t.candidate), ((1, 0), (1, 0)));
        // A new candidate starts afresh.
        let next = s.promote("t", SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(ballot.count(&mut t, &next, &st, Channel::Stable, false, now), Outcome::Counted);
        assert_eq!((t.stable, t.candidate), ((0, 1), (0, 0)));
    }

    #[test]
    fn a_flooding_device_is_rate_limited() {
        let (s, ballot, mut t) = (half(), Ballot::default(), Tally::default());
        let now = Instant::now();
        let c = device_on(&s, Channel::Candidate, 0);
        let outcomes: Vec<Outcome> =
            (0..1_000).map(|i| ballot.count(&mut t, &s, &c, Channel::Candidate, i % 2 == 0, now)).collect();
        assert!(outcomes.iter().filter(|o| **o == Outcome::RateLimited).count() >= 1_000 - 20);
        assert!(t.candidate.0 + t.candidate.1 <= 1, "{:?}", t.candidate);
    }

    #[test]
    fn halts_only_a_candidate_significantly_worse_than_stable() {
        let p = HaltPolicy::default();
        assert!(p.halts((950, 50), (70, 30)), "30 % failing against 5 %");
        assert!(!p.halts((95, 5), (95, 5)), "equal rates");
        assert!(!p.halts((950, 50), (28, 2)), "too few candidate reports");
        assert!(!p.halts((900, 100), (85, 15)), "15 % against 10 %: not significant");
        assert!(!p.halts((0, 0), (0, 100)), "no stable reports to compare with");
    }
}
