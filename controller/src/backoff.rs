//! Per-object jittered exponential backoff for failed reconciles.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(300);

/// Counts consecutive failures per object so that each retries on its own schedule.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure and returns how long to wait: 2s, 4s, 8s … capped at five minutes,
    /// each scaled by a random factor in [0.5, 1.0) so that a burst of failures (an outage)
    /// does not come back as a burst of retries.
    pub fn next(&self, key: &str, at_least: Option<Duration>) -> Duration {
        let mut failures = self.lock();
        let count = failures.entry(key.to_owned()).or_insert(0);
        let exp = BASE.saturating_mul(2u32.saturating_pow(*count)).min(CAP);
        *count = count.saturating_add(1);
        let jittered = exp.mul_f64(0.5 + fastrand::f64() / 2.0);
        jittered.max(at_least.unwrap_or_default())
    }

    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_caps() {
        let b = Backoff::default();
        let first = b.next("a", None);
        assert!(
            first >= Duration::from_secs(1) && first < Duration::from_secs(2),
            "{first:?}"
        );
        let second = b.next("a", None);
        assert!(
            second >= Duration::from_secs(2) && second < Duration::from_secs(4),
            "{second:?}"
        );
        for _ in 0..20 {
            assert!(b.next("a", None) <= CAP);
        }
        assert!(
            b.next("other", None) < Duration::from_secs(2),
            "objects back off independently"
        );
    }

    #[test]
    fn honours_cloud_retry_after_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.next("a", Some(Duration::from_secs(60))), Duration::from_secs(60));
        b.reset("a");
        assert!(b.next("a", None) < Duration::from_secs(2));
    }
}
