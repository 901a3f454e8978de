//! Per-device token buckets, keyed by the device segment of the request topic, so one misbehaving phone cannot
//! multiply the load (the old system saw one device send hundreds of identical lookups per message).
//!
//! The table is bounded: when it is full, buckets that have refilled completely (idle devices) are forgotten;
//! if none has, the oldest half goes. Forgetting a bucket can only ever be generous to a device.

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
        let RateLimit { per_second, burst } = self.limit;
        if !buckets.contains_key(device) {
            buckets.insert(device.to_string(), Bucket { tokens: burst, last: now });
        }
        let Some(b) = buckets.get_mut(device) else { return true };
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
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
    fn memory_stays_bounded_under_many_devices() {
        let l = Limiter::new(RateLimit { per_second: 1.0, burst: 5.0 }, 1000);
        let t0 = Instant::now();
        for i in 0..100_000 {
            l.allow(&format!("device-{i}"), t0 + Duration::from_micros(i));
        }
        assert!(l.tracked() <= 1000);
    }
}
