//! Exactly one writer. The leader Lease is held by kube-lease-manager; this room keeps
//! a **local deadline** next to it: the moment this replica observed its latest
//! renewal, plus the lease duration, minus a margin. Past that deadline another
//! replica may already hold the Lease, so this one writes nothing — to Cloudflare (the
//! client's write gate) or to Kubernetes — even if the lease manager, cut off from the
//! API server, still says it leads. The deadline moves only when a read of the Lease
//! shows this replica as holder with a renewal time it has not seen before.
//!
//! The margin covers the time between a renewal and its observation (the Lease is
//! read every [`Leadership::poll_interval`]) and clock rates; it is a third of the
//! lease duration.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Whether this replica may write, and until when.
#[derive(Debug)]
pub struct Leadership {
    /// `None`: leader election is off, this replica always writes.
    lease: Option<LeaseClock>,
}

#[derive(Debug)]
struct LeaseClock {
    duration: Duration,
    margin: Duration,
    state: Mutex<LeaseState>,
}

#[derive(Debug, Default)]
struct LeaseState {
    deadline: Option<Instant>,
    /// The renewal time last seen on the Lease (as the Lease writes it).
    seen_renewal: Option<String>,
}

impl Leadership {
    /// No leader election: always the writer.
    pub fn always() -> Self {
        Leadership { lease: None }
    }

    /// Elected on a Lease of `duration`: a writer only until the local deadline.
    pub fn elected(duration: Duration) -> Self {
        Leadership {
            lease: Some(LeaseClock {
                duration,
                margin: duration / 3,
                state: Mutex::new(LeaseState::default()),
            }),
        }
    }

    /// How often the Lease should be read to keep the deadline moving.
    pub fn poll_interval(&self) -> Duration {
        match &self.lease {
            Some(l) => (l.duration / 6).max(Duration::from_millis(200)),
            None => Duration::from_secs(3600),
        }
    }

    /// What a read of the Lease showed: its holder is this replica or not, and the
    /// renewal time it carries. A renewal not seen before moves the deadline to now +
    /// duration − margin; another holder ends the leadership at once.
    pub fn observe(&self, holder_is_self: bool, renewal: Option<&str>) {
        let Some(l) = &self.lease else { return };
        let mut state = crate::lock(&l.state);
        if !holder_is_self {
            state.deadline = None;
            return;
        }
        let Some(renewal) = renewal else { return };
        if state.seen_renewal.as_deref() != Some(renewal) {
            state.seen_renewal = Some(renewal.to_string());
            state.deadline = Some(Instant::now() + l.duration.saturating_sub(l.margin));
        }
    }

    /// The lease manager reported the leadership lost (or released).
    pub fn lose(&self) {
        if let Some(l) = &self.lease {
            crate::lock(&l.state).deadline = None;
        }
    }

    /// May this replica write now?
    pub fn may_write(&self) -> bool {
        match &self.lease {
            None => true,
            Some(l) => crate::lock(&l.state)
                .deadline
                .is_some_and(|d| Instant::now() < d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stops_writing_at_the_local_deadline_when_renewals_stop() {
        let l = Leadership::elected(Duration::from_secs(15));
        assert!(!l.may_write(), "not a writer before a renewal is seen");
        l.observe(true, Some("2026-11-27T10:00:00.000000Z"));
        assert!(l.may_write());
        // Renewals keep it a writer…
        tokio::time::advance(Duration::from_secs(8)).await;
        l.observe(true, Some("2026-11-27T10:00:05.000000Z"));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(l.may_write(), "8 s after a renewal, within 15 − 5 s");
        // …then they fail: the Lease keeps showing the same renewal time.
        l.observe(true, Some("2026-11-27T10:00:05.000000Z"));
        tokio::time::advance(Duration::from_millis(1_900)).await;
        assert!(l.may_write());
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(
            !l.may_write(),
            "no write 10 s after the last renewal: another replica may take over at 15 s"
        );
        // Another holder ends it at once.
        l.observe(true, Some("2026-11-27T10:00:30.000000Z"));
        assert!(l.may_write());
        l.observe(false, Some("2026-11-27T10:00:31.000000Z"));
        assert!(!l.may_write());
    }

    #[test]
    fn without_election_it_always_writes() {
        let l = Leadership::always();
        l.lose();
        assert!(l.may_write());
    }
}
