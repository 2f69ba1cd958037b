//! Login throttling: failed attempts per account and per client IP in a sliding window.
//! In memory, per process: behind several replicas each counts on its own, which still
//! bounds guessing to (replicas × limit) per window. A shared Redis counter can replace it
//! behind the same methods.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

/// Sliding-window counters of failed logins.
#[derive(Debug)]
pub struct LoginThrottle {
    window_ms: i64,
    max_account: u32,
    max_ip: u32,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

/// Keeps the table bounded under a flood of distinct keys.
const PRUNE_ABOVE: usize = 50_000;

impl LoginThrottle {
    /// A throttle allowing `max_account` failures per account and `max_ip` per IP within
    /// `window_secs`.
    pub fn new(window_secs: u64, max_account: u32, max_ip: u32) -> Self {
        Self {
            window_ms: i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            max_account,
            max_ip,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<i64>>> {
        // A panic while holding the lock cannot leave the counters inconsistent in a way
        // that matters; keep serving.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(seconds)` when the account or the IP is throttled now.
    pub fn check(&self, account: &str, ip: &str, now_ms: i64) -> Result<(), u64> {
        let mut map = self.lock();
        let a = self.retry_after(&mut map, &format!("a:{account}"), self.max_account, now_ms);
        let i = self.retry_after(&mut map, &format!("i:{ip}"), self.max_ip, now_ms);
        match a.max(i) {
            0 => Ok(()),
            secs => Err(secs),
        }
    }

    fn retry_after(
        &self,
        map: &mut HashMap<String, VecDeque<i64>>,
        key: &str,
        max: u32,
        now_ms: i64,
    ) -> u64 {
        let Some(times) = map.get_mut(key) else {
            return 0;
        };
        while times.front().is_some_and(|t| *t <= now_ms - self.window_ms) {
            times.pop_front();
        }
        if times.len() < max as usize {
            return 0;
        }
        // Free again when the oldest failure that keeps the count at the limit expires.
        let oldest = times[times.len() - max as usize];
        let wait_ms = (oldest + self.window_ms - now_ms).max(1000);
        u64::try_from((wait_ms + 999) / 1000).unwrap_or(1)
    }

    /// Records a failed attempt.
    pub fn record_failure(&self, account: &str, ip: &str, now_ms: i64) {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            let horizon = now_ms - self.window_ms;
            map.retain(|_, times| times.back().is_some_and(|t| *t > horizon));
        }
        for key in [format!("a:{account}"), format!("i:{ip}")] {
            map.entry(key).or_default().push_back(now_ms);
        }
    }

    /// Forgets an account's failures after a successful login.
    pub fn clear_account(&self, account: &str) {
        self.lock().remove(&format!("a:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_limit_and_frees_after_window() {
        let t = LoginThrottle::new(60, 3, 100);
        for _ in 0..3 {
            assert!(t.check("acct", "ip", 0).is_ok());
            t.record_failure("acct", "ip", 0);
        }
        assert_eq!(t.check("acct", "ip", 1_000), Err(59));
        assert!(t.check("other", "ip", 1_000).is_ok());
        assert!(t.check("acct", "ip", 60_000).is_ok());
    }

    #[test]
    fn ip_limit_applies_across_accounts() {
        let t = LoginThrottle::new(60, 100, 2);
        t.record_failure("a", "1.2.3.4", 0);
        t.record_failure("b", "1.2.3.4", 0);
        assert!(t.check("c", "1.2.3.4", 0).is_err());
        assert!(t.check("c", "5.6.7.8", 0).is_ok());
    }
}
