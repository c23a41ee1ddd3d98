//! The controller's error, and what the retry policy reads of it (through the
//! finalizer helper's wrapping): waiting, rate limited, its short reason.

use std::time::Duration;

use kube::runtime::finalizer;

use crate::cloudflare::ApiError;

/// A controller error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error(transparent)]
    Cloudflare(#[from] ApiError),
    #[error("credentials: {0}")]
    Credentials(String),
    /// Cleanup waits for something else to go first.
    #[error("{0}")]
    Waiting(String),
    /// The reconcile did not finish within `--reconcile-timeout` (its status says
    /// so); retried with backoff.
    #[error("the reconcile did not finish within {0:?} (--reconcile-timeout)")]
    TimedOut(Duration),
}

/// A cleanup that waits (`Error::Waiting`, also through the finalizer helper).
pub(super) fn is_waiting(error: &Error) -> bool {
    match error {
        Error::Waiting(_) => true,
        Error::Finalizer(f) => matches!(
            f.as_ref(),
            finalizer::Error::CleanupFailed(e) | finalizer::Error::ApplyFailed(e) if is_waiting(e)
        ),
        _ => false,
    }
}

/// How long until the token of a rate-limited reconcile may send again (through the
/// finalizer).
pub(super) fn rate_limited_for(error: &Error) -> Option<Duration> {
    match error {
        Error::Cloudflare(e) => e.retry_after(),
        Error::Finalizer(f) => match f.as_ref() {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                rate_limited_for(e)
            }
            _ => None,
        },
        _ => None,
    }
}

/// A short reason of a reconcile error, for metrics and logs (through the finalizer).
pub(super) fn error_reason(error: &Error) -> &'static str {
    match error {
        Error::Cloudflare(e) => e.reason(),
        Error::Kube(_) => "KubernetesError",
        Error::Credentials(_) => "CredentialsUnavailable",
        Error::Waiting(_) => "Waiting",
        Error::TimedOut(_) => crate::reconcile::reason::Reason::ReconcileTimedOut.as_str(),
        Error::Finalizer(f) => match f.as_ref() {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                error_reason(e)
            }
            _ => "FinalizerError",
        },
    }
}
