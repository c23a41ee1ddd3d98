//! Why an object's conditions say what they say: one [`Reason`] enum for both kinds,
//! rendered (by its variant's name, CamelCase) into a status condition's `reason`.
//! Code compares reasons as values of this enum, never as strings; a condition read
//! back from Kubernetes is turned into one by [`Reason::parse`].
//!
//! Each reason has a [`ReasonKind`]: whether it waits for something outside
//! (retried), needs a change of spec (Stalled), is a transient failure (retried with
//! backoff), is held on purpose (suspend, Observe, an adoption's approval), or simply
//! names the state a condition is in.

use std::fmt;

/// What a reason says about what comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    /// Waiting on something outside flaredock (an image, a Worker, a Secret, an
    /// asynchronous delete): looked at again later, not an error.
    Waiting,
    /// Will not proceed until the spec (or the credentials) change: `Stalled`.
    Stalled,
    /// A failure that passes by itself (a deadline, an unreachable registry):
    /// retried with backoff, never `Stalled`.
    Transient,
    /// flaredock deliberately writes nothing: suspend, Observe, adoption approval.
    Held,
    /// The state a condition is in (`Ready`, `Synced`, `RolloutInProgress`, …).
    State,
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident => $kind:ident,)*) => {
        /// The `reason` of a status condition (either kind).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The condition's `reason` (the variant's name).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }

            pub fn kind(self) -> ReasonKind {
                match self {
                    $(Reason::$name => ReasonKind::$kind,)*
                }
            }
        }
    };
}

reasons! {
    // What the Worker of a container is up to.
    /// The CloudflareWorker named by `spec.worker.name` has not uploaded the class.
    WorkerNotReady => Waiting,
    /// The script named by `spec.worker.scriptName` (or its class) is not there.
    WorkerNotFound => Waiting,
    /// An application of the same name or namespace is still being deleted.
    PreviousDeleting => Waiting,
    // What Kubernetes holds.
    SecretNotFound => Waiting,
    SecretInvalid => Stalled,
    ConfigMapNotFound => Waiting,
    /// The ServiceAccount may not read the ConfigMap (the namespace is not onboarded).
    ConfigMapForbidden => Stalled,
    CredentialsUnavailable => Stalled,
    CredentialsForbidden => Stalled,
    DefaultCredentialsNotAllowed => Stalled,
    // A Worker's code.
    NoSource => Stalled,
    BundleUnavailable => Waiting,
    BundleInvalid => Stalled,
    MainModuleMissing => Stalled,
    BindingConflict => Stalled,
    /// A `spec.bindings` entry the official binding schema refuses.
    BindingInvalid => Stalled,
    TooManyContainers => Stalled,
    ScriptOwnedElsewhere => Stalled,
    ScriptNotOwned => Stalled,
    /// A route pattern of the spec serves another script (never taken).
    RouteHeldElsewhere => Stalled,
    /// A custom domain of the spec serves another script (never taken).
    DomainHeldElsewhere => Stalled,
    /// A zone of the spec is not one the token can see.
    ZoneNotFound => Stalled,
    // A container's image.
    NoImage => Stalled,
    InvalidImage => Stalled,
    ImageNotFound => Waiting,
    ForeignAccount => Stalled,
    PromotionSourceNotReady => Waiting,
    CopyFailed => Stalled,
    NoBuilder => Stalled,
    InvalidBuildContext => Stalled,
    BuildSourceUnavailable => Transient,
    Building => Waiting,
    BuildFailed => Stalled,
    RegistryUnauthorized => Stalled,
    RegistryError => Stalled,
    RegistryUnavailable => Transient,
    RegistryCredentialsRefused => Stalled,
    RegistryCredentialsUnavailable => Transient,
    /// This replica is not the leader: it gets no image and writes nothing.
    NotLeader => Transient,
    // A container's application.
    NamespaceHasApplication => Stalled,
    ApplicationOwnedByAnother => Stalled,
    ApplicationNotOwned => Stalled,
    BoundToAnotherNamespace => Stalled,
    RolloutReverted => Stalled,
    /// The reconcile ran past its deadline (`--reconcile-timeout`): requeued.
    ReconcileTimedOut => Transient,
    // Held on purpose.
    Suspended => Held,
    Observing => Held,
    AdoptionPending => Held,
    // The states conditions are in.
    Ready => State,
    Progressing => State,
    Uploading => State,
    NotStalled => State,
    Idle => State,
    NotObserved => State,
    ImageResolved => State,
    ImagePending => State,
    NamespaceBound => State,
    Synced => State,
    ChangesPending => State,
    ApplicationAbsent => State,
    RolloutInProgress => State,
    VersionsDiffer => State,
    RolloutComplete => State,
}

impl Reason {
    /// The reason a condition carries, when it is one of flaredock's (a condition may
    /// also carry a Cloudflare error's reason, [`crate::cloudflare::ApiError::reason`]).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Does the condition's `reason` say this?
    pub fn is(self, condition_reason: &str) -> bool {
        Reason::parse(condition_reason) == Some(self)
    }
}

impl From<Reason> for &'static str {
    fn from(r: Reason) -> &'static str {
        r.as_str()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_renders_once_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{r} rendered twice");
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(r.as_str().chars().next().is_some_and(char::is_uppercase));
        }
        assert_eq!(Reason::parse("SomethingElse"), None);
    }

    #[test]
    fn renders_the_strings_status_always_carried() {
        // Status, CRD docs and dashboards read these: they may not change.
        assert_eq!(Reason::WorkerNotFound.to_string(), "WorkerNotFound");
        assert_eq!(Reason::AdoptionPending.to_string(), "AdoptionPending");
        assert_eq!(Reason::Suspended.as_str(), "Suspended");
        assert_eq!(Reason::ReconcileTimedOut.kind(), ReasonKind::Transient);
        assert_eq!(Reason::ScriptNotOwned.kind(), ReasonKind::Stalled);
    }
}
