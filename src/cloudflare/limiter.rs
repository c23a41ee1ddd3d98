//! Client-side rate limiter: never more than N requests in any sliding window of W
//! seconds, per API token, shared by every caller in the process; and a block that
//! honours a `retry-after` when a 429 still arrives.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
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

    /// The limiter of this token in this process (created with `limit` on first use).
    pub fn for_token(token: &Secret, limit: RateLimit) -> Arc<RateLimiter> {
        type Registry = Mutex<HashMap<([u8; 32], RateLimit), Arc<RateLimiter>>>;
        static LIMITERS: OnceLock<Registry> = OnceLock::new();
        let map = LIMITERS.get_or_init(Default::default);
        let mut map = crate::lock(map);
        map.entry((token.fingerprint(), limit))
            .or_insert_with(|| Arc::new(RateLimiter::new(limit)))
            .clone()
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
                None => return,
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
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
    fn one_limiter_per_token() {
        let a = RateLimiter::for_token(&Secret::new("t1"), RateLimit::CLOUDFLARE);
        let b = RateLimiter::for_token(&Secret::new("t1"), RateLimit::CLOUDFLARE);
        let c = RateLimiter::for_token(&Secret::new("t2"), RateLimit::CLOUDFLARE);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
