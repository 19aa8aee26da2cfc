//! The herd's pace of EC2 calls, as the claim uses it: a turn (a ticket of the shared pace in
//! Redis, `Redis::pace`) before each AssociateAddress and Describe* call, the turn asked again
//! before the call, and a throttled answer reported so that the pace slows for the whole herd.
//! Without Redis (or while it fails), this process's own pace ([`local`]): the same rule
//! ([`plan::PaceState`]), fed only this process's answers.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use super::{Coordination, Stop};
use crate::adapters::aws::Ec2Error;
use crate::adapters::redis::{Lease, PaceAnswer, PaceAsk};
use crate::pure::plan;
use crate::support::budget::{Budget, ATTEMPT};

/// A class of EC2 calls with a pace of its own (EC2 throttles each action in a bucket of its
/// own; eipool paces the one mutating action it makes in a herd, and its Describe* calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::services::claim) enum PaceClass {
    /// AssociateAddress.
    Mutating,
    /// DescribeAddresses.
    Describe,
    /// DescribeNetworkInterfaces: a bucket of its own in EC2, which other callers (the VPC CNI)
    /// draw from heavily; its throttling must not slow the herd's DescribeAddresses.
    DescribeInterfaces,
}

impl PaceClass {
    fn name(self) -> &'static str {
        match self {
            PaceClass::Mutating => "mutating",
            PaceClass::Describe => plan::PACE_DESCRIBE_ADDRESSES,
            PaceClass::DescribeInterfaces => plan::PACE_DESCRIBE_INTERFACES,
        }
    }

    fn rate(self) -> plan::Rate {
        match self {
            PaceClass::Mutating => plan::MUTATING_PACE,
            PaceClass::Describe | PaceClass::DescribeInterfaces => plan::DESCRIBE_PACE,
        }
    }
}

/// A ticket of a pace: the herd's (in Redis), or this process's own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ticket {
    Shared(u64),
    Local(f64),
}

/// A turn in a pace, for one call: report it if EC2 throttles that call
/// ([`Coordination::throttled`]).
#[derive(Debug, Clone, Copy)]
pub(in crate::services::claim) struct Slot {
    class: PaceClass,
    ticket: Ticket,
}

/// Without Redis, each process paces itself: the same adaptive pace ([`plan::PaceState`]),
/// held in the process (the agent's claims share it) and fed only its own calls' answers.
mod local {
    use std::sync::{LazyLock, Mutex};
    use std::time::{Duration, Instant};

    use super::{PaceClass, Ticket};
    use crate::pure::plan::PaceState;

    struct Paces {
        since: Instant,
        mutating: Option<PaceState>,
        describe: Option<PaceState>,
        describe_interfaces: Option<PaceState>,
    }

    static PACES: LazyLock<Mutex<Paces>> = LazyLock::new(|| {
        Mutex::new(Paces {
            since: Instant::now(),
            mutating: None,
            describe: None,
            describe_interfaces: None,
        })
    });

    /// Run `f` on `class`'s pace at the process's clock (ms).
    fn with<T>(class: PaceClass, f: impl FnOnce(&mut PaceState, f64) -> T) -> T {
        let mut paces = PACES.lock().unwrap_or_else(|p| p.into_inner());
        let now = paces.since.elapsed().as_secs_f64() * 1000.0;
        let rate = class.rate();
        let pace = match class {
            PaceClass::Mutating => &mut paces.mutating,
            PaceClass::Describe => &mut paces.describe,
            PaceClass::DescribeInterfaces => &mut paces.describe_interfaces,
        };
        f(
            pace.get_or_insert_with(|| PaceState::new(&rate, now, 0.0)),
            now,
        )
    }

    fn ms(wait: f64) -> Duration {
        Duration::from_millis(wait.ceil() as u64)
    }

    pub(super) fn take(class: PaceClass) -> (Ticket, Duration, bool) {
        with(class, |p, now| {
            let (t, wait) = p.take(&class.rate(), now);
            (Ticket::Local(t), ms(wait), p.recovering(&class.rate()))
        })
    }

    pub(super) fn due_in(class: PaceClass, ticket: f64) -> Option<(Duration, bool)> {
        with(class, |p, now| {
            let wait = p.due_in(&class.rate(), ticket, now)?;
            Some((ms(wait), p.recovering(&class.rate())))
        })
    }

    /// The new rate, when this report cut it.
    pub(super) fn throttled(class: PaceClass, ticket: f64) -> Option<f64> {
        with(class, |p, now| {
            p.throttled(&class.rate(), ticket, now).then_some(p.r)
        })
    }
}

impl Coordination {
    /// Wait for our turn in the herd's shared pace of `class` calls (in Redis), so the herd
    /// reaches EC2 at the rate EC2 allows instead of being throttled: take a ticket, sleep until
    /// it is due, and ask again before the call (the pace may have slowed meanwhile: another
    /// claimer's call was throttled). A lease held meanwhile is renewed every third of its
    /// lifetime. `Ok(None)`: that lease was lost while waiting. Without Redis (or while it
    /// fails), this process's own pace, which adapts to what EC2 answers it alone.
    pub(in crate::services::claim) async fn pace(
        &mut self,
        work: &Budget,
        class: PaceClass,
        mut lease: Option<&mut Lease>,
    ) -> Result<Option<Slot>, Stop> {
        let rate = class.rate();
        let asked = Instant::now();
        let mut held: Option<Ticket> = None;
        loop {
            let (ticket, wait, recovering) = match (self.live(), held) {
                (Some(redis), _) => {
                    let ask = match held {
                        Some(Ticket::Shared(t)) => PaceAsk::Due(t),
                        _ => PaceAsk::Take,
                    };
                    match work.bounded(redis.pace(class.name(), &rate, ask)).await? {
                        Ok(PaceAnswer {
                            ticket,
                            wait: Some(wait),
                            recovering,
                            ..
                        }) => (Ticket::Shared(ticket), wait, recovering),
                        // Redis lost the pace since (a restart): take a ticket again.
                        Ok(PaceAnswer { wait: None, .. }) => {
                            held = None;
                            continue;
                        }
                        Err(e) => {
                            self.failed(work, e)?;
                            local::take(class)
                        }
                    }
                }
                (None, Some(Ticket::Local(t))) => match local::due_in(class, t) {
                    Some((wait, recovering)) => (Ticket::Local(t), wait, recovering),
                    None => local::take(class),
                },
                (None, _) => local::take(class),
            };
            held = Some(ticket);
            if wait.is_zero() {
                let waited = asked.elapsed();
                if waited >= Duration::from_millis(1) {
                    debug!(
                        class = class.name(),
                        wait_ms = waited.as_millis() as u64,
                        "waited for our slot of the herd's EC2 rate"
                    );
                }
                return Ok(Some(Slot { class, ticket }));
            }
            let mut step = wait.min(self.lease / 3);
            if recovering {
                step = step.min(plan::PACE_RECHECK);
            }
            work.sleep(step).await?;
            if let Some(l) = lease.as_deref_mut() {
                if !self.renew(work, l).await? {
                    return Ok(None);
                }
            }
        }
    }

    /// EC2 throttled the call made in `slot`: tell the pace, which slows for the whole herd
    /// (once per congestion: the calls that went out before it slowed do not slow it again).
    /// `Ok(true)`: no shared pace spaces the retry, so the caller backs off on its own too.
    pub(in crate::services::claim) async fn throttled(
        &mut self,
        work: &Budget,
        slot: &Slot,
    ) -> Result<bool, Stop> {
        let (class, rate) = (slot.class, slot.class.rate());
        if let (Some(redis), Ticket::Shared(t)) = (self.live(), slot.ticket) {
            match work
                .bounded(redis.pace(class.name(), &rate, PaceAsk::Throttled(t)))
                .await?
            {
                Ok(a) => {
                    if a.cut {
                        info!(
                            class = class.name(),
                            per_second = a.rate,
                            "EC2 throttled one of the herd's calls: the herd's pace slows (another caller draws from the account's bucket?)"
                        );
                    }
                    return Ok(false);
                }
                Err(e) => self.failed(work, e)?,
            };
        }
        let t = match slot.ticket {
            Ticket::Local(t) => t,
            // A ticket of the shared pace, which Redis no longer answers for: a new signal.
            Ticket::Shared(_) => f64::INFINITY,
        };
        if let Some(per_second) = local::throttled(class, t) {
            info!(
                class = class.name(),
                per_second, "EC2 throttled a call: this process's pace slows"
            );
        }
        Ok(true)
    }

    /// A Describe* call in the herd's pace of its `class`, retried on passing failures until the
    /// deadline; each retry waits for a new turn in the pace, and a throttled answer slows it.
    /// Returns the answer and when the call that gave it went out (a listing's age starts there,
    /// not at the first try nor the wait for a turn).
    pub(in crate::services::claim) async fn described<T, F, Fut>(
        &mut self,
        work: &Budget,
        class: PaceClass,
        what: &str,
        call: F,
    ) -> Result<(T, Instant), Stop>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Ec2Error>>,
    {
        let mut attempt = 0;
        loop {
            let Some(slot) = self.pace(work, class, None).await? else {
                unreachable!("no lease, none lost");
            };
            let sent = Instant::now();
            let e = match work.bounded(ATTEMPT.scope(attempt, call())).await? {
                Ok(v) => return Ok((v, sent)),
                Err(e) if !e.is_transient() => return Err(Stop::Fatal(e.into())),
                Err(e) => e,
            };
            debug!(what, error = %e, attempt, "temporary failure; trying again");
            work.note(&e);
            let alone = match e {
                Ec2Error::Throttled { .. } => self.throttled(work, &slot).await?,
                _ => true,
            };
            if alone {
                work.sleep(Budget::backoff(attempt)).await?;
            }
            attempt += 1;
        }
    }
}
