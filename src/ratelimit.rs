//! Token buckets that keep one client from taking the service for itself: one per device (the segment after the
//! request topic), one shared by everything on the bare request topic (which names no device), and a global
//! ceiling over all requests, which a client rotating through made-up device ids cannot escape (the old system saw
//! one device send hundreds of identical lookups per message; an attacker can invent ids).
//!
//! The device table is bounded: when it is full, buckets that have refilled completely (idle devices) are
//! forgotten; if none has, the oldest half goes. Forgetting a bucket can only ever be generous to a device.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per device.
    pub per_second: f64,
    /// Requests a device may send at once after being quiet.
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Bucket {
        Bucket { tokens: limit.burst, last: now }
    }

    /// Refills for the time since the last call, then takes one token if there is one.
    fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * limit.per_second).min(limit.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One bucket shared by every caller (the bare topic, the global ceiling).
#[derive(Debug)]
pub struct SharedBucket {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

impl SharedBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> SharedBucket {
        SharedBucket { limit, bucket: Mutex::new(Bucket::full(limit, Instant::now())) }
    }

    /// Takes one token; false when there is none left.
    pub fn allow(&self, now: Instant) -> bool {
        self.bucket.lock().map_or(true, |mut b| b.take(self.limit, now))
    }
}

/// Which limit refused a request (the `scope` label of `connector_scripts_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The device's own bucket.
    Device,
    /// The bucket of the bare request topic.
    Bare,
    /// The ceiling over all requests.
    Global,
}

impl Scope {
    /// Every scope, in label order.
    pub const ALL: [Scope; 3] = [Scope::Device, Scope::Bare, Scope::Global];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::Bare => "bare",
            Scope::Global => "global",
        }
    }
}

/// The three limits of the request path; each is optional (`None`: off).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimits {
    /// Per device (`TOPIC/DEVICE`).
    pub device: Option<RateLimit>,
    /// Everything on the bare `TOPIC`, together.
    pub bare: Option<RateLimit>,
    /// Every request, whatever its topic.
    pub global: Option<RateLimit>,
}

/// The buckets behind [`RateLimits`].
#[derive(Debug)]
pub struct Admission {
    device: Option<Limiter>,
    bare: Option<SharedBucket>,
    global: Option<SharedBucket>,
}

impl Admission {
    /// Buckets for `limits`, remembering at most `max_devices` devices.
    pub fn new(limits: RateLimits, max_devices: usize) -> Admission {
        Admission {
            device: limits.device.map(|l| Limiter::new(l, max_devices)),
            bare: limits.bare.map(SharedBucket::new),
            global: limits.global.map(SharedBucket::new),
        }
    }

    /// Admits one request from `device` (`None`: the bare topic): its own bucket first, then the global ceiling.
    /// `Err` names the limit that refused it.
    pub fn check(&self, device: Option<&str>, now: Instant) -> Result<(), Scope> {
        let own = match device {
            Some(d) => self.device.as_ref().is_none_or(|l| l.allow(d, now)),
            None => self.bare.as_ref().is_none_or(|b| b.allow(now)),
        };
        if !own {
            return Err(if device.is_some() { Scope::Device } else { Scope::Bare });
        }
        if self.global.as_ref().is_some_and(|g| !g.allow(now)) {
            return Err(Scope::Global);
        }
        Ok(())
    }
}

/// The token buckets of all devices.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    max_devices: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// A limiter remembering at most `max_devices` devices.
    pub fn new(limit: RateLimit, max_devices: usize) -> Limiter {
        Limiter { limit, max_devices: max_devices.max(2), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `device`; false when it has none left.
    pub fn allow(&self, device: &str, now: Instant) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else { return true };
        if !buckets.contains_key(device) && buckets.len() >= self.max_devices {
            self.evict(&mut buckets, now);
        }
        let limit = self.limit;
        buckets.entry(device.to_string()).or_insert_with(|| Bucket::full(limit, now)).take(limit, now)
    }

    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let RateLimit { per_second, burst } = self.limit;
        buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second < burst);
        if buckets.len() >= self.max_devices {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.last).collect();
            ages.sort();
            let cutoff = ages[ages.len() / 2];
            buckets.retain(|_, b| b.last > cutoff);
        }
    }

    /// Devices currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate() {
        let l = Limiter::new(RateLimit { per_second: 2.0, burst: 3.0 }, 100);
        let t0 = Instant::now();
        let allowed = (0..10).filter(|_| l.allow("d", t0)).count();
        assert_eq!(allowed, 3, "the burst");
        assert!(!l.allow("d", t0 + Duration::from_millis(100)));
        assert!(l.allow("d", t0 + Duration::from_millis(600)), "one token after 0.5 s at 2/s");
        assert!(l.allow("other", t0), "devices are independent");
    }

    #[test]
    fn bare_topic_and_global_ceiling_bound_what_device_buckets_cannot() {
        let one = |burst| Some(RateLimit { per_second: 1.0, burst });
        let a = Admission::new(RateLimits { device: one(5.0), bare: one(2.0), global: one(8.0) }, 100_000);
        let t0 = Instant::now();
        // The bare topic has one bucket for every caller.
        assert_eq!((0..5).map(|_| a.check(None, t0)).filter(Result::is_ok).count(), 2);
        assert_eq!(a.check(None, t0), Err(Scope::Bare));
        // Rotating device ids: each new id has a full bucket, but the global ceiling holds (2 used above).
        let rotated: Vec<_> = (0..100).map(|i| a.check(Some(&format!("rot-{i}")), t0)).collect();
        assert_eq!(rotated.iter().filter(|r| r.is_ok()).count(), 6);
        assert!(rotated.iter().skip(6).all(|r| *r == Err(Scope::Global)));
        // Off means off.
        let open = Admission::new(RateLimits::default(), 10);
        assert!((0..1000).all(|i| open.check(Some(&i.to_string()), t0).is_ok() && open.check(None, t0).is_ok()));
    }

    #[test]
    fn memory_stays_bounded_under_many_devices() {
        let l = Limiter::new(RateLimit { per_second: 1.0, burst: 5.0 }, 1000);
        let t0 = Instant::now();
        for i in 0..100_000 {
            l.allow(&format!("device-{i}"), t0 + Duration::from_micros(i));
        }
        assert!(l.tracked() <= 1000);
    }
}
