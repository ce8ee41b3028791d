//! When an in-sync object looks at its cloud again. Each object gets a fixed phase within
//! the resync interval, from a hash of its UID, and resyncs at that phase every interval:
//! N objects spread evenly over the interval (about N ÷ interval a second) whatever bunched
//! them before: a restart, a ProviderConfig edit, a bulk `kubectl apply`. The random +0–10 %
//! jitter this replaces kept a bunch together for many intervals (tests in this file,
//! figures in docs/bench/scale.md).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long a resync turned away by `Slots` waits before it asks again, at least; up to
/// twice that, so those turned away together do not come back together.
const TURNED_AWAY: Duration = Duration::from_secs(1);

/// Keeps some of each kind's workers for watch-triggered work (a new object, a spec edit, a
/// dependency turning Ready, a retry). The controller's queue hands out work by due time,
/// each object once, so when resyncs outrun the workers (a slow cloud, a big fleet) a new
/// object would wait behind every resync already due: N ÷ throughput, minutes at 10,000.
/// Resyncs of in-sync objects may take only `concurrency − reserved` workers; the rest are
/// turned away for a second or two, which costs no call, and the reserved workers are free
/// for whatever the watches bring (tests/e2e/tests/resync_priority.rs).
pub struct Slots {
    limit: usize,
    busy: Mutex<HashMap<&'static str, usize>>,
}

/// A resync's hold on one of its kind's workers, given back on drop.
pub struct Slot {
    kind: &'static str,
    slots: Arc<Slots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.slots.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.get_mut(self.kind) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Slots {
    /// For `concurrency` workers a kind: a quarter (at least one) kept from resyncs.
    pub fn new(concurrency: usize) -> Self {
        let reserved = (concurrency / 4).max(1);
        Self {
            limit: concurrency.saturating_sub(reserved).max(1),
            busy: Mutex::new(HashMap::new()),
        }
    }

    /// A worker for a resync of `kind`, or how long to wait before asking again.
    pub fn take(self: &Arc<Self>, kind: &'static str) -> Result<Slot, Duration> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let n = busy.entry(kind).or_default();
        if *n >= self.limit {
            return Err(TURNED_AWAY.mul_f64(1.0 + fastrand::f64()));
        }
        *n += 1;
        Ok(Slot {
            kind,
            slots: self.clone(),
        })
    }
}

/// The object's fixed place in the interval. `DefaultHasher::new()` has fixed keys, so the
/// phase is the same in every replica and after a restart.
pub fn phase(uid: &str, interval: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut hasher);
    interval.mul_f64(hasher.finish() as f64 / u64::MAX as f64)
}

/// How long until the object's next resync, `now` being time since the epoch: its next
/// phase at least half an interval away, so an object just reconciled for another reason
/// (a spec change, a dependency turning Ready) is not observed again at once.
pub fn next_at(uid: &str, interval: Duration, now: Duration) -> Duration {
    let period = interval.as_nanos().max(1);
    let phase = phase(uid, interval).as_nanos() % period;
    let into = now.as_nanos() % period;
    let mut wait = (phase + period - into) % period;
    if wait < period / 2 {
        wait += period;
    }
    Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

/// `next_at` from the wall clock.
pub fn next(uid: &str, interval: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    next_at(uid, interval, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_leave_a_quarter_of_the_workers_free() {
        let slots = Arc::new(Slots::new(8));
        let held: Vec<Slot> = (0..6).map(|_| slots.take("Bucket").expect("6 of 8")).collect();
        let wait = slots.take("Bucket").err().expect("2 of 8 are kept");
        assert!(wait >= TURNED_AWAY && wait <= TURNED_AWAY * 2, "{wait:?}");
        // Per kind: each kind has its own workers.
        assert!(slots.take("Queue").is_ok());
        drop(held);
        assert!(slots.take("Bucket").is_ok());
        // One worker: resyncs may still run.
        assert!(Arc::new(Slots::new(1)).take("Bucket").is_ok());
    }

    #[test]
    fn the_next_resync_is_half_to_one_and_a_half_intervals_away_on_the_objects_phase() {
        let interval = Duration::from_secs(600);
        for i in 0..1000 {
            let uid = format!("uid-{i}");
            let now = Duration::from_secs(1_700_000_000 + i * 7);
            let wait = next_at(&uid, interval, now);
            assert!(wait >= interval / 2 && wait <= interval * 3 / 2, "{wait:?}");
            // Lands on the phase.
            let at = (now + wait).as_nanos() % interval.as_nanos();
            let phase = phase(&uid, interval).as_nanos();
            assert!(at.abs_diff(phase) < 1_000, "{at} vs {phase}");
            // Reconciled on its phase, it comes back one interval later.
            let again = next_at(&uid, interval, now + wait + Duration::from_millis(5));
            assert!(again.abs_diff(interval) < Duration::from_millis(10), "{again:?}");
        }
    }

    #[test]
    fn objects_bunched_together_spread_evenly_over_the_interval() {
        // 10,000 objects made Ready in the same second (a restart): their resyncs fall in
        // 60 one-second slots of a minute, each near 10,000 ÷ 60.
        let interval = Duration::from_secs(60);
        let now = Duration::from_secs(1_700_000_000);
        let mut slots = [0u32; 60];
        for i in 0..10_000 {
            let wait = next_at(&format!("0c2f6d1e-{i:08}-4b1a"), interval, now);
            slots[((now + wait).as_secs() % 60) as usize] += 1;
        }
        let (min, max) = (slots.iter().min().copied(), slots.iter().max().copied());
        assert!(min > Some(120) && max < Some(220), "{slots:?}");
    }
}
