//! A command's time budget: every await bounded by a deadline and a cancellation token, and
//! passing failures retried with full-jitter backoff until the deadline. Shared by all commands.
//!
//! It knows errors only through [`Transient`] (may a retry help?) and `Into<Error>` (what the
//! command ends with): each adapter implements both for its own error type.

use std::fmt::Display;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::pure::error::Error;
use crate::pure::plan;

/// Errors that may pass if the call is repeated.
pub(crate) trait Transient: Display {
    /// Whether retrying later may succeed.
    fn is_transient(&self) -> bool;
}

tokio::task_local! {
    /// The retry number (0 for the first try) of the call [`Budget::retry`] is running.
    pub(crate) static ATTEMPT: u32;
}

/// How much longer than its base timeout try number `attempt` of a call may take: 1×, 2×, 4×,
/// then 8× (pure).
pub(crate) fn timeout_scale(attempt: u32) -> u32 {
    1 << attempt.min(3)
}

/// Why a bounded await did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// The deadline passed.
    Deadline,
    /// SIGTERM/SIGINT.
    Cancelled,
}

/// Why [`Budget::retry`] gave up: the budget ended, or the call failed in a way no retry fixes.
#[derive(Debug)]
pub(crate) enum Stopped<E> {
    /// The deadline passed or a signal arrived.
    Interrupted(Interrupt),
    /// A failure that is not [`Transient`].
    Failed(E),
}

impl<E: Display> Display for Stopped<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Interrupted(Interrupt::Deadline) => f.write_str("no time left"),
            Stopped::Interrupted(Interrupt::Cancelled) => f.write_str("interrupted by a signal"),
            Stopped::Failed(e) => e.fmt(f),
        }
    }
}

impl<E> From<Interrupt> for Stopped<E> {
    fn from(i: Interrupt) -> Self {
        Stopped::Interrupted(i)
    }
}

/// A deadline plus a cancellation token, and the last passing failure seen under them.
#[derive(Debug)]
pub(crate) struct Budget {
    deadline: Instant,
    /// The `--timeout` this budget enforces, as configured, for the message at its deadline.
    timeout: Option<Duration>,
    cancel: CancellationToken,
    last_error: Mutex<Option<String>>,
}

impl Budget {
    /// A budget that ends at `deadline` or when `cancel` fires.
    pub(crate) fn new(deadline: Instant, cancel: CancellationToken) -> Budget {
        Budget {
            deadline,
            timeout: None,
            cancel,
            last_error: Mutex::new(None),
        }
    }

    /// This budget is the command's `--timeout` of `timeout` (its deadline may come earlier, to
    /// keep time for cleaning up): the message at the deadline names `timeout` as given.
    pub(crate) fn of_timeout(mut self, timeout: Duration) -> Budget {
        self.timeout = Some(timeout);
        self
    }

    /// A budget for cleaning up until `deadline`: it ignores signals, because cleaning up is
    /// what a signal asks for.
    pub(crate) fn cleanup(deadline: Instant) -> Budget {
        Budget::new(deadline, CancellationToken::new())
    }

    /// Time left before the deadline.
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Await `fut` unless the deadline passes or a signal arrives first.
    pub(crate) async fn bounded<T>(&self, fut: impl Future<Output = T>) -> Result<T, Interrupt> {
        let left = self.left();
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
    pub(crate) async fn sleep(&self, want: Duration) -> Result<(), Interrupt> {
        let wait = plan::clamp_wait(want, self.left());
        self.bounded(tokio::time::sleep(wait)).await?;
        if wait < want {
            return Err(Interrupt::Deadline);
        }
        Ok(())
    }

    /// Full-jitter backoff for retry number `attempt`.
    pub(crate) fn backoff(attempt: u32) -> Duration {
        plan::backoff(attempt, rand::rng().random())
    }

    /// Run a call, retrying passing failures with backoff until the deadline.
    ///
    /// The attempt number is visible to the call as [`ATTEMPT`], so that a call that timed out
    /// gets more time on its next try (see the AWS adapter): retrying a slow endpoint with the
    /// same short timeout only piles abandoned requests onto it.
    pub(crate) async fn retry<T, E, F, Fut>(&self, what: &str, f: F) -> Result<T, Stopped<E>>
    where
        E: Transient,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0;
        loop {
            match self.bounded(ATTEMPT.scope(attempt, f())).await? {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    debug!(what, error = %e, attempt, "temporary failure; backing off");
                    self.note(&e);
                    self.sleep(Self::backoff(attempt)).await?;
                    attempt += 1;
                }
                Err(e) => return Err(Stopped::Failed(e)),
            }
        }
    }

    /// [`Budget::retry`], ending in the command's error when it gives up.
    pub(crate) async fn call<T, E, F, Fut>(&self, what: &str, f: F) -> Result<T, Error>
    where
        E: Transient + Into<Error>,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry(what, f).await.map_err(|s| self.stopped(s))
    }

    /// The command's error for a [`Stopped`] call.
    pub(crate) fn stopped<E: Into<Error>>(&self, s: Stopped<E>) -> Error {
        match s {
            Stopped::Interrupted(i) => self.error(i),
            Stopped::Failed(e) => e.into(),
        }
    }

    /// The command's error for an interrupted budget: a temporary failure (with the last
    /// one noted) at the deadline, or an interruption by signal.
    pub(crate) fn error(&self, i: Interrupt) -> Error {
        match i {
            Interrupt::Deadline => Error::Temporary {
                last: self
                    .last_error()
                    .unwrap_or_else(|| "no answer in time".into()),
                timeout: self.timeout,
            },
            Interrupt::Cancelled => Error::Interrupted,
        }
    }

    /// Remember a passing failure, for the message if the deadline comes.
    pub(crate) fn note(&self, e: &dyn Display) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// The last passing failure noted.
    pub(crate) fn last_error(&self) -> Option<String> {
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

    #[tokio::test]
    async fn at_its_deadline_a_budget_names_the_timeout_it_was_given() {
        // A claim's work ends before its --timeout, keeping the rest for cleanup.
        let work = Budget::new(
            Instant::now() + Duration::from_secs(8),
            CancellationToken::new(),
        )
        .of_timeout(Duration::from_secs(10));
        let msg = work.error(Interrupt::Deadline).to_string();
        assert!(msg.contains("within --timeout 10s"), "{msg}");
    }
}
