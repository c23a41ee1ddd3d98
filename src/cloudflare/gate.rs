//! The write gate: asked immediately before each write (to Cloudflare, to a registry),
//! it says how long this process may still write — the controller's leader Lease, as
//! its local deadline sees it. A write is sent only with a timeout that ends before
//! that time (less a margin), so that it cannot land after another replica took over;
//! when too little time remains it is not sent at all.

use std::sync::Arc;
use std::time::Duration;

/// How long this process may still write: `None` when it may not write now,
/// `Some(Duration::MAX)` when nothing bounds it; and the margin a write's timeout keeps
/// before that time.
#[derive(Clone)]
pub struct WriteGate {
    remaining: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
    margin: Duration,
}

/// The margin of a gate unless told otherwise.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(1);

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGate")
    }
}

impl WriteGate {
    /// A gate asking `remaining` how long writes may still be sent (margin 1 s).
    pub fn new(remaining: impl Fn() -> Option<Duration> + Send + Sync + 'static) -> Self {
        WriteGate {
            remaining: Arc::new(remaining),
            margin: DEFAULT_MARGIN,
        }
    }

    /// With another margin (a short lease has a short one).
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// A gate that is open, without a time bound, while `open` says so.
    pub fn while_open(open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        WriteGate::new(move || open().then_some(Duration::MAX))
    }

    /// How long writes may still be sent (`None`: not now).
    pub fn remaining(&self) -> Option<Duration> {
        (self.remaining)()
    }

    /// The timeout a write sent now may have: its `normal` timeout, cut to end the
    /// margin before the gate closes; `None` when less than two margins remain (the
    /// write is not sent).
    pub fn fence(&self, normal: Duration) -> Option<Duration> {
        fence(self.remaining(), normal, self.margin)
    }
}

/// [`WriteGate::fence`] on a known remaining time.
pub fn fence(remaining: Option<Duration>, normal: Duration, margin: Duration) -> Option<Duration> {
    let usable = remaining?.saturating_sub(margin);
    (usable >= margin && !usable.is_zero()).then(|| usable.min(normal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_ends_before_the_gate_closes() {
        let s = Duration::from_secs;
        assert_eq!(fence(Some(Duration::MAX), s(30), s(1)), Some(s(30)));
        assert_eq!(fence(Some(s(8)), s(30), s(1)), Some(s(7)));
        assert_eq!(fence(Some(s(60)), s(30), s(1)), Some(s(30)));
        assert_eq!(fence(Some(s(2)), s(30), s(1)), Some(s(1)));
        assert_eq!(fence(Some(Duration::from_millis(1900)), s(30), s(1)), None);
        assert_eq!(fence(None, s(30), s(1)), None);
        let open = WriteGate::while_open(|| true);
        assert_eq!(open.fence(s(30)), Some(s(30)));
        let short = WriteGate::new(|| Some(Duration::from_millis(400)))
            .with_margin(Duration::from_millis(40));
        assert_eq!(short.fence(s(30)), Some(Duration::from_millis(360)));
        assert_eq!(WriteGate::while_open(|| false).remaining(), None);
    }
}
