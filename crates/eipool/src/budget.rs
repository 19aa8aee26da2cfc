//! A command's time budget: every await bounded by a deadline and a cancellation token, and
//! passing failures retried with full-jitter backoff until the deadline. Shared by all commands.

use std::fmt::Display;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::ec2::Ec2Error;
use crate::error::Error;
use crate::identity::IdentityError;
use crate::plan;

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Errors that may pass if the call is repeated.
pub trait Transient: Display {
    /// Whether retrying later may succeed.
    fn is_transient(&self) -> bool;
}
impl Transient for Ec2Error {
    fn is_transient(&self) -> bool {
        Ec2Error::is_transient(self)
    }
}
impl Transient for IdentityError {
    fn is_transient(&self) -> bool {
        matches!(self, IdentityError::Ec2(e) if e.is_transient())
    }
}

tokio::task_local! {
    /// The retry number (0 for the first try) of the call [`Budget::retry`] is running.
    pub static ATTEMPT: u32;
}

/// How much longer than its base timeout try number `attempt` of a call may take: 1×, 2×, 4×,
/// then 8× (pure).
pub fn timeout_scale(attempt: u32) -> u32 {
    1 << attempt.min(3)
}

/// Why a bounded await did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The deadline passed.
    Deadline,
    /// SIGTERM/SIGINT.
    Cancelled,
}

/// A deadline plus a cancellation token, and the last passing failure seen under them.
#[derive(Debug)]
pub struct Budget {
    started: Instant,
    deadline: Instant,
    cancel: CancellationToken,
    last_error: Mutex<Option<String>>,
}

impl Budget {
    /// A budget that ends at `deadline` or when `cancel` fires.
    pub fn new(deadline: Instant, cancel: CancellationToken) -> Budget {
        Budget {
            started: Instant::now(),
            deadline,
            cancel,
            last_error: Mutex::new(None),
        }
    }

    /// When the budget ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Await `fut` unless the deadline passes or a signal arrives first.
    pub async fn bounded<T>(&self, fut: impl Future<Output = T>) -> Result<T, Interrupt> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Interrupt::Deadline);
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Interrupt::Cancelled),
            r = tokio::time::timeout(left, fut) => r.map_err(|_| Interrupt::Deadline),
        }
    }

    /// Sleep, but never past the deadline (waking at it is `Interrupt::Deadline`).
    pub async fn sleep(&self, want: Duration) -> Result<(), Interrupt> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = plan::clamp_wait(want, left);
        self.bounded(tokio::time::sleep(wait)).await?;
        if wait < want {
            return Err(Interrupt::Deadline);
        }
        Ok(())
    }

    /// Full-jitter backoff for retry number `attempt`.
    pub fn backoff(attempt: u32) -> Duration {
        plan::full_jitter(attempt, BACKOFF_BASE, BACKOFF_CAP, rand::rng().random())
    }

    /// Run a call, retrying passing failures with backoff until the deadline. The inner `Err`
    /// is a failure no retry fixes.
    ///
    /// The attempt number is visible to the call as [`ATTEMPT`], so that a call that timed out
    /// gets more time on its next try (see `ec2::Ec2`): retrying a slow endpoint with the same
    /// short timeout only piles abandoned requests onto it.
    pub async fn retry<T, E, F, Fut>(&self, what: &str, f: F) -> Result<Result<T, E>, Interrupt>
    where
        E: Transient,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0;
        loop {
            match self.bounded(ATTEMPT.scope(attempt, f())).await? {
                Ok(v) => return Ok(Ok(v)),
                Err(e) if e.is_transient() => {
                    debug!(what, error = %e, attempt, "temporary failure; backing off");
                    self.note(&e);
                    self.sleep(Self::backoff(attempt)).await?;
                    attempt += 1;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// The command's error for an interrupted budget: a temporary failure (with the last
    /// one noted) at the deadline, or an interruption by signal.
    pub fn error(&self, i: Interrupt) -> Error {
        match i {
            Interrupt::Deadline => Error::Temporary {
                last: self
                    .last_error()
                    .unwrap_or_else(|| "no answer in time".into()),
                elapsed: self.started.elapsed(),
            },
            Interrupt::Cancelled => Error::Interrupted,
        }
    }

    /// Remember a passing failure, for the message if the deadline comes.
    pub fn note(&self, e: &dyn Display) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// The last passing failure noted.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_get_more_time_up_to_eight_times() {
        let scales: Vec<u32> = (0..6).map(timeout_scale).collect();
        assert_eq!(scales, vec![1, 2, 4, 8, 8, 8]);
    }
}
