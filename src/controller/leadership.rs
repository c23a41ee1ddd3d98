//! Exactly one writer, with slack. Whether this replica may write is answered here,
//! and only here: every write — to Cloudflare (the client's write gate), to a registry
//! (the registry client's gate), to Kubernetes ([`super::Context::may_write`]) — asks
//! [`Leadership`], which also says for how long ([`Leadership::remaining`]), so that a
//! write is sent with a timeout that ends before the leadership can.
//!
//! With leader election the Lease is renewed by kube-lease-manager every
//! [`Leadership::renew_every`] (a quarter of the lease duration), and this room keeps
//! a **local deadline** next to it: the moment this replica sent the read of the Lease
//! that showed its latest renewal, plus the lease duration, minus a margin of a third
//! of it. Past that
//! deadline another replica may already hold the Lease, so this one writes nothing,
//! even if the lease manager, cut off from the API server, still says it leads. The
//! deadline moves only when a read of the Lease (every [`Leadership::poll_interval`],
//! an eighth of the duration) shows this replica as holder with a renewal time it has
//! not seen before; the lease manager saying "lost" ends it at once.
//!
//! The slack, for a lease of duration D: a renewal is observed at most D/4 + D/8 after
//! the previous one, while the deadline is 2D/3 after the previous observation, so a
//! late renewal costs no write window and a failed one is retried before the deadline;
//! another replica may take over only D after the last renewal, and the margin (D/3)
//! covers the observation lag (at most D/8: a read of the Lease that takes longer is
//! abandoned), clock rates, and the last write's flight (its timeout ends before the
//! deadline, [`crate::cloudflare::WriteGate::fence`]).
//!
//! Without election, [`Leadership::switch`] is a plain switch (on in `flaredock run
//! --leader-election=false`; tests turn it on and off).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Whether this replica may write, and until when.
#[derive(Debug)]
pub struct Leadership {
    /// `None`: no leader election, the switch decides.
    lease: Option<LeaseClock>,
    switch: Arc<AtomicBool>,
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
        Self::switch(Arc::new(AtomicBool::new(true)))
    }

    /// No leader election: the writer while `on` says so.
    pub fn switch(on: Arc<AtomicBool>) -> Self {
        Leadership {
            lease: None,
            switch: on,
        }
    }

    /// Elected on a Lease of `duration`: a writer only until the local deadline.
    pub fn elected(duration: Duration) -> Self {
        Leadership {
            lease: Some(LeaseClock {
                duration,
                margin: duration / 3,
                state: Mutex::new(LeaseState::default()),
            }),
            switch: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How often the Lease should be read to keep the deadline moving.
    pub fn poll_interval(&self) -> Duration {
        match &self.lease {
            Some(l) => (l.duration / 8).max(Duration::from_millis(200)),
            None => Duration::from_secs(3600),
        }
    }

    /// How often the holder renews the Lease: a quarter of its duration (at least a
    /// second, the Lease's unit), well before the local deadline (two thirds of it).
    pub fn renew_every(&self) -> Duration {
        match &self.lease {
            Some(l) => Duration::from_secs((l.duration.as_secs() / 4).max(1)),
            None => Duration::from_secs(3600),
        }
    }

    /// kube-lease-manager's `grace` (whole seconds): it renews `grace` before the
    /// Lease would expire, i.e. [`Self::renew_every`] after the last renewal.
    pub fn lease_manager_grace(&self) -> u64 {
        let duration = self.lease_seconds();
        duration
            .saturating_sub(self.renew_every().as_secs())
            .clamp(1, duration.saturating_sub(1).max(1))
    }

    /// The Lease's duration in whole seconds (at least 2, as the lease manager needs).
    pub fn lease_seconds(&self) -> u64 {
        self.lease
            .as_ref()
            .map_or(0, |l| l.duration.as_secs())
            .max(2)
    }

    /// What a read of the Lease showed: its holder is this replica or not, and the
    /// renewal time it carries. A renewal not seen before moves the deadline to now +
    /// duration − margin; another holder ends the leadership at once.
    pub fn observe(&self, holder_is_self: bool, renewal: Option<&str>) {
        self.observe_read_at(holder_is_self, renewal, Instant::now());
    }

    /// [`Self::observe`] for a read of the Lease sent at `sent`: the deadline counts
    /// from when the read left (the renewal it shows is older than that), so a slow
    /// answer does not stretch the deadline.
    pub fn observe_read_at(&self, holder_is_self: bool, renewal: Option<&str>, sent: Instant) {
        let Some(l) = &self.lease else { return };
        let mut state = crate::lock(&l.state);
        if !holder_is_self {
            state.deadline = None;
            return;
        }
        let Some(renewal) = renewal else { return };
        if state.seen_renewal.as_deref() != Some(renewal) {
            state.seen_renewal = Some(renewal.to_string());
            state.deadline = Some(sent + l.duration.saturating_sub(l.margin));
        }
    }

    /// The lease manager reported the leadership lost (or released).
    pub fn lose(&self) {
        match &self.lease {
            Some(l) => crate::lock(&l.state).deadline = None,
            None => self.switch.store(false, Ordering::SeqCst),
        }
    }

    /// Turns the switch of a replica without election on or off (no effect with
    /// election: only observed renewals make a writer there).
    pub fn set_switch(&self, on: bool) {
        self.switch.store(on, Ordering::SeqCst);
    }

    /// How long this replica may still write: `None` when it may not write now,
    /// `Duration::MAX` without election.
    pub fn remaining(&self) -> Option<Duration> {
        match &self.lease {
            None => self.switch.load(Ordering::SeqCst).then_some(Duration::MAX),
            Some(l) => {
                let deadline = crate::lock(&l.state).deadline?;
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(left)
            }
        }
    }

    /// May this replica write now?
    pub fn may_write(&self) -> bool {
        self.remaining().is_some()
    }

    /// The write gate of the clients this replica builds (Cloudflare, registries): a
    /// write's timeout ends a margin before the deadline — a second, or a fifteenth
    /// of a shorter lease.
    pub fn gate(self: &Arc<Self>) -> crate::cloudflare::WriteGate {
        let me = self.clone();
        let margin = match &self.lease {
            Some(l) => (l.duration / 15).min(crate::cloudflare::gate::DEFAULT_MARGIN),
            None => crate::cloudflare::gate::DEFAULT_MARGIN,
        };
        crate::cloudflare::WriteGate::new(move || me.remaining()).with_margin(margin)
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
        assert!(l.remaining() <= Some(Duration::from_millis(100)));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(
            !l.may_write(),
            "no write 10 s after the last renewal: another replica may take over at 15 s"
        );
        assert_eq!(l.remaining(), None);
        // Another holder ends it at once.
        l.observe(true, Some("2026-11-27T10:00:30.000000Z"));
        assert!(l.may_write());
        l.observe(false, Some("2026-11-27T10:00:31.000000Z"));
        assert!(!l.may_write());
    }

    #[test]
    fn renewals_come_well_before_the_local_deadline() {
        for secs in [2u64, 3, 6, 15, 30, 60] {
            let d = Duration::from_secs(secs);
            let l = Leadership::elected(d);
            let deadline_after_observation = d - d / 3;
            // The next renewal, observed at the latest a poll later, comes before the
            // deadline the previous one set.
            let next_seen = l.renew_every() + l.poll_interval();
            assert!(
                next_seen < deadline_after_observation,
                "{secs}s: a renewal is seen {next_seen:?} after the last, the deadline is {deadline_after_observation:?}"
            );
            // The lease manager's grace says the same cadence (and is valid for it).
            let grace = l.lease_manager_grace();
            assert!(
                grace >= 1 && grace < l.lease_seconds(),
                "{secs}s: grace {grace}"
            );
            assert!(
                l.lease_seconds() - grace <= (secs / 3).max(1),
                "{secs}s: grace {grace}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_yields_the_time_left() {
        let l = Arc::new(Leadership::elected(Duration::from_secs(15)));
        let gate = l.gate();
        assert_eq!(gate.remaining(), None);
        l.observe(true, Some("r1"));
        assert_eq!(gate.remaining(), Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(gate.remaining(), Some(Duration::from_secs(3)));
        // A request's timeout is cut to end a margin before the deadline.
        assert_eq!(gate.margin(), Duration::from_secs(1));
        assert_eq!(
            gate.fence(Duration::from_secs(30)),
            Some(Duration::from_secs(2))
        );
        l.lose();
        assert_eq!(gate.remaining(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_read_of_the_lease_does_not_stretch_the_deadline() {
        let l = Leadership::elected(Duration::from_secs(15));
        let sent = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        l.observe_read_at(true, Some("r1"), sent);
        assert_eq!(l.remaining(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn without_election_the_switch_decides() {
        let l = Leadership::always();
        assert!(l.may_write());
        assert_eq!(l.remaining(), Some(Duration::MAX));
        let on = Arc::new(AtomicBool::new(false));
        let l = Leadership::switch(on.clone());
        assert!(!l.may_write());
        on.store(true, Ordering::SeqCst);
        assert!(l.may_write());
        l.lose();
        assert!(!l.may_write());
    }
}
