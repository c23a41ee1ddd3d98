//! Client-side rate limiter: never more than N requests in any sliding window of W
//! seconds, per API token, shared by every client of that token through the
//! [`Limiters`] registry its owner (the CLI session, the controller's context) passes
//! around; and a block that honours a `retry-after` when a 429 still arrives. A caller
//! never waits longer than it asks to: past that, it is told when to come back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::token::Secret;

/// N requests per W.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

impl RateLimit {
    /// Cloudflare's documented global limit: 1,200 requests per 5 minutes per token.
    pub const CLOUDFLARE: RateLimit = RateLimit {
        requests: 1200,
        window: Duration::from_secs(300),
    };

    /// Parses `REQUESTS/SECONDS`, e.g. `1200/300`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let (n, w) = text
            .split_once('/')
            .ok_or_else(|| format!("rate limit {text:?} is not REQUESTS/SECONDS"))?;
        let requests: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("rate limit {text:?}: {n:?} is not a whole number"))?;
        let seconds: f64 = w
            .trim()
            .parse()
            .map_err(|_| format!("rate limit {text:?}: {w:?} is not a number of seconds"))?;
        if requests == 0 || !(seconds > 0.0 && seconds.is_finite()) {
            return Err(format!("rate limit {text:?} must be positive"));
        }
        Ok(RateLimit {
            requests,
            window: Duration::from_secs_f64(seconds),
        })
    }
}

/// The first policy of a `Ratelimit-Policy` header (`"default";q=1200;w=300`, as
/// Cloudflare documents it): `q` requests per `w` seconds.
pub fn parse_policy(header: &str) -> Option<RateLimit> {
    let first = header.split(',').next()?;
    let mut q = None;
    let mut w = None;
    for param in first.split(';').skip(1) {
        match param.trim().split_once('=') {
            Some(("q", v)) => q = v.trim().parse::<u32>().ok(),
            Some(("w", v)) => w = v.trim().parse::<f64>().ok(),
            _ => {}
        }
    }
    match (q, w) {
        (Some(q), Some(w)) if q > 0 && w > 0.0 && w.is_finite() => Some(RateLimit {
            requests: q,
            window: Duration::from_secs_f64(w),
        }),
        _ => None,
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requests, self.window.as_secs_f64())
    }
}

struct State {
    limit: RateLimit,
    /// Slack added to the window so that a request the server receives a little late
    /// still falls outside the server's window: 1% of it, at least 50 ms (scheduling on
    /// a loaded machine delays sends by tens of milliseconds), at most 2 s.
    margin: Duration,
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    waited: Duration,
}

fn margin_of(limit: RateLimit) -> Duration {
    (limit.window / 100).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

/// A sliding-window limiter. Cheap to share through `Arc`.
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            state: Mutex::new(State {
                limit,
                margin: margin_of(limit),
                sent: VecDeque::with_capacity(limit.requests.min(100_000) as usize),
                blocked_until: None,
                waited: Duration::ZERO,
            }),
        }
    }

    pub fn limit(&self) -> RateLimit {
        crate::lock(&self.state).limit
    }

    /// Follows the policy the API announces (`Ratelimit-Policy`) when it differs from
    /// the configured one, so that a limit configured wrongly on either side does not
    /// cost a 429 and its block. Returns whether it changed.
    pub fn adopt(&self, policy: RateLimit) -> bool {
        let mut st = crate::lock(&self.state);
        if st.limit == policy {
            return false;
        }
        tracing::warn!(configured = %st.limit, announced = %policy, "the API announces another rate-limit policy; following it");
        st.limit = policy;
        st.margin = margin_of(policy);
        true
    }

    /// Requests that still fit in the current window (the headroom before waiting).
    pub fn headroom(&self) -> u64 {
        let st = crate::lock(&self.state);
        let now = Instant::now();
        let window = st.limit.window + st.margin;
        let used = st
            .sent
            .iter()
            .filter(|t| now.duration_since(**t) < window)
            .count() as u64;
        u64::from(st.limit.requests).saturating_sub(used)
    }

    /// Total time callers have waited for a slot.
    pub fn waited(&self) -> Duration {
        crate::lock(&self.state).waited
    }

    /// Waits until one more request fits in the window, then takes the slot.
    pub async fn acquire(&self) {
        // Never more than `Duration::MAX`: always a slot in the end.
        let _ = self.acquire_within(Duration::MAX).await;
    }

    /// Takes a slot when one frees within `max_wait`, waiting for it; otherwise takes
    /// nothing and answers at once how long until the token may send again (the
    /// token is blocked by a 429, or its window is full for longer).
    pub async fn acquire_within(&self, max_wait: Duration) -> Result<(), Duration> {
        let started = Instant::now();
        loop {
            let wake = {
                let mut st = crate::lock(&self.state);
                let now = Instant::now();
                let window = st.limit.window + st.margin;
                while st
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    st.sent.pop_front();
                }
                match st.blocked_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        st.blocked_until = None;
                        if st.sent.len() < st.limit.requests as usize {
                            st.sent.push_back(now);
                            st.waited += now.duration_since(started);
                            None
                        } else {
                            st.sent.front().map(|t| *t + window)
                        }
                    }
                }
            };
            match wake {
                None => return Ok(()),
                Some(at) => {
                    let waited = Instant::now().saturating_duration_since(started);
                    let wait = at.saturating_duration_since(Instant::now());
                    if waited.saturating_add(wait) > max_wait {
                        return Err(wait);
                    }
                    tokio::time::sleep_until(at).await
                }
            }
        }
    }

    /// How long the token is still blocked by a 429 (`None`: not blocked).
    pub fn blocked_for(&self) -> Option<Duration> {
        let st = crate::lock(&self.state);
        let now = Instant::now();
        st.blocked_until
            .filter(|u| *u > now)
            .map(|u| u.duration_since(now))
    }

    /// Nothing is sent before `retry_after` from now (a 429 arrived).
    pub fn block_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut st = crate::lock(&self.state);
        if st.blocked_until.is_none_or(|b| b < until) {
            st.blocked_until = Some(until);
        }
    }
}

/// A token's fingerprint and its limit.
type LimiterKey = ([u8; 32], RateLimit);

/// The limiters of the API tokens in use, one per token and limit: every client of a
/// token built through the same registry shares its window and its 429 block. Owned
/// by whoever builds clients (one per CLI session, one per controller), never a
/// process-wide global; limiters no client holds any more, and no longer blocked, are
/// dropped as new ones are made (bounded by the tokens in use).
#[derive(Default)]
pub struct Limiters {
    map: Mutex<HashMap<LimiterKey, Arc<RateLimiter>>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiters({} tokens)", self.len())
    }
}

impl Limiters {
    pub fn new() -> Self {
        Self::default()
    }

    /// The limiter of this token (created with `limit` on first use).
    pub fn for_token(&self, token: &Secret, limit: RateLimit) -> Arc<RateLimiter> {
        let mut map = crate::lock(&self.map);
        map.retain(|_, l| Arc::strong_count(l) > 1 || l.blocked_for().is_some());
        map.entry((token.fingerprint(), limit))
            .or_insert_with(|| Arc::new(RateLimiter::new(limit)))
            .clone()
    }

    /// Tokens (with their limit) that have a limiter now.
    pub fn len(&self) -> usize {
        crate::lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_policy_header() {
        assert_eq!(
            parse_policy(r#""default";q=1200;w=300"#),
            Some(RateLimit::CLOUDFLARE)
        );
        assert_eq!(
            parse_policy(r#""burst";q=100;w=60, "default";q=1200;w=300"#).map(|p| p.requests),
            Some(100)
        );
        assert_eq!(parse_policy("garbage"), None);
        assert_eq!(parse_policy(r#""x";q=0;w=1"#), None);
    }

    #[test]
    fn parses_limits() {
        let l = RateLimit::parse("1200/300").unwrap();
        assert_eq!(l.requests, 1200);
        assert_eq!(l.window, Duration::from_secs(300));
        assert!(RateLimit::parse("0/1").is_err());
        assert!(RateLimit::parse("10").is_err());
        assert!(RateLimit::parse("10/-1").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_window() {
        let l = Arc::new(RateLimiter::new(RateLimit {
            requests: 10,
            window: Duration::from_secs(1),
        }));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..35 {
            let l = l.clone();
            handles.push(tokio::spawn(async move {
                l.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap());
        }
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(in_window <= 10, "{in_window} requests within one window");
        }
        // 35 requests at 10/s need at least three full windows.
        assert!(times[34].duration_since(start) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn block_for_delays_everything() {
        let l = RateLimiter::new(RateLimit {
            requests: 100,
            window: Duration::from_secs(1),
        });
        let start = Instant::now();
        l.block_for(Duration::from_secs(5));
        l.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[test]
    fn one_limiter_per_token_in_a_registry() {
        let limiters = Limiters::new();
        let a = limiters.for_token(&Secret::new("t1"), RateLimit::CLOUDFLARE);
        let b = limiters.for_token(&Secret::new("t1"), RateLimit::CLOUDFLARE);
        let c = limiters.for_token(&Secret::new("t2"), RateLimit::CLOUDFLARE);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        // Another registry (another owner) shares nothing.
        let other = Limiters::new().for_token(&Secret::new("t1"), RateLimit::CLOUDFLARE);
        assert!(!Arc::ptr_eq(&a, &other));
    }

    #[tokio::test(start_paused = true)]
    async fn unused_limiters_are_dropped_unless_blocked() {
        let limiters = Limiters::new();
        let blocked = limiters.for_token(&Secret::new("blocked"), RateLimit::CLOUDFLARE);
        blocked.block_for(Duration::from_secs(600));
        drop(blocked);
        drop(limiters.for_token(&Secret::new("idle"), RateLimit::CLOUDFLARE));
        let kept = limiters.for_token(&Secret::new("kept"), RateLimit::CLOUDFLARE);
        // The idle one went; the blocked one stays (its block still holds).
        assert_eq!(limiters.len(), 2);
        let again = limiters.for_token(&Secret::new("blocked"), RateLimit::CLOUDFLARE);
        assert!(again.blocked_for().is_some());
        drop(kept);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_block_is_answered_at_once_not_waited() {
        let l = RateLimiter::new(RateLimit {
            requests: 100,
            window: Duration::from_secs(1),
        });
        l.block_for(Duration::from_secs(600));
        let start = Instant::now();
        let told = l.acquire_within(Duration::from_secs(5)).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
        let wait = told.expect_err("no slot within 5 s");
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600));
        // A short block is waited.
        let l = RateLimiter::new(RateLimit {
            requests: 100,
            window: Duration::from_secs(1),
        });
        l.block_for(Duration::from_secs(2));
        assert_eq!(l.acquire_within(Duration::from_secs(5)).await, Ok(()));
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_longer_than_the_wait_is_answered_at_once() {
        let l = RateLimiter::new(RateLimit {
            requests: 2,
            window: Duration::from_secs(300),
        });
        l.acquire().await;
        l.acquire().await;
        let start = Instant::now();
        let wait = l
            .acquire_within(Duration::from_secs(5))
            .await
            .expect_err("the window is full for 5 minutes");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(wait >= Duration::from_secs(299), "{wait:?}");
    }
}
