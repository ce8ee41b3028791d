//! A request budget per ProviderConfig, shared by every kind that uses it: an account's API
//! quota is per account, so a fleet of Buckets, Queues and Tables on one account draws on
//! one budget.
//!
//! The transports (the AWS HTTP connector, the Azure and GCP call wrappers) `spend` one
//! token per request sent, retries included, and report throttling answers. They never
//! wait: the controller asks `admit` before a reconcile starts, and an object the budget
//! cannot afford yet is requeued for when it can, so no worker sleeps on a budget. A
//! reconcile is admitted with the average cost of a reconcile on this budget reserved, so
//! that many workers starting at once cannot all spend the same tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cloudkit_crds::provider_config::RateLimit;

/// The slowest a throttled budget goes, in requests a second.
const MIN_RATE: f64 = 0.5;
/// Throttling answers closer together than this are one signal: requests sent in a burst
/// are answered in a burst, and halving once per answer would floor the rate at once.
const THROTTLE_QUIET: Duration = Duration::from_secs(1);
/// After a throttling answer the rate grows back by this factor each second.
const RECOVERY_PER_SECOND: f64 = 1.1;
/// A budget with no configured limit forgets a throttling slowdown after this long calm.
const UNLIMITED_CALM: Duration = Duration::from_secs(60);

/// Told the ProviderConfig key (`namespace/name`) each time a throttling answer slows its
/// budget down, so the controller can count them.
pub type ThrottleObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// Every ProviderConfig's budget, by ProviderConfig key (`namespace/name`).
pub struct RateBudgets {
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
    on_throttle: ThrottleObserver,
}

impl Default for RateBudgets {
    fn default() -> Self {
        Self::new(Arc::new(|_: &str| {}))
    }
}

impl RateBudgets {
    pub fn new(on_throttle: ThrottleObserver) -> Self {
        Self {
            budgets: Mutex::new(HashMap::new()),
            on_throttle,
        }
    }

    /// The budget for a ProviderConfig, its limit updated to `limit`: a changed ProviderConfig
    /// keeps its budget (and what it owes), so an edit is no way around the limit.
    pub fn budget(&self, key: &str, limit: Option<RateLimit>) -> Arc<Budget> {
        let mut map = self.lock();
        let budget = map
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Budget::new(key, limit, self.on_throttle.clone())))
            .clone();
        drop(map);
        budget.set_limit(limit);
        budget
    }

    /// The budget of a ProviderConfig, if any request was ever made with it.
    pub fn get(&self, key: &str) -> Option<Arc<Budget>> {
        self.lock().get(key).cloned()
    }

    /// Drops a deleted ProviderConfig's budget.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Each budget's rate now (`None`: unlimited), by ProviderConfig key, for metrics.
    pub fn rates(&self) -> Vec<(String, Option<f64>)> {
        let budgets: Vec<(String, Arc<Budget>)> = self.lock().iter().map(|(k, b)| (k.clone(), b.clone())).collect();
        budgets.into_iter().map(|(k, b)| (k, b.rate())).collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Budget>>> {
        // A panic while holding the lock leaves only a map of budgets; keep using it.
        self.budgets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Budget {
    state: Mutex<State>,
    key: String,
    on_throttle: ThrottleObserver,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget({}, {:?} a second)", self.key, self.rate())
    }
}

struct State {
    limit: Option<RateLimit>,
    /// May go below zero: requests already sent are never refused, they are owed.
    tokens: f64,
    refilled: Instant,
    /// The rate a throttling answer set, growing back each second; `None` when not slowed.
    slowed: Option<f64>,
    last_throttle: Option<Instant>,
    /// When the last reconcile put off is to come back: the next one put off comes back
    /// after it, so that a crowd turned away together does not return together.
    next_slot: Option<Instant>,
    /// Tokens held back for reconciles admitted and not yet finished.
    reserved: f64,
    spent: u64,
    /// Reconciles admitted and finished: with `spent`, the average cost of one.
    finished: u64,
    /// Requests sent in the current and the last whole second, to know what "half as fast"
    /// is when no limit is configured.
    window: (Instant, u64, u64),
}

/// A reconcile admitted by a budget; dropping it releases what was reserved for it.
pub struct Admission {
    budget: Option<(Arc<Budget>, f64)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((budget, reserved)) = self.budget.take() {
            let mut state = budget.lock();
            state.reserved -= reserved;
            state.finished += 1;
        }
    }
}

impl Admission {
    /// Admission without a budget (no ProviderConfig resolved yet, nothing to spend on).
    pub fn free() -> Self {
        Self { budget: None }
    }
}

impl Budget {
    fn new(key: &str, limit: Option<RateLimit>, on_throttle: ThrottleObserver) -> Self {
        let now = Instant::now();
        let state = Mutex::new(State {
            limit,
            tokens: limit.map(|l| f64::from(l.burst().max(1))).unwrap_or_default(),
            refilled: now,
            slowed: None,
            last_throttle: None,
            next_slot: None,
            reserved: 0.0,
            spent: 0,
            finished: 0,
            window: (now, 0, 0),
        });
        Self {
            state,
            key: key.to_owned(),
            on_throttle,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_limit(&self, limit: Option<RateLimit>) {
        let mut state = self.lock();
        if state.limit != limit {
            state.refill(Instant::now());
            state.limit = limit;
            let cap = state.burst();
            state.tokens = state.tokens.min(cap);
        }
    }

    /// One request is about to be sent.
    pub fn spend(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        state.refill(now);
        state.tokens -= 1.0;
        state.spent += 1;
        state.count(now);
    }

    /// The cloud answered a request with a throttling error: slow the whole budget down.
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        if state
            .last_throttle
            .is_some_and(|at| now.duration_since(at) < THROTTLE_QUIET)
        {
            return;
        }
        state.refill(now);
        let current = state.rate().unwrap_or_else(|| state.measured(now));
        state.slowed = Some((current / 2.0).max(MIN_RATE));
        state.last_throttle = Some(now);
        // What was saved up was saved at the old rate.
        state.tokens = state.tokens.min(0.0);
        drop(state);
        (self.on_throttle)(&self.key);
    }

    /// Admits a reconcile now, or says how long until the budget can afford one.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        state.refill(now);
        let Some(rate) = state.rate() else {
            drop(state);
            // Counted all the same, so the average cost is known should a throttle come.
            return Ok(Admission {
                budget: Some((self.clone(), 0.0)),
            });
        };
        // The average reconcile's cost on this budget (over-estimated while many are in
        // flight, which errs on the quota's side), but never more than a burst, so that one
        // always fits. Until one has finished, a whole burst: a fleet applied at once must
        // not all be admitted on the guess that each costs one request.
        let cost = if state.finished == 0 {
            state.burst()
        } else {
            (state.spent as f64 / state.finished as f64).clamp(1.0, state.burst())
        };
        let available = state.tokens - state.reserved;
        if available >= cost {
            state.reserved += cost;
            drop(state);
            return Ok(Admission {
                budget: Some((self.clone(), cost)),
            });
        }
        let earliest = now + Duration::from_secs_f64((cost - available) / rate);
        let after_queue = state.next_slot.map(|s| s + Duration::from_secs_f64(cost / rate));
        let slot = after_queue.filter(|s| *s > earliest).unwrap_or(earliest);
        state.next_slot = Some(slot);
        Err(slot - now)
    }

    /// Requests a second now, `None` when unlimited.
    pub fn rate(&self) -> Option<f64> {
        let mut state = self.lock();
        state.refill(Instant::now());
        state.rate()
    }
}

impl State {
    /// Requests a second now: the configured rate, or less while recovering from throttling.
    fn rate(&self) -> Option<f64> {
        let limit = self.limit.map(|l| f64::from(l.requests_per_second.max(1)));
        match (limit, self.slowed) {
            (Some(limit), Some(slowed)) => Some(limit.min(slowed)),
            (limit, slowed) => limit.or(slowed),
        }
    }

    fn burst(&self) -> f64 {
        match (self.limit, self.rate()) {
            (Some(limit), _) => f64::from(limit.burst().max(1)),
            (None, Some(rate)) => rate.max(1.0),
            (None, None) => 0.0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.refilled);
        self.refilled = now;
        if let (Some(slowed), Some(at)) = (self.slowed, self.last_throttle) {
            let calm = now.duration_since(at);
            let grown = slowed * RECOVERY_PER_SECOND.powf(elapsed.as_secs_f64());
            let limit = self.limit.map(|l| f64::from(l.requests_per_second.max(1)));
            self.slowed = match limit {
                Some(limit) if grown >= limit => None,
                None if calm >= UNLIMITED_CALM => None,
                _ => Some(grown),
            };
        }
        if let Some(rate) = self.rate() {
            self.tokens = (self.tokens + rate * elapsed.as_secs_f64()).min(self.burst());
        }
    }

    fn count(&mut self, now: Instant) {
        let (start, current, last) = &mut self.window;
        let since = now.duration_since(*start);
        if since >= Duration::from_secs(1) {
            *last = if since >= Duration::from_secs(2) { 0 } else { *current };
            *current = 0;
            *start = now;
        }
        *current += 1;
    }

    /// Requests sent in the last whole second (at least `MIN_RATE`).
    fn measured(&self, now: Instant) -> f64 {
        let (start, current, last) = self.window;
        let recent = if now.duration_since(start) >= Duration::from_secs(2) {
            0
        } else {
            last.max(current)
        };
        (recent as f64).max(MIN_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit {
            requests_per_second: rate,
            burst: Some(burst),
        })
    }

    #[test]
    fn unlimited_admits_everything() {
        let budgets = RateBudgets::default();
        let budget = budgets.budget("ns/pc", None);
        for _ in 0..1000 {
            budget.spend();
            assert!(budget.admit().is_ok());
        }
        assert_eq!(budget.rate(), None);
    }

    #[test]
    fn reserves_the_average_cost_so_concurrent_starts_share_the_burst() {
        let budgets = RateBudgets::default();
        let budget = budgets.budget("ns/pc", limit(10, 10));
        // Teach it that a reconcile costs 5 requests.
        let first = budget.admit().expect("a full bucket admits");
        for _ in 0..5 {
            budget.spend();
        }
        drop(first);
        // 5 tokens left, and a reconcile costs 5: one more fits, the next waits ~0.5 s.
        let held = budget.admit().expect("5 tokens pay for one");
        let wait = budget.admit().err().expect("nothing left for a second");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        // The next turned away comes back a reconcile's worth of tokens later.
        let later = budget.admit().err().expect("nothing left for a third");
        let gap = later.saturating_sub(wait);
        assert!(
            gap > Duration::from_millis(400) && gap <= Duration::from_millis(600),
            "{gap:?}"
        );
        drop(held);
    }

    #[test]
    fn requests_already_sent_are_owed() {
        let budgets = RateBudgets::default();
        let budget = budgets.budget("ns/pc", limit(2, 2));
        for _ in 0..6 {
            budget.spend();
        }
        // 2 in the bucket, 6 spent: 4 owed plus a burst for the first reconcile, at 2 a second.
        let wait = budget.admit().err().expect("in debt");
        assert!(
            wait > Duration::from_millis(2700) && wait <= Duration::from_millis(3000),
            "{wait:?}"
        );
    }

    #[test]
    fn throttling_halves_the_rate_once_per_burst_of_answers() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let budgets = RateBudgets::new({
            let told = told.clone();
            Arc::new(move |key: &str| told.lock().expect("lock").push(key.to_owned()))
        });
        let budget = budgets.budget("ns/pc", limit(100, 100));
        for _ in 0..20 {
            budget.throttled();
        }
        assert_eq!(*told.lock().expect("lock"), ["ns/pc"]);
        let rate = budget.rate().expect("limited");
        assert!((49.0..52.0).contains(&rate), "{rate}");
        assert!(budget.admit().is_err(), "the saved-up burst is gone");
    }

    #[test]
    fn throttling_an_unlimited_budget_slows_it_to_half_what_it_sent() {
        let budgets = RateBudgets::default();
        let budget = budgets.budget("ns/pc", None);
        for _ in 0..40 {
            budget.spend();
        }
        budget.throttled();
        let rate = budget.rate().expect("slowed");
        assert!((19.0..22.0).contains(&rate), "{rate}");
    }

    #[test]
    fn an_edited_limit_keeps_the_debt_and_forget_drops_the_budget() {
        let budgets = RateBudgets::default();
        let budget = budgets.budget("ns/pc", limit(1, 1));
        for _ in 0..10 {
            budget.spend();
        }
        let again = budgets.budget("ns/pc", limit(5, 5));
        assert!(Arc::ptr_eq(&budget, &again), "one budget per ProviderConfig");
        assert!(again.admit().is_err(), "what was owed is still owed");
        budgets.forget("ns/pc");
        assert!(budgets.get("ns/pc").is_none());
    }
}
