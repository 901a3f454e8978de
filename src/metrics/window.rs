//! The duplicate-request window: request digests seen in the last minute, bounded, in one table.

use nohash_hasher::BuildNoHashHasher;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// A 64-bit digest of a request key (reply address + request id): 8 bytes per remembered request, and collisions
/// are negligible at 200 000. `keys` is randomly keyed once per process, so a client cannot choose ids whose
/// digests collide in the window's table (which uses the digest as its own hash).
pub fn request_key(keys: &RandomState, reply_address: &str, id: &[u8]) -> u64 {
    keys.hash_one((reply_address, id))
}

/// Request keys seen recently: two generations, each covering half the window; bounded in size.
///
/// Both generations share one table, the generation's parity in the digest's top bit: a lookup in the older
/// generation and the insert into the current one then land in the same bucket group (the table's hash is the
/// digest itself, whose low bits place it), so a request costs one cache miss, not two.
#[derive(Debug)]
pub(super) struct DuplicateWindow {
    half: Duration,
    max: usize,
    started: Instant,
    /// `GENERATION_BIT` or 0: the parity of the current generation.
    parity: u64,
    /// Keys in the current generation.
    current: usize,
    keys: KeySet,
}

/// Request digests, hashed as themselves ([`request_key`] already mixed them with a random key).
type KeySet = HashSet<u64, BuildNoHashHasher<u64>>;

/// The digest bit that holds the generation (63 bits remain for the digest: collisions stay negligible).
const GENERATION_BIT: u64 = 1 << 63;

impl DuplicateWindow {
    pub(super) fn new(window: Duration, max: usize) -> Self {
        DuplicateWindow {
            half: window / 2,
            max,
            started: Instant::now(),
            parity: 0,
            current: 0,
            keys: KeySet::default(),
        }
    }

    /// Keys held, both generations (what bounds the memory).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn seen(&mut self, key: u64, now: Instant) -> bool {
        if now.duration_since(self.started) >= self.half || self.current >= self.max / 2 {
            self.parity ^= GENERATION_BIT;
            // The generation before the previous one has the new one's parity: forget it (once per half window).
            let parity = self.parity;
            self.keys.retain(|k| k & GENERATION_BIT != parity);
            self.current = 0;
            self.started = now;
        }
        let key = key & !GENERATION_BIT;
        if self.keys.contains(&(key | (self.parity ^ GENERATION_BIT))) {
            return true;
        }
        let new = self.keys.insert(key | self.parity);
        self.current += usize::from(new);
        !new
    }
}
