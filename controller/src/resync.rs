//! When an in-sync object looks at its cloud again. Each object gets a fixed phase within
//! the resync interval, from a hash of its UID, and resyncs at that phase every interval:
//! N objects spread evenly over the interval (about N ÷ interval a second) whatever bunched
//! them before: a restart, a ProviderConfig edit, a bulk `kubectl apply`. The random +0–10 %
//! jitter this replaces kept a bunch together for many intervals (tests in this file,
//! figures in docs/bench/scale.md).

use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

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
